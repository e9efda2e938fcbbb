#include "mooncake/mooncake_channel.h"

#include <cstring>

namespace omniconn::mooncake {

namespace {

constexpr int64_t kMaxSegmentName = 1024;

// The (small) value under `key`, or "" when it is absent or cannot be read right now: one
// try, never waiting for pool space (the caller's own payload may hold it).
std::string read_small(StoreClient& c, const std::string& key) {
  const int64_t n = c.api().get_size(c.store(), key.c_str());
  if (n <= 0 || n > kMaxSegmentName) return "";
  auto r = c.acquire(static_cast<size_t>(n), Clock::now());
  if (!r.ok()) return "";
  const int64_t got = c.api().get_into(c.store(), key.c_str(), r->data, r->size);
  std::string value = got == n ? std::string(reinterpret_cast<const char*>(r->data), r->size) : "";
  c.release(*r);
  return value;
}

}  // namespace

Status announce_segment(StoreClient& client, const std::string& prefix, Deadline deadline) {
  const std::string& name = client.segment_name();
  if (name.empty()) return Status::Ok();
  const std::string key = segment_key(prefix);
  client.api().remove(client.store(), key.c_str(), 1);
  OMNICONN_ASSIGN_OR_RETURN(Region r, client.acquire(name.size(), deadline));
  std::memcpy(r.data, name.data(), name.size());
  Status st = client.put_pinned(key, {r.data, r.size}, deadline);
  client.release(r);
  return st;
}

std::string SegmentBook::preferred(const std::string& prefix) {
  const auto now = Clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = edges_.find(prefix);
    if (it != edges_.end() && now < it->second.due) return it->second.segment;
  }
  // Read without the lock: other edges' puts go on meanwhile.
  std::string segment = read_small(*client_, segment_key(prefix));
  std::lock_guard lock(mu_);
  edges_[prefix] = Entry{segment, now + kRefresh};
  return segment;
}

void SegmentBook::stale(const std::string& prefix) {
  std::lock_guard lock(mu_);
  if (auto it = edges_.find(prefix); it != edges_.end()) it->second.due = Clock::time_point();
}

Status ChannelSender::push(std::string_view descriptor, Deadline deadline) {
  std::lock_guard lock(mu_);
  std::string key = prefix_ + std::to_string(seq_);
  OMNICONN_ASSIGN_OR_RETURN(bool taken, client_->exists(key, deadline));
  if (taken) {
    return Status::InvalidArgument("MooncakeConnector: channel key '" + key +
                                   "' is taken (left by an earlier run?): set extra.namespace "
                                   "to a value of this run's own");
  }
  OMNICONN_ASSIGN_OR_RETURN(Region r, client_->acquire(descriptor.size(), deadline));
  std::memcpy(r.data, descriptor.data(), descriptor.size());
  Status st = client_->put_pinned(key, {r.data, r.size}, deadline);
  client_->release(r);
  if (st.ok()) ++seq_;
  return st;
}

Status ChannelReceiver::wait(Deadline deadline) {
  const Api& api = client_->api();
  const std::string k = key();
  Backoff backoff(deadline);
  for (;;) {
    int64_t size = api.get_size(client_->store(), k.c_str());
    if (size >= 0) {
      size_ = size;
      return Status::Ok();
    }
    if (size != kObjectNotFound && !retryable(size)) return to_status(size, "get_size " + k);
    if (!backoff.wait()) {
      return Status::Timeout("MooncakeConnector: nothing on the channel (" + k +
                             ") until the deadline");
    }
  }
}

Result<bool> ChannelReceiver::peek(std::string* descriptor, Deadline deadline) {
  if (have_) {
    *descriptor = desc_;
    return true;
  }
  const Api& api = client_->api();
  const std::string k = key();
  if (size_ < 0) {
    int64_t size = api.get_size(client_->store(), k.c_str());
    if (size == kObjectNotFound || (size < 0 && retryable(size))) return false;
    if (size < 0) return to_status(size, "get_size " + k);
    size_ = size;
  }
  OMNICONN_ASSIGN_OR_RETURN(Region r, client_->acquire(static_cast<size_t>(size_), deadline));
  Backoff backoff(deadline);
  int64_t got = 0;
  while ((got = api.get_into(client_->store(), k.c_str(), r.data, r.size)) < 0 && retryable(got) &&
         backoff.wait()) {
  }
  desc_.assign(reinterpret_cast<const char*>(r.data), got > 0 ? static_cast<size_t>(got) : 0);
  client_->release(r);
  if (got != size_) return to_status(got < 0 ? got : int64_t{kInternalError}, "get_into " + k);
  have_ = true;
  *descriptor = desc_;
  return true;
}

void ChannelReceiver::consume() {
  client_->api().remove(client_->store(), key().c_str(), 1);
  ++seq_;
  size_ = -1;
  have_ = false;
  desc_.clear();
}

}  // namespace omniconn::mooncake

// MooncakeConnector: payloads through a Mooncake distributed store (a mooncake_master plus the
// segments its clients contribute), over TCP or RDMA. The store key of a payload is vllm-omni's
// "{request_id}/{from}_to_{to}" (after "<namespace>/" when one is set). Payloads are written
// once into registered memory and moved by put_from / get_into; the reader removes the key.
// Channel mode keeps each edge's descriptors in the store too (mooncake_channel.h), and places
// each payload's replica in the segment the edge's reader announced.
#include "mooncake/mooncake_connector.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <vector>

#include "mooncake/mooncake_channel.h"
#include "mooncake/mooncake_descriptor.h"
#include "mooncake/mooncake_options.h"
#include "mooncake/mooncake_store.h"
#include "omniconn/connector_base.h"
#include "omniconn/stream.h"

namespace omniconn {

namespace mooncake {

namespace {

constexpr size_t kMaxTracked = 65536;  // unread payloads this writer watches for in_flight

std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

class MooncakeLoan final : public Loan::Impl {
 public:
  MooncakeLoan(std::shared_ptr<StoreClient> client, Region r, std::atomic<uint64_t>* loans)
      : client_(std::move(client)), region_(r), loans_(loans) {
    loans_->fetch_add(1, std::memory_order_relaxed);
  }
  ~MooncakeLoan() override {
    client_->release(region_);
    loans_->fetch_sub(1, std::memory_order_relaxed);
  }
  std::span<std::byte> bytes() override { return {region_.data, region_.size}; }

 private:
  std::shared_ptr<StoreClient> client_;
  Region region_;
  std::atomic<uint64_t>* loans_;
};

class MooncakeConnector final : public ConnectorBase {
 public:
  MooncakeConnector(MooncakeOptions o, std::shared_ptr<StoreClient> client)
      : opts_(std::move(o)),
        client_(std::move(client)),
        api_(client_->api()),
        store_(client_->store()),
        book_(client_) {}
  ~MooncakeConnector() override {
    close_queues();
    for (const std::string& k : announced_) api_.remove(store_, k.c_str(), 1);
  }

  std::string_view type_name() const override { return "MooncakeConnector"; }
  Status cleanup(std::string_view request_id) override;
  Status health() override;
  Status sweep(Deadline deadline) override;

 protected:
  Result<Published> publish(const PayloadKey& key, const PayloadBuilder& payload,
                            Deadline deadline) override {
    OMNICONN_ASSIGN_OR_RETURN(Loan loan, lend(payload.encoded_size(), deadline));
    OMNICONN_RETURN_IF_ERROR(payload.write_to(loan.bytes()).status());
    return store_payload(loan.bytes(), key, deadline);
  }
  Result<Loan> lend(size_t nbytes, Deadline deadline) override {
    OMNICONN_ASSIGN_OR_RETURN(Region r, client_->acquire(nbytes, deadline));
    return Loan(std::make_unique<MooncakeLoan>(client_, r, &loans_));
  }
  Result<Published> publish_loan(Loan loan, const PayloadKey& key, Deadline deadline) override {
    if (dynamic_cast<MooncakeLoan*>(loan.impl()) == nullptr) {
      return Status::InvalidArgument("not a MooncakeConnector loan");
    }
    OMNICONN_RETURN_IF_ERROR(finish_payload(loan.bytes()).WithContext("committed loan"));
    return store_payload(loan.bytes(), key, deadline);
  }
  Result<PayloadView> take(std::string_view descriptor, Deadline deadline,
                           DescriptorReceiver*) override {
    OMNICONN_ASSIGN_OR_RETURN(DescriptorInfo d, decode_descriptor(descriptor));
    return d.is_inline ? inline_view(d) : fetch(d, deadline);
  }
  // Its views are on memory of its own (a pool region, a copy), so writable as they are.
  Result<PayloadView> take_with(std::string_view descriptor, Deadline deadline,
                                const GetOptions&) override {
    return take(descriptor, deadline, nullptr);
  }
  Result<PayloadView> take_key(const PayloadKey& key, Deadline deadline,
                               const GetOptions&) override;
  void withdraw(std::string_view descriptor) override {
    auto d = decode_descriptor(descriptor);
    if (!d.ok() || d->is_inline) return;
    api_.remove(store_, d->store_key.c_str(), 1);
    forget(d->store_key);
  }
  Result<std::unique_ptr<DescriptorSender>> open_sender(std::string_view from,
                                                        std::string_view to) override {
    return std::unique_ptr<DescriptorSender>(
        std::make_unique<ChannelSender>(client_, channel_prefix(from, to)));
  }
  Result<std::unique_ptr<DescriptorReceiver>> open_receiver(std::string_view from,
                                                            std::string_view to,
                                                            Deadline deadline) override {
    if (opts_.preferred_placement) announce(channel_prefix(from, to), deadline);
    return std::unique_ptr<DescriptorReceiver>(
        std::make_unique<ChannelReceiver>(client_, channel_prefix(from, to)));
  }
  void memory_metrics(Metrics* m) const override {
    m->capacity_bytes = client_->pool_bytes();
    m->in_use_bytes = client_->pool_in_use();
    std::lock_guard lock(mu_);
    m->in_flight = loans_.load(std::memory_order_relaxed) + unread_.size();
  }

 public:
  PlacementCounts placement() const {
    auto n = [this](Placed p) { return placed_[p].load(std::memory_order_relaxed); };
    return {n(kPreferred), n(kFallback), n(kPlain), client_->segment_name()};
  }

 private:
  std::string key_prefix() const {
    return opts_.name_space.empty() ? std::string() : opts_.name_space + "/";
  }
  std::string channel_prefix(std::string_view from, std::string_view to) const {
    return key_prefix() + "~channel/" + std::string(from) + "_to_" + std::string(to) + "/";
  }
  Result<Published> store_payload(std::span<std::byte> bytes, const PayloadKey& key,
                                  Deadline deadline);
  Status put_placed(const std::string& store_key, std::span<std::byte> bytes, const PayloadKey& key,
                    Deadline deadline);
  void announce(const std::string& prefix, Deadline deadline);
  Result<std::string> free_store_key(const PayloadKey& key, Deadline deadline);
  Result<PayloadView> fetch(const DescriptorInfo& d, Deadline deadline, bool by_key = false);
  Result<PayloadView> inline_view(const DescriptorInfo& d);
  void track(const std::string& key);
  void forget(const std::string& key);

  MooncakeOptions opts_;
  std::shared_ptr<StoreClient> client_;
  const Api& api_;
  store_t store_;
  std::atomic<uint64_t> loans_{0};  // outstanding
  mutable std::mutex mu_;
  std::deque<std::string> unread_;      // payloads put here that no reader took, as last seen
  std::vector<std::string> announced_;  // segment announcements of this receiver's edges
  SegmentBook book_;                    // the announcements of this sender's edges
  enum Placed { kPreferred, kFallback, kPlain };
  void count_placement(Placed p) { placed_[p].fetch_add(1, std::memory_order_relaxed); }
  std::atomic<uint64_t> placed_[3] = {};  // PlacementCounts, by Placed
};

// Writes `bytes` (registered memory) under a free store key, or makes an inline descriptor.
Result<ConnectorBase::Published> MooncakeConnector::store_payload(std::span<std::byte> bytes,
                                                                  const PayloadKey& key,
                                                                  Deadline deadline) {
  DescriptorInfo d;
  d.key = key;
  d.size = bytes.size();
  d.checksum = checksum_of(bytes);
  if (bytes.size() <= opts_.inline_threshold_bytes) {
    d.is_inline = true;
    d.inline_bytes.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return Published{encode_descriptor(d), bytes.size(), true};
  }
  OMNICONN_ASSIGN_OR_RETURN(d.store_key, free_store_key(key, deadline));
  OMNICONN_RETURN_IF_ERROR(put_placed(d.store_key, bytes, key, deadline));
  track(d.store_key);
  return Published{encode_descriptor(d), bytes.size(), false};
}

// The put, with the replica placed in the segment the edge's reader announced when there is one
// (and placement is on).
Status MooncakeConnector::put_placed(const std::string& store_key, std::span<std::byte> bytes,
                                     const PayloadKey& key, Deadline deadline) {
  const std::string edge = channel_prefix(key.from_stage, key.to_stage);
  const std::string segment = opts_.preferred_placement ? book_.preferred(edge) : "";
  bool preferred = false;
  Status st = segment.empty()
                  ? client_->put_pinned(store_key, bytes, deadline)
                  : client_->put_preferring(store_key, bytes, segment, deadline, &preferred);
  if (!segment.empty() && !preferred) book_.stale(edge);  // gone, perhaps: read it again
  if (st.ok()) count_placement(segment.empty() ? kPlain : preferred ? kPreferred : kFallback);
  return st;
}

// Best effort, and brief (a full store would hold the recv up): without an announcement, the
// edge's payloads go where the master puts them.
void MooncakeConnector::announce(const std::string& prefix, Deadline deadline) {
  const Deadline brief = std::min(deadline, Clock::now() + std::chrono::milliseconds(200));
  if (!announce_segment(*client_, prefix, brief).ok() || client_->segment_name().empty()) {
    return;
  }
  std::lock_guard lock(mu_);
  const std::string k = segment_key(prefix);
  if (std::find(announced_.begin(), announced_.end(), k) == announced_.end()) {
    announced_.push_back(k);
  }
}

// vllm-omni's key, or (while earlier payloads of the same request and edge are unread)
// that key + "#<n>": Mooncake keeps the first value of a key and reports success for a second
// put, which would hand a reader the old bytes.
Result<std::string> MooncakeConnector::free_store_key(const PayloadKey& key, Deadline deadline) {
  std::string base = key_prefix() + key.str();
  if (base.size() > 0xff00 || key.request_id.size() > 0xff00) {
    return Status::InvalidArgument("MooncakeConnector: key longer than 65280 bytes");
  }
  for (int n = 0; n < 64; ++n) {
    std::string k = n == 0 ? base : base + "#" + std::to_string(n);
    OMNICONN_ASSIGN_OR_RETURN(bool taken, client_->exists(k, deadline));
    if (!taken) return k;
  }
  return Status::ResourceExhausted("MooncakeConnector: 64 unread payloads under '" + base +
                                   "': read them or cleanup() the request");
}

// get_into registered memory, check size and checksum (by key: none to check against; the
// payload format's own checks remain), then remove the key.
Result<PayloadView> MooncakeConnector::fetch(const DescriptorInfo& d, Deadline deadline,
                                             bool by_key) {
  OMNICONN_ASSIGN_OR_RETURN(Region r, client_->acquire(d.size, deadline));
  auto keep = std::shared_ptr<void>(nullptr, [c = client_, r](void*) { c->release(r); });
  Backoff backoff(deadline);
  for (;;) {
    int64_t rc = api_.get_into(store_, d.store_key.c_str(), r.data, r.size);
    if (rc == static_cast<int64_t>(d.size)) break;
    if (rc >= 0) {
      return Status::Corrupt("MooncakeConnector: '" + d.store_key + "' holds " +
                             std::to_string(rc) + " bytes, the descriptor says " +
                             std::to_string(d.size) + " (a stale object under this key)");
    }
    if (rc == kObjectNotFound) {
      return Status::NotFound("MooncakeConnector: no payload under '" + d.store_key +
                              "' (already taken, cleaned up, or lost with its segment)");
    }
    if (rc == kInvalidParams) {
      return Status::Corrupt("MooncakeConnector: get_into '" + d.store_key +
                             "': INVALID_PARAMS (-600): the object is larger than the "
                             "descriptor's " +
                             std::to_string(d.size) + " bytes (a stale object)");
    }
    if (!retryable(rc)) return to_status(rc, "get_into " + d.store_key);
    if (!backoff.wait()) {
      return Status::Timeout("MooncakeConnector: get_into '" + d.store_key + "': " + code_name(rc) +
                             " until the deadline");
    }
  }
  std::span<const std::byte> bytes(r.data, r.size);
  if (!by_key && checksum_of(bytes) != d.checksum) {
    return Status::Corrupt("MooncakeConnector: checksum mismatch on '" + d.store_key + "'");
  }
  api_.remove(store_, d.store_key.c_str(), 1);  // forced: our own get holds a read lease
  forget(d.store_key);                          // when this connector wrote it
  return PayloadView::make(d.key, bytes, std::move(keep));
}

Result<PayloadView> MooncakeConnector::inline_view(const DescriptorInfo& d) {
  auto bytes = std::as_bytes(std::span(d.inline_bytes));
  if (checksum_of(bytes) != d.checksum) {
    return Status::Corrupt("MooncakeConnector: inline payload checksum mismatch");
  }
  return PayloadView::copy(d.key, bytes);
}

// By key: the payload under vllm-omni's store key, or under its "#1" (an older payload of the
// key was unread when it was put), polled until the deadline. Mooncake has no claim, so two
// readers of one key may both get it: one reader per key.
Result<PayloadView> MooncakeConnector::take_key(const PayloadKey& key, Deadline deadline,
                                                const GetOptions&) {
  const std::string base = key_prefix() + key.str();
  Backoff backoff(deadline);
  for (;;) {
    for (const std::string& k : {base, base + "#1"}) {
      int64_t n = api_.get_size(store_, k.c_str());
      if (n < 0 && n != kObjectNotFound && !retryable(n)) return to_status(n, "get_size " + k);
      if (n <= 0) continue;
      DescriptorInfo d;
      d.store_key = k;
      d.size = static_cast<uint64_t>(n);
      d.key = key;
      auto view = fetch(d, std::max(deadline, Clock::now() + std::chrono::seconds(1)), true);
      if (view.ok() || view.status().code() != StatusCode::kNotFound) return view;
    }
    if (!backoff.wait()) {
      std::string hint = opts_.inline_threshold_bytes == 0
                             ? ""
                             : " (payloads of at most inline_threshold_bytes, " +
                                   std::to_string(opts_.inline_threshold_bytes) +
                                   ", travel only in their descriptor: set it to 0 to read "
                                   "every payload by key)";
      return Status::Timeout("MooncakeConnector: no payload under '" + base +
                             "' before the deadline" + hint);
    }
  }
}

// Store keys are "<prefix>{request id}/...": the request's own and its chunk keys
// (belongs_to_request), by one regex for the store and the same rule for unread_.
Status MooncakeConnector::cleanup(std::string_view request_id) {
  const std::string prefix = key_prefix(), req = regex_escape(request_id);
  const std::string pattern =
      "^" + regex_escape(prefix) + "(" + req + "(_[^/]*)?|[^/]*_" + req + ")/";
  int64_t rc = api_.remove_by_regex(store_, pattern.c_str(), 1);
  {
    std::lock_guard lock(mu_);
    std::erase_if(unread_, [&](const std::string& k) {
      if (!k.starts_with(prefix)) return false;
      std::string_view id(k);
      id.remove_prefix(prefix.size());
      return belongs_to_request(id.substr(0, id.find('/')), request_id);
    });
  }
  return rc < 0 ? to_status(rc, "cleanup of '" + std::string(request_id) + "'") : Status::Ok();
}

Status MooncakeConnector::health() {
  int rc = api_.health_check(store_);
  if (rc == 0) return Status::Ok();
  if (rc == 1) return Status::Unavailable("MooncakeConnector: store client not initialised");
  if (rc == 2) {
    return Status::Unavailable("MooncakeConnector: master " + opts_.master + " unreachable");
  }
  return to_status(rc, "health_check");
}

// One is_exist per payload this writer put and has not seen taken; the calls run without the
// lock, so writers are not held up.
Status MooncakeConnector::sweep(Deadline deadline) {
  std::deque<std::string> keys;
  {
    std::lock_guard lock(mu_);
    keys = unread_;
  }
  for (const std::string& k : keys) {
    if (Clock::now() >= deadline) return Status::Timeout("MooncakeConnector: sweep");
    if (api_.is_exist(store_, k.c_str()) != 1) forget(k);
  }
  return Status::Ok();
}

void MooncakeConnector::track(const std::string& key) {
  std::lock_guard lock(mu_);
  unread_.push_back(key);
  if (unread_.size() > kMaxTracked) unread_.pop_front();
}

void MooncakeConnector::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  if (auto it = std::find(unread_.begin(), unread_.end(), key); it != unread_.end()) {
    unread_.erase(it);
  }
}

}  // namespace

std::optional<PlacementCounts> placement_counts(const Connector& connector) {
  auto* c = dynamic_cast<const MooncakeConnector*>(&connector);
  return c ? std::optional<PlacementCounts>(c->placement()) : std::nullopt;
}

namespace {

ConnectorType mooncake_connector_type() {
  ConnectorType t;
  t.name = "MooncakeConnector";
  t.aliases = {"MooncakeStoreConnector"};  // vllm-omni's name for it since 2026
  t.capabilities.scoped_by_namespace = true;
  t.capabilities.reaches_other_hosts = true;
  // Mooncake's threads do not survive fork, and a forked child cannot start it again.
  t.capabilities.usable_after_fork = false;
  // Each host gives its own address (the segment it contributes); the store is shared.
  t.host_local_keys = {"host", "segment", "localbuf", "rdma"};
  t.validate = [](const Value& extra) {
    MooncakeOptions o;
    return read_mooncake_options(extra, &o);
  };
  t.create = [](const ConnectorSpec& spec) -> Result<std::unique_ptr<Connector>> {
    OMNICONN_ASSIGN_OR_RETURN(MooncakeOptions opts, MooncakeOptions::from_extra(spec.extra));
    OMNICONN_ASSIGN_OR_RETURN(auto client, StoreClient::open(opts));
    return std::unique_ptr<Connector>(new MooncakeConnector(std::move(opts), std::move(client)));
  };
  return t;
}

}  // namespace

}  // namespace mooncake

Status register_mooncake_connector(ConnectorRegistry& registry) {
  return registry.register_type(mooncake::mooncake_connector_type());
}

}  // namespace omniconn

// MooncakeConnector: payloads through a Mooncake distributed store (a mooncake_master plus the
// segments its clients contribute), over TCP or RDMA. The store key of a payload is vllm-omni's
// "{request_id}/{from}_to_{to}" (after "<namespace>/" when one is set). Payloads are written
// once into registered memory and moved by put_from / get_into; the reader removes the key.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "connector_counters.h"
#include "mooncake_descriptor.h"
#include "mooncake_options.h"
#include "mooncake_store.h"

namespace omniconn {

namespace {

using namespace mooncake;

// Hard pin: a payload nobody has read yet must never be evicted; a full store is backpressure.
constexpr ReplicateConfig kPinned{1, 0, 1, nullptr, 0};
constexpr size_t kMaxTracked = 65536;  // unread payloads this writer watches for in_flight

struct Counters : CallCounters {
  std::atomic<uint64_t> loans{0};  // outstanding
};

// Sleeps between polls: 50 us doubling to 2 ms, never past the deadline.
class Backoff {
 public:
  explicit Backoff(Deadline deadline) : deadline_(deadline) {}
  bool wait() {
    auto now = Clock::now();
    if (now >= deadline_) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(step_, deadline_ - now));
    step_ = std::min<Clock::duration>(step_ * 2, std::chrono::milliseconds(2));
    return true;
  }

 private:
  Deadline deadline_;
  Clock::duration step_ = std::chrono::microseconds(50);
};

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
  MooncakeLoan(std::shared_ptr<StoreClient> client, Region r, Counters* c)
      : client_(std::move(client)), region_(r), counters_(c) {}
  ~MooncakeLoan() override {
    client_->release(region_);
    counters_->loans.fetch_sub(1, std::memory_order_relaxed);
  }
  std::span<std::byte> bytes() override { return {region_.data, region_.size}; }

 private:
  std::shared_ptr<StoreClient> client_;
  Region region_;
  Counters* counters_;
};

class MooncakeConnector final : public Connector {
 public:
  MooncakeConnector(MooncakeOptions o, std::shared_ptr<StoreClient> client)
      : opts_(std::move(o)),
        client_(std::move(client)),
        api_(client_->api()),
        store_(client_->store()) {}

  std::string_view type_name() const override { return "MooncakeConnector"; }

  Result<Descriptor> put(const PayloadKey& key, const PayloadBuilder& payload,
                         Deadline deadline) override {
    auto loan = this->loan(payload.encoded_size(), deadline);  // counts its own errors
    if (!loan.ok()) return loan.status();
    if (auto w = payload.write_to(loan->bytes()); !w.ok()) return count_error(w.status());
    return publish_counted(loan->bytes(), key, deadline);
  }

  Result<Loan> loan(size_t nbytes, Deadline deadline) override {
    auto r = client_->acquire(nbytes, deadline);
    if (!r.ok()) return count_error(r.status());
    c_.loans.fetch_add(1, std::memory_order_relaxed);
    return Loan(std::make_unique<MooncakeLoan>(client_, *r, &c_));
  }

  Result<Descriptor> commit(Loan loan, const PayloadKey& key) override {
    if (dynamic_cast<MooncakeLoan*>(loan.impl()) == nullptr) {
      return count_error(Status::InvalidArgument("commit: not a MooncakeConnector loan"));
    }
    if (Status st = finish_payload(loan.bytes()); !st.ok()) {
      return count_error(st.WithContext("committed loan"));
    }
    return publish_counted(loan.bytes(), key, Clock::now() + std::chrono::seconds(30));
  }

  Result<PayloadView> get(const Descriptor& descriptor, Deadline deadline) override {
    auto d = decode_descriptor(descriptor.bytes);
    if (!d.ok()) return count_error(d.status());
    auto v = d->is_inline ? inline_view(*d) : fetch(*d, deadline, false);
    return finish_get(std::move(v));
  }

  Status send(const PayloadKey& key, const PayloadBuilder& payload, Deadline deadline) override {
    auto loan = this->loan(payload.encoded_size(), deadline);
    if (!loan.ok()) return loan.status();
    if (auto w = payload.write_to(loan->bytes()); !w.ok()) return count_error(w.status());
    return send_bytes(loan->bytes(), key, deadline);
  }

  Status send_loan(Loan loan, const PayloadKey& key, Deadline deadline) override {
    if (dynamic_cast<MooncakeLoan*>(loan.impl()) == nullptr) {
      return count_error(Status::InvalidArgument("send_loan: not a MooncakeConnector loan"));
    }
    if (Status st = finish_payload(loan.bytes()); !st.ok()) {
      return count_error(st.WithContext("sent loan"));
    }
    return send_bytes(loan.bytes(), key, deadline);
  }

 private:
  Status send_bytes(std::span<std::byte> bytes, const PayloadKey& key, Deadline deadline) {
    auto d = publish(bytes, key, deadline);
    if (!d.ok()) return count_error(d.status());
    Status st = announce(key, d->bytes, deadline);
    if (!st.ok()) {
      if (auto info = decode_descriptor(d->bytes); info.ok() && !info->is_inline) {
        api_.remove(store_, info->store_key.c_str(), 1);
        forget(info->store_key);
      }
      return count_error(st);
    }
    c_.sends.fetch_add(1, std::memory_order_relaxed);
    return Status::Ok();
  }

  Result<Descriptor> publish_counted(std::span<std::byte> bytes, const PayloadKey& key,
                                     Deadline deadline) {
    auto d = publish(bytes, key, deadline);
    if (!d.ok()) return count_error(d.status());
    c_.puts.fetch_add(1, std::memory_order_relaxed);
    return d;
  }

 public:
  // The next payload on the edge; one whose request was cleaned up is skipped, as in SHM.
  Result<PayloadView> recv(std::string_view from, std::string_view to, Deadline deadline) override {
    std::string edge = std::string(from) + "_to_" + std::string(to);
    EdgeState& e = edge_state(recv_edges_, edge);
    std::lock_guard lock(e.mu);
    for (;;) {
      auto desc = take_announcement(channel_key(edge, e.seq), deadline);
      if (!desc.ok()) return count_error(desc.status());
      ++e.seq;
      auto view = get(Descriptor{*desc}, deadline);
      if (view.ok() || view.status().code() != StatusCode::kNotFound) return view;
    }
  }

  Status cleanup(std::string_view request_id) override {
    std::string prefix = key_prefix() + std::string(request_id) + "/";
    int64_t rc = api_.remove_by_regex(store_, ("^" + regex_escape(prefix)).c_str(), 1);
    {
      std::lock_guard lock(mu_);
      std::erase_if(unread_, [&](const std::string& k) { return k.starts_with(prefix); });
    }
    return rc < 0 ? count_error(to_status(rc, "cleanup of '" + std::string(request_id) + "'"))
                  : Status::Ok();
  }

  Status health() override {
    int rc = api_.health_check(store_);
    if (rc == 0) return Status::Ok();
    if (rc == 1) return Status::Unavailable("MooncakeConnector: store client not initialised");
    if (rc == 2)
      return Status::Unavailable("MooncakeConnector: master " + opts_.master + " unreachable");
    return to_status(rc, "health_check");
  }

  Metrics metrics() const override {
    Metrics m = c_.snapshot();
    m.capacity_bytes = client_->pool_bytes();
    m.in_use_bytes = client_->pool_in_use();
    m.in_flight = c_.loans.load() + unread_count();
    return m;
  }

 private:
  std::string key_prefix() const {
    return opts_.name_space.empty() ? std::string() : opts_.name_space + "/";
  }
  std::string channel_key(const std::string& edge, uint64_t seq) const {
    return key_prefix() + "~channel/" + edge + "/" + std::to_string(seq);
  }

  template <typename T>
  T count_error(T v) {
    const Status& st = [&]() -> const Status& {
      if constexpr (std::is_same_v<T, Status>) {
        return v;
      } else {
        return v.status();
      }
    }();
    if (!st.ok()) (st.code() == StatusCode::kTimeout ? c_.timeouts : c_.errors).fetch_add(1);
    return v;
  }

  // Writes `bytes` (registered memory) under its store key, or makes an inline descriptor.
  Result<Descriptor> publish(std::span<std::byte> bytes, const PayloadKey& key, Deadline deadline) {
    DescriptorInfo d;
    d.key = key;
    d.size = bytes.size();
    d.checksum = checksum_of(bytes);
    if (bytes.size() <= opts_.inline_threshold_bytes) {
      d.is_inline = true;
      d.inline_bytes.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      c_.inline_payloads.fetch_add(1, std::memory_order_relaxed);
      c_.bytes_out.fetch_add(bytes.size(), std::memory_order_relaxed);
      return Descriptor{encode_descriptor(d)};
    }
    OMNICONN_ASSIGN_OR_RETURN(d.store_key, free_store_key(key, deadline));
    OMNICONN_RETURN_IF_ERROR(put_new(d.store_key, bytes, deadline));
    track(d.store_key);
    c_.bytes_out.fetch_add(bytes.size(), std::memory_order_relaxed);
    return Descriptor{encode_descriptor(d)};
  }

  // vllm-omni's key, or (while earlier payloads of the same request and edge are unread)
  // that key + "#<n>": Mooncake keeps the first value of a key and reports success for a second
  // put, which would hand a reader the old bytes.
  Result<std::string> free_store_key(const PayloadKey& key, Deadline deadline) {
    std::string base = key_prefix() + key.str();
    if (base.size() > 0xff00 || key.request_id.size() > 0xff00) {
      return Status::InvalidArgument("MooncakeConnector: key longer than 65280 bytes");
    }
    for (int n = 0; n < 64; ++n) {
      std::string k = n == 0 ? base : base + "#" + std::to_string(n);
      OMNICONN_ASSIGN_OR_RETURN(bool taken, exists(k, deadline));
      if (!taken) return k;
    }
    return Status::ResourceExhausted("MooncakeConnector: 64 unread payloads under '" + base +
                                     "': read them or cleanup() the request");
  }

  // is_exist, retried through transient errors: an error is never taken for "free".
  Result<bool> exists(const std::string& key, Deadline deadline) {
    Backoff backoff(deadline);
    for (;;) {
      int rc = api_.is_exist(store_, key.c_str());
      if (rc == 0 || rc == 1) return rc == 1;
      if (!retryable(rc) || !backoff.wait()) return to_status(rc, "is_exist '" + key + "'");
    }
  }

  // put_from under a key that does not exist yet (see free_store_key).
  Status put_new(const std::string& key, std::span<std::byte> bytes, Deadline deadline) {
    Backoff backoff(deadline);
    for (;;) {
      int rc = api_.put_from(store_, key.c_str(), bytes.data(), bytes.size(), &kPinned);
      if (rc == 0) return Status::Ok();
      if (!retryable(rc)) return to_status(rc, "put_from '" + key + "'");
      if (!backoff.wait()) {
        Status st = to_status(rc, "put_from '" + key + "' until the deadline");
        return rc == kNoAvailableHandle ? st : Status::Timeout(st.message());
      }
    }
  }

  // get_into registered memory, check size and checksum, then remove the key.
  Result<PayloadView> fetch(const DescriptorInfo& d, Deadline deadline, bool wait_for_key) {
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
      if (rc == kObjectNotFound && !wait_for_key) {
        return Status::NotFound("MooncakeConnector: no payload under '" + d.store_key +
                                "' (already taken, cleaned up, or lost with its segment)");
      }
      if (rc == kInvalidParams) {
        return Status::Corrupt("MooncakeConnector: get_into '" + d.store_key +
                               "': INVALID_PARAMS (-600): the object is larger than the "
                               "descriptor's " +
                               std::to_string(d.size) + " bytes (a stale object)");
      }
      if (rc != kObjectNotFound && !retryable(rc)) return to_status(rc, "get_into " + d.store_key);
      if (!backoff.wait()) {
        return Status::Timeout("MooncakeConnector: get_into '" + d.store_key +
                               "': " + code_name(rc) + " until the deadline");
      }
    }
    std::span<const std::byte> bytes(r.data, r.size);
    if (checksum_of(bytes) != d.checksum) {
      return Status::Corrupt("MooncakeConnector: checksum mismatch on '" + d.store_key + "'");
    }
    api_.remove(store_, d.store_key.c_str(), 1);  // forced: our own get holds a read lease
    c_.bytes_in.fetch_add(r.size, std::memory_order_relaxed);
    return PayloadView::make(d.key, bytes, std::move(keep));
  }

  Result<PayloadView> inline_view(const DescriptorInfo& d) {
    if (checksum_of(std::as_bytes(std::span(d.inline_bytes))) != d.checksum) {
      return Status::Corrupt("MooncakeConnector: inline payload checksum mismatch");
    }
    // Copied into 64-byte aligned memory: payload readers expect aligned tensors.
    size_t n = std::max<size_t>(d.size, 1);
    auto* mem = static_cast<std::byte*>(::operator new (n, std::align_val_t{64}));
    std::memcpy(mem, d.inline_bytes.data(), d.size);
    std::shared_ptr<void> keep(mem, [](void* p) { ::operator delete (p, std::align_val_t{64}); });
    c_.bytes_in.fetch_add(d.size, std::memory_order_relaxed);
    return PayloadView::make(d.key, {mem, d.size}, std::move(keep));
  }

  Result<PayloadView> finish_get(Result<PayloadView> v) {
    if (v.ok()) c_.gets.fetch_add(1, std::memory_order_relaxed);
    return count_error(std::move(v));
  }

  struct EdgeState {
    std::mutex mu;  // one sender (receiver) at a time per edge: sequence numbers stay dense
    uint64_t seq = 0;
  };
  EdgeState& edge_state(std::map<std::string, std::unique_ptr<EdgeState>>& edges,
                        const std::string& edge) {
    std::lock_guard lock(mu_);
    auto& e = edges[edge];
    if (!e) e = std::make_unique<EdgeState>();
    return *e;
  }

  // Channel mode: the descriptor goes to the store under "~channel/{edge}/{seq}".
  Status announce(const PayloadKey& key, const std::string& desc, Deadline deadline) {
    std::string edge = key.from_stage + "_to_" + key.to_stage;
    EdgeState& e = edge_state(send_edges_, edge);
    std::lock_guard edge_lock(e.mu);
    std::string akey = channel_key(edge, e.seq);
    OMNICONN_ASSIGN_OR_RETURN(bool taken, exists(akey, deadline));
    if (taken) {
      return Status::InvalidArgument("MooncakeConnector: channel key '" + akey +
                                     "' is taken (left by an earlier run?): set extra.namespace "
                                     "to a value of this run's own");
    }
    OMNICONN_ASSIGN_OR_RETURN(Region r, client_->acquire(desc.size(), deadline));
    std::memcpy(r.data, desc.data(), desc.size());
    Status st = put_new(akey, {r.data, r.size}, deadline);
    client_->release(r);
    if (st.ok()) ++e.seq;
    return st;
  }

  Result<std::string> take_announcement(const std::string& key, Deadline deadline) {
    Backoff backoff(deadline);
    int64_t size = 0;
    while ((size = api_.get_size(store_, key.c_str())) < 0) {
      if (size != kObjectNotFound && !retryable(size)) return to_status(size, "get_size " + key);
      if (!backoff.wait()) {
        return Status::Timeout("MooncakeConnector: nothing on the channel (" + key +
                               ") until the deadline");
      }
    }
    OMNICONN_ASSIGN_OR_RETURN(Region r, client_->acquire(static_cast<size_t>(size), deadline));
    int64_t got = 0;
    while ((got = api_.get_into(store_, key.c_str(), r.data, r.size)) < 0 && retryable(got) &&
           backoff.wait()) {
    }
    std::string desc(reinterpret_cast<const char*>(r.data), got > 0 ? static_cast<size_t>(got) : 0);
    client_->release(r);
    if (got != size) return to_status(got < 0 ? got : int64_t{kInternalError}, "get_into " + key);
    api_.remove(store_, key.c_str(), 1);
    return desc;
  }

  // Payloads this writer put and no reader has taken yet (as far as it knows): in_flight.
  void track(const std::string& key) {
    std::lock_guard lock(mu_);
    unread_.push_back(key);
    if (unread_.size() > kMaxTracked) unread_.pop_front();
  }
  void forget(const std::string& key) {
    std::lock_guard lock(mu_);
    std::erase(unread_, key);
  }
  uint64_t unread_count() const {
    std::lock_guard lock(mu_);
    std::erase_if(unread_,
                  [&](const std::string& k) { return api_.is_exist(store_, k.c_str()) != 1; });
    return unread_.size();
  }

  MooncakeOptions opts_;
  std::shared_ptr<StoreClient> client_;
  const Api& api_;
  store_t store_;
  mutable Counters c_;
  mutable std::mutex mu_;
  mutable std::deque<std::string> unread_;
  std::map<std::string, std::unique_ptr<EdgeState>> send_edges_, recv_edges_;
};

}  // namespace

ConnectorType mooncake_connector_type() {
  ConnectorType t;
  t.name = "MooncakeConnector";
  t.validate = [](const Value& extra) { return MooncakeOptions::from_extra(extra).status(); };
  t.create = [](const ConnectorSpec& spec) -> Result<std::unique_ptr<Connector>> {
    OMNICONN_ASSIGN_OR_RETURN(MooncakeOptions opts, MooncakeOptions::from_extra(spec.extra));
    OMNICONN_ASSIGN_OR_RETURN(auto client, StoreClient::open(opts));
    return std::unique_ptr<Connector>(new MooncakeConnector(std::move(opts), std::move(client)));
  };
  return t;
}

}  // namespace omniconn

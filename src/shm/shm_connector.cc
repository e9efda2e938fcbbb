// The SharedMemoryConnector: descriptor mode over the allocator (shm_allocator.h) and the
// reader side (shm_reader.h), one control ring per edge (shm_ring.h) for channel mode, and
// its registry entry.
#include "omniconn/shm_connector.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "omniconn/connector_base.h"
#include "shm/shm_allocator.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_key_index.h"
#include "shm/shm_options.h"
#include "shm/shm_reader.h"
#include "shm/shm_ring.h"
#include "shm/shm_server.h"

namespace omniconn {

namespace {

using namespace shm;

class ShmLoan final : public Loan::Impl {
 public:
  ShmLoan(ShmAllocator* allocator, Block block) : allocator_(allocator), block_(block) {}
  ~ShmLoan() override {
    if (!done_) allocator_->abandon(block_);
  }
  std::span<std::byte> bytes() override { return block_.bytes; }
  const Block& block() const { return block_; }
  ShmAllocator* allocator() const { return allocator_; }
  void finish() { done_ = true; }

 private:
  ShmAllocator* allocator_;
  Block block_;
  bool done_ = false;
};

uint64_t header_checksum_of(std::span<const std::byte> payload) {
  uint64_t v;
  std::memcpy(&v, payload.data() + 56, sizeof v);
  return v;
}

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// Seals a loan's payload (checksums) and returns its size. finish_payload has validated the
// header; readers validate the whole payload again, so the writer does not.
Result<size_t> seal_loan(ShmLoan* loan) {
  OMNICONN_RETURN_IF_ERROR(finish_payload(loan->bytes()).WithContext("committed loan"));
  uint64_t total = 0;
  std::memcpy(&total, loan->bytes().data() + 40, sizeof total);  // header: total_size
  if (total < kPayloadHeaderBytes || total > loan->bytes().size()) {
    return Status::InvalidArgument("committed loan: payload size " + std::to_string(total) +
                                   " does not fit the loan of " +
                                   std::to_string(loan->bytes().size()) + " bytes");
  }
  return static_cast<size_t>(total);
}

// A lookup by key that found its payload finishes taking it, even past a deadline of "now"
// (vllm-omni polls with get and no wait): at most this much longer.
constexpr auto kClaimedTakeBudget = std::chrono::seconds(1);

// Whether a failed take by key leaves the entry gone for good (taken, cleaned up, bad, or its
// writer dead) rather than worth putting back (timeout, no memory). Unavailable is the writer's
// death only when nobody listens on its socket any more: a reader out of file descriptors
// must not drop a live writer's entry.
bool entry_is_dead(const Status& st, uint64_t producer_id) {
  switch (st.code()) {
    case StatusCode::kNotFound:
    case StatusCode::kCorrupt:
    case StatusCode::kInvalidArgument:
      return true;
    case StatusCode::kUnavailable:
      return nobody_listens(producer_socket_name(producer_id));
    default:
      return false;
  }
}

class ShmConnector final : public ConnectorBase {
 public:
  explicit ShmConnector(const ShmOptions& o)
      : options_(o),
        producer_id_(random_u64()),
        allocator_(o, producer_id_),
        index_(o.name_space) {}
  ~ShmConnector() override { close_queues(); }  // the rings first; then the server, the arena

  std::string_view type_name() const override { return "SharedMemoryConnector"; }
  Status cleanup(std::string_view request_id) override {
    allocator_.cleanup(request_id);
    index_.remove_request(request_id);
    return Status::Ok();
  }
  Status health() override {
    std::lock_guard lock(server_mu_);
    return fatal_;
  }
  Status sweep(Deadline) override {
    allocator_.reclaim();
    return Status::Ok();
  }

 protected:
  Result<Published> publish(const PayloadKey& key, const PayloadBuilder& payload,
                            Deadline deadline) override;
  Result<Loan> lend(size_t nbytes, Deadline deadline) override;
  Result<Published> publish_loan(Loan loan, const PayloadKey& key, Deadline deadline) override;
  Result<PayloadView> take(std::string_view descriptor, Deadline deadline,
                           DescriptorReceiver* queue) override;
  Result<PayloadView> take_with(std::string_view descriptor, Deadline deadline,
                                const GetOptions& options) override;
  Status index(const PayloadKey& key, Published* p) override;
  Result<PayloadView> take_key(const PayloadKey& key, Deadline deadline,
                               const GetOptions& options) override;
  void withdraw(std::string_view descriptor) override;
  Result<std::unique_ptr<DescriptorSender>> open_sender(std::string_view from,
                                                        std::string_view to) override;
  Result<std::unique_ptr<DescriptorReceiver>> open_receiver(std::string_view from,
                                                            std::string_view to,
                                                            Deadline deadline) override {
    auto rx = EdgeReceiver::open(options_, from, to, deadline);
    if (!rx.ok()) return rx.status();
    return std::unique_ptr<DescriptorReceiver>(std::move(*rx));
  }
  void memory_metrics(Metrics* m) const override;

 private:
  Status ensure_server();
  Result<Block> allocate(size_t nbytes, Deadline deadline);
  Result<Published> publish_inline(const PayloadKey& key, const PayloadBuilder& payload, size_t n);
  Result<Published> publish_block(ShmLoan* loan, const PayloadKey& key, size_t size);
  Result<PayloadView> take_decoded(const DecodedDescriptor& d, Deadline deadline, bool writable);
  Result<PayloadView> take_entry(const PayloadKey& key, const IndexEntry& e, Deadline deadline,
                                 bool writable);

  const ShmOptions options_;
  const uint64_t producer_id_;
  ShmAllocator allocator_;
  mutable std::mutex server_mu_;
  std::atomic<bool> server_ready_{false};
  std::unique_ptr<ShmServer> server_;  // after allocator_: it serves the allocator's segments
  Status fatal_;                       // why the server could not start
  LinkTable links_;
  KeyIndex index_;  // last: its entries go first, while the server still runs
};

// Readers reach this writer's payloads through its server: it runs before the first payload
// that is not inline, and before the first ring.
Status ShmConnector::ensure_server() {
  if (server_ready_.load(std::memory_order_acquire)) return Status::Ok();
  std::lock_guard lock(server_mu_);
  if (server_) return Status::Ok();
  auto s = ShmServer::start(producer_id_, &allocator_);
  if (!s.ok()) {
    fatal_ = s.status();
    return fatal_;
  }
  server_ = std::move(*s);
  server_ready_.store(true, std::memory_order_release);
  return Status::Ok();
}

Result<Block> ShmConnector::allocate(size_t nbytes, Deadline deadline) {
  OMNICONN_RETURN_IF_ERROR(ensure_server());
  return allocator_.allocate(nbytes, deadline);
}

Result<ConnectorBase::Published> ShmConnector::publish_inline(const PayloadKey& key,
                                                              const PayloadBuilder& payload,
                                                              size_t n) {
  alignas(64) static thread_local std::byte scratch[64];  // fast path for tiny payloads
  std::unique_ptr<std::byte, decltype(&std::free)> heap(nullptr, std::free);
  std::byte* dst = scratch;
  if (n > sizeof scratch) {
    heap.reset(static_cast<std::byte*>(std::aligned_alloc(64, round_up(n, 64))));
    if (heap == nullptr) return Status::ResourceExhausted("out of memory for an inline payload");
    dst = heap.get();
  }
  OMNICONN_ASSIGN_OR_RETURN(size_t written, payload.write_to({dst, n}));
  return Published{encode_inline_descriptor(key, {dst, written}), written, true};
}

// A loan is handed over where it was written, whatever its size: copying a small one inline
// (into the descriptor, the ring, out of it, into the view) cost more than the reference
// (4 KiB loan handoff 2.1 us inline against 1.0 us for a 64 KiB one by reference).
Result<ConnectorBase::Published> ShmConnector::publish_block(ShmLoan* loan, const PayloadKey& key,
                                                             size_t size) {
  auto bytes = loan->bytes().first(size);
  auto ref = allocator_.publish(loan->block(), size, header_checksum_of(bytes), key.request_id);
  if (!ref.ok()) return ref.status();
  loan->finish();
  return Published{encode_ref_descriptor(key, *ref), size, false};
}

Result<ConnectorBase::Published> ShmConnector::publish(const PayloadKey& key,
                                                       const PayloadBuilder& payload,
                                                       Deadline deadline) {
  OMNICONN_RETURN_IF_ERROR(check_key(key));
  size_t n = payload.encoded_size();
  if (n <= options_.threshold_bytes) return publish_inline(key, payload, n);
  OMNICONN_ASSIGN_OR_RETURN(Block block, allocate(n, deadline));
  ShmLoan loan(&allocator_, block);
  OMNICONN_ASSIGN_OR_RETURN(size_t written, payload.write_to(loan.bytes()));
  return publish_block(&loan, key, written);
}

Result<Loan> ShmConnector::lend(size_t nbytes, Deadline deadline) {
  OMNICONN_ASSIGN_OR_RETURN(Block block, allocate(nbytes, deadline));
  return Loan(std::make_unique<ShmLoan>(&allocator_, block));
}

Result<ConnectorBase::Published> ShmConnector::publish_loan(Loan loan, const PayloadKey& key,
                                                            Deadline) {
  auto* impl = dynamic_cast<ShmLoan*>(loan.impl());
  if (impl == nullptr || impl->allocator() != &allocator_) {
    return Status::InvalidArgument("loan does not come from this connector");
  }
  OMNICONN_RETURN_IF_ERROR(check_key(key));
  OMNICONN_ASSIGN_OR_RETURN(size_t size, seal_loan(impl));
  return publish_block(impl, key, size);
}

Result<PayloadView> ShmConnector::take(std::string_view descriptor, Deadline deadline,
                                       DescriptorReceiver* queue) {
  auto d = decode_descriptor(bytes_of(descriptor));  // not moved out: a key is three strings
  if (!d.ok()) return d.status();
  if (d->is_inline) return PayloadView::copy(std::move(d->key), d->inline_bytes);
  if (queue != nullptr)
    return take_payload(static_cast<EdgeReceiver*>(queue)->link(), *d, deadline);
  return take_decoded(*d, deadline, false);
}

Result<PayloadView> ShmConnector::take_decoded(const DecodedDescriptor& d, Deadline deadline,
                                               bool writable) {
  if (d.is_inline) return PayloadView::copy(d.key, d.inline_bytes);  // private memory
  auto link = links_.get(d.ref.producer_id, deadline);
  if (!link.ok()) return link.status().WithContext("payload " + d.key.str());
  return take_payload(**link, d, deadline, writable);
}

// Descriptor mode: the payload's key index entry goes with it.
Result<PayloadView> ShmConnector::take_with(std::string_view descriptor, Deadline deadline,
                                            const GetOptions& options) {
  auto d = decode_descriptor(bytes_of(descriptor));
  if (!d.ok()) return d.status();
  auto view = take_decoded(*d, deadline, options.writable);
  if (view.ok()) index_.remove_if(d->key, descriptor);
  return view;
}

Status ShmConnector::index(const PayloadKey& key, Published* p) {
  OMNICONN_RETURN_IF_ERROR(ensure_server());  // readers by key check that the writer lives
  return index_.publish(key, producer_id_, p->descriptor);
}

// An entry is only as good as its writer: a dead writer's entry is refused, even inline.
Result<PayloadView> ShmConnector::take_entry(const PayloadKey& key, const IndexEntry& e,
                                             Deadline deadline, bool writable) {
  auto d = decode_descriptor(bytes_of(e.descriptor));
  if (!d.ok()) return d.status();
  if (d->key != key || (!d->is_inline && d->ref.producer_id != e.producer_id)) {
    return Status::Corrupt("key index entry for '" + key.str() + "' names another payload");
  }
  auto link = links_.get(e.producer_id, deadline);
  if (!link.ok()) return link.status().WithContext("payload " + key.str());
  if ((*link)->hung_up()) {
    return Status::Unavailable("payload " + key.str() + ": its writer process is gone");
  }
  return take_decoded(*d, deadline, writable);
}

// Polls the index (sleeps from 20 us growing to 1 ms) until an entry is claimed and its
// payload taken, or the deadline. Dead entries are dropped and the search goes on.
Result<PayloadView> ShmConnector::take_key(const PayloadKey& key, Deadline deadline,
                                           const GetOptions& options) {
  OMNICONN_RETURN_IF_ERROR(check_key(key));
  std::string refused;
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    OMNICONN_ASSIGN_OR_RETURN(auto entry, index_.claim(key));
    if (entry) {
      auto view = take_entry(key, *entry, std::max(deadline, Clock::now() + kClaimedTakeBudget),
                             options.writable);
      if (view.ok()) return view;
      if (!entry_is_dead(view.status(), entry->producer_id)) {
        index_.restore(key, *entry);
        return view.status();
      }
      refused = view.status().message();
      continue;
    }
    auto now = Clock::now();
    if (now >= deadline) {
      return Status::Timeout("no payload put under key " + key.str() + " (namespace '" +
                             options_.name_space + "') before the deadline" +
                             (refused.empty() ? "" : "; refused one: " + refused));
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

void ShmConnector::withdraw(std::string_view descriptor) {
  auto d = decode_descriptor(bytes_of(descriptor));
  if (d.ok() && !d->is_inline) allocator_.unpublish(d->ref);
}

Result<std::unique_ptr<DescriptorSender>> ShmConnector::open_sender(std::string_view from,
                                                                    std::string_view to) {
  OMNICONN_RETURN_IF_ERROR(ensure_server());
  auto tx = EdgeSender::create(*server_, options_, producer_id_, from, to);
  if (!tx.ok()) return tx.status();
  return std::unique_ptr<DescriptorSender>(std::move(*tx));
}

void ShmConnector::memory_metrics(Metrics* m) const {
  AllocatorStats s = allocator_.stats();
  m->reclaimed = s.reclaimed;
  m->capacity_bytes = s.capacity_bytes;
  m->in_use_bytes = s.in_use_bytes;
  m->in_flight = s.in_flight;
}

ConnectorType shm_connector_type() {
  ConnectorType t;
  t.name = "SharedMemoryConnector";
  t.capabilities.scoped_by_namespace = true;
  t.capabilities.notices_dead_writer = true;
  t.capabilities.reclaims_dead_reader = true;
  t.capabilities.automatic = true;  // vllm-omni's default for an edge without a connector
  t.automatic_extra = Value(Value::Map{{"shm_threshold_bytes", Value(int64_t{65536})}});
  t.validate = [](const Value& extra) {
    ShmOptions o;
    return read_shm_options(extra, &o);
  };
  t.create = [](const ConnectorSpec& spec) -> Result<std::unique_ptr<Connector>> {
    OMNICONN_ASSIGN_OR_RETURN(ShmOptions o, ShmOptions::from_extra(spec.extra));
    return make_shm_connector(o);
  };
  return t;
}

}  // namespace

Result<std::unique_ptr<Connector>> make_shm_connector(const ShmOptions& options) {
  return std::unique_ptr<Connector>(std::make_unique<ShmConnector>(options));
}

Status register_shm_connector(ConnectorRegistry& registry) {
  return registry.register_type(shm_connector_type());
}

}  // namespace omniconn

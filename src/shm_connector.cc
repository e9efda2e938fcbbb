#include "omniconn/shm_connector.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "connector_counters.h"
#include "shm_channel.h"
#include "shm_descriptor.h"
#include "shm_reader.h"
#include "shm_writer.h"

namespace omniconn {

namespace {

using namespace shm;

using Counters = CallCounters;

class ShmLoan final : public Loan::Impl {
 public:
  ShmLoan(ShmWriter* writer, Block block) : writer_(writer), block_(block) {}
  ~ShmLoan() override {
    if (!done_) writer_->abandon(block_);
  }
  std::span<std::byte> bytes() override { return block_.bytes; }
  const Block& block() const { return block_; }
  ShmWriter* writer() const { return writer_; }
  void finish() { done_ = true; }

 private:
  ShmWriter* writer_;
  Block block_;
  bool done_ = false;
};

uint64_t header_checksum_of(std::span<const std::byte> payload) {
  uint64_t v;
  std::memcpy(&v, payload.data() + 56, sizeof v);
  return v;
}

using EdgeId = std::pair<std::string, std::string>;

class ShmConnector final : public Connector {
 public:
  explicit ShmConnector(const ShmOptions& o) : options_(o), writer_(o) {}
  ~ShmConnector() override;

  std::string_view type_name() const override { return "SharedMemoryConnector"; }
  Result<Descriptor> put(const PayloadKey& key, const PayloadBuilder& payload,
                         Deadline deadline) override;
  Result<PayloadView> get(const Descriptor& descriptor, Deadline deadline) override;
  Result<Loan> loan(size_t nbytes, Deadline deadline) override;
  Result<Descriptor> commit(Loan loan, const PayloadKey& key) override;
  Status send(const PayloadKey& key, const PayloadBuilder& payload, Deadline deadline) override;
  Status send_loan(Loan loan, const PayloadKey& key, Deadline deadline) override;
  Result<PayloadView> recv(std::string_view from, std::string_view to, Deadline deadline) override;
  Status cleanup(std::string_view request_id) override;
  Status health() override { return writer_.health(); }
  Metrics metrics() const override;

 private:
  Result<std::string> encode(const PayloadKey& key, const PayloadBuilder& payload,
                             Deadline deadline);
  Result<std::string> publish(ShmLoan* loan, const PayloadKey& key, size_t size);
  Result<std::pair<std::string, size_t>> publish_loan(Loan& loan, const PayloadKey& key);
  Status deliver(const PayloadKey& key, std::string desc, Deadline deadline);
  Result<EdgeSender*> sender(const PayloadKey& key);
  Result<std::shared_ptr<EdgeReceiver>> receiver(std::string_view from, std::string_view to,
                                                 Deadline deadline);
  Result<PayloadView> recv_from(EdgeReceiver& rx, Deadline deadline);
  Result<PayloadView> take(const DecodedDescriptor& d, Link* link, Deadline deadline);
  Status count_status(Status st);

  const ShmOptions options_;
  mutable ShmWriter writer_;
  LinkTable links_;
  std::mutex edges_mu_;
  std::map<EdgeId, std::unique_ptr<EdgeSender>> senders_;
  std::map<EdgeId, std::shared_ptr<EdgeReceiver>> receivers_;
  mutable Counters c_;
};

ShmConnector::~ShmConnector() {
  // Receivers and senders go first; the writer (and its server thread) last.
  receivers_.clear();
  senders_.clear();
}

Status ShmConnector::count_status(Status st) {
  if (st.code() == StatusCode::kTimeout) {
    c_.timeouts.fetch_add(1, std::memory_order_relaxed);
  } else if (!st.ok()) {
    c_.errors.fetch_add(1, std::memory_order_relaxed);
  }
  return st;
}

Result<std::string> ShmConnector::publish(ShmLoan* loan, const PayloadKey& key, size_t size) {
  auto bytes = loan->bytes().first(size);
  if (size <= options_.threshold_bytes) {
    c_.inline_payloads.fetch_add(1, std::memory_order_relaxed);
    return encode_inline_descriptor(key, bytes);  // the loan's space goes back on destruction
  }
  auto ref = writer_.publish(loan->block(), size, header_checksum_of(bytes), key.request_id);
  if (!ref.ok()) return ref.status();
  loan->finish();
  return encode_ref_descriptor(key, *ref);
}

Result<std::string> ShmConnector::encode(const PayloadKey& key, const PayloadBuilder& payload,
                                         Deadline deadline) {
  OMNICONN_RETURN_IF_ERROR(check_key(key));
  size_t n = payload.encoded_size();
  if (n <= options_.threshold_bytes) {
    alignas(64) static thread_local std::byte scratch[64];  // fast path for tiny payloads
    std::unique_ptr<std::byte, decltype(&std::free)> heap(nullptr, std::free);
    std::byte* dst = scratch;
    if (n > sizeof scratch) {
      heap.reset(static_cast<std::byte*>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
      dst = heap.get();
    }
    auto written = payload.write_to({dst, n});
    if (!written.ok()) return written.status();
    c_.inline_payloads.fetch_add(1, std::memory_order_relaxed);
    return encode_inline_descriptor(key, {dst, *written});
  }
  auto block = writer_.allocate(n, deadline);
  if (!block.ok()) return block.status();
  ShmLoan loan(&writer_, *block);
  auto written = payload.write_to(loan.bytes());
  if (!written.ok()) return written.status();
  return publish(&loan, key, *written);
}

Result<Descriptor> ShmConnector::put(const PayloadKey& key, const PayloadBuilder& payload,
                                     Deadline deadline) {
  auto desc = encode(key, payload, deadline);
  if (!desc.ok()) return count_status(desc.status());
  c_.puts.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_out.fetch_add(payload.encoded_size(), std::memory_order_relaxed);
  return Descriptor{std::move(*desc)};
}

Result<Loan> ShmConnector::loan(size_t nbytes, Deadline deadline) {
  auto block = writer_.allocate(nbytes, deadline);
  if (!block.ok()) return count_status(block.status());
  return Loan(std::make_unique<ShmLoan>(&writer_, *block));
}

namespace {

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

}  // namespace

// Checks, seals and publishes a loan; returns its descriptor and payload size.
Result<std::pair<std::string, size_t>> ShmConnector::publish_loan(Loan& loan,
                                                                  const PayloadKey& key) {
  auto* impl = dynamic_cast<ShmLoan*>(loan.impl());
  if (impl == nullptr || impl->writer() != &writer_) {
    return Status::InvalidArgument("loan does not come from this connector");
  }
  OMNICONN_RETURN_IF_ERROR(check_key(key));
  OMNICONN_ASSIGN_OR_RETURN(size_t size, seal_loan(impl));
  OMNICONN_ASSIGN_OR_RETURN(std::string desc, publish(impl, key, size));
  return std::make_pair(std::move(desc), size);
}

Result<Descriptor> ShmConnector::commit(Loan loan, const PayloadKey& key) {
  auto published = publish_loan(loan, key);
  if (!published.ok()) return count_status(published.status());
  c_.puts.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_out.fetch_add(published->second, std::memory_order_relaxed);
  return Descriptor{std::move(published->first)};
}

Result<PayloadView> ShmConnector::take(const DecodedDescriptor& d, Link* link, Deadline deadline) {
  if (d.is_inline) return inline_view(d, {});
  std::shared_ptr<Link> owned;
  if (link == nullptr) {
    auto l = links_.get(d.ref.producer_id, deadline);
    if (!l.ok()) return l.status().WithContext("payload " + d.key.str());
    owned = *l;
    link = owned.get();
  }
  return take_payload(*link, d, deadline, {});
}

Result<PayloadView> ShmConnector::get(const Descriptor& descriptor, Deadline deadline) {
  auto d = decode_descriptor(std::as_bytes(std::span(descriptor.bytes)));
  if (!d.ok()) return count_status(d.status());
  auto view = take(*d, nullptr, deadline);
  if (!view.ok()) return count_status(view.status());
  c_.gets.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_in.fetch_add(view->bytes().size(), std::memory_order_relaxed);
  return view;
}

Result<EdgeSender*> ShmConnector::sender(const PayloadKey& key) {
  std::lock_guard lock(edges_mu_);
  EdgeId id{key.from_stage, key.to_stage};
  auto it = senders_.find(id);
  if (it != senders_.end()) return it->second.get();
  auto s = EdgeSender::create(writer_, options_, key.from_stage, key.to_stage);
  if (!s.ok()) return s.status();
  return senders_.emplace(id, std::move(*s)).first->second.get();
}

Status ShmConnector::deliver(const PayloadKey& key, std::string desc, Deadline deadline) {
  auto tx = sender(key);
  if (!tx.ok()) return tx.status();
  Status st = (*tx)->write(std::as_bytes(std::span(desc)), deadline);
  if (st.ok()) return st;
  auto d = decode_descriptor(std::as_bytes(std::span(desc)));
  if (d.ok() && !d->is_inline) writer_.unpublish(d->ref);  // never delivered: take it back
  return st;
}

Status ShmConnector::send(const PayloadKey& key, const PayloadBuilder& payload, Deadline deadline) {
  auto desc = encode(key, payload, deadline);
  if (!desc.ok()) return count_status(desc.status());
  OMNICONN_RETURN_IF_ERROR(count_status(deliver(key, std::move(*desc), deadline)));
  c_.sends.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_out.fetch_add(payload.encoded_size(), std::memory_order_relaxed);
  return Status::Ok();
}

Status ShmConnector::send_loan(Loan loan, const PayloadKey& key, Deadline deadline) {
  auto published = publish_loan(loan, key);
  if (!published.ok()) return count_status(published.status());
  OMNICONN_RETURN_IF_ERROR(count_status(deliver(key, std::move(published->first), deadline)));
  c_.sends.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_out.fetch_add(published->second, std::memory_order_relaxed);
  return Status::Ok();
}

Result<std::shared_ptr<EdgeReceiver>> ShmConnector::receiver(std::string_view from,
                                                             std::string_view to,
                                                             Deadline deadline) {
  EdgeId id{std::string(from), std::string(to)};
  {
    std::lock_guard lock(edges_mu_);
    auto it = receivers_.find(id);
    if (it != receivers_.end()) return it->second;
  }
  // Connect without the lock: waiting for one edge's writer must not stall other edges.
  auto backoff = std::chrono::microseconds(200);
  for (;;) {
    auto rx = EdgeReceiver::open(options_, from, to, deadline);
    if (rx.ok()) {
      std::lock_guard lock(edges_mu_);
      return receivers_.try_emplace(id, std::move(*rx)).first->second;
    }
    if (rx.status().code() != StatusCode::kNotFound) return rx.status();
    auto now = Clock::now();
    if (now >= deadline) {
      return Status::Timeout("no writer on edge " + id.first + "->" + id.second + " (namespace '" +
                             options_.name_space + "') before the deadline");
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::microseconds(20000));
  }
}

Result<PayloadView> ShmConnector::recv_from(EdgeReceiver& rx, Deadline deadline) {
  std::lock_guard lock(rx.mu());
  std::string record;
  for (;;) {
    auto got = rx.peek(&record);
    if (!got.ok()) return got.status();
    if (*got) {
      auto d = decode_descriptor(std::as_bytes(std::span(record)));
      if (!d.ok()) {
        rx.advance();
        return d.status();
      }
      auto view = take(*d, &rx.link(), deadline);
      // Timeout / unavailable: the record stays for the next recv (nothing was claimed).
      StatusCode code = view.ok() ? StatusCode::kOk : view.status().code();
      if (code == StatusCode::kOk || code == StatusCode::kNotFound ||
          code == StatusCode::kCorrupt) {
        rx.advance();
      }
      if (code == StatusCode::kNotFound) continue;  // cleaned up
      return view;
    }
    OMNICONN_RETURN_IF_ERROR(rx.wait(options_.spin_us, deadline));
  }
}

Result<PayloadView> ShmConnector::recv(std::string_view from, std::string_view to,
                                       Deadline deadline) {
  auto rx = receiver(from, to, deadline);
  if (!rx.ok()) return count_status(rx.status());
  auto view = recv_from(**rx, deadline);
  if (!view.ok()) {
    if (view.status().code() == StatusCode::kUnavailable) {
      std::lock_guard lock(edges_mu_);  // the writer is gone: reconnect on the next call
      auto it = receivers_.find(EdgeId{std::string(from), std::string(to)});
      if (it != receivers_.end() && it->second == *rx) receivers_.erase(it);
    }
    return count_status(view.status());
  }
  c_.gets.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_in.fetch_add(view->bytes().size(), std::memory_order_relaxed);
  return view;
}

Status ShmConnector::cleanup(std::string_view request_id) {
  writer_.cleanup(request_id);
  return Status::Ok();
}

Metrics ShmConnector::metrics() const {
  Metrics m = c_.snapshot();
  WriterStats s = writer_.stats();
  m.reclaimed = s.reclaimed;
  m.capacity_bytes = s.capacity_bytes;
  m.in_use_bytes = s.in_use_bytes;
  m.in_flight = s.in_flight;
  return m;
}

}  // namespace

Result<std::unique_ptr<Connector>> make_shm_connector(const ShmOptions& options) {
  return std::unique_ptr<Connector>(std::make_unique<ShmConnector>(options));
}

}  // namespace omniconn

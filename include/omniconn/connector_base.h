// ConnectorBase: what every connector type shares, written once. A type supplies descriptor
// mode (publish, lend, publish_loan, take), a descriptor queue per edge and its memory
// figures; ConnectorBase builds channel mode on those (send = publish + push, recv = peek +
// take + consume) and keeps the call counters of Metrics.
//
// A recv consumes a queued descriptor only once its payload was taken, found gone (NotFound:
// cleaned up, skipped) or found bad; a recv that times out or cannot reach the payload yet
// leaves it queued for the next recv, so nothing is lost.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "omniconn/connector.h"

namespace omniconn {

// The writing end of one edge's descriptor queue. push may be called from several threads.
class DescriptorSender {
 public:
  virtual ~DescriptorSender() = default;
  // Appends one descriptor; waits for room until `deadline`, then ResourceExhausted.
  virtual Status push(std::string_view descriptor, Deadline deadline) = 0;
};

// The reading end of one edge's descriptor queue; ConnectorBase calls it under a lock.
class DescriptorReceiver {
 public:
  virtual ~DescriptorReceiver() = default;
  // The oldest descriptor not yet consumed, left in the queue (false: none yet). Waits only
  // for transport resources (until `deadline`), never for a descriptor to arrive.
  virtual Result<bool> peek(std::string* descriptor, Deadline deadline) = 0;
  // Consumes the descriptor the last peek returned.
  virtual void consume() = 0;
  // Returns once peek may find a descriptor; Timeout at the deadline; Unavailable when the
  // writer is gone and nothing is left to read (the next recv opens the queue again). Only
  // this Unavailable drops the queue: one from peek or take (a store unreachable for now)
  // keeps it, and its position.
  virtual Status wait(Deadline deadline) = 0;
};

class ConnectorBase : public Connector {
 public:
  ~ConnectorBase() override;

  Result<Descriptor> put(const PayloadKey& key, const PayloadBuilder& payload,
                         Deadline deadline) final;
  Result<PayloadView> get(const Descriptor& descriptor, Deadline deadline) final;
  Result<PayloadView> get(const Descriptor& descriptor, Deadline deadline,
                          const GetOptions& options) final;
  Result<PayloadView> get(const PayloadKey& key, Deadline deadline,
                          const GetOptions& options) final;
  Result<Loan> loan(size_t nbytes, Deadline deadline) final;
  Result<Descriptor> commit(Loan loan, const PayloadKey& key, Deadline deadline) final;
  Status send(const PayloadKey& key, const PayloadBuilder& payload, Deadline deadline) final;
  Status send_loan(Loan loan, const PayloadKey& key, Deadline deadline) final;
  Result<PayloadView> recv(std::string_view from_stage, std::string_view to_stage,
                           Deadline deadline) final;
  Metrics metrics() const final;

 protected:
  ConnectorBase() = default;

  // A payload made readable, in descriptor form.
  struct Published {
    std::string descriptor;
    size_t size = 0;  // payload bytes
    bool is_inline = false;
  };

  // Writes the payload into transport memory (or the descriptor, when small) and publishes it.
  virtual Result<Published> publish(const PayloadKey& key, const PayloadBuilder& payload,
                                    Deadline deadline) = 0;
  virtual Result<Loan> lend(size_t nbytes, Deadline deadline) = 0;
  // Seals (finish_payload) and publishes a loan of this connector; InvalidArgument for
  // another's.
  virtual Result<Published> publish_loan(Loan loan, const PayloadKey& key, Deadline deadline) = 0;
  // The payload a descriptor names, taken for this reader. `queue` is the receiver it came
  // from in channel mode, nullptr in descriptor mode.
  virtual Result<PayloadView> take(std::string_view descriptor, Deadline deadline,
                                   DescriptorReceiver* queue) = 0;
  // Descriptor mode (take with queue == nullptr) with options. The default: take, then a
  // private copy when the view must be writable.
  virtual Result<PayloadView> take_with(std::string_view descriptor, Deadline deadline,
                                        const GetOptions& options);
  // Descriptor mode only (put, commit): makes a published payload findable by its key; may
  // replace p->descriptor. A failure fails the put (the payload is withdrawn). Default: nothing.
  virtual Status index(const PayloadKey& key, Published* p);
  // The payload put under `key` (see Connector::get by key). Default: InvalidArgument.
  virtual Result<PayloadView> take_key(const PayloadKey& key, Deadline deadline,
                                       const GetOptions& options);
  // Takes back a published payload that will never be delivered (its push failed).
  virtual void withdraw(std::string_view descriptor) = 0;
  virtual Result<std::unique_ptr<DescriptorSender>> open_sender(std::string_view from,
                                                                std::string_view to) = 0;
  // NotFound while no writer serves the edge: retried until the deadline, whose Timeout
  // carries the NotFound's message.
  virtual Result<std::unique_ptr<DescriptorReceiver>> open_receiver(std::string_view from,
                                                                    std::string_view to,
                                                                    Deadline deadline) = 0;
  // Fills capacity_bytes, in_use_bytes, in_flight and reclaimed; cheap, no side effects.
  virtual void memory_metrics(Metrics* m) const = 0;

  // Drops every queue. A type whose queues use its own members calls this first in its
  // destructor, before those members go.
  void close_queues();

 private:
  using EdgeId = std::pair<std::string, std::string>;
  // Finds an edge by (from, to) views: a lookup builds no strings.
  struct EdgeLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<std::string_view, std::string_view>(a.first, a.second) <
             std::pair<std::string_view, std::string_view>(b.first, b.second);
    }
  };
  using EdgeView = std::pair<std::string_view, std::string_view>;
  struct Inbox {
    std::mutex mu;  // one recv at a time per edge
    std::unique_ptr<DescriptorReceiver> queue;
  };
  struct Counters {
    std::atomic<uint64_t> puts{0}, sends{0}, gets{0}, inline_payloads{0}, bytes_out{0}, bytes_in{0},
        timeouts{0}, errors{0};
    std::array<std::atomic<uint64_t>, kStatusCodeCount> by_code{};
    AtomicLatencyHistogram put_latency, get_latency;
  };

  Result<Descriptor> indexed(const PayloadKey& key, Result<Published> p, Clock::time_point t0);
  Status counted(Status st);
  void count_out(const Published& p, std::atomic<uint64_t>* calls, Clock::time_point t0);
  Result<PayloadView> count_in(Result<PayloadView> view, Clock::time_point t0);
  Status deliver(const PayloadKey& key, const Published& p, Deadline deadline);
  Result<DescriptorSender*> sender(const PayloadKey& key);
  Result<std::shared_ptr<Inbox>> inbox(std::string_view from, std::string_view to,
                                       Deadline deadline);
  Result<PayloadView> next_from(Inbox& in, Deadline deadline, bool* writer_gone,
                                Clock::time_point* t0);
  void drop_inbox(std::string_view from, std::string_view to, const std::shared_ptr<Inbox>& in);

  Counters c_;
  std::mutex edges_mu_;
  std::map<EdgeId, std::unique_ptr<DescriptorSender>, EdgeLess> senders_;
  std::map<EdgeId, std::shared_ptr<Inbox>, EdgeLess> inboxes_;
};

}  // namespace omniconn

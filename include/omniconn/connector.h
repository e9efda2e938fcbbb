// Connector: moves payloads across one pipeline edge (from_stage -> to_stage).
//
// Two ways to use one:
//  * descriptor mode: put() returns a small self-contained Descriptor that the caller carries
//    any way it likes (a queue, an RPC); get(descriptor) returns a view of the payload.
//  * channel mode: send()/recv() on an edge; the connector carries the descriptors itself, so
//    stages talk directly and the orchestrator stays out of the data path.
// Both modes have a zero-copy write path: loan(nbytes) -> write in place -> commit/send_loan.
// Every blocking call takes a deadline and returns a typed Status; no call throws.
// Connectors are made by type name through the registry (registry.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "omniconn/deadline.h"
#include "omniconn/histogram.h"
#include "omniconn/loan.h"
#include "omniconn/payload.h"
#include "omniconn/status.h"
#include "omniconn/value.h"

namespace omniconn {

// Identifies one payload: one request crossing one edge.
struct PayloadKey {
  std::string request_id;
  std::string from_stage;
  std::string to_stage;

  // vllm-omni's key scheme: "{request_id}/{from}_to_{to}".
  std::string str() const;
  bool operator==(const PayloadKey&) const = default;
};

// A self-contained byte string naming one payload (inline payloads carry their bytes).
struct Descriptor {
  std::string bytes;
};

// How a reader wants a payload's memory.
struct GetOptions {
  // The view's bytes may be written through a const_cast: a type maps them copy-on-write (the
  // writes stay in this view) or copies them. Off: the memory may be mapped read-only.
  bool writable = false;
};

// A read-only view of a received payload. The memory stays valid (and its transport space
// stays reserved) until the last copy of the view is destroyed or release() is called.
class PayloadView {
 public:
  PayloadView() = default;

  // Validates `bytes` as a payload; `keepalive` is destroyed when the last view goes away
  // (that is how a connector learns the space can be reused).
  static Result<PayloadView> make(PayloadKey key, std::span<const std::byte> bytes,
                                  std::shared_ptr<void> keepalive, ReadOptions opts = {});
  // Copies `bytes` (an inline payload) into 64-byte aligned memory owned by the view.
  static Result<PayloadView> copy(PayloadKey key, std::span<const std::byte> bytes);

  bool valid() const { return state_ != nullptr; }
  const PayloadKey& key() const;
  std::span<const std::byte> bytes() const;
  const PayloadReader& reader() const;
  void release() { state_.reset(); }

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

struct Metrics {
  uint64_t puts = 0;             // put + commit (descriptor mode)
  uint64_t sends = 0;            // send + send_loan (channel mode)
  uint64_t gets = 0;             // get + recv that returned a payload
  uint64_t inline_payloads = 0;  // payloads that travelled inline
  uint64_t bytes_out = 0;
  uint64_t bytes_in = 0;
  uint64_t timeouts = 0;
  uint64_t errors = 0;          // failed calls other than timeouts
  uint64_t reclaimed = 0;       // payloads whose space was reclaimed from a dead or absent reader
  uint64_t capacity_bytes = 0;  // transport memory this process holds for writing
  uint64_t in_use_bytes = 0;
  uint64_t in_flight = 0;  // payloads written and not yet released by their reader
  // Failed calls by StatusCode (index); [kTimeout] == timeouts, the others sum to errors.
  std::array<uint64_t, kStatusCodeCount> errors_by_code{};
  // Successful calls. put: put, commit, send, send_loan (waiting for space included);
  // get: get, and recv from the moment a payload was there (waiting for one excluded).
  LatencyHistogram put_latency, get_latency;

  // Counters, gauges, errors_by_code as a map of non-zero codes by name, and each latency as
  // {count, sum_ns, bounds_ns, counts}.
  Value to_value() const;
};

class Connector {
 public:
  virtual ~Connector() = default;

  virtual std::string_view type_name() const = 0;

  // Descriptor mode. put = exactly one copy of the tensor data into transport memory.
  virtual Result<Descriptor> put(const PayloadKey& key, const PayloadBuilder& payload,
                                 Deadline deadline) = 0;
  // NotFound for a payload already taken or cleaned up; Corrupt / InvalidArgument for bytes
  // that are not an intact descriptor of this connector type.
  virtual Result<PayloadView> get(const Descriptor& descriptor, Deadline deadline) = 0;
  virtual Result<PayloadView> get(const Descriptor& descriptor, Deadline deadline,
                                  const GetOptions& options) = 0;
  // Descriptor mode without the descriptor: the payload put (put or commit, not send) under
  // `key` by any writer this connector can reach (same namespace), taken once. Waits for it
  // until `deadline`, then Timeout with why nothing was found; InvalidArgument for a type that
  // cannot look payloads up by key.
  virtual Result<PayloadView> get(const PayloadKey& key, Deadline deadline,
                                  const GetOptions& options) = 0;

  // Zero-copy write path. A full transport blocks until `deadline`, then ResourceExhausted.
  virtual Result<Loan> loan(size_t nbytes, Deadline deadline) = 0;
  // Seals the payload written into the loan (finish_payload) and publishes it.
  virtual Result<Descriptor> commit(Loan loan, const PayloadKey& key, Deadline deadline) = 0;

  // Channel mode on the edge key.from_stage -> key.to_stage.
  virtual Status send(const PayloadKey& key, const PayloadBuilder& payload, Deadline deadline) = 0;
  virtual Status send_loan(Loan loan, const PayloadKey& key, Deadline deadline) = 0;
  virtual Result<PayloadView> recv(std::string_view from_stage, std::string_view to_stage,
                                   Deadline deadline) = 0;

  // Drops everything this process holds for the request: unread payloads it wrote, payloads
  // queued for it and not yet received. A payload belongs to the request by
  // belongs_to_request (stream.h): its id, or a chunk key "{request_id}_{stage}_{chunk}".
  virtual Status cleanup(std::string_view request_id) = 0;

  virtual Status health() = 0;
  // Takes back the space readers have released (or lost with their process) and brings the
  // in-flight figures of metrics() up to date; may ask a remote store, so it takes a deadline.
  // Writing calls do this themselves when they need space.
  virtual Status sweep(Deadline deadline) = 0;
  // Counters and memory figures as of the last call that changed them: cheap, no side effects.
  virtual Metrics metrics() const = 0;
};

}  // namespace omniconn

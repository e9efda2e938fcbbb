// Channel mode of the SharedMemoryConnector: one control ring per edge, in a memfd owned by
// the edge's writer. Records carry descriptors (inline payloads included); a waiting reader
// spins briefly, then sleeps on a futex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "omniconn/connector_base.h"
#include "omniconn/shm_connector.h"
#include "shm/shm_layout.h"
#include "shm/shm_os.h"
#include "shm/shm_reader.h"
#include "shm/shm_server.h"

namespace omniconn::shm {

// The ring's record format, as pure functions over a data area of `cap` bytes (a multiple of 8)
// so that the parser can be fuzzed apart from shared memory. Indices run free; position = i % cap.
struct RingRecord {
  enum Kind { kNone, kPad, kDescriptor } kind = kNone;  // kNone: the ring is empty (head == tail)
  uint64_t pos = 0;   // offset of the record header in the data area
  uint32_t len = 0;   // body bytes (descriptor records)
  uint64_t size = 0;  // header + body padded to 8: tail + size is the next record
};
// Parses the record at `tail`, given the `head` the writer published. Never reads outside
// data[0, cap); Corrupt when the indices or the record could not have been written by a writer.
Result<RingRecord> parse_ring_record(const std::byte* data, uint64_t cap, uint64_t head,
                                     uint64_t tail);
// Ring bytes a record of `body_size` needs at `head` (its own size, plus a pad record when it
// would not fit before the end of the data area).
uint64_t ring_space_needed(uint64_t cap, uint64_t head, size_t body_size);
// Writes the record (and its pad) at `head`; returns the new head. The caller checked the space.
uint64_t append_ring_record(std::byte* data, uint64_t cap, uint64_t head,
                            std::span<const std::byte> body);

// The writing end of an edge: owns the ring and serves it to the edge's reader.
class EdgeSender final : public DescriptorSender {
 public:
  // Creates the ring and serves it on the edge's socket name. Unavailable when another
  // process already writes on this edge.
  static Result<std::unique_ptr<EdgeSender>> create(ShmServer& server, const ShmOptions& options,
                                                    uint64_t producer_id, std::string_view from,
                                                    std::string_view to);
  // Appends one record; waits for ring space until `deadline` (then ResourceExhausted).
  Status push(std::string_view descriptor, Deadline deadline) override;

 private:
  // Spins up to spin_us for ring space before sleeping on the futex: a reader a little slower
  // than the writer would otherwise cost a futex wait and a wake per record.
  bool spin_for_space(uint64_t head, uint64_t required, Deadline deadline) const;

  std::string edge_;
  Fd fd_;
  Mapping map_;
  RingHeader* ring_ = nullptr;
  std::byte* data_ = nullptr;
  uint32_t spin_us_ = 0;
  std::mutex mu_;
};

// The reading end of an edge: the ring mapped through a link to the edge's writer.
class EdgeReceiver final : public DescriptorReceiver {
 public:
  // Connects to the edge's writer; NotFound while no writer serves the edge.
  static Result<std::unique_ptr<EdgeReceiver>> open(const ShmOptions& options,
                                                    std::string_view from, std::string_view to,
                                                    Deadline deadline);
  Result<bool> peek(std::string* descriptor, Deadline deadline) override;
  void consume() override;
  // Spins spin_us, then sleeps on the futex in short slices; Unavailable once the writer is
  // gone and the ring drained.
  Status wait(Deadline deadline) override;
  // The link the ring came through: payloads of this edge are taken over it.
  Link& link() { return *link_; }

 private:
  bool empty() const;

  std::string edge_;
  std::shared_ptr<Link> link_;
  Fd fd_;
  Mapping map_;
  RingHeader* ring_ = nullptr;
  const std::byte* data_ = nullptr;
  uint64_t capacity_ = 0;   // of the data area, as checked at open
  uint64_t next_tail_ = 0;  // the tail after the record peek() returned
  uint32_t spin_us_ = 0;
};

}  // namespace omniconn::shm

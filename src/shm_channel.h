// Channel mode of the SharedMemoryConnector: one control ring per edge, in a memfd owned by
// the edge's writer. Records carry descriptors (inline payloads included); a waiting reader
// spins briefly, then sleeps on a futex.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "omniconn/shm_connector.h"
#include "shm_layout.h"
#include "shm_os.h"
#include "shm_reader.h"
#include "shm_writer.h"

namespace omniconn::shm {

class EdgeSender {
 public:
  // Creates the ring and starts serving it on the edge's socket name. Unavailable when another
  // process already writes on this edge.
  static Result<std::unique_ptr<EdgeSender>> create(ShmWriter& writer, const ShmOptions& options,
                                                    std::string_view from, std::string_view to);
  // Appends one record; waits for ring space until `deadline` (then ResourceExhausted).
  Status write(std::span<const std::byte> body, Deadline deadline);

 private:
  std::string edge_;
  Fd fd_;
  Mapping map_;
  RingHeader* ring_ = nullptr;
  std::byte* data_ = nullptr;
  std::mutex mu_;
};

class EdgeReceiver {
 public:
  // Connects to the edge's writer; NotFound while no writer serves the edge.
  static Result<std::unique_ptr<EdgeReceiver>> open(const ShmOptions& options,
                                                    std::string_view from, std::string_view to,
                                                    Deadline deadline);
  // Next record (a descriptor) copied into *out; false when the ring is empty.
  // The next descriptor record, left in the ring (false: none yet); advance() consumes it.
  // recv advances only once the payload was taken (or is gone), so a recv that times out or a
  // reader killed before taking it never loses a payload or leaks its slot.
  Result<bool> peek(std::string* out);
  void advance();
  // Waits for a record: spins `spin_us`, then sleeps on the futex in short slices.
  // Returns Unavailable when the writer is gone and the ring is drained.
  Status wait(uint32_t spin_us, Deadline deadline);
  Link& link() { return *link_; }
  std::mutex& mu() { return mu_; }

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
  std::mutex mu_;
};

}  // namespace omniconn::shm

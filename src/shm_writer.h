// ShmWriter: the writing side of the SharedMemoryConnector in one process. It owns the arena
// (one pre-faulted memfd, reused), the dedicated segments of payloads larger than the arena,
// the slot bookkeeping, and the socket server that hands segments and rings to readers.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "omniconn/shm_connector.h"
#include "range_allocator.h"
#include "shm_descriptor.h"
#include "shm_layout.h"
#include "shm_os.h"

namespace omniconn::shm {

// A mapped segment as its writer sees it (read-write, whole memfd).
struct Segment {
  uint32_t id = 0;
  Fd fd;
  Mapping map;
  SegmentHeader* header = nullptr;
  Slot* slots = nullptr;
  std::byte* data = nullptr;
};

// Space taken by loan()/put(), in state WRITING until published or abandoned.
struct Block {
  uint32_t segment_id = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint64_t offset = 0;
  std::span<std::byte> bytes;
};

struct WriterStats {
  uint64_t capacity_bytes = 0;
  uint64_t in_use_bytes = 0;
  uint64_t in_flight = 0;
  uint64_t reclaimed = 0;
};

class ShmWriter {
 public:
  explicit ShmWriter(const ShmOptions& options);
  ~ShmWriter();
  ShmWriter(const ShmWriter&) = delete;
  ShmWriter& operator=(const ShmWriter&) = delete;

  uint64_t producer_id() const { return producer_id_; }

  // Reserves `nbytes` (64-byte aligned); waits for space until `deadline`.
  Result<Block> allocate(size_t nbytes, Deadline deadline);
  // Makes the first `size` bytes of the block visible to one reader.
  Result<ShmRef> publish(const Block& block, size_t size, uint64_t header_checksum,
                         const std::string& request_id);
  void abandon(const Block& block);
  // Takes back a published payload nobody has taken yet (false when a reader won).
  bool unpublish(const ShmRef& ref);
  // Frees the request's published, unread payloads; returns how many.
  size_t cleanup(std::string_view request_id);
  // Serves `ring_fd` to readers that connect to `edge_socket`.
  Status serve_edge(const std::string& edge_socket, int ring_fd);

  WriterStats stats();
  Status health();

 private:
  struct SlotInfo {
    uint32_t segment_id = 0;
    uint64_t offset = 0;
    uint64_t reserved = 0;  // bytes taken from the arena (or the dedicated segment's size)
    uint32_t generation = 0;
    bool in_use = false;
    std::string request_id;
  };
  struct Server;

  Status ensure_started_locked();
  Status create_arena_locked();
  struct Dedicated {
    std::unique_ptr<Segment> seg;
    SlotInfo info;
  };
  // Calls fn(segment, slot index, info) for every slot that holds a payload.
  template <typename Fn>
  void for_each_in_use_locked(Fn&& fn);

  Result<Block> try_allocate_locked(size_t nbytes, bool* retry);
  Result<Block> allocate_arena_locked(size_t nbytes);
  Result<Block> allocate_dedicated_locked(size_t nbytes);
  void reclaim_locked(bool force);
  void free_locked(Segment* seg, uint32_t slot, SlotInfo* info);
  std::pair<Segment*, SlotInfo*> lookup_locked(uint32_t segment_id, uint32_t slot);
  void release_dead_reader(uint32_t reader_id);
  int segment_fd_for_reader(uint32_t id, uint64_t* size);
  static void wait_for_release(SegmentHeader* h, uint32_t seen, Deadline deadline);

  const ShmOptions options_;
  const uint64_t producer_id_;
  std::mutex mu_;
  std::unique_ptr<Segment> arena_;
  std::map<uint32_t, Dedicated> dedicated_;  // by segment id
  uint32_t next_segment_id_ = 1;
  RangeAllocator free_;          // the arena's free ranges
  std::vector<SlotInfo> slots_;  // arena slots
  std::vector<uint32_t> free_slots_;
  uint32_t last_release_seq_ = 0;
  uint64_t in_use_bytes_ = 0;
  uint64_t in_flight_ = 0;
  uint64_t reclaimed_ = 0;
  std::unique_ptr<Server> server_;
  Status fatal_;
};

}  // namespace omniconn::shm

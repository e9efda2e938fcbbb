// ShmAllocator: the memory a SharedMemoryConnector writes payloads into, in one process. It
// owns the arena (one pre-faulted memfd, reused), the dedicated segments of payloads larger
// than the arena, and the slots that carry each payload in flight through its states:
// FREE -> WRITING (allocate) -> PUBLISHED (publish) -> READING (a reader took it) -> RELEASED
// (its last view is gone) -> FREE (reclaim). Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/range_allocator.h"
#include "omniconn/shm_connector.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_layout.h"
#include "shm/shm_os.h"

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

// Space taken by allocate(), in state WRITING until published or abandoned.
struct Block {
  uint32_t segment_id = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint64_t offset = 0;
  std::span<std::byte> bytes;
};

struct AllocatorStats {
  uint64_t capacity_bytes = 0;
  uint64_t in_use_bytes = 0;
  uint64_t in_flight = 0;
  uint64_t reclaimed = 0;
};

class ShmAllocator {
 public:
  ShmAllocator(const ShmOptions& options, uint64_t producer_id);
  ShmAllocator(const ShmAllocator&) = delete;
  ShmAllocator& operator=(const ShmAllocator&) = delete;

  // Reserves `nbytes` (64-byte aligned); waits for space until `deadline`, then
  // ResourceExhausted with the occupancy.
  Result<Block> allocate(size_t nbytes, Deadline deadline);
  // Makes the first `size` bytes of the block visible to one reader.
  Result<ShmRef> publish(const Block& block, size_t size, uint64_t header_checksum,
                         const std::string& request_id);
  void abandon(const Block& block);
  // Takes back a published payload nobody has taken yet (false when a reader won).
  bool unpublish(const ShmRef& ref);
  // Frees the request's published, unread payloads; returns how many.
  size_t cleanup(std::string_view request_id);
  // Frees the slots readers released since the last look.
  void reclaim();

  // For the server that serves readers: a reader's connection dropped (it died), so the
  // slots it held are released; the segment a reader asks for (a dup of its fd, or an
  // invalid Fd when there is no such segment).
  void release_reader(uint32_t reader_id);
  Fd segment_fd(uint32_t segment_id, uint64_t* size);

  AllocatorStats stats() const;

 private:
  struct SlotInfo {
    uint32_t segment_id = 0;
    uint64_t offset = 0;
    uint64_t reserved = 0;  // bytes taken from the arena (or the dedicated segment's size)
    uint32_t generation = 0;
    bool in_use = false;
    uint32_t pos = 0;  // an arena slot's index in in_use_
    std::string request_id;
  };
  struct Dedicated {
    std::unique_ptr<Segment> seg;
    SlotInfo info;
  };

  Status create_arena_locked();
  // Calls fn(segment, slot index, info) for every slot that holds a payload (of the arena
  // only when `arena`); fn may free the slot it is given.
  template <typename Fn>
  void for_each_in_use_locked(Fn&& fn, bool arena = true);
  // nullopt: no space now (worth waiting for); a Status: failed for good.
  std::optional<Result<Block>> try_allocate_locked(size_t nbytes);
  std::optional<Block> allocate_arena_locked(size_t nbytes);
  Result<Block> allocate_dedicated_locked(size_t nbytes);
  void reclaim_locked(bool force);
  void free_locked(Segment* seg, uint32_t slot, SlotInfo* info);
  std::pair<Segment*, SlotInfo*> lookup_locked(uint32_t segment_id, uint32_t slot);
  Status full(size_t nbytes, Clock::time_point since) const;

  const ShmOptions options_;
  const uint64_t producer_id_;
  mutable std::mutex mu_;
  std::unique_ptr<Segment> arena_;
  std::map<uint32_t, Dedicated> dedicated_;  // by segment id
  uint32_t next_segment_id_ = 1;
  RangeAllocator free_;          // the arena's free ranges
  std::vector<SlotInfo> slots_;  // arena slots
  std::vector<uint32_t> free_slots_;
  std::vector<uint32_t> in_use_;  // the arena slots holding a payload: scans cost what is in flight
  uint32_t last_release_seq_ = 0;
  uint64_t in_use_bytes_ = 0;
  uint64_t in_flight_ = 0;
  uint64_t reclaimed_ = 0;
};

}  // namespace omniconn::shm

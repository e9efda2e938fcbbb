#include "shm/shm_allocator.h"

#include <unistd.h>

#include <thread>

#include "omniconn/stream.h"

namespace omniconn::shm {

namespace {

constexpr size_t kAlign = 64;

Result<std::unique_ptr<Segment>> create_segment(uint64_t producer_id, uint32_t id,
                                                uint32_t slot_count, size_t data_size) {
  size_t data_offset = segment_data_offset(slot_count);
  size_t total = data_offset + round_up(data_size, kPage);
  auto fd = create_memfd("omniconn-segment", total);
  if (!fd.ok()) return fd.status();
  auto map = map_fd(fd->get(), 0, total, /*writable=*/true, /*populate=*/true);
  if (!map.ok()) return map.status();
  auto seg = std::make_unique<Segment>();
  seg->id = id;
  seg->fd = std::move(*fd);
  seg->map = std::move(*map);
  seg->header = new (seg->map.data()) SegmentHeader{};
  seg->header->magic = kSegmentMagic;
  seg->header->version = 1;
  seg->header->slot_count = slot_count;
  seg->header->data_offset = data_offset;
  seg->header->data_size = total - data_offset;
  seg->header->producer_id = producer_id;
  seg->header->segment_id = id;
  seg->slots = reinterpret_cast<Slot*>(seg->map.data() + kSlotTableOffset);
  for (uint32_t i = 0; i < slot_count; ++i) new (&seg->slots[i]) Slot{};
  seg->data = seg->map.data() + data_offset;
  return seg;
}

// Sleeps until a reader releases a slot of the arena (its release_seq moves past `seen`),
// for at most 2 ms and never past the deadline.
void wait_for_release(SegmentHeader* h, uint32_t seen, Deadline deadline) {
  auto slice = std::chrono::nanoseconds(std::chrono::milliseconds(2));
  auto left = deadline - Clock::now();
  if (left < slice) slice = std::chrono::duration_cast<std::chrono::nanoseconds>(left);
  if (slice.count() <= 0) return;
  if (h == nullptr) {
    std::this_thread::sleep_for(slice);
    return;
  }
  h->writer_waiting.fetch_add(1, std::memory_order_seq_cst);
  uint32_t seq = h->release_seq.load(std::memory_order_seq_cst);
  if (seq == seen) futex_wait(&h->release_seq, seq, slice);
  h->writer_waiting.fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace

ShmAllocator::ShmAllocator(const ShmOptions& options, uint64_t producer_id)
    : options_(options), producer_id_(producer_id) {}

Status ShmAllocator::create_arena_locked() {
  auto seg = create_segment(producer_id_, 0, static_cast<uint32_t>(options_.max_inflight),
                            options_.arena_bytes);
  if (!seg.ok()) return seg.status().WithContext("creating the shared-memory arena");
  arena_ = std::move(*seg);
  slots_.assign(options_.max_inflight, SlotInfo{});
  free_slots_.clear();
  in_use_.clear();
  for (size_t i = options_.max_inflight; i-- > 0;) free_slots_.push_back(static_cast<uint32_t>(i));
  free_.reset(arena_->header->data_size);
  return Status::Ok();
}

template <typename Fn>
void ShmAllocator::for_each_in_use_locked(Fn&& fn, bool arena) {
  // Backwards: freeing the slot at k moves the last one, already seen, into its place.
  for (size_t k = arena && arena_ ? in_use_.size() : 0; k-- > 0;) {
    const uint32_t i = in_use_[k];
    fn(arena_.get(), i, &slots_[i]);
  }
  for (auto it = dedicated_.begin(); it != dedicated_.end();) {
    auto& d = (it++)->second;  // fn may free (erase) this entry
    fn(d.seg.get(), 0, &d.info);
  }
}

// The arena is scanned only when a reader released something since the last scan (or when
// forced); dedicated segments always (there are few).
void ShmAllocator::reclaim_locked(bool force) {
  bool scan_arena = false;
  if (arena_) {
    uint32_t seq = arena_->header->release_seq.load(std::memory_order_acquire);
    scan_arena = force || seq != last_release_seq_;
    last_release_seq_ = seq;
  }
  for_each_in_use_locked(
      [&](Segment* seg, uint32_t slot, SlotInfo* info) {
        uint64_t ctl = seg->slots[slot].ctl.load(std::memory_order_acquire);
        if (ctl_state(ctl) != kReleased) return;
        if (seg->slots[slot].ctl.compare_exchange_strong(ctl, slot_ctl(ctl_gen(ctl), 0, kFree))) {
          free_locked(seg, slot, info);
        }
      },
      scan_arena);
}

void ShmAllocator::reclaim() {
  std::lock_guard lock(mu_);
  reclaim_locked(false);
}

void ShmAllocator::free_locked(Segment* seg, uint32_t slot, SlotInfo* info) {
  in_use_bytes_ -= info->reserved;
  --in_flight_;
  info->in_use = false;
  info->request_id.clear();
  if (seg != arena_.get()) {
    dedicated_.erase(seg->id);
    return;
  }
  free_.free(info->offset, info->reserved);
  free_slots_.push_back(slot);
  in_use_[info->pos] = in_use_.back();  // swap-remove
  slots_[in_use_.back()].pos = info->pos;
  in_use_.pop_back();
}

std::optional<Block> ShmAllocator::allocate_arena_locked(size_t nbytes) {
  if (free_slots_.empty()) return std::nullopt;
  std::optional<uint64_t> off = free_.allocate(nbytes);
  if (!off) return std::nullopt;
  uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  SlotInfo& info = slots_[slot];
  info = SlotInfo{0, *off, nbytes, info.generation + 1, true, static_cast<uint32_t>(in_use_.size()),
                  {}};
  in_use_.push_back(slot);
  if (info.generation == 0) info.generation = 1;
  arena_->slots[slot].ctl.store(slot_ctl(info.generation, 0, kWriting), std::memory_order_relaxed);
  in_use_bytes_ += nbytes;
  ++in_flight_;
  return Block{0, slot, info.generation, *off, {arena_->data + *off, nbytes}};
}

Result<Block> ShmAllocator::allocate_dedicated_locked(size_t nbytes) {
  uint32_t id = next_segment_id_;
  next_segment_id_ = next_segment_id_ == UINT32_MAX ? 1 : next_segment_id_ + 1;
  auto seg = create_segment(producer_id_, id, 1, nbytes);
  if (!seg.ok()) return seg.status();
  Dedicated d{std::move(*seg), SlotInfo{id, 0, nbytes, 1, true, 0, {}}};
  d.seg->slots[0].ctl.store(slot_ctl(1, 0, kWriting), std::memory_order_relaxed);
  std::byte* data = d.seg->data;
  dedicated_.emplace(id, std::move(d));
  in_use_bytes_ += nbytes;
  ++in_flight_;
  return Block{id, 0, 1, 0, {data, nbytes}};
}

std::optional<Result<Block>> ShmAllocator::try_allocate_locked(size_t nbytes) {
  if (nbytes > options_.arena_bytes) {
    reclaim_locked(false);
    if (dedicated_.size() >= options_.max_inflight) return std::nullopt;
    return allocate_dedicated_locked(nbytes);
  }
  if (!arena_) {
    if (Status st = create_arena_locked(); !st.ok()) return Result<Block>(st);
  }
  reclaim_locked(false);
  if (auto b = allocate_arena_locked(nbytes)) return Result<Block>(*b);
  reclaim_locked(true);
  if (auto b = allocate_arena_locked(nbytes)) return Result<Block>(*b);
  return std::nullopt;
}

Status ShmAllocator::full(size_t nbytes, Clock::time_point since) const {
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since);
  return Status::ResourceExhausted(
      "shared-memory arena full: " + std::to_string(nbytes) + " bytes requested, " +
      std::to_string(in_use_bytes_) + " bytes held by " + std::to_string(in_flight_) +
      " payloads not yet released by their readers (arena " + std::to_string(options_.arena_bytes) +
      " bytes, max_inflight " + std::to_string(options_.max_inflight) + "); waited " +
      std::to_string(waited.count()) + " ms");
}

Result<Block> ShmAllocator::allocate(size_t nbytes, Deadline deadline) {
  if (nbytes == 0 || nbytes > options_.max_payload_bytes) {
    return Status::InvalidArgument("payload of " + std::to_string(nbytes) + " bytes: must be 1.." +
                                   std::to_string(options_.max_payload_bytes) +
                                   " bytes (extra.max_payload_bytes)");
  }
  const size_t want = round_up(nbytes, kAlign);
  const auto start = Clock::now();
  for (;;) {
    SegmentHeader* arena_header = nullptr;
    uint32_t seen = 0;
    {
      std::lock_guard lock(mu_);
      if (auto b = try_allocate_locked(want)) {
        if (b->ok()) (*b)->bytes = (*b)->bytes.first(nbytes);
        return std::move(*b);
      }
      if (Clock::now() >= deadline) return full(nbytes, start);
      if (arena_) arena_header = arena_->header;
      seen = last_release_seq_;
    }
    wait_for_release(arena_header, seen, deadline);
  }
}

std::pair<Segment*, ShmAllocator::SlotInfo*> ShmAllocator::lookup_locked(uint32_t segment_id,
                                                                         uint32_t slot) {
  if (segment_id == 0) {
    if (!arena_ || slot >= slots_.size()) return {nullptr, nullptr};
    return {arena_.get(), &slots_[slot]};
  }
  auto it = dedicated_.find(segment_id);
  if (it == dedicated_.end() || slot != 0) return {nullptr, nullptr};
  return {it->second.seg.get(), &it->second.info};
}

Result<ShmRef> ShmAllocator::publish(const Block& block, size_t size, uint64_t header_checksum,
                                     const std::string& request_id) {
  std::lock_guard lock(mu_);
  auto [seg, info] = lookup_locked(block.segment_id, block.slot);
  if (seg == nullptr || !info->in_use || info->generation != block.generation) {
    return Status::InvalidArgument("loan is no longer valid");
  }
  Slot& s = seg->slots[block.slot];
  s.offset = block.offset;
  s.size = size;
  s.header_checksum = header_checksum;
  info->request_id = request_id;
  s.ctl.store(slot_ctl(block.generation, 0, kPublished), std::memory_order_release);
  return ShmRef{producer_id_, block.segment_id, block.slot, block.generation, block.offset,
                size,         header_checksum};
}

void ShmAllocator::abandon(const Block& block) {
  std::lock_guard lock(mu_);
  auto [seg, info] = lookup_locked(block.segment_id, block.slot);
  if (seg == nullptr || !info->in_use || info->generation != block.generation) return;
  seg->slots[block.slot].ctl.store(slot_ctl(block.generation, 0, kFree));
  free_locked(seg, block.slot, info);
}

bool ShmAllocator::unpublish(const ShmRef& ref) {
  std::lock_guard lock(mu_);
  auto [seg, info] = lookup_locked(ref.segment_id, ref.slot);
  if (seg == nullptr || !info->in_use || info->generation != ref.generation) return false;
  uint64_t expect = slot_ctl(ref.generation, 0, kPublished);
  if (!seg->slots[ref.slot].ctl.compare_exchange_strong(expect,
                                                        slot_ctl(ref.generation, 0, kFree))) {
    return false;
  }
  free_locked(seg, ref.slot, info);
  return true;
}

size_t ShmAllocator::cleanup(std::string_view request_id) {
  std::lock_guard lock(mu_);
  size_t freed = 0;
  for_each_in_use_locked([&](Segment* seg, uint32_t slot, SlotInfo* info) {
    if (!belongs_to_request(info->request_id, request_id)) return;
    uint64_t ctl = seg->slots[slot].ctl.load(std::memory_order_acquire);
    if (ctl_state(ctl) != kPublished) return;
    if (seg->slots[slot].ctl.compare_exchange_strong(ctl, slot_ctl(ctl_gen(ctl), 0, kFree))) {
      free_locked(seg, slot, info);
      ++freed;
    }
  });
  return freed;
}

void ShmAllocator::release_reader(uint32_t reader_id) {
  std::lock_guard lock(mu_);
  std::vector<SegmentHeader*> wake;
  for_each_in_use_locked([&](Segment* seg, uint32_t slot, SlotInfo*) {
    uint64_t ctl = seg->slots[slot].ctl.load(std::memory_order_acquire);
    if (ctl_state(ctl) != kReading || ctl_holder(ctl) != reader_id) return;
    if (seg->slots[slot].ctl.compare_exchange_strong(ctl, slot_ctl(ctl_gen(ctl), 0, kReleased))) {
      ++reclaimed_;
      wake.push_back(seg->header);
    }
  });
  for (SegmentHeader* h : wake) bump_release(h);
}

Fd ShmAllocator::segment_fd(uint32_t segment_id, uint64_t* size) {
  std::lock_guard lock(mu_);
  Segment* seg = nullptr;
  if (segment_id == 0) {
    seg = arena_.get();
  } else if (auto it = dedicated_.find(segment_id); it != dedicated_.end()) {
    seg = it->second.seg.get();
  }
  if (seg == nullptr) return Fd();
  *size = seg->map.size();
  return Fd(::dup(seg->fd.get()));
}

AllocatorStats ShmAllocator::stats() const {
  std::lock_guard lock(mu_);
  AllocatorStats s;
  s.capacity_bytes = arena_ ? arena_->header->data_size : 0;
  for (const auto& [id, d] : dedicated_) s.capacity_bytes += d.seg->header->data_size;
  s.in_use_bytes = in_use_bytes_;
  s.in_flight = in_flight_;
  s.reclaimed = reclaimed_;
  return s;
}

}  // namespace omniconn::shm

// Shared-memory layouts of the SharedMemoryConnector: segment header, slot table, control
// ring. Every process that maps a segment sees these structs; docs/architecture.md has the
// picture. Little-endian, one host: no byte swapping.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "shm/shm_os.h"

namespace omniconn::shm {

inline constexpr uint64_t kSegmentMagic = 0x31474553434e4f43ULL;  // "CONCSEG1"
inline constexpr uint64_t kRingMagic = 0x31474e52434e4f43ULL;     // "CONCRNG1"
inline constexpr size_t kPage = 4096;
inline constexpr size_t kSlotTableOffset = kPage;

// A slot's control word: generation (32 bits) | holder reader id (24) | state (8).
enum SlotState : uint8_t { kFree = 0, kWriting = 1, kPublished = 2, kReading = 3, kReleased = 4 };

inline constexpr uint64_t slot_ctl(uint32_t gen, uint32_t holder, SlotState state) {
  return (uint64_t{gen} << 32) | (uint64_t{holder & 0xFFFFFFu} << 8) | state;
}
inline constexpr uint32_t ctl_gen(uint64_t ctl) {
  return static_cast<uint32_t>(ctl >> 32);
}
inline constexpr uint32_t ctl_holder(uint64_t ctl) {
  return static_cast<uint32_t>(ctl >> 8) & 0xFFFFFFu;
}
inline constexpr SlotState ctl_state(uint64_t ctl) {
  return static_cast<SlotState>(ctl & 0xFF);
}

// One payload in flight. Written by its producer before publishing; read by the reader that
// wins the PUBLISHED -> READING exchange.
struct alignas(64) Slot {
  std::atomic<uint64_t> ctl;
  uint64_t offset;  // of the payload in the segment's data region
  uint64_t size;    // payload bytes
  uint64_t header_checksum;
};
static_assert(sizeof(Slot) == 64);

struct SegmentHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t slot_count;
  uint64_t data_offset;  // page aligned, from the start of the memfd
  uint64_t data_size;
  uint64_t producer_id;
  uint32_t segment_id;
  uint32_t reserved;
  alignas(64) std::atomic<uint32_t> release_seq;  // bumped by readers; futex word
  std::atomic<uint32_t> writer_waiting;
};

// A reader gave a slot back: tell a writer that may be waiting for space.
inline void bump_release(SegmentHeader* h) {
  h->release_seq.fetch_add(1, std::memory_order_seq_cst);
  if (h->writer_waiting.load(std::memory_order_seq_cst) != 0) futex_wake_all(&h->release_seq);
}

inline constexpr size_t segment_data_offset(uint32_t slot_count) {
  return round_up(kSlotTableOffset + size_t{slot_count} * sizeof(Slot), kPage);
}

// Single-producer single-consumer byte ring of records [u32 len][u32 kind][body, padded to 8].
struct RingHeader {
  uint64_t magic;
  uint32_t capacity;  // bytes of the record area, multiple of 8
  uint32_t reserved;
  uint64_t producer_id;
  alignas(64) std::atomic<uint64_t> head;  // written by the producer
  std::atomic<uint32_t> head_seq;          // futex word for the reader
  std::atomic<uint32_t> reader_waiting;
  alignas(64) std::atomic<uint64_t> tail;  // written by the consumer
  std::atomic<uint32_t> tail_seq;          // futex word for the writer
  std::atomic<uint32_t> writer_waiting;
};
inline constexpr size_t kRingDataOffset = 256;
static_assert(sizeof(RingHeader) <= kRingDataOffset);

enum RecordKind : uint32_t { kRecordDescriptor = 1, kRecordPad = 2 };
inline constexpr size_t kRecordHeader = 8;

// Wire messages between a reader and a writer's socket server.
enum Op : uint32_t { kOpMapSegment = 1, kOpRing = 2 };
struct Request {
  uint32_t op;
  uint32_t arg;
};
struct Reply {
  uint32_t status;  // StatusCode
  uint32_t reader_id;
  uint64_t producer_id;
  uint64_t size;
  uint32_t arg;
  int32_t pid;
};

}  // namespace omniconn::shm

// shm::parse_ring_record (the SharedMemoryConnector's control-ring record parser) on a ring
// whose data area and indices a hostile or broken writer controls.
//
// Input: [u64 tail][i32 head - tail][data area: the rest, cut to a multiple of 8]. The fuzzer
// walks the ring the way EdgeReceiver::peek does (pads skipped, descriptors decoded) and checks
// that every record lies inside the data area and before head, and that the walk ends.
// The data area is copied to a buffer of exactly its size, so ASan sees any read past it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_check.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_ring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace shm = omniconn::shm;
  constexpr size_t kIndices = 12;
  if (size < kIndices + 8) return 0;
  uint64_t tail;
  int32_t delta;
  std::memcpy(&tail, data, 8);
  std::memcpy(&delta, data + 8, 4);
  const uint64_t head = tail + static_cast<uint64_t>(static_cast<int64_t>(delta));
  const uint64_t cap = (size - kIndices) / 8 * 8;
  std::vector<std::byte> area(cap);
  std::memcpy(area.data(), data + kIndices, cap);

  // Each record is at least 8 bytes and the walk never passes head: it ends in cap / 8 steps.
  for (uint64_t steps = 0;; ++steps) {
    FUZZ_CHECK(steps <= cap / 8 + 1, "ring walk does not end");
    auto r = shm::parse_ring_record(area.data(), cap, head, tail);
    if (!r.ok()) return 0;
    if (r->kind == shm::RingRecord::kNone) {
      FUZZ_CHECK(tail == head, "empty ring reported with head != tail");
      return 0;
    }
    FUZZ_CHECK(r->pos == tail % cap && r->size >= shm::kRecordHeader && r->size % 8 == 0,
               "record position or size malformed");
    FUZZ_CHECK(r->pos + r->size <= cap, "record runs past the data area");
    FUZZ_CHECK(r->size <= head - tail, "record runs past head");
    FUZZ_CHECK(shm::kRecordHeader + r->len <= r->size, "body longer than the record");
    if (r->kind == shm::RingRecord::kDescriptor) {
      std::span<const std::byte> body(area.data() + r->pos + shm::kRecordHeader, r->len);
      (void)shm::decode_descriptor(body);  // whatever the ring holds, decoding must be safe
    }
    tail += r->size;
  }
}

// Private helpers of the payload format (docs/format.md): byte layout constants,
// little-endian load/store, the header record and the checksums. Used by payload.cc,
// value.cc and the tests (which forge payloads with them).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "core/bits.h"
#include "omniconn/payload.h"

namespace omniconn::internal {

static_assert(std::endian::native == std::endian::little,
              "omniconn supports little-endian hosts only");

inline constexpr uint32_t kPayloadMagic = 0x504E434F;  // bytes "OCNP"
inline constexpr uint16_t kPayloadVersion = 1;
inline constexpr uint16_t kFlagDataChecksum = 0x1;
inline constexpr uint16_t kKnownFlags = kFlagDataChecksum;
// offset u64, nbytes u64, dtype u8, rank u8, name_len u16, reserved u32.
inline constexpr size_t kEntryFixedBytes = 24;
// Smallest possible entry: rank 0, 1..8 name bytes.
inline constexpr size_t kEntryMinBytes = kEntryFixedBytes + 8;
// Largest tensor the builder accepts (keeps every layout sum far from overflow).
inline constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 48;
// Deepest nesting of lists/maps in a msgpack Value (the top-level map counts as 1).
inline constexpr size_t kMaxValueDepth = 32;

// Byte offsets of the header fields.
namespace hdr {
inline constexpr size_t kMagic = 0;
inline constexpr size_t kVersion = 4;
inline constexpr size_t kFlags = 6;
inline constexpr size_t kHeaderSize = 8;
inline constexpr size_t kTensorCount = 12;
inline constexpr size_t kTableSize = 16;
inline constexpr size_t kFieldsSize = 20;
inline constexpr size_t kDataOffset = 24;
inline constexpr size_t kDataSize = 32;
inline constexpr size_t kTotalSize = 40;
inline constexpr size_t kDataChecksum = 48;
inline constexpr size_t kHeaderChecksum = 56;
}  // namespace hdr

template <typename T>
T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
void store_le(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(v));
}

// Bytes of one entry-table entry.
constexpr size_t entry_bytes(size_t rank, size_t name_len) {
  return kEntryFixedBytes + 8 * rank + static_cast<size_t>(round_up(name_len, 8));
}

struct Header {
  uint32_t magic = kPayloadMagic;
  uint16_t version = kPayloadVersion;
  uint16_t flags = 0;
  uint32_t header_size = kPayloadHeaderBytes;
  uint32_t tensor_count = 0;
  uint32_t table_size = 0;
  uint32_t fields_size = 0;
  uint64_t data_offset = 0;
  uint64_t data_size = 0;
  uint64_t total_size = 0;
  uint64_t data_checksum = 0;
  uint64_t header_checksum = 0;
};

Header load_header(const std::byte* p);
void store_header(std::byte* p, const Header& h);

// XXH3-64 (seed 0) of bytes [0, 56) followed by [64, data_offset) of `payload`.
// Requires 64 <= data_offset <= payload.size().
uint64_t header_checksum(std::span<const std::byte> payload, uint64_t data_offset);
// XXH3-64 (seed 0) of `bytes`.
uint64_t data_checksum(std::span<const std::byte> bytes);

bool utf8_valid(std::string_view s);

}  // namespace omniconn::internal

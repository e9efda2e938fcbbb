// The SharedMemoryConnector's descriptor: a self-contained byte string naming one payload,
// either carrying it inline or pointing at a slot of a writer's segment.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "omniconn/connector.h"

namespace omniconn::shm {

inline constexpr size_t kMaxIdBytes = 1024;  // request id, stage names

struct ShmRef {
  uint64_t producer_id = 0;
  uint32_t segment_id = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t header_checksum = 0;
};

struct DecodedDescriptor {
  bool is_inline = false;
  PayloadKey key;
  ShmRef ref;                               // when !is_inline
  std::span<const std::byte> inline_bytes;  // when is_inline (points into the input)
};

std::string encode_inline_descriptor(const PayloadKey& key, std::span<const std::byte> payload);
std::string encode_ref_descriptor(const PayloadKey& key, const ShmRef& ref);
// Bounds-checked; InvalidArgument for what is not a descriptor of ours, Corrupt for a torn one.
Result<DecodedDescriptor> decode_descriptor(std::span<const std::byte> bytes);
Status check_key(const PayloadKey& key);

}  // namespace omniconn::shm

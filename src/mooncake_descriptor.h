// The MooncakeConnector's descriptor: which store key holds the payload, its size and xxh3
// checksum, and the payload key; or the payload itself when it is small (inline). A trailing
// xxh3 of the whole descriptor rejects any truncated or altered one before the store is asked.
//
//   0  "OMK1"            4  flags (bit 0: inline)     8  payload size (u64)
//   16 payload xxh3-64   24 then: u16 length + bytes of store key, request id, from, to;
//   inline: the payload bytes;  last 8: xxh3-64 of everything before. Little-endian.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "omniconn/connector.h"

namespace omniconn::mooncake {

struct DescriptorInfo {
  bool is_inline = false;
  uint64_t size = 0;
  uint64_t checksum = 0;  // xxh3-64 of the payload bytes
  std::string store_key;  // empty for inline payloads
  PayloadKey key;
  std::string inline_bytes;  // the payload, when inline
};

std::string encode_descriptor(const DescriptorInfo& d);
Result<DescriptorInfo> decode_descriptor(std::string_view bytes);

uint64_t checksum_of(std::span<const std::byte> bytes);

}  // namespace omniconn::mooncake

// The MooncakeConnector's descriptor: which store key holds the payload, its size and checksum,
// and the payload key; or the payload itself when it is small (inline). A trailing xxh3 of the
// whole descriptor rejects any truncated or altered one before the store is asked.
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

// xxh3-64 of the payload's first 64 KiB (header, tensor table, fields, start of the data), its
// last 4 KiB and its size (all of it when smaller). It tells the reader that the object under
// the key is the payload the writer stored, not an older one (Mooncake never overwrites a key),
// at a cost that does not grow with the payload. Every byte's integrity is the transport's
// (TCP, RDMA; MOONCAKE_STORE_CHECKSUM=1) and, end to end, the payload format's optional data
// checksum (PayloadBuilder::set_checksum_data).
uint64_t checksum_of(std::span<const std::byte> bytes);

}  // namespace omniconn::mooncake

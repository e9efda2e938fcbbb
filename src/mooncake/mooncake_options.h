// MooncakeConnector settings: vllm-omni's `extra` keys for its Mooncake store connector, plus
// omniconn's own (library, namespace, inline_threshold_bytes, max_payload_bytes,
// preferred_placement).
#pragma once

#include <cstdint>
#include <string>

#include "omniconn/registry.h"

namespace omniconn::mooncake {

struct MooncakeOptions {
  std::string host = "127.0.0.1";                                  // this node's address
  std::string metadata_server = "http://127.0.0.1:8080/metadata";  // transfer-engine metadata
  std::string master = "127.0.0.1:50051";                          // master service, host:port
  uint64_t segment_bytes = uint64_t{512} << 20;  // global segment this client contributes
  uint64_t localbuf_bytes = uint64_t{64} << 20;  // local transfer buffer
  std::string proto = "tcp";                     // "tcp" or "rdma"
  std::string rdma;                              // RDMA device list ("" = none / auto)
  std::string library;     // path of libmooncake_store.so ("" = $MOONCAKE_STORE_LIBRARY, default)
  std::string name_space;  // key prefix "<namespace>/" ("" = none)
  uint64_t inline_threshold_bytes = 65536;         // payloads up to this travel in the descriptor
  uint64_t max_payload_bytes = uint64_t{1} << 30;  // larger payloads are refused
  // Channel edges: a receiver announces its segment, a sender places replicas there.
  bool preferred_placement = true;

  // Mooncake wants segment and buffer sizes in multiples of 4 MiB, and a segment of 0 or at
  // least 16 MiB: sizes are rounded up to that.
  static constexpr uint64_t kSizeQuantum = uint64_t{4} << 20;

  // Reads vllm-omni-style `extra`; bad values are errors, keys it does not read are ignored.
  static Result<MooncakeOptions> from_extra(const Value& extra);
};

// Reads `extra` into *out (defaults for absent keys, sizes rounded); returns every problem.
FieldErrors read_mooncake_options(const Value& extra, MooncakeOptions* out);

}  // namespace omniconn::mooncake

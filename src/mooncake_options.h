// MooncakeConnector settings: vllm-omni's `extra` keys for its Mooncake store connector.
// Only the checks live here for now; the connector itself is a later piece of work.
#pragma once

#include <cstdint>
#include <string>

#include "omniconn/connector.h"

namespace omniconn {

struct MooncakeOptions {
  std::string host = "127.0.0.1";                                  // this node's address
  std::string metadata_server = "http://127.0.0.1:8080/metadata";  // transfer-engine metadata
  std::string master = "127.0.0.1:50051";                          // master service, host:port
  uint64_t segment_bytes = uint64_t{512} << 20;  // global segment this client contributes
  uint64_t localbuf_bytes = uint64_t{64} << 20;  // local transfer buffer
  std::string proto = "tcp";                     // "tcp" or "rdma"
  std::string rdma;                              // RDMA device list ("" = none / auto)
  std::string library;  // path of libmooncake_store.so ("" = the default search)

  // Reads vllm-omni-style `extra`; unknown keys and bad values are errors.
  static Result<MooncakeOptions> from_extra(const Value& extra);
};

// The registry entry: validate() checks `extra`; create() reports the connector unavailable.
ConnectorType mooncake_connector_type();

}  // namespace omniconn

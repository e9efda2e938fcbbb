// SharedMemoryConnector: the default connector on one node. One pre-faulted memfd arena per
// writing process, shared with readers over an abstract Unix socket; small payloads inline.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "omniconn/connector.h"

namespace omniconn {

struct ShmOptions {
  // Payloads of at most this many bytes travel inline (descriptor / control ring).
  size_t threshold_bytes = 65536;
  // The writer's arena, mapped and pre-faulted on first use.
  size_t arena_bytes = size_t{256} << 20;
  // Largest payload accepted; larger than the arena -> a segment of its own.
  size_t max_payload_bytes = size_t{1} << 30;
  // Payloads written and not yet released by their readers, per writer.
  size_t max_inflight = 1024;
  // Per-edge control ring (channel mode).
  size_t ring_bytes = size_t{1} << 20;
  // A waiting reader spins this long before it sleeps on a futex.
  uint32_t spin_us = 50;
  // Scopes channel names (two pipelines of one user on one host need different namespaces).
  std::string name_space = "default";

  // Reads vllm-omni-style `extra` (shm_threshold_bytes, arena_bytes, ...); bad values are
  // errors, keys it does not read are ignored.
  static Result<ShmOptions> from_extra(const Value& extra);
};

Result<std::unique_ptr<Connector>> make_shm_connector(const ShmOptions& options);

}  // namespace omniconn

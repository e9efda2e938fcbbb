// One Mooncake transfer engine in this process (P2P handshake: no metadata server, no master),
// a registered memory pool, and transfers to and from a peer's pool: the data path of the
// MooncakeTransferEngineConnector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mooncake/te_api.h"
#include "omniconn/deadline.h"
#include "omniconn/status.h"

namespace omniconn::mooncake {

class TeEngine {
 public:
  // An engine serving on `host` (its RPC port is picked by Mooncake) with `protocol`'s
  // transport ("tcp" or "rdma").
  static Result<std::unique_ptr<TeEngine>> open(std::shared_ptr<const TeApi> api,
                                                const std::string& host,
                                                const std::string& protocol);
  ~TeEngine();
  TeEngine(const TeEngine&) = delete;
  TeEngine& operator=(const TeEngine&) = delete;

  // "ip:port": the name a peer opens this engine's segment by.
  const std::string& segment_name() const { return name_; }

  // Registers [addr, addr + length) for transfers; unregistered when the engine closes.
  Status register_memory(void* addr, size_t length);

  // A peer's segment, opened once and cached.
  Result<int32_t> open_segment(const std::string& peer);

  // Moves `length` bytes between `local` (registered here) and `remote` (a virtual address in
  // the peer's registered memory): kTeWrite pushes, kTeRead pulls. Splits into pieces of at
  // most `piece` bytes, all submitted at once, and waits for every one until `deadline`.
  Status transfer(int opcode, int32_t segment, void* local, uint64_t remote, size_t length,
                  Deadline deadline, size_t piece = kDefaultPiece);

  static constexpr size_t kDefaultPiece = size_t{4} << 20;

  // The engine itself, for callers of the C API (the benchmark's raw baseline).
  engine_t handle() const { return engine_; }

 private:
  TeEngine(std::shared_ptr<const TeApi> api, engine_t engine, std::string name);
  Status wait_all(uint64_t batch, size_t count, Deadline deadline, const std::string& what);

  std::shared_ptr<const TeApi> api_;
  engine_t engine_;
  std::string name_;
  std::vector<void*> registered_;
  std::vector<std::pair<std::string, int32_t>> segments_;
};

}  // namespace omniconn::mooncake

// Mooncake's Store C API (mooncake-store/include/store_c.h), loaded at run time with dlopen.
// omniconn never links Mooncake: it declares the functions it calls and resolves them from
// the library named by extra.library, then $MOONCAKE_STORE_LIBRARY, then the default search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "omniconn/status.h"

// store_c.h's struct, under its own name (clang's -fsanitize=function compares the callee's
// parameter types by name).
extern "C" {
struct mooncake_replicate_config {
  size_t replica_num;
  int with_soft_pin;
  int with_hard_pin;
  const char** preferred_segments;
  size_t preferred_segments_count;
};
}

namespace omniconn::mooncake {

using store_t = void*;
using ReplicateConfig = ::mooncake_replicate_config;

// The functions omniconn uses, as declared in store_c.h.
struct Api {
  store_t (*create)();
  void (*destroy)(store_t);
  int (*setup)(store_t, const char* local_hostname, const char* metadata_server,
               uint64_t global_segment_size, uint64_t local_buffer_size, const char* protocol,
               const char* device_name, const char* master_server_addr);
  int (*health_check)(store_t);
  int (*put_from)(store_t, const char* key, void* buffer, size_t size, const ReplicateConfig*);
  int64_t (*get_into)(store_t, const char* key, void* buffer, size_t size);
  int (*is_exist)(store_t, const char* key);
  int64_t (*get_size)(store_t, const char* key);
  int (*remove)(store_t, const char* key, int force);
  int64_t (*remove_by_regex)(store_t, const char* pattern, int force);
  int (*register_buffer)(store_t, void* buffer, size_t size);
  int (*unregister_buffer)(store_t, void* buffer);
  int (*get_hostname)(store_t, char* buf_out, size_t buf_len);  // this client's segment name

  std::string path;  // what was loaded
  void* handle = nullptr;
};

// Error codes of mooncake::ErrorCode that the connector acts on.
enum Code : int {
  kInternalError = -1,
  kNoAvailableHandle = -200,
  kInvalidParams = -600,
  kReplicaNotReady = -703,
  kObjectNotFound = -704,
  kObjectHasLease = -706,
  kLeaseExpired = -707,
  kTransferFail = -800,
  kRpcFail = -900,
  kRpcTimeout = -901,
};

// The config of every payload put: one replica, hard-pinned (a payload nobody has read must
// never be evicted), placed on `preferred` first when it is set (a segment name, "host:port").
// Never a zeroed struct: Mooncake refuses replica_num 0. `*preferred` must outlive the call.
constexpr ReplicateConfig pinned_config(const char** preferred = nullptr) {
  return ReplicateConfig{1, 0, 1, preferred, preferred != nullptr ? 1u : 0u};
}

// Loads the library once per path for the life of the process (Mooncake's library keeps
// threads and atexit hooks, so it is never dlclosed). `configured` is extra.library ("" if
// unset). The error says what was tried and how to provide the library.
Result<std::shared_ptr<const Api>> load_api(const std::string& configured);

// "OBJECT_NOT_FOUND (-704)" and the like.
std::string code_name(int64_t rc);

// Worth retrying until the deadline: a full store, an object still being written, a lease or
// transfer failure, an RPC failure.
bool retryable(int64_t rc);

// The Status for a failed call: `what` names the call and key.
Status to_status(int64_t rc, std::string_view what);

}  // namespace omniconn::mooncake

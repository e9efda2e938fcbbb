// Mooncake's Transfer Engine C API (mooncake-transfer-engine/include/transfer_engine_c.h),
// loaded at run time with dlopen like the store's (mooncake_api.h): the library named by
// extra.library, then $MOONCAKE_TE_LIBRARY, then the default search for libtransfer_engine.so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "omniconn/status.h"

// transfer_engine_c.h's structs, under their own names.
extern "C" {
struct transfer_request {
  int opcode;  // kTeRead, kTeWrite
  void* source;
  int32_t target_id;       // a segment opened with open_segment
  uint64_t target_offset;  // for memory segments: the peer's virtual address
  uint64_t length;
};
struct transfer_status {
  int status;  // TeStatus
  uint64_t transferred_bytes;
};
}

namespace omniconn::mooncake {

using engine_t = void*;
using TeRequest = ::transfer_request;
using TeStatusWord = ::transfer_status;

constexpr int kTeRead = 0, kTeWrite = 1;
constexpr uint64_t kInvalidBatch = UINT64_MAX;
enum TeStatus : int {
  kTeWaiting = 0,
  kTePending = 1,
  kTeInvalid = 2,
  kTeCanceled = 3,
  kTeCompleted = 4,
  kTeTimeout = 5,
  kTeFailed = 6,
};

// The functions omniconn uses, as declared in transfer_engine_c.h.
struct TeApi {
  engine_t (*create)(const char* metadata, const char* local_server_name, const char* ip,
                     uint64_t rpc_port, int auto_discover);
  void (*destroy)(engine_t);
  void* (*install_transport)(engine_t, const char* proto, void** args);
  int (*local_ip_and_port)(engine_t, char* buf_out, size_t buf_len);
  int (*register_memory)(engine_t, void* addr, size_t length, const char* location,
                         int remote_accessible);
  int (*unregister_memory)(engine_t, void* addr);
  int32_t (*open_segment)(engine_t, const char* name);
  int (*close_segment)(engine_t, int32_t segment);
  uint64_t (*allocate_batch)(engine_t, size_t batch_size);
  int (*submit)(engine_t, uint64_t batch, TeRequest* entries, size_t count);
  int (*status)(engine_t, uint64_t batch, size_t task, TeStatusWord* out);
  int (*free_batch)(engine_t, uint64_t batch);

  std::string path;
  void* handle = nullptr;
};

// Loads the library once per path for the life of the process (never dlclosed: it keeps
// threads). `configured` is extra.library ("" if unset). The error names what was tried and
// how to provide the library.
Result<std::shared_ptr<const TeApi>> load_te_api(const std::string& configured);

}  // namespace omniconn::mooncake

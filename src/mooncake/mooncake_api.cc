#include "mooncake/mooncake_api.h"

#include <dlfcn.h>

#include <map>
#include <mutex>

#include "mooncake/library_path.h"

namespace omniconn::mooncake {

namespace {

Result<std::shared_ptr<const Api>> open_api(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return Status::Unavailable(err ? err : "dlopen failed");
  }
  auto api = std::make_shared<Api>();
  api->path = path;
  api->handle = handle;
  std::string missing;
  resolve(handle, "mooncake_store_create", &api->create, &missing);
  resolve(handle, "mooncake_store_destroy", &api->destroy, &missing);
  resolve(handle, "mooncake_store_setup", &api->setup, &missing);
  resolve(handle, "mooncake_store_health_check", &api->health_check, &missing);
  resolve(handle, "mooncake_store_put_from", &api->put_from, &missing);
  resolve(handle, "mooncake_store_get_into", &api->get_into, &missing);
  resolve(handle, "mooncake_store_is_exist", &api->is_exist, &missing);
  resolve(handle, "mooncake_store_get_size", &api->get_size, &missing);
  resolve(handle, "mooncake_store_remove", &api->remove, &missing);
  resolve(handle, "mooncake_store_remove_by_regex", &api->remove_by_regex, &missing);
  resolve(handle, "mooncake_store_register_buffer", &api->register_buffer, &missing);
  resolve(handle, "mooncake_store_unregister_buffer", &api->unregister_buffer, &missing);
  resolve(handle, "mooncake_store_get_hostname", &api->get_hostname, &missing);
  if (!missing.empty()) {
    dlclose(handle);
    return Status::Unavailable(path + " lacks " + missing +
                               " (the Store C API of Mooncake v0.3.10.post2 or later)");
  }
  return std::shared_ptr<const Api>(std::move(api));
}

}  // namespace

Result<std::shared_ptr<const Api>> load_api(const std::string& configured) {
  std::string from;
  std::string path =
      library_path(configured, "MOONCAKE_STORE_LIBRARY", "libmooncake_store.so", &from);
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const Api>> loaded;
  std::lock_guard lock(mu);
  if (auto it = loaded.find(path); it != loaded.end()) return it->second;
  auto api = open_api(path);
  if (!api.ok()) {
    return Status::Unavailable(
        "MooncakeConnector: cannot load the Mooncake store library '" + path + "' (from " + from +
        "): " + api.status().message() +
        ". Build libmooncake_store.so from Mooncake's source (docs/mooncake.md), then set "
        "extra.library or MOONCAKE_STORE_LIBRARY to its path");
  }
  loaded.emplace(path, *api);
  return *api;
}

std::string code_name(int64_t rc) {
  static const std::map<int64_t, const char*> kNames = {{-1, "INTERNAL_ERROR"},
                                                        {-10, "BUFFER_OVERFLOW"},
                                                        {-101, "SEGMENT_NOT_FOUND"},
                                                        {-103, "CLIENT_NOT_FOUND"},
                                                        {-200, "NO_AVAILABLE_HANDLE"},
                                                        {-600, "INVALID_PARAMS"},
                                                        {-700, "INVALID_WRITE"},
                                                        {-701, "INVALID_READ"},
                                                        {-702, "INVALID_REPLICA"},
                                                        {-703, "REPLICA_IS_NOT_READY"},
                                                        {-704, "OBJECT_NOT_FOUND"},
                                                        {-705, "OBJECT_ALREADY_EXISTS"},
                                                        {-706, "OBJECT_HAS_LEASE"},
                                                        {-707, "LEASE_EXPIRED"},
                                                        {-712, "REPLICA_IS_GONE"},
                                                        {-800, "TRANSFER_FAIL"},
                                                        {-801, "CHECKSUM_MISMATCH"},
                                                        {-900, "RPC_FAIL"},
                                                        {-901, "RPC_TIMEOUT"},
                                                        {-1010, "UNAVAILABLE_IN_CURRENT_STATUS"},
                                                        {-1011, "UNAVAILABLE_IN_CURRENT_MODE"},
                                                        {-1012, "NOT_SUPPORTED"}};
  auto it = kNames.find(rc);
  return std::string(it != kNames.end() ? it->second : "error") + " (" + std::to_string(rc) + ")";
}

bool retryable(int64_t rc) {
  return rc == kNoAvailableHandle || rc == kReplicaNotReady || rc == kLeaseExpired ||
         rc == kTransferFail || rc == kRpcFail || rc == kRpcTimeout;
}

Status to_status(int64_t rc, std::string_view what) {
  std::string msg = "MooncakeConnector: " + std::string(what) + ": " + code_name(rc);
  switch (rc) {
    case kObjectNotFound:
      return Status::NotFound(msg);
    case kNoAvailableHandle:
      return Status::ResourceExhausted(
          msg +
          "; no segment has room: the store is full of unread payloads, or the payload "
          "is larger than the free space of every segment");
    case kInvalidParams:
      return Status::InvalidArgument(msg);
    case kReplicaNotReady:
    case kObjectHasLease:
    case kLeaseExpired:
    case kTransferFail:
    case kRpcFail:
    case kRpcTimeout:
      return Status::Unavailable(msg);
    default:
      return Status::Internal(msg);
  }
}

}  // namespace omniconn::mooncake

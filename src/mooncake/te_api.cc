#include "mooncake/te_api.h"

#include <dlfcn.h>

#include <map>
#include <mutex>

#include "mooncake/library_path.h"

namespace omniconn::mooncake {

namespace {

Result<std::shared_ptr<const TeApi>> open_te_api(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return Status::Unavailable(err ? err : "dlopen failed");
  }
  auto api = std::make_shared<TeApi>();
  api->path = path;
  api->handle = handle;
  std::string missing;
  resolve(handle, "createTransferEngine", &api->create, &missing);
  resolve(handle, "destroyTransferEngine", &api->destroy, &missing);
  resolve(handle, "installTransport", &api->install_transport, &missing);
  resolve(handle, "getLocalIpAndPort", &api->local_ip_and_port, &missing);
  resolve(handle, "registerLocalMemory", &api->register_memory, &missing);
  resolve(handle, "unregisterLocalMemory", &api->unregister_memory, &missing);
  resolve(handle, "openSegment", &api->open_segment, &missing);
  resolve(handle, "closeSegment", &api->close_segment, &missing);
  resolve(handle, "allocateBatchID", &api->allocate_batch, &missing);
  resolve(handle, "submitTransfer", &api->submit, &missing);
  resolve(handle, "getTransferStatus", &api->status, &missing);
  resolve(handle, "freeBatchID", &api->free_batch, &missing);
  if (!missing.empty()) {
    dlclose(handle);
    return Status::Unavailable(path + " lacks " + missing + " (Mooncake's Transfer Engine C API)");
  }
  return std::shared_ptr<const TeApi>(std::move(api));
}

}  // namespace

Result<std::shared_ptr<const TeApi>> load_te_api(const std::string& configured) {
  std::string from;
  std::string path =
      library_path(configured, "MOONCAKE_TE_LIBRARY", "libtransfer_engine.so", &from);
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const TeApi>> loaded;
  std::lock_guard lock(mu);
  if (auto it = loaded.find(path); it != loaded.end()) return it->second;
  auto api = open_te_api(path);
  if (!api.ok()) {
    return Status::Unavailable(
        "MooncakeTransferEngineConnector: cannot load the Mooncake transfer engine library '" +
        path + "' (from " + from + "): " + api.status().message() +
        ". Build libtransfer_engine.so from Mooncake's source (BUILD_SHARED_LIBS=ON; "
        "docs/mooncake.md), then set extra.library or MOONCAKE_TE_LIBRARY to its path");
  }
  loaded.emplace(path, *api);
  return *api;
}

}  // namespace omniconn::mooncake

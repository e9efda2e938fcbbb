// What the two Mooncake loaders (mooncake_api.cc: the store, te_api.cc: the transfer engine)
// share: which library path to open, and resolving a function by name.
#pragma once

#include <dlfcn.h>

#include <cstdlib>
#include <string>

namespace omniconn::mooncake {

// `configured` (extra.library) if set, else the environment variable `env`, else
// `default_name` for the default library search; `*from` says which.
inline std::string library_path(const std::string& configured, const char* env,
                                const char* default_name, std::string* from) {
  if (!configured.empty()) {
    *from = "extra.library";
    return configured;
  }
  const char* v = std::getenv(env);
  if (v != nullptr && *v != '\0') {
    *from = std::string("$") + env;
    return v;
  }
  *from = "the default library search";
  return default_name;
}

// Resolves `name` into `*fn`; a missing name is appended to `*missing` (", "-separated).
template <typename Fn>
void resolve(void* handle, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) *missing += std::string(missing->empty() ? "" : ", ") + name;
}

}  // namespace omniconn::mooncake

// Helpers shared by the SharedMemoryConnector's own tests.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "omniconn/connector.h"
#include "omniconn/registry.h"

// In a child: `expr` (a string) must be empty; otherwise it says what is wrong and exits 1.
#define CHILD_EMPTY(expr)                                                                        \
  do {                                                                                           \
    std::string _e = (expr);                                                                     \
    if (!_e.empty()) {                                                                           \
      std::fprintf(stderr, "child %d: %s at %s:%d: %s\n", ::getpid(), #expr, __FILE__, __LINE__, \
                   _e.c_str());                                                                  \
      std::_Exit(1);                                                                             \
    }                                                                                            \
  } while (0)

namespace omniconn::testing {

// A SharedMemoryConnector in namespace `ns` with a 4 MiB arena and `overrides` on top;
// nullptr, with the reason on stderr, when it cannot be made.
inline std::unique_ptr<Connector> make_shm(const std::string& ns,
                                           const Value::Map& overrides = {}) {
  Value::Map extra;
  extra.emplace("namespace", Value(ns));
  extra.emplace("arena_bytes", Value(int64_t{4} << 20));
  for (const auto& [k, v] : overrides) extra[k] = v;
  auto c = create_connector({"SharedMemoryConnector", Value(std::move(extra))});
  if (!c.ok()) {
    std::fprintf(stderr, "creating the connector: %s\n", c.status().ToString().c_str());
    return nullptr;
  }
  return std::move(*c);
}

}  // namespace omniconn::testing

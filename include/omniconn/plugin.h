// Out-of-tree connectors: a shared library that registers connector types when omniconn
// loads it (a stage config's `plugin: <path>` beside the connector's `name`, the environment
// variable OMNICONN_PLUGINS, or ConnectorRegistry::load_plugin). docs/plugins.md says how to
// write one.
//
// The library exports one C function, omniconn_plugin_entry, that returns a description of
// the plugin. Its first two fields never change: omniconn reads them, refuses a library built
// for another plugin ABI, another omniconn version or another C++ library with an error that
// says so, and only then calls register_types. Define the entry with OMNICONN_PLUGIN:
//
//   omniconn::Status register_my_types(omniconn::ConnectorRegistry* registry) {
//     return registry->register_type(my_connector_type());
//   }
//   OMNICONN_PLUGIN("my-connectors", register_my_types)
//
// A plugin links omniconn::core (statically) and is built with the same compiler family and
// C++ standard library as the program that loads it.
#pragma once

#include <cstdint>

#include "omniconn/registry.h"
#include "omniconn/status.h"
#include "omniconn/version.h"

// Bumped whenever a change to the public headers breaks plugins built against older ones.
#define OMNICONN_PLUGIN_ABI 2  // 2: Connector::get with GetOptions, by key

// The C++ standard library the plugin was compiled against: classes cross the boundary.
#if defined(_LIBCPP_VERSION)
#define OMNICONN_PLUGIN_CXX_LIBRARY "libc++"
#elif defined(_GLIBCXX_USE_CXX11_ABI) && _GLIBCXX_USE_CXX11_ABI
#define OMNICONN_PLUGIN_CXX_LIBRARY "libstdc++ (C++11 ABI)"
#else
#define OMNICONN_PLUGIN_CXX_LIBRARY "libstdc++ (old ABI)"
#endif

extern "C" {

struct omniconn_plugin {
  uint32_t abi;                  // OMNICONN_PLUGIN_ABI of the headers the plugin was built with
  uint32_t struct_size;          // sizeof(omniconn_plugin) there
  const char* omniconn_version;  // OMNICONN_VERSION_STRING there
  const char* cxx_library;       // OMNICONN_PLUGIN_CXX_LIBRARY there
  const char* name;              // the plugin's name, for messages
  // Registers the plugin's connector types; called once per process.
  omniconn::Status (*register_types)(omniconn::ConnectorRegistry* registry);
};

// The symbol omniconn looks up in a plugin library.
typedef const omniconn_plugin* (*omniconn_plugin_entry_fn)(void);
}

#define OMNICONN_PLUGIN_ENTRY_SYMBOL "omniconn_plugin_entry"

#define OMNICONN_PLUGIN(plugin_name, register_fn)                                                 \
  extern "C" __attribute__((visibility("default"))) const omniconn_plugin* omniconn_plugin_entry( \
      void) {                                                                                     \
    static const omniconn_plugin plugin = {OMNICONN_PLUGIN_ABI,                                   \
                                           sizeof(omniconn_plugin),                               \
                                           OMNICONN_VERSION_STRING,                               \
                                           OMNICONN_PLUGIN_CXX_LIBRARY,                           \
                                           plugin_name,                                           \
                                           register_fn};                                          \
    return &plugin;                                                                               \
  }

// Libraries that claim to be connector plugins but were built for another omniconn: the
// registry must refuse each with an error that says what to do. BAD_PLUGIN picks the flaw.
#include <cstdint>

#include "omniconn/plugin.h"

namespace {

omniconn::Status never_called(omniconn::ConnectorRegistry*) {
  return omniconn::Status::Internal("a refused plugin's register_types was called");
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const omniconn_plugin* omniconn_plugin_entry() {
  static const omniconn_plugin plugin = {
#if BAD_PLUGIN == 1  // a newer plugin ABI
    OMNICONN_PLUGIN_ABI + 1,
    sizeof(omniconn_plugin),
    OMNICONN_VERSION_STRING,
#else  // another omniconn version
    OMNICONN_PLUGIN_ABI,
    sizeof(omniconn_plugin),
    "0.0.1",
#endif
    OMNICONN_PLUGIN_CXX_LIBRARY,
    "bad-plugin",
    never_called
  };
  return &plugin;
}

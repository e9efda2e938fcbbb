// The FileConnector (file_connector.cc) runs the conformance suite after omniconn loads it
// from its plugin library: everything a connector needs from omniconn is in the public
// headers and the plugin entry point.
#include <filesystem>

#include "core/conformance.h"

namespace omniconn::testing {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
const char* const kRoot = "/tmp/omniconn-file-connector-tests";

ConformanceTarget file_target() {
  ConformanceTarget t;
  t.name = "file_plugin";
  t.type = "FileConnector";
  t.plugin = OMNICONN_FILE_CONNECTOR;
  t.extra = [](const std::string& ns) {
    return map_of({{"directory", Value(kRoot)}, {"namespace", Value(ns)}});
  };
  t.unit = kMiB;
  t.capacity = [](size_t n) { return map_of({{"capacity_bytes", bytes_value(n)}}); };
  t.limits = [](size_t, size_t max) { return map_of({{"max_payload_bytes", bytes_value(max)}}); };
  t.threshold = [](size_t n) { return map_of({{"inline_threshold_bytes", bytes_value(n)}}); };
  t.teardown = [](const std::string& ns) {
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(kRoot) / ns, ec);
  };
  return t;
}

INSTANTIATE_TEST_SUITE_P(Plugin, Conformance, ::testing::Values(file_target()), target_name);

}  // namespace
}  // namespace omniconn::testing

// The SharedMemoryConnector runs the conformance suite (tests/core/conformance.h).
#include "core/conformance.h"

namespace omniconn::testing {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

ConformanceTarget shm_target() {
  ConformanceTarget t;
  t.name = "shm";
  t.type = "SharedMemoryConnector";
  t.extra = [](const std::string& ns) {
    return map_of({{"namespace", Value(ns)}, {"arena_bytes", bytes_value(160 * kMiB)}});
  };
  t.unit = kMiB;
  t.capacity = [](size_t n) { return map_of({{"arena_bytes", bytes_value(n)}}); };
  t.limits = [](size_t staging, size_t max) {
    return map_of({{"arena_bytes", bytes_value(staging)}, {"max_payload_bytes", bytes_value(max)}});
  };
  t.threshold = [](size_t n) { return map_of({{"shm_threshold_bytes", bytes_value(n)}}); };
  return t;
}

INSTANTIATE_TEST_SUITE_P(Shm, Conformance, ::testing::Values(shm_target()), target_name);

}  // namespace
}  // namespace omniconn::testing

// The MooncakeConnector runs the conformance suite (tests/core/conformance.h) twice: on the
// Store C API test double (always) and on a real store with a mooncake_master this process
// starts on loopback (when Mooncake is installed).
#include <filesystem>

#include "core/conformance.h"
#include "mooncake/mooncake_env.h"

namespace omniconn::testing {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Settings shared by the fake and the live store targets.
ConformanceTarget mooncake_base(std::string name) {
  ConformanceTarget t;
  t.name = std::move(name);
  t.type = "MooncakeConnector";
  t.unit = 16 * kMiB;  // Mooncake's smallest segment
  t.capacity = [](size_t n) { return map_of({{"segment", bytes_value(n)}}); };
  t.limits = [](size_t staging, size_t max) {
    return map_of({{"localbuf", bytes_value(staging)}, {"max_payload_bytes", bytes_value(max)}});
  };
  t.threshold = [](size_t n) { return map_of({{"inline_threshold_bytes", bytes_value(n)}}); };
  return t;
}

// The C API test double (tests/mooncake/fake): one store directory per test.
ConformanceTarget mooncake_fake_target() {
  ConformanceTarget t = mooncake_base("mooncake_fake");
  t.extra = [](const std::string& ns) {
    return map_of({{"library", Value(std::string(OMNICONN_FAKE_MOONCAKE_LIB))},
                   {"metadata_server", Value("fake:/tmp/omniconn-fake-mooncake/" + ns)},
                   {"namespace", Value(ns)},
                   {"segment", bytes_value(256 * kMiB)},
                   {"localbuf", bytes_value(160 * kMiB)}});
  };
  t.teardown = [](const std::string& ns) {
    std::error_code ec;
    std::filesystem::remove_all("/tmp/omniconn-fake-mooncake/" + ns, ec);
  };
  return t;
}

// The real store, with a mooncake_master this test process starts on loopback.
MooncakeMaster* live_master(std::string* why) {
  static MooncakeMaster master;
  static std::string error =
      mooncake_skip_reason().empty() ? master.start() : mooncake_skip_reason();
  *why = error;
  return error.empty() ? &master : nullptr;
}

ConformanceTarget mooncake_live_target() {
  ConformanceTarget t = mooncake_base("mooncake");
  t.extra = [](const std::string& ns) {
    std::string why;
    MooncakeMaster* m = live_master(&why);
    return map_of({{"library", Value(mooncake_library())},
                   {"master", Value(m ? m->master() : std::string("127.0.0.1:1"))},
                   {"metadata_server", Value(m ? m->metadata_server() : std::string("x"))},
                   {"host", Value("127.0.0.1")},
                   {"namespace", Value(ns)},
                   {"segment", bytes_value(256 * kMiB)},
                   {"localbuf", bytes_value(160 * kMiB)}});
  };
  t.skip_reason = [] {
    std::string why;
    live_master(&why);
    return why;
  };
  return t;
}

INSTANTIATE_TEST_SUITE_P(Mooncake, Conformance,
                         ::testing::Values(mooncake_fake_target(), mooncake_live_target()),
                         target_name);

}  // namespace
}  // namespace omniconn::testing

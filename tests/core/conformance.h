// The connector conformance suite (conformance_suite.cc): every connector type runs the same
// tests, producers and consumers in separate real processes. A connector's own test folder
// adds its targets with one line:
//
//   INSTANTIATE_TEST_SUITE_P(Shm, Conformance, ::testing::Values(shm_target()), target_name);
//
// What the suite needs to know of a type beyond its settings comes from the registry
// (ConnectorCapabilities), never from its name.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <ostream>
#include <string>

#include "omniconn/registry.h"
#include "omniconn/value.h"

namespace omniconn::testing {

struct ConformanceTarget {
  std::string name;    // the test name suffix
  std::string type;    // the connector type
  std::string plugin;  // the library that provides the type, when it is not built in
  // Settings for a test; `ns` isolates concurrent runs.
  std::function<Value::Map(const std::string& ns)> extra;
  std::function<std::string()> skip_reason = [] { return std::string(); };  // "" = available
  size_t unit = size_t{1} << 20;  // the capacity unit of the limit tests
  // Overrides that limit unread payloads to `bytes`; the staging memory and the largest
  // payload; the inline threshold.
  std::function<Value::Map(size_t bytes)> capacity;
  std::function<Value::Map(size_t staging, size_t max_payload)> limits;
  std::function<Value::Map(size_t bytes)> threshold;
  std::function<void(const std::string& ns)> teardown = [](const std::string&) {};
};

inline void PrintTo(const ConformanceTarget& t, std::ostream* os) {
  *os << t.name;
}

// For INSTANTIATE_TEST_SUITE_P: names each instance after its target.
inline std::string target_name(const ::testing::TestParamInfo<ConformanceTarget>& info) {
  return info.param.name;
}

inline Value::Map map_of(std::initializer_list<std::pair<const char*, Value>> kv) {
  Value::Map m;
  for (const auto& [k, v] : kv) m.emplace(k, v);
  return m;
}

inline Value bytes_value(size_t n) {
  return Value(static_cast<int64_t>(n));
}

class Conformance : public ::testing::TestWithParam<ConformanceTarget> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A connector of the target type; `overrides` replace entries of the target's extra.
  std::unique_ptr<Connector> make(Value::Map overrides = {}) const;
  const ConnectorCapabilities& capabilities() const { return type_->capabilities; }

  std::string ns_;
  const ConnectorType* type_ = nullptr;
};

}  // namespace omniconn::testing

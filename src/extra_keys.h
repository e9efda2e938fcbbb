// Helpers shared by the connector types that validate a stage config's `extra` map.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/status.h"
#include "omniconn/value.h"

namespace omniconn::extra {

using Errors = std::vector<std::string>;

// An integer, or (when `digits_ok`) a string of digits: vllm-omni reads sizes with int().
inline std::optional<int64_t> integer_of(const Value& v, bool digits_ok = true) {
  if (auto i = v.as_int()) return i;
  const std::string* s = v.as_string();
  if (!digits_ok || s == nullptr || s->empty() || s->size() > 18) return std::nullopt;
  int64_t out = 0;
  for (char c : *s) {
    if (c < '0' || c > '9') return std::nullopt;
    out = out * 10 + (c - '0');
  }
  return out;
}

// Reports every key of `m` not in `known`, listing the known ones.
inline void check_known_keys(const Value::Map& m, std::initializer_list<std::string_view> known,
                             Errors* errors) {
  std::string list;
  for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
  for (const auto& [key, value] : m) {
    bool found = false;
    for (std::string_view k : known) found = found || key == k;
    if (!found) errors->push_back("unknown key '" + key + "' (known: " + list + ")");
  }
}

// OK when there are no errors; else one InvalidArgument naming the type and every error.
inline Status to_status(std::string_view type, const Errors& errors) {
  if (errors.empty()) return Status::Ok();
  std::string msg = std::string(type) + " extra: ";
  for (size_t i = 0; i < errors.size(); ++i) msg += (i ? "; " : "") + errors[i];
  return Status::InvalidArgument(msg);
}

}  // namespace omniconn::extra

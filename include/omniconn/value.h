// Value: a small dynamically typed tree (nil, bool, int, float, string, bytes, list, map).
// It carries a payload's non-tensor fields (encoded as msgpack) and connector settings
// (the `extra` map of a stage config).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "omniconn/status.h"

namespace omniconn {

class Value {
 public:
  using List = std::vector<Value>;
  using Map = std::map<std::string, Value, std::less<>>;
  struct Bytes {
    std::vector<uint8_t> data;
    bool operator==(const Bytes&) const = default;
  };

  enum class Kind : uint8_t { kNil, kBool, kInt, kUInt, kFloat, kString, kBytes, kList, kMap };

  Value() = default;
  Value(std::nullptr_t) {}                           // NOLINT
  Value(bool b) : v_(b) {}                           // NOLINT
  Value(int i) : v_(int64_t{i}) {}                   // NOLINT
  Value(int64_t i) : v_(i) {}                        // NOLINT
  Value(uint64_t u) : v_(u) {}                       // NOLINT
  Value(double d) : v_(d) {}                         // NOLINT
  Value(const char* s) : v_(std::string(s)) {}       // NOLINT
  Value(std::string s) : v_(std::move(s)) {}         // NOLINT
  Value(std::string_view s) : v_(std::string(s)) {}  // NOLINT
  Value(Bytes b) : v_(std::move(b)) {}               // NOLINT
  Value(List l) : v_(std::move(l)) {}                // NOLINT
  Value(Map m) : v_(std::move(m)) {}                 // NOLINT

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_nil() const { return kind() == Kind::kNil; }
  bool is_map() const { return kind() == Kind::kMap; }

  // Typed accessors: return nullptr when the kind differs.
  const bool* as_bool() const { return std::get_if<bool>(&v_); }
  const double* as_float() const { return std::get_if<double>(&v_); }
  const std::string* as_string() const { return std::get_if<std::string>(&v_); }
  const Bytes* as_bytes() const { return std::get_if<Bytes>(&v_); }
  const List* as_list() const { return std::get_if<List>(&v_); }
  const Map* as_map() const { return std::get_if<Map>(&v_); }
  List* as_list() { return std::get_if<List>(&v_); }
  Map* as_map() { return std::get_if<Map>(&v_); }
  // Any integer kind that fits an int64.
  std::optional<int64_t> as_int() const;
  // The raw uint64 of a kUInt value (nullptr otherwise).
  const uint64_t* as_uint() const { return std::get_if<uint64_t>(&v_); }

  // Map lookup; nullptr when not a map or the key is absent.
  const Value* find(std::string_view key) const;

  // Human-readable name of the kind ("int", "map", ...), for error messages.
  std::string_view kind_name() const;

  bool operator==(const Value&) const = default;

 private:
  std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string, Bytes, List, Map> v_;
};

// msgpack encoding of a Value (the fields block of the payload format).
std::vector<uint8_t> encode_msgpack(const Value& value);
// Decodes msgpack; bounds-checked, depth-limited. Errors are kCorrupt.
Result<Value> decode_msgpack(const uint8_t* data, size_t size);

}  // namespace omniconn

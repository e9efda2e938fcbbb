// Reading a connector type's `extra` settings (the map under a connector in a stage config)
// into its options: one call per key, each problem a FieldError that names the key.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/registry.h"
#include "omniconn/value.h"

namespace omniconn {

class ExtraReader {
 public:
  // `extra` must be a map or nil (nil: no settings); anything else is one error.
  explicit ExtraReader(const Value& extra);

  // An integer in [min, max] into *out (left alone when the key is absent or bad). With
  // `digits_ok`, a string of digits counts too (vllm-omni reads sizes with int()).
  void integer(std::string_view key, uint64_t min, uint64_t max, uint64_t* out,
               bool digits_ok = true);
  // A string of at most `max_len` bytes into *out; empty only when `may_be_empty`.
  void string(std::string_view key, std::string* out, bool may_be_empty = false,
              size_t max_len = 4096);
  // Marks `key` as read by the type without reading it here.
  void known(std::string_view key);
  bool has(std::string_view key) const;
  // A problem found by the type itself (e.g. two settings that contradict each other).
  void add(FieldError error) { errors_.push_back(std::move(error)); }

  // The problems found, plus one kUnknownKey error for each key nobody read.
  FieldErrors finish();

 private:
  const Value* find(std::string_view key);

  const Value::Map* map_ = nullptr;
  std::vector<std::string> known_;
  FieldErrors errors_;
};

}  // namespace omniconn

// Structural equality of two Values for the fuzzers: like Value::operator==, except that
// floats compare by bit pattern, so a NaN equals itself.
#pragma once

#include <cstdint>
#include <cstring>

#include "omniconn/value.h"

namespace omniconn::fuzz {

inline bool same_value(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNil:
      return true;
    case Value::Kind::kBool:
      return *a.as_bool() == *b.as_bool();
    case Value::Kind::kInt:
      return a.as_int() == b.as_int();
    case Value::Kind::kUInt:
      return *a.as_uint() == *b.as_uint();
    case Value::Kind::kFloat: {
      uint64_t x = 0, y = 0;
      std::memcpy(&x, a.as_float(), sizeof x);
      std::memcpy(&y, b.as_float(), sizeof y);
      return x == y;
    }
    case Value::Kind::kString:
      return *a.as_string() == *b.as_string();
    case Value::Kind::kBytes:
      return *a.as_bytes() == *b.as_bytes();
    case Value::Kind::kList: {
      const Value::List& l = *a.as_list();
      const Value::List& m = *b.as_list();
      if (l.size() != m.size()) return false;
      for (size_t i = 0; i < l.size(); ++i) {
        if (!same_value(l[i], m[i])) return false;
      }
      return true;
    }
    case Value::Kind::kMap: {
      const Value::Map& l = *a.as_map();
      const Value::Map& m = *b.as_map();
      if (l.size() != m.size()) return false;
      for (auto i = l.begin(), j = m.begin(); i != l.end(); ++i, ++j) {
        if (i->first != j->first || !same_value(i->second, j->second)) return false;
      }
      return true;
    }
  }
  return false;
}

}  // namespace omniconn::fuzz

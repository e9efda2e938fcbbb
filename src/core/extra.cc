#include "omniconn/extra.h"

#include <algorithm>

namespace omniconn {

ExtraReader::ExtraReader(const Value& extra) {
  map_ = extra.as_map();
  if (map_ == nullptr && !extra.is_nil()) {
    errors_.push_back({FieldError::Kind::kBadValue, "",
                       "want a map of settings, got " + std::string(extra.kind_name())});
  }
}

const Value* ExtraReader::find(std::string_view key) {
  known(key);
  if (map_ == nullptr) return nullptr;
  auto it = map_->find(std::string(key));
  return it == map_->end() ? nullptr : &it->second;
}

void ExtraReader::known(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
}

bool ExtraReader::has(std::string_view key) const {
  return map_ != nullptr && map_->contains(std::string(key));
}

namespace {

// An integer, or (when `digits_ok`) a string of digits.
std::optional<int64_t> integer_of(const Value& v, bool digits_ok) {
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

}  // namespace

void ExtraReader::integer(std::string_view key, uint64_t min, uint64_t max, uint64_t* out,
                          bool digits_ok) {
  const Value* v = find(key);
  if (v == nullptr) return;
  auto i = integer_of(*v, digits_ok);
  if (i && *i >= 0 && static_cast<uint64_t>(*i) >= min && static_cast<uint64_t>(*i) <= max) {
    *out = static_cast<uint64_t>(*i);
    return;
  }
  errors_.push_back({FieldError::Kind::kBadValue, std::string(key),
                     std::string(key) + ": want an integer in [" + std::to_string(min) + ", " +
                         std::to_string(max) + "], got " +
                         (i ? std::to_string(*i) : std::string(v->kind_name()))});
}

void ExtraReader::string(std::string_view key, std::string* out, bool may_be_empty,
                         size_t max_len) {
  const Value* v = find(key);
  if (v == nullptr) return;
  const std::string* s = v->as_string();
  if (s != nullptr && (may_be_empty || !s->empty()) && s->size() <= max_len) {
    *out = *s;
    return;
  }
  std::string got = s == nullptr ? std::string(v->kind_name())
                    : s->empty() ? std::string("an empty string")
                                 : "a string of " + std::to_string(s->size()) + " bytes";
  errors_.push_back({FieldError::Kind::kBadValue, std::string(key),
                     std::string(key) + ": want a " + (may_be_empty ? "" : "non-empty ") +
                         "string of at most " + std::to_string(max_len) + " bytes, got " + got});
}

FieldErrors ExtraReader::finish() {
  if (map_ != nullptr) {
    std::string list;
    for (const std::string& k : known_) list += (list.empty() ? "" : ", ") + k;
    for (const auto& [key, value] : *map_) {
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      errors_.push_back(
          {FieldError::Kind::kUnknownKey, key, "unknown key '" + key + "' (known: " + list + ")"});
    }
  }
  return std::move(errors_);
}

}  // namespace omniconn

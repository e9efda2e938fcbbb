// The first pass of the config loader: YAML text -> Value, remembering the line and column of
// every key path, and the diagnostics that place each problem by those. yaml-cpp stays behind
// this header.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/config.h"
#include "omniconn/value.h"

namespace omniconn::config {

struct Loc {
  int line = 0;  // 1-based; 0 = unknown
  int column = 0;
};

// Collects errors and locates them through the key paths' marks.
class Diagnostics {
 public:
  Diagnostics(std::string file, std::vector<ConfigError>* errors)
      : file_(std::move(file)), errors_(errors) {}

  // The first location recorded for a path wins (a duplicate key points at the first one).
  void set_loc(const std::string& path, Loc loc) {
    if (loc.line > 0) locs_.emplace(path, loc);
  }
  // The path's own location, else that of its nearest ancestor (a missing key -> its map).
  Loc loc(const std::string& path) const;
  void add_at(Loc loc, std::string path, std::string message, std::string hint = "") {
    errors_->push_back(ConfigError{file_, loc.line, loc.column, std::move(path), std::move(message),
                                   std::move(hint)});
  }
  void add(const std::string& path, std::string message, std::string hint = "") {
    add_at(loc(path), path, std::move(message), std::move(hint));
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::map<std::string, Loc> locs_;
  std::vector<ConfigError>* errors_;
};

// The document of `text` as a Value (unknown fields kept), or nullopt after reporting why it
// cannot be read (syntax, several documents, alias bombs, nesting).
std::optional<Value> read_yaml(const std::string& text, Diagnostics* diag);

// The file's text, or nullopt with *error set (unreadable, larger than 16 MiB).
std::optional<std::string> read_file(const std::string& path, std::string* error);

// Helpers for messages and key paths.
std::string join_key(const std::string& path, std::string_view key);
std::string join_index(const std::string& path, size_t i);
std::string join_names(const std::vector<std::string>& names);
// "string \"0\"", "int 5", "null", "list": what a value is, for messages.
std::string describe(const Value& v);
// A YAML integer (decimal, 0x, 0o, '_' separators), or nullopt.
std::optional<int64_t> parse_int(std::string_view s);

}  // namespace omniconn::config

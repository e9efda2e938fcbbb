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
  int file = 0;  // index into Diagnostics::files()
};

// Where each key path of a document was written.
using Locs = std::map<std::string, Loc, std::less<>>;

// Collects errors and notes, and locates them through the key paths' marks. A document merged
// from several files (base_config) keeps, for each key path, the file it came from.
class Diagnostics {
 public:
  Diagnostics(std::string file, std::vector<ConfigError>* errors,
              std::vector<ConfigError>* notes = nullptr)
      : files_{std::move(file)}, errors_(errors), notes_(notes) {}

  // The first location recorded for a path wins (a duplicate key points at the first one).
  void set_loc(const std::string& path, Loc loc) {
    if (loc.line > 0) locs_.emplace(path, loc);
  }
  // The path's own location, else that of its nearest ancestor (a missing key -> its map).
  Loc loc(const std::string& path) const { return find_loc(locs_, path); }
  static Loc find_loc(const Locs& locs, const std::string& path);
  void add_at(Loc loc, std::string path, std::string message, std::string hint = "") {
    errors_->push_back(make(loc, std::move(path), std::move(message), std::move(hint)));
  }
  void add(const std::string& path, std::string message, std::string hint = "") {
    add_at(loc(path), path, std::move(message), std::move(hint));
  }
  // As add(), with `path` located in `locs` (those of a file being merged).
  void add_in(const Locs& locs, const std::string& path, std::string message,
              std::string hint = "") {
    add_at(find_loc(locs, path), path, std::move(message), std::move(hint));
  }
  // Something the user should know that does not stop a run (an error in strict mode).
  void note(const std::string& path, std::string message, std::string hint = "") {
    ConfigError n = make(loc(path), path, std::move(message), std::move(hint));
    (strict_ || notes_ == nullptr ? errors_ : notes_)->push_back(std::move(n));
  }
  void set_strict(bool strict) { strict_ = strict; }
  // The main file (the one loaded).
  const std::string& file() const { return files_[0]; }
  const std::vector<std::string>& files() const { return files_; }
  int add_file(std::string file) {
    files_.push_back(std::move(file));
    return static_cast<int>(files_.size()) - 1;
  }
  Locs& locs() { return locs_; }
  size_t error_count() const { return errors_->size(); }

 private:
  ConfigError make(Loc loc, std::string path, std::string message, std::string hint) const {
    const std::string& file = loc.file >= 0 && static_cast<size_t>(loc.file) < files_.size()
                                  ? files_[loc.file]
                                  : files_[0];
    return ConfigError{file,           loc.line, loc.column, std::move(path), std::move(message),
                       std::move(hint)};
  }

  std::vector<std::string> files_;
  Locs locs_;
  std::vector<ConfigError>* errors_;
  std::vector<ConfigError>* notes_;
  bool strict_ = false;
};

// The document of `text` as a Value (unknown fields kept), or nullopt after reporting why it
// cannot be read (syntax, several documents, alias bombs, nesting). Locations are recorded in
// diag->locs() as being in diag->files()[file].
std::optional<Value> read_yaml(const std::string& text, Diagnostics* diag, int file = 0);

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

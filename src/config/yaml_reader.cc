// YAML text -> Value with line/column marks (see yaml_reader.h).
#include "config/yaml_reader.h"

// yaml-cpp 0.7's node/impl.h trips GCC 12's -Wdangling-pointer (a false positive in the header).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

namespace omniconn::config {

namespace {

constexpr int kMaxDepth = 64;            // nesting; also stops self-referencing aliases
constexpr size_t kMaxNodes = 1'000'000;  // after alias expansion ("billion laughs")
constexpr size_t kMaxFileBytes = size_t{16} << 20;

}  // namespace

std::string join_key(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string join_index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// "string \"0\"", "int 5", "null", "list": what a value is, for messages.
std::string describe(const Value& v) {
  if (v.is_nil()) return "null";
  if (const std::string* s = v.as_string()) return "string \"" + *s + "\"";
  if (auto i = v.as_int()) return "int " + std::to_string(*i);
  if (const bool* b = v.as_bool()) return std::string("bool ") + (*b ? "true" : "false");
  if (const double* d = v.as_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "float %g", *d);
    return buf;
  }
  return std::string(v.kind_name());
}

// ---------------------------------------------------------------------------------------------
// Scalars: int64, then double, then bool (true/false), then null, else string.

std::optional<int64_t> parse_int(std::string_view s) {
  bool negative = !s.empty() && s[0] == '-';
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    s.remove_prefix(2);
  }
  if (s.empty() || s[0] == '_') return std::nullopt;
  std::string digits;
  for (char c : s) {
    if (c != '_') digits += c;  // YAML 1.1 digit separators: 512_000_000
  }
  uint64_t u = 0;
  const char* end = digits.data() + digits.size();
  auto [ptr, ec] = std::from_chars(digits.data(), end, u, base);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  if (!negative) return u <= kMax ? std::optional<int64_t>(static_cast<int64_t>(u)) : std::nullopt;
  if (u <= kMax) return -static_cast<int64_t>(u);
  if (u == kMax + 1) return std::numeric_limits<int64_t>::min();
  return std::nullopt;
}

namespace {

std::optional<double> parse_float(std::string_view s) {
  static const std::set<std::string_view> kInf = {".inf",  ".Inf",  ".INF",
                                                  "+.inf", "+.Inf", "+.INF"};
  static const std::set<std::string_view> kNan = {".nan", ".NaN", ".NAN"};
  if (kInf.contains(s)) return std::numeric_limits<double>::infinity();
  if (!s.empty() && s[0] == '-' && kInf.contains(s.substr(1))) {
    return -std::numeric_limits<double>::infinity();
  }
  if (kNan.contains(s)) return std::numeric_limits<double>::quiet_NaN();
  // Digits, sign, point and exponent only: from_chars alone would also take "nan" and "inf".
  if (s.find_first_not_of("0123456789+-.eE_") != std::string_view::npos) return std::nullopt;
  if (s.find_first_of("0123456789") == std::string_view::npos) return std::nullopt;
  std::string t;
  for (char c : s) {
    if (c != '_') t += c;
  }
  std::string_view v = t;
  if (!v.empty() && v[0] == '+') v.remove_prefix(1);
  double d = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return d;
}

Value plain_scalar(const std::string& s) {
  if (auto i = parse_int(s)) return Value(*i);
  if (auto d = parse_float(s)) return Value(*d);
  if (s == "true" || s == "True" || s == "TRUE") return Value(true);
  if (s == "false" || s == "False" || s == "FALSE") return Value(false);
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Value();
  return Value(s);
}

// yaml-cpp tags a quoted (or block) scalar "!" and a plain one "?".
Value scalar_value(const YAML::Node& node) {
  const std::string& tag = node.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return Value(node.Scalar());
  return plain_scalar(node.Scalar());
}

Loc loc_of(const YAML::Mark& m) {
  if (m.line < 0 || m.column < 0) return {};
  return {m.line + 1, m.column + 1};
}

}  // namespace

Loc Diagnostics::find_loc(const Locs& locs, const std::string& path) {
  std::string p = path;
  while (true) {
    if (auto it = locs.find(p); it != locs.end()) return it->second;
    if (p.empty()) return {};
    size_t cut = p.find_last_of(".[");
    p = cut == std::string::npos ? "" : p.substr(0, cut);
  }
}

namespace {

// ---------------------------------------------------------------------------------------------
// YamlReader: yaml-cpp tree -> Value, recording each key path's location.

class YamlReader {
 public:
  YamlReader(Diagnostics* diag, int file) : diag_(diag), file_(file) {}
  Value read(const YAML::Node& node, const std::string& path, int depth);
  bool limit_hit() const { return limit_hit_; }

 private:
  Value read_map(const YAML::Node& node, const std::string& path, int depth);
  Value read_list(const YAML::Node& node, const std::string& path, int depth);
  void merge(const Value& from, Value::Map* into, const std::string& path);
  bool over_limits(const YAML::Node& node, const std::string& path, int depth);

  Loc at(const YAML::Mark& m) const {
    Loc l = loc_of(m);
    l.file = file_;
    return l;
  }

  Diagnostics* diag_;
  int file_;
  size_t nodes_ = 0;
  bool limit_hit_ = false;
};

Value YamlReader::read(const YAML::Node& node, const std::string& path, int depth) {
  if (over_limits(node, path, depth)) return Value();
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return read_map(node, path, depth);
    case YAML::NodeType::Sequence:
      return read_list(node, path, depth);
    case YAML::NodeType::Scalar:
      return scalar_value(node);
    default:
      return Value();  // Null, Undefined
  }
}

bool YamlReader::over_limits(const YAML::Node& node, const std::string& path, int depth) {
  if (limit_hit_) return true;
  if (++nodes_ <= kMaxNodes && depth <= kMaxDepth) return false;
  limit_hit_ = true;
  diag_->add_at(at(node.Mark()), path.size() > 120 ? path.substr(0, 120) + "..." : path,
                nodes_ > kMaxNodes ? "the document expands to more than 1000000 nodes"
                                   : "nesting deeper than 64 levels",
                "look for an alias (*name) that refers to itself or expands too often");
  return true;
}

Value YamlReader::read_map(const YAML::Node& node, const std::string& path, int depth) {
  Value::Map map;
  std::vector<Value> merges;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;  // copies: the iterator hands out temporaries
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      diag_->add_at(at(key.Mark()), path, "a map key must be a plain scalar", "use a string key");
      continue;
    }
    std::string child = join_key(path, key.Scalar());
    if (key.Scalar() == "<<" && key.Tag() == "?") {  // merge key: <<: *defaults
      merges.push_back(read(value, child, depth + 1));
      continue;
    }
    Loc key_at = at(key.Mark());
    if (map.contains(key.Scalar())) {
      diag_->add_at(key_at, child,
                    "duplicate key '" + key.Scalar() + "' (first at line " +
                        std::to_string(diag_->loc(child).line) + ")",
                    "remove one of the two; the later one would silently win");
    }
    diag_->set_loc(child, key_at);
    map[key.Scalar()] = read(value, child, depth + 1);
  }
  for (const Value& m : merges) merge(m, &map, join_key(path, "<<"));
  return Value(std::move(map));
}

// `<<: map` or `<<: [map, ...]`: keys not already present are copied (YAML merge keys).
void YamlReader::merge(const Value& from, Value::Map* into, const std::string& path) {
  if (const Value::Map* m = from.as_map()) {
    for (const auto& [k, v] : *m) into->emplace(k, v);
    return;
  }
  const Value::List* list = from.as_list();
  bool ok = list != nullptr;
  for (size_t i = 0; ok && i < list->size(); ++i) ok = (*list)[i].is_map();
  if (!ok) {
    diag_->add(path, "a merge key (<<) wants a map or a list of maps, got " + describe(from),
               "merge an anchored map: <<: *name");
    return;
  }
  for (const Value& m : *list) merge(m, into, path);
}

Value YamlReader::read_list(const YAML::Node& node, const std::string& path, int depth) {
  Value::List list;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    std::string child = join_index(path, i);
    diag_->set_loc(child, at(it->Mark()));
    list.push_back(read(*it, child, depth + 1));
  }
  return Value(std::move(list));
}

// ---------------------------------------------------------------------------------------------
// Entry points

// A document marker at column 0: `---` or `...`, alone or followed by a space.
bool is_marker(std::string_view line, std::string_view marker) {
  return line.starts_with(marker) &&
         (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
}

// Where the text's second YAML document starts (a location with line 0: it has one). yaml-cpp's
// LoadAll loops forever on some inputs (a stray ',' at the start), so documents are counted
// here and only the first is parsed. In YAML a marker at column 0 is always a marker.
Loc second_document(std::string_view text) {
  bool in_doc = false;  // a document has begun: content, or an explicit `---`
  bool ended = false;   // `...` closed it
  int line = 0;
  for (size_t pos = 0; pos < text.size(); ++line) {
    size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view l = text.substr(pos, end - pos);
    pos = end + 1;
    size_t first = l.find_first_not_of(" \t\r");
    bool content = first != std::string_view::npos && l[first] != '#' && !(!in_doc && l[0] == '%');
    if (is_marker(l, "---") || (content && ended && !is_marker(l, "..."))) {
      if (in_doc || ended) return Loc{line + 1, 1};
      in_doc = true;
    } else if (is_marker(l, "...")) {
      ended = ended || in_doc;
      in_doc = false;
    } else if (content) {
      in_doc = true;
    }
  }
  return {};
}

// The first character of the document that is not blank, a comment, a directive or a marker.
std::optional<std::pair<Loc, char>> first_content(std::string_view text) {
  int line = 0;
  for (size_t pos = 0; pos < text.size(); ++line) {
    size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view l = text.substr(pos, end - pos);
    pos = end + 1;
    size_t first = l.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || l[first] == '#' || l[0] == '%') continue;
    if (is_marker(l, "---") || is_marker(l, "...")) continue;
    return std::pair(Loc{line + 1, static_cast<int>(first) + 1}, l[first]);
  }
  return std::nullopt;
}

// The first document, or nullopt after reporting why there is none to read.
std::optional<YAML::Node> load_yaml(const std::string& text, Diagnostics* diag, int file) {
  auto in_file = [file](Loc l) {
    l.file = file;
    return l;
  };
  const char* hint = "check the indentation and the brackets/quotes around this position";
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // yaml-cpp's DeepRecursion says "bad file".
    std::string msg = e.msg == "bad file" ? "nesting too deep for the YAML parser" : e.msg;
    diag->add_at(in_file(loc_of(e.mark)), "", "YAML syntax error: " + msg, hint);
    return std::nullopt;
  }
  if (Loc second = second_document(text); second.line > 0) {
    diag->add_at(in_file(second), "", "the file holds more than one YAML document",
                 "keep one document: remove this line and what follows it");
    return std::nullopt;
  }
  auto first = first_content(text);
  if (root.IsNull() && first && first->second == ',') {  // yaml-cpp reads a stray ',' as null
    diag->add_at(in_file(first->first), "", "YAML syntax error: unexpected ','", hint);
    return std::nullopt;
  }
  return root;
}

}  // namespace

std::optional<Value> read_yaml(const std::string& text, Diagnostics* diag, int file) {
  std::optional<YAML::Node> root = load_yaml(text, diag, file);
  if (!root) return std::nullopt;
  diag->set_loc("", Loc{1, 1, file});
  YamlReader reader(diag, file);
  Value doc = reader.read(*root, "", 0);
  if (reader.limit_hit()) return std::nullopt;  // the tree is incomplete
  return doc;
}

std::optional<std::string> read_file(const std::string& path, std::string* error) {
  // Opened without blocking and checked first: a FIFO or a device must not hang the loader.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *error = std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "not a regular file";
    ::close(fd);
    return std::nullopt;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  FILE* f = ::fdopen(fd, "rb");
  if (f == nullptr) {
    *error = std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() <= kMaxFileBytes) {
    text.append(buf, n);
  }
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) *error = std::strerror(err);
  if (text.size() > kMaxFileBytes) *error = "larger than 16 MiB; not a stage config";
  if (!error->empty()) return std::nullopt;
  return text;
}

}  // namespace omniconn::config

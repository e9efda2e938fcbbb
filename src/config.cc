// Pipeline config: vllm-omni stage-config YAML -> PipelineConfig.
//
// Two passes. YamlReader turns the yaml-cpp tree into a Value and remembers where every key
// path sits in the file. ConfigBuilder then resolves stages, edges and connectors the way
// vllm-omni's load_omni_transfer_config does, but checks everything that loader lets through
// and reports every problem it finds, each located by line, column and key path.
#include "omniconn/config.h"

// yaml-cpp 0.7's node/impl.h trips GCC 12's -Wdangling-pointer (a false positive in the header).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace omniconn {

std::string ConfigError::ToString() const {
  std::string out = file.empty() ? "" : file + ":";
  if (line > 0) out += std::to_string(line) + ":";
  if (line > 0 && column > 0) out += std::to_string(column) + ":";
  if (!out.empty()) out += " ";
  if (!key_path.empty()) out += key_path + ": ";
  out += message;
  if (!hint.empty()) out += " (fix: " + hint + ")";
  return out;
}

const StageConfig* PipelineConfig::stage(std::string_view id) const {
  for (const StageConfig& s : stages) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 64;            // nesting; also stops self-referencing aliases
constexpr size_t kMaxNodes = 1'000'000;  // after alias expansion ("billion laughs")
constexpr size_t kMaxFileBytes = size_t{16} << 20;
constexpr int64_t kAutoShmThreshold = 65536;  // vllm-omni's default shm_threshold_bytes
constexpr const char* kAutoShmType = "SharedMemoryConnector";

// ---------------------------------------------------------------------------------------------
// Small helpers

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

// ---------------------------------------------------------------------------------------------
// Diagnostics: collects errors and locates them through the key paths' marks.

struct Loc {
  int line = 0;  // 1-based; 0 = unknown
  int column = 0;
};

Loc loc_of(const YAML::Mark& m) {
  if (m.line < 0 || m.column < 0) return {};
  return {m.line + 1, m.column + 1};
}

class Diagnostics {
 public:
  Diagnostics(std::string file, std::vector<ConfigError>* errors)
      : file_(std::move(file)), errors_(errors) {}

  // The first location recorded for a path wins (a duplicate key points at the first one).
  void set_loc(const std::string& path, Loc loc) {
    if (loc.line > 0) locs_.emplace(path, loc);
  }
  Loc loc(const std::string& path) const;
  void add_at(Loc loc, std::string path, std::string message, std::string hint = "") {
    errors_->push_back(ConfigError{file_, loc.line, loc.column, std::move(path), std::move(message),
                                   std::move(hint)});
  }
  void add(const std::string& path, std::string message, std::string hint = "") {
    add_at(loc(path), path, std::move(message), std::move(hint));
  }

 private:
  std::string file_;
  std::map<std::string, Loc> locs_;
  std::vector<ConfigError>* errors_;
};

// The path's own location, else that of its nearest ancestor (a missing key -> its map).
Loc Diagnostics::loc(const std::string& path) const {
  std::string p = path;
  while (true) {
    if (auto it = locs_.find(p); it != locs_.end()) return it->second;
    if (p.empty()) return {};
    size_t cut = p.find_last_of(".[");
    p = cut == std::string::npos ? "" : p.substr(0, cut);
  }
}

// ---------------------------------------------------------------------------------------------
// YamlReader: yaml-cpp tree -> Value, recording each key path's location.

class YamlReader {
 public:
  explicit YamlReader(Diagnostics* diag) : diag_(diag) {}
  Value read(const YAML::Node& node, const std::string& path, int depth);
  bool limit_hit() const { return limit_hit_; }

 private:
  Value read_map(const YAML::Node& node, const std::string& path, int depth);
  Value read_list(const YAML::Node& node, const std::string& path, int depth);
  void merge(const Value& from, Value::Map* into, const std::string& path);
  bool over_limits(const YAML::Node& node, const std::string& path, int depth);

  Diagnostics* diag_;
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
  diag_->add_at(loc_of(node.Mark()), path.size() > 120 ? path.substr(0, 120) + "..." : path,
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
      diag_->add_at(loc_of(key.Mark()), path, "a map key must be a plain scalar",
                    "use a string key");
      continue;
    }
    std::string child = join_key(path, key.Scalar());
    if (key.Scalar() == "<<" && key.Tag() == "?") {  // merge key: <<: *defaults
      merges.push_back(read(value, child, depth + 1));
      continue;
    }
    Loc at = loc_of(key.Mark());
    if (map.contains(key.Scalar())) {
      diag_->add_at(at, child,
                    "duplicate key '" + key.Scalar() + "' (first at line " +
                        std::to_string(diag_->loc(child).line) + ")",
                    "remove one of the two; the later one would silently win");
    }
    diag_->set_loc(child, at);
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
    diag_->set_loc(child, loc_of(it->Mark()));
    list.push_back(read(*it, child, depth + 1));
  }
  return Value(std::move(list));
}

// ---------------------------------------------------------------------------------------------
// ConfigBuilder: stages, edges and connectors, resolved as vllm-omni does and checked.

using EdgeKey = std::pair<int64_t, int64_t>;

// One place in the file that names an edge.
struct EdgeSource {
  EdgeKey key;
  std::string path;       // the declaration
  std::string from_path;  // what names the sending stage
  std::string to_path;    // what names the receiving stage
};

// A connector chosen for an edge by input_connectors or output_connectors.
struct Decl {
  std::string path;
  std::string name;  // the runtime.connectors entry; "" when inline
  ConnectorSpec spec;
};

std::string edge_str(const EdgeKey& k) {
  return std::to_string(k.first) + "->" + std::to_string(k.second);
}

const Value::Map& empty_map() {
  static const Value::Map kEmpty;
  return kEmpty;
}

class ConfigBuilder {
 public:
  ConfigBuilder(Diagnostics* diag, PipelineConfig* out) : diag_(diag), out_(out) {}
  void build(const Value& doc);

 private:
  const Value::Map* map_at(const Value::Map& parent, const std::string& key,
                           const std::string& path);
  const Value::List* list_at(const Value::Map& parent, const std::string& key,
                             const std::string& path);
  std::optional<int64_t> stage_number(const Value& v, const std::string& path);

  void read_connectors(const Value::Map& runtime);
  std::optional<ConnectorSpec> read_spec(const Value& v, const std::string& path);
  std::optional<std::string> read_type(const Value::Map& m, const std::string& path);
  void report_extra(const ConnectorSpec& spec, const std::string& path, const Status& st);
  void read_stages(const Value::Map& doc);
  void read_stage(const Value& v, const std::string& path);
  bool read_stage_id(const Value::Map& m, StageConfig* st);
  void read_stage_fields(const Value::Map& m, StageConfig* st);
  void read_sources(const Value::Map& m, StageConfig* st);
  void read_stage_connectors(const Value::Map& m, const StageConfig& st, bool input);
  std::optional<Decl> read_ref(const Value& v, const std::string& path);
  void read_edges(const Value::Map& runtime);
  void read_edge(const Value& v, const std::string& path);

  bool add_source(const EdgeKey& key, std::string path, std::string from_path, std::string to_path);
  std::set<EdgeKey> check_endpoints();
  void check_pairs();
  void make_edges(const std::set<EdgeKey>& bad);

  Diagnostics* diag_;
  PipelineConfig* out_;
  std::set<std::string> defined_;  // every runtime.connectors name, valid or not
  bool ids_known_ = true;          // every stage has a valid stage_id
  std::map<int64_t, std::string> stage_paths_;
  std::vector<EdgeSource> sources_;
  std::map<EdgeKey, std::string> expected_;  // runtime.edges and engine_input_source
  std::map<EdgeKey, Decl> inputs_, outputs_;
};

void ConfigBuilder::build(const Value& doc) {
  const Value::Map* top = doc.as_map();
  if (top == nullptr) {
    diag_->add("", "the top level must be a map, got " + describe(doc),
               "a stage config starts with `stage_args:` (a list of stages) and optionally "
               "`runtime:`");
    return;
  }
  // runtime.edges before the stages: like vllm-omni, an automatic edge is first declared by
  // runtime.edges, then by engine_input_source (EdgeConfig::declared_at).
  const Value::Map* runtime = map_at(*top, "runtime", "runtime");
  if (runtime != nullptr) read_connectors(*runtime);
  if (runtime != nullptr) read_edges(*runtime);
  read_stages(*top);
  std::set<EdgeKey> bad = check_endpoints();
  check_pairs();
  make_edges(bad);
}

// A section that must be a map: absent or null -> empty; any other kind -> error, nullptr.
const Value::Map* ConfigBuilder::map_at(const Value::Map& parent, const std::string& key,
                                        const std::string& path) {
  auto it = parent.find(key);
  if (it == parent.end() || it->second.is_nil()) return &empty_map();
  if (const Value::Map* m = it->second.as_map()) return m;
  diag_->add(path, "want a map, got " + describe(it->second),
             "write `" + key + ":` followed by indented `key: value` lines, or remove it");
  return nullptr;
}

// A section that must be a list: absent or null -> empty; any other kind -> error, nullptr.
const Value::List* ConfigBuilder::list_at(const Value::Map& parent, const std::string& key,
                                          const std::string& path) {
  static const Value::List kEmpty;
  auto it = parent.find(key);
  if (it == parent.end() || it->second.is_nil()) return &kEmpty;
  if (const Value::List* l = it->second.as_list()) return l;
  diag_->add(path, "want a list, got " + describe(it->second),
             "write a YAML list: `" + key + ": [...]` or `- item` lines");
  return nullptr;
}

std::optional<int64_t> ConfigBuilder::stage_number(const Value& v, const std::string& path) {
  auto id = v.as_int();
  if (id && *id >= 0) return id;
  std::string hint = "use a non-negative integer such as 0";
  if (const std::string* s = v.as_string(); s != nullptr && parse_int(*s)) {
    hint = "write " + *s + " without quotes";
  }
  diag_->add(path, "want a stage id (a non-negative integer), got " + describe(v), hint);
  return std::nullopt;
}

// ---- connectors ---------------------------------------------------------------------------

void ConfigBuilder::read_connectors(const Value::Map& runtime) {
  const Value::Map* conns = map_at(runtime, "connectors", "runtime.connectors");
  if (conns == nullptr) return;
  for (const auto& [name, value] : *conns) {
    defined_.insert(name);
    auto spec = read_spec(value, "runtime.connectors." + name);
    if (spec) out_->connectors[name] = std::move(*spec);
  }
}

// `{name: <type>, extra: {...}}`, checked by the connector type itself.
std::optional<ConnectorSpec> ConfigBuilder::read_spec(const Value& v, const std::string& path) {
  const Value::Map* m = v.as_map();
  if (m == nullptr) {
    diag_->add(path, "want a connector {name: <type>, extra: {...}}, got " + describe(v),
               "give the connector a `name:` (its type) and optionally `extra:`");
    return std::nullopt;
  }
  auto type = read_type(*m, path);
  ConnectorSpec spec;
  if (auto it = m->find("extra"); it != m->end() && !it->second.is_nil()) {
    if (!it->second.is_map()) {
      diag_->add(path + ".extra", "want a map of settings, got " + describe(it->second),
                 "write `extra:` followed by indented `key: value` lines, or remove it");
      return std::nullopt;
    }
    spec.extra = it->second;
  }
  if (!type) return std::nullopt;
  spec.type = *type;
  Status st = ConnectorRegistry::instance().validate(spec);
  if (st.ok()) return spec;
  report_extra(spec, path + ".extra", st);
  return std::nullopt;
}

std::optional<std::string> ConfigBuilder::read_type(const Value::Map& m, const std::string& path) {
  std::string types = join_names(ConnectorRegistry::instance().type_names());
  auto it = m.find("name");
  if (it == m.end()) {
    diag_->add(path + ".name", "the connector has no `name` (its type)",
               "add `name: <type>`, one of: " + types);
    return std::nullopt;
  }
  const std::string* type = it->second.as_string();
  if (type == nullptr || ConnectorRegistry::instance().find(*type) == nullptr) {
    diag_->add(path + ".name", "unknown connector type " + describe(it->second),
               "use one of the registered types: " + types);
    return std::nullopt;
  }
  return *type;
}

// The key of `extra` that one validation message is about, if it names one.
std::string extra_key_of(std::string_view part, const Value::Map& extra) {
  if (part.starts_with("unknown key '")) {
    std::string_view rest = part.substr(13);
    return std::string(rest.substr(0, rest.find('\'')));
  }
  size_t end = part.find_first_not_of("abcdefghijklmnopqrstuvwxyz_0123456789");
  std::string lead(part.substr(0, end));
  if (extra.contains(lead)) return lead;
  for (const auto& [key, value] : extra) {
    if (part.find(key) != std::string_view::npos) return key;
  }
  return "";
}

// A type's validate() gives one message, "<Type> extra: a; b; c". Each part becomes an error
// at the `extra` key it is about.
void ConfigBuilder::report_extra(const ConnectorSpec& spec, const std::string& path,
                                 const Status& st) {
  std::string_view msg = st.message();
  std::string prefix = spec.type + " extra: ";
  if (msg.starts_with(prefix)) msg.remove_prefix(prefix.size());
  const Value::Map& extra = spec.extra.is_map() ? *spec.extra.as_map() : empty_map();
  while (!msg.empty()) {
    size_t cut = msg.find("; ");
    std::string_view part = msg.substr(0, cut);
    std::string key = extra_key_of(part, extra);
    bool unknown = part.starts_with("unknown key");
    diag_->add(key.empty() ? path : path + "." + key, spec.type + ": " + std::string(part),
               unknown ? "remove the key or correct its spelling"
                       : "docs/config.md lists every " + spec.type + " key and its range");
    msg = cut == std::string_view::npos ? std::string_view() : msg.substr(cut + 2);
  }
}

// ---- stages -------------------------------------------------------------------------------

void ConfigBuilder::read_stages(const Value::Map& doc) {
  auto it = doc.find("stage_args");
  if (it == doc.end()) {
    diag_->add("stage_args", "the config has no stage_args",
               "add `stage_args:`, a list with one entry per stage");
    return;
  }
  const Value::List* list = list_at(doc, "stage_args", "stage_args");
  if (list == nullptr) return;
  if (list->empty()) {
    diag_->add("stage_args", "stage_args is empty",
               "add at least one stage: `- stage_id: 0` with its engine_args");
    return;
  }
  for (size_t i = 0; i < list->size(); ++i) read_stage((*list)[i], join_index("stage_args", i));
}

void ConfigBuilder::read_stage(const Value& v, const std::string& path) {
  const Value::Map* m = v.as_map();
  if (m == nullptr) {
    diag_->add(path, "want a stage (a map with stage_id), got " + describe(v),
               "write each stage as `- stage_id: <n>` followed by its fields");
    ids_known_ = false;
    return;
  }
  StageConfig st;
  st.key_path = path;
  st.raw = v;
  if (!read_stage_id(*m, &st)) return;
  read_stage_fields(*m, &st);
  read_sources(*m, &st);
  read_stage_connectors(*m, st, true);
  read_stage_connectors(*m, st, false);
  out_->stages.push_back(std::move(st));
}

bool ConfigBuilder::read_stage_id(const Value::Map& m, StageConfig* st) {
  std::string path = st->key_path + ".stage_id";
  auto it = m.find("stage_id");
  std::optional<int64_t> id;
  if (it == m.end()) {
    diag_->add(path, "the stage has no stage_id", "add `stage_id: <n>` (0 for the first stage)");
  } else {
    id = stage_number(it->second, path);
  }
  if (!id) {
    ids_known_ = false;
    return false;
  }
  auto [seen, fresh] = stage_paths_.emplace(*id, st->key_path);
  if (!fresh) {
    diag_->add(path, "duplicate stage_id " + std::to_string(*id) + " (also " + seen->second + ")",
               "give every stage its own stage_id");
  }
  st->stage_id = *id;
  st->id = std::to_string(*id);
  return true;
}

void ConfigBuilder::read_stage_fields(const Value::Map& m, StageConfig* st) {
  if (auto it = m.find("final_output"); it != m.end() && !it->second.is_nil()) {
    if (const bool* b = it->second.as_bool()) {
      st->final_output = *b;
    } else {
      diag_->add(st->key_path + ".final_output", "want true or false, got " + describe(it->second),
                 "write final_output: true or final_output: false");
    }
  }
  if (auto it = m.find("final_output_type"); it != m.end() && !it->second.is_nil()) {
    if (const std::string* s = it->second.as_string()) {
      st->final_output_type = *s;
    } else {
      diag_->add(st->key_path + ".final_output_type", "want a string, got " + describe(it->second),
                 "write text, audio or image");
    }
  }
}

// engine_input_source: [<upstream stage id>, ...]; each one is an edge upstream -> this stage.
void ConfigBuilder::read_sources(const Value::Map& m, StageConfig* st) {
  std::string path = st->key_path + ".engine_input_source";
  const Value::List* list = list_at(m, "engine_input_source", path);
  if (list == nullptr) return;
  for (size_t i = 0; i < list->size(); ++i) {
    std::string p = join_index(path, i);
    auto src = stage_number((*list)[i], p);
    if (!src) continue;
    st->engine_input_source.push_back(*src);
    EdgeKey key{*src, st->stage_id};
    if (add_source(key, p, p, p)) expected_.emplace(key, p);
  }
}

// "from_stage_<id>" -> id; nullopt unless <id> is a canonical non-negative integer.
std::optional<int64_t> stage_of_key(std::string_view key, std::string_view prefix) {
  if (!key.starts_with(prefix)) return std::nullopt;
  std::string_view digits = key.substr(prefix.size());
  if (digits.empty() || digits.size() > 18 || (digits.size() > 1 && digits[0] == '0')) {
    return std::nullopt;
  }
  if (digits.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  return parse_int(digits);
}

void ConfigBuilder::read_stage_connectors(const Value::Map& m, const StageConfig& st, bool input) {
  const char* section = input ? "input_connectors" : "output_connectors";
  const char* prefix = input ? "from_stage_" : "to_stage_";
  std::string path = st.key_path + "." + section;
  const Value::Map* conns = map_at(m, section, path);
  if (conns == nullptr) return;
  for (const auto& [key, ref] : *conns) {
    std::string p = path + "." + key;
    auto other = stage_of_key(key, prefix);
    if (!other) {
      diag_->add(p, "key '" + key + "' is not of the form " + prefix + "<stage id>",
                 std::string("write ") + prefix + "<id of the " +
                     (input ? "sending" : "receiving") + " stage>, e.g. " + prefix + "0");
      continue;
    }
    EdgeKey edge = input ? EdgeKey{*other, st.stage_id} : EdgeKey{st.stage_id, *other};
    bool ok = add_source(edge, p, p, p);
    auto decl = read_ref(ref, p);
    if (ok && decl) (input ? inputs_ : outputs_)[edge] = std::move(*decl);
  }
}

// A connector ref: the name of a runtime.connectors entry, or an inline {name, extra}.
std::optional<Decl> ConfigBuilder::read_ref(const Value& v, const std::string& path) {
  if (const std::string* name = v.as_string()) {
    if (auto it = out_->connectors.find(*name); it != out_->connectors.end()) {
      return Decl{path, *name, it->second};
    }
    if (defined_.contains(*name)) return std::nullopt;  // defined but invalid: reported there
    std::vector<std::string> names(defined_.begin(), defined_.end());
    diag_->add(path, "undefined connector reference '" + *name + "'",
               names.empty() ? "define it under runtime.connectors (none are defined), or "
                               "remove this entry to get an automatic SharedMemoryConnector"
                             : "use one of the connectors defined under runtime.connectors: " +
                                   join_names(names));
    return std::nullopt;
  }
  if (!v.is_map()) {
    diag_->add(path, "want a connector name or an inline {name, extra}, got " + describe(v),
               "name an entry of runtime.connectors, e.g. " + path.substr(path.rfind('.') + 1) +
                   ": my_connector");
    return std::nullopt;
  }
  auto spec = read_spec(v, path);
  if (!spec) return std::nullopt;
  return Decl{path, "", std::move(*spec)};
}

// ---- runtime.edges ------------------------------------------------------------------------

void ConfigBuilder::read_edges(const Value::Map& runtime) {
  const Value::List* list = list_at(runtime, "edges", "runtime.edges");
  if (list == nullptr) return;
  for (size_t i = 0; i < list->size(); ++i) read_edge((*list)[i], join_index("runtime.edges", i));
}

void ConfigBuilder::read_edge(const Value& v, const std::string& path) {
  const Value::Map* m = v.as_map();
  if (m == nullptr) {
    diag_->add(path, "want an edge {from: <stage id>, to: <stage id>}, got " + describe(v),
               "write `- {from: 0, to: 1}`");
    return;
  }
  std::optional<int64_t> ends[2];
  const char* names[2] = {"from", "to"};
  for (int i = 0; i < 2; ++i) {
    std::string p = path + "." + names[i];
    auto it = m->find(names[i]);
    if (it == m->end()) {
      diag_->add(p, std::string("the edge has no `") + names[i] + "`",
                 std::string("add `") + names[i] + ": <stage id>` (vllm-omni would skip the edge)");
    } else {
      ends[i] = stage_number(it->second, p);
    }
  }
  if (!ends[0] || !ends[1]) return;
  EdgeKey key{*ends[0], *ends[1]};
  if (add_source(key, path, path + ".from", path + ".to")) expected_.emplace(key, path);
}

// ---- resolution ---------------------------------------------------------------------------

bool ConfigBuilder::add_source(const EdgeKey& key, std::string path, std::string from_path,
                               std::string to_path) {
  if (key.first == key.second) {
    diag_->add(path, "self-loop: stage " + std::to_string(key.first) + " sends to itself",
               "an edge joins two different stages; correct the stage id or remove the edge");
    return false;
  }
  sources_.push_back(EdgeSource{key, std::move(path), std::move(from_path), std::move(to_path)});
  return true;
}

// Every edge must join stages that exist. Returns the edges that do not.
std::set<EdgeKey> ConfigBuilder::check_endpoints() {
  std::set<EdgeKey> bad;
  if (!ids_known_ || stage_paths_.empty()) return bad;  // missing ids: already reported
  std::vector<std::string> ids;
  for (const auto& [id, path] : stage_paths_) ids.push_back(std::to_string(id));
  std::string hint = "stage_args defines stages " + join_names(ids);
  for (const EdgeSource& s : sources_) {
    if (!stage_paths_.contains(s.key.first)) {
      diag_->add(s.from_path, "stage " + std::to_string(s.key.first) + " does not exist", hint);
      bad.insert(s.key);
    }
    if (!stage_paths_.contains(s.key.second)) {
      diag_->add(s.to_path, "stage " + std::to_string(s.key.second) + " does not exist", hint);
      bad.insert(s.key);
    }
  }
  return bad;
}

// Both ends of an edge may name its connector; they must agree (vllm-omni lets the later
// one silently win).
void ConfigBuilder::check_pairs() {
  for (const auto& [key, in] : inputs_) {
    auto it = outputs_.find(key);
    if (it == outputs_.end()) continue;
    const Decl& out = it->second;
    bool both_named = !in.name.empty() && !out.name.empty();
    bool same = both_named ? in.name == out.name
                           : in.spec.type == out.spec.type && in.spec.extra == out.spec.extra;
    if (same) continue;
    auto label = [](const Decl& d) {
      return d.name.empty() ? "an inline " + d.spec.type : "'" + d.name + "'";
    };
    diag_->add(in.path,
               "edge " + edge_str(key) + ": " + label(in) + " here disagrees with " + label(out) +
                   " at " + out.path,
               "name the same connector at both " + in.path + " and " + out.path +
                   ", or declare it on one end only");
  }
}

void ConfigBuilder::make_edges(const std::set<EdgeKey>& bad) {
  std::set<EdgeKey> keys;
  for (const EdgeSource& s : sources_) keys.insert(s.key);
  for (const EdgeKey& key : keys) {
    if (bad.contains(key)) continue;
    EdgeConfig e;
    e.from = std::to_string(key.first);
    e.to = std::to_string(key.second);
    const Decl* d = inputs_.contains(key)    ? &inputs_.at(key)
                    : outputs_.contains(key) ? &outputs_.at(key)
                                             : nullptr;
    if (d != nullptr) {
      e.connector_name = d->name;
      e.spec = d->spec;
      e.declared_at = d->path;
    } else if (expected_.contains(key)) {
      e.automatic = true;
      e.spec = ConnectorSpec{kAutoShmType,
                             Value(Value::Map{{"shm_threshold_bytes", Value(kAutoShmThreshold)}})};
      e.declared_at = expected_.at(key);
    } else {
      continue;  // declared by a connector ref that did not resolve: already reported
    }
    out_->edges.push_back(std::move(e));
  }
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
std::optional<YAML::Node> load_yaml(const std::string& text, Diagnostics* diag) {
  const char* hint = "check the indentation and the brackets/quotes around this position";
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // yaml-cpp's DeepRecursion says "bad file".
    std::string msg = e.msg == "bad file" ? "nesting too deep for the YAML parser" : e.msg;
    diag->add_at(loc_of(e.mark), "", "YAML syntax error: " + msg, hint);
    return std::nullopt;
  }
  if (Loc second = second_document(text); second.line > 0) {
    diag->add_at(second, "", "the file holds more than one YAML document",
                 "keep one document: remove this line and what follows it");
    return std::nullopt;
  }
  auto first = first_content(text);
  if (root.IsNull() && first && first->second == ',') {  // yaml-cpp reads a stray ',' as null
    diag->add_at(first->first, "", "YAML syntax error: unexpected ','", hint);
    return std::nullopt;
  }
  return root;
}

void parse_into(const std::string& text, Diagnostics* diag, PipelineConfig* out) {
  std::optional<YAML::Node> root = load_yaml(text, diag);
  if (!root) return;
  diag->set_loc("", Loc{1, 1});
  YamlReader reader(diag);
  out->raw = reader.read(*root, "", 0);
  if (reader.limit_hit()) return;  // the tree is incomplete
  ConfigBuilder(diag, out).build(out->raw);
}

void sort_errors(std::vector<ConfigError>* errors) {
  std::stable_sort(errors->begin(), errors->end(), [](const ConfigError& a, const ConfigError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
}

std::optional<std::string> read_file(const std::string& path, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *error = std::strerror(errno);
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

}  // namespace

ConfigLoad parse_pipeline_config(const std::string& yaml_text, const std::string& file) {
  ConfigLoad load;
  load.config.file = file;
  Diagnostics diag(file, &load.errors);
  try {
    parse_into(yaml_text, &diag, &load.config);
  } catch (const std::exception& e) {
    diag.add_at({}, "", std::string("internal error while reading the config: ") + e.what());
  } catch (...) {
    diag.add_at({}, "", "internal error while reading the config");
  }
  sort_errors(&load.errors);
  return load;
}

ConfigLoad load_pipeline_config(const std::string& path) {
  std::string error;
  std::optional<std::string> text;
  try {
    text = read_file(path, &error);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!text) {
    ConfigLoad load;
    load.config.file = path;
    load.errors.push_back(
        ConfigError{path, 0, 0, "", "cannot read the config file: " + error,
                    "check the path; a stage config is a .yaml file with stage_args"});
    return load;
  }
  return parse_pipeline_config(*text, path);
}

}  // namespace omniconn

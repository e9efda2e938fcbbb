// Pipeline config: vllm-omni stage-config YAML -> PipelineConfig.
//
// Two passes. yaml_reader.h turns the yaml-cpp tree into a Value and remembers where every key
// path sits in the file. ConfigBuilder then resolves stages, edges and connectors the way
// vllm-omni's load_omni_transfer_config does, but checks everything that loader lets through
// and reports every problem it finds, each located by line, column and key path.
#include "omniconn/config.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/yaml_reader.h"
#include "omniconn/registry.h"

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

namespace config {

namespace {

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

std::string automatic_type_name() {
  const ConnectorType* t = ConnectorRegistry::instance().automatic_type();
  return t != nullptr ? t->name : "connector";
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
  bool read_plugin(const Value::Map& m, const std::string& path, std::string* plugin);
  std::optional<const ConnectorType*> read_type(const Value::Map& m, const std::string& path);
  void report_extra(const ConnectorSpec& spec, const std::string& path, const FieldErrors& errors);
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
  if (Status st = ConnectorRegistry::instance().load_env_plugins(); !st.ok()) {
    diag_->add("", st.message(), "correct or unset OMNICONN_PLUGINS");
  }
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

// `{name: <type>, extra: {...}, plugin: <library>}`, `extra` checked by the type itself.
std::optional<ConnectorSpec> ConfigBuilder::read_spec(const Value& v, const std::string& path) {
  const Value::Map* m = v.as_map();
  if (m == nullptr) {
    diag_->add(path, "want a connector {name: <type>, extra: {...}}, got " + describe(v),
               "give the connector a `name:` (its type) and optionally `extra:`");
    return std::nullopt;
  }
  ConnectorSpec spec;
  if (!read_plugin(*m, path, &spec.plugin)) return std::nullopt;
  auto type = read_type(*m, path);
  if (auto it = m->find("extra"); it != m->end() && !it->second.is_nil()) {
    if (!it->second.is_map()) {
      diag_->add(path + ".extra", "want a map of settings, got " + describe(it->second),
                 "write `extra:` followed by indented `key: value` lines, or remove it");
      return std::nullopt;
    }
    spec.extra = it->second;
  }
  if (!type) return std::nullopt;
  spec.type = (*type)->name;
  FieldErrors errors = (*type)->validate(spec.extra);
  if (errors.empty()) return spec;
  report_extra(spec, path + ".extra", errors);
  return std::nullopt;
}

// `plugin: <path of a connector library>` (relative to the config file), loaded now so that
// its types are known; false when it cannot be loaded.
bool ConfigBuilder::read_plugin(const Value::Map& m, const std::string& path, std::string* plugin) {
  auto it = m.find("plugin");
  if (it == m.end() || it->second.is_nil()) return true;
  const std::string* p = it->second.as_string();
  if (p == nullptr || p->empty()) {
    diag_->add(path + ".plugin",
               "want the path of a connector plugin library, got " + describe(it->second),
               "write `plugin: path/to/libmy_connector.so` (relative to this file)");
    return false;
  }
  std::filesystem::path lib(*p);
  if (lib.is_relative()) lib = std::filesystem::path(diag_->file()).parent_path() / lib;
  *plugin = lib.lexically_normal().string();
  Status st = ConnectorRegistry::instance().load_plugin(*plugin);
  if (st.ok()) return true;
  diag_->add(path + ".plugin", st.message(),
             "check the path; a plugin defines OMNICONN_PLUGIN (docs/plugins.md)");
  return false;
}

std::optional<const ConnectorType*> ConfigBuilder::read_type(const Value::Map& m,
                                                             const std::string& path) {
  ConnectorRegistry& registry = ConnectorRegistry::instance();
  std::string types = join_names(registry.type_names());
  auto it = m.find("name");
  if (it == m.end()) {
    diag_->add(path + ".name", "the connector has no `name` (its type)",
               "add `name: <type>`, one of: " + types);
    return std::nullopt;
  }
  const std::string* name = it->second.as_string();
  const ConnectorType* type = name != nullptr ? registry.find(*name) : nullptr;
  if (type == nullptr) {
    diag_->add(path + ".name", "unknown connector type " + describe(it->second),
               "use one of the registered types: " + types +
                   ", or load the type's library with `plugin:` or OMNICONN_PLUGINS");
    return std::nullopt;
  }
  return type;
}

// Each problem the type found becomes an error at the `extra` key it names.
void ConfigBuilder::report_extra(const ConnectorSpec& spec, const std::string& path,
                                 const FieldErrors& errors) {
  for (const FieldError& e : errors) {
    bool unknown = e.kind == FieldError::Kind::kUnknownKey;
    diag_->add(e.key.empty() ? path : path + "." + e.key, spec.type + ": " + e.message,
               unknown ? "remove the key or correct its spelling"
                       : "docs/config.md lists every " + spec.type + " key and its range");
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
                               "remove this entry to get an automatic " +
                                   automatic_type_name()
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
      const ConnectorType* t = ConnectorRegistry::instance().automatic_type();
      if (t == nullptr) {
        diag_->add(expected_.at(key), "edge " + edge_str(key) + " names no connector",
                   "name one: no connector type for such edges is registered");
        continue;
      }
      e.automatic = true;
      e.spec = ConnectorSpec{t->name, t->automatic_extra, ""};
      e.declared_at = expected_.at(key);
    } else {
      continue;  // declared by a connector ref that did not resolve: already reported
    }
    out_->edges.push_back(std::move(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points

void parse_into(const std::string& text, Diagnostics* diag, PipelineConfig* out) {
  std::optional<Value> doc = read_yaml(text, diag);
  if (!doc) return;
  out->raw = std::move(*doc);
  ConfigBuilder(diag, out).build(out->raw);
}

void sort_errors(std::vector<ConfigError>* errors) {
  std::stable_sort(errors->begin(), errors->end(), [](const ConfigError& a, const ConfigError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
}

}  // namespace

}  // namespace config

using config::Diagnostics;

ConfigLoad parse_pipeline_config(const std::string& yaml_text, const std::string& file) {
  ConfigLoad load;
  load.config.file = file;
  Diagnostics diag(file, &load.errors);
  try {
    config::parse_into(yaml_text, &diag, &load.config);
  } catch (const std::exception& e) {
    diag.add_at({}, "", std::string("internal error while reading the config: ") + e.what());
  } catch (...) {
    diag.add_at({}, "", "internal error while reading the config");
  }
  config::sort_errors(&load.errors);
  return load;
}

ConfigLoad load_pipeline_config(const std::string& path) {
  std::string error;
  std::optional<std::string> text;
  try {
    text = config::read_file(path, &error);
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

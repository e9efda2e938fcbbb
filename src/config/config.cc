// Pipeline config: vllm-omni stage-config YAML (either schema) -> PipelineConfig.
//
// Three passes. yaml_reader.h turns the yaml-cpp tree into a Value and remembers where every
// key path sits in the file. document.h merges the base_config chain, applies the selected
// platform and expands ${VAR}s. ConfigBuilder then resolves stages, edges and connectors the
// way vllm-omni's load_omni_transfer_config does, but checks everything that loader lets
// through and reports every problem it finds, each located by file, line, column and key path.
#include "omniconn/config.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "config/document.h"
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
  std::string name;  // the connectors entry; "" when inline
  ConnectorSpec spec;
};

// A named connector definition, and whether an edge uses it.
struct Defined {
  std::string path;
  std::optional<ConnectorSpec> spec;  // nullopt: invalid (reported) or of an unknown type
  std::string unknown_type;           // the type omniconn does not have, reported when used
  bool used = false;
};

// Connector types vllm-omni registers that omniconn does not have.
bool vllm_omni_only(std::string_view type) {
  return type == "MooncakeTransferEngineConnector" || type == "MoriTransferEngineConnector" ||
         type == "YuanrongConnector" || type == "YuanrongTransferEngineConnector";
}

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

// Where the sections of each schema live.
struct Layout {
  std::string stages;      // "stage_args" or "stages"
  std::string connectors;  // "runtime.connectors" or "connectors"
  std::string edges;       // "runtime.edges" or "edges"
};

class ConfigBuilder {
 public:
  ConfigBuilder(Diagnostics* diag, const LoadOptions& options, PipelineConfig* out)
      : diag_(diag), options_(options), out_(out) {}
  void build(const Value& doc);

 private:
  bool read_layout(const Value::Map& top);
  const Value* section(const Value::Map& top, const std::string& path);
  const Value::Map* map_at(const Value::Map& parent, const std::string& key,
                           const std::string& path);
  const Value::List* list_at(const Value::Map& parent, const std::string& key,
                             const std::string& path);
  std::optional<int64_t> stage_number(const Value& v, const std::string& path);
  void read_pipeline(const Value::Map& top);

  void read_connectors(const Value::Map& top);
  std::optional<ConnectorSpec> read_spec(const Value& v, const std::string& path,
                                         std::string* unknown_type);
  bool read_plugin(const Value::Map& m, const std::string& path, std::string* plugin);
  std::optional<const ConnectorType*> read_type(const Value::Map& m, const std::string& path,
                                                std::string* unknown_type);
  void type_error(const std::string& type, const std::string& path);
  void report_extra(const ConnectorSpec& spec, const std::string& path, const FieldErrors& errors);
  void report_unknown_types();
  void read_stages(const Value::Map& doc);
  void read_stage(const Value& v, const std::string& path);
  bool read_stage_id(const Value::Map& m, StageConfig* st);
  void read_stage_fields(const Value::Map& m, StageConfig* st);
  void read_sources(const Value::Map& m, StageConfig* st);
  void read_stage_connectors(const Value::Map& m, const StageConfig& st, bool input);
  std::optional<Decl> read_ref(const Value& v, const std::string& path);
  void declare(const EdgeKey& edge, Decl decl, const std::string& side);
  void read_edges(const Value::Map& top);
  void read_edge(const Value& v, const std::string& path);
  void add_option_edges();

  bool add_source(const EdgeKey& key, std::string path, std::string from_path, std::string to_path);
  std::set<EdgeKey> check_endpoints();
  void make_edges(const std::set<EdgeKey>& bad);

  Diagnostics* diag_;
  const LoadOptions& options_;
  PipelineConfig* out_;
  Layout layout_;
  std::map<std::string, Defined> defined_;  // every named connector, valid or not
  bool ids_known_ = true;                   // every stage has a valid stage_id
  std::map<int64_t, std::string> stage_paths_;
  std::vector<EdgeSource> sources_;
  std::map<EdgeKey, std::string> expected_;  // edges lists and engine_input_source
  std::map<EdgeKey, Value> flows_;           // the edges entries' other fields
  std::map<EdgeKey, Decl> chosen_;           // the first declaration of each edge
  std::set<EdgeKey> failed_;                 // declared by a ref that did not resolve
};

void ConfigBuilder::build(const Value& doc) {
  if (Status st = ConnectorRegistry::instance().load_env_plugins(); !st.ok()) {
    diag_->add("", st.message(), "correct or unset OMNICONN_PLUGINS");
  }
  const Value::Map* top = doc.as_map();
  if (top == nullptr) {
    diag_->add("", "the top level must be a map, got " + describe(doc),
               "a deploy config starts with `stages:` (a list of stages); a stage config of "
               "2025 with `stage_args:`");
    return;
  }
  if (!read_layout(*top)) return;
  read_pipeline(*top);
  // The edges list before the stages: like vllm-omni, an automatic edge is first declared by
  // the list, then by engine_input_source (EdgeConfig::declared_at).
  read_connectors(*top);
  read_edges(*top);
  add_option_edges();
  read_stages(*top);
  report_unknown_types();
  std::set<EdgeKey> bad = check_endpoints();
  make_edges(bad);
}

// Which schema: `stage_args` (2025) wins over `stages` (deploy), as in vllm-omni's loader;
// in the deploy schema `runtime.connectors` / `runtime.edges` win over the top-level ones.
bool ConfigBuilder::read_layout(const Value::Map& top) {
  bool legacy = top.contains("stage_args");
  if (!legacy && !top.contains("stages")) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : top) keys.push_back(k);
    diag_->add(
        "stages",
        "the config has no stages" +
            (keys.empty() ? std::string() : " (its top-level keys: " + join_names(keys) + ")"),
        "list the stages under `stages:` (the deploy schema), or under `stage_args:` (the "
        "stage-config schema of 2025)");
    return false;
  }
  const Value::Map* runtime = map_at(top, "runtime", "runtime");
  if (runtime == nullptr) return false;
  out_->schema = legacy ? "stage_args" : "deploy";
  layout_.stages = legacy ? "stage_args" : "stages";
  for (const char* key : {"connectors", "edges"}) {
    bool in_runtime = runtime->contains(key);
    std::string& path = std::string_view(key) == "edges" ? layout_.edges : layout_.connectors;
    path = legacy || in_runtime ? join_key("runtime", key) : key;
    if (top.contains(key) && path != key) {
      diag_->note(key,
                  std::string("ignored: vllm-omni reads ") + path + " instead" +
                      (legacy ? " in a file with stage_args" : ""),
                  std::string("move the entries to ") + path + " or remove one of the two");
    }
  }
  if (legacy && top.contains("stages")) {
    diag_->note("stages", "ignored: the file also has stage_args, which vllm-omni reads instead",
                "keep one of stages (deploy schema) and stage_args");
  }
  return true;
}

// The value at `path` ("a" or "a.b"), or nullptr.
const Value* ConfigBuilder::section(const Value::Map& top, const std::string& path) {
  size_t dot = path.find('.');
  auto it = top.find(path.substr(0, dot));
  if (it == top.end()) return nullptr;
  if (dot == std::string::npos) return &it->second;
  return it->second.find(path.substr(dot + 1));
}

void ConfigBuilder::read_pipeline(const Value::Map& top) {
  auto it = top.find("pipeline");
  if (it == top.end() || it->second.is_nil()) return;
  if (const std::string* s = it->second.as_string()) {
    out_->pipeline = *s;
  } else {
    diag_->add("pipeline", "want the name of a pipeline, got " + describe(it->second),
               "write `pipeline: <name>`");
  }
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

void ConfigBuilder::read_connectors(const Value::Map& top) {
  const std::string& path = layout_.connectors;
  size_t dot = path.find('.');
  const Value::Map* parent = &top;
  if (dot != std::string::npos) parent = map_at(top, path.substr(0, dot), path.substr(0, dot));
  if (parent == nullptr) return;
  const Value::Map* conns = map_at(*parent, path.substr(dot + 1), path);
  if (conns == nullptr) return;
  for (const auto& [name, value] : *conns) {
    Defined d;
    d.path = join_key(path, name);
    d.spec = read_spec(value, d.path, &d.unknown_type);
    if (d.spec) out_->connectors[name] = *d.spec;
    defined_[name] = std::move(d);
  }
}

// `{name: <type>, extra: {...}, plugin: <library>}`, `extra` checked by the type itself. With
// `unknown_type`, a type omniconn does not have is put there instead of being reported.
std::optional<ConnectorSpec> ConfigBuilder::read_spec(const Value& v, const std::string& path,
                                                      std::string* unknown_type) {
  const Value::Map* m = v.as_map();
  if (m == nullptr) {
    diag_->add(path, "want a connector {name: <type>, extra: {...}}, got " + describe(v),
               "give the connector a `name:` (its type) and optionally `extra:`");
    return std::nullopt;
  }
  ConnectorSpec spec;
  if (!read_plugin(*m, path, &spec.plugin)) return std::nullopt;
  auto type = read_type(*m, path, unknown_type);
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
  size_t before = diag_->error_count();
  report_extra(spec, path + ".extra", errors);
  if (diag_->error_count() != before) return std::nullopt;
  return spec;
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
  if (lib.is_relative()) {
    lib = std::filesystem::path(diag_->files()[diag_->loc(path + ".plugin").file]).parent_path() /
          lib;
  }
  *plugin = lib.lexically_normal().string();
  Status st = ConnectorRegistry::instance().load_plugin(*plugin);
  if (st.ok()) return true;
  diag_->add(path + ".plugin", st.message(),
             "check the path; a plugin defines OMNICONN_PLUGIN (docs/plugins.md)");
  return false;
}

std::optional<const ConnectorType*> ConfigBuilder::read_type(const Value::Map& m,
                                                             const std::string& path,
                                                             std::string* unknown_type) {
  auto it = m.find("name");
  if (it == m.end()) {
    diag_->add(
        path + ".name", "the connector has no `name` (its type)",
        "add `name: <type>`, one of: " + join_names(ConnectorRegistry::instance().type_names()));
    return std::nullopt;
  }
  const std::string* name = it->second.as_string();
  if (name == nullptr || name->empty()) {
    diag_->add(
        path + ".name", "want a connector type, got " + describe(it->second),
        "write `name: <type>`, one of: " + join_names(ConnectorRegistry::instance().type_names()));
    return std::nullopt;
  }
  if (const ConnectorType* type = ConnectorRegistry::instance().find(*name)) return type;
  if (unknown_type != nullptr) {
    *unknown_type = *name;
  } else {
    type_error(*name, path);
  }
  return std::nullopt;
}

void ConfigBuilder::type_error(const std::string& type, const std::string& path) {
  std::string types = join_names(ConnectorRegistry::instance().type_names());
  if (vllm_omni_only(type)) {
    diag_->add(path + ".name",
               "connector type '" + type +
                   "' is a vllm-omni type omniconn does "
                   "not have; omniconn has " +
                   types,
               "use one of omniconn's types for this edge, or load a plugin that provides " + type +
                   " (docs/plugins.md)");
    return;
  }
  diag_->add(path + ".name", "unknown connector type '" + type + "'",
             "use one of the registered types: " + types +
                 ", or load the type's library with `plugin:` or OMNICONN_PLUGINS");
}

// A key the type does not read is kept and noted (vllm-omni passes such keys to other parts,
// e.g. the codec settings of its chunk pipeline); every other problem is an error.
void ConfigBuilder::report_extra(const ConnectorSpec& spec, const std::string& path,
                                 const FieldErrors& errors) {
  for (const FieldError& e : errors) {
    std::string at = e.key.empty() ? path : path + "." + e.key;
    if (e.kind == FieldError::Kind::kUnknownKey) {
      diag_->note(at, "not used by " + spec.type + " (kept, passed on unread)",
                  "remove it if nothing else reads it; check its spelling otherwise");
      continue;
    }
    diag_->add(at, spec.type + ": " + e.message,
               "docs/config.md lists every " + spec.type + " key and its range");
  }
}

// A named connector of a type omniconn does not have stops the load only when an edge uses it.
void ConfigBuilder::report_unknown_types() {
  for (const auto& [name, d] : defined_) {
    if (d.unknown_type.empty()) continue;
    if (d.used) {
      type_error(d.unknown_type, d.path);
    } else {
      diag_->note(d.path + ".name",
                  "connector type '" + d.unknown_type +
                      "' is not one omniconn has; no edge uses this connector, so it is ignored");
    }
  }
}

// ---- stages -------------------------------------------------------------------------------

void ConfigBuilder::read_stages(const Value::Map& doc) {
  const std::string& key = layout_.stages;
  const Value::List* list = list_at(doc, key, key);
  if (list == nullptr) return;
  if (list->empty()) {
    diag_->add(key, key + " is empty", "add at least one stage: `- stage_id: 0` with its fields");
    return;
  }
  for (size_t i = 0; i < list->size(); ++i) read_stage((*list)[i], join_index(key, i));
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
    if (!decl) failed_.insert(edge);
    if (ok && decl) declare(edge, std::move(*decl), std::string(section) + " of stage " + st.id);
  }
}

// The first declaration of an edge wins, as in vllm-omni's loader; a later one of another
// connector type is its "connector type mismatch" error, one of the same type a note.
void ConfigBuilder::declare(const EdgeKey& edge, Decl decl, const std::string& side) {
  auto [it, fresh] = chosen_.emplace(edge, decl);
  if (fresh) return;
  const Decl& first = it->second;
  auto label = [](const Decl& d) {
    return d.name.empty() ? "an inline " + d.spec.type : "'" + d.name + "' (" + d.spec.type + ")";
  };
  if (first.spec.type != decl.spec.type) {
    diag_->add(decl.path,
               "connector type mismatch for edge " + edge_str(edge) +
                   ": previously registered "
                   "as '" +
                   first.spec.type + "' at " + first.path + ", but " + side + " specifies '" +
                   decl.spec.type + "'",
               "name connectors of one type at both ends, or declare the edge on one end only");
    return;
  }
  if (first.name == decl.name && first.spec.extra == decl.spec.extra) return;
  diag_->note(decl.path,
              "edge " + edge_str(edge) + " already has " + label(first) + " from " + first.path +
                  "; " + label(decl) +
                  " here is ignored (the first declaration wins, as in "
                  "vllm-omni)",
              "name the same connector at both ends, or declare it on one end only");
}

// A connector ref: the name of a connectors entry, or an inline {name, extra}.
std::optional<Decl> ConfigBuilder::read_ref(const Value& v, const std::string& path) {
  if (const std::string* name = v.as_string()) {
    if (auto it = defined_.find(*name); it != defined_.end()) {
      it->second.used = true;
      if (!it->second.spec) return std::nullopt;  // invalid or unknown type: reported there
      return Decl{path, *name, *it->second.spec};
    }
    std::vector<std::string> names;
    for (const auto& [n, d] : defined_) names.push_back(n);
    diag_->add(path, "undefined connector reference '" + *name + "'",
               names.empty() ? "define it under " + layout_.connectors +
                                   " (none are defined), or remove this entry to get an "
                                   "automatic " +
                                   automatic_type_name()
                             : "use one of the connectors defined under " + layout_.connectors +
                                   ": " + join_names(names));
    return std::nullopt;
  }
  if (!v.is_map()) {
    diag_->add(path, "want a connector name or an inline {name, extra}, got " + describe(v),
               "name an entry of " + layout_.connectors + ", e.g. " +
                   path.substr(path.rfind('.') + 1) + ": my_connector");
    return std::nullopt;
  }
  auto spec = read_spec(v, path, nullptr);
  if (!spec) return std::nullopt;
  return Decl{path, "", std::move(*spec)};
}

// ---- edges --------------------------------------------------------------------------------

void ConfigBuilder::read_edges(const Value::Map& top) {
  const std::string& path = layout_.edges;
  const Value* v = section(top, path);
  if (v == nullptr || v->is_nil()) return;
  const Value::List* list = v->as_list();
  if (list == nullptr) {
    diag_->add(path, "want a list, got " + describe(*v),
               "write a YAML list of `- {from: <stage id>, to: <stage id>}`");
    return;
  }
  for (size_t i = 0; i < list->size(); ++i) read_edge((*list)[i], join_index(path, i));
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
  if (!add_source(key, path, path + ".from", path + ".to")) return;
  expected_.emplace(key, path);
  Value::Map flow;
  for (const auto& [k, value] : *m) {
    if (k != "from" && k != "to") flow[k] = value;
  }
  if (!flow.empty()) flows_.emplace(key, Value(std::move(flow)));
}

// LoadOptions::edges (the --edges option), as if listed under `edges`; errors name them
// "--edges[i]" and no line.
void ConfigBuilder::add_option_edges() {
  if (options_.edges.empty()) return;
  diag_->locs()["--edges"] = Loc{};
  for (size_t i = 0; i < options_.edges.size(); ++i) {
    EdgeKey key = options_.edges[i];
    std::string p = join_index("--edges", i);
    if (add_source(key, p, p, p)) expected_.emplace(key, p);
  }
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
  std::string hint = layout_.stages + " defines stages " + join_names(ids);
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

void ConfigBuilder::make_edges(const std::set<EdgeKey>& bad) {
  std::set<EdgeKey> keys;
  for (const EdgeSource& s : sources_) keys.insert(s.key);
  for (const EdgeKey& key : keys) {
    if (bad.contains(key)) continue;
    EdgeConfig e;
    e.from = std::to_string(key.first);
    e.to = std::to_string(key.second);
    if (auto f = flows_.find(key); f != flows_.end()) e.flow = f->second;
    if (auto d = chosen_.find(key); d != chosen_.end()) {
      e.connector_name = d->second.name;
      e.spec = d->second.spec;
      e.declared_at = d->second.path;
    } else if (failed_.contains(key)) {
      continue;  // declared by a connector ref that did not resolve: already reported
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
      continue;
    }
    out_->edges.push_back(std::move(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points

void parse_into(const std::string& text, const LoadOptions& options, Diagnostics* diag,
                PipelineConfig* out) {
  std::optional<Value> doc = resolve_document(text, options, diag);
  out->platform = options.platform;
  if (!doc) return;
  out->raw = std::move(*doc);
  ConfigBuilder(diag, options, out).build(out->raw);
}

// In the order of the files (the loaded one first), then of lines and columns.
void sort_errors(const std::vector<std::string>& files, std::vector<ConfigError>* errors) {
  auto rank = [&](const ConfigError& e) {
    auto it = std::find(files.begin(), files.end(), e.file);
    return std::tuple(it - files.begin(), e.line, e.column);
  };
  std::stable_sort(errors->begin(), errors->end(),
                   [&](const ConfigError& a, const ConfigError& b) { return rank(a) < rank(b); });
}

}  // namespace

}  // namespace config

using config::Diagnostics;

ConfigLoad parse_pipeline_config(const std::string& yaml_text, const std::string& file,
                                 const LoadOptions& options) {
  ConfigLoad load;
  load.config.file = file;
  Diagnostics diag(file, &load.errors, &load.notes);
  diag.set_strict(options.strict);
  try {
    config::parse_into(yaml_text, options, &diag, &load.config);
  } catch (const std::exception& e) {
    diag.add_at({}, "", std::string("internal error while reading the config: ") + e.what());
  } catch (...) {
    diag.add_at({}, "", "internal error while reading the config");
  }
  load.config.files = diag.files();
  config::sort_errors(diag.files(), &load.errors);
  config::sort_errors(diag.files(), &load.notes);
  return load;
}

ConfigLoad load_pipeline_config(const std::string& path, const LoadOptions& options) {
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
                    "check the path; a stage config is a .yaml file with stages or stage_args"});
    return load;
  }
  return parse_pipeline_config(*text, path, options);
}

Result<std::vector<std::pair<int64_t, int64_t>>> parse_edge_list(std::string_view text) {
  std::vector<std::pair<int64_t, int64_t>> edges;
  auto bad = [&](std::string_view item, const std::string& why) {
    return Status::InvalidArgument("edge '" + std::string(item) + "': " + why +
                                   " (write FROM:TO pairs separated by commas, e.g. 0:1,1:2)");
  };
  if (text.empty()) return bad(text, "no edges given");
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = std::min(text.find(',', pos), text.size());
    std::string_view item = text.substr(pos, comma - pos);
    size_t colon = item.find(':');
    if (colon == std::string_view::npos) return bad(item, "no ':'");
    auto from = config::parse_int(item.substr(0, colon));
    auto to = config::parse_int(item.substr(colon + 1));
    if (!from || !to || *from < 0 || *to < 0) return bad(item, "want two stage ids");
    if (*from == *to) return bad(item, "an edge joins two different stages");
    edges.emplace_back(*from, *to);
    pos = comma + 1;
  }
  return edges;
}

}  // namespace omniconn

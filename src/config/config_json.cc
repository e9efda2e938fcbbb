// ConfigLoad -> JSON (omniconn validate --json), for tools.
#include <nlohmann/json.hpp>

#include "omniconn/config.h"

namespace omniconn {

namespace {

using nlohmann::json;

json to_json(const Value& v) {
  if (v.is_nil()) return nullptr;
  if (const bool* b = v.as_bool()) return *b;
  if (const uint64_t* u = v.as_uint()) return *u;
  if (auto i = v.as_int()) return *i;
  if (const double* d = v.as_float()) return *d;
  if (const std::string* s = v.as_string()) return *s;
  if (const Value::Bytes* b = v.as_bytes()) return json::binary(b->data);
  if (const Value::List* l = v.as_list()) {
    json out = json::array();
    for (const Value& e : *l) out.push_back(to_json(e));
    return out;
  }
  json out = json::object();
  for (const auto& [k, e] : *v.as_map()) out[k] = to_json(e);
  return out;
}

json problems(const std::vector<ConfigError>& list) {
  json out = json::array();
  for (const ConfigError& e : list) {
    out.push_back({{"file", e.file},
                   {"line", e.line},
                   {"column", e.column},
                   {"key_path", e.key_path},
                   {"message", e.message},
                   {"hint", e.hint},
                   {"text", e.ToString()}});
  }
  return out;
}

json stages(const PipelineConfig& c) {
  json out = json::array();
  for (const StageConfig& s : c.stages) {
    out.push_back({{"stage_id", s.stage_id},
                   {"key_path", s.key_path},
                   {"final_output", s.final_output},
                   {"final_output_type", s.final_output_type}});
  }
  return out;
}

json edges(const PipelineConfig& c) {
  json out = json::array();
  for (const EdgeConfig& e : c.edges) {
    out.push_back({{"from", e.from},
                   {"to", e.to},
                   {"connector", e.connector_name},
                   {"automatic", e.automatic},
                   {"type", e.spec.type},
                   {"extra", to_json(e.spec.extra)},
                   {"declared_at", e.declared_at},
                   {"flow", to_json(e.flow)}});
  }
  return out;
}

json connectors(const PipelineConfig& c) {
  json out = json::object();
  for (const auto& [name, spec] : c.connectors) {
    json used = json::array();
    for (const EdgeConfig& e : c.edges) {
      if (e.connector_name == name) used.push_back(e.from + "->" + e.to);
    }
    out[name] = {{"type", spec.type}, {"extra", to_json(spec.extra)}, {"edges", used}};
    if (!spec.plugin.empty()) out[name]["plugin"] = spec.plugin;
  }
  return out;
}

}  // namespace

std::string config_json(const ConfigLoad& load) {
  const PipelineConfig& c = load.config;
  json out = {{"file", c.file},
              {"ok", load.ok()},
              {"schema", c.schema},
              {"files", c.files},
              {"pipeline", c.pipeline},
              {"platform", c.platform},
              {"errors", problems(load.errors)},
              {"notes", problems(load.notes)}};
  if (load.ok()) {
    out["stages"] = stages(c);
    out["edges"] = edges(c);
    out["connectors"] = connectors(c);
  }
  return out.dump(2) + "\n";
}

}  // namespace omniconn

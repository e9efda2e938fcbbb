// Pipeline configuration: vllm-omni stage-config YAML, read unchanged.
//
// Schema (see docs/config.md): `runtime.connectors.<name>: {name: <ConnectorType>, extra}`,
// `runtime.edges: [{from, to, ...}]`, `stage_args[]` with `stage_id`, `engine_input_source`,
// `input_connectors: {from_stage_<i>: <name or {name, extra}>}`, `output_connectors:
// {to_stage_<j>: ...}` and many fields connectors do not use, which are accepted and kept.
// A connector may name the library of an out-of-tree type: `{name, extra, plugin: <path>}`.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "omniconn/registry.h"
#include "omniconn/status.h"
#include "omniconn/value.h"

namespace omniconn {

// One problem in a config file, located precisely enough to fix it.
struct ConfigError {
  std::string file;
  int line = 0;          // 1-based; 0 when unknown
  int column = 0;        // 1-based; 0 when unknown
  std::string key_path;  // e.g. "stage_args[1].input_connectors.from_stage_0"
  std::string message;   // what is wrong
  std::string hint;      // what would fix it (may be empty)

  // "file:line:column: key_path: message (fix: hint)"
  std::string ToString() const;
};

struct StageConfig {
  int64_t stage_id = 0;
  std::string id;        // stage_id as a string ("0"), the form edges and keys use
  std::string key_path;  // "stage_args[i]"
  bool final_output = false;
  std::string final_output_type;  // "text", "audio", "image" or empty
  std::vector<int64_t> engine_input_source;
  Value raw;  // the whole stage_args entry, unknown fields included
};

struct EdgeConfig {
  std::string from;  // stage ids as strings
  std::string to;
  // Name of the runtime.connectors entry, or "" when given inline or created automatically.
  std::string connector_name;
  bool automatic = false;  // none configured: the registry's automatic type (SHM) was made
  ConnectorSpec spec;
  std::string declared_at;  // key path of the declaration that chose the connector
};

struct PipelineConfig {
  std::string file;
  std::vector<StageConfig> stages;                  // in file order
  std::vector<EdgeConfig> edges;                    // sorted by (from, to)
  std::map<std::string, ConnectorSpec> connectors;  // runtime.connectors, by name
  Value raw;                                        // the whole document

  const StageConfig* stage(std::string_view id) const;
};

struct ConfigLoad {
  PipelineConfig config;            // meaningful only when errors is empty
  std::vector<ConfigError> errors;  // all problems found, in file order
  bool ok() const { return errors.empty(); }
};

// Loads and validates (connector types and their `extra` through the ConnectorRegistry).
// Never throws; a missing or unreadable file is one ConfigError.
ConfigLoad load_pipeline_config(const std::string& path);
// Same, from text; `file` names it in errors.
ConfigLoad parse_pipeline_config(const std::string& yaml_text, const std::string& file);

}  // namespace omniconn

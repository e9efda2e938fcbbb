// Pipeline configuration: vllm-omni's stage-config YAML, both schemas, read unchanged.
//
// The stage-config schema of 2025 (see docs/config.md): `runtime.connectors.<name>: {name:
// <ConnectorType>, extra}`, `runtime.edges: [{from, to, ...}]`, `stage_args[]` with
// `stage_id`, `engine_input_source`, `input_connectors: {from_stage_<i>: <name or {name,
// extra}>}`, `output_connectors: {to_stage_<j>: ...}` and many fields connectors do not use,
// which are accepted and kept. The deploy schema vllm-omni ships since 2026: the same under
// top-level `connectors`, `edges` and `stages`, plus `base_config: <file>` (inheritance),
// `platforms.<name>` (overrides, applied when selected) and `pipeline: <name>`.
// A connector may name the library of an out-of-tree type: `{name, extra, plugin: <path>}`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
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
  std::string key_path;  // "stage_args[i]" or "stages[i]"
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
  Value flow;               // the edges entry's other fields (window_size, max_inflight); nil
};

struct PipelineConfig {
  std::string file;
  std::string schema;    // "deploy" (stages) or "stage_args"
  std::string pipeline;  // `pipeline:`, the name of vllm-omni's Python pipeline; may be ""
  std::string platform;  // the platform whose overrides were applied; may be ""
  std::vector<std::string> files;                   // `file`, then the base_config chain
  std::vector<StageConfig> stages;                  // in file order
  std::vector<EdgeConfig> edges;                    // sorted by (from, to)
  std::map<std::string, ConnectorSpec> connectors;  // runtime.connectors / connectors, by name
  Value raw;  // the whole document (base_config merged, platform applied)

  const StageConfig* stage(std::string_view id) const;
};

struct ConfigLoad {
  PipelineConfig config;            // meaningful only when errors is empty
  std::vector<ConfigError> errors;  // all problems found, in file order
  // What does not stop a run: settings no connector reads, ignored declarations, no edges.
  std::vector<ConfigError> notes;
  bool ok() const { return errors.empty(); }
};

struct LoadOptions {
  std::string platform;  // apply `platforms.<platform>` (none when empty)
  bool strict = false;   // every note is an error
  // Edges to add, as if listed under `edges` (a file of the deploy schema often has none: its
  // topology lives in vllm-omni's Python pipeline definitions).
  std::vector<std::pair<int64_t, int64_t>> edges;
};

// Loads and validates (connector types and their `extra` through the ConnectorRegistry).
// Never throws; a missing or unreadable file is one ConfigError.
ConfigLoad load_pipeline_config(const std::string& path, const LoadOptions& options = {});
// Same, from text; `file` names it in errors (and base_config is relative to it).
ConfigLoad parse_pipeline_config(const std::string& yaml_text, const std::string& file,
                                 const LoadOptions& options = {});

// "0:1,1:2" -> {{0, 1}, {1, 2}}; InvalidArgument saying what is wrong.
Result<std::vector<std::pair<int64_t, int64_t>>> parse_edge_list(std::string_view text);

// The load as JSON, for tools: schema, files, pipeline, platform, stages, edges (connector,
// type, settings, flow fields), connectors, notes and errors.
std::string config_json(const ConfigLoad& load);

}  // namespace omniconn

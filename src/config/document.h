// The second pass of the config loader: one file's YAML -> the document the builder reads.
//
// `base_config: <file>` chains are read and merged the way vllm-omni's deploy loader merges
// them (top-level keys: the inheriting file wins; `stages` merged by stage_id, the engine maps
// deep-merged; `platforms` per platform and stage), the selected platform's stage overrides
// are applied, and ${VAR} / $VAR are expanded in the settings omniconn reads. Every key path of
// the result keeps the file, line and column it was written at (Diagnostics::locs).
#pragma once

#include <optional>
#include <string>

#include "config/yaml_reader.h"
#include "omniconn/config.h"
#include "omniconn/value.h"

namespace omniconn::config {

// `text` is the main file's (diag->file()) text. nullopt after reporting why no document can
// be made; diag->files() lists the main file and then the files it inherits, in order.
std::optional<Value> resolve_document(const std::string& text, const LoadOptions& options,
                                      Diagnostics* diag);

// Expands ${NAME} and $NAME in every string under `v` (the value at key path `path`) from the
// environment. A name that is not set is an error naming it; the text is left as it was.
void expand_env(Value* v, const std::string& path, Diagnostics* diag);

}  // namespace omniconn::config

// parse_pipeline_config (the stage-config YAML loader) on untrusted text.
//
// Never throws; every error carries a message and errors come sorted by position. A config that
// loads has consistent stages and edges: ids unique, every edge joins two existing, different
// stages, edges sorted by (from, to) without repeats, every connector spec valid.
//
// Inputs over 64 KiB are skipped: the loader itself accepts 16 MiB, but yaml-cpp 0.7's parser
// is recursive and slow on large adversarial inputs, which would only find yaml-cpp's limits.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fuzz_check.h"
#include "omniconn/config.h"
#include "omniconn/registry.h"

namespace {

constexpr size_t kMaxInput = 64 * 1024;

int64_t id_of(const std::string& s) {
  return std::stoll(s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return -1;  // not added to the corpus
  const std::string text(reinterpret_cast<const char*>(data), size);
  const omniconn::ConfigLoad load = omniconn::parse_pipeline_config(text, "fuzz.yaml");

  // Errors come sorted by file (the loaded one, then its base_config chain), line, column.
  const std::vector<std::string>& files = load.config.files;
  std::tuple<size_t, int, int> prev{0, 0, 0};
  for (const omniconn::ConfigError& e : load.errors) {
    FUZZ_CHECK(!e.message.empty(), "an error without a message");
    FUZZ_CHECK(e.line >= 0 && e.column >= 0, "negative error position");
    size_t file = std::find(files.begin(), files.end(), e.file) - files.begin();
    FUZZ_CHECK(file < files.size(), "error names a file the load did not read");
    FUZZ_CHECK(!e.ToString().empty(), "empty error string");
    FUZZ_CHECK(std::tuple(file, e.line, e.column) >= prev, "errors not sorted by position");
    prev = {file, e.line, e.column};
  }
  if (!load.ok()) return 0;

  const omniconn::PipelineConfig& c = load.config;
  auto& registry = omniconn::ConnectorRegistry::instance();
  std::set<std::string> ids;
  for (const omniconn::StageConfig& s : c.stages) {
    FUZZ_CHECK(s.id == std::to_string(s.stage_id), "stage id string");
    FUZZ_CHECK(ids.insert(s.id).second, "duplicate stage id");
    FUZZ_CHECK(c.stage(s.id) == &s, "stage() lookup");
  }
  std::pair<int64_t, int64_t> last{0, 0};
  bool first = true;
  for (const omniconn::EdgeConfig& e : c.edges) {
    FUZZ_CHECK(c.stage(e.from) != nullptr && c.stage(e.to) != nullptr,
               "an edge joins a stage that does not exist");
    const std::pair<int64_t, int64_t> key{id_of(e.from), id_of(e.to)};
    FUZZ_CHECK(key.first != key.second, "self-loop edge");
    FUZZ_CHECK(first || key > last, "edges not sorted or repeated");
    last = key;
    first = false;
    FUZZ_CHECK(registry.validate(e.spec).ok(), "an edge's connector spec does not validate");
    FUZZ_CHECK(!e.declared_at.empty(), "edge without a declaration path");
  }
  for (const auto& [name, spec] : c.connectors) {
    FUZZ_CHECK(registry.validate(spec).ok(), "a runtime.connectors spec does not validate");
  }
  return 0;
}

// The config corpus: every tests/config/corpus/*.yaml is loaded and judged against the
// expectations in its own header comments (files under corpus/bases/ are only inherited):
//
//   # rule: <name>                        what the file is about (counted per rule)
//   # args: --platform npu --strict --edges 0:1,1:2
//   # env: NAME=value                     set while the file loads (and unset after)
//   # edges: 0->1 SharedMemoryConnector shm | auto | inline     (one line per edge, all of them)
//   # edges: none
//   # extra: 0->1 key=value               a setting of an edge's connector, as text
//   # flow: 0->1 key=value                a flow field of an edge (window_size, ...)
//   # pipeline: <name>   # files: a.yaml b.yaml   (the file and its base_config chain)
//   # error: <file>:<line>: <key path>: <text in the message>   (all errors, in order)
//   # note: <file>:<line>: <key path>: <text in the message>    (all notes, in order)
//
// Files are named relative to the corpus folder; line 0 means "no line" (--edges).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "omniconn/config.h"

namespace omniconn {
namespace {

namespace fs = std::filesystem;

const fs::path& corpus_dir() {
  static const fs::path dir = fs::path(OMNICONN_SOURCE_DIR) / "tests/config/corpus";
  return dir;
}

struct Case {
  fs::path path;
  std::string rule;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> edges, extras, flows, errors, notes, files;
  std::string pipeline;
  bool edges_given = false;
};

std::string trim(std::string s) {
  size_t a = s.find_first_not_of(' ');
  size_t b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

Case read_case(const fs::path& path) {
  Case c;
  c.path = path;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("# ")) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(2, colon - 2), value = trim(line.substr(colon + 1));
    if (key == "rule") c.rule = value;
    if (key == "args") c.args = words(value);
    if (key == "env")
      c.env.emplace_back(value.substr(0, value.find('=')), value.substr(value.find('=') + 1));
    if (key == "edges") c.edges_given = true;
    if (key == "edges" && value != "none") c.edges.push_back(value);
    if (key == "extra") c.extras.push_back(value);
    if (key == "flow") c.flows.push_back(value);
    if (key == "error") c.errors.push_back(value);
    if (key == "note") c.notes.push_back(value);
    if (key == "pipeline") c.pipeline = value;
    if (key == "files") c.files = words(value);
  }
  return c;
}

LoadOptions options_of(const Case& c) {
  LoadOptions o;
  for (size_t i = 0; i < c.args.size(); ++i) {
    if (c.args[i] == "--strict") o.strict = true;
    if (c.args[i] == "--platform" && i + 1 < c.args.size()) o.platform = c.args[++i];
    if (c.args[i] == "--edges" && i + 1 < c.args.size()) {
      auto edges = parse_edge_list(c.args[++i]);
      EXPECT_TRUE(edges.ok()) << edges.status().ToString();
      if (edges.ok()) o.edges = *edges;
    }
  }
  return o;
}

std::string relative(const std::string& file) {
  if (file.empty()) return file;
  return fs::path(file).lexically_relative(corpus_dir()).string();
}

// "<file>:<line>: <key path>: <message>" with the file relative to the corpus.
std::string problem_text(const ConfigError& e) {
  return relative(e.file) + ":" + std::to_string(e.line) + ": " + e.key_path + ": " + e.message;
}

// Expected "<file>:<line>: <path>: <text>" matches when all but the text are equal and the
// message contains the text.
bool matches(const std::string& expected, const ConfigError& e) {
  std::string head = relative(e.file) + ":" + std::to_string(e.line) + ": " + e.key_path + ": ";
  if (!expected.starts_with(head)) return false;
  return e.message.find(expected.substr(head.size())) != std::string::npos;
}

void expect_problems(const std::vector<std::string>& expected,
                     const std::vector<ConfigError>& actual, const char* what) {
  std::string got;
  for (const ConfigError& e : actual) got += "\n  " + problem_text(e);
  ASSERT_EQ(expected.size(), actual.size()) << what << "s:" << got;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(matches(expected[i], actual[i]))
        << what << " " << i << ": want " << expected[i] << "\n  got " << problem_text(actual[i]);
  }
}

std::string edge_line(const EdgeConfig& e) {
  return e.from + "->" + e.to + " " + e.spec.type + " " +
         (e.automatic                ? "auto"
          : e.connector_name.empty() ? "inline"
                                     : e.connector_name);
}

std::string text_of(const Value& v) {
  if (auto i = v.as_int()) return std::to_string(*i);
  if (const std::string* s = v.as_string()) return *s;
  if (const bool* b = v.as_bool()) return *b ? "true" : "false";
  return std::string(v.kind_name());
}

// "0->1 key=value" against the edge's map `which`.
void expect_values(const std::vector<std::string>& expected, const PipelineConfig& c, bool flow) {
  for (const std::string& x : expected) {
    std::string edge = x.substr(0, x.find(' '));
    std::string kv = x.substr(x.find(' ') + 1);
    std::string key = kv.substr(0, kv.find('=')), value = kv.substr(kv.find('=') + 1);
    const EdgeConfig* found = nullptr;
    for (const EdgeConfig& e : c.edges) {
      if (e.from + "->" + e.to == edge) found = &e;
    }
    ASSERT_NE(found, nullptr) << "no edge " << edge;
    const Value* v = (flow ? found->flow : found->spec.extra).find(key);
    ASSERT_NE(v, nullptr) << edge << " has no " << key;
    EXPECT_EQ(text_of(*v), value) << edge << " " << key;
  }
}

void judge(const Case& c) {
  for (const auto& [k, v] : c.env) ::setenv(k.c_str(), v.c_str(), 1);
  ConfigLoad load = load_pipeline_config(c.path.string(), options_of(c));
  for (const auto& [k, v] : c.env) ::unsetenv(k.c_str());
  expect_problems(c.errors, load.errors, "error");
  expect_problems(c.notes, load.notes, "note");
  if (!load.ok()) return;
  if (c.edges_given) {
    std::vector<std::string> edges;
    for (const EdgeConfig& e : load.config.edges) edges.push_back(edge_line(e));
    EXPECT_EQ(edges, c.edges);
  }
  expect_values(c.extras, load.config, false);
  expect_values(c.flows, load.config, true);
  if (!c.pipeline.empty()) {
    EXPECT_EQ(load.config.pipeline, c.pipeline);
  }
  if (!c.files.empty()) {
    std::vector<std::string> files;
    for (const std::string& f : load.config.files) files.push_back(relative(f));
    EXPECT_EQ(files, c.files);
  }
}

std::vector<Case> corpus() {
  std::vector<Case> cases;
  for (const auto& entry : fs::directory_iterator(corpus_dir())) {
    if (entry.path().extension() == ".yaml") cases.push_back(read_case(entry.path()));
  }
  std::sort(cases.begin(), cases.end(),
            [](const Case& a, const Case& b) { return a.path < b.path; });
  return cases;
}

TEST(ConfigCorpus, EveryFileAsItsHeaderSays) {
  std::vector<Case> cases = corpus();
  ASSERT_GE(cases.size(), 30u);
  std::map<std::string, int> per_rule;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path.filename().string());
    EXPECT_FALSE(c.rule.empty()) << "no `# rule:` line";
    EXPECT_TRUE(c.edges_given || !c.errors.empty()) << "neither `# edges:` nor `# error:`";
    judge(c);
    ++per_rule[c.rule];
  }
  std::string summary;
  for (const auto& [rule, n] : per_rule) summary += " " + rule + "=" + std::to_string(n);
  std::printf("config corpus: %zu files:%s\n", cases.size(), summary.c_str());
}

}  // namespace
}  // namespace omniconn

#include "omniconn/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "mooncake/mooncake_options.h"

namespace omniconn {
namespace {

ConfigLoad parse(const std::string& yaml) {
  return parse_pipeline_config(yaml, "test.yaml");
}

std::string dump(const ConfigLoad& load) {
  std::string out;
  for (const ConfigError& e : load.errors) out += "\n  " + e.ToString();
  return out.empty() ? " (no errors)" : out;
}

// An error at `path`, on `line`, whose message contains `text`.
::testing::AssertionResult HasError(const ConfigLoad& load, const std::string& path, int line,
                                    const std::string& text) {
  for (const ConfigError& e : load.errors) {
    if (e.key_path == path && e.line == line && e.message.find(text) != std::string::npos) {
      if (e.file != "test.yaml" || e.column <= 0) {
        return ::testing::AssertionFailure() << "bad file/column: " << e.ToString();
      }
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "no error at " << path << " line " << line
                                       << " containing '" << text << "'; got:" << dump(load);
}

const ConfigError* ErrorAt(const ConfigLoad& load, const std::string& path) {
  for (const ConfigError& e : load.errors) {
    if (e.key_path == path) return &e;
  }
  return nullptr;
}

std::string example(const std::string& name) {
  return std::string(OMNICONN_SOURCE_DIR) + "/examples/" + name;
}

// "0->1 SharedMemoryConnector auto", one line per edge.
std::vector<std::string> edge_lines(const PipelineConfig& c) {
  std::vector<std::string> out;
  for (const EdgeConfig& e : c.edges) {
    out.push_back(e.from + "->" + e.to + " " + e.spec.type + " " +
                  (e.automatic                ? "auto"
                   : e.connector_name.empty() ? "inline"
                                              : e.connector_name));
  }
  return out;
}

int64_t extra_int(const EdgeConfig& e, const char* key) {
  const Value* v = e.spec.extra.find(key);
  return v && v->as_int() ? *v->as_int() : -999;
}

constexpr const char* kTwoStages = R"(stage_args:
  - stage_id: 0
  - stage_id: 1
    engine_input_source: [0]
)";

// ---- the examples ---------------------------------------------------------------------------

TEST(ConfigExamples, Qwen25OmniGetsAutomaticShm) {
  ConfigLoad load = load_pipeline_config(example("qwen2_5_omni.yaml"));
  ASSERT_TRUE(load.ok()) << dump(load);
  const PipelineConfig& c = load.config;
  ASSERT_EQ(c.stages.size(), 3u);
  EXPECT_EQ(edge_lines(c), (std::vector<std::string>{"0->1 SharedMemoryConnector auto",
                                                     "1->2 SharedMemoryConnector auto"}));
  EXPECT_EQ(extra_int(c.edges[0], "shm_threshold_bytes"), 65536);
  EXPECT_EQ(c.edges[0].declared_at, "runtime.edges[0]");
  EXPECT_TRUE(c.connectors.empty());
  ASSERT_NE(c.stage("2"), nullptr);
  EXPECT_TRUE(c.stage("2")->final_output);
  EXPECT_EQ(c.stage("2")->final_output_type, "audio");
  EXPECT_EQ(c.stage("2")->engine_input_source, std::vector<int64_t>{1});
  EXPECT_EQ(c.stage("2")->key_path, "stage_args[2]");
  EXPECT_FALSE(c.stage("1")->final_output);
  EXPECT_EQ(c.stage("3"), nullptr);
  const Value* args = c.stage("0")->raw.find("engine_args");
  ASSERT_NE(args, nullptr);
  EXPECT_EQ(*args->find("model_stage"), Value("thinker"));
  EXPECT_EQ(*args->find("gpu_memory_utilization"), Value(0.8));
  EXPECT_EQ(*args->find("max_num_batched_tokens"), Value(32768));
  EXPECT_EQ(*c.raw.find("runtime")->find("defaults")->find("window_size"), Value(-1));
}

// The same pipelines in both schemas resolve to the same edges and connectors.
TEST(ConfigExamples, DeploySchemaExamplesMatchTheirStageArgsTwins) {
  for (const char* name :
       {"qwen2_5_omni.yaml", "qwen2_5_omni_mooncake.yaml", "shm_threshold.yaml"}) {
    SCOPED_TRACE(name);
    ConfigLoad old_schema = load_pipeline_config(example(name));
    ConfigLoad deploy = load_pipeline_config(example(std::string("deploy/") + name));
    ASSERT_TRUE(old_schema.ok()) << dump(old_schema);
    ASSERT_TRUE(deploy.ok()) << dump(deploy);
    EXPECT_EQ(old_schema.config.schema, "stage_args");
    EXPECT_EQ(deploy.config.schema, "deploy");
    EXPECT_EQ(edge_lines(deploy.config), edge_lines(old_schema.config));
    for (size_t i = 0; i < deploy.config.edges.size(); ++i) {
      for (const char* key : {"shm_threshold_bytes", "segment", "localbuf"}) {
        EXPECT_EQ(extra_int(deploy.config.edges[i], key),
                  extra_int(old_schema.config.edges[i], key))
            << key;
      }
    }
  }
  ConfigLoad mc = load_pipeline_config(example("deploy/qwen2_5_omni_mooncake.yaml"));
  ASSERT_EQ(mc.config.files.size(), 2u);  // inherits deploy/qwen2_5_omni.yaml
  EXPECT_EQ(mc.config.pipeline, "qwen2_5_omni");
  EXPECT_EQ(mc.config.stage("2")->final_output_type, "audio");  // from the base
  EXPECT_EQ(*mc.config.edges[0].flow.find("max_inflight"), Value(1));
  LoadOptions npu;
  npu.platform = "npu";
  ConfigLoad on_npu = load_pipeline_config(example("deploy/qwen2_5_omni.yaml"), npu);
  ASSERT_TRUE(on_npu.ok()) << dump(on_npu);
  EXPECT_EQ(*on_npu.config.stage("2")->raw.find("devices"), Value("2"));
  EXPECT_EQ(*load_pipeline_config(example("deploy/qwen2_5_omni.yaml"))
                 .config.stage("2")
                 ->raw.find("devices"),
            Value("0"));
}

TEST(ConfigExamples, Qwen25OmniMooncakeOnBothEdges) {
  ConfigLoad load = load_pipeline_config(example("qwen2_5_omni_mooncake.yaml"));
  ASSERT_TRUE(load.ok()) << dump(load);
  const PipelineConfig& c = load.config;
  EXPECT_EQ(edge_lines(c), (std::vector<std::string>{"0->1 MooncakeConnector mooncake_connector",
                                                     "1->2 MooncakeConnector mooncake_connector"}));
  EXPECT_EQ(extra_int(c.edges[1], "segment"), 512000000);
  EXPECT_EQ(*c.edges[1].spec.extra.find("proto"), Value("tcp"));
  // Both ends name it; the first declaration (stage 0's output) is the one kept.
  EXPECT_EQ(c.edges[0].declared_at, "stage_args[0].output_connectors.to_stage_1");
  ASSERT_EQ(c.connectors.size(), 2u);  // the unused SHM entry is kept (and was checked)
  EXPECT_EQ(c.connectors.at("shared_memory_connector").type, "SharedMemoryConnector");
  ConnectorSpec missing = c.edges[0].spec;  // the store library is loaded at run time
  missing.extra.as_map()->emplace("library", Value("/nonexistent/libmooncake_store.so"));
  auto conn = create_connector(missing);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(
      conn.status().message().find("cannot load the Mooncake store library "
                                   "'/nonexistent/libmooncake_store.so' (from extra.library)"),
      std::string::npos)
      << conn.status().ToString();
  EXPECT_NE(conn.status().message().find("MOONCAKE_STORE_LIBRARY"), std::string::npos);
}

TEST(ConfigExamples, ShmThresholdOnBothEdges) {
  ConfigLoad load = load_pipeline_config(example("shm_threshold.yaml"));
  ASSERT_TRUE(load.ok()) << dump(load);
  const PipelineConfig& c = load.config;
  EXPECT_EQ(edge_lines(c), (std::vector<std::string>{"0->1 SharedMemoryConnector shm",
                                                     "1->2 SharedMemoryConnector shm"}));
  for (const EdgeConfig& e : c.edges) EXPECT_EQ(extra_int(e, "shm_threshold_bytes"), 1048576);
  EXPECT_TRUE(create_connector(c.edges[0].spec).ok());
}

TEST(ConfigExamples, FanOutAndFanIn) {
  ConfigLoad load = load_pipeline_config(example("fanout.yaml"));
  ASSERT_TRUE(load.ok()) << dump(load);
  EXPECT_EQ(edge_lines(load.config),
            (std::vector<std::string>{
                "0->1 SharedMemoryConnector auto", "0->2 SharedMemoryConnector auto",
                "1->3 SharedMemoryConnector auto", "2->3 SharedMemoryConnector auto"}));
  EXPECT_EQ(load.config.edges[3].declared_at, "stage_args[3].engine_input_source[1]");
}

// ---- resolution -----------------------------------------------------------------------------

TEST(ConfigResolve, EdgesFromEngineInputSourceWithoutRuntime) {
  ConfigLoad load = parse(kTwoStages);
  ASSERT_TRUE(load.ok()) << dump(load);
  EXPECT_EQ(edge_lines(load.config), std::vector<std::string>{"0->1 SharedMemoryConnector auto"});
}

TEST(ConfigResolve, EdgesDeclaredOnlyByConnectors) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    output_connectors:
      to_stage_1: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: 0}}
  - stage_id: 1
  - stage_id: 2
    input_connectors:
      from_stage_1: {name: SharedMemoryConnector}
)");
  ASSERT_TRUE(load.ok()) << dump(load);
  EXPECT_EQ(edge_lines(load.config),
            (std::vector<std::string>{"0->1 SharedMemoryConnector inline",
                                      "1->2 SharedMemoryConnector inline"}));
  EXPECT_EQ(extra_int(load.config.edges[0], "shm_threshold_bytes"), 0);
  EXPECT_EQ(load.config.edges[0].declared_at, "stage_args[0].output_connectors.to_stage_1");
}

TEST(ConfigResolve, ExplicitConnectorBeatsAutomatic) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
  - stage_id: 1
    engine_input_source: [0]
  - stage_id: 2
    engine_input_source: [1]
    input_connectors: {from_stage_1: big}
runtime:
  connectors:
    big: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: 4096}}
)");
  ASSERT_TRUE(load.ok()) << dump(load);
  EXPECT_EQ(edge_lines(load.config), (std::vector<std::string>{"0->1 SharedMemoryConnector auto",
                                                               "1->2 SharedMemoryConnector big"}));
}

TEST(ConfigResolve, UnknownFieldsAreKeptInRaw) {
  ConfigLoad load = parse(R"(future_top_level: {a: 1}
stage_args:
  - stage_id: 0
    brand_new_field: [x, y]
    engine_args: {some_new_engine_arg: 3}
  - stage_id: 1
    engine_input_source: [0]
runtime:
  enabled: true
  something_new: 7
  edges:
    - {from: 0, to: 1, window_size: -1, priority: high}
  connectors:
    c: {name: SharedMemoryConnector, extra: {}, comment: unused}
)");
  ASSERT_TRUE(load.ok()) << dump(load);
  const Value& raw = load.config.raw;
  EXPECT_EQ(*raw.find("future_top_level")->find("a"), Value(1));
  EXPECT_EQ(*raw.find("runtime")->find("something_new"), Value(7));
  const Value& stage = load.config.stages[0].raw;
  EXPECT_EQ(stage.find("brand_new_field")->as_list()->size(), 2u);
  EXPECT_EQ(*stage.find("engine_args")->find("some_new_engine_arg"), Value(3));
}

TEST(ConfigResolve, NullSectionsAreEmpty) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    input_connectors:
    output_connectors: ~
    engine_input_source: null
    engine_args:
  - stage_id: 1
    engine_input_source: [0]
runtime:
  connectors:
  edges:
  defaults:
)");
  ASSERT_TRUE(load.ok()) << dump(load);
  EXPECT_EQ(edge_lines(load.config), std::vector<std::string>{"0->1 SharedMemoryConnector auto"});
  EXPECT_TRUE(parse(kTwoStages + std::string("runtime:\n")).ok());
}

TEST(ConfigResolve, ScalarsKeepTheirYamlTypes) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    values:
      quoted_int: "0"
      single_quoted: '42'
      plain_int: 42
      negative: -1
      big: 512_000_000
      hex: 0x10
      float: 0.8
      exp: 1.5e3
      bool_word: True
      off: false
      yes_word: yes
      tilde: ~
      empty:
      quoted_null: "null"
      quoted_true: "true"
      text: tcp
      block: |
        two
        lines
      inf: .inf
      too_big: 99999999999999999999
)");
  ASSERT_TRUE(load.ok()) << dump(load);
  const Value& v = *load.config.stages[0].raw.find("values");
  EXPECT_EQ(*v.find("quoted_int"), Value("0"));
  EXPECT_EQ(*v.find("single_quoted"), Value("42"));
  EXPECT_EQ(*v.find("plain_int"), Value(42));
  EXPECT_EQ(*v.find("negative"), Value(-1));
  EXPECT_EQ(*v.find("big"), Value(512000000));
  EXPECT_EQ(*v.find("hex"), Value(16));
  EXPECT_EQ(*v.find("float"), Value(0.8));
  EXPECT_EQ(*v.find("exp"), Value(1500.0));
  EXPECT_EQ(*v.find("bool_word"), Value(true));
  EXPECT_EQ(*v.find("off"), Value(false));
  EXPECT_EQ(*v.find("yes_word"), Value("yes"));
  EXPECT_TRUE(v.find("tilde")->is_nil());
  EXPECT_TRUE(v.find("empty")->is_nil());
  EXPECT_EQ(*v.find("quoted_null"), Value("null"));
  EXPECT_EQ(*v.find("quoted_true"), Value("true"));
  EXPECT_EQ(*v.find("text"), Value("tcp"));
  EXPECT_EQ(*v.find("block"), Value("two\nlines\n"));
  EXPECT_TRUE(std::isinf(*v.find("inf")->as_float()));
  EXPECT_EQ(*v.find("too_big"), Value(1e20));
}

TEST(ConfigResolve, AnchorsAndMergeKeys) {
  ConfigLoad load = parse(R"(defaults: &engine {enforce_eager: true, gpu_memory_utilization: 0.5}
stage_args:
  - stage_id: 0
    engine_args:
      <<: *engine
      gpu_memory_utilization: 0.8
  - stage_id: 1
    engine_args: *engine
)");
  ASSERT_TRUE(load.ok()) << dump(load);
  const Value& a0 = *load.config.stages[0].raw.find("engine_args");
  EXPECT_EQ(*a0.find("enforce_eager"), Value(true));
  EXPECT_EQ(*a0.find("gpu_memory_utilization"), Value(0.8));  // the map's own key wins
  EXPECT_EQ(*load.config.stages[1].raw.find("engine_args")->find("gpu_memory_utilization"),
            Value(0.5));
}

TEST(ConfigResolve, MooncakeExtraAcceptsVllmOmniForms) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(runtime:
  connectors:
    mc:
      name: MooncakeConnector
      extra: {segment: "536870912", rdma: "", library: /opt/mooncake/libmooncake_store.so,
              proto: rdma, master: "[::1]:50051"}
    mc_defaults: {name: MooncakeConnector}
)"));
  ASSERT_TRUE(load.ok()) << dump(load);
  auto opts = mooncake::MooncakeOptions::from_extra(load.config.connectors.at("mc").extra);
  ASSERT_TRUE(opts.ok()) << opts.status().ToString();
  EXPECT_EQ(opts->segment_bytes, 536870912u);
  EXPECT_EQ(opts->proto, "rdma");
  EXPECT_EQ(mooncake::MooncakeOptions::from_extra(Value())->localbuf_bytes, uint64_t{64} << 20);
  Value::Map decimal;  // vllm-omni's examples write 512000000: rounded up to 4 MiB multiples
  decimal.emplace("segment", Value(int64_t{512000000}));
  decimal.emplace("localbuf", Value(int64_t{64000000}));
  auto rounded = mooncake::MooncakeOptions::from_extra(Value(std::move(decimal)));
  ASSERT_TRUE(rounded.ok());
  EXPECT_EQ(rounded->segment_bytes, 123u * (4u << 20));
  EXPECT_EQ(rounded->localbuf_bytes, 16u * (4u << 20));
}

// ---- invalid configs: each names the key path, the line and what is wrong -------------------

TEST(ConfigErrors, YamlSyntaxError) {
  ConfigLoad load = parse("stage_args:\n  - stage_id: 0\n  engine_args: [1, 2\n");
  ASSERT_EQ(load.errors.size(), 1u) << dump(load);
  EXPECT_NE(load.errors[0].message.find("YAML syntax error"), std::string::npos);
  EXPECT_GT(load.errors[0].line, 0);
  EXPECT_FALSE(load.errors[0].hint.empty());
  EXPECT_TRUE(HasError(parse("a: b: c\n"), "", 1, "YAML syntax error: illegal map value"));
}

TEST(ConfigErrors, MoreThanOneDocument) {
  EXPECT_TRUE(parse("---\n" + std::string(kTwoStages)).ok());
  EXPECT_TRUE(parse(kTwoStages + std::string("...\n# the end\n")).ok());
  EXPECT_TRUE(HasError(parse(kTwoStages + std::string("---\nstage_args: []\n")), "", 5,
                       "more than one YAML document"));
  EXPECT_TRUE(HasError(parse(kTwoStages + std::string("...\nstage_args: []\n")), "", 6,
                       "more than one YAML document"));
}

// yaml-cpp 0.7's LoadAll never returns on these; the loader must.
TEST(ConfigErrors, StrayCommaAtTheStart) {
  EXPECT_TRUE(HasError(parse(","), "", 1, "YAML syntax error: unexpected ','"));
  EXPECT_TRUE(HasError(parse("# comment\n  ,stage_args: []\n"), "", 2, "unexpected ','"));
  EXPECT_TRUE(HasError(parse(kTwoStages + std::string("---\n,\n")), "", 5, "more than one"));
}

TEST(ConfigErrors, DeepFlowNestingIsAnErrorNotACrash) {
  ConfigLoad load = parse("stage_args: " + std::string(100000, '['));
  ASSERT_EQ(load.errors.size(), 1u) << dump(load);
  EXPECT_NE(load.errors[0].message.find("YAML syntax error"), std::string::npos) << dump(load);
}

TEST(ConfigErrors, TopLevelNotAMap) {
  EXPECT_TRUE(HasError(parse("- stage_id: 0\n"), "", 1, "the top level must be a map, got list"));
  EXPECT_TRUE(HasError(parse(""), "", 1, "the top level must be a map, got null"));
}

TEST(ConfigErrors, MissingOrEmptyStageArgs) {
  EXPECT_TRUE(HasError(parse("runtime: {}\n"), "stages", 1,
                       "the config has no stages (its top-level keys: runtime)"));
  EXPECT_TRUE(
      HasError(parse("runtime: {}\nstage_args: []\n"), "stage_args", 2, "stage_args is empty"));
  EXPECT_TRUE(HasError(parse("stage_args:\n"), "stage_args", 1, "stage_args is empty"));
  EXPECT_TRUE(
      HasError(parse("stage_args: {stage_id: 0}\n"), "stage_args", 1, "want a list, got map"));
}

TEST(ConfigErrors, StageIdMissingOrInvalid) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
  - engine_args: {model_stage: talker}
  - stage_id: "2"
  - stage_id: -3
  - stage_id: 1.5
  - just a string
)");
  EXPECT_TRUE(HasError(load, "stage_args[1].stage_id", 3, "the stage has no stage_id"));
  EXPECT_TRUE(HasError(load, "stage_args[2].stage_id", 4, "got string \"2\""));
  EXPECT_EQ(ErrorAt(load, "stage_args[2].stage_id")->hint, "write 2 without quotes");
  EXPECT_TRUE(HasError(load, "stage_args[3].stage_id", 5, "got int -3"));
  EXPECT_TRUE(HasError(load, "stage_args[4].stage_id", 6, "got float 1.5"));
  EXPECT_TRUE(HasError(load, "stage_args[5]", 7, "want a stage (a map with stage_id)"));
  EXPECT_EQ(load.errors.size(), 5u) << dump(load);
}

TEST(ConfigErrors, DuplicateStageIds) {
  ConfigLoad load = parse("stage_args:\n  - stage_id: 0\n  - stage_id: 1\n  - stage_id: 0\n");
  EXPECT_TRUE(
      HasError(load, "stage_args[2].stage_id", 4, "duplicate stage_id 0 (also stage_args[0])"));
}

TEST(ConfigErrors, UndefinedConnectorReference) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(    input_connectors:
      from_stage_0: mooncake
runtime:
  connectors:
    shm: {name: SharedMemoryConnector}
    mooncake_connector: {name: MooncakeConnector}
)"));
  ASSERT_TRUE(HasError(load, "stage_args[1].input_connectors.from_stage_0", 6,
                       "undefined connector reference 'mooncake'"));
  EXPECT_NE(ErrorAt(load, "stage_args[1].input_connectors.from_stage_0")
                ->hint.find("mooncake_connector, shm"),
            std::string::npos);
  // With nothing defined, the hint says so.
  ConfigLoad none = parse(kTwoStages + std::string("    input_connectors: {from_stage_0: x}\n"));
  EXPECT_NE(ErrorAt(none, "stage_args[1].input_connectors.from_stage_0")->hint.find("none"),
            std::string::npos);
}

TEST(ConfigErrors, InlineRefWithoutName) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(    input_connectors:
      from_stage_0:
        extra: {shm_threshold_bytes: 10}
)"));
  EXPECT_TRUE(HasError(load, "stage_args[1].input_connectors.from_stage_0.name", 6,
                       "the connector has no `name`"));
}

// A named connector of an unknown type is an error when an edge uses it, a note otherwise
// (vllm-omni ignores connectors no edge names).
TEST(ConfigErrors, UnknownConnectorType) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(    output_connectors:
      to_stage_0: fast
runtime:
  connectors:
    fast:
      name: NixlConnector
    spare:
      name: NixlConnector
)"));
  ASSERT_TRUE(
      HasError(load, "runtime.connectors.fast.name", 10, "unknown connector type 'NixlConnector'"));
  EXPECT_NE(ErrorAt(load, "runtime.connectors.fast.name")
                ->hint.find("MooncakeConnector, SharedMemoryConnector"),
            std::string::npos);
  EXPECT_EQ(load.errors.size(), 1u) << dump(load);
  ASSERT_EQ(load.notes.size(), 1u);
  EXPECT_EQ(load.notes[0].key_path, "runtime.connectors.spare.name");
  EXPECT_EQ(load.notes[0].line, 12);
}

TEST(ConfigErrors, BadShmExtraPointsAtEachKey) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(runtime:
  connectors:
    shm:
      name: SharedMemoryConnector
      extra:
        shm_threshold_bytes: -1
        arena_bytes: "64KB"
        shm_treshold: 10
)"));
  EXPECT_TRUE(HasError(load, "runtime.connectors.shm.extra.shm_threshold_bytes", 10,
                       "SharedMemoryConnector: shm_threshold_bytes: want an integer in [0, "));
  EXPECT_TRUE(HasError(load, "runtime.connectors.shm.extra.arena_bytes", 11, "got string"));
  EXPECT_EQ(load.errors.size(), 2u) << dump(load);
  // A key the connector does not read is kept and noted, not an error.
  ASSERT_EQ(load.notes.size(), 1u);
  EXPECT_EQ(load.notes[0].key_path, "runtime.connectors.shm.extra.shm_treshold");
  EXPECT_EQ(load.notes[0].line, 12);
  EXPECT_EQ(load.notes[0].message, "not used by SharedMemoryConnector (kept, passed on unread)");
}

TEST(ConfigErrors, BadMooncakeExtra) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(runtime:
  connectors:
    mc:
      name: MooncakeConnector
      extra:
        master: "127.0.0.1"
        segment: -1
        localbuf: "64000000"
        proto: udp
        host: ""
        protocol: tcp
)"));
  const std::string p = "runtime.connectors.mc.extra.";
  EXPECT_TRUE(HasError(load, p + "master", 10, "want \"host:port\""));
  EXPECT_TRUE(HasError(load, p + "segment", 11, "want an integer in [0, "));
  EXPECT_TRUE(HasError(load, p + "localbuf", 12, "got string"));
  EXPECT_TRUE(HasError(load, p + "proto", 13, "want \"tcp\" or \"rdma\", got \"udp\""));
  EXPECT_TRUE(HasError(load, p + "host", 14, "want a non-empty string"));
  EXPECT_EQ(load.errors.size(), 5u) << dump(load);
  ASSERT_EQ(load.notes.size(), 1u);
  EXPECT_EQ(load.notes[0].key_path, p + "protocol");
}

TEST(ConfigErrors, ExtraNotAMapAndRefNotAConnector) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(    input_connectors:
      from_stage_0: [shm]
runtime:
  connectors:
    shm: {name: SharedMemoryConnector, extra: 65536}
)"));
  EXPECT_TRUE(HasError(load, "stage_args[1].input_connectors.from_stage_0", 6,
                       "want a connector name or an inline {name, extra}, got list"));
  EXPECT_TRUE(HasError(load, "runtime.connectors.shm.extra", 9, "want a map of settings"));
}

TEST(ConfigErrors, MalformedConnectorKeys) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    output_connectors:
      to_stage_one: {name: SharedMemoryConnector}
      from_stage_1: {name: SharedMemoryConnector}
  - stage_id: 1
    input_connectors:
      from_stage_00: {name: SharedMemoryConnector}
      stage0: {name: SharedMemoryConnector}
)");
  EXPECT_TRUE(HasError(load, "stage_args[0].output_connectors.to_stage_one", 4,
                       "not of the form to_stage_<stage id>"));
  EXPECT_TRUE(HasError(load, "stage_args[0].output_connectors.from_stage_1", 5,
                       "not of the form to_stage_<stage id>"));
  EXPECT_TRUE(HasError(load, "stage_args[1].input_connectors.from_stage_00", 8,
                       "not of the form from_stage_<stage id>"));
  EXPECT_TRUE(HasError(load, "stage_args[1].input_connectors.stage0", 9, "not of the form"));
  EXPECT_EQ(load.errors.size(), 4u) << dump(load);
}

TEST(ConfigErrors, EdgeToMissingStage) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
  - stage_id: 1
    engine_input_source: [0, 5]
    output_connectors: {to_stage_9: {name: SharedMemoryConnector}}
runtime:
  edges:
    - {from: 0, to: 1}
    - {from: 1, to: 0}
    - from: 1
      to: 3
)");
  EXPECT_TRUE(HasError(load, "runtime.edges[2].to", 11, "stage 3 does not exist"));
  EXPECT_EQ(ErrorAt(load, "runtime.edges[2].to")->hint, "stage_args defines stages 0, 1");
  EXPECT_TRUE(HasError(load, "stage_args[1].engine_input_source[1]", 4, "stage 5 does not exist"));
  EXPECT_TRUE(
      HasError(load, "stage_args[1].output_connectors.to_stage_9", 5, "stage 9 does not exist"));
  EXPECT_EQ(load.errors.size(), 3u) << dump(load);
}

TEST(ConfigErrors, SelfLoops) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    engine_input_source: [0]
  - stage_id: 1
    input_connectors: {from_stage_1: {name: SharedMemoryConnector}}
runtime:
  edges: [{from: 1, to: 1}]
)");
  EXPECT_TRUE(HasError(load, "stage_args[0].engine_input_source[0]", 3,
                       "self-loop: stage 0 sends to itself"));
  EXPECT_TRUE(HasError(load, "stage_args[1].input_connectors.from_stage_1", 5, "self-loop"));
  EXPECT_TRUE(HasError(load, "runtime.edges[0]", 7, "self-loop: stage 1"));
}

// vllm-omni's rule: the first declaration of an edge wins; a later one of another connector
// type is a "connector type mismatch", one of the same type is kept as a note.
TEST(ConfigErrors, BothEndsDisagree) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    output_connectors:
      to_stage_1: a
      to_stage_2: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: 1}}
      to_stage_3: a
  - stage_id: 1
    input_connectors:
      from_stage_0: b
  - stage_id: 2
    input_connectors:
      from_stage_0: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: 2}}
  - stage_id: 3
    input_connectors:
      from_stage_0: mc
runtime:
  connectors:
    a: {name: SharedMemoryConnector}
    b: {name: SharedMemoryConnector}
    mc: {name: MooncakeConnector, extra: {master: "127.0.0.1:50051"}}
)");
  ASSERT_TRUE(HasError(load, "stage_args[3].input_connectors.from_stage_0", 15,
                       "connector type mismatch for edge 0->3: previously registered as "
                       "'SharedMemoryConnector' at stage_args[0].output_connectors.to_stage_3, "
                       "but input_connectors of stage 3 specifies 'MooncakeConnector'"));
  EXPECT_EQ(load.errors.size(), 1u) << dump(load);
  ASSERT_EQ(load.notes.size(), 2u);
  EXPECT_EQ(load.notes[0].key_path, "stage_args[1].input_connectors.from_stage_0");
  EXPECT_EQ(load.notes[0].line, 9);
  EXPECT_EQ(load.notes[0].message,
            "edge 0->1 already has 'a' (SharedMemoryConnector) from "
            "stage_args[0].output_connectors.to_stage_1; 'b' (SharedMemoryConnector) here is "
            "ignored (the first declaration wins, as in vllm-omni)");
  EXPECT_EQ(load.notes[1].key_path, "stage_args[2].input_connectors.from_stage_0");

  // Without the mismatch the file loads, with the first declarations.
  ConfigLoad same = parse_pipeline_config(R"(stage_args:
  - stage_id: 0
    output_connectors: {to_stage_1: a}
  - stage_id: 1
    input_connectors: {from_stage_0: b}
runtime:
  connectors:
    a: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: 7}}
    b: {name: SharedMemoryConnector}
)",
                                          "test.yaml");
  ASSERT_TRUE(same.ok()) << dump(same);
  EXPECT_EQ(same.config.edges[0].connector_name, "a");
  EXPECT_EQ(extra_int(same.config.edges[0], "shm_threshold_bytes"), 7);
}

TEST(ConfigErrors, WrongValueTypes) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    input_connectors: shm
    final_output: "yes"
  - stage_id: 1
    engine_input_source: 0
    output_connectors: [to_stage_0]
  - stage_id: 2
    engine_input_source: [one]
runtime:
  edges: {from: 0, to: 1}
  connectors: [shm]
)");
  EXPECT_TRUE(HasError(load, "stage_args[0].input_connectors", 3, "want a map, got string"));
  EXPECT_TRUE(HasError(load, "stage_args[0].final_output", 4, "want true or false"));
  EXPECT_TRUE(HasError(load, "stage_args[1].engine_input_source", 6, "want a list, got int 0"));
  EXPECT_TRUE(HasError(load, "stage_args[1].output_connectors", 7, "want a map, got list"));
  EXPECT_TRUE(HasError(load, "stage_args[2].engine_input_source[0]", 9,
                       "want a stage id (a non-negative integer), got string \"one\""));
  EXPECT_TRUE(HasError(load, "runtime.edges", 11, "want a list, got map"));
  EXPECT_TRUE(HasError(load, "runtime.connectors", 12, "want a map, got list"));
  EXPECT_TRUE(HasError(parse(kTwoStages + std::string("runtime: 5\n")), "runtime", 5,
                       "want a map, got int 5"));
}

TEST(ConfigErrors, EdgeWithoutFromOrTo) {
  ConfigLoad load = parse(kTwoStages + std::string(R"(runtime:
  edges:
    - {from: 0, to: 1}
    - to: 1
      window_size: -1
    - {from: 0}
    - 7
)"));
  EXPECT_TRUE(HasError(load, "runtime.edges[1].from", 8, "the edge has no `from`"));
  EXPECT_TRUE(HasError(load, "runtime.edges[2].to", 10, "the edge has no `to`"));
  EXPECT_TRUE(HasError(load, "runtime.edges[3]", 11, "want an edge {from: <stage id>"));
  EXPECT_EQ(load.errors.size(), 3u) << dump(load);
}

TEST(ConfigErrors, DuplicateYamlKey) {
  ConfigLoad load = parse("stage_args:\n  - stage_id: 0\n    stage_id: 1\n");
  EXPECT_TRUE(
      HasError(load, "stage_args[0].stage_id", 3, "duplicate key 'stage_id' (first at line 2)"));
}

TEST(ConfigErrors, SelfReferencingAliasDoesNotRecurseForever) {
  ConfigLoad load = parse("stage_args: &a [*a]\n");
  EXPECT_FALSE(load.ok());
  EXPECT_NE(dump(load).find("nesting deeper than 64 levels"), std::string::npos) << dump(load);
}

TEST(ConfigErrors, MissingFile) {
  ConfigLoad load = load_pipeline_config("/nonexistent/omniconn/stages.yaml");
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_EQ(load.errors[0].ToString(),
            "/nonexistent/omniconn/stages.yaml: cannot read the config file: No such file or "
            "directory (fix: check the path; a stage config is a .yaml file with stages or "
            "stage_args)");
}

// Every problem is reported, in file order, not only the first.
TEST(ConfigErrors, ReportsEveryProblemInFileOrder) {
  ConfigLoad load = parse(R"(stage_args:
  - stage_id: 0
    output_connectors:
      to_stage_1: nope
  - stage_id: 1
    engine_input_source: [0, 4]
    input_connectors:
      stage_0: shm
  - stage_id: 1
runtime:
  connectors:
    shm:
      name: SharedMemoryConnector
      extra: {shm_threshold_bytes: 99999999999}
    other: {name: RdmaConnector}
  edges:
    - {from: 2, to: 2}
)");
  ASSERT_EQ(load.errors.size(), 6u) << dump(load);
  std::vector<int> lines;
  for (const ConfigError& e : load.errors) lines.push_back(e.line);
  EXPECT_EQ(lines, (std::vector<int>{4, 6, 8, 9, 14, 17})) << dump(load);
  EXPECT_TRUE(HasError(load, "stage_args[0].output_connectors.to_stage_1", 4, "undefined"));
  EXPECT_TRUE(HasError(load, "stage_args[1].engine_input_source[1]", 6, "stage 4 does not exist"));
  EXPECT_TRUE(HasError(load, "stage_args[1].input_connectors.stage_0", 8, "not of the form"));
  EXPECT_TRUE(HasError(load, "stage_args[2].stage_id", 9, "duplicate stage_id 1"));
  EXPECT_TRUE(
      HasError(load, "runtime.connectors.shm.extra.shm_threshold_bytes", 14, "want an integer in"));
  ASSERT_EQ(load.notes.size(), 1u);  // `other` is used by no edge
  EXPECT_EQ(load.notes[0].line, 15);
  EXPECT_TRUE(HasError(load, "runtime.edges[0]", 17, "self-loop"));
}

TEST(ConfigErrors, ToStringFormat) {
  ConfigError e{"a.yaml", 3, 7, "runtime.edges[0].to", "stage 3 does not exist", "use 0 or 1"};
  EXPECT_EQ(e.ToString(),
            "a.yaml:3:7: runtime.edges[0].to: stage 3 does not exist (fix: use 0 or 1)");
  EXPECT_EQ((ConfigError{"", 0, 0, "", "boom", ""}.ToString()), "boom");
  EXPECT_EQ((ConfigError{"a.yaml", 2, 0, "x", "m", ""}.ToString()), "a.yaml:2: x: m");
}

}  // namespace
}  // namespace omniconn

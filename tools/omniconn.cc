// The omniconn command: validate a vllm-omni stage config, run its pipeline (or some of its
// stages), watch a running one, or run the benchmark suite.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "omniconn/config.h"
#include "omniconn/runtime.h"
#include "plot.h"
#include "stats.h"

namespace {

using namespace omniconn;

// Exit codes.
constexpr int kOk = 0;
constexpr int kRunFailed = 1;
constexpr int kInvalidConfig = 2;
constexpr int kUsage = 64;

std::string extra_summary(const Value& extra) {
  const Value::Map* m = extra.as_map();
  if (m == nullptr || m->empty()) return "-";
  std::string out;
  for (const auto& [k, v] : *m) {
    std::string val;
    if (auto i = v.as_int()) {
      val = std::to_string(*i);
    } else if (const std::string* s = v.as_string()) {
      val = *s;
    } else if (const double* d = v.as_float()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", *d);
      val = buf;
    } else if (const bool* b = v.as_bool()) {
      val = *b ? "true" : "false";
    } else {
      val = std::string(v.kind_name());
    }
    out += (out.empty() ? "" : " ") + k + "=" + val;
  }
  return out;
}

// What `validate` and `run` share: how the file is read.
struct LoadArgs {
  std::string config;
  std::string platform;
  std::string edges;  // --edges FROM:TO,...
  bool strict = false;
};

constexpr const char* kNoEdgesHint = "give them on the command line, e.g. --edges 0:1,1:2";

// "the file defines no edges ..." for a config whose topology is not in the file.
std::string no_edges_text(const PipelineConfig& c) {
  std::string out =
      "the file defines no edges (no edges list, input_connectors, output_connectors or "
      "engine_input_source)";
  if (!c.pipeline.empty()) {
    out += "; vllm-omni takes the topology of pipeline '" + c.pipeline +
           "' from its Python pipeline definitions";
  }
  return out;
}

void print_edges(const PipelineConfig& c) {
  std::printf("%s: %s schema, %zu stage%s, %zu edge%s", c.file.c_str(), c.schema.c_str(),
              c.stages.size(), c.stages.size() == 1 ? "" : "s", c.edges.size(),
              c.edges.size() == 1 ? "" : "s");
  if (!c.pipeline.empty()) std::printf(", pipeline %s", c.pipeline.c_str());
  if (!c.platform.empty()) std::printf(", platform %s", c.platform.c_str());
  std::printf("\n");
  for (size_t i = 1; i < c.files.size(); ++i) std::printf("  inherits %s\n", c.files[i].c_str());
  if (c.edges.empty()) {
    std::printf("%s: %s (%s)\n", c.file.c_str(), no_edges_text(c).c_str(), kNoEdgesHint);
    return;
  }
  std::printf("%-10s %-22s %-24s %s\n", "edge", "connector", "type", "settings");
  for (const EdgeConfig& e : c.edges) {
    std::string name = e.automatic                ? "(automatic)"
                       : e.connector_name.empty() ? "(inline)"
                                                  : e.connector_name;
    std::string settings = extra_summary(e.spec.extra);
    if (e.flow.is_map()) settings += "  [edge: " + extra_summary(e.flow) + "]";
    std::printf("%-10s %-22s %-24s %s\n", (e.from + " -> " + e.to).c_str(), name.c_str(),
                e.spec.type.c_str(), settings.c_str());
  }
}

// Loads a config; prints every note and error (unless `quiet`) and returns false when there
// are errors. A bad --edges value is an error of the load.
bool load(const LoadArgs& args, ConfigLoad* out, bool quiet = false) {
  LoadOptions options;
  options.platform = args.platform;
  options.strict = args.strict;
  if (!args.edges.empty()) {
    auto edges = parse_edge_list(args.edges);
    if (!edges.ok()) {
      out->config.file = args.config;
      out->errors.push_back(ConfigError{"", 0, 0, "--edges", edges.status().message(), ""});
      if (!quiet) std::fprintf(stderr, "--edges: %s\n", edges.status().message().c_str());
      return false;
    }
    options.edges = *edges;
  }
  *out = load_pipeline_config(args.config, options);
  if (quiet) return out->ok();
  for (const ConfigError& e : out->notes) {
    std::fprintf(stderr, "note: %s\n", e.ToString().c_str());
  }
  for (const ConfigError& e : out->errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
  if (!out->ok()) {
    std::fprintf(stderr, "%zu error%s in %s\n", out->errors.size(),
                 out->errors.size() == 1 ? "" : "s", args.config.c_str());
  }
  return out->ok();
}

int cmd_validate(const LoadArgs& args, bool json) {
  ConfigLoad c;
  bool ok = load(args, &c, json);
  if (json) {
    std::fputs(config_json(c).c_str(), stdout);
    return ok ? kOk : kInvalidConfig;
  }
  if (!ok) return kInvalidConfig;
  print_edges(c.config);
  return kOk;
}

std::string join_ids(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ",") + id;
  return out;
}

// stream_given: --stream or --no-stream was on the command line (else the file's async_chunk).
int cmd_run(const LoadArgs& args, RunOptions opts, const std::string& json_path,
            const std::string& plot_path, bool stream_given) {
  ConfigLoad c;
  if (!load(args, &c)) return kInvalidConfig;
  if (!plot_path.empty()) {  // before the run, not after it
    std::string problem = tools::plot_problem(plot_path);
    if (!problem.empty()) {
      std::fprintf(stderr, "omniconn run: --plot: %s\n", problem.c_str());
      return kUsage;
    }
  }
  const Value* async_chunk = c.config.raw.find("async_chunk");
  if (!stream_given && async_chunk != nullptr && async_chunk->as_bool() &&
      *async_chunk->as_bool()) {
    opts.stream = true;
    std::fprintf(stderr,
                 "omniconn run: streaming every edge (the file sets async_chunk: true; "
                 "--no-stream to send whole requests)\n");
  }
  if (c.config.edges.empty()) {
    std::fprintf(stderr, "omniconn run: %s: %s; %s\n", args.config.c_str(),
                 no_edges_text(c.config).c_str(), kNoEdgesHint);
    return kInvalidConfig;
  }
  if (!opts.listen.empty()) {
    opts.on_listening = [&](const std::string& bound) {
      std::vector<std::string> remote;
      for (const StageConfig& s : c.config.stages) {
        if (std::find(opts.local_stages.begin(), opts.local_stages.end(), s.id) ==
            opts.local_stages.end()) {
          remote.push_back(s.id);
        }
      }
      std::fprintf(stderr,
                   "omniconn run: listening on %s for stage%s %s; on their host run: omniconn "
                   "stage %s --stage %s --orchestrator %s\n",
                   bound.c_str(), remote.size() == 1 ? "" : "s", join_ids(remote).c_str(),
                   args.config.c_str(), join_ids(remote).c_str(), bound.c_str());
    };
  }
  opts.on_metrics_listening = [](const std::string& bound) {
    std::fprintf(stderr, "omniconn run: metrics at http://%s/metrics (omniconn stats %s)\n",
                 bound.c_str(), bound.c_str());
  };
  auto report = run_pipeline(c.config, opts);
  if (!report.ok()) {
    std::fprintf(stderr, "omniconn run: %s\n", report.status().ToString().c_str());
    return kRunFailed;
  }
  std::fputs(format_report(*report).c_str(), stdout);
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << report_json(*report, c.config, opts);
    if (!f) {
      std::fprintf(stderr, "omniconn run: cannot write %s\n", json_path.c_str());
      return kRunFailed;
    }
  }
  if (!plot_path.empty()) {
    std::string title = args.config + ": " + std::to_string(report->requests_done) +
                        " requests, concurrency " + std::to_string(opts.concurrency) +
                        (opts.stream ? ", streamed" : "");
    std::string failed = tools::plot_run(*report, title, plot_path);
    if (!failed.empty()) {
      std::fprintf(stderr, "omniconn run: --plot: %s\n", failed.c_str());
      return kRunFailed;
    }
    std::fprintf(stderr, "omniconn run: plot written to %s\n", plot_path.c_str());
  }
  return kOk;
}

// One host's stages of a multi-host run.
int cmd_stage(const LoadArgs& args, WorkerOptions opts) {
  ConfigLoad c;
  if (!load(args, &c)) return kInvalidConfig;
  opts.on_started = [&](const std::vector<int>& pids) {
    for (size_t i = 0; i < pids.size(); ++i) {
      std::fprintf(stderr, "omniconn stage: stage %s started (pid %d), orchestrator %s\n",
                   opts.stages[i].c_str(), pids[i], opts.orchestrator.c_str());
    }
  };
  opts.on_metrics_listening = [](const std::string& bound) {
    std::fprintf(stderr, "omniconn stage: metrics at http://%s/metrics\n", bound.c_str());
  };
  Status st = run_stage_worker(c.config, opts);
  if (!st.ok()) {
    std::fprintf(stderr, "omniconn stage: %s\n", st.ToString().c_str());
    return st.code() == StatusCode::kInvalidArgument ? kInvalidConfig : kRunFailed;
  }
  std::fprintf(stderr, "omniconn stage: stage%s %s finished\n", opts.stages.size() > 1 ? "s" : "",
               join_ids(opts.stages).c_str());
  return kOk;
}

// Runs the benchmark suite of the source tree this binary was built from, through Debian's
// python3 (it needs numpy, matplotlib and the built extension); arguments go to the script.
int cmd_bench(const std::vector<std::string>& args) {
  const std::string script = OMNICONN_BENCH_SCRIPT;
  if (::access(script.c_str(), R_OK) != 0) {
    std::fprintf(stderr,
                 "omniconn bench: the suite is not here: %s is missing (omniconn bench runs from "
                 "the source and build trees it was built in; run `make bench` there)\n",
                 script.c_str());
    return kRunFailed;
  }
  const char* python = ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  std::vector<std::string> words = {python, script, "--build-dir", OMNICONN_BUILD_DIR};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  ::execvp(python, argv.data());
  std::fprintf(stderr, "omniconn bench: cannot run %s: %s\n", python, std::strerror(errno));
  return kRunFailed;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "omniconn: moves payloads between the stages of a model pipeline.\n"
      "Reads vllm-omni stage-config YAML files unchanged, in both schemas.\n"
      "Exit codes: 0 ok, 1 run failed, 2 invalid config, 64 bad usage."};
  app.require_subcommand(1);
  LoadArgs args;
  std::string json_path, plot_path;
  RunOptions opts;
  bool no_progress = false, validate_json = false;
  auto add_load_options = [&args](CLI::App* cmd) {
    cmd->add_option("config", args.config,
                    "stage-config YAML file (deploy schema with `stages`, or `stage_args`)")
        ->required();
    cmd->add_option("--platform", args.platform,
                    "apply the file's platforms.<NAME> stage overrides (none by default)");
    cmd->add_option("--edges", args.edges,
                    "edges to add, FROM:TO,... (e.g. 0:1,1:2), for a file that has none: "
                    "vllm-omni's deploy files often keep the topology in Python");
    cmd->add_flag("--strict", args.strict,
                  "notes (settings no connector reads, ignored declarations) are errors");
  };

  auto* validate = app.add_subcommand(
      "validate",
      "Check a stage config and print the resolved edge table (from -> to, connector, type, "
      "settings), notes on what is kept but not used, or every error with file:line and key "
      "path. Exit 0 when the file is valid (one without edges is valid; run then needs "
      "--edges), 2 when not.");
  add_load_options(validate);
  validate->add_flag("--json", validate_json,
                     "print stages, edges, connectors, notes and errors as JSON on stdout");

  auto* run = app.add_subcommand(
      "run",
      "Run the pipeline: one process per stage, payloads passed stage to stage over the "
      "edges' connectors; prints a per-edge table (requests, bytes, p50/p99 latency, "
      "throughput, errors) and each stage's peak RSS.");
  add_load_options(run);
  run->add_option("-n,--requests", opts.requests, "requests to run")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  run->add_option("-c,--concurrency", opts.concurrency, "requests in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  run->add_option("--json", json_path, "also write the results as JSON to this file");
  run->add_option("--plot", plot_path,
                  "also draw the run into this .png (or .svg, .pdf): per-edge latency over the "
                  "run and the time to first chunk at the sink (needs python3-matplotlib); "
                  "docs/metrics.md");
  run->add_option("--tokens", opts.workload.tokens, "tokens per request")->capture_default_str();
  run->add_option("--hidden-size", opts.workload.hidden_size,
                  "source stage (Thinker) hidden size: hidden states are tokens x this, f32")
      ->capture_default_str();
  run->add_option("--codes-per-token", opts.workload.codes_per_token,
                  "middle stages (Talker): codec codes per token, i64")
      ->capture_default_str();
  run->add_option("--audio-samples-per-token", opts.workload.audio_samples_per_token,
                  "sink stage (Code2Wav): f32 audio samples produced per token")
      ->capture_default_str();
  run->add_option("--source-us-per-token", opts.workload.source_us_per_token,
                  "source stage work per token, in us (the stage sleeps tokens x this per "
                  "request, as on an accelerator)")
      ->capture_default_str();
  run->add_option("--middle-us-per-token", opts.workload.middle_us_per_token,
                  "middle stages' work per token, in us")
      ->capture_default_str();
  run->add_option("--sink-us-per-token", opts.workload.sink_us_per_token,
                  "sink stage work per token, in us")
      ->capture_default_str();
  auto* stream_flag = run->add_flag(
      "--stream,!--no-stream", opts.stream,
      "stream every edge (vllm-omni's async_chunk; the default when the file sets async_chunk: "
      "true): each stage works and sends chunk by chunk, chunks keyed "
      "{request}_{stage}_{chunk}, the last marked finished");
  run->add_option("--first-chunk-tokens", opts.workload.first_chunk_tokens,
                  "with --stream: tokens in a request's first chunk")
      ->capture_default_str();
  run->add_option("--chunk-tokens", opts.workload.chunk_tokens,
                  "with --stream: tokens in each later chunk")
      ->capture_default_str();
  run->add_option("--abort-every", opts.abort_every,
                  "with --stream: cancel every Nth request mid-stream (0: none); its unread "
                  "chunks are freed on every edge")
      ->capture_default_str();
  run->add_option("--abort-after-chunks", opts.abort_after_chunks,
                  "a cancelled request's source stops after this many chunks")
      ->capture_default_str();
  run->add_option("--op-timeout-ms", opts.op_timeout_ms,
                  "a stage gives up on a send or receive that makes no progress this long")
      ->capture_default_str();
  run->add_flag("--no-progress", no_progress, "no progress bar (it is shown on a terminal)");
  auto* listen = run->add_option(
      "--listen", opts.listen,
      "several hosts: wait on HOST:PORT (port 0: any) for `omniconn stage` workers to claim "
      "the stages that --local does not name; docs/multi-host.md");
  run->add_option("--local", opts.local_stages,
                  "with --listen: stages started on this host (IDS, comma-separated)")
      ->delimiter(',')
      ->needs(listen);
  run->add_option("--host-name", opts.host_name, "this host in the report (default: hostname)");
  run->add_option("--join-timeout-ms", opts.join_timeout_ms,
                  "with --listen: every remote stage must join within this")
      ->capture_default_str();
  run->add_option("--metrics", opts.metrics_listen,
                  "serve GET /metrics (Prometheus text) on HOST:PORT (port 0: any) while the run "
                  "lasts: every edge's counters, gauges and latency histograms, of every host; "
                  "`omniconn stats HOST:PORT` shows them; docs/metrics.md");
  run->add_option("--heartbeat-timeout-ms", opts.heartbeat_timeout_ms,
                  "a host silent this long (dead, or the link cut) ends the run on every host")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1000}, int64_t{600000}));

  WorkerOptions worker;
  auto* stage = app.add_subcommand(
      "stage",
      "Run some stages of a pipeline on this host, for an orchestrator (`omniconn run "
      "--listen`) on another: joins it, checks that both loaded the same config, starts the "
      "stages when the run starts and stops them when it ends. Any launcher (ssh, Slurm, "
      "Kubernetes) can place them. Exit 0 when every stage here finished.");
  add_load_options(stage);
  stage->add_option("--stage", worker.stages, "stage ids to run here (repeat, or comma-separated)")
      ->delimiter(',')
      ->required();
  stage
      ->add_option("--orchestrator", worker.orchestrator,
                   "HOST:PORT of the orchestrator's --listen")
      ->required();
  stage->add_option("--host-name", worker.host_name,
                    "this host in the orchestrator's report (default: hostname)");
  stage
      ->add_option("--connect-timeout-ms", worker.connect_timeout_ms,
                   "give up when the orchestrator does not answer within this")
      ->capture_default_str();

  stage->add_option("--metrics", worker.metrics_listen,
                    "serve GET /metrics for this host's stages on HOST:PORT (port 0: any)");

  tools::StatsArgs stats_args;
  auto* stats = app.add_subcommand(
      "stats",
      "Show a running pipeline's per-edge table from its metrics endpoint (`omniconn run "
      "--metrics`, `omniconn stage --metrics`, or any process serving omniconn's metrics): "
      "payloads sent and received, MB, in flight, errors, timeouts, put/get/end-to-end "
      "latency p50/p99, and rates since the last refresh. Refreshes until the run ends. Exit "
      "0 when shown, 1 when the endpoint cannot be read.");
  stats->add_option("target", stats_args.target, "HOST:PORT, or http://HOST:PORT/metrics")
      ->required();
  stats->add_flag("--once", stats_args.once, "print one table (or JSON) and exit");
  stats->add_flag("--json", stats_args.json,
                  "JSON instead of the table (with --once: one object; else one per line)");
  stats->add_option("--interval-ms", stats_args.interval_ms, "time between refreshes")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{50}, int64_t{3600000}));
  stats->add_option("--count", stats_args.count, "refreshes before exiting (0: until the run ends)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  stats
      ->add_option("--timeout-ms", stats_args.timeout_ms, "a scrape not answered within this fails")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{600000}));

  auto* bench = app.add_subcommand(
      "bench",
      "Run the benchmark suite (bench/run_all.py): every benchmark and baseline in one run, "
      "ratios against the design targets, JSON and PNG plots in docs/bench/, and the tables "
      "of docs/benchmarks.md. Arguments go to the script: `omniconn bench --help` for its own.");
  bench->prefix_command();
  bench->set_help_flag();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  if (*validate) return cmd_validate(args, validate_json);
  if (*bench) return cmd_bench(bench->remaining());
  if (*stage) return cmd_stage(args, worker);
  if (*stats) return tools::cmd_stats(stats_args);
  opts.progress = !no_progress && ::isatty(STDERR_FILENO);
  return cmd_run(args, opts, json_path, plot_path, stream_flag->count() > 0);
}

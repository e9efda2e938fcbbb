// Pipeline runtime: runs a PipelineConfig with one process per stage. Stages pass payloads to
// each other directly over their edges' connectors (channel mode); the orchestrator (the
// calling process) only hands out request ids, collects completions and statistics, and ends
// the run when a stage fails or on SIGINT/SIGTERM.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "omniconn/config.h"
#include "omniconn/status.h"

namespace omniconn {

// Synthetic stage work shaped like Qwen2.5-Omni: a source stage (no inputs, the Thinker) emits
// hidden states [tokens x hidden_size] f32 plus token ids [tokens] i64; a middle stage (the
// Talker) emits codec codes [tokens x codes_per_token] i64; a sink stage (Code2Wav) produces
// audio of tokens x audio_samples_per_token f32 samples locally. Every stage verifies every
// tensor it receives.
struct Workload {
  int64_t tokens = 256;
  int64_t hidden_size = 3584;
  int64_t codes_per_token = 8;
  int64_t audio_samples_per_token = 960;  // 24 kHz audio at 25 tokens/s
};

struct RunOptions {
  int64_t requests = 100;
  int64_t concurrency = 4;
  Workload workload;
  bool progress = false;  // a progress bar on stderr
  // Gives up on a stage operation (send/recv) that makes no progress for this long.
  int64_t op_timeout_ms = 30000;
  // Called once all stage processes are started (pids in stage order); tests use it.
  std::function<void(const std::vector<int>& pids)> on_started;
};

struct EdgeReport {
  std::string from, to, connector;  // connector: type (and config name)
  int64_t requests = 0;
  int64_t bytes = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double mb_per_s = 0;  // bytes / wall time
  int64_t errors = 0;
  int64_t inline_payloads = 0;  // of `requests`, those that travelled inline
};

struct StageReport {
  std::string id;
  std::string name;  // engine_args.model_stage when present
  int pid = 0;
  int64_t peak_rss_kb = 0;
  int64_t requests = 0;
  int64_t output_bytes = 0;  // sink: audio bytes produced
};

struct RunReport {
  double wall_s = 0;
  int64_t requests_done = 0;
  std::vector<EdgeReport> edges;
  std::vector<StageReport> stages;
};

// Runs the pipeline to completion. Errors name the stage that failed ("stage 1 (talker):
// killed by signal 9"); all stage processes are gone when it returns.
Result<RunReport> run_pipeline(const PipelineConfig& config, const RunOptions& options);

std::string format_report(const RunReport& report);
std::string report_json(const RunReport& report, const PipelineConfig& config,
                        const RunOptions& options);

}  // namespace omniconn

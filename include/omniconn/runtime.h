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
  // Stage work per token, in microseconds (the stage sleeps tokens x this per request, as a
  // stage waiting on its accelerator would): source, middle and sink stages; 0: none. The
  // defaults are vllm-omni's published Thinker time per output token (8.3 ms, Qwen3-Omni on
  // H800, async_chunk docs) scaled by 1/1000 so that a run takes seconds, the Talker and
  // Code2Wav shaped lighter.
  double source_us_per_token = 8;
  double middle_us_per_token = 4;
  double sink_us_per_token = 1;
  // Streaming (RunOptions::stream): a request crosses each edge as chunks of tokens, the first
  // of first_chunk_tokens, then chunk_tokens each (the talker -> code2wav shape of
  // Qwen-Omni's codec streaming: a small first chunk, then 25 frames).
  int64_t first_chunk_tokens = 10;
  int64_t chunk_tokens = 25;
};

struct RunOptions {
  int64_t requests = 100;
  int64_t concurrency = 4;
  Workload workload;
  // vllm-omni's async_chunk: every stage works and sends chunk by chunk (Workload's chunk
  // sizes), the sink starts on the first; the last chunk is marked finished. Chunks are keyed
  // "{request}_{stage}_{chunk}" (stream.h).
  bool stream = false;
  // Cancels every Nth request (0: none; needs stream) once its source has sent
  // abort_after_chunks chunks: the orchestrator tells the source, which frees its unread chunks
  // (cleanup) and ends the stream with an aborted marker; each stage downstream does the same.
  int64_t abort_every = 0;
  int64_t abort_after_chunks = 2;
  bool progress = false;  // a progress bar on stderr
  // Gives up on a stage operation (send/recv) that makes no progress for this long.
  int64_t op_timeout_ms = 30000;
  // Called once all stage processes are started (pids in stage order; 0 for a stage of
  // another host); tests use it.
  std::function<void(const std::vector<int>& pids)> on_started;

  // Several hosts. With `listen` ("HOST:PORT"; port 0: any free port) the orchestrator waits
  // there for stage workers (run_stage_worker) to claim every stage not in `local_stages`,
  // then starts the run everywhere; without it every stage runs here, as always.
  std::string listen;
  std::vector<std::string> local_stages;  // stage ids started on this host
  std::string host_name;                  // this host in reports ("" = its hostname)
  int64_t join_timeout_ms = 60000;        // every remote stage claimed within this
  // A host silent for this long (no heartbeat: dead, or the link is cut) ends the run.
  int64_t heartbeat_timeout_ms = 3000;
  // Called with the address bound (port filled in) once the orchestrator listens.
  std::function<void(const std::string& bound)> on_listening;

  // "HOST:PORT" (port 0: any): serve GET /metrics there, in the Prometheus text format, while
  // the run lasts: every stage's connectors, of every host (docs/metrics.md).
  std::string metrics_listen;
  std::function<void(const std::string& bound)> on_metrics_listening;
};

// One host's part of a multi-host run: starts `stages` here once the orchestrator at
// `orchestrator` ("HOST:PORT") admits them, relays their control lines, and ends them when
// the run ends, the orchestrator says stop, or it stays silent past the heartbeat timeout.
struct WorkerOptions {
  std::string orchestrator;
  std::vector<std::string> stages;     // stage ids
  std::string host_name;               // this host in reports ("" = its hostname)
  int64_t connect_timeout_ms = 60000;  // the orchestrator answers within this
  // Called once the stages are started (their pids, in the order of `stages`).
  std::function<void(const std::vector<int>& pids)> on_started;
  // As RunOptions::metrics_listen, for this host's stages.
  std::string metrics_listen;
  std::function<void(const std::string& bound)> on_metrics_listening;
};

struct EdgeReport {
  std::string from, to, connector;  // connector: type (and config name)
  std::string from_host, to_host;   // multi-host runs: where its two stages ran
  int64_t requests = 0;
  int64_t bytes = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double mb_per_s = 0;  // bytes / wall time
  int64_t errors = 0;
  int64_t inline_payloads = 0;  // of `requests`, those that travelled inline
  // Per payload, for plots: when it arrived (s since its receiving stage started) and its
  // latency (ms), in arrival order.
  std::vector<double> arrival_s{}, latency_ms{};
};

struct StageReport {
  std::string id;
  std::string host;  // where it ran (multi-host runs)
  std::string name;  // engine_args.model_stage when present
  int pid = 0;
  int64_t peak_rss_kb = 0;
  int64_t requests = 0;
  int64_t output_bytes = 0;  // sink: audio bytes produced
  // What its output connectors still held once it drained (0 unless a reader kept payloads),
  // and the unread chunks cancelled requests freed (cleanup) on them.
  int64_t in_flight_end = 0, in_use_bytes_end = 0, abort_freed = 0;
  int64_t rss_kb_early = 0, rss_kb_end = 0;  // resident set after its 10th request, at its end
};

// Per request, at the sink(s), from when the source started it: p50/p99 over the requests
// that finished (aborted ones left out). Connector share: the time every stage spent in its
// connectors' calls for the request (put + get durations, Metrics) over the request's time.
struct RequestReport {
  bool stream = false;
  int64_t measured = 0, aborted = 0, abort_freed = 0;  // freed: unread chunks, every stage
  int64_t chunks_sent = 0, chunks_received = 0;        // over every edge (aborted ones' included)
  double first_chunk_p50_ms = 0, first_chunk_p99_ms = 0;
  double last_chunk_p50_ms = 0, last_chunk_p99_ms = 0;
  double request_p50_ms = 0, request_p99_ms = 0;
  double connector_share_p50 = 0, connector_share_p99 = 0;  // 0..1
  std::vector<double> first_chunk_ms{};                     // per finished request, for plots
};

struct RunReport {
  bool multi_host = false;  // stages ran on more than one host: the tables show hosts
  double wall_s = 0;
  int64_t requests_done = 0;
  RequestReport requests;
  std::vector<EdgeReport> edges;
  std::vector<StageReport> stages;
};

// Runs the pipeline to completion. Errors name the stage that failed ("stage 1 (talker):
// killed by signal 9"); all stage processes are gone when it returns.
Result<RunReport> run_pipeline(const PipelineConfig& config, const RunOptions& options);

// Runs this host's stages of a multi-host run (see WorkerOptions). OK when every stage here
// finished; otherwise what ended them ("stopped by the orchestrator: stage 0 on a ...").
Status run_stage_worker(const PipelineConfig& config, const WorkerOptions& options);

std::string format_report(const RunReport& report);
std::string report_json(const RunReport& report, const PipelineConfig& config,
                        const RunOptions& options);

}  // namespace omniconn

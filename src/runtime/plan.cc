// What the orchestrator and the stage workers share: a stage's plan, starting a stage
// process, how an exit reads, the config digest, the run options on the wire.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <cstring>

#include "omniconn/registry.h"
#include "runtime/runtime_internal.h"

namespace omniconn::runtime {

namespace {

void on_stage_term(int) {
  g_stage_stop = 1;
}

// Every descriptor but stdio and the stage's two pipe ends: the parent's sockets (the
// control channel, other stages' pipes) must close when the parent closes them.
void close_inherited(int a, int b) {
  if (a > b) std::swap(a, b);
  if (a > 3) ::close_range(3, static_cast<unsigned>(a - 1), 0);
  if (b > a + 1) ::close_range(static_cast<unsigned>(a + 1), static_cast<unsigned>(b - 1), 0);
  ::close_range(static_cast<unsigned>(b + 1), ~0U, 0);
}

// `extra` without the keys that may differ from host to host (Mooncake's own address).
Value shared_extra(const ConnectorSpec& spec) {
  Value extra = spec.extra;
  const ConnectorType* type = ConnectorRegistry::instance().find(spec.type);
  Value::Map* m = extra.as_map();
  if (type == nullptr || m == nullptr) return extra;
  for (const std::string& k : type->host_local_keys) m->erase(k);
  return extra;
}

}  // namespace

StagePlan plan_for(const PipelineConfig& c, size_t index, const std::string& name_space,
                   const RunOptions* options) {
  StagePlan p;
  p.stage = &c.stages[index];
  p.name_space = name_space;
  p.options = options;
  for (const EdgeConfig& e : c.edges) {
    if (e.to == p.stage->id) p.inputs.push_back(&e);
    if (e.from == p.stage->id) p.outputs.push_back(&e);
  }
  return p;
}

Result<int> spawn_stage(StagePlan plan, int* ctl_w, int* evt_r) {
  int ctl[2], evt[2];
  if (::pipe2(ctl, O_CLOEXEC) != 0) return Status::ResourceExhausted(std::strerror(errno));
  if (::pipe2(evt, O_CLOEXEC) != 0) {
    ::close(ctl[0]);
    ::close(ctl[1]);
    return Status::ResourceExhausted(std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Status::ResourceExhausted("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole group: the parent decides
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGTERM, on_stage_term);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) std::_Exit(3);  // the parent died before the line above
    close_inherited(ctl[0], evt[1]);
    plan.ctl_fd = ctl[0];
    plan.evt_fd = evt[1];
    std::_Exit(run_stage(plan));
  }
  ::close(ctl[0]);
  ::close(evt[1]);
  *ctl_w = ctl[1];
  *evt_r = evt[0];
  return static_cast<int>(pid);
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

std::string stage_label(const StageConfig& s) {
  std::string label = "stage " + s.id;
  const Value* ea = s.raw.find("engine_args");
  const Value* ms = ea != nullptr ? ea->find("model_stage") : nullptr;
  if (ms != nullptr && ms->as_string() != nullptr) label += " (" + *ms->as_string() + ")";
  return label;
}

std::string config_digest(const PipelineConfig& c) {
  Value::List stages, edges;
  for (const StageConfig& s : c.stages) stages.push_back(Value(s.id));
  for (const EdgeConfig& e : c.edges) {
    Value::Map m;
    m.emplace("from", Value(e.from));
    m.emplace("to", Value(e.to));
    m.emplace("type", Value(e.spec.type));
    m.emplace("connector", Value(e.connector_name));
    m.emplace("extra", shared_extra(e.spec));
    edges.push_back(Value(std::move(m)));
  }
  Value::Map doc;
  doc.emplace("stages", Value(std::move(stages)));
  doc.emplace("edges", Value(std::move(edges)));
  std::vector<uint8_t> bytes = encode_msgpack(Value(std::move(doc)));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
  return hex;
}

nlohmann::json options_json(const RunOptions& o) {
  const Workload& w = o.workload;
  return {{"requests", o.requests},
          {"concurrency", o.concurrency},
          {"stream", o.stream},
          {"abort_every", o.abort_every},
          {"abort_after_chunks", o.abort_after_chunks},
          {"op_timeout_ms", o.op_timeout_ms},
          {"heartbeat_timeout_ms", o.heartbeat_timeout_ms},
          {"workload",
           {{"tokens", w.tokens},
            {"hidden_size", w.hidden_size},
            {"codes_per_token", w.codes_per_token},
            {"audio_samples_per_token", w.audio_samples_per_token},
            {"source_us_per_token", w.source_us_per_token},
            {"middle_us_per_token", w.middle_us_per_token},
            {"sink_us_per_token", w.sink_us_per_token},
            {"first_chunk_tokens", w.first_chunk_tokens},
            {"chunk_tokens", w.chunk_tokens}}}};
}

RunOptions options_from_json(const nlohmann::json& j) {
  RunOptions o;
  o.requests = j.value("requests", o.requests);
  o.concurrency = j.value("concurrency", o.concurrency);
  o.stream = j.value("stream", o.stream);
  o.abort_every = j.value("abort_every", o.abort_every);
  o.abort_after_chunks = j.value("abort_after_chunks", o.abort_after_chunks);
  o.op_timeout_ms = j.value("op_timeout_ms", o.op_timeout_ms);
  o.heartbeat_timeout_ms = j.value("heartbeat_timeout_ms", o.heartbeat_timeout_ms);
  const nlohmann::json w = j.value("workload", nlohmann::json::object());
  o.workload.tokens = w.value("tokens", o.workload.tokens);
  o.workload.hidden_size = w.value("hidden_size", o.workload.hidden_size);
  o.workload.codes_per_token = w.value("codes_per_token", o.workload.codes_per_token);
  o.workload.audio_samples_per_token =
      w.value("audio_samples_per_token", o.workload.audio_samples_per_token);
  for (auto [key, field] : {std::pair{"source_us_per_token", &o.workload.source_us_per_token},
                            std::pair{"middle_us_per_token", &o.workload.middle_us_per_token},
                            std::pair{"sink_us_per_token", &o.workload.sink_us_per_token}}) {
    *field = w.value(key, *field);
  }
  o.workload.first_chunk_tokens = w.value("first_chunk_tokens", o.workload.first_chunk_tokens);
  o.workload.chunk_tokens = w.value("chunk_tokens", o.workload.chunk_tokens);
  return o;
}

volatile std::sig_atomic_t g_run_signal = 0;

SignalScope::SignalScope() {
  g_run_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = [](int sig) { g_run_signal = sig; };
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int_);
  ::sigaction(SIGTERM, &sa, &old_term_);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old_pipe_);
}

SignalScope::~SignalScope() {
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
  ::sigaction(SIGPIPE, &old_pipe_, nullptr);
}

}  // namespace omniconn::runtime

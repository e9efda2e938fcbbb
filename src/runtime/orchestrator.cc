// The orchestrator: starts one process per stage, hands out request ids to the source stages,
// collects completions and statistics, and ends the run cleanly when a stage fails or on a
// signal. It never carries payload data.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "runtime/runtime_internal.h"

namespace omniconn {

namespace {

using nlohmann::json;
using runtime::LineReader;
using runtime::StagePlan;

volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int sig) {
  g_interrupted = sig;
}
void on_stage_term(int) {
  runtime::g_stage_stop = 1;
}

struct Proc {
  const StageConfig* stage = nullptr;
  std::string label;  // "stage 1 (talker)"
  pid_t pid = -1;
  int ctl_w = -1;
  std::unique_ptr<LineReader> evt;
  bool source = false, sink = false;
  bool exited = false, stats_seen = false;
  int status = 0;
  std::string error;
  json stats;
};

std::string stage_label(const StageConfig& s) {
  std::string label = "stage " + s.id;
  const Value* ea = s.raw.find("engine_args");
  const Value* ms = ea != nullptr ? ea->find("model_stage") : nullptr;
  if (ms != nullptr && ms->as_string() != nullptr) label += " (" + *ms->as_string() + ")";
  return label;
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

Status check_options(const RunOptions& o) {
  const Workload& w = o.workload;
  if (o.requests < 1 || o.concurrency < 1) {
    return Status::InvalidArgument("--requests and --concurrency must be at least 1");
  }
  for (int64_t v : {w.tokens, w.hidden_size, w.codes_per_token, w.audio_samples_per_token}) {
    if (v < 1 || v > (int64_t{1} << 24)) {
      return Status::InvalidArgument("workload sizes must be in [1, 16777216]");
    }
  }
  if (w.tokens * w.hidden_size * 4 > (int64_t{1} << 30)) {
    return Status::InvalidArgument("hidden states of tokens x hidden_size x 4 bytes exceed 1 GiB");
  }
  return Status::Ok();
}

class Orchestrator {
 public:
  Orchestrator(const PipelineConfig& c, const RunOptions& o) : config_(c), opts_(o) {}
  ~Orchestrator() { terminate_all(); }
  Result<RunReport> run();

 private:
  Status start();
  [[noreturn]] void become_stage(size_t index, int ctl_r, int evt_w);
  void issue();
  Status pump();
  Status reap();
  Status root_cause(Status first);
  void terminate_all();
  void progress(bool final);
  RunReport report() const;

  const PipelineConfig& config_;
  const RunOptions& opts_;
  std::string ns_;
  std::vector<Proc> procs_;
  std::vector<StagePlan> plans_;
  int64_t issued_ = 0, completed_ = 0;
  std::map<int64_t, size_t> done_counts_;
  size_t sinks_ = 0;
  Clock::time_point start_, last_draw_;
  double wall_s_ = 0;
};

Status Orchestrator::start() {
  ns_ = "run-" + std::to_string(::getpid()) + "-" +
        std::to_string(Clock::now().time_since_epoch().count() % 1000000007);
  procs_.resize(config_.stages.size());
  plans_.resize(config_.stages.size());
  for (size_t i = 0; i < config_.stages.size(); ++i) {
    const StageConfig& s = config_.stages[i];
    StagePlan& p = plans_[i];
    p.stage = &s;
    p.name_space = ns_;
    p.options = &opts_;
    for (const EdgeConfig& e : config_.edges) {
      if (e.to == s.id) p.inputs.push_back(&e);
      if (e.from == s.id) p.outputs.push_back(&e);
    }
    Proc& pr = procs_[i];
    pr.stage = &s;
    pr.label = stage_label(s);
    pr.source = p.inputs.empty();
    pr.sink = p.outputs.empty();
    sinks_ += pr.sink ? 1 : 0;
  }
  std::fflush(nullptr);
  for (size_t i = 0; i < procs_.size(); ++i) {
    int ctl[2], evt[2];
    if (::pipe2(ctl, O_CLOEXEC) != 0 || ::pipe2(evt, O_CLOEXEC) != 0) {
      return Status::ResourceExhausted("pipe: " + std::string(std::strerror(errno)));
    }
    pid_t pid = ::fork();
    if (pid < 0) return Status::ResourceExhausted("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {
      ::close(ctl[1]);
      ::close(evt[0]);
      become_stage(i, ctl[0], evt[1]);
    }
    ::close(ctl[0]);
    ::close(evt[1]);
    procs_[i].pid = pid;
    procs_[i].ctl_w = ctl[1];
    procs_[i].evt = std::make_unique<LineReader>(evt[0]);
  }
  return Status::Ok();
}

void Orchestrator::become_stage(size_t index, int ctl_r, int evt_w) {
  ::signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole group: the orchestrator decides
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGTERM, on_stage_term);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (const Proc& p : procs_) {  // earlier siblings' pipe ends
    if (p.ctl_w >= 0) ::close(p.ctl_w);
    if (p.evt) ::close(p.evt->fd());
  }
  plans_[index].ctl_fd = ctl_r;
  plans_[index].evt_fd = evt_w;
  std::_Exit(runtime::run_stage(plans_[index]));
}

void Orchestrator::issue() {
  while (issued_ < opts_.requests && issued_ - completed_ < opts_.concurrency) {
    for (Proc& p : procs_) {
      if (p.source) runtime::write_line(p.ctl_w, "req " + std::to_string(issued_));
    }
    ++issued_;
  }
}

Status Orchestrator::pump() {
  for (Proc& p : procs_) {
    std::string line;
    while (!p.stats_seen && p.evt->next(&line, 0) == 1) {
      if (line.rfind("done ", 0) == 0) {
        int64_t id = std::stoll(line.substr(5));
        if (++done_counts_[id] == sinks_) {
          done_counts_.erase(id);
          ++completed_;
        }
      } else if (line.rfind("stats ", 0) == 0) {
        p.stats = json::parse(line.substr(6), nullptr, false);
        p.stats_seen = true;
      } else if (line.rfind("error ", 0) == 0) {
        p.error = line.substr(6);
        return Status::Unavailable(p.label + " failed: " + p.error);
      }
    }
  }
  return Status::Ok();
}

Status Orchestrator::reap() {
  for (Proc& p : procs_) {
    if (p.exited) continue;
    int status = 0;
    if (::waitpid(p.pid, &status, WNOHANG) != p.pid) continue;
    p.exited = true;
    p.status = status;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    std::string line;
    while (p.error.empty() && p.evt->next(&line, 0) == 1) {
      if (line.rfind("error ", 0) == 0) p.error = line.substr(6);
    }
    return Status::Unavailable(p.label + " (pid " + std::to_string(p.pid) + ") " +
                               describe_exit(status) + (p.error.empty() ? "" : ": " + p.error));
  }
  return Status::Ok();
}

// A stage that died takes its neighbours down with it ("the writer of edge 1->2 has exited"):
// give the death a moment to show, and report the stage that died rather than a neighbour.
Status Orchestrator::root_cause(Status first) {
  auto until = Clock::now() + std::chrono::milliseconds(300);
  while (Clock::now() < until) {
    for (Proc& p : procs_) {
      int status = 0;
      if (p.exited || ::waitpid(p.pid, &status, WNOHANG) != p.pid) continue;
      p.exited = true;
      p.status = status;
      if (WIFSIGNALED(status)) {
        return Status::Unavailable(p.label + " (pid " + std::to_string(p.pid) + ") " +
                                   describe_exit(status) + "; then " + first.message());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return first;
}

void Orchestrator::terminate_all() {
  for (Proc& p : procs_) {
    if (!p.exited && p.pid > 0) ::kill(p.pid, SIGTERM);
  }
  auto give_up = Clock::now() + std::chrono::seconds(3);
  for (Proc& p : procs_) {
    while (!p.exited && p.pid > 0) {
      if (::waitpid(p.pid, &p.status, WNOHANG) == p.pid) {
        p.exited = true;
      } else if (Clock::now() > give_up) {
        ::kill(p.pid, SIGKILL);
        ::waitpid(p.pid, &p.status, 0);
        p.exited = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    if (p.ctl_w >= 0) ::close(p.ctl_w);
    if (p.evt) ::close(p.evt->fd());
    p.ctl_w = -1;
    p.evt.reset();
  }
}

void Orchestrator::progress(bool final) {
  if (!opts_.progress) return;
  auto now = Clock::now();
  if (!final && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  constexpr int kWidth = 30;
  int filled = static_cast<int>(kWidth * completed_ / opts_.requests);
  double secs = std::chrono::duration<double>(now - start_).count();
  std::fprintf(stderr, "\r[%s%s] %lld/%lld requests  %.1f s%s",
               std::string(static_cast<size_t>(filled), '#').c_str(),
               std::string(static_cast<size_t>(kWidth - filled), ' ').c_str(),
               static_cast<long long>(completed_), static_cast<long long>(opts_.requests), secs,
               final ? "\n" : "");
}

Result<RunReport> Orchestrator::run() {
  OMNICONN_RETURN_IF_ERROR(check_options(opts_));
  if (config_.stages.empty()) return Status::InvalidArgument("the pipeline has no stages");
  start_ = last_draw_ = Clock::now();
  OMNICONN_RETURN_IF_ERROR(start());
  if (opts_.on_started) {
    std::vector<int> pids;
    for (const Proc& p : procs_) pids.push_back(p.pid);
    opts_.on_started(pids);
  }
  for (;;) {
    if (g_interrupted) {
      progress(true);
      return Status::Cancelled(std::string("interrupted by ") + strsignal(g_interrupted));
    }
    issue();
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    Status st = reap();
    if (st.ok()) st = pump();
    if (!st.ok()) {
      progress(true);
      return root_cause(st);
    }
    progress(false);
    bool all_done = std::all_of(procs_.begin(), procs_.end(),
                                [](const Proc& p) { return p.exited && p.stats_seen; });
    if (all_done) break;
  }
  wall_s_ = std::chrono::duration<double>(Clock::now() - start_).count();
  progress(true);
  return report();
}

double percentile(std::vector<int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return static_cast<double>(v[std::min(i, v.size() - 1)]) / 1e6;
}

RunReport Orchestrator::report() const {
  RunReport r;
  r.wall_s = wall_s_;
  r.requests_done = completed_;
  for (const EdgeConfig& e : config_.edges) {
    EdgeReport er{e.from, e.to,
                  e.spec.type + (e.automatic ? " (auto)" : " (" + e.connector_name + ")")};
    for (const Proc& p : procs_) {
      for (const json& s : p.stats.value("edges", json::array())) {
        if (s.value("from", "") != e.from || s.value("to", "") != e.to) continue;
        er.requests += s.value("count", int64_t{0});
        er.bytes += s.value("bytes", int64_t{0});
        er.errors += s.value("errors", int64_t{0});
        auto lat = s.value("lat_ns", std::vector<int64_t>{});
        er.p50_ms = percentile(lat, 0.50);
        er.p99_ms = percentile(lat, 0.99);
        er.max_ms = percentile(lat, 1.0);
      }
      for (const json& s : p.stats.value("sent", json::array())) {
        if (s.value("from", "") != e.from || s.value("to", "") != e.to) continue;
        er.inline_payloads += s.value("inline", int64_t{0});
      }
    }
    er.mb_per_s = wall_s_ > 0 ? static_cast<double>(er.bytes) / 1e6 / wall_s_ : 0;
    r.edges.push_back(er);
  }
  for (const Proc& p : procs_) {
    const Value* ea = p.stage->raw.find("engine_args");
    const Value* ms = ea != nullptr ? ea->find("model_stage") : nullptr;
    r.stages.push_back(
        StageReport{p.stage->id, ms != nullptr && ms->as_string() ? *ms->as_string() : "", p.pid,
                    p.stats.value("rss_kb", int64_t{0}), p.stats.value("requests", int64_t{0}),
                    p.stats.value("output_bytes", int64_t{0})});
  }
  return r;
}

// Installs the orchestrator's SIGINT/SIGTERM handlers for the duration of a run.
class SignalScope {
 public:
  SignalScope() {
    g_interrupted = 0;
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
    // A stage that died leaves a broken control pipe: writing to it must fail, not kill us.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe_);
  }
  ~SignalScope() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGPIPE, &old_pipe_, nullptr);
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  struct sigaction old_pipe_ {};
};

}  // namespace

Result<RunReport> run_pipeline(const PipelineConfig& config, const RunOptions& options) {
  SignalScope signals;
  Orchestrator orchestrator(config, options);
  return orchestrator.run();
}

}  // namespace omniconn

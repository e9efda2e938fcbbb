// The orchestrator: starts one process per stage of this host, admits the stage workers of
// other hosts (multi-host runs), hands out request ids to the source stages, collects
// completions and statistics, and ends the run on every host when a stage fails, a host goes
// silent, or on a signal. It never carries payload data.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "omniconn/registry.h"
#include "runtime/control.h"
#include "runtime/run_metrics.h"
#include "runtime/runtime_internal.h"

namespace omniconn {

namespace {

using nlohmann::json;
using runtime::ControlMessage;
using runtime::LineReader;
using runtime::StagePlan;
using std::chrono::milliseconds;

struct Proc {
  const StageConfig* stage = nullptr;
  std::string label;  // "stage 1 (talker)", "stage 1 (talker) on b" in a multi-host run
  std::string host, identity;
  int worker = -1;  // index in workers_; -1: a process of this host
  pid_t pid = -1;   // 0: a remote stage not started yet
  int ctl_w = -1;
  std::unique_ptr<LineReader> evt;
  std::deque<std::string> inbox;  // remote: the event lines its worker relayed
  bool source = false, sink = false;
  bool exited = false, reaped = false, stats_seen = false;
  int status = 0;
  std::string error;
  json stats;
};

// A stage worker of another host (multi-host runs).
struct Worker {
  std::string peer, host, identity, address;
  std::vector<size_t> procs;
  Clock::time_point last_seen;
  bool dropped = false;  // went silent before the run started: its stages are free again
  bool done = false;     // said bye
};

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
  for (double us : {w.source_us_per_token, w.middle_us_per_token, w.sink_us_per_token}) {
    if (!(us >= 0 && us <= 1e6)) {
      return Status::InvalidArgument("stage work per token must be in [0, 1000000] us");
    }
  }
  if (w.first_chunk_tokens < 1 || w.chunk_tokens < 1) {
    return Status::InvalidArgument("--first-chunk-tokens and --chunk-tokens must be at least 1");
  }
  if (o.abort_every < 0 || o.abort_after_chunks < 1) {
    return Status::InvalidArgument(
        "--abort-every must be at least 0 and --abort-after-chunks at least 1");
  }
  if (o.abort_every > 0 && !o.stream) {
    return Status::InvalidArgument("--abort-every cancels requests mid-stream: it needs --stream");
  }
  if (w.tokens * w.hidden_size * 4 > (int64_t{1} << 30)) {
    return Status::InvalidArgument("hidden states of tokens x hidden_size x 4 bytes exceed 1 GiB");
  }
  if (o.heartbeat_timeout_ms < 4 * runtime::kHeartbeatIntervalMs) {
    return Status::InvalidArgument("the heartbeat timeout must be at least " +
                                   std::to_string(4 * runtime::kHeartbeatIntervalMs) + " ms");
  }
  return Status::Ok();
}

std::string seconds(Clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

class Orchestrator {
 public:
  Orchestrator(const PipelineConfig& c, const RunOptions& o) : config_(c), opts_(o) {}
  ~Orchestrator() { terminate_all(); }
  Result<RunReport> run();

 private:
  void prepare();
  Status serve_metrics();
  Status gather();
  void admit(const ControlMessage& m);
  std::string unclaimed() const;
  Status check_hosts() const;
  Status start_local();
  Status poll_control(bool liveness);
  Status on_message(Worker& w, const std::string& text);
  bool next_event(Proc& p, std::string* line);
  void read_error(Proc& p);
  void send_ctl(Proc& p, const std::string& line);
  void broadcast(const std::string& text);
  void issue();
  Status pump();
  Status reap();
  Status root_cause(Status first);
  void terminate_all();
  void progress(bool final);
  RunReport report() const;
  RequestReport request_report() const;

  const PipelineConfig& config_;
  const RunOptions& opts_;
  std::string ns_, digest_, failure_;
  std::vector<Proc> procs_;
  std::vector<StagePlan> plans_;
  std::unique_ptr<runtime::ControlServer> server_;
  std::vector<Worker> workers_;
  std::map<size_t, size_t> claims_;  // remote stage index -> worker index
  Clock::time_point last_beat_;
  bool started_ = false;  // the workers were welcomed
  int64_t issued_ = 0, completed_ = 0;
  std::map<int64_t, size_t> done_counts_;
  std::set<int64_t> aborted_ids_;
  size_t sinks_ = 0;
  Clock::time_point start_, last_draw_;
  double wall_s_ = 0;
  std::unique_ptr<runtime::RunMetrics> metrics_;  // --metrics
};

void Orchestrator::prepare() {
  ns_ = "run-" + std::to_string(::getpid()) + "-" +
        std::to_string(Clock::now().time_since_epoch().count() % 1000000007);
  procs_.resize(config_.stages.size());
  for (size_t i = 0; i < config_.stages.size(); ++i) {
    plans_.push_back(runtime::plan_for(config_, i, ns_, &opts_));
    Proc& pr = procs_[i];
    pr.stage = &config_.stages[i];
    pr.label = runtime::stage_label(*pr.stage);
    pr.host = runtime::host_display_name(opts_.host_name);
    pr.identity = runtime::host_identity();
    pr.source = plans_[i].inputs.empty();
    pr.sink = plans_[i].outputs.empty();
    sinks_ += pr.sink ? 1 : 0;
  }
}

Status Orchestrator::serve_metrics() {
  if (opts_.metrics_listen.empty()) return Status::Ok();
  metrics_ = std::make_unique<runtime::RunMetrics>(config_);
  metrics_->progress(0, 0, opts_.requests);
  auto bound = metrics_->serve(opts_.metrics_listen);
  if (!bound.ok()) return bound.status().WithContext("--metrics");
  if (opts_.on_metrics_listening) opts_.on_metrics_listening(*bound);
  return Status::Ok();
}

// Which stages still wait for a worker: "1, 2".
std::string Orchestrator::unclaimed() const {
  std::string out;
  for (size_t i = 0; i < procs_.size(); ++i) {
    bool local = std::find(opts_.local_stages.begin(), opts_.local_stages.end(),
                           procs_[i].stage->id) != opts_.local_stages.end();
    if (!local && !claims_.contains(i)) out += (out.empty() ? "" : ", ") + procs_[i].stage->id;
  }
  return out;
}

void Orchestrator::admit(const ControlMessage& m) {
  auto refuse = [&](const std::string& why) { server_->send(m.peer, "refuse " + why); };
  if (m.text.rfind("hello ", 0) != 0) return;  // a worker this run does not know
  json hello = json::parse(m.text.substr(6), nullptr, false);
  if (!hello.is_object()) return refuse("malformed hello");
  std::string host = hello.value("host", "?");
  if (hello.value("digest", "") != digest_) {
    return refuse("config mismatch: the worker on " + host + " loaded " +
                  hello.value("config", "?") + " (digest " + hello.value("digest", "?") +
                  "), the orchestrator " + config_.file + " (digest " + digest_ +
                  "); both must load the same stages, edges and connectors (file, "
                  "--platform, --edges)");
  }
  Worker w{m.peer, host, hello.value("identity", ""), m.peer_address, {}, Clock::now()};
  for (const std::string& id : hello.value("stages", std::vector<std::string>{})) {
    const StageConfig* s = config_.stage(id);
    size_t i = s != nullptr ? static_cast<size_t>(s - config_.stages.data()) : procs_.size();
    bool local = std::find(opts_.local_stages.begin(), opts_.local_stages.end(), id) !=
                 opts_.local_stages.end();
    if (i == procs_.size()) return refuse("stage " + id + " is not in " + config_.file);
    if (local) return refuse("stage " + id + " runs on the orchestrator's host");
    if (claims_.contains(i)) {
      return refuse("stage " + id + " is already claimed by the worker on " +
                    workers_[claims_[i]].host);
    }
    w.procs.push_back(i);
  }
  if (w.procs.empty()) return refuse("the worker names no stage");
  for (size_t i : w.procs) claims_[i] = workers_.size();
  workers_.push_back(std::move(w));
  server_->send(m.peer, "hb");
}

Status Orchestrator::gather() {
  if (opts_.listen.empty()) return Status::Ok();
  for (const std::string& id : opts_.local_stages) {
    if (config_.stage(id) == nullptr) {
      return Status::InvalidArgument("--local: stage " + id + " is not in " + config_.file);
    }
  }
  digest_ = runtime::config_digest(config_);
  server_ = std::make_unique<runtime::ControlServer>();
  OMNICONN_RETURN_IF_ERROR(server_->bind(opts_.listen));
  if (opts_.on_listening) opts_.on_listening(server_->bound());
  const auto give_up = Clock::now() + milliseconds(opts_.join_timeout_ms);
  while (!unclaimed().empty()) {
    if (runtime::g_run_signal)
      return Status::Cancelled("interrupted while waiting for stage workers");
    if (Clock::now() > give_up) {
      return Status::Timeout(
          "stage" + std::string(unclaimed().find(',') != std::string::npos ? "s " : " ") +
          unclaimed() + " did not join within " + seconds(milliseconds(opts_.join_timeout_ms)) +
          ": start `omniconn " + "stage " + config_.file + " --stage ID --orchestrator " +
          server_->bound() + "` on their host");
    }
    OMNICONN_RETURN_IF_ERROR(poll_control(true));
  }
  for (auto [i, w] : claims_) {
    procs_[i].worker = static_cast<int>(w);
    procs_[i].pid = 0;
    procs_[i].host = workers_[w].host;
    procs_[i].identity = workers_[w].identity;
  }
  for (Proc& p : procs_) p.label += " on " + p.host;
  OMNICONN_RETURN_IF_ERROR(check_hosts());
  json welcome = runtime::options_json(opts_);
  welcome["namespace"] = ns_;
  broadcast("welcome " + welcome.dump());
  started_ = true;
  return Status::Ok();
}

// Before anything starts: an edge between two hosts needs a type that reaches other hosts.
Status Orchestrator::check_hosts() const {
  for (const EdgeConfig& e : config_.edges) {
    const Proc& a = procs_[static_cast<size_t>(config_.stage(e.from) - config_.stages.data())];
    const Proc& b = procs_[static_cast<size_t>(config_.stage(e.to) - config_.stages.data())];
    const ConnectorType* t = ConnectorRegistry::instance().find(e.spec.type);
    if (a.identity == b.identity || (t != nullptr && t->capabilities.reaches_other_hosts)) {
      continue;
    }
    return Status::InvalidArgument(
        "edge " + e.from + "->" + e.to + " uses " + e.spec.type +
        (e.automatic ? " (automatic: the edge names no connector)" : "") +
        ", which cannot cross hosts, but stage " + e.from + " runs on " + a.host + " and stage " +
        e.to + " on " + b.host +
        "; give the edge a connector that reaches other hosts (MooncakeConnector) or run both "
        "stages on one host");
  }
  return Status::Ok();
}

Status Orchestrator::start_local() {
  for (size_t i = 0; i < procs_.size(); ++i) {
    Proc& p = procs_[i];
    if (p.worker >= 0) continue;
    int evt_r = -1;
    auto pid = runtime::spawn_stage(plans_[i], &p.ctl_w, &evt_r);
    if (!pid.ok()) return pid.status();
    p.pid = *pid;
    p.evt = std::make_unique<LineReader>(evt_r);
  }
  return Status::Ok();
}

void Orchestrator::broadcast(const std::string& text) {
  for (Worker& w : workers_) {
    if (!w.dropped && !w.done) server_->send(w.peer, text);
  }
}

// What the workers said; heartbeats both ways. `liveness`: a silent worker is an error (before
// the run starts, its claims are dropped instead).
Status Orchestrator::poll_control(bool liveness) {
  if (server_ == nullptr) return Status::Ok();
  ControlMessage m;
  for (int k = 0; k < 1000; ++k) {
    auto got = server_->recv(&m, 0);
    if (!got.ok()) return got.status();
    if (*got == 0) break;
    auto it = std::find_if(workers_.begin(), workers_.end(),
                           [&](const Worker& w) { return w.peer == m.peer && !w.dropped; });
    if (it == workers_.end()) {
      if (started_) {
        server_->send(m.peer, "refuse the run has already started");
      } else {
        admit(m);
      }
      continue;
    }
    it->last_seen = Clock::now();
    OMNICONN_RETURN_IF_ERROR(on_message(*it, m.text));
  }
  auto now = Clock::now();
  if (now - last_beat_ >= milliseconds(runtime::kHeartbeatIntervalMs)) {
    last_beat_ = now;
    broadcast("hb");
  }
  for (size_t wi = 0; wi < workers_.size(); ++wi) {
    Worker& w = workers_[wi];
    if (w.dropped || w.done || now - w.last_seen < milliseconds(opts_.heartbeat_timeout_ms)) {
      continue;
    }
    if (!started_) {  // the run has not started: its stages are free again
      w.dropped = true;
      for (size_t i : w.procs) claims_.erase(i);
      continue;
    }
    if (!liveness) continue;
    std::string stages;
    for (size_t i : w.procs) stages += (stages.empty() ? "" : ", ") + procs_[i].label;
    w.done = true;  // nothing more will come from it
    return Status::Unavailable("lost the control connection to the worker on " + w.host +
                               (w.address.empty() ? "" : " (" + w.address + ")") + " running " +
                               stages + ": nothing heard for " + seconds(now - w.last_seen));
  }
  return Status::Ok();
}

// A message this orchestrator cannot place (another omniconn version, or a bug) ends the run:
// ignored, it would hang the run or lose a completion.
Status Orchestrator::on_message(Worker& w, const std::string& text) {
  auto space = text.find(' ');
  std::string verb = text.substr(0, space);
  if (verb == "bye") {
    w.done = true;
    return Status::Ok();
  }
  if (verb == "hb") return Status::Ok();
  std::string rest = space == std::string::npos ? "" : text.substr(space + 1);
  auto sp = rest.find(' ');
  char* end = nullptr;
  size_t i = static_cast<size_t>(std::strtoull(rest.c_str(), &end, 10));
  std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
  bool known = verb == "evt" || verb == "exit" || verb == "started";
  if (!known || end == rest.c_str() || i >= procs_.size() || procs_[i].worker < 0 ||
      &workers_[procs_[i].worker] != &w) {
    return Status::Internal("malformed control message from the worker on " + w.host + ": '" +
                            text.substr(0, 120) + "' (do both hosts run the same omniconn?)");
  }
  Proc& p = procs_[i];
  if (verb == "evt") {
    p.inbox.push_back(arg);
  } else if (verb == "started") {
    p.pid = std::atoi(arg.c_str());
  } else {
    p.exited = true;
    p.status = std::atoi(arg.c_str());
  }
  return Status::Ok();
}

// Reads the stage's events up to its first "error ..." line, into p.error (once).
void Orchestrator::read_error(Proc& p) {
  std::string line;
  while (p.error.empty() && next_event(p, &line)) {
    if (line.rfind("error ", 0) == 0) p.error = line.substr(6);
  }
}

bool Orchestrator::next_event(Proc& p, std::string* line) {
  if (p.worker < 0) return p.evt->next(line, 0) == 1;
  if (p.inbox.empty()) return false;
  *line = std::move(p.inbox.front());
  p.inbox.pop_front();
  return true;
}

void Orchestrator::send_ctl(Proc& p, const std::string& line) {
  if (p.worker < 0) {
    runtime::write_line(p.ctl_w, line);
  } else {
    server_->send(workers_[p.worker].peer,
                  "ctl " + std::to_string(&p - procs_.data()) + " " + line);
  }
}

void Orchestrator::issue() {
  while (issued_ < opts_.requests && issued_ - completed_ < opts_.concurrency) {
    const bool abort =
        opts_.abort_every > 0 && issued_ % opts_.abort_every == opts_.abort_every - 1;
    for (Proc& p : procs_) {
      if (p.source) send_ctl(p, "req " + std::to_string(issued_));
      if (p.source && abort) send_ctl(p, "abort " + std::to_string(issued_));
    }
    ++issued_;
  }
}

Status Orchestrator::pump() {
  for (Proc& p : procs_) {
    std::string line;
    while (!p.stats_seen && next_event(p, &line)) {
      if (line.rfind("done ", 0) == 0) {
        char* end = nullptr;
        int64_t id = std::strtoll(line.c_str() + 5, &end, 10);
        if (std::strcmp(end, " aborted") == 0) aborted_ids_.insert(id);
        if (++done_counts_[id] == sinks_) {
          done_counts_.erase(id);
          ++completed_;
        }
      } else if (line.rfind("metrics ", 0) == 0) {
        if (metrics_)
          metrics_->stage_line(static_cast<size_t>(&p - procs_.data()), p.host, line.substr(8));
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

// True once for each stage that has exited: this host's by waitpid, a remote one's from the
// exit its worker reported.
bool take_exit(Proc& p) {
  if (p.reaped) return false;
  if (p.worker < 0) {
    int status = 0;
    if (::waitpid(p.pid, &status, WNOHANG) != p.pid) return false;
    p.exited = true;
    p.status = status;
  }
  if (!p.exited) return false;
  p.reaped = true;
  return true;
}

Status Orchestrator::reap() {
  for (Proc& p : procs_) {
    if (!take_exit(p)) continue;
    if (WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0) continue;
    read_error(p);
    return Status::Unavailable(p.label + " (pid " + std::to_string(p.pid) + ") " +
                               runtime::describe_exit(p.status) +
                               (p.error.empty() ? "" : ": " + p.error));
  }
  return Status::Ok();
}

// A stage that gave up waiting for its input ("edge 1->2: nothing for 3000 ms") is seldom the
// cause: upstream failed, or hangs in its connector (a dead master, a full store), and says so
// a little later.
bool starved(const std::string& message) {
  return message.find(runtime::kStarvedMarker) != std::string::npos;
}

// A stage that died takes its neighbours down with it ("the writer of edge 1->2 has exited"):
// give the death a moment to show, and report the stage that died rather than a neighbour.
// After a starved stage, wait longer (2 x op_timeout_ms, 2 to 10 s) for a stage that failed
// otherwise, the most upstream first.
Status Orchestrator::root_cause(Status first) {
  const bool waiting_for_cause = starved(first.message());
  milliseconds window(server_ ? 1000 : 300);
  if (waiting_for_cause) {
    window =
        std::max(window, milliseconds(std::clamp<int64_t>(2 * opts_.op_timeout_ms, 2000, 10000)));
  }
  auto until = Clock::now() + window;
  while (Clock::now() < until && !runtime::g_run_signal) {
    (void)poll_control(false);
    for (Proc& p : procs_) {
      read_error(p);
      if (waiting_for_cause && !p.error.empty() && !starved(p.error)) {
        return Status::Unavailable(p.label + " failed: " + p.error + "; then " + first.message());
      }
      if (!take_exit(p)) continue;
      if (WIFSIGNALED(p.status) && WTERMSIG(p.status) != SIGTERM) {
        return Status::Unavailable(p.label + " (pid " + std::to_string(p.pid) + ") " +
                                   runtime::describe_exit(p.status) + "; then " + first.message());
      }
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  return first;
}

// Every stage of every host ends: this host's by SIGTERM (SIGKILL after 3 s), the others by
// a stop to their workers, who answer with the exits and a bye.
void Orchestrator::terminate_all() {
  bool unfinished = std::any_of(procs_.begin(), procs_.end(),
                                [](const Proc& p) { return p.worker >= 0 && !p.exited; });
  if (server_ != nullptr && (unfinished || !failure_.empty())) {
    broadcast("stop " + (failure_.empty() ? std::string("the run ended") : failure_));
  }
  for (Proc& p : procs_) {
    if (p.worker < 0 && !p.exited && p.pid > 0) ::kill(p.pid, SIGTERM);
  }
  auto give_up = Clock::now() + std::chrono::seconds(3);
  for (Proc& p : procs_) {
    while (p.worker < 0 && !p.exited && p.pid > 0) {
      if (::waitpid(p.pid, &p.status, WNOHANG) == p.pid) {
        p.exited = true;
      } else if (Clock::now() > give_up) {
        ::kill(p.pid, SIGKILL);
        ::waitpid(p.pid, &p.status, 0);
        p.exited = true;
      } else {
        std::this_thread::sleep_for(milliseconds(2));
      }
    }
    if (p.ctl_w >= 0) ::close(p.ctl_w);
    if (p.evt) ::close(p.evt->fd());
    p.ctl_w = -1;
    p.evt.reset();
  }
  auto answered = [this] {
    return std::all_of(workers_.begin(), workers_.end(),
                       [](const Worker& w) { return w.dropped || w.done; });
  };
  give_up = Clock::now() + std::chrono::seconds(5);
  while (server_ != nullptr && unfinished && !answered() && Clock::now() < give_up) {
    if (!poll_control(true).ok()) continue;  // that worker is marked done: wait for the rest
    std::this_thread::sleep_for(milliseconds(2));
  }
  server_.reset();
}

void Orchestrator::progress(bool final) {
  if (!opts_.progress) return;
  auto now = Clock::now();
  if (!final && now - last_draw_ < milliseconds(100)) return;
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
  prepare();
  Status st = gather();
  if (st.ok()) st = start_local();
  // Only after the stages are forked: a fork while a server thread holds a lock (an
  // allocator's, under a sanitizer) would leave it held forever in the child.
  if (st.ok()) st = serve_metrics();
  if (!st.ok()) {
    failure_ = st.message();
    broadcast("refuse " + failure_);
    return st;
  }
  start_ = last_draw_ = Clock::now();
  if (opts_.on_started) {
    std::vector<int> pids;
    for (const Proc& p : procs_) pids.push_back(p.worker < 0 ? p.pid : 0);
    opts_.on_started(pids);
  }
  for (;;) {
    if (runtime::g_run_signal) {
      progress(true);
      failure_ =
          std::string("the orchestrator was interrupted by ") + strsignal(runtime::g_run_signal);
      return Status::Cancelled(std::string("interrupted by ") + strsignal(runtime::g_run_signal));
    }
    issue();
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    st = poll_control(true);
    bool died = false;  // a stage's own exit: already the root cause
    if (st.ok()) died = !(st = reap()).ok();
    if (st.ok()) st = pump();
    if (!st.ok()) {
      progress(true);
      if (!died || starved(st.message())) st = root_cause(st);
      failure_ = st.message();
      return st;
    }
    progress(false);
    if (metrics_) metrics_->progress(issued_, completed_, opts_.requests);
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

// Per request: the sinks' times (the slowest sink's), every stage's connector time summed.
RequestReport Orchestrator::request_report() const {
  RequestReport q;
  q.stream = opts_.stream;
  q.aborted = static_cast<int64_t>(aborted_ids_.size());
  std::vector<int64_t> first, last, done;
  std::vector<double> share;
  for (const Proc& p : procs_) {
    q.chunks_sent += p.stats.value("chunks_sent", int64_t{0});
    for (const json& s : p.stats.value("edges", json::array())) {
      q.chunks_received += s.value("count", int64_t{0});
    }
  }
  auto at = [](const json& stats, const char* key, size_t i) {
    const json& v = stats.contains(key) ? stats[key] : json();
    return v.is_array() && i < v.size() && v[i].is_number_integer() ? v[i].get<int64_t>()
                                                                    : int64_t{-1};
  };
  for (size_t i = 0; i < static_cast<size_t>(opts_.requests); ++i) {
    int64_t f = -1, l = -1, d = -1, conn = 0;
    bool measured = true;
    for (const Proc& p : procs_) {
      conn += std::max<int64_t>(0, at(p.stats, "conn_ns", i));
      if (!p.sink) continue;
      int64_t pd = at(p.stats, "done_ns", i);
      measured = measured && pd >= 0;
      f = std::max(f, at(p.stats, "first_ns", i));
      l = std::max(l, at(p.stats, "last_ns", i));
      d = std::max(d, pd);
    }
    if (!measured || d <= 0) continue;
    first.push_back(f);
    last.push_back(l);
    done.push_back(d);
    share.push_back(static_cast<double>(conn) / static_cast<double>(d));
  }
  q.measured = static_cast<int64_t>(done.size());
  for (int64_t f : first) q.first_chunk_ms.push_back(static_cast<double>(f) / 1e6);
  q.first_chunk_p50_ms = percentile(first, 0.5);
  q.first_chunk_p99_ms = percentile(first, 0.99);
  q.last_chunk_p50_ms = percentile(last, 0.5);
  q.last_chunk_p99_ms = percentile(last, 0.99);
  q.request_p50_ms = percentile(done, 0.5);
  q.request_p99_ms = percentile(done, 0.99);
  std::sort(share.begin(), share.end());
  auto rank = [&share](double x) {
    if (share.empty()) return 0.0;
    size_t k = static_cast<size_t>(std::ceil(x * static_cast<double>(share.size()))) - 1;
    return share[std::min(k, share.size() - 1)];
  };
  q.connector_share_p50 = rank(0.5);
  q.connector_share_p99 = rank(0.99);
  return q;
}

RunReport Orchestrator::report() const {
  RunReport r;
  r.multi_host = server_ != nullptr;
  r.wall_s = wall_s_;
  r.requests_done = completed_;
  r.requests = request_report();
  auto host_of = [this](const std::string& id) {
    return procs_[static_cast<size_t>(config_.stage(id) - config_.stages.data())].host;
  };
  for (const EdgeConfig& e : config_.edges) {
    EdgeReport er{e.from, e.to,
                  e.spec.type + (e.automatic ? " (auto)" : " (" + e.connector_name + ")"),
                  host_of(e.from), host_of(e.to)};
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
        auto at = s.value("at_ns", std::vector<int64_t>{});
        for (size_t k = 0; k < lat.size() && k < at.size(); ++k) {
          er.arrival_s.push_back(static_cast<double>(at[k]) / 1e9);
          er.latency_ms.push_back(static_cast<double>(lat[k]) / 1e6);
        }
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
    r.stages.push_back(StageReport{
        p.stage->id, p.host, ms != nullptr && ms->as_string() ? *ms->as_string() : "", p.pid,
        p.stats.value("rss_kb", int64_t{0}), p.stats.value("requests", int64_t{0}),
        p.stats.value("output_bytes", int64_t{0})});
    StageReport& sr = r.stages.back();
    sr.in_flight_end = p.stats.value("in_flight_end", int64_t{0});
    sr.in_use_bytes_end = p.stats.value("in_use_bytes_end", int64_t{0});
    sr.abort_freed = p.stats.value("abort_freed", int64_t{0});
    sr.rss_kb_early = p.stats.value("rss_kb_early", int64_t{0});
    sr.rss_kb_end = p.stats.value("rss_kb_end", int64_t{0});
    r.requests.abort_freed += sr.abort_freed;
  }
  return r;
}

}  // namespace

Result<RunReport> run_pipeline(const PipelineConfig& config, const RunOptions& options) {
  runtime::SignalScope signals;
  Orchestrator orchestrator(config, options);
  return orchestrator.run();
}

}  // namespace omniconn

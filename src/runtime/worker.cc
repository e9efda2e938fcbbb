// A stage worker: this host's stages of a multi-host run. It joins the orchestrator (config
// digest, stage ids), starts its stages once welcomed, relays their control lines both ways,
// and ends them when the run ends, when told to stop, or when the orchestrator goes silent.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "runtime/control.h"
#include "runtime/run_metrics.h"
#include "runtime/runtime_internal.h"

namespace omniconn {

namespace {

using nlohmann::json;
using runtime::LineReader;
using std::chrono::milliseconds;

struct Local {
  size_t index = 0;
  std::string label;
  int pid = -1;
  int ctl_w = -1;
  std::unique_ptr<LineReader> evt;
  bool exited = false;
  int status = 0;
  std::string error;
};

class StageWorker {
 public:
  StageWorker(const PipelineConfig& c, const WorkerOptions& o) : config_(c), wopts_(o) {}
  ~StageWorker() { stop_stages(); }
  Status run();

 private:
  Status resolve();
  Status join();
  Status start();
  Status relay();
  void on_message(const std::string& text);
  void forward_events(Local& l);
  void reap(Local& l, bool block);
  void stop_stages();
  Status outcome() const;
  void beat();

  const PipelineConfig& config_;
  const WorkerOptions& wopts_;
  std::string host_;
  runtime::ControlClient client_;
  RunOptions opts_;
  std::string ns_, stop_reason_;
  std::vector<Local> locals_;
  std::unique_ptr<runtime::RunMetrics> metrics_;  // --metrics
  std::vector<runtime::StagePlan> plans_;
  Clock::time_point last_heard_, last_beat_;
  bool heard_ = false, welcomed_ = false;
};

Status StageWorker::resolve() {
  if (wopts_.stages.empty()) return Status::InvalidArgument("no stage given (--stage ID)");
  for (const std::string& id : wopts_.stages) {
    const StageConfig* s = config_.stage(id);
    if (s == nullptr) return Status::InvalidArgument("stage " + id + " is not in " + config_.file);
    Local l;
    l.index = static_cast<size_t>(s - config_.stages.data());
    l.label = runtime::stage_label(*s);
    locals_.push_back(std::move(l));
  }
  return Status::Ok();
}

void StageWorker::beat() {
  auto now = Clock::now();
  if (now - last_beat_ < milliseconds(runtime::kHeartbeatIntervalMs)) return;
  last_beat_ = now;
  client_.send("hb");
}

void StageWorker::on_message(const std::string& text) {
  last_heard_ = Clock::now();
  heard_ = true;
  auto space = text.find(' ');
  std::string verb = text.substr(0, space),
              rest = space == std::string::npos ? "" : text.substr(space + 1);
  if (verb == "stop" || verb == "refuse") {
    stop_reason_ = (verb == "refuse" ? "refused: " : "stopped by the orchestrator: ") + rest;
  } else if (verb == "welcome" && !welcomed_) {
    json j = json::parse(rest, nullptr, false);
    if (!j.is_object()) {
      stop_reason_ = "malformed welcome from the orchestrator";
      return;
    }
    opts_ = runtime::options_from_json(j);
    ns_ = j.value("namespace", "");
    welcomed_ = true;
  } else if (verb == "ctl") {
    auto sp = rest.find(' ');
    size_t i = static_cast<size_t>(std::strtoull(rest.c_str(), nullptr, 10));
    for (Local& l : locals_) {
      if (l.index == i && l.ctl_w >= 0 && sp != std::string::npos) {
        runtime::write_line(l.ctl_w, rest.substr(sp + 1));
      }
    }
  }
}

Status StageWorker::join() {
  char nonce[32];
  std::snprintf(nonce, sizeof nonce, "%lld",
                static_cast<long long>(Clock::now().time_since_epoch().count() % 1000000007));
  OMNICONN_RETURN_IF_ERROR(client_.connect(
      wopts_.orchestrator, "w-" + host_ + "-" + std::to_string(::getpid()) + "-" + nonce));
  json hello = {{"digest", runtime::config_digest(config_)},
                {"config", config_.file},
                {"stages", wopts_.stages},
                {"host", host_},
                {"identity", runtime::host_identity()},
                {"pid", ::getpid()}};
  client_.send("hello " + hello.dump());
  const auto start = Clock::now();
  const milliseconds silence(opts_.heartbeat_timeout_ms);
  while (!welcomed_) {
    if (runtime::g_run_signal) return Status::Cancelled("interrupted before the run started");
    std::string text;
    auto got = client_.recv(&text, 100);
    if (!got.ok()) return got.status();
    if (*got == 1) on_message(text);
    if (!stop_reason_.empty()) return Status::InvalidArgument(stop_reason_);
    auto now = Clock::now();
    if (!heard_ && now - start > milliseconds(wopts_.connect_timeout_ms)) {
      return Status::Timeout("no answer from the orchestrator at " + wopts_.orchestrator +
                             " within " + std::to_string(wopts_.connect_timeout_ms) +
                             " ms: is `omniconn run --listen` running there, and can this host "
                             "reach that port?");
    }
    if (heard_ && now - last_heard_ > silence) {
      return Status::Unavailable("lost the orchestrator at " + wopts_.orchestrator +
                                 " before the run started");
    }
    beat();
  }
  return Status::Ok();
}

Status StageWorker::start() {
  std::vector<int> pids;
  for (Local& l : locals_) {
    plans_.push_back(runtime::plan_for(config_, l.index, ns_, &opts_));
  }
  for (size_t k = 0; k < locals_.size(); ++k) {
    Local& l = locals_[k];
    int evt_r = -1;
    auto pid = runtime::spawn_stage(plans_[k], &l.ctl_w, &evt_r);
    if (!pid.ok()) return pid.status().WithContext(l.label);
    l.pid = *pid;
    l.evt = std::make_unique<LineReader>(evt_r);
    client_.send("started " + std::to_string(l.index) + " " + std::to_string(l.pid));
    pids.push_back(l.pid);
  }
  if (wopts_.on_started) wopts_.on_started(pids);
  return Status::Ok();
}

void StageWorker::forward_events(Local& l) {
  std::string line;
  while (l.evt && l.evt->next(&line, 0) == 1) {
    if (line.rfind("error ", 0) == 0) l.error = line.substr(6);
    if (metrics_ && line.rfind("metrics ", 0) == 0) {
      metrics_->stage_line(l.index, host_, line.substr(8));
    }
    client_.send("evt " + std::to_string(l.index) + " " + line);
  }
}

// An exited stage: what it still said, then its exit status, go to the orchestrator.
void StageWorker::reap(Local& l, bool block) {
  if (l.exited || l.pid <= 0) return;
  if (::waitpid(l.pid, &l.status, block ? 0 : WNOHANG) != l.pid) return;
  l.exited = true;
  forward_events(l);
  client_.send("exit " + std::to_string(l.index) + " " + std::to_string(l.status));
}

// SIGTERM, SIGKILL after 3 s; every exit reported.
void StageWorker::stop_stages() {
  for (Local& l : locals_) {
    if (!l.exited && l.pid > 0) ::kill(l.pid, SIGTERM);
  }
  const auto give_up = Clock::now() + std::chrono::seconds(3);
  for (Local& l : locals_) {
    while (!l.exited && l.pid > 0) {
      reap(l, false);
      if (l.exited) break;
      if (Clock::now() > give_up) {
        ::kill(l.pid, SIGKILL);
        reap(l, true);
      } else {
        std::this_thread::sleep_for(milliseconds(2));
      }
    }
    if (l.ctl_w >= 0) ::close(l.ctl_w);
    if (l.evt) ::close(l.evt->fd());
    l.ctl_w = -1;
    l.evt.reset();
  }
}

Status StageWorker::outcome() const {
  for (const Local& l : locals_) {
    if (WIFEXITED(l.status) && WEXITSTATUS(l.status) == 0) continue;
    return Status::Unavailable(l.label + " (pid " + std::to_string(l.pid) + ") " +
                               runtime::describe_exit(l.status) +
                               (l.error.empty() ? "" : ": " + l.error));
  }
  return Status::Ok();
}

Status StageWorker::relay() {
  const milliseconds silence(opts_.heartbeat_timeout_ms);
  std::vector<int> fds;
  for (const Local& l : locals_) fds.push_back(l.evt->fd());
  for (;;) {
    client_.wait(fds, 5);
    std::string text;
    for (int k = 0; k < 1000; ++k) {
      auto got = client_.recv(&text, 0);
      if (!got.ok() || *got == 0) break;
      on_message(text);
    }
    for (Local& l : locals_) {
      forward_events(l);
      reap(l, false);
    }
    std::string why = stop_reason_;
    if (why.empty() && runtime::g_run_signal) {
      why = std::string("interrupted by ") + strsignal(runtime::g_run_signal);
    }
    if (why.empty() && Clock::now() - last_heard_ > silence) {
      why = "lost the orchestrator at " + wopts_.orchestrator + ": nothing heard for " +
            std::to_string(opts_.heartbeat_timeout_ms) + " ms";
    }
    bool all_exited =
        std::all_of(locals_.begin(), locals_.end(), [](const Local& l) { return l.exited; });
    if (!why.empty() || all_exited) {
      stop_stages();
      client_.send("bye " + (why.empty() ? std::string("done") : why));
      return why.empty() ? outcome() : Status::Cancelled(why);
    }
    beat();
  }
}

Status StageWorker::run() {
  OMNICONN_RETURN_IF_ERROR(resolve());
  host_ = runtime::host_display_name(wopts_.host_name);
  OMNICONN_RETURN_IF_ERROR(join());
  OMNICONN_RETURN_IF_ERROR(start());
  if (!wopts_.metrics_listen.empty()) {  // after the forks (see Orchestrator::run)
    metrics_ = std::make_unique<runtime::RunMetrics>(config_);
    auto bound = metrics_->serve(wopts_.metrics_listen);
    if (!bound.ok()) return bound.status().WithContext("--metrics");
    if (wopts_.on_metrics_listening) wopts_.on_metrics_listening(*bound);
  }
  return relay();
}

}  // namespace

Status run_stage_worker(const PipelineConfig& config, const WorkerOptions& options) {
  runtime::SignalScope signals;
  StageWorker worker(config, options);
  return worker.run();
}

}  // namespace omniconn

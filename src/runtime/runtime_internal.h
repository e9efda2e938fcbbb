// Private pieces of the pipeline runtime shared by the orchestrator and the stage processes.
#pragma once

#include <signal.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/runtime.h"

namespace omniconn::runtime {

// What one stage process needs to know.
struct StagePlan {
  const StageConfig* stage = nullptr;
  std::vector<const EdgeConfig*> inputs;
  std::vector<const EdgeConfig*> outputs;
  std::string name_space;  // scopes this run's channels (types scoped_by_namespace)
  int ctl_fd = -1;         // orchestrator -> stage: "req <i>" lines (source stages)
  int evt_fd = -1;         // stage -> orchestrator: "done <i>", "stats <json>", "error <msg>"
  const RunOptions* options = nullptr;
};

// Body of a stage process; returns its exit code.
int run_stage(const StagePlan& plan);

// The plan of config.stages[index]: its edges in, its edges out.
StagePlan plan_for(const PipelineConfig& config, size_t index, const std::string& name_space,
                   const RunOptions* options);
// Forks a process running run_stage(plan); the pid, and the parent's ends of its control
// pipe (*ctl_w) and event pipe (*evt_r). The child dies with its parent.
Result<int> spawn_stage(StagePlan plan, int* ctl_w, int* evt_r);

std::string describe_exit(int wait_status);         // "killed by signal 9 (Killed)"
std::string stage_label(const StageConfig& stage);  // "stage 1 (talker)"

// Identifies what both ends of a multi-host run must agree on: stages, edges, connector types
// and settings (less the keys a type marks host_local_keys). 16 hex digits.
std::string config_digest(const PipelineConfig& config);

// The run options a stage worker receives in the orchestrator's welcome.
nlohmann::json options_json(const RunOptions& options);
RunOptions options_from_json(const nlohmann::json& j);

// Set by the stage's SIGTERM handler: finish the current call and exit.
extern volatile std::sig_atomic_t g_stage_stop;

// In the error of a stage that gave up waiting for its input ("edge 1->2: nothing for 3000 ms"):
// the orchestrator looks for another stage's failure before naming this one.
inline constexpr std::string_view kStarvedMarker = ": nothing for ";

// A connector spec with this run's namespace added (SharedMemoryConnector only).
ConnectorSpec spec_for_run(const EdgeConfig& edge, const std::string& name_space);

std::string request_name(int64_t i);

// Reads '\n'-terminated lines from a pipe.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // 1: a line; 0: none within timeout_ms; -1: end of file or error.
  int next(std::string* line, int timeout_ms);
  int fd() const { return fd_; }

 private:
  int fd_;
  std::string buf_;
};

bool write_line(int fd, const std::string& line);

// The SIGINT or SIGTERM that arrived while a SignalScope lived (0: none).
extern volatile std::sig_atomic_t g_run_signal;

// While it lives, SIGINT and SIGTERM set g_run_signal (cleared at the start) and SIGPIPE is
// ignored (a stage that died leaves a broken control pipe: writing to it must fail, not kill
// the writer). The orchestrator and a stage worker each hold one for their run.
class SignalScope {
 public:
  SignalScope();
  ~SignalScope();
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  struct sigaction old_pipe_ {};
};

}  // namespace omniconn::runtime

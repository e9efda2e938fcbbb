// Private pieces of the pipeline runtime shared by the orchestrator and the stage processes.
#pragma once

#include <csignal>
#include <string>
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

// Set by the stage's SIGTERM handler: finish the current call and exit.
extern volatile std::sig_atomic_t g_stage_stop;

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

}  // namespace omniconn::runtime

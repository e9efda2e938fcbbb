// Helpers shared by shm_bench, mooncake_bench and omniconn_demo (not part of the library): a
// self-spawned child process, command-line parsing, latency summaries, a text table, and a
// small control protocol (field-only payloads) between the two processes of a run. Time,
// sizes and percentiles come from bench_util.h, which the baselines share.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "omniconn/connector.h"
#include "omniconn/payload.h"
#include "omniconn/registry.h"
#include "omniconn/shm_connector.h"
#include "omniconn/status.h"
#include "omniconn/value.h"

namespace ocbench {

using omniconn::Deadline;
using omniconn::Result;
using omniconn::Status;
using omniconn::Value;

using benchutil::format_size;
using benchutil::gb_per_s;
using benchutil::kGiB;
using benchutil::kKiB;
using benchutil::kMiB;
using benchutil::load_average;
using benchutil::median;
using benchutil::now_ns;
using benchutil::percentile_sorted;
using benchutil::process_cpu_ns;
using benchutil::strf;

// Peak resident set of this process, KiB.
inline int64_t peak_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// ---- Sizes ---------------------------------------------------------------------------------

// benchutil's size parsing, with omniconn's errors.
inline Result<size_t> parse_size(std::string_view text) {
  if (auto size = benchutil::parse_size(text)) return *size;
  return Status::InvalidArgument(strf("bad size '%.*s'", int(text.size()), text.data()));
}

inline Result<std::vector<size_t>> parse_size_list(std::string_view text, size_t min_bytes) {
  std::string error;
  if (auto sizes = benchutil::parse_size_list(text, min_bytes, &error)) return *sizes;
  return Status::InvalidArgument(error);
}

// ---- Statistics ----------------------------------------------------------------------------

struct LatencyStats {
  size_t count = 0;
  double p50_us = 0;
  double p99_us = 0;
  double p999_us = 0;
  double min_us = 0;
  double max_us = 0;
  double mean_us = 0;
};

inline LatencyStats summarize_ns(std::vector<int64_t> samples) {
  LatencyStats stats;
  if (samples.empty()) return stats;
  std::sort(samples.begin(), samples.end());
  double sum = 0;
  for (int64_t s : samples) sum += static_cast<double>(s);
  stats.count = samples.size();
  stats.p50_us = static_cast<double>(percentile_sorted(samples, 50)) / 1e3;
  stats.p99_us = static_cast<double>(percentile_sorted(samples, 99)) / 1e3;
  stats.p999_us = static_cast<double>(percentile_sorted(samples, 99.9)) / 1e3;
  stats.min_us = static_cast<double>(samples.front()) / 1e3;
  stats.max_us = static_cast<double>(samples.back()) / 1e3;
  stats.mean_us = sum / static_cast<double>(samples.size()) / 1e3;
  return stats;
}

// ---- Text table ----------------------------------------------------------------------------

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  void print(FILE* out) const {
    std::vector<size_t> widths(headers_.size(), 0);
    for (size_t c = 0; c < headers_.size(); ++c) widths[c] = headers_[c].size();
    for (const auto& row : rows_) {
      for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
        widths[c] = std::max(widths[c], row[c].size());
      }
    }
    print_row(out, headers_, widths);
    size_t total = 0;
    for (size_t w : widths) total += w + 2;
    std::fprintf(out, "%s\n", std::string(total > 2 ? total - 2 : 0, '-').c_str());
    for (const auto& row : rows_) print_row(out, row, widths);
  }

 private:
  // First column left-aligned (a label), the others right-aligned (numbers).
  static void print_row(FILE* out, const std::vector<std::string>& row,
                        const std::vector<size_t>& widths) {
    std::string line;
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string cell = c < row.size() ? row[c] : "";
      const std::string pad(widths[c] - std::min(widths[c], cell.size()), ' ');
      line += c == 0 ? cell + pad : pad + cell;
      if (c + 1 < widths.size()) line += "  ";
    }
    std::fprintf(out, "%s\n", line.c_str());
  }

  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// ---- Command line --------------------------------------------------------------------------

// "--key=value", "--key value" (when the next word is not an option) and "--flag".
class Args {
 public:
  static Result<Args> parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
      std::string word = argv[i];
      if (word.rfind("--", 0) != 0) {
        return Status::InvalidArgument("unexpected argument '" + word + "' (try --help)");
      }
      word.erase(0, 2);
      const size_t eq = word.find('=');
      if (eq != std::string::npos) {
        args.values_[word.substr(0, eq)] = word.substr(eq + 1);
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        args.values_[word] = argv[++i];
      } else {
        args.values_[word] = "";
      }
    }
    return args;
  }

  bool has(std::string_view key) const { return values_.find(key) != values_.end(); }
  std::string get(std::string_view key, std::string fallback = "") const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  // Unknown options are errors, so a typo never silently runs the default.
  Status check_known(const std::vector<std::string>& known) const {
    for (const auto& [key, value] : values_) {
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        return Status::InvalidArgument("unknown option --" + key + " (try --help)");
      }
    }
    return Status::Ok();
  }
  Result<uint64_t> get_uint(std::string_view key, uint64_t fallback) const {
    if (!has(key)) return fallback;
    const std::string text = get(key);
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || text[0] == '-') {
      return Status::InvalidArgument("--" + std::string(key) + " wants a non-negative integer");
    }
    return static_cast<uint64_t>(v);
  }

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// ---- Child process -------------------------------------------------------------------------

// This program re-executed with other arguments. The child dies with its parent
// (PR_SET_PDEATHSIG); the destructor kills (SIGKILL) and reaps a child still running.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { kill_and_reap(); }

  static Result<std::unique_ptr<ChildProcess>> spawn_self(const char* argv0,
                                                          const std::vector<std::string>& args) {
    std::vector<std::string> words = {argv0};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    // Exec the resolved path (so ps shows the program's name); /proc/self/exe otherwise.
    std::string exe(4096, '\0');
    const ssize_t len = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
    exe = len > 0 ? exe.substr(0, static_cast<size_t>(len)) : "";
    if (exe.empty() || exe.ends_with(" (deleted)")) exe = "/proc/self/exe";
    const pid_t parent = getpid();
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) return Status::Unavailable(strf("fork: %s", std::strerror(errno)));
    if (pid == 0) {  // child: async-signal-safe calls only until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      execv(exe.c_str(), argv.data());
      _exit(127);
    }
    auto child = std::make_unique<ChildProcess>();
    child->pid_ = pid;
    return child;
  }

  pid_t pid() const { return pid_; }

  // When the child has exited: a description of how ("exited with status 1"); else nullopt.
  std::optional<std::string> poll_exit() {
    if (pid_ <= 0) return exit_text_;
    int wstatus = 0;
    const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r != pid_) return std::nullopt;
    pid_ = -1;
    exit_ok_ = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    exit_text_ = WIFEXITED(wstatus) ? strf("exited with status %d", WEXITSTATUS(wstatus))
                                    : strf("was killed by signal %d (%s)", WTERMSIG(wstatus),
                                           strsignal(WTERMSIG(wstatus)));
    return exit_text_;
  }

  // Waits for a clean exit (status 0) until `deadline`; kills the child past it.
  Status wait(Deadline deadline, std::string_view name) {
    while (!poll_exit()) {
      if (omniconn::Clock::now() >= deadline) {
        kill_and_reap();
        return Status::Timeout(std::string(name) + " did not exit in time; killed it");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exit_ok_) return Status::Internal(std::string(name) + " " + *exit_text_);
    return Status::Ok();
  }

  void kill_and_reap() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int wstatus = 0;
    waitpid(pid_, &wstatus, 0);
    pid_ = -1;
    exit_text_ = "was killed";
  }

 private:
  pid_t pid_ = -1;
  bool exit_ok_ = false;
  std::optional<std::string> exit_text_;
};

// ---- Connector helpers ---------------------------------------------------------------------

inline Result<std::unique_ptr<omniconn::Connector>> make_shm(Value::Map extra) {
  return omniconn::create_connector({"SharedMemoryConnector", Value(std::move(extra))});
}

// recv that gives up early, with a clear message, when `watched` (the peer process) has exited.
inline Result<omniconn::PayloadView> recv_watching(omniconn::Connector& conn, std::string_view from,
                                                   std::string_view to, Deadline deadline,
                                                   ChildProcess* watched) {
  constexpr auto kSlice = std::chrono::milliseconds(250);
  for (;;) {
    const Deadline slice =
        watched == nullptr ? deadline : std::min(deadline, omniconn::Clock::now() + kSlice);
    auto view = conn.recv(from, to, slice);
    if (view.ok() || view.status().code() != omniconn::StatusCode::kTimeout) return view;
    if (omniconn::Clock::now() >= deadline) return view;
    if (auto how = watched->poll_exit()) {
      return Status::Unavailable("peer process " + *how + " while we waited on edge " +
                                 std::string(from) + "->" + std::string(to));
    }
  }
}

// Control messages: payloads with no tensors, only a fields map such as {"cmd": "copy",
// "size": 1048576, "count": 100}.
inline Status send_command(omniconn::Connector& conn, const omniconn::PayloadKey& key,
                           const Value::Map& fields, Deadline deadline) {
  omniconn::PayloadBuilder builder;
  OMNICONN_RETURN_IF_ERROR(builder.set_fields(Value(fields)));
  return conn.send(key, builder, deadline).WithContext("send command");
}

inline Result<Value> recv_command(omniconn::Connector& conn, std::string_view from,
                                  std::string_view to, Deadline deadline,
                                  ChildProcess* watched = nullptr) {
  auto view = recv_watching(conn, from, to, deadline, watched);
  if (!view.ok()) return view.status().WithContext("receive command");
  return view->reader().fields();
}

inline std::string field_string(const Value& fields, std::string_view key) {
  const Value* v = fields.find(key);
  return v != nullptr && v->as_string() != nullptr ? *v->as_string() : std::string();
}

inline int64_t field_int(const Value& fields, std::string_view key, int64_t fallback = -1) {
  const Value* v = fields.find(key);
  if (v == nullptr) return fallback;
  return v->as_int().value_or(fallback);
}

// ---- Buffers -------------------------------------------------------------------------------

// 64-byte aligned heap buffer, pre-faulted (every page written) at construction.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t size, uint8_t fill = 0)
      : size_(size),
        data_(static_cast<std::byte*>(std::aligned_alloc(64, std::max<size_t>(64, round_up(size)))),
              &std::free) {
    if (data_) std::memset(data_.get(), fill, std::max<size_t>(64, round_up(size)));
  }
  bool ok() const { return data_ != nullptr; }
  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  static size_t round_up(size_t n) { return (n + 63) / 64 * 64; }
  size_t size_;
  std::unique_ptr<std::byte, decltype(&std::free)> data_;
};

}  // namespace ocbench

// Helpers shared by the C++ baseline programs (plain POSIX + C++20; no omniconn): command
// line, sizes, statistics, a text table, the JSON report, a forked producer that dies with its
// parent, and the consumer-driven two-process driver (stream + ping-pong) both socket
// baselines use. A baseline only supplies how one payload is sent and received.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../bench_util.h"

namespace baseline {

using benchutil::format_size;
using benchutil::gb_per_s;
using benchutil::kGiB;
using benchutil::kKiB;
using benchutil::kMiB;
using benchutil::load_average;
using benchutil::median;
using benchutil::now_ns;
using benchutil::percentile_sorted;
using benchutil::strf;

inline constexpr size_t kMinSize = 8;             // room for the ping-pong stamp
inline constexpr int kSocketTimeoutSeconds = 30;  // no read or write waits longer
inline constexpr uint8_t kFill = 0x5a;            // every source byte (but the stamp)
inline constexpr const char* kDefaultSizes = "64,4K,64K,1M,16M,64M,256M";

// A failure: "<program>: error: <what>", exit status 1. UsageError: exit status 2.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Error with strerror(errno) appended.
[[noreturn]] inline void throw_errno(const std::string& what) {
  throw Error(what + ": " + std::strerror(errno));
}

// `clock` in nanoseconds; throws when it cannot be read.
inline int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) throw_errno("clock_gettime");
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// ---- Sizes ---------------------------------------------------------------------------------
// ---------------------------------------------------------------------

// benchutil's size parsing; a bad size is a usage error.
inline std::vector<size_t> parse_size_list(std::string_view text) {
  std::string error;
  if (auto sizes = benchutil::parse_size_list(text, kMinSize, &error)) return *sizes;
  throw UsageError(error);
}

// ---- Results -------------------------------------------------------------------------------

struct StreamResult {
  size_t size = 0;
  uint64_t count = 0;
  double gbps = 0;
  double cpu_us_per_mib = 0;
};

struct PingPongResult {
  size_t size = 0;
  uint64_t count = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0;
};

inline PingPongResult summarize(size_t size, std::vector<int64_t> samples_ns) {
  std::sort(samples_ns.begin(), samples_ns.end());
  auto us = [&](double p) { return static_cast<double>(percentile_sorted(samples_ns, p)) / 1e3; };
  return {size, samples_ns.size(), us(50), us(99), us(99.9)};
}

inline nlohmann::json to_json(const StreamResult& r) {
  return {{"size", r.size},
          {"mode", "stream"},
          {"count", r.count},
          {"gbps", r.gbps},
          {"cpu_us_per_mib", r.cpu_us_per_mib}};
}

inline nlohmann::json to_json(const PingPongResult& r) {
  return {{"size", r.size},     {"mode", "pingpong"}, {"count", r.count},
          {"p50_us", r.p50_us}, {"p99_us", r.p99_us}, {"p999_us", r.p999_us}};
}

// Writes {"benchmark", "description", "cpus", "load_average_end", "results"} plus `extra`.
inline void write_json(const std::string& path, const char* name, const char* description,
                       const nlohmann::json& results, const nlohmann::json& extra = {}) {
  nlohmann::json doc = {{"benchmark", name},
                        {"description", description},
                        {"cpus", std::thread::hardware_concurrency()},
                        {"load_average_end", load_average()},
                        {"results", results}};
  if (extra.is_object()) doc.update(extra);
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  out.close();
  if (!out) throw Error("cannot write " + path);
}

// One row per size: stream and ping-pong side by side; columns absent from a row print "-".
inline void print_table(const std::vector<StreamResult>& streams,
                        const std::vector<PingPongResult>& pings) {
  std::printf("%-8s %10s %8s %12s %11s %11s %11s %7s\n", "size", "GB/s", "stream n", "CPU us/MiB",
              "p50 us", "p99 us", "p99.9 us", "pp n");
  for (size_t i = 0; i < streams.size(); ++i) {
    const StreamResult& s = streams[i];
    std::printf("%-8s %10.3f %8llu %12.1f", format_size(s.size).c_str(), s.gbps,
                static_cast<unsigned long long>(s.count), s.cpu_us_per_mib);
    if (i < pings.size()) {
      const PingPongResult& p = pings[i];
      std::printf(" %11.2f %11.2f %11.2f %7llu\n", p.p50_us, p.p99_us, p.p999_us,
                  static_cast<unsigned long long>(p.count));
    } else {
      std::printf(" %11s %11s %11s %7s\n", "-", "-", "-", "-");
    }
  }
  std::printf("load average at the end: %s\n", load_average().c_str());
}

// ---- Command line --------------------------------------------------------------------------

struct Options {
  std::vector<size_t> sizes;
  std::string json_path;
  double max_seconds = 40;
  bool help = false;
};

// --sizes=LIST --json=FILE --max-seconds=S --help ("--key value" works too).
inline Options parse_options(int argc, char** argv) {
  Options opts;
  std::string sizes = kDefaultSizes;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    std::string value;
    const size_t eq = word.find('=');
    const bool has_value = eq != std::string::npos;
    if (has_value) {
      value = word.substr(eq + 1);
      word.resize(eq);
    }
    if (word == "--help" || word == "-h") {
      opts.help = true;
      continue;
    }
    if (word != "--sizes" && word != "--json" && word != "--max-seconds") {
      throw UsageError("unknown option '" + std::string(argv[i]) + "' (try --help)");
    }
    if (!has_value) {
      if (i + 1 >= argc) throw UsageError(word + " wants a value");
      value = argv[++i];
    }
    if (word == "--sizes") sizes = value;
    if (word == "--json") opts.json_path = value;
    if (word == "--max-seconds") {
      char* end = nullptr;
      opts.max_seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(opts.max_seconds > 0) || opts.max_seconds > 1e6) {
        throw UsageError("--max-seconds wants a positive number of seconds");
      }
    }
    if (value.empty()) throw UsageError(word + " wants a value");
  }
  opts.sizes = parse_size_list(sizes);
  return opts;
}

inline void print_usage(const char* name, const char* what) {
  std::printf(
      "usage: %s [--sizes=LIST] [--json=FILE] [--max-seconds=S]\n"
      "\n"
      "%s\n"
      "\n"
      "  --sizes=LIST      payload sizes, comma-separated, units B/K/M/G (binary)\n"
      "                    (default %s)\n"
      "  --json=FILE       also write the results as JSON\n"
      "  --max-seconds=S   rough total time budget; counts per size follow from it (default 40)\n"
      "  --help            this text\n"
      "\n"
      "Exit status: 0 when the run completed, 1 on an error, 2 on bad usage.\n",
      name, what, kDefaultSizes);
}

// main() body: exit 0, 1 (Error or other exception) or 2 (UsageError), with the message.
template <typename Fn>
int run_main(const char* name, Fn&& fn) {
  try {
    fn();
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 1;
  }
}

// ---- Buffers, time budget ------------------------------------------------------------------

// 64-byte aligned heap buffer, every page written (pre-faulted) at construction.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t size, uint8_t fill = kFill)
      : size_(size),
        data_(static_cast<uint8_t*>(std::aligned_alloc(64, rounded(size))), &std::free) {
    if (!data_) throw Error(strf("out of memory (%s buffer)", format_size(size).c_str()));
    std::memset(data_.get(), fill, rounded(size));
  }
  uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  static size_t rounded(size_t n) { return std::max<size_t>(64, (n + 63) / 64 * 64); }
  size_t size_;
  std::unique_ptr<uint8_t, decltype(&std::free)> data_;
};

// Spreads --max-seconds over the measured phases still to run: each gets the time left times
// its weight over the weights left, so what a phase (capped by count) leaves unused goes to the
// later ones, and large sizes weigh more (1 up to 64 KiB, +1 per doubling above). A phase gets
// its usual minimum of payloads (stream 8, ping-pong 20) if that costs at most 1.25x its share;
// else what its share pays for, but never fewer than the hard minimum (4, 8), so slow transports
// at large sizes still end in about the time asked for.
class Budget {
 public:
  // Two phases (stream, ping-pong) per size.
  Budget(double seconds, const std::vector<size_t>& sizes)
      : end_ns_(now_ns() + static_cast<int64_t>(seconds * 1e9)) {
    for (size_t size : sizes) {
      const double w = std::max(1.0, std::log2(static_cast<double>(size) / (64 * kKiB)) + 1);
      weights_.insert(weights_.end(), {w, w});
    }
  }

  // Payloads for the next phase given one payload's estimated cost; counts one phase done.
  uint64_t next_count(double ns_per_payload, uint64_t soft_min, uint64_t hard_min,
                      uint64_t max_count) {
    const double left = static_cast<double>(std::max<int64_t>(0, end_ns_ - now_ns()));
    double weight_left = 0;
    for (size_t i = next_; i < weights_.size(); ++i) weight_left += weights_[i];
    const double weight = next_ < weights_.size() ? weights_[next_++] : 1.0;
    const double share = left * weight / std::max(weight_left, weight);
    double n = std::min(share / std::max(ns_per_payload, 1.0), 1e12);
    if (static_cast<double>(soft_min) <= 1.25 * n) n = std::max(n, static_cast<double>(soft_min));
    return std::min(std::max(static_cast<uint64_t>(n), hard_min), max_count);
  }

 private:
  int64_t end_ns_;
  std::vector<double> weights_;
  size_t next_ = 0;
};

// Stream: at most ~1 GiB a phase (but at least 8 payloads) and 20000 payloads; warm-up ~64 MiB,
// 1..200 payloads. Ping-pong: at most ~512 MiB a phase, 20..2000 round trips; warm-up ~128 MiB,
// 1..50 round trips.
inline uint64_t stream_max_count(size_t size) {
  return std::clamp<uint64_t>(kGiB / size, 8, 20000);
}
inline uint64_t stream_warmup(size_t size) {
  return std::clamp<uint64_t>((64 * kMiB) / size, 1, 200);
}
inline uint64_t pingpong_max_count(size_t size) {
  return std::clamp<uint64_t>((512 * kMiB) / size, 20, 2000);
}
inline uint64_t pingpong_warmup(size_t size) {
  return std::clamp<uint64_t>((128 * kMiB) / size, 1, 50);
}

// ---- Sockets -------------------------------------------------------------------------------

inline void set_socket_timeouts(int fd) {
  const timeval tv{kSocketTimeoutSeconds, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
    throw_errno("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)");
  }
}

[[noreturn]] inline void throw_io(const char* what) {
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    throw Error(strf("%s: timed out after %d s", what, kSocketTimeoutSeconds));
  }
  throw_errno(what);
}

inline void send_exact(int fd, const void* data, size_t n, const char* what) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw_io(what);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

inline void recv_exact(int fd, void* data, size_t n, const char* what) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    const ssize_t r = recv(fd, p, n, MSG_WAITALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_io(what);
    if (r == 0) throw Error(strf("%s: the other process closed the socket", what));
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// ---- Producer process ----------------------------------------------------------------------

// A forked child that dies with its parent; the destructor kills and reaps it if still there.
class Child {
 public:
  // Runs body() in a forked child ("<name>: error: producer: ..." and exit 1 on an exception).
  template <typename Fn>
  Child(const char* name, Fn&& body) {
    const pid_t parent = getpid();
    std::fflush(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw_errno("fork");
    if (pid_ > 0) return;
    int status = 0;
    try {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) throw_errno("prctl(PR_SET_PDEATHSIG)");
      if (getppid() != parent) throw Error("parent exited");
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: error: producer: %s\n", name, e.what());
      status = 1;
    }
    std::fflush(nullptr);
    _exit(status);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

  pid_t pid() const { return pid_; }

  // Waits up to the socket timeout for exit status 0; kills the child past it.
  void wait_ok() {
    const std::string how = exit_status(kSocketTimeoutSeconds * 1000);
    if (how.empty()) throw Error("producer did not exit in time; killed it");
    if (how != "producer exited with status 0") throw Error(how);
  }

  // How the child ended ("producer killed by signal 9"), waiting up to `wait_ms` for it to
  // end; "" while it still runs.
  std::string exit_status(int wait_ms) {
    for (int waited = 0; pid_ > 0; waited += 10) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r < 0) throw_errno("waitpid");
      if (r == pid_) {
        pid_ = -1;
        how_ = WIFEXITED(status) ? strf("producer exited with status %d", WEXITSTATUS(status))
                                 : strf("producer killed by signal %d", WTERMSIG(status));
        break;
      }
      if (waited >= wait_ms) break;
      usleep(10000);
    }
    return how_;
  }

 private:
  pid_t pid_ = -1;
  std::string how_;
};

// CPU time (user + sys) of this process plus another one, in ns.
class CpuClocks {
 public:
  explicit CpuClocks(pid_t other) {
    const int rc = clock_getcpuclockid(other, &other_);
    if (rc != 0) throw Error(std::string("clock_getcpuclockid: ") + std::strerror(rc));
  }
  int64_t total_ns() const { return clock_ns(CLOCK_PROCESS_CPUTIME_ID) + clock_ns(other_); }

 private:
  clockid_t other_{};
};

// ---- The two-process driver ----------------------------------------------------------------

// The consumer (parent) drives the producer (child) with commands sent back over the socket;
// a command is a fixed 24-byte record, an ack one byte.
enum class Op : uint32_t { kStream = 1, kPingPong = 2, kQuit = 3 };
struct Command {
  Op op = Op::kQuit;
  uint32_t reserved = 0;
  uint64_t size = 0;
  uint64_t count = 0;
};

// How a baseline moves one payload; `fd` is the parent's or the child's end of the socketpair
// that carries the payloads one way and the commands and acks the other.
class Transport {
 public:
  virtual ~Transport() = default;
  // Producer: get ready to send payloads of `size` bytes (a warm, pre-faulted source).
  virtual void producer_prepare(size_t size) = 0;
  // Producer: send one payload; with `stamp`, now_ns() into its first 8 bytes right before.
  virtual void send_payload(size_t size, bool stamp) = 0;
  // Consumer: get ready to receive payloads of `size` bytes.
  virtual void consumer_prepare(size_t size) = 0;
  // Consumer: receive one payload completely: its first 8 bytes (the stamp) and when the whole
  // payload had become readable (now_ns(); before any clean-up such as munmap).
  struct Received {
    int64_t stamp = 0;
    int64_t at_ns = 0;
  };
  virtual Received recv_payload(size_t size) = 0;
};

// Producer loop: serves the consumer's commands until kQuit.
inline void serve(Transport& t, int fd) {
  for (;;) {
    Command cmd;
    recv_exact(fd, &cmd, sizeof cmd, "receive command");
    if (cmd.op == Op::kQuit) return;
    if ((cmd.op != Op::kStream && cmd.op != Op::kPingPong) || cmd.size < kMinSize) {
      throw Error("bad command from the consumer");
    }
    t.producer_prepare(cmd.size);
    for (uint64_t i = 0; i < cmd.count; ++i) {
      if (cmd.op == Op::kPingPong && i > 0) {
        uint8_t ack = 0;
        recv_exact(fd, &ack, 1, "receive ack");
      }
      t.send_payload(cmd.size, cmd.op == Op::kPingPong);
    }
  }
}

class Driver {
 public:
  Driver(Transport& t, int fd, pid_t producer, const Options& opts)
      : t_(t), fd_(fd), cpu_(producer), budget_(opts.max_seconds * 0.8, opts.sizes) {}

  void command(Op op, size_t size, uint64_t count) {
    const Command cmd{op, 0, size, count};
    send_exact(fd_, &cmd, sizeof cmd, "send command");
  }

  // Warm-up stream (also sizes the timed one), then the timed stream: the clock and the CPU
  // clocks start right before the command that releases the producer (as in shm_bench).
  StreamResult stream(size_t size) {
    t_.consumer_prepare(size);
    const uint64_t warmup = stream_warmup(size);
    int64_t start = now_ns();
    receive_stream(size, warmup);
    const double per_payload = static_cast<double>(now_ns() - start) / static_cast<double>(warmup);
    const uint64_t count = budget_.next_count(per_payload, 8, 4, stream_max_count(size));
    const int64_t cpu0 = cpu_.total_ns();
    start = now_ns();
    receive_stream(size, count);
    const int64_t elapsed = now_ns() - start;
    const int64_t cpu = cpu_.total_ns() - cpu0;
    const double bytes = static_cast<double>(size) * static_cast<double>(count);
    return {size, count, gb_per_s(bytes, elapsed),
            static_cast<double>(cpu) / 1e3 / (bytes / static_cast<double>(kMiB))};
  }

  // Warm-up round trips (also size the timed ones), then the timed ones.
  PingPongResult ping_pong(size_t size) {
    const uint64_t warmup = pingpong_warmup(size);
    const int64_t start = now_ns();
    round_trips(size, warmup);
    const double per_trip = static_cast<double>(now_ns() - start) / static_cast<double>(warmup);
    return summarize(
        size, round_trips(size, budget_.next_count(per_trip, 20, 8, pingpong_max_count(size))));
  }

  void quit() { command(Op::kQuit, kMinSize, 0); }

 private:
  void receive_stream(size_t size, uint64_t count) {
    command(Op::kStream, size, count);
    for (uint64_t i = 0; i < count; ++i) t_.recv_payload(size);
  }

  std::vector<int64_t> round_trips(size_t size, uint64_t count) {
    command(Op::kPingPong, size, count);
    std::vector<int64_t> samples;
    samples.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      const auto [t0, t1] = t_.recv_payload(size);
      if (t0 <= 0 || t0 > t1)
        throw Error(
            strf("bad stamp in ping-pong payload %llu", static_cast<unsigned long long>(i)));
      samples.push_back(t1 - t0);
      if (i + 1 < count) {
        const uint8_t ack = 1;
        send_exact(fd_, &ack, 1, "send ack");
      }
    }
    return samples;
  }

  Transport& t_;
  int fd_;
  CpuClocks cpu_;
  Budget budget_;
};

// The whole consumer side: both modes for every size, the table, the JSON.
inline void run_consumer(Transport& t, int fd, Child& producer, const Options& opts,
                         const char* name, const char* description,
                         const nlohmann::json& extra = {}) {
  Driver driver(t, fd, producer.pid(), opts);
  std::vector<StreamResult> streams;
  std::vector<PingPongResult> pings;
  nlohmann::json results = nlohmann::json::array();
  try {
    for (size_t size : opts.sizes) {
      streams.push_back(driver.stream(size));
      pings.push_back(driver.ping_pong(size));
      results.push_back(to_json(streams.back()));
      results.push_back(to_json(pings.back()));
    }
    driver.quit();
  } catch (const Error& e) {  // say so when the producer is gone
    const std::string how = producer.exit_status(200);
    if (how.empty()) throw;
    throw Error(std::string(e.what()) + " (" + how + ")");
  }
  producer.wait_ok();
  print_table(streams, pings);
  if (!opts.json_path.empty()) write_json(opts.json_path, name, description, results, extra);
}

}  // namespace baseline

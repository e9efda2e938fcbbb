// iceoryx_bench: baseline for the benchmark suite, iceoryx 2.0 (Debian's packages) zero-copy
// publish/subscribe between two processes.
//
// The parent process starts its own RouDi (iox-roudi) with a generated mempool config, forks a
// subscriber and a publisher process (the parent itself never joins iceoryx), and per payload
// size measures
//   stream    publisher: loan -> memcpy from a warm buffer -> publish, back to back; the
//             subscriber's queue blocks the publisher when full (nothing is dropped; checked by
//             sequence numbers). GB/s at the subscriber, CPU of both processes per MiB.
//   pingpong  one payload in flight: loan -> memcpy -> stamp -> publish | take -> stamp, then an
//             ack on a second iceoryx topic. One-way latency p50/p99/p99.9.
// Both ends block in an iceoryx WaitSet (no busy polling), except that iceoryx's publish()
// spins (yield) while the subscriber's queue is full. At the end RouDi is stopped and
// /dev/shm is checked for leftovers.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../bench_util.h"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/popo/wait_set.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

#ifndef ICEORYX_BENCH_ROUDI
#define ICEORYX_BENCH_ROUDI "/usr/bin/iox-roudi"
#endif

namespace {

using benchutil::clock_ns;
using benchutil::format_size;
using benchutil::kGiB;
using benchutil::kKiB;
using benchutil::kMiB;
using benchutil::load_average;
using benchutil::now_ns;
using benchutil::strf;

constexpr size_t kMinSize = 16;                       // stamp + sequence word
constexpr size_t kShmLimit = kGiB + kGiB / 2;         // payload mempools, all sizes together
constexpr uint64_t kLastFlag = uint64_t{1} << 63;     // in the sequence word: last of a phase
constexpr uint64_t kStreamBytes = uint64_t{1} << 30;  // per measured stream
constexpr uint64_t kPingPongBytes = uint64_t{4} << 30;
constexpr size_t kChunkOverhead = 64;  // iceoryx chunk header (40 B), rounded up generously
constexpr const char* kDefaultSizes = "64,4K,64K,1M,16M,64M";
constexpr const char* kIceoryxTag = "iceoryx_bench";

// SIGINT/SIGTERM/SIGHUP in the parent: stop the children and RouDi, clean up, exit 130.
volatile sig_atomic_t g_stop = 0;
void on_stop_signal(int) {
  g_stop = 1;
}

// ---- Options -------------------------------------------------------------------------------

struct Options {
  std::vector<size_t> sizes;
  std::string json_path;
  double max_seconds = 40;
};

void print_usage(FILE* out) {
  std::fprintf(out,
               "usage: iceoryx_bench [--sizes=LIST] [--json=FILE] [--max-seconds=S] [--help]\n"
               "  iceoryx (RouDi + zero-copy pub/sub) between two processes: stream throughput\n"
               "  and ping-pong latency per payload size.\n"
               "  --sizes=LIST       comma-separated sizes, binary units (default %s)\n"
               "  --json=FILE        also write the results as JSON\n"
               "  --max-seconds=S    time budget for the measurements (default 40)\n"
               "  Starts its own RouDi (%s); refuses to run while another RouDi is up.\n",
               kDefaultSizes, ICEORYX_BENCH_ROUDI);
}

// Returns the options, or an exit code (0 for --help, 2 for a usage error).
std::optional<Options> parse_options(int argc, char** argv, int* exit_code) {
  Options opts;
  std::string sizes_text = kDefaultSizes;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    const size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const bool needs_value = name == "--sizes" || name == "--json" || name == "--max-seconds";
    if (needs_value) {
      if (eq != std::string_view::npos) {
        value = arg.substr(eq + 1);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        std::fprintf(stderr, "iceoryx_bench: %s needs a value\n", argv[i]);
        *exit_code = 2;
        return std::nullopt;
      }
    }
    if (arg == "--help" || arg == "-h") {
      print_usage(stdout);
      *exit_code = 0;
      return std::nullopt;
    } else if (name == "--sizes") {
      sizes_text = std::string(value);
    } else if (name == "--json") {
      opts.json_path = std::string(value);
    } else if (name == "--max-seconds") {
      char* end = nullptr;
      const std::string text(value);
      opts.max_seconds = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(opts.max_seconds > 0) || opts.max_seconds > 3600) {
        std::fprintf(stderr, "iceoryx_bench: bad --max-seconds '%s'\n", text.c_str());
        *exit_code = 2;
        return std::nullopt;
      }
    } else {
      std::fprintf(stderr, "iceoryx_bench: unknown option '%s' (see --help)\n", argv[i]);
      *exit_code = 2;
      return std::nullopt;
    }
  }
  std::string error;
  auto sizes = benchutil::parse_size_list(sizes_text, kMinSize, &error);
  if (!sizes) {
    std::fprintf(stderr, "iceoryx_bench: --sizes: %s\n", error.c_str());
    *exit_code = 2;
    return std::nullopt;
  }
  opts.sizes = std::move(*sizes);
  return opts;
}

// ---- Plan ----------------------------------------------------------------------------------

struct SizePlan {
  size_t size = 0;
  uint64_t queue = 0;   // subscriber queue capacity
  uint64_t chunks = 0;  // chunks in this size's mempool
  uint64_t stream_warmup = 0;
  uint64_t stream_count = 0;
  uint64_t pp_warmup = 0;
  uint64_t pp_count = 0;
};

uint64_t round8(uint64_t n) {
  return (n + 7) / 8 * 8;
}

SizePlan plan_for(size_t size) {
  SizePlan p;
  p.size = size;
  p.queue = std::clamp<uint64_t>(64 * kMiB / size, 2, 256);
  p.chunks = p.queue + 4;  // queue + one taken + one loaned + spare
  p.stream_count = std::clamp<uint64_t>(kStreamBytes / size, 64, 200000);
  p.stream_warmup = std::max<uint64_t>(p.stream_count / 20, 2 * p.chunks);
  p.pp_count = std::clamp<uint64_t>(kPingPongBytes / size, 200, 5000);
  p.pp_warmup = std::clamp<uint64_t>(p.pp_count / 10, 5, 100);
  return p;
}

// Mempools (payload size -> chunk count), ascending as RouDi requires; small pools for
// RouDi's own topics and the acks come on top of the per-size pools.
std::map<uint64_t, uint64_t> mempools(const std::vector<SizePlan>& plans) {
  std::map<uint64_t, uint64_t> pools = {{128, 512}, {1024, 128}, {16 * kKiB, 64}, {128 * kKiB, 16}};
  for (const auto& p : plans) pools[round8(p.size)] += p.chunks;
  return pools;
}

uint64_t mempool_bytes(const std::map<uint64_t, uint64_t>& pools) {
  uint64_t total = 0;
  for (const auto& [size, count] : pools) total += (size + kChunkOverhead) * count;
  return total;
}

std::string roudi_config(const std::map<uint64_t, uint64_t>& pools) {
  std::string toml = "[general]\nversion = 1\n\n[[segment]]\n";
  for (const auto& [size, count] : pools) {
    toml += strf("\n[[segment.mempool]]\nsize = %llu\ncount = %llu\n",
                 static_cast<unsigned long long>(size), static_cast<unsigned long long>(count));
  }
  return toml;
}

// ---- Pipes between the processes -----------------------------------------------------------

// Writes all of `len` bytes (messages are small: one write each, atomic below PIPE_BUF).
bool write_all(int fd, const void* data, size_t len) {
  const auto* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly `len` bytes before `deadline_ns`; false on timeout, EOF or error.
bool read_all(int fd, void* data, size_t len, int64_t deadline_ns) {
  auto* p = static_cast<char*>(data);
  while (len > 0) {
    const int64_t left_ms = (deadline_ns - now_ns()) / 1000000;
    if (left_ms <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    const int r = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) continue;
    const ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

enum class Op : int32_t { kQuit = 0, kSize = 1, kStream = 2, kPingPong = 3 };

struct Command {  // publisher -> subscriber
  Op op = Op::kQuit;
  uint32_t index = 0;      // kSize: which size
  uint64_t warmup = 0;     // kPingPong: samples below this sequence number are not kept
  int64_t timeout_ns = 0;  // how long the subscriber waits for the phase's last payload
};

struct Report {  // subscriber -> publisher, after kSize (ready) and after each phase
  int32_t ok = 0;
  uint32_t pad = 0;
  uint64_t received = 0;
  uint64_t dropped = 0;  // sequence gaps + iceoryx's hasMissedData
  int64_t last_take_ns = 0;
  double p50_ns = 0, p99_ns = 0, p999_ns = 0;
  char error[200] = {};
};

struct Row {  // publisher -> parent
  uint64_t size = 0;
  int32_t pingpong = 0;
  uint32_t pad = 0;
  uint64_t count = 0;
  uint64_t dropped = 0;
  double gbps = 0, cpu_us_per_mib = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0;
};

// ---- iceoryx helpers (child processes only) ------------------------------------------------

iox::capro::IdString_t id(const std::string& s) {
  return iox::capro::IdString_t(iox::cxx::TruncateToCapacity, s.c_str());
}

void init_runtime(const std::string& name) {
  iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                           iox::log::LogLevelOutput::kHideLogLevel);
  iox::runtime::PoshRuntime::initRuntime(
      iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
}

iox::capro::ServiceDescription data_topic(pid_t parent, uint32_t index) {
  return {id(kIceoryxTag), id(strf("data%u", index)), id(strf("%d", static_cast<int>(parent)))};
}

iox::capro::ServiceDescription ack_topic(pid_t parent) {
  return {id(kIceoryxTag), id("ack"), id(strf("%d", static_cast<int>(parent)))};
}

uint64_t load_u64(const void* p, size_t offset) {
  uint64_t v = 0;
  std::memcpy(&v, static_cast<const char*>(p) + offset, 8);
  return v;
}

void store_u64(void* p, size_t offset, uint64_t v) {
  std::memcpy(static_cast<char*>(p) + offset, &v, 8);
}

// Waits until `subscriber` has a chunk or `deadline_ns` passes; returns the chunk or nullptr.
const void* take_until(iox::popo::UntypedSubscriber& subscriber, iox::popo::WaitSet<>& waitset,
                       int64_t deadline_ns) {
  while (true) {
    auto taken = subscriber.take();
    if (!taken.has_error()) return taken.value();
    if (taken.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) return nullptr;
    const int64_t left = deadline_ns - now_ns();
    if (left <= 0) return nullptr;
    waitset.timedWait(iox::units::Duration::fromNanoseconds(std::min<int64_t>(left, 100000000)));
  }
}

template <typename Predicate>
bool wait_for(Predicate done, int64_t timeout_ns) {
  const int64_t deadline = now_ns() + timeout_ns;
  while (!done()) {
    if (now_ns() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

int64_t nearest_rank(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

// ---- Subscriber process --------------------------------------------------------------------

class Subscriber {
 public:
  Subscriber(const std::vector<SizePlan>& plans, pid_t parent, int cmd_fd, int report_fd)
      : plans_(plans), parent_(parent), cmd_fd_(cmd_fd), report_fd_(report_fd) {}

  int run() {
    init_runtime(strf("%s_sub_%d", kIceoryxTag, static_cast<int>(parent_)));
    iox::popo::UntypedPublisher ack(ack_topic(parent_));
    std::optional<iox::popo::UntypedSubscriber> sub;
    std::optional<iox::popo::WaitSet<>> waitset;
    uint32_t index = 0;
    while (true) {
      Command cmd;
      if (!read_all(cmd_fd_, &cmd, sizeof cmd, now_ns() + 120 * int64_t{1000000000})) {
        std::fprintf(stderr, "iceoryx_bench subscriber: no command from the publisher\n");
        return 1;
      }
      Report report;
      switch (cmd.op) {
        case Op::kQuit:
          return 0;
        case Op::kSize: {
          waitset.reset();
          sub.reset();
          index = cmd.index;
          iox::popo::SubscriberOptions options;
          options.queueCapacity = plans_[index].queue;
          options.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
          sub.emplace(data_topic(parent_, index), options);
          waitset.emplace();
          const bool attached =
              !waitset->attachState(*sub, iox::popo::SubscriberState::HAS_DATA).has_error();
          const bool subscribed = wait_for(
              [&] { return sub->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED; },
              cmd.timeout_ns);
          report.ok = attached && subscribed;
          if (!report.ok) fail(&report, attached ? "not subscribed in time" : "waitset attach");
          break;
        }
        case Op::kStream:
          if (sub) stream(*sub, *waitset, cmd, &report);
          break;
        case Op::kPingPong:
          if (sub) ping_pong(*sub, *waitset, ack, plans_[index].size, cmd, &report);
          break;
      }
      if (!sub && cmd.op != Op::kSize) fail(&report, "no subscriber");
      if (!write_all(report_fd_, &report, sizeof report)) return 1;
    }
  }

 private:
  static void fail(Report* report, const std::string& why) {
    report->ok = 0;
    std::snprintf(report->error, sizeof report->error, "%s", why.c_str());
  }

  // Checks the sequence word of one payload; true on the phase's last one.
  static bool account(uint64_t word, uint64_t* expected, Report* report) {
    const uint64_t seq = word & ~kLastFlag;
    if (seq > *expected) report->dropped += seq - *expected;
    if (seq < *expected) report->ok = 0;  // reordered or duplicated
    *expected = seq + 1;
    ++report->received;
    return (word & kLastFlag) != 0;
  }

  void stream(iox::popo::UntypedSubscriber& sub, iox::popo::WaitSet<>& waitset, const Command& cmd,
              Report* report) {
    report->ok = 1;
    const int64_t deadline = now_ns() + cmd.timeout_ns;
    uint64_t expected = 0;
    while (true) {
      const void* p = take_until(sub, waitset, deadline);
      if (p == nullptr) return fail(report, "stream: timed out waiting for payloads");
      const bool last = account(load_u64(p, 8), &expected, report);
      sub.release(p);
      if (last) {
        report->last_take_ns = now_ns();
        break;
      }
    }
    if (sub.hasMissedData()) ++report->dropped;
    if (!report->ok) fail(report, "stream: payloads out of order");
  }

  void ping_pong(iox::popo::UntypedSubscriber& sub, iox::popo::WaitSet<>& waitset,
                 iox::popo::UntypedPublisher& ack, size_t size, const Command& cmd,
                 Report* report) {
    report->ok = 1;
    const int64_t deadline = now_ns() + cmd.timeout_ns;
    std::vector<int64_t> samples;
    uint64_t expected = 0;
    while (true) {
      const void* p = take_until(sub, waitset, deadline);
      const int64_t t1 = now_ns();
      if (p == nullptr) return fail(report, "pingpong: timed out waiting for a ping");
      const auto t0 = static_cast<int64_t>(load_u64(p, 0));
      const uint64_t word = load_u64(p, 8);
      const uint64_t seq = word & ~kLastFlag;
      const auto fill = static_cast<const unsigned char*>(p)[size - 1];
      const bool last = account(word, &expected, report);
      sub.release(p);
      if (t0 <= 0 || t0 > t1 || fill != static_cast<unsigned char>(seq & 0xff)) {
        return fail(report, "pingpong: stale or overwritten payload");
      }
      if (seq >= cmd.warmup) samples.push_back(t1 - t0);
      auto loaned = ack.loan(8);
      if (loaned.has_error()) return fail(report, "pingpong: ack loan failed");
      store_u64(loaned.value(), 0, seq);
      ack.publish(loaned.value());
      if (last) break;
    }
    if (sub.hasMissedData()) ++report->dropped;
    std::sort(samples.begin(), samples.end());
    report->p50_ns = static_cast<double>(nearest_rank(samples, 50));
    report->p99_ns = static_cast<double>(nearest_rank(samples, 99));
    report->p999_ns = static_cast<double>(nearest_rank(samples, 99.9));
    report->received = samples.size();
    if (!report->ok) fail(report, "pingpong: payloads out of order");
  }

  const std::vector<SizePlan>& plans_;
  pid_t parent_;
  int cmd_fd_;
  int report_fd_;
};

// ---- Publisher process (drives the run) ----------------------------------------------------

class Publisher {
 public:
  Publisher(const std::vector<SizePlan>& plans, pid_t parent, pid_t subscriber, int cmd_fd,
            int report_fd, int row_fd, int64_t end_ns)
      : plans_(plans),
        parent_(parent),
        cmd_fd_(cmd_fd),
        report_fd_(report_fd),
        row_fd_(row_fd),
        end_ns_(end_ns) {
    if (clock_getcpuclockid(subscriber, &sub_clock_) != 0) sub_clock_ = -1;
  }

  int run() {
    init_runtime(strf("%s_pub_%d", kIceoryxTag, static_cast<int>(parent_)));
    iox::popo::SubscriberOptions ack_options;
    ack_options.queueCapacity = 4;
    iox::popo::UntypedSubscriber ack(ack_topic(parent_), ack_options);
    iox::popo::WaitSet<> ack_waitset;
    if (ack_waitset.attachState(ack, iox::popo::SubscriberState::HAS_DATA).has_error()) {
      return error("waitset attach failed");
    }
    if (!wait_for([&] { return ack.getSubscriptionState() == iox::SubscribeState::SUBSCRIBED; },
                  10 * int64_t{1000000000})) {
      return error("ack topic not subscribed in time");
    }
    size_t max_size = 0;
    for (const auto& p : plans_) max_size = std::max(max_size, p.size);
    source_.assign(max_size, 0x5a);  // the producer's warm buffer (pre-faulted)

    int status = 0;
    for (uint32_t i = 0; i < plans_.size() && status == 0; ++i) {
      const int64_t left = end_ns_ - now_ns();
      if (left <= 0) {
        std::fprintf(stderr, "iceoryx_bench: time budget spent; skipped %s and larger\n",
                     format_size(plans_[i].size).c_str());
        break;
      }
      // Sizes left share what is left of the budget.
      const int64_t budget = left / static_cast<int64_t>(plans_.size() - i);
      status = run_size(i, ack, ack_waitset, budget);
    }
    Command quit;
    write_all(cmd_fd_, &quit, sizeof quit);
    return status;
  }

 private:
  int error(const std::string& what) {
    std::fprintf(stderr, "iceoryx_bench publisher: %s\n", what.c_str());
    return 1;
  }

  bool command(const Command& cmd, Report* report, int64_t timeout_ns) {
    if (!write_all(cmd_fd_, &cmd, sizeof cmd)) return false;
    return read_all(report_fd_, report, sizeof *report, now_ns() + timeout_ns);
  }

  int64_t total_cpu_ns() const {
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID) + (sub_clock_ == -1 ? 0 : clock_ns(sub_clock_));
  }

  int run_size(uint32_t index, iox::popo::UntypedSubscriber& ack, iox::popo::WaitSet<>& waitset,
               int64_t budget_ns) {
    const SizePlan& plan = plans_[index];
    const std::string name = format_size(plan.size);
    constexpr int64_t kSecond = 1000000000;
    iox::popo::PublisherOptions options;
    options.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    iox::popo::UntypedPublisher pub(data_topic(parent_, index), options);

    Command cmd;
    cmd.op = Op::kSize;
    cmd.index = index;
    cmd.timeout_ns = 10 * kSecond;
    Report report;
    if (!command(cmd, &report, 15 * kSecond) || !report.ok) {
      return error(name + ": subscriber not ready: " + report.error);
    }
    if (!wait_for([&] { return pub.hasSubscribers(); }, 10 * kSecond)) {
      return error(name + ": publisher sees no subscriber");
    }

    // Stream: warm-up (touches every chunk of the pool in both processes), then measured.
    cmd = Command{};
    cmd.op = Op::kStream;
    cmd.timeout_ns = budget_ns + 20 * kSecond;
    uint64_t count = 0;
    int64_t start = 0;
    for (const bool measured : {false, true}) {
      const uint64_t n = measured ? plan.stream_count : plan.stream_warmup;
      const int64_t cap = now_ns() + budget_ns * (measured ? 45 : 10) / 100;
      if (!write_all(cmd_fd_, &cmd, sizeof cmd)) return error("subscriber gone");
      const int64_t cpu0 = total_cpu_ns();
      start = now_ns();
      count = 0;
      for (bool last = false; !last; ++count) {
        last = count + 1 >= n || (count >= 16 && now_ns() > cap);
        auto loaned = pub.loan(static_cast<uint32_t>(plan.size));
        if (loaned.has_error()) return error(name + ": stream loan failed (mempool exhausted)");
        void* p = loaned.value();
        std::memcpy(p, source_.data(), plan.size);
        store_u64(p, 0, 0);
        store_u64(p, 8, count | (last ? kLastFlag : 0));
        pub.publish(p);
      }
      if (!read_all(report_fd_, &report, sizeof report, now_ns() + cmd.timeout_ns) || !report.ok) {
        return error(name + ": stream: " + report.error);
      }
      const int64_t cpu = total_cpu_ns() - cpu0;
      if (report.received != count || report.dropped != 0) {
        std::fprintf(stderr, "iceoryx_bench: %s stream: sent %llu, received %llu, dropped %llu\n",
                     name.c_str(), static_cast<unsigned long long>(count),
                     static_cast<unsigned long long>(report.received),
                     static_cast<unsigned long long>(report.dropped));
      }
      if (!measured) continue;
      Row row;
      row.size = plan.size;
      row.count = count;
      row.dropped = report.dropped + (count - std::min(count, report.received));
      const double bytes = static_cast<double>(plan.size) * static_cast<double>(count);
      const int64_t elapsed = report.last_take_ns - start;
      row.gbps = elapsed > 0 ? bytes / static_cast<double>(elapsed) : 0;
      row.cpu_us_per_mib = static_cast<double>(cpu) / 1e3 / (bytes / static_cast<double>(kMiB));
      if (!write_all(row_fd_, &row, sizeof row)) return error("parent gone");
    }

    // Ping-pong: one in flight, acked over the second topic.
    cmd = Command{};
    cmd.op = Op::kPingPong;
    cmd.warmup = plan.pp_warmup;
    cmd.timeout_ns = budget_ns + 20 * kSecond;
    if (!write_all(cmd_fd_, &cmd, sizeof cmd)) return error("subscriber gone");
    const uint64_t total = plan.pp_warmup + plan.pp_count;
    const int64_t cap = now_ns() + budget_ns * 35 / 100;
    const int64_t deadline = now_ns() + cmd.timeout_ns;
    count = 0;
    for (bool last = false; !last; ++count) {
      last = count + 1 >= total || (count >= plan.pp_warmup + 10 && now_ns() > cap);
      auto loaned = pub.loan(static_cast<uint32_t>(plan.size));
      if (loaned.has_error()) return error(name + ": pingpong loan failed");
      auto* p = static_cast<unsigned char*>(loaned.value());
      std::memcpy(p, source_.data(), plan.size);
      p[plan.size - 1] = static_cast<unsigned char>(count & 0xff);
      store_u64(p, 8, count | (last ? kLastFlag : 0));
      store_u64(p, 0, static_cast<uint64_t>(now_ns()));
      pub.publish(p);
      const void* a = take_until(ack, waitset, deadline);
      if (a == nullptr) return error(name + ": pingpong: no ack in time");
      const uint64_t acked = load_u64(a, 0);
      ack.release(a);
      if (acked != count) return error(name + ": pingpong: ack out of order");
    }
    if (!read_all(report_fd_, &report, sizeof report, now_ns() + 10 * kSecond) || !report.ok) {
      return error(name + ": pingpong: " + report.error);
    }
    Row row;
    row.size = plan.size;
    row.pingpong = 1;
    row.count = report.received;
    row.dropped = report.dropped;
    row.p50_us = report.p50_ns / 1e3;
    row.p99_us = report.p99_ns / 1e3;
    row.p999_us = report.p999_ns / 1e3;
    if (!write_all(row_fd_, &row, sizeof row)) return error("parent gone");
    return 0;
  }

  const std::vector<SizePlan>& plans_;
  pid_t parent_;
  int cmd_fd_;
  int report_fd_;
  int row_fd_;
  int64_t end_ns_;
  clockid_t sub_clock_ = -1;
  std::vector<unsigned char> source_;
};

// ---- Parent: RouDi, children, cleanup, report ----------------------------------------------

std::string read_file(const std::string& path);

// A reason why another RouDi seems to be running, or nullopt.
std::optional<std::string> other_roudi() {
  if (DIR* proc = opendir("/proc")) {
    std::optional<std::string> found;
    while (dirent* e = readdir(proc)) {
      if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
      // "pid (comm) state ...": a zombie RouDi does not count.
      const std::string stat = read_file(strf("/proc/%s/stat", e->d_name));
      const size_t close_paren = stat.rfind(')');
      if (stat.find("(iox-roudi)") == std::string::npos || close_paren + 2 >= stat.size() ||
          stat[close_paren + 2] == 'Z' || stat[close_paren + 2] == 'X') {
        continue;
      }
      found = strf("iox-roudi is already running (pid %s)", e->d_name);
      break;
    }
    closedir(proc);
    if (found) return found;
  }
  const int lock = open("/tmp/iox-unique-roudi.lock", O_RDONLY | O_CLOEXEC);
  if (lock >= 0) {
    const bool held = flock(lock, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(lock);
    if (held) return std::string("a RouDi holds /tmp/iox-unique-roudi.lock");
  }
  const int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock >= 0) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "/tmp/roudi");
    const bool up = connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(sock);
    if (up) return std::string("a RouDi answers on /tmp/roudi");
  }
  return std::nullopt;
}

std::set<std::string> list_dir(const char* path) {
  std::set<std::string> names;
  if (DIR* dir = opendir(path)) {
    while (dirent* e = readdir(dir)) {
      const std::string_view n = e->d_name;
      if (n != "." && n != "..") names.insert(std::string(n));
    }
    closedir(dir);
  }
  return names;
}

std::string read_file(const std::string& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  return text;
}

bool write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  return std::fclose(f) == 0 && ok;
}

// Waits for `pid` until `deadline_ns`; returns the wait status, or nullopt on timeout.
std::optional<int> wait_child(pid_t pid, int64_t deadline_ns) {
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;
    if (now_ns() > deadline_ns) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return strf("exited with status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return strf("was killed by signal %d", WTERMSIG(status));
  return "ended";
}

pid_t fork_child(int death_signal) {
  const pid_t parent = getpid();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(127);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) signal(sig, SIG_DFL);
  }
  return pid;
}

// Removes what an earlier run that was SIGKILLed left in /tmp: its temporary directory and
// the iceoryx sockets and locks of its children (named after the parent's pid).
void remove_stale_files() {
  for (const std::string& name : list_dir("/tmp")) {
    int pid = 0;
    char kind[8] = {};
    if (std::sscanf(name.c_str(), "iceoryx_bench.%d.", &pid) == 1 && pid > 0 && kill(pid, 0) != 0 &&
        errno == ESRCH) {
      const std::string dir = "/tmp/" + name;
      for (const std::string& file : list_dir(dir.c_str())) unlink((dir + "/" + file).c_str());
      rmdir(dir.c_str());
    } else if (std::sscanf(name.c_str(), "iceoryx_bench_%3[a-z]_%d", kind, &pid) == 2 && pid > 0 &&
               kill(pid, 0) != 0 && errno == ESRCH) {
      unlink(("/tmp/" + name).c_str());
    }
  }
}

std::string json_number(double v) {
  return std::isfinite(v) ? strf("%.6g", v) : "null";
}

std::string to_json(const std::vector<Row>& rows) {
  std::string out = "{\"benchmark\": \"iceoryx_bench\",\n";
  out +=
      " \"description\": \"iceoryx 2.0.3 (Debian packages), zero-copy untyped publish/subscribe "
      "between two processes through its own RouDi. stream: loan, memcpy from a warm buffer, "
      "publish, back to back; the subscriber queue blocks the publisher (publish spins with "
      "yield while the queue is full); the subscriber takes and releases without reading the "
      "payload; GB/s = bytes / (last take - first loan); CPU of both processes. pingpong: one "
      "payload in flight, stamp right before publish, one-way latency to take, ack over a second "
      "iceoryx topic. Both ends wait in an iceoryx WaitSet.\",\n";
  out += strf(" \"cpus\": %ld,\n", sysconf(_SC_NPROCESSORS_ONLN));
  out += strf(" \"load_average_end\": \"%s\",\n", load_average().c_str());
  out += " \"results\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    out += i == 0 ? "\n  " : ",\n  ";
    if (r.pingpong) {
      out += strf(
          "{\"size\": %llu, \"mode\": \"pingpong\", \"count\": %llu, \"p50_us\": %s, "
          "\"p99_us\": %s, \"p999_us\": %s}",
          static_cast<unsigned long long>(r.size), static_cast<unsigned long long>(r.count),
          json_number(r.p50_us).c_str(), json_number(r.p99_us).c_str(),
          json_number(r.p999_us).c_str());
    } else {
      out += strf(
          "{\"size\": %llu, \"mode\": \"stream\", \"count\": %llu, \"gbps\": %s, "
          "\"cpu_us_per_mib\": %s, \"dropped\": %llu}",
          static_cast<unsigned long long>(r.size), static_cast<unsigned long long>(r.count),
          json_number(r.gbps).c_str(), json_number(r.cpu_us_per_mib).c_str(),
          static_cast<unsigned long long>(r.dropped));
    }
  }
  out += "]}\n";
  return out;
}

void print_table(const std::vector<Row>& rows) {
  std::printf("%-9s %-9s %7s %9s %12s %9s %9s %9s %7s\n", "size", "mode", "count", "GB/s",
              "cpu us/MiB", "p50 us", "p99 us", "p99.9 us", "dropped");
  for (const Row& r : rows) {
    if (r.pingpong) {
      std::printf("%-9s %-9s %7llu %9s %12s %9.2f %9.2f %9.2f %7llu\n", format_size(r.size).c_str(),
                  "pingpong", static_cast<unsigned long long>(r.count), "", "", r.p50_us, r.p99_us,
                  r.p999_us, static_cast<unsigned long long>(r.dropped));
    } else {
      std::printf("%-9s %-9s %7llu %9.2f %12.1f %9s %9s %9s %7llu\n", format_size(r.size).c_str(),
                  "stream", static_cast<unsigned long long>(r.count), r.gbps, r.cpu_us_per_mib, "",
                  "", "", static_cast<unsigned long long>(r.dropped));
    }
  }
}

class Run {
 public:
  explicit Run(Options opts) : opts_(std::move(opts)) {}

  ~Run() {
    kill_children();
    stop_roudi();
    if (!dir_.empty()) {
      unlink((dir_ + "/roudi.toml").c_str());
      unlink((dir_ + "/roudi.log").c_str());
      rmdir(dir_.c_str());
    }
  }

  int run() {
    const int64_t t_begin = now_ns();
    for (size_t size : opts_.sizes) plans_.push_back(plan_for(size));
    const auto pools = mempools(plans_);
    const uint64_t shm = mempool_bytes(pools);
    if (shm > kShmLimit) {
      std::fprintf(stderr,
                   "iceoryx_bench: these sizes need %.2f GiB of iceoryx mempools (limit %.1f GiB); "
                   "use fewer or smaller sizes\n",
                   static_cast<double>(shm) / kGiB, static_cast<double>(kShmLimit) / kGiB);
      return 2;
    }
    if (access(ICEORYX_BENCH_ROUDI, X_OK) != 0) {
      std::fprintf(stderr, "iceoryx_bench: %s not found (apt-get install iceoryx)\n",
                   ICEORYX_BENCH_ROUDI);
      return 1;
    }
    // A RouDi of a run that was just killed may take a moment to go.
    auto other = other_roudi();
    for (int i = 0; other && i < 30 && !g_stop; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      other = other_roudi();
    }
    if (other) {
      std::fprintf(stderr,
                   "iceoryx_bench: %s; refusing to share it (stop it first: this benchmark "
                   "starts and stops its own RouDi)\n",
                   other->c_str());
      return 1;
    }
    shm_before_ = list_dir("/dev/shm");
    if (shm_before_.count("iceoryx_mgmt")) {
      std::fprintf(stderr,
                   "iceoryx_bench: note: stale /dev/shm/iceoryx_mgmt from an earlier RouDi; "
                   "the new RouDi replaces it\n");
    }
    shm_before_.erase("iceoryx_mgmt");  // checked at the end whatever was there before
    shm_before_.erase(group_name());
    remove_stale_files();
    tmp_before_ = list_dir("/tmp");
    if (int rc = start_roudi(pools, shm); rc != 0) return rc;
    const double startup_s = static_cast<double>(now_ns() - t_begin) / 1e9;

    const int rc = run_children();
    const int stop_rc = stop_roudi();
    const int leftovers_rc = check_leftovers();
    if (rc == 0) {
      print_table(rows_);
      if (!opts_.json_path.empty() && !write_file(opts_.json_path, to_json(rows_))) {
        std::fprintf(stderr, "iceoryx_bench: cannot write %s\n", opts_.json_path.c_str());
        return 1;
      }
    }
    std::printf("RouDi startup %.2f s, total %.1f s; load average %s\n", startup_s,
                static_cast<double>(now_ns() - t_begin) / 1e9, load_average().c_str());
    return rc != 0 ? rc : (stop_rc != 0 ? stop_rc : leftovers_rc);
  }

 private:
  int start_roudi(const std::map<uint64_t, uint64_t>& pools, uint64_t shm) {
    std::string dir_template = strf("/tmp/iceoryx_bench.%d.XXXXXX", static_cast<int>(getpid()));
    if (mkdtemp(dir_template.data()) == nullptr) {
      std::fprintf(stderr, "iceoryx_bench: mkdtemp: %s\n", std::strerror(errno));
      return 1;
    }
    dir_ = dir_template;
    const std::string config = dir_ + "/roudi.toml";
    const std::string log = dir_ + "/roudi.log";
    if (!write_file(config, roudi_config(pools))) {
      std::fprintf(stderr, "iceoryx_bench: cannot write %s\n", config.c_str());
      return 1;
    }
    std::printf("iceoryx_bench: starting RouDi with %.0f MiB of mempools\n",
                static_cast<double>(shm) / kMiB);
    // SIGKILL: the children die with this process, and RouDi cannot shut down cleanly while its
    // apps die (it aborts, or hangs on a lock a killed app held); the next run's RouDi takes
    // over the stale shared memory, and this program removes the rest.
    roudi_ = fork_child(SIGKILL);
    if (roudi_ < 0) {
      std::fprintf(stderr, "iceoryx_bench: fork: %s\n", std::strerror(errno));
      return 1;
    }
    if (roudi_ == 0) {
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execl(ICEORYX_BENCH_ROUDI, "iox-roudi", "-c", config.c_str(), "-l", "warning",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const int64_t deadline = now_ns() + 15 * int64_t{1000000000};
    while (read_file(log).find("RouDi is ready for clients") == std::string::npos) {
      int status = 0;
      if (waitpid(roudi_, &status, WNOHANG) == roudi_) {
        roudi_ = -1;
        std::fprintf(stderr, "iceoryx_bench: RouDi %s before it was ready; its log:\n%s\n",
                     describe(status).c_str(), read_file(log).c_str());
        return 1;
      }
      if (g_stop) return 130;
      if (now_ns() > deadline) {
        std::fprintf(stderr, "iceoryx_bench: RouDi not ready in 15 s; its log:\n%s\n",
                     read_file(log).c_str());
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
  }

  int run_children() {
    int cmd[2], report[2], rows[2];
    if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0 ||
        pipe2(rows, O_CLOEXEC) != 0) {
      std::fprintf(stderr, "iceoryx_bench: pipe: %s\n", std::strerror(errno));
      return 1;
    }
    const pid_t parent = getpid();
    // Measurements end by here (RouDi is up already); the children get a grace period on top.
    const int64_t end_ns = now_ns() + static_cast<int64_t>(opts_.max_seconds * 1e9) - 1000000000;
    sub_ = fork_child(SIGKILL);
    if (sub_ == 0) {
      close(cmd[1]);
      close(report[0]);
      close(rows[0]);
      close(rows[1]);
      std::exit(Subscriber(plans_, parent, cmd[0], report[1]).run());
    }
    pub_ = sub_ < 0 ? -1 : fork_child(SIGKILL);
    if (pub_ == 0) {
      close(cmd[0]);
      close(report[1]);
      close(rows[0]);
      std::exit(Publisher(plans_, parent, sub_, cmd[1], report[0], rows[1], end_ns).run());
    }
    for (int fd : {cmd[0], cmd[1], report[0], report[1], rows[1]}) close(fd);
    if (sub_ < 0 || pub_ < 0) {
      close(rows[0]);
      std::fprintf(stderr, "iceoryx_bench: fork: %s\n", std::strerror(errno));
      return 1;
    }

    const int64_t kill_at = end_ns + 30 * int64_t{1000000000};
    int rc = 0;
    bool rows_open = true;
    while (pub_ > 0 || sub_ > 0 || rows_open) {
      if (rows_open) {
        Row row;
        pollfd pfd{rows[0], POLLIN, 0};
        if (poll(&pfd, 1, 5) > 0) {
          if (read_all(rows[0], &row, sizeof row, now_ns() + 1000000000)) {
            rows_.push_back(row);
          } else {
            rows_open = false;
          }
        }
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      for (auto [pid, name] : {std::pair{&pub_, "publisher"}, std::pair{&sub_, "subscriber"}}) {
        int status = 0;
        if (*pid > 0 && waitpid(*pid, &status, WNOHANG) == *pid) {
          *pid = -1;
          if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            std::fprintf(stderr, "iceoryx_bench: %s %s\n", name, describe(status).c_str());
            rc = 1;
            kill_children();
          }
        }
      }
      if (g_stop) {
        std::fprintf(stderr, "iceoryx_bench: interrupted; stopping\n");
        rc = 130;
        kill_children();
        break;
      }
      if (now_ns() > kill_at) {
        std::fprintf(stderr, "iceoryx_bench: the run did not finish in time; killed it\n");
        rc = 1;
        kill_children();
        break;
      }
    }
    close(rows[0]);
    return rc;
  }

  void kill_children() {
    for (auto [pid, role] : {std::pair{&pub_, "pub"}, std::pair{&sub_, "sub"}}) {
      if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, nullptr, 0);
        *pid = -1;
        killed_any_ = true;
        killed_apps_.push_back(strf("%s_%s_%d", kIceoryxTag, role, static_cast<int>(getpid())));
      }
    }
  }

  // RouDi 2.0.3 aborts on shutdown when a registered app is already gone (kill(2) fails with
  // ESRCH), so after killing an app give RouDi's monitoring time to drop it first.
  void wait_for_roudi_to_drop_killed_apps() {
    const int64_t deadline = now_ns() + 4 * int64_t{1000000000};
    while (!killed_apps_.empty() && now_ns() < deadline) {
      const std::string log = read_file(dir_ + "/roudi.log");
      std::erase_if(killed_apps_, [&](const std::string& app) {
        return log.find(app + " not responding") != std::string::npos;
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // SIGTERM and wait: RouDi removes its shared memory on a clean shutdown.
  int stop_roudi() {
    if (roudi_ <= 0) return 0;
    wait_for_roudi_to_drop_killed_apps();
    kill(roudi_, SIGTERM);
    auto status = wait_child(roudi_, now_ns() + 10 * int64_t{1000000000});
    if (!status) {
      std::fprintf(stderr, "iceoryx_bench: RouDi did not stop in 10 s; killed it\n");
      kill(roudi_, SIGKILL);
      waitpid(roudi_, nullptr, 0);
      roudi_ = -1;
      return 1;
    }
    roudi_ = -1;
    if (!(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)) {
      std::fprintf(stderr, "iceoryx_bench: RouDi %s; its log:\n%s\n", describe(*status).c_str(),
                   read_file(dir_ + "/roudi.log").c_str());
      return 1;
    }
    return 0;
  }

  // Anything iceoryx left in /dev/shm or /tmp (sockets, locks) is reported and removed.
  int check_leftovers() {
    int rc = 0;
    for (const char* dir : {"/dev/shm", "/tmp"}) {
      const auto& before = std::string_view(dir) == "/tmp" ? tmp_before_ : shm_before_;
      for (const std::string& name : list_dir(dir)) {
        if (before.count(name) || name.rfind("iceoryx_bench.", 0) == 0) continue;
        const bool ours = std::string_view(dir) == "/dev/shm"
                              ? (name == "iceoryx_mgmt" || name == group_name())
                              : (name.rfind(kIceoryxTag, 0) == 0 || name.rfind("roudi", 0) == 0 ||
                                 name == "iox-unique-roudi.lock");
        if (!ours) continue;
        unlink((std::string(dir) + "/" + name).c_str());
        // A killed app leaves its socket and lock; only a clean run must leave nothing.
        if (killed_any_) continue;
        std::fprintf(stderr, "iceoryx_bench: leftover %s/%s (removed)\n", dir, name.c_str());
        rc = 1;
      }
    }
    return rc;
  }

  static std::string group_name() {
    const group* g = getgrgid(getegid());
    return g != nullptr ? g->gr_name : "";
  }

  Options opts_;
  std::vector<SizePlan> plans_;
  std::vector<Row> rows_;
  std::set<std::string> shm_before_, tmp_before_;
  std::string dir_;
  pid_t roudi_ = -1, sub_ = -1, pub_ = -1;
  std::vector<std::string> killed_apps_;
  bool killed_any_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  auto opts = parse_options(argc, argv, &exit_code);
  if (!opts) return exit_code;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return Run(std::move(*opts)).run();
}

// soak: a bounded mixed workload on the SharedMemoryConnector, across real processes, for a
// fixed time; memory, fd and mapping counts of every process are sampled and their slopes
// reported (they must be flat).
//
// One producer process and three consumer processes: edges p->c1, p->c2 (fan-out: the same
// request on both), p->c3, plus one idle edge per consumer (recv with short deadlines: expected
// timeouts). Channel mode (send/recv, send_loan) and descriptor mode (put/get, commit; the
// descriptors travel over a pipe); loans dropped without commit; cancellations (cleanup of
// requests whose descriptors are never read, and of requests racing their reader); puts and
// loans with tiny deadlines on a full arena; consumers that hold views a random while. Every
// received payload is verified (data checksum + content pattern + key + size).
//
// The harness (this process) samples every --sample-ms, for each process and itself: RSS
// (/proc/<pid>/status VmRSS, RssAnon, RssShmem), open fds (/proc/<pid>/fd) and mappings
// (/proc/<pid>/maps lines), each the minimum of 10 reads spread over the period (a 24 MiB
// payload in flight is not a trend; a leak raises the minimum too), plus the producer's connector
// metrics (in_use_bytes, in_flight), which the producer publishes in a shared page. At the end:
// least-squares slopes over the second half of the run, totals, errors by kind, a PASS/FAIL verdict
// (runs of 60 s and more) and, with --json, every sample and the summary.
//
//   soak [--seconds S=300] [--seed N=1] [--json FILE] [--sample-ms MS=1000] [--arena-mib M=16]
//        [--pace-us US=3000] [--recv-deadline-ms MS=20] [--leak-guard-mib M=2048]
// --recv-deadline-ms: channel-mode recv uses random deadlines of 1..MS ms (0: no deadline).
// --leak-guard-mib: the run is aborted (FAIL) once the producer holds more shared memory.
// Exit status: 0 when every criterion passes; 1 otherwise (corruption, lost payloads,
// unexpected errors, a crashed or hung process, or a slope over its limit).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "omniconn/connector.h"
#include "omniconn/payload.h"
#include "test_util.h"

namespace omniconn::soak {
namespace {

using namespace std::chrono_literals;
using testing::check_pattern;
using testing::fill_pattern;

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr int kConsumers = 3;
constexpr size_t kSizes[] = {64, 4 * kKiB, 64 * kKiB, 1 * kMiB, 8 * kMiB, 24 * kMiB};
constexpr int kSizeWeights[] = {28, 26, 22, 15, 6, 3};  // percent
constexpr size_t kMaxSize = 24 * kMiB;
constexpr auto kLongDeadline = 20s;  // a call that needs longer than this is an error
constexpr auto kDrainTimeout = 90s;  // after the run: producer + consumers finish within this

// ----------------------------------------------------------------------------------------------
// Counters shared by all processes (one anonymous shared mapping made before the forks).

enum Counter : int {
  kPayloadsOut,     // producer: payloads written (put/commit/send/send_loan), end markers excluded
  kBytesOut,        // producer: tensor bytes of those
  kChannelOut,      // producer: channel-mode payloads
  kDescriptorOut,   // producer: descriptor-mode payloads
  kFanout,          // producer: requests sent to c1 and c2
  kLoansCommitted,  // producer: loans committed or sent
  kLoansDropped,    // producer: loans dropped without commit
  kCleanups,        // producer: cleanup(request_id) calls
  kArenaFull,       // producer: puts/loans with a tiny deadline refused on a full arena (expected)
  kBursts,          // producer: arena-full bursts
  kPayloadsIn,      // consumer: payloads received and verified
  kBytesIn,         // consumer: tensor bytes of those
  kCancelledRead,   // consumer: cancellable payloads that arrived before their cleanup
  kCancelledGone,   // consumer: cancellable descriptors whose get found them cleaned up (expected)
  kIdleTimeouts,    // consumer: recv timeouts on the idle edge (expected)
  kRecvTimeouts,    // consumer: channel recv timeouts (expected)
  kTakeTimeouts,    // consumer: of those, timeouts while mapping a payload's segment (see lost)
  kHeld,            // consumer: views held a while before release
  kCorrupt,         // any: a payload failed verification
  kLost,            // any: a payload that must have arrived did not (computed at the end)
  kUnexpected,      // any: an error that the workload does not provoke
  kCounterCount
};

const char* const kCounterNames[] = {
    "payloads_out",    "bytes_out",     "channel_out",    "descriptor_out", "fanout",
    "loans_committed", "loans_dropped", "cleanups",       "arena_full",     "bursts",
    "payloads_in",     "bytes_in",      "cancelled_read", "cancelled_gone", "idle_timeouts",
    "recv_timeouts",   "take_timeouts", "views_held",     "corrupt",        "lost",
    "unexpected"};
static_assert(sizeof kCounterNames / sizeof kCounterNames[0] == kCounterCount);

struct Shared {
  std::atomic<uint64_t> counters[kCounterCount];
  // Non-cancellable payloads the producer sent on channel edge p->c<k>, and that c<k> received.
  std::atomic<uint64_t> channel_expected[kConsumers];
  std::atomic<uint64_t> channel_received[kConsumers];
  // The producer's connector metrics, refreshed after every operation.
  std::atomic<uint64_t> shm_in_use_bytes, shm_in_flight, shm_capacity_bytes;
  std::atomic<uint64_t> final_in_flight, final_in_use_bytes;
  std::atomic<int> consumers_done;
  std::atomic<int> producer_done;
  std::atomic<int> abort;
  std::atomic<int> error_lock;
  char first_error[1024];
};

Shared* g_shared = nullptr;

void count(Counter c, uint64_t n = 1) {
  g_shared->counters[c].fetch_add(n, std::memory_order_relaxed);
}
uint64_t counter(Counter c) {
  return g_shared->counters[c].load();
}

// Counts an error of `kind` and keeps the first message for the report.
void fail(Counter kind, const std::string& what) {
  count(kind);
  static std::atomic<int> printed{0};  // per process: the first 20 only
  int n = printed.fetch_add(1);
  if (n < 20) {
    std::fprintf(stderr, "soak: pid %d: %s: %s\n", ::getpid(), kCounterNames[kind], what.c_str());
  } else if (n == 20) {
    std::fprintf(stderr, "soak: pid %d: further errors counted, not printed\n", ::getpid());
  }
  int expect = 0;
  if (g_shared->error_lock.compare_exchange_strong(expect, 1)) {
    std::snprintf(g_shared->first_error, sizeof g_shared->first_error, "pid %d: %s: %s", ::getpid(),
                  kCounterNames[kind], what.c_str());
  }
}

bool aborted() {
  return g_shared->abort.load(std::memory_order_relaxed) != 0;
}

// ----------------------------------------------------------------------------------------------
// A pipe of framed messages (descriptor mode), readable with a timeout.

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) std::abort();
  }
  void close_read() { close_fd(&fds_[0]); }
  void close_write() { close_fd(&fds_[1]); }
  void write(const std::string& s) const {
    uint32_t n = static_cast<uint32_t>(s.size());
    std::string frame(sizeof n, '\0');
    std::memcpy(frame.data(), &n, sizeof n);
    frame += s;
    const char* p = frame.data();
    size_t left = frame.size();
    while (left > 0) {
      ssize_t w = ::write(fds_[1], p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) std::abort();
      p += w;
      left -= static_cast<size_t>(w);
    }
  }
  // 1: a message; 0: nothing within `timeout`; -1: closed.
  int read(std::string* s, std::chrono::milliseconds timeout) const {
    pollfd p{fds_[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r == 0) return 0;
    if (r < 0) return errno == EINTR ? 0 : -1;
    uint32_t n = 0;
    if (!read_all(&n, sizeof n)) return -1;
    s->resize(n);
    return read_all(s->data(), n) ? 1 : -1;
  }

 private:
  static void close_fd(int* fd) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  bool read_all(void* dst, size_t n) const {
    char* p = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t r = ::read(fds_[0], p, n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int fds_[2];
};

// Descriptor-mode message: kind, cancellable flag, seq, size, then the descriptor bytes.
struct PipeMsg {
  enum Kind : uint8_t { kDesc = 1, kEnd = 2 };
  Kind kind = kDesc;
  uint8_t cancellable = 0;
  uint64_t seq = 0;
  uint64_t size = 0;
  std::string desc;

  std::string encode() const {
    std::string s(18, '\0');
    s[0] = static_cast<char>(kind);
    s[1] = static_cast<char>(cancellable);
    std::memcpy(s.data() + 2, &seq, 8);
    std::memcpy(s.data() + 10, &size, 8);
    return s + desc;
  }
  static std::optional<PipeMsg> decode(const std::string& s) {
    if (s.size() < 18) return std::nullopt;
    PipeMsg m;
    m.kind = static_cast<Kind>(s[0]);
    m.cancellable = static_cast<uint8_t>(s[1]);
    std::memcpy(&m.seq, s.data() + 2, 8);
    std::memcpy(&m.size, s.data() + 10, 8);
    m.desc = s.substr(18);
    return m;
  }
};

// ----------------------------------------------------------------------------------------------
// Payloads: one u8 tensor "data" of n bytes (fill_pattern(seq)), a data checksum, and fields
// {seq, n, c (cancellable), e (end marker)}.

std::string request_id(uint64_t seq) {
  return "r" + std::to_string(seq);
}
std::string consumer_stage(int k) {
  return "c" + std::to_string(k + 1);
}
std::string idle_stage(int k) {
  return "idle" + std::to_string(k + 1);
}

Value fields_of(uint64_t seq, size_t n, bool cancellable, bool end) {
  Value::Map m;
  m.emplace("seq", Value(static_cast<int64_t>(seq)));
  m.emplace("n", Value(static_cast<int64_t>(n)));
  m.emplace("c", Value(cancellable ? 1 : 0));
  m.emplace("e", Value(end ? 1 : 0));
  return Value(std::move(m));
}

// `src` (n bytes, already filled) or nullptr for the loan path.
PayloadBuilder builder_of(uint64_t seq, size_t n, const std::byte* src, bool cancellable,
                          bool end = false) {
  PayloadBuilder b;
  (void)b.add_tensor("data", DType::kU8, {static_cast<int64_t>(n)}, src);
  (void)b.set_fields(fields_of(seq, n, cancellable, end));
  b.set_checksum_data(true);
  return b;
}

struct Received {
  uint64_t seq = 0;
  size_t n = 0;
  bool cancellable = false;
  bool end = false;
};

// Verifies a received payload against its key; an error message, or nullopt when good.
std::optional<std::string> verify(const PayloadView& view, const std::string& to_stage,
                                  Received* out) {
  auto r = PayloadReader::open(view.bytes(), ReadOptions{/*verify_data=*/true});
  if (!r.ok()) return "payload does not validate: " + r.status().ToString();
  if (!r->has_data_checksum()) return "payload carries no data checksum";
  auto fields = r->fields();
  if (!fields.ok()) return "fields: " + fields.status().ToString();
  auto int_field = [&](const char* name) -> std::optional<int64_t> {
    const Value* v = fields->find(name);
    return v ? v->as_int() : std::nullopt;
  };
  auto seq = int_field("seq"), n = int_field("n"), c = int_field("c"), e = int_field("e");
  if (!seq || !n || !c || !e || *seq < 0 || *n < 0) return "fields missing or of the wrong type";
  out->seq = static_cast<uint64_t>(*seq);
  out->n = static_cast<size_t>(*n);
  out->cancellable = *c != 0;
  out->end = *e != 0;
  const PayloadKey& key = view.key();
  if (key.request_id != (out->end ? std::string("end") : request_id(out->seq)) ||
      key.from_stage != "p" || key.to_stage != to_stage) {
    return "key " + key.str() + " does not match seq " + std::to_string(out->seq) + " to " +
           to_stage;
  }
  const TensorView* t = r->find("data");
  if (t == nullptr) return "no tensor 'data'";
  if (t->data.size() != out->n) {
    return "tensor of " + std::to_string(t->data.size()) + " bytes, fields say " +
           std::to_string(out->n);
  }
  if (reinterpret_cast<uintptr_t>(t->data.data()) % kPayloadAlignment != 0) {
    return "tensor data not 64-byte aligned";
  }
  if (!check_pattern(t->data.data(), out->n, out->seq)) {
    return "content mismatch (seq " + std::to_string(out->seq) + ", " + std::to_string(out->n) +
           " bytes)";
  }
  return std::nullopt;
}

// ----------------------------------------------------------------------------------------------
// Configuration.

struct Config {
  int seconds = 300;
  uint64_t seed = 1;
  std::string json;
  int sample_ms = 1000;
  size_t arena_mib = 16;
  int pace_us = 3000;
  int recv_deadline_ms = 20;      // channel recv: random deadlines of 1..N ms; 0: no deadline
  int64_t leak_guard_mib = 2048;  // the producer's in_use_bytes above this aborts the run
  std::string ns;
};

Result<std::unique_ptr<Connector>> make_connector(const Config& cfg) {
  Value::Map extra;
  extra.emplace("namespace", Value(cfg.ns));
  extra.emplace("arena_bytes", Value(static_cast<int64_t>(cfg.arena_mib * kMiB)));
  extra.emplace("max_payload_bytes", Value(static_cast<int64_t>(64 * kMiB)));
  extra.emplace("max_inflight", Value(int64_t{256}));
  return create_connector({"SharedMemoryConnector", Value(std::move(extra))});
}

// ----------------------------------------------------------------------------------------------
// The producer.

class Producer {
 public:
  Producer(const Config& cfg, Deadline end, std::vector<Pipe>* pipes)
      : cfg_(cfg), end_(end), pipes_(pipes), rng_(cfg.seed * 1000003 + 17) {}

  int run() {
    auto c = make_connector(cfg_);
    if (!c.ok()) {
      fail(kUnexpected, "producer connector: " + c.status().ToString());
      return 1;
    }
    conn_ = std::move(*c);
    src_.resize(kMaxSize);
    // The idle edges exist from the start: one hello each, then nothing.
    for (int k = 0; k < kConsumers; ++k) {
      fill_pattern(src_.data(), 64, 0);
      Status st = conn_->send({"r0", "p", idle_stage(k)}, builder_of(0, 64, src_.data(), false),
                              deadline_in(kLongDeadline));
      if (!st.ok()) fail(kUnexpected, "hello on " + idle_stage(k) + ": " + st.ToString());
    }
    auto next_burst = Clock::now() + 5s;
    while (Clock::now() < end_ && !aborted()) {
      run_due_cleanups(false);
      if (Clock::now() >= next_burst) {
        arena_full_burst();
        next_burst = Clock::now() + std::chrono::milliseconds(4000 + rng_() % 4000);
      } else {
        one_op();
      }
      publish_metrics();
      std::this_thread::sleep_for(
          std::chrono::microseconds(rng_() % (2 * static_cast<unsigned>(cfg_.pace_us) + 1)));
    }
    finish();
    return 0;
  }

 private:
  size_t pick_size() {
    int r = static_cast<int>(rng_() % 100);
    for (size_t i = 0; i < std::size(kSizes); ++i) {
      if (r < kSizeWeights[i]) return kSizes[i];
      r -= kSizeWeights[i];
    }
    return kSizes[0];
  }
  int pick_consumer() { return static_cast<int>(rng_() % kConsumers); }
  uint64_t next_seq() { return ++seq_; }

  PayloadKey key(uint64_t seq, int k) const {
    return PayloadKey{request_id(seq), "p", consumer_stage(k)};
  }

  void sent(size_t n, bool channel, uint64_t payloads = 1) {
    count(kPayloadsOut, payloads);
    count(kBytesOut, n * payloads);
    count(channel ? kChannelOut : kDescriptorOut, payloads);
  }

  // Channel mode: send to one consumer, or the same request to c1 and c2.
  void op_send(bool fanout, bool cancellable) {
    uint64_t seq = next_seq();
    size_t n = pick_size();
    if (n >= 8 * kMiB) run_due_cleanups(true);
    fill_pattern(src_.data(), n, seq);
    PayloadBuilder b = builder_of(seq, n, src_.data(), cancellable);
    std::vector<int> to = fanout ? std::vector<int>{0, 1} : std::vector<int>{pick_consumer()};
    for (int k : to) {
      Status st = conn_->send(key(seq, k), b, deadline_in(kLongDeadline));
      if (!st.ok()) {
        fail(kUnexpected, "send " + key(seq, k).str() + ": " + st.ToString());
        continue;
      }
      sent(n, true);
      if (!cancellable) g_shared->channel_expected[k].fetch_add(1);
    }
    if (fanout) count(kFanout);
    if (cancellable) cancel_soon(seq);
  }

  // Descriptor mode: put, descriptor over the pipe (one put per consumer for a fan-out).
  void op_put(bool fanout, bool cancellable) {
    uint64_t seq = next_seq();
    size_t n = pick_size();
    if (n >= 8 * kMiB) run_due_cleanups(true);
    fill_pattern(src_.data(), n, seq);
    PayloadBuilder b = builder_of(seq, n, src_.data(), cancellable);
    std::vector<int> to = fanout ? std::vector<int>{0, 1} : std::vector<int>{pick_consumer()};
    for (int k : to) {
      auto d = conn_->put(key(seq, k), b, deadline_in(kLongDeadline));
      if (!d.ok()) {
        fail(kUnexpected, "put " + key(seq, k).str() + ": " + d.status().ToString());
        continue;
      }
      sent(n, false);
      (*pipes_)[k].write(
          PipeMsg{PipeMsg::kDesc, static_cast<uint8_t>(cancellable), seq, n, d->bytes}.encode());
    }
    if (fanout) count(kFanout);
    if (cancellable) cancel_soon(seq);
  }

  // Zero-copy path: loan, fill in place, then commit (descriptor) or send_loan (channel).
  void op_loan(bool channel) {
    uint64_t seq = next_seq();
    size_t n = pick_size();
    if (n >= 8 * kMiB) run_due_cleanups(true);
    int k = pick_consumer();
    PayloadBuilder b = builder_of(seq, n, nullptr, false);
    auto loan = conn_->loan(b.encoded_size(), deadline_in(kLongDeadline));
    if (!loan.ok()) return fail(kUnexpected, "loan: " + loan.status().ToString());
    auto layout = b.write_layout(loan->bytes());
    if (!layout.ok()) return fail(kUnexpected, "write_layout: " + layout.status().ToString());
    auto data = mutable_tensor_data(loan->bytes(), 0);
    if (!data.ok()) return fail(kUnexpected, "mutable_tensor_data: " + data.status().ToString());
    fill_pattern(data->data(), n, seq);
    Status fin = finish_payload(loan->bytes());
    if (!fin.ok()) return fail(kUnexpected, "finish_payload: " + fin.ToString());
    if (channel) {
      Status st = conn_->send_loan(std::move(*loan), key(seq, k), deadline_in(kLongDeadline));
      if (!st.ok()) return fail(kUnexpected, "send_loan: " + st.ToString());
      g_shared->channel_expected[k].fetch_add(1);
    } else {
      auto d = conn_->commit(std::move(*loan), key(seq, k), deadline_in(kLongDeadline));
      if (!d.ok()) return fail(kUnexpected, "commit: " + d.status().ToString());
      (*pipes_)[k].write(PipeMsg{PipeMsg::kDesc, 0, seq, n, d->bytes}.encode());
    }
    sent(n, channel);
    count(kLoansCommitted);
  }

  // A loan partly written, then dropped without commit: its space must come back.
  void op_loan_drop() {
    size_t n = pick_size();
    if (n >= 8 * kMiB) run_due_cleanups(true);
    auto loan = conn_->loan(n, deadline_in(kLongDeadline));
    if (!loan.ok()) return fail(kUnexpected, "loan to drop: " + loan.status().ToString());
    std::memset(loan->bytes().data(), 0xAB, std::min<size_t>(n, 4096));
    count(kLoansDropped);
  }

  // A put whose descriptor is never sent; cleaned up a little later.
  void op_put_unread() {
    uint64_t seq = next_seq();
    size_t n = kSizes[rng_() % 4];  // at most 1 MiB: pending ones must not starve the arena
    fill_pattern(src_.data(), n, seq);
    auto d = conn_->put(key(seq, pick_consumer()), builder_of(seq, n, src_.data(), true),
                        deadline_in(kLongDeadline));
    if (!d.ok()) return fail(kUnexpected, "unread put: " + d.status().ToString());
    sent(n, false);
    schedule_cleanup(seq, std::chrono::microseconds(rng_() % 50000));
  }

  // Fills the arena with unread 4 MiB puts until one with a tiny deadline is refused; a loan
  // with a tiny deadline is refused too; then everything is cleaned up.
  void arena_full_burst() {
    run_due_cleanups(true);
    count(kBursts);
    const size_t n = 4 * kMiB;
    std::vector<uint64_t> seqs;
    bool refused = false;
    for (int i = 0; i < 64 && !refused; ++i) {
      uint64_t seq = next_seq();
      fill_pattern(src_.data(), n, seq);
      auto deadline = deadline_in(std::chrono::microseconds(rng_() % 1000));
      auto d = conn_->put(key(seq, 2), builder_of(seq, n, src_.data(), true), deadline);
      if (d.ok()) {
        sent(n, false);
        seqs.push_back(seq);
      } else if (d.status().code() == StatusCode::kResourceExhausted) {
        count(kArenaFull);
        refused = true;
      } else {
        fail(kUnexpected, "burst put: " + d.status().ToString());
        break;
      }
    }
    if (!refused) {
      fail(kUnexpected, "arena never full after " + std::to_string(seqs.size()) + " puts");
    } else {
      // Loans with a tiny deadline until one is refused (a reader may free space meanwhile);
      // the ones granted are dropped without commit.
      std::vector<Loan> granted;
      for (int i = 0; i < 64; ++i) {
        auto loan = conn_->loan(n, deadline_in(500us));
        if (loan.ok()) {
          granted.push_back(std::move(*loan));
          continue;
        }
        if (loan.status().code() == StatusCode::kResourceExhausted) {
          count(kArenaFull);
        } else {
          fail(kUnexpected, "loan on a full arena: " + loan.status().ToString());
        }
        break;
      }
      count(kLoansDropped, granted.size());
    }
    for (uint64_t seq : seqs) cleanup(seq);
    publish_metrics();
  }

  void one_op() {
    int r = static_cast<int>(rng_() % 100);
    if (r < 20) return op_send(false, false);
    if (r < 30) return op_send(true, false);
    if (r < 40) return op_loan(true);
    if (r < 55) return op_put(false, false);
    if (r < 63) return op_put(true, false);
    if (r < 71) return op_loan(false);
    if (r < 78) return op_loan_drop();
    if (r < 86) return op_put_unread();
    if (r < 93) return op_send(false, true);
    return op_put(false, true);
  }

  // A cancellation racing the reader: at once, or within 20 ms.
  void cancel_soon(uint64_t seq) {
    if (rng_() % 2 == 0) return cleanup(seq);
    schedule_cleanup(seq, std::chrono::microseconds(rng_() % 20000));
  }
  void schedule_cleanup(uint64_t seq, Clock::duration after) {
    pending_.push_back({seq, Clock::now() + after});
  }
  void cleanup(uint64_t seq) {
    Status st = conn_->cleanup(request_id(seq));
    if (!st.ok()) fail(kUnexpected, "cleanup: " + st.ToString());
    count(kCleanups);
  }
  void run_due_cleanups(bool all) {
    auto now = Clock::now();
    std::erase_if(pending_, [&](const auto& p) {
      if (!all && p.second > now) return false;
      cleanup(p.first);
      return true;
    });
  }

  void publish_metrics() {
    (void)conn_->sweep(deadline_in(kLongDeadline));
    Metrics m = conn_->metrics();
    g_shared->shm_in_use_bytes.store(m.in_use_bytes);
    g_shared->shm_in_flight.store(m.in_flight);
    g_shared->shm_capacity_bytes.store(m.capacity_bytes);
  }

  void finish() {
    run_due_cleanups(true);
    fill_pattern(src_.data(), 64, 0);
    for (int k = 0; k < kConsumers; ++k) {
      Status st = conn_->send({"end", "p", consumer_stage(k)},
                              builder_of(0, 64, src_.data(), false, /*end=*/true),
                              deadline_in(kLongDeadline));
      if (!st.ok()) fail(kUnexpected, "end marker: " + st.ToString());
      (*pipes_)[k].write(PipeMsg{PipeMsg::kEnd, 0, 0, 0, {}}.encode());
    }
    // The writer must outlive its readers' gets: wait until every consumer is done.
    auto limit = Clock::now() + kDrainTimeout;
    while (g_shared->consumers_done.load() < kConsumers && !aborted() && Clock::now() < limit) {
      std::this_thread::sleep_for(5ms);
    }
    publish_metrics();  // sweeps
    Metrics m = conn_->metrics();
    g_shared->final_in_flight.store(m.in_flight);
    g_shared->final_in_use_bytes.store(m.in_use_bytes);
    g_shared->producer_done.store(1);
  }

  const Config& cfg_;
  Deadline end_;
  std::vector<Pipe>* pipes_;
  std::mt19937_64 rng_;
  std::unique_ptr<Connector> conn_;
  std::vector<std::byte> src_;
  uint64_t seq_ = 0;
  std::vector<std::pair<uint64_t, Deadline>> pending_;
};

// ----------------------------------------------------------------------------------------------
// A consumer: a channel thread (p->c<k>), a descriptor thread (the pipe) and an idle-edge thread.

// Views kept a random while (0-40 ms) before release, by a thread of their own; at most 12.
class Holder {
 public:
  explicit Holder(uint64_t seed) : rng_(seed), thread_([this] { run(); }) {}
  ~Holder() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void hold(PayloadView v) {
    PayloadView evicted;  // released outside the lock
    {
      std::lock_guard lock(mu_);
      if (held_.size() >= 12) {
        evicted = std::move(held_.front().first);
        held_.pop_front();
      }
      held_.emplace_back(std::move(v), Clock::now() + std::chrono::microseconds(rng_() % 40000));
    }
    cv_.notify_all();
    count(kHeld);
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      auto now = Clock::now();
      Deadline next = now + 100ms;
      for (auto it = held_.begin(); it != held_.end();) {
        if (it->second <= now) {
          it = held_.erase(it);
        } else {
          next = std::min(next, it->second);
          ++it;
        }
      }
      cv_.wait_until(lock, next);
    }
    held_.clear();
  }

  std::mt19937_64 rng_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<PayloadView, Deadline>> held_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

class Consumer {
 public:
  Consumer(const Config& cfg, int k, Deadline end, Pipe* pipe)
      : cfg_(cfg), k_(k), stage_(consumer_stage(k)), end_(end), pipe_(pipe) {}

  int run() {
    auto c = make_connector(cfg_);
    if (!c.ok()) {
      fail(kUnexpected, stage_ + " connector: " + c.status().ToString());
      return 1;
    }
    conn_ = std::move(*c);
    holder_ = std::make_unique<Holder>(cfg_.seed * 37 + static_cast<uint64_t>(k_) * 11 + 2);
    std::thread channel([this] { channel_loop(); });
    std::thread descriptors([this] { descriptor_loop(); });
    std::thread idle([this] { idle_loop(); });
    channel.join();
    descriptors.join();
    stop_idle_.store(true);
    idle.join();
    holder_.reset();
    g_shared->channel_received[k_].store(channel_received_);
    g_shared->consumers_done.fetch_add(1);
    // Stay connected until the producer has read its final metrics.
    auto limit = Clock::now() + kDrainTimeout;
    while (!g_shared->producer_done.load() && !aborted() && Clock::now() < limit) {
      std::this_thread::sleep_for(5ms);
    }
    return 0;
  }

 private:
  // Past the end of the run plus the drain timeout, a missing end marker is an error.
  bool overdue() const { return Clock::now() > end_ + kDrainTimeout; }

  // Verifies and accounts one payload; true for the end marker.
  bool accept(PayloadView view, bool channel) {
    Received r;
    if (auto bad = verify(view, stage_, &r)) {
      fail(kCorrupt, stage_ + (channel ? " recv: " : " get: ") + *bad);
      return false;
    }
    if (r.end) return true;
    count(kPayloadsIn);
    count(kBytesIn, r.n);
    if (r.cancellable) count(kCancelledRead);
    if (channel && !r.cancellable) ++channel_received_;
    holder_->hold(std::move(view));
    return false;
  }

  // Short random recv deadlines (--recv-deadline-ms), or none (0).
  void channel_loop() {
    std::mt19937_64 rng(cfg_.seed * 31 + static_cast<uint64_t>(k_) * 7 + 1);
    while (!aborted()) {
      Deadline deadline =
          cfg_.recv_deadline_ms > 0
              ? deadline_in(std::chrono::microseconds(
                    1000 + rng() % (static_cast<uint64_t>(cfg_.recv_deadline_ms) * 1000)))
              : no_deadline();
      auto view = conn_->recv("p", stage_, deadline);
      if (!view.ok()) {
        const Status& st = view.status();
        if (st.code() != StatusCode::kTimeout) {
          fail(kUnexpected, stage_ + " recv: " + st.ToString());
          std::this_thread::sleep_for(10ms);
        } else {
          // A timeout while mapping a payload ("payload <key>: ...") must not lose it: losses
          // show as lost (channel counts) and as a producer not drained at the end.
          count(kRecvTimeouts);
          if (st.message().rfind("payload ", 0) == 0) count(kTakeTimeouts);
        }
        if (overdue()) return fail(kLost, stage_ + ": no end marker on the channel");
        continue;
      }
      if (accept(std::move(*view), true)) break;
    }
  }

  void descriptor_loop() {
    std::string frame;
    while (!aborted()) {
      int got = pipe_->read(&frame, 200ms);
      if (got < 0) return fail(kUnexpected, stage_ + ": descriptor pipe closed");
      if (got == 0) {
        if (overdue()) return fail(kLost, stage_ + ": no end message on the pipe");
        continue;
      }
      auto msg = PipeMsg::decode(frame);
      if (!msg) return fail(kUnexpected, stage_ + ": bad pipe message");
      if (msg->kind == PipeMsg::kEnd) break;
      auto view = conn_->get(Descriptor{msg->desc}, deadline_in(kLongDeadline));
      if (!view.ok()) {
        if (msg->cancellable && view.status().code() == StatusCode::kNotFound) {
          count(kCancelledGone);
        } else if (msg->cancellable) {
          fail(kUnexpected, stage_ + " get (cancellable): " + view.status().ToString());
        } else {
          fail(kLost, stage_ + " get " + request_id(msg->seq) + ": " + view.status().ToString());
        }
        continue;
      }
      Received r;
      if (auto bad = verify(*view, stage_, &r)) {
        fail(kCorrupt, stage_ + " get: " + *bad);
        continue;
      }
      if (r.seq != msg->seq || r.n != msg->size) {
        fail(kCorrupt, stage_ + " get: payload seq/size do not match the descriptor's message");
        continue;
      }
      count(kPayloadsIn);
      count(kBytesIn, r.n);
      if (r.cancellable) count(kCancelledRead);
      holder_->hold(std::move(*view));
    }
  }

  void idle_loop() {
    std::mt19937_64 rng(cfg_.seed * 41 + static_cast<uint64_t>(k_));
    auto hello = conn_->recv("p", idle_stage(k_), deadline_in(kLongDeadline));
    if (!hello.ok())
      return fail(kUnexpected, "hello on the idle edge: " + hello.status().ToString());
    Received r;
    if (auto bad = verify(*hello, idle_stage(k_), &r)) return fail(kCorrupt, "hello: " + *bad);
    hello->release();
    while (!stop_idle_.load() && !aborted()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 60));
      auto view = conn_->recv("p", idle_stage(k_),
                              deadline_in(std::chrono::microseconds(500 + rng() % 2500)));
      if (view.ok()) {
        fail(kUnexpected, "a payload on the idle edge");
      } else if (view.status().code() == StatusCode::kTimeout) {
        count(kIdleTimeouts);
      } else {
        fail(kUnexpected, "idle recv: " + view.status().ToString());
      }
    }
  }

  const Config& cfg_;
  const int k_;
  const std::string stage_;
  const Deadline end_;
  Pipe* pipe_;
  std::unique_ptr<Connector> conn_;
  std::unique_ptr<Holder> holder_;  // destroyed before conn_
  std::atomic<bool> stop_idle_{false};
  uint64_t channel_received_ = 0;
};

// ----------------------------------------------------------------------------------------------
// Sampling /proc.

struct ProcSample {
  int64_t rss_kib = -1, anon_kib = -1, shmem_kib = -1, fds = -1, maps = -1;
};

// Field-wise minimum (-1: not read).
ProcSample min_of(const ProcSample& a, const ProcSample& b) {
  auto m = [](int64_t x, int64_t y) { return x < 0 ? y : y < 0 ? x : std::min(x, y); };
  return {m(a.rss_kib, b.rss_kib), m(a.anon_kib, b.anon_kib), m(a.shmem_kib, b.shmem_kib),
          m(a.fds, b.fds), m(a.maps, b.maps)};
}

int64_t status_kib(const std::string& status, const char* field) {
  auto at = status.find(field);
  if (at == std::string::npos) return -1;
  return std::strtoll(status.c_str() + at + std::strlen(field), nullptr, 10);
}

ProcSample sample_proc(pid_t pid) {
  ProcSample s;
  std::string base = "/proc/" + std::to_string(pid);
  {
    std::ifstream in(base + "/status");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string st = ss.str();
    s.rss_kib = status_kib(st, "VmRSS:");
    s.anon_kib = status_kib(st, "RssAnon:");
    s.shmem_kib = status_kib(st, "RssShmem:");
  }
  if (DIR* d = ::opendir((base + "/fd").c_str())) {
    int64_t n = 0;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    s.fds = n - (pid == ::getpid() ? 1 : 0);  // not the directory we are reading
  }
  {
    std::ifstream in(base + "/maps");
    if (in) {
      int64_t n = 0;
      std::string line;
      while (std::getline(in, line)) ++n;
      s.maps = n;
    }
  }
  return s;
}

// One sample period: `procs` is the minimum of kSubReads reads spread over the period (the
// baseline: a transient 24 MiB payload in flight does not count, a leak does), `last` the
// last read as is.
constexpr int kSubReads = 10;
struct Sample {
  double t = 0;  // seconds since start, at the end of the period
  std::vector<ProcSample> procs;
  std::vector<ProcSample> last;
  uint64_t in_use_bytes = 0, in_flight = 0, capacity_bytes = 0;
};

// Least-squares slope of y over x; 0 with fewer than two points.
double slope(const std::vector<double>& x, const std::vector<double>& y) {
  size_t n = x.size();
  if (n < 2) return 0;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  return sxx > 0 ? sxy / sxx : 0;
}

// Per minute (KiB/min for memory): rss, anon, fds, maps from the period minima; raw_rss from
// the last read of each period.
struct Slopes {
  double rss = 0, raw_rss = 0, anon = 0, fds = 0, maps = 0;
};

// ----------------------------------------------------------------------------------------------
// The harness.

int usage() {
  std::fprintf(stderr,
               "usage: soak [--seconds S=300] [--seed N=1] [--json FILE] [--sample-ms MS=1000] "
               "[--arena-mib M=16] [--pace-us US=3000] [--recv-deadline-ms MS=20 (0: none)] "
               "[--leak-guard-mib M=2048]\n");
  return 2;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

int harness(Config cfg) {
  cfg.ns = testing::unique_namespace("soak");
  void* mem =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  g_shared = new (mem) Shared{};

  const auto start = Clock::now();
  const Deadline end = start + std::chrono::seconds(cfg.seconds);
  std::vector<Pipe> pipes(kConsumers);
  const std::vector<std::string> names = {"harness", "producer", "c1", "c2", "c3"};
  std::vector<pid_t> pids = {::getpid()};
  pids.push_back(testing::spawn([&] {
    for (auto& p : pipes) p.close_read();
    return Producer(cfg, end, &pipes).run();
  }));
  for (int k = 0; k < kConsumers; ++k) {
    pids.push_back(testing::spawn([&, k] {
      for (int j = 0; j < kConsumers; ++j) {
        pipes[j].close_write();
        if (j != k) pipes[j].close_read();
      }
      return Consumer(cfg, k, end, &pipes[k]).run();
    }));
  }
  for (auto& p : pipes) p.close_read(), p.close_write();
  std::printf("soak: %d s, seed %" PRIu64
              ", arena %zu MiB, recv deadlines %s, namespace %s; "
              "producer %d, consumers %d %d %d\n",
              cfg.seconds, cfg.seed, cfg.arena_mib,
              cfg.recv_deadline_ms > 0
                  ? ("1.." + std::to_string(cfg.recv_deadline_ms) + " ms").c_str()
                  : "none",
              cfg.ns.c_str(), pids[1], pids[2], pids[3], pids[4]);
  std::fflush(stdout);

  // Sample until the end of the run; a child that exits early aborts the run.
  std::vector<Sample> samples;
  samples.reserve(static_cast<size_t>(cfg.seconds) * 1000 / static_cast<size_t>(cfg.sample_ms) + 2);
  std::vector<int> exit_codes(pids.size(), -1);
  auto reap = [&](bool block_until) {
    for (size_t i = 1; i < pids.size(); ++i) {
      if (exit_codes[i] != -1) continue;
      int status = 0;
      pid_t r = ::waitpid(pids[i], &status, block_until ? 0 : WNOHANG);
      if (r == pids[i]) {
        exit_codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
  };
  auto next = start;
  bool early_exit = false, leak_guard = false;
  while (Clock::now() < end) {
    Sample s;
    s.procs.resize(pids.size());
    for (int r = 0; r < kSubReads; ++r) {
      s.last.clear();
      for (pid_t pid : pids) s.last.push_back(sample_proc(pid));
      for (size_t i = 0; i < pids.size(); ++i) s.procs[i] = min_of(s.procs[i], s.last[i]);
      if (r + 1 < kSubReads) {
        std::this_thread::sleep_until(std::min<Deadline>(
            next + std::chrono::milliseconds(cfg.sample_ms) * (r + 1) / kSubReads, end));
      }
    }
    s.t = std::chrono::duration<double>(Clock::now() - start).count();
    s.in_use_bytes = g_shared->shm_in_use_bytes.load();
    s.in_flight = g_shared->shm_in_flight.load();
    s.capacity_bytes = g_shared->shm_capacity_bytes.load();
    samples.push_back(std::move(s));
    reap(false);
    if (static_cast<int64_t>(samples.back().in_use_bytes >> 20) > cfg.leak_guard_mib &&
        !leak_guard) {
      leak_guard = true;
      fail(kUnexpected, "leak guard: the producer holds " +
                            std::to_string(samples.back().in_use_bytes >> 20) +
                            " MiB of shared memory; run aborted");
    }
    if (leak_guard ||
        std::any_of(exit_codes.begin() + 1, exit_codes.end(), [](int c) { return c != -1; })) {
      early_exit = true;
      g_shared->abort.store(1);
      break;
    }
    next += std::chrono::milliseconds(cfg.sample_ms);
    std::this_thread::sleep_until(std::min<Deadline>(next, end));
  }
  // Drain: everyone finishes within the drain timeout, or is killed.
  auto limit = Clock::now() + kDrainTimeout + 30s;
  bool hung = false;
  for (;;) {
    reap(false);
    if (std::all_of(exit_codes.begin() + 1, exit_codes.end(), [](int c) { return c != -1; })) break;
    if (Clock::now() > limit) {
      hung = true;
      for (size_t i = 1; i < pids.size(); ++i) {
        if (exit_codes[i] == -1) ::kill(pids[i], SIGKILL);
      }
      reap(true);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  const double run_s = std::chrono::duration<double>(Clock::now() - start).count();

  // Channel payloads that must have arrived.
  for (int k = 0; k < kConsumers; ++k) {
    uint64_t want = g_shared->channel_expected[k].load();
    uint64_t got = g_shared->channel_received[k].load();
    if (got < want) {
      g_shared->counters[kLost].fetch_add(want - got);
      std::fprintf(stderr, "soak: %s received %" PRIu64 " of %" PRIu64 " channel payloads\n",
                   consumer_stage(k).c_str(), got, want);
    }
  }

  // Slopes over the second half (after warm-up).
  // An aborted run: the second half of what was sampled.
  const double sampled_s = samples.empty() ? 0.0 : samples.back().t;
  const double from_t = std::min<double>(cfg.seconds, sampled_s) / 2.0;
  std::vector<Slopes> slopes(pids.size());
  double shm_in_use_slope = 0, shm_in_flight_slope = 0;
  {
    std::vector<double> x;
    std::vector<std::vector<double>> rss(pids.size()), raw(pids.size()), anon(pids.size()),
        fds(pids.size()), maps(pids.size());
    std::vector<double> in_use, in_flight;
    for (const Sample& s : samples) {
      if (s.t < from_t) continue;
      x.push_back(s.t / 60.0);
      for (size_t i = 0; i < pids.size(); ++i) {
        rss[i].push_back(static_cast<double>(s.procs[i].rss_kib));
        raw[i].push_back(static_cast<double>(s.last[i].rss_kib));
        anon[i].push_back(static_cast<double>(s.procs[i].anon_kib));
        fds[i].push_back(static_cast<double>(s.procs[i].fds));
        maps[i].push_back(static_cast<double>(s.procs[i].maps));
      }
      in_use.push_back(static_cast<double>(s.in_use_bytes) / 1024.0);
      in_flight.push_back(static_cast<double>(s.in_flight));
    }
    for (size_t i = 0; i < pids.size(); ++i) {
      slopes[i] = {slope(x, rss[i]), slope(x, raw[i]), slope(x, anon[i]), slope(x, fds[i]),
                   slope(x, maps[i])};
    }
    shm_in_use_slope = slope(x, in_use);
    shm_in_flight_slope = slope(x, in_flight);
  }

  // Verdicts.
  const bool judge_slopes = cfg.seconds >= 60 && !early_exit;
  bool fd_ok = true, maps_ok = true, rss_ok = true;
  for (const Slopes& s : slopes) {
    fd_ok = fd_ok && std::fabs(s.fds) < 0.5;
    maps_ok = maps_ok && std::fabs(s.maps) < 0.5;
    rss_ok = rss_ok && s.rss < 1024.0;
  }
  bool crashed = hung || (early_exit && !leak_guard);
  for (size_t i = 1; i < pids.size(); ++i) crashed = crashed || exit_codes[i] != 0;
  const uint64_t corrupt = counter(kCorrupt), lost = counter(kLost),
                 unexpected = counter(kUnexpected);
  const uint64_t final_in_flight = g_shared->final_in_flight.load();
  const bool drained = g_shared->producer_done.load() && final_in_flight == 0;
  bool pass = !crashed && corrupt == 0 && lost == 0 && unexpected == 0 && drained;
  if (judge_slopes) pass = pass && fd_ok && maps_ok && rss_ok;

  // Report.
  auto verdict = [&](bool ok) {
    return judge_slopes ? (ok ? "PASS" : "FAIL") : early_exit ? "n/a (aborted)" : "n/a (< 60 s)";
  };
  std::printf("soak: ran %.0f s (workload %d s), %zu samples; slopes over t >= %.0f s\n", run_s,
              cfg.seconds, samples.size(), from_t);
  if (early_exit) {
    std::printf("  run ABORTED at t = %.0f s: %s\n", sampled_s,
                leak_guard ? "leak guard (producer shared memory in use over --leak-guard-mib)"
                           : "a process exited early");
  }
  std::printf("  (RSS, fds, maps: the minimum of %d reads per %d ms period; raw RSS: last read)\n",
              kSubReads, cfg.sample_ms);
  std::printf("  %-9s %12s %12s %12s %9s %9s %9s %5s %5s %5s\n", "process", "RSS KiB/min",
              "raw KiB/min", "anon KiB/min", "fds/min", "maps/min", "RSS KiB", "fds", "maps",
              "exit");
  for (size_t i = 0; i < pids.size(); ++i) {
    const ProcSample last = samples.empty() ? ProcSample{} : samples.back().procs[i];
    std::printf("  %-9s %12.1f %12.1f %12.1f %9.3f %9.3f %9" PRId64 " %5" PRId64 " %5" PRId64
                " %5d\n",
                names[i].c_str(), slopes[i].rss, slopes[i].raw_rss, slopes[i].anon, slopes[i].fds,
                slopes[i].maps, last.rss_kib, last.fds, last.maps, i == 0 ? 0 : exit_codes[i]);
  }
  std::printf(
      "  shm (producer): in_use %.1f KiB/min, in_flight %.3f/min; at the end in_flight %" PRIu64
      ", in_use_bytes %" PRIu64 "\n",
      shm_in_use_slope, shm_in_flight_slope, final_in_flight, g_shared->final_in_use_bytes.load());
  std::printf(
      "  |fd slope| < 0.5/min: %s; |maps slope| < 0.5/min: %s; RSS slope < 1024 KiB/min: "
      "%s\n",
      verdict(fd_ok), verdict(maps_ok), verdict(rss_ok));
  std::printf("  totals: out %" PRIu64 " payloads (%.2f GiB; channel %" PRIu64
              ", descriptor %" PRIu64 ", fan-out requests %" PRIu64 ", loans %" PRIu64
              " committed / %" PRIu64 " dropped), in %" PRIu64
              " verified (%.2f GiB), views held %" PRIu64 "\n",
              counter(kPayloadsOut), static_cast<double>(counter(kBytesOut)) / (1 << 30),
              counter(kChannelOut), counter(kDescriptorOut), counter(kFanout),
              counter(kLoansCommitted), counter(kLoansDropped), counter(kPayloadsIn),
              static_cast<double>(counter(kBytesIn)) / (1 << 30), counter(kHeld));
  std::printf("  expected: idle-edge recv timeouts %" PRIu64 ", channel recv timeouts %" PRIu64
              " (%" PRIu64 " while mapping a payload), arena-full refusals %" PRIu64 " (%" PRIu64
              " bursts), cleanups %" PRIu64 ", cancelled gone %" PRIu64 " / read %" PRIu64 "\n",
              counter(kIdleTimeouts), counter(kRecvTimeouts), counter(kTakeTimeouts),
              counter(kArenaFull), counter(kBursts), counter(kCleanups), counter(kCancelledGone),
              counter(kCancelledRead));
  std::printf("  errors: corrupt %" PRIu64 ", lost %" PRIu64 ", unexpected %" PRIu64 "%s%s\n",
              corrupt, lost, unexpected, crashed ? ", a process crashed or hung" : "",
              drained ? "" : ", producer not drained (in_flight != 0 at the end)");
  if (g_shared->first_error[0]) std::printf("  first error: %s\n", g_shared->first_error);
  std::printf("soak: %s\n", pass ? "PASS" : "FAIL");

  if (!cfg.json.empty()) {
    std::ofstream out(cfg.json);
    out << "{\n  \"config\": {\"seconds\": " << cfg.seconds << ", \"seed\": " << cfg.seed
        << ", \"sample_ms\": " << cfg.sample_ms << ", \"arena_mib\": " << cfg.arena_mib
        << ", \"pace_us\": " << cfg.pace_us << ", \"recv_deadline_ms\": " << cfg.recv_deadline_ms
        << ", \"namespace\": \"" << json_escape(cfg.ns) << "\"},\n  \"processes\": [";
    for (size_t i = 0; i < pids.size(); ++i) {
      out << (i ? ", " : "") << "{\"name\": \"" << names[i] << "\", \"pid\": " << pids[i]
          << ", \"exit\": " << (i == 0 ? 0 : exit_codes[i]) << "}";
    }
    out << "],\n  \"samples\": [\n";
    for (size_t j = 0; j < samples.size(); ++j) {
      const Sample& s = samples[j];
      out << "    {\"t\": " << s.t << ", \"shm\": {\"in_use_bytes\": " << s.in_use_bytes
          << ", \"in_flight\": " << s.in_flight << ", \"capacity_bytes\": " << s.capacity_bytes
          << "}";
      for (size_t i = 0; i < pids.size(); ++i) {
        const ProcSample& p = s.procs[i];
        const ProcSample& l = s.last[i];
        out << ", \"" << names[i] << "\": {\"rss_kib\": " << p.rss_kib
            << ", \"rss_anon_kib\": " << p.anon_kib << ", \"rss_shmem_kib\": " << p.shmem_kib
            << ", \"fds\": " << p.fds << ", \"maps\": " << p.maps
            << ", \"last\": {\"rss_kib\": " << l.rss_kib << ", \"rss_shmem_kib\": " << l.shmem_kib
            << ", \"fds\": " << l.fds << ", \"maps\": " << l.maps << "}}";
      }
      out << "}" << (j + 1 < samples.size() ? "," : "") << "\n";
    }
    out << "  ],\n  \"sampling\": \"per period: the minimum of " << kSubReads
        << " reads (rss_kib, fds, maps; used for the slopes) and the last read as is\""
        << ",\n  \"summary\": {\n    \"run_seconds\": " << run_s
        << ",\n    \"slope_from_t\": " << from_t << ",\n    \"slopes\": {";
    for (size_t i = 0; i < pids.size(); ++i) {
      out << (i ? ", " : "") << "\"" << names[i] << "\": {\"rss_kib_per_min\": " << slopes[i].rss
          << ", \"raw_rss_kib_per_min\": " << slopes[i].raw_rss
          << ", \"rss_anon_kib_per_min\": " << slopes[i].anon
          << ", \"fds_per_min\": " << slopes[i].fds << ", \"maps_per_min\": " << slopes[i].maps
          << "}";
    }
    out << "},\n    \"shm_in_use_kib_per_min\": " << shm_in_use_slope
        << ",\n    \"shm_in_flight_per_min\": " << shm_in_flight_slope
        << ",\n    \"final_in_flight\": " << final_in_flight << ",\n    \"counters\": {";
    for (int c = 0; c < kCounterCount; ++c) {
      out << (c ? ", " : "") << "\"" << kCounterNames[c] << "\": " << counter(Counter(c));
    }
    auto jv = [&](bool ok) { return judge_slopes ? (ok ? "\"PASS\"" : "\"FAIL\"") : "null"; };
    out << "},\n    \"criteria\": {\"fd_slope\": " << jv(fd_ok)
        << ", \"maps_slope\": " << jv(maps_ok) << ", \"rss_slope\": " << jv(rss_ok)
        << "},\n    \"crashed\": " << (crashed ? "true" : "false") << ",\n    \"first_error\": \""
        << json_escape(g_shared->first_error) << "\",\n    \"pass\": " << (pass ? "true" : "false")
        << "\n  }\n}\n";
    if (!out) std::fprintf(stderr, "soak: could not write %s\n", cfg.json.c_str());
  }
  return pass ? 0 : 1;
}

int main_impl(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--seconds" && (v = value())) {
      cfg.seconds = std::atoi(v);
    } else if (a == "--seed" && (v = value())) {
      cfg.seed = std::strtoull(v, nullptr, 10);
    } else if (a == "--json" && (v = value())) {
      cfg.json = v;
    } else if (a == "--sample-ms" && (v = value())) {
      cfg.sample_ms = std::atoi(v);
    } else if (a == "--arena-mib" && (v = value())) {
      cfg.arena_mib = std::strtoull(v, nullptr, 10);
    } else if (a == "--pace-us" && (v = value())) {
      cfg.pace_us = std::atoi(v);
    } else if (a == "--leak-guard-mib" && (v = value())) {
      cfg.leak_guard_mib = std::atoll(v);
    } else if (a == "--recv-deadline-ms" && (v = value())) {
      cfg.recv_deadline_ms = std::atoi(v);
    } else {
      return usage();
    }
  }
  if (cfg.seconds < 1 || cfg.sample_ms < 10 || cfg.arena_mib < 1 || cfg.pace_us < 0 ||
      cfg.recv_deadline_ms < 0) {
    return usage();
  }
  return harness(cfg);
}

}  // namespace
}  // namespace omniconn::soak

int main(int argc, char** argv) {
  return omniconn::soak::main_impl(argc, argv);
}

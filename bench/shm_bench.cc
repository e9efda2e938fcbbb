// shm_bench: SharedMemoryConnector across two processes, against the design targets.
//
// This process is the consumer; it re-executes itself as the producer and drives it with
// control messages on the reverse edge (consumer -> producer). Per payload size it measures
//   copy    send(key, builder over a pre-faulted source) -> recv + release, streaming;
//           throughput at the consumer, next to a warm single-thread memcpy of the same size.
//           CPU time of both processes per MiB moved.
//   copy latency  stamp t0 -> send(builder) | recv returns -> t1, ping-pong (64 B: inline).
//   loan    loan -> write in place -> stamp t0 -> send_loan | recv returns -> t1, ping-pong.
// and at one size:
//   dirty   the 64 B loan handoff after the producer wrote N bytes elsewhere (N = each size
//           from 1 MiB): what the caches, not the payload, add to a large payload's handoff.
//   window  up to W payloads unacknowledged (W = 1, 4, 16, 64: concurrent requests).
//   fanout  every payload sent to K consumer processes (K = 1..4), one edge each.
// then the peak memory of both processes and of the producer's arena.
// Latencies are one-way, both ends reading CLOCK_MONOTONIC.
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "omniconn/connector.h"
#include "omniconn/payload.h"

namespace {

using namespace ocbench;  // NOLINT: helpers of this program
using omniconn::Connector;
using omniconn::PayloadKey;
using omniconn::PayloadView;

constexpr char kProducer[] = "producer";
constexpr char kConsumer[] = "consumer";
constexpr auto kOpTimeout = std::chrono::seconds(30);
constexpr size_t kInlineSize = 64;
constexpr size_t kMinSize = 8;  // room for the t0 stamp
constexpr uint64_t kBytesPerPhase = uint64_t{4} << 30;
constexpr char kDefaultSizes[] = "64,4K,64K,1M,16M,64M,256M";
constexpr uint64_t kWindows[] = {1, 4, 16, 64};
constexpr uint64_t kMaxFanout = 4;
constexpr uint64_t kRounds = 5;  // copy-stream rounds, each after a memcpy burst

struct Options {
  std::vector<size_t> sizes;
  uint64_t iters = 0;  // 0: by size
  std::string json_path;
  uint64_t spin_us = 100000;
  uint64_t arena_bytes = 0;
  size_t scale_size = kMiB;  // payload size of the window and fan-out phases
  std::string role;          // "" (consumer, the main process), "producer", "fanout" or "help"
  std::string name_space;
  uint64_t index = 0;  // fanout consumer: its number, and how many payloads it takes
  uint64_t count = 0;
};

void print_help(const char* argv0) {
  std::printf(
      "usage: %s [--sizes=%s] [--iters=N] [--json=FILE] [--spin-us=US]\n"
      "\n"
      "Benchmarks the SharedMemoryConnector between processes (channel mode):\n"
      "  copy    send(builder over a pre-faulted buffer) -> recv + release, streaming;\n"
      "          consumer-side GB/s (1 GB = 1e9 B) vs warm single-thread memcpy (best/median),\n"
      "          and CPU time of both processes per MiB; then one-way latency p50/p99/p99.9,\n"
      "          ping-pong (64 B payloads travel inline)\n"
      "  loan    loan -> write in place -> send_loan -> recv: one-way latency, ping-pong\n"
      "  dirty   the 64 B loan handoff after the producer wrote N bytes elsewhere (N = each\n"
      "          size from 1 MiB): the caches' share of a large payload's handoff\n"
      "  window  --scale-size payloads with up to 1/4/16/64 unacknowledged: GB/s and latency\n"
      "  fanout  --scale-size payloads sent to 1..4 consumer processes: aggregate GB/s\n"
      "  memory  peak RSS of producer and consumer, peak bytes in use in the producer's arena\n"
      "and checks the design targets: 16 MiB copy >= 0.6x memcpy, loan p50 <= 2 us at every\n"
      "size up to 64 MiB, 64 B inline p50 <= 1 us (p99 <= 10 us).\n"
      "\n"
      "  --sizes LIST    payload tensor sizes, comma-separated, units B/K/M/G (binary)\n"
      "  --scale-size N  payload size of the window and fan-out phases (default 1M; 0: skip)\n"
      "  --iters N       measured iterations per phase (default: by size, <= 8 GiB a phase)\n"
      "  --json FILE     also write the results as JSON\n"
      "  --spin-us US    connector spin_us: how long a reader spins before it sleeps\n"
      "                  (default 100000, so readers spin)\n"
      "  --arena-bytes N producer arena (default max(512 MiB, 6x the largest payload))\n"
      "  --help          this text\n"
      "\n"
      "Exit status: 0 when the run completed (targets are reported, not enforced), 1 on an\n"
      "error, 2 on bad usage.\n",
      argv0, kDefaultSizes);
}

Result<Options> parse_options(int argc, char** argv) {
  OMNICONN_ASSIGN_OR_RETURN(Args args, Args::parse(argc, argv));
  OMNICONN_RETURN_IF_ERROR(
      args.check_known({"sizes", "iters", "json", "spin-us", "arena-bytes", "scale-size", "role",
                        "namespace", "index", "count", "help"}));
  Options opts;
  if (args.has("help")) {
    opts.role = "help";
    return opts;
  }
  OMNICONN_ASSIGN_OR_RETURN(opts.sizes,
                            parse_size_list(args.get("sizes", kDefaultSizes), kMinSize));
  OMNICONN_ASSIGN_OR_RETURN(opts.scale_size, parse_size(args.get("scale-size", "1M")));
  if (opts.scale_size != 0 && opts.scale_size < kMinSize) {
    return Status::InvalidArgument(strf("--scale-size must be 0 or at least %zu", kMinSize));
  }
  OMNICONN_ASSIGN_OR_RETURN(opts.iters, args.get_uint("iters", 0));
  OMNICONN_ASSIGN_OR_RETURN(opts.spin_us, args.get_uint("spin-us", 100000));
  size_t largest = *std::max_element(opts.sizes.begin(), opts.sizes.end());
  OMNICONN_ASSIGN_OR_RETURN(
      opts.arena_bytes,
      args.get_uint("arena-bytes", std::max<uint64_t>(512 * kMiB, 6 * (largest + kMiB))));
  opts.json_path = args.get("json");
  if (args.has("json") && opts.json_path.empty()) {
    return Status::InvalidArgument("--json wants a file name");
  }
  opts.role = args.get("role");
  if (!opts.role.empty() && opts.role != kProducer && opts.role != "fanout") {
    return Status::InvalidArgument("--role must be 'producer' or 'fanout'");
  }
  OMNICONN_ASSIGN_OR_RETURN(opts.index, args.get_uint("index", 0));
  OMNICONN_ASSIGN_OR_RETURN(opts.count, args.get_uint("count", 0));
  opts.name_space = args.get("namespace", strf("bench-%d", static_cast<int>(getpid())));
  return opts;
}

// The producer writes the payloads (big arena); the consumer only writes control messages.
Value::Map connector_extra(const Options& opts, bool producer) {
  return {{"namespace", Value(opts.name_space)},
          {"spin_us", Value(opts.spin_us)},
          {"arena_bytes", Value(producer ? opts.arena_bytes : uint64_t{16 * kMiB})}};
}

struct Plan {
  uint64_t warmup = 0;
  uint64_t measured = 0;
  uint64_t total() const { return warmup + measured; }
};

Plan plan_for(const Options& opts, size_t size, uint64_t min_n, uint64_t max_n) {
  Plan plan;
  plan.measured = opts.iters > 0 ? opts.iters : std::clamp(kBytesPerPhase / size, min_n, max_n);
  plan.warmup = std::clamp<uint64_t>(plan.measured / 20, 2, 1000);
  return plan;
}

PayloadKey data_key(const char* phase, size_t size, uint64_t i) {
  return {strf("%s-%zu-%llu", phase, size, static_cast<unsigned long long>(i)), kProducer,
          kConsumer};
}

// ---- memcpy baseline -----------------------------------------------------------------------

struct MemcpyResult {
  double best_gbps = 0;
  double median_gbps = 0;
};

void* copy_bytes(void* dst, const void* src, size_t n) {
  return std::memcpy(dst, src, n);
}

// Warm single-thread memcpy of `size` bytes between two pre-faulted buffers, measured in short
// bursts between the rounds of the copy stream (this VM's memory bandwidth drifts by 2x over
// minutes, so a ratio needs both sides measured side by side).
class MemcpyBench {
 public:
  // From 1 MiB up, a second variant copies into destinations that rotate through >= 64 MiB
  // (twice this machine's L3): what a stream of payloads, each written to where the last ones
  // are not, can reach. Below 1 MiB both stay in cache and only the warm figure is taken.
  explicit MemcpyBench(size_t size)
      : size_(size),
        slots_(size >= kMiB && size <= 64 * kMiB ? std::max<size_t>(2, 64 * kMiB / size) : 1),
        src_(size, 1),
        dst_(size * slots_, 2) {}
  bool ok() const { return src_.ok() && dst_.ok(); }
  bool has_cold() const { return slots_ > 1; }

  // One burst: an untimed warm-up pass, then the median of three passes of >= 128 MiB each.
  // cold: the destination moves to the next slot on every copy.
  double burst(bool cold = false) {
    const uint64_t inner = std::max<uint64_t>(2, (128 * kMiB) / size_);
    // Called through a volatile pointer so the copies are not optimised away.
    void* (*volatile copy_fn)(void*, const void*, size_t) = copy_bytes;
    std::vector<double> rates;
    for (int rep = 0; rep < 4; ++rep) {
      const int64_t start = now_ns();
      for (uint64_t i = 0; i < inner; ++i) {
        const size_t slot = cold ? i % slots_ : 0;
        copy_fn(dst_.data() + slot * size_, src_.data(), size_);
      }
      const int64_t elapsed = now_ns() - start;
      if (rep > 0) rates.push_back(gb_per_s(static_cast<double>(size_ * inner), elapsed));
    }
    return median(rates);
  }

 private:
  size_t size_;
  size_t slots_;
  AlignedBuffer src_;
  AlignedBuffer dst_;
};

// ---- Producer (child process) --------------------------------------------------------------

// Consumer k of the fan-out run with `fan` consumers: stage "fan<fan>.<k>" (each run gets new
// edges, as a consumer's edge ends with its process).
std::string fan_stage(uint64_t fan, uint64_t k) {
  return strf("fan%llu.%llu", static_cast<unsigned long long>(fan),
              static_cast<unsigned long long>(k));
}

// Serves the consumer's commands: "copy", "copy_pp", "loan" (size, count), "window" (size,
// count, window), "fanout" (size, count, fan), "stats", then "quit".
class Producer {
 public:
  explicit Producer(Connector& conn) : conn_(conn) {}

  Status serve() {
    for (;;) {
      OMNICONN_ASSIGN_OR_RETURN(Value cmd, recv_command(conn_, kConsumer, kProducer,
                                                        omniconn::deadline_in(kOpTimeout * 3)));
      const std::string name = field_string(cmd, "cmd");
      if (name == "quit") return Status::Ok();
      if (name == "stats") {
        OMNICONN_RETURN_IF_ERROR(send_stats());
        continue;
      }
      const int64_t size = field_int(cmd, "size");
      const int64_t count = field_int(cmd, "count");
      const int64_t arg = field_int(cmd, "arg", 1);
      if (size < static_cast<int64_t>(kMinSize) || count < 0 || arg < 1) {
        return Status::InvalidArgument("bad command from the consumer");
      }
      OMNICONN_RETURN_IF_ERROR(run(name, static_cast<size_t>(size), static_cast<uint64_t>(count),
                                   static_cast<uint64_t>(arg)));
    }
  }

 private:
  Status run(const std::string& name, size_t size, uint64_t count, uint64_t arg) {
    if (name == "copy") return copy(size, count);
    if (name == "copy_pp") return copy_ping_pong(size, count);
    if (name == "loan") return loan(size, count, 0);
    if (name == "loan_dirty") return loan(size, count, arg);
    if (name == "window") return window(size, count, arg);
    if (name == "fanout") return fanout(size, count, arg);
    return Status::InvalidArgument("unknown command '" + name + "' from the consumer");
  }

  // Pre-faulted and kept across commands: a timed stream follows the warm-up stream of the
  // same size, so it never pays for allocating its source.
  Result<std::byte*> source(size_t size) {
    if (!source_ || source_->size() != size) {
      source_.reset();
      source_ = std::make_unique<AlignedBuffer>(size, 0x5a);
      if (!source_->ok()) return Status::ResourceExhausted("copy source: out of memory");
    }
    return source_->data();
  }

  Result<omniconn::PayloadBuilder> source_builder(size_t size) {
    OMNICONN_ASSIGN_OR_RETURN(std::byte * src, source(size));
    omniconn::PayloadBuilder builder;
    OMNICONN_RETURN_IF_ERROR(
        builder.add_tensor("data", omniconn::DType::kU8, {static_cast<int64_t>(size)}, src));
    return builder;
  }

  // sweep() takes the writer's lock and scans for reclaimable space: not after every send of
  // a stream, or the benchmark would measure its own sampling.
  void sample_arena() {
    (void)conn_.sweep(omniconn::deadline_in(kOpTimeout));
    arena_peak_ = std::max(arena_peak_, conn_.metrics().in_use_bytes);
  }

  Status send_to(const PayloadKey& key, const omniconn::PayloadBuilder& builder) {
    OMNICONN_RETURN_IF_ERROR(conn_.send(key, builder, omniconn::deadline_in(kOpTimeout)));
    if (++sends_ % 32 == 0) sample_arena();
    return Status::Ok();
  }

  Status copy(size_t size, uint64_t count) {
    OMNICONN_ASSIGN_OR_RETURN(auto builder, source_builder(size));
    for (uint64_t i = 0; i < count; ++i) {
      OMNICONN_RETURN_IF_ERROR(
          send_to(data_key("copy", size, i), builder).WithContext("copy send"));
    }
    return Status::Ok();
  }

  // The consumer acks every payload but the last; wait for it before the next one.
  Status wait_ack() {
    auto ack = conn_.recv(kConsumer, kProducer, omniconn::deadline_in(kOpTimeout));
    return ack.ok() ? Status::Ok() : ack.status().WithContext("wait for ack");
  }

  // Stamps t0 into the source, then send: the latency includes the one copy.
  Status send_stamped(const omniconn::PayloadBuilder& builder, size_t size, uint64_t i) {
    const PayloadKey key = data_key("stamped", size, i);  // made before the stamp
    const int64_t t0 = now_ns();
    std::memcpy(source_->data(), &t0, 8);
    return send_to(key, builder).WithContext("send");
  }

  Status copy_ping_pong(size_t size, uint64_t count) {
    OMNICONN_ASSIGN_OR_RETURN(auto builder, source_builder(size));
    for (uint64_t i = 0; i < count; ++i) {
      if (i > 0) OMNICONN_RETURN_IF_ERROR(wait_ack());
      OMNICONN_RETURN_IF_ERROR(send_stamped(builder, size, i));
    }
    return Status::Ok();
  }

  // Up to `window` payloads sent and not yet acknowledged (every payload is acked).
  Status window(size_t size, uint64_t count, uint64_t window) {
    OMNICONN_ASSIGN_OR_RETURN(auto builder, source_builder(size));
    uint64_t acked = 0;
    for (uint64_t i = 0; i < count; ++i) {
      for (; i - acked >= window; ++acked) OMNICONN_RETURN_IF_ERROR(wait_ack());
      OMNICONN_RETURN_IF_ERROR(send_stamped(builder, size, i));
    }
    for (; acked < count; ++acked) OMNICONN_RETURN_IF_ERROR(wait_ack());
    return Status::Ok();
  }

  // Every payload to `fan` consumers, one copy each (a payload has one reader). A first,
  // untimed payload to each, then their "ready"; the first timed payload carries the start.
  Status fanout(size_t size, uint64_t count, uint64_t fan) {
    OMNICONN_ASSIGN_OR_RETURN(auto builder, source_builder(size));
    auto send_all = [&](uint64_t i) -> Status {
      for (uint64_t k = 0; k < fan; ++k) {
        const PayloadKey key{strf("fan-%llu", static_cast<unsigned long long>(i)), kProducer,
                             fan_stage(fan, k)};
        OMNICONN_RETURN_IF_ERROR(send_to(key, builder).WithContext("fanout send"));
      }
      return Status::Ok();
    };
    OMNICONN_RETURN_IF_ERROR(send_all(0));
    for (uint64_t k = 0; k < fan; ++k) {
      auto ready = conn_.recv(fan_stage(fan, k), kProducer, omniconn::deadline_in(kOpTimeout));
      if (!ready.ok()) return ready.status().WithContext("fan-out consumer ready");
    }
    const int64_t start = now_ns();
    std::memcpy(source_->data(), &start, 8);
    for (uint64_t i = 1; i <= count; ++i) OMNICONN_RETURN_IF_ERROR(send_all(i));
    return Status::Ok();
  }

  // `dirty` > 0: after the fill, also write that many bytes elsewhere (a scratch buffer), so
  // that a small payload's handoff starts with the caches of a large one.
  Status send_loaned(const omniconn::PayloadBuilder& builder, size_t size, uint64_t i,
                     size_t dirty = 0) {
    const PayloadKey key = data_key("loan", size, i);
    const Deadline deadline = omniconn::deadline_in(kOpTimeout);
    OMNICONN_ASSIGN_OR_RETURN(omniconn::Loan loan, conn_.loan(builder.encoded_size(), deadline));
    OMNICONN_RETURN_IF_ERROR(builder.write_layout(loan.bytes()).status());
    OMNICONN_ASSIGN_OR_RETURN(std::span<std::byte> data,
                              omniconn::mutable_tensor_data(loan.bytes(), 0));
    std::memset(data.data(), static_cast<int>(i & 0xff), data.size());
    if (dirty > 0) {
      if (!scratch_ || scratch_->size() != dirty) scratch_ = std::make_unique<AlignedBuffer>(dirty);
      if (!scratch_->ok()) return Status::ResourceExhausted("scratch buffer: out of memory");
      std::memset(scratch_->data(), static_cast<int>(i & 0xff), dirty);
    }
    const int64_t t0 = now_ns();
    std::memcpy(data.data(), &t0, 8);
    OMNICONN_RETURN_IF_ERROR(omniconn::finish_payload(loan.bytes()));
    return conn_.send_loan(std::move(loan), key, deadline);
  }

  Status loan(size_t size, uint64_t count, size_t dirty) {
    omniconn::PayloadBuilder builder;
    OMNICONN_RETURN_IF_ERROR(
        builder.add_tensor("data", omniconn::DType::kU8, {static_cast<int64_t>(size)}));
    for (uint64_t i = 0; i < count; ++i) {
      if (i > 0) OMNICONN_RETURN_IF_ERROR(wait_ack());
      OMNICONN_RETURN_IF_ERROR(send_loaned(builder, size, i, dirty).WithContext("loan send"));
      sample_arena();
    }
    return Status::Ok();
  }

  Status send_stats() {
    source_.reset();
    const omniconn::Metrics m = conn_.metrics();
    return send_command(conn_, {"stats", kProducer, kConsumer},
                        {{"cmd", "stats"},
                         {"peak_rss_kb", Value(peak_rss_kb())},
                         {"arena_peak_bytes", Value(arena_peak_)},
                         {"arena_capacity_bytes", Value(m.capacity_bytes)}},
                        omniconn::deadline_in(kOpTimeout));
  }

  Connector& conn_;
  std::unique_ptr<AlignedBuffer> source_;
  std::unique_ptr<AlignedBuffer> scratch_;
  uint64_t arena_peak_ = 0;
  uint64_t sends_ = 0;
};

Status run_producer(const Options& opts) {
  OMNICONN_ASSIGN_OR_RETURN(auto conn, make_shm(connector_extra(opts, true)));
  Producer producer(*conn);
  return producer.serve();
}

// A fan-out consumer (child process) on edge producer -> fan<F>.<k> (--index = F * 10 + k):
// takes the untimed first payload, says ready, takes --count timed payloads, then reports
// the start (stamped in the first timed payload) and when the last arrived.
Status run_fanout_consumer(const Options& opts) {
  OMNICONN_ASSIGN_OR_RETURN(auto conn, make_shm(connector_extra(opts, false)));
  const std::string me = fan_stage(opts.index / 10, opts.index % 10);
  auto take = [&]() { return conn->recv(kProducer, me, omniconn::deadline_in(kOpTimeout)); };
  OMNICONN_RETURN_IF_ERROR(take().status());
  OMNICONN_RETURN_IF_ERROR(
      send_command(*conn, {"ready", me, kProducer}, {}, omniconn::deadline_in(kOpTimeout)));
  int64_t start = 0;
  for (uint64_t i = 0; i < opts.count; ++i) {
    OMNICONN_ASSIGN_OR_RETURN(PayloadView view, take());
    if (i == 0) std::memcpy(&start, view.reader().tensor(0).data.data(), 8);
  }
  OMNICONN_RETURN_IF_ERROR(send_command(*conn, {"done", me, kConsumer},
                                        {{"start_ns", Value(start)}, {"last_ns", Value(now_ns())}},
                                        omniconn::deadline_in(kOpTimeout)));
  // The report lives in this process's ring: stay until the main process has read it.
  return recv_command(*conn, kConsumer, me, omniconn::deadline_in(kOpTimeout)).status();
}

// ---- Consumer (main process) ---------------------------------------------------------------

struct SizeResult {
  size_t size = 0;
  MemcpyResult memcpy_rate;
  uint64_t copy_count = 0;
  double copy_gbps = 0;
  double memcpy_cold_gbps = 0;     // memcpy to a destination not in cache (from 1 MiB)
  double copy_ratio = 0;           // median over the rounds of copy / memcpy
  double copy_cpu_us_per_mib = 0;  // producer + consumer
  LatencyStats copy_latency;
  LatencyStats loan;
};

struct WindowResult {
  uint64_t window = 0;
  size_t size = 0;
  uint64_t count = 0;
  double gbps = 0;
  LatencyStats latency;
};

struct FanoutResult {
  uint64_t consumers = 0;
  size_t size = 0;
  uint64_t count = 0;
  double aggregate_gbps = 0;  // bytes delivered to all consumers / elapsed
};

struct MemoryResult {
  int64_t producer_peak_rss_kb = 0;
  int64_t consumer_peak_rss_kb = 0;
  uint64_t arena_peak_bytes = 0;
  uint64_t arena_capacity_bytes = 0;
};

// The loan handoff of a 64 B payload after the producer wrote `dirty` bytes elsewhere.
struct DirtyResult {
  size_t dirty = 0;
  LatencyStats loan;
};

struct Report {
  std::vector<SizeResult> sizes;
  std::vector<DirtyResult> dirty;
  std::vector<WindowResult> windows;
  std::vector<FanoutResult> fanouts;
  MemoryResult memory;
};

double mib(double bytes) {
  return bytes / static_cast<double>(kMiB);
}

class Consumer {
 public:
  Consumer(Connector& conn, ChildProcess& producer) : conn_(conn), producer_(producer) {}

  Status command(const char* name, size_t size, uint64_t count, uint64_t arg = 1) {
    return send_command(conn_, {"ctl", kConsumer, kProducer},
                        {{"cmd", name},
                         {"size", Value(uint64_t{size})},
                         {"count", Value(count)},
                         {"arg", Value(arg)}},
                        omniconn::deadline_in(kOpTimeout));
  }

  Status stream(const char* name, size_t size, uint64_t count) {
    OMNICONN_RETURN_IF_ERROR(command(name, size, count));
    for (uint64_t i = 0; i < count; ++i) {
      OMNICONN_ASSIGN_OR_RETURN(PayloadView view, recv_data(size));
      view.release();
    }
    return Status::Ok();
  }

  // Streaming, in rounds that alternate with bursts of the memcpy baseline. The warm-up is a
  // stream of its own, so that nothing is queued (written ahead, e.g. while the reader maps
  // the arena) when the timed rounds start. Rates are medians over the rounds.
  Status copy_stream(size_t size, const Plan& plan, SizeResult* r) {
    OMNICONN_RETURN_IF_ERROR(stream("copy", size, plan.warmup));
    MemcpyBench baseline(size);
    if (!baseline.ok()) return Status::ResourceExhausted("memcpy baseline: out of memory");
    const uint64_t rounds = std::min<uint64_t>(kRounds, plan.measured);
    std::vector<double> copy_rates, memcpy_rates, cold_rates, ratios;
    int64_t cpu = 0;
    for (uint64_t k = 0; k < rounds; ++k) {
      const uint64_t n = plan.measured / rounds + (k < plan.measured % rounds ? 1 : 0);
      memcpy_rates.push_back(baseline.burst());
      if (baseline.has_cold()) cold_rates.push_back(baseline.burst(true));
      const int64_t cpu0 = process_cpu_ns(0) + process_cpu_ns(producer_.pid());
      const int64_t start = now_ns();
      OMNICONN_RETURN_IF_ERROR(stream("copy", size, n));
      const int64_t elapsed = now_ns() - start;
      cpu += process_cpu_ns(0) + process_cpu_ns(producer_.pid()) - cpu0;
      copy_rates.push_back(gb_per_s(static_cast<double>(size) * static_cast<double>(n), elapsed));
      ratios.push_back(copy_rates.back() / memcpy_rates.back());
    }
    const double bytes = static_cast<double>(size) * static_cast<double>(plan.measured);
    r->copy_count = plan.measured;
    r->copy_gbps = median(copy_rates);
    r->copy_ratio = median(ratios);
    r->memcpy_rate = {*std::max_element(memcpy_rates.begin(), memcpy_rates.end()),
                      median(memcpy_rates)};
    r->memcpy_cold_gbps = cold_rates.empty() ? r->memcpy_rate.median_gbps : median(cold_rates);
    r->copy_cpu_us_per_mib = static_cast<double>(cpu) / 1e3 / mib(bytes);
    return Status::Ok();
  }

  // Ping-pong: one payload in flight; latency = recv returned - stamp before send.
  Result<LatencyStats> ping_pong(const char* name, size_t size, const Plan& plan,
                                 uint64_t arg = 1) {
    OMNICONN_RETURN_IF_ERROR(command(name, size, plan.total(), arg));
    std::vector<int64_t> samples;
    samples.reserve(plan.measured);
    const bool filled = std::string_view(name).starts_with("loan") && size > 8;
    for (uint64_t i = 0; i < plan.total(); ++i) {
      OMNICONN_ASSIGN_OR_RETURN(int64_t latency, take_stamped(size, i, filled));
      if (i >= plan.warmup) samples.push_back(latency);
      if (i + 1 < plan.total()) OMNICONN_RETURN_IF_ERROR(ack(i));
    }
    return summarize_ns(std::move(samples));
  }

  // Up to `window` payloads in flight; every payload acked after its release.
  Result<WindowResult> window(size_t size, uint64_t count, uint64_t window) {
    OMNICONN_RETURN_IF_ERROR(command("window", size, count, window));
    std::vector<int64_t> samples;
    samples.reserve(count);
    const int64_t start = now_ns();
    for (uint64_t i = 0; i < count; ++i) {
      OMNICONN_ASSIGN_OR_RETURN(int64_t latency, take_stamped(size, i, false));
      samples.push_back(latency);
      OMNICONN_RETURN_IF_ERROR(ack(i));
    }
    const int64_t elapsed = now_ns() - start;
    return WindowResult{window, size, count,
                        gb_per_s(static_cast<double>(size) * static_cast<double>(count), elapsed),
                        summarize_ns(std::move(samples))};
  }

  Result<MemoryResult> memory() {
    OMNICONN_RETURN_IF_ERROR(command("stats", kMinSize, 0));
    OMNICONN_ASSIGN_OR_RETURN(
        Value stats,
        recv_command(conn_, kProducer, kConsumer, omniconn::deadline_in(kOpTimeout), &producer_));
    MemoryResult m;
    m.producer_peak_rss_kb = field_int(stats, "peak_rss_kb", 0);
    m.consumer_peak_rss_kb = peak_rss_kb();
    m.arena_peak_bytes = static_cast<uint64_t>(field_int(stats, "arena_peak_bytes", 0));
    m.arena_capacity_bytes = static_cast<uint64_t>(field_int(stats, "arena_capacity_bytes", 0));
    return m;
  }

 private:
  Result<PayloadView> recv_data(size_t size) {
    OMNICONN_ASSIGN_OR_RETURN(
        PayloadView view,
        recv_watching(conn_, kProducer, kConsumer, omniconn::deadline_in(kOpTimeout), &producer_));
    const auto& reader = view.reader();
    if (reader.tensor_count() != 1 || reader.tensor(0).data.size() != size) {
      return Status::Corrupt(
          strf("received a payload with the wrong shape (want %zu bytes)", size));
    }
    return view;
  }

  // Receives payload `i`, returns its one-way latency. Light sanity check: a sane stamp, and a
  // loan's fill byte (the producer writes i & 0xff).
  Result<int64_t> take_stamped(size_t size, uint64_t i, bool filled) {
    OMNICONN_ASSIGN_OR_RETURN(PayloadView view, recv_data(size));
    const int64_t t1 = now_ns();
    int64_t t0 = 0;
    const auto data = view.reader().tensor(0).data;
    std::memcpy(&t0, data.data(), 8);
    if (t0 <= 0 || t0 > t1 || (filled && data[size - 1] != static_cast<std::byte>(i & 0xff))) {
      return Status::Corrupt(strf("payload %llu of %s: stale or overwritten data",
                                  static_cast<unsigned long long>(i), format_size(size).c_str()));
    }
    return t1 - t0;
  }

  Status ack(uint64_t i) {
    return send_command(
        conn_, {strf("ack-%llu", static_cast<unsigned long long>(i)), kConsumer, kProducer},
        {{"cmd", "ack"}}, omniconn::deadline_in(kOpTimeout));
  }

  Connector& conn_;
  ChildProcess& producer_;
};

// K consumer processes, each on its own edge; the producer sends every payload to each.
// Aggregate GB/s from the producer's start to the last consumer's last payload.
Result<FanoutResult> fanout(const char* argv0, const Options& opts, Connector& conn,
                            Consumer& consumer, uint64_t fan) {
  const size_t size = opts.scale_size;
  const uint64_t count = std::clamp<uint64_t>(kBytesPerPhase / 8 / size / fan, 16, 20000);
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (uint64_t k = 0; k < fan; ++k) {
    OMNICONN_ASSIGN_OR_RETURN(
        auto child,
        ChildProcess::spawn_self(
            argv0, {"--role=fanout", "--namespace=" + opts.name_space,
                    strf("--index=%llu", static_cast<unsigned long long>(fan * 10 + k)),
                    strf("--count=%llu", static_cast<unsigned long long>(count)), "--spin-us=50"}));
    children.push_back(std::move(child));
  }
  OMNICONN_RETURN_IF_ERROR(consumer.command("fanout", size, count, fan));
  int64_t first = INT64_MAX;
  int64_t last = 0;
  for (uint64_t k = 0; k < fan; ++k) {
    OMNICONN_ASSIGN_OR_RETURN(Value done,
                              recv_command(conn, fan_stage(fan, k), kConsumer,
                                           omniconn::deadline_in(kOpTimeout), children[k].get()));
    first = std::min(first, field_int(done, "start_ns", 0));
    last = std::max(last, field_int(done, "last_ns", 0));
  }
  for (uint64_t k = 0; k < fan; ++k) {
    OMNICONN_RETURN_IF_ERROR(send_command(conn, {"bye", kConsumer, fan_stage(fan, k)}, {},
                                          omniconn::deadline_in(kOpTimeout)));
  }
  for (auto& c : children) {
    OMNICONN_RETURN_IF_ERROR(c->wait(omniconn::deadline_in(kOpTimeout), "fan-out consumer"));
  }
  const double bytes = static_cast<double>(size) * static_cast<double>(fan * count);
  return FanoutResult{fan, size, count, gb_per_s(bytes, last - first)};
}

// ---- Report --------------------------------------------------------------------------------

struct Target {
  std::string name;
  std::string value;
  bool applicable = true;
  bool pass = false;
};

double copy_ratio(const SizeResult& r) {
  return r.copy_ratio;
}

std::vector<Target> check_targets(const std::vector<SizeResult>& results,
                                  const LatencyStats& inline_lat) {
  std::vector<Target> targets;
  Target copy{"16 MiB copy >= 0.6x memcpy", "not measured", false, false};
  Target loan{"loan p50 <= 2 us from 64 B to 64 MiB", "", true, true};
  double worst = 0;
  size_t worst_size = 0;
  for (const auto& r : results) {
    if (r.size == 16 * kMiB) {
      copy = {copy.name, strf("%.2fx", copy_ratio(r)), true, copy_ratio(r) >= 0.6};
    }
    if (r.size <= 64 * kMiB && r.loan.p50_us >= worst) {
      worst = r.loan.p50_us;
      worst_size = r.size;
    }
  }
  loan.pass = worst <= 2.0;
  loan.value = strf("worst %.2f us at %s", worst, format_size(worst_size).c_str());
  targets.push_back(copy);
  targets.push_back(loan);
  targets.push_back({"64 B inline p50 <= 1 us", strf("%.2f us", inline_lat.p50_us), true,
                     inline_lat.p50_us <= 1.0});
  targets.push_back({"64 B inline p99 <= 10 us", strf("%.2f us", inline_lat.p99_us), true,
                     inline_lat.p99_us <= 10.0});
  return targets;
}

const LatencyStats& inline_latency(const Report& report) {
  static const LatencyStats none;
  for (const auto& r : report.sizes) {
    if (r.size == kInlineSize) return r.copy_latency;
  }
  return none;
}

void print_sizes(const std::vector<SizeResult>& results) {
  Table table({"size", "memcpy GB/s best/med", "cold dst", "copy GB/s", "copy/memcpy", "CPU us/MiB",
               "copy n", "copy p50/p99/p99.9 us", "loan p50/p99/p99.9 us"});
  for (const auto& r : results) {
    table.add_row({format_size(r.size),
                   strf("%.2f / %.2f", r.memcpy_rate.best_gbps, r.memcpy_rate.median_gbps),
                   strf("%.2f", r.memcpy_cold_gbps), strf("%.3f", r.copy_gbps),
                   strf("%.2fx", copy_ratio(r)), strf("%.1f", r.copy_cpu_us_per_mib),
                   strf("%llu", static_cast<unsigned long long>(r.copy_count)),
                   strf("%.2f / %.2f / %.2f", r.copy_latency.p50_us, r.copy_latency.p99_us,
                        r.copy_latency.p999_us),
                   strf("%.2f / %.2f / %.2f", r.loan.p50_us, r.loan.p99_us, r.loan.p999_us)});
  }
  table.print(stdout);
}

void print_dirty(const Report& report) {
  if (report.dirty.empty()) return;
  Table table({"64 B loan after writing", "p50 us", "p99 us", "p99.9 us", "n"});
  for (const auto& d : report.dirty) {
    table.add_row({format_size(d.dirty), strf("%.2f", d.loan.p50_us), strf("%.2f", d.loan.p99_us),
                   strf("%.2f", d.loan.p999_us), strf("%zu", d.loan.count)});
  }
  table.print(stdout);
}

void print_scaling(const Report& report) {
  if (!report.windows.empty()) {
    Table table({"in flight", "size", "GB/s", "payloads/s", "p50 us", "p99 us", "n"});
    for (const auto& w : report.windows) {
      table.add_row({strf("%llu", static_cast<unsigned long long>(w.window)), format_size(w.size),
                     strf("%.3f", w.gbps), strf("%.0f", w.gbps * 1e9 / static_cast<double>(w.size)),
                     strf("%.2f", w.latency.p50_us), strf("%.2f", w.latency.p99_us),
                     strf("%zu", w.latency.count)});
    }
    table.print(stdout);
  }
  if (!report.fanouts.empty()) {
    Table table({"consumers", "size", "aggregate GB/s", "per consumer GB/s", "n each"});
    for (const auto& f : report.fanouts) {
      table.add_row({strf("%llu", static_cast<unsigned long long>(f.consumers)),
                     format_size(f.size), strf("%.3f", f.aggregate_gbps),
                     strf("%.3f", f.aggregate_gbps / static_cast<double>(f.consumers)),
                     strf("%llu", static_cast<unsigned long long>(f.count))});
    }
    table.print(stdout);
  }
}

void print_report(const Options& opts, const Report& report, const std::vector<Target>& targets) {
  print_sizes(report.sizes);
  std::printf(
      "(64 B payloads travel inline; copy latency = send incl. its copy -> recv, reader "
      "spin_us %llu)\n",
      static_cast<unsigned long long>(opts.spin_us));
  print_dirty(report);
  print_scaling(report);
  const MemoryResult& m = report.memory;
  std::printf(
      "peak RSS: producer %.1f MiB, consumer %.1f MiB; arena: peak in use %.1f MiB of "
      "%.1f MiB\n",
      static_cast<double>(m.producer_peak_rss_kb) / 1024.0,
      static_cast<double>(m.consumer_peak_rss_kb) / 1024.0, mib(m.arena_peak_bytes),
      mib(m.arena_capacity_bytes));
  std::string line = "targets:";
  for (const auto& t : targets) {
    const char* verdict = !t.applicable ? "n/a" : t.pass ? "PASS" : "FAIL";
    line += strf(" [%s] %s (%s);", verdict, t.name.c_str(), t.value.c_str());
  }
  std::printf("%s\n", line.c_str());
  std::printf("load average at the end: %s\n", load_average().c_str());
}

nlohmann::json latency_json(const LatencyStats& s) {
  return {{"count", s.count},   {"p50_us", s.p50_us}, {"p99_us", s.p99_us},  {"p999_us", s.p999_us},
          {"min_us", s.min_us}, {"max_us", s.max_us}, {"mean_us", s.mean_us}};
}

nlohmann::json report_json(const Options& opts, const Report& report,
                           const std::vector<Target>& targets) {
  nlohmann::json doc = {{"benchmark", "shm_bench"},
                        {"connector", "SharedMemoryConnector"},
                        {"spin_us", opts.spin_us},
                        {"arena_bytes", opts.arena_bytes},
                        {"cpus", std::thread::hardware_concurrency()},
                        {"load_average_end", load_average()}};
  for (const auto& r : report.sizes) {
    doc["sizes"].push_back({{"size", r.size},
                            {"memcpy_best_gbps", r.memcpy_rate.best_gbps},
                            {"memcpy_median_gbps", r.memcpy_rate.median_gbps},
                            {"memcpy_cold_median_gbps", r.memcpy_cold_gbps},
                            {"copy_gbps", r.copy_gbps},
                            {"copy_vs_memcpy_median", copy_ratio(r)},
                            {"copy_payloads", r.copy_count},
                            {"copy_cpu_us_per_mib", r.copy_cpu_us_per_mib},
                            {"copy_latency", latency_json(r.copy_latency)},
                            {"loan_latency", latency_json(r.loan)}});
  }
  for (const auto& d : report.dirty) {
    doc["loan_after_dirty"].push_back(
        {{"dirty_bytes", d.dirty}, {"size", kInlineSize}, {"latency", latency_json(d.loan)}});
  }
  for (const auto& w : report.windows) {
    doc["window"].push_back({{"window", w.window},
                             {"size", w.size},
                             {"count", w.count},
                             {"gbps", w.gbps},
                             {"latency", latency_json(w.latency)}});
  }
  for (const auto& f : report.fanouts) {
    doc["fanout"].push_back({{"consumers", f.consumers},
                             {"size", f.size},
                             {"count", f.count},
                             {"aggregate_gbps", f.aggregate_gbps}});
  }
  const MemoryResult& m = report.memory;
  doc["memory"] = {{"producer_peak_rss_kb", m.producer_peak_rss_kb},
                   {"consumer_peak_rss_kb", m.consumer_peak_rss_kb},
                   {"arena_peak_bytes", m.arena_peak_bytes},
                   {"arena_capacity_bytes", m.arena_capacity_bytes}};
  doc["inline_64b_latency"] = latency_json(inline_latency(report));
  for (const auto& t : targets) {
    doc["targets"].push_back(
        {{"name", t.name}, {"value", t.value}, {"applicable", t.applicable}, {"pass", t.pass}});
  }
  return doc;
}

Status write_json(const std::string& path, const nlohmann::json& doc) {
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  out.close();
  if (!out) return Status::Unavailable("cannot write " + path);
  return Status::Ok();
}

// ---- Main flow -----------------------------------------------------------------------------

Result<SizeResult> bench_size(Consumer& consumer, const Options& opts, size_t size) {
  SizeResult r;
  r.size = size;
  OMNICONN_RETURN_IF_ERROR(consumer.copy_stream(size, plan_for(opts, size, 16, 100000), &r));
  const Plan latency_plan = plan_for(opts, size, 100, size <= kInlineSize ? 100000 : 20000);
  OMNICONN_ASSIGN_OR_RETURN(r.copy_latency, consumer.ping_pong("copy_pp", size, latency_plan));
  OMNICONN_ASSIGN_OR_RETURN(r.loan, consumer.ping_pong("loan", size, latency_plan));
  return r;
}

// Is the handoff's growth with size the payload's doing, or the caches'? The same 64 B
// handoff, after the producer wrote as many bytes as a large payload into a scratch buffer.
Status bench_dirty(Consumer& consumer, const Options& opts, Report* report) {
  for (size_t dirty : opts.sizes) {
    if (dirty < kMiB) continue;
    Plan plan;
    plan.measured =
        opts.iters > 0 ? opts.iters : std::clamp<uint64_t>(kBytesPerPhase / 4 / dirty, 50, 2000);
    plan.warmup = 5;
    auto lat = consumer.ping_pong("loan_dirty", kInlineSize, plan, dirty);
    if (!lat.ok()) return lat.status().WithContext("loan after " + format_size(dirty) + " written");
    report->dirty.push_back({dirty, *lat});
  }
  return Status::Ok();
}

Status bench_scaling(const char* argv0, const Options& opts, Connector& conn, Consumer& consumer,
                     Report* report) {
  const size_t size = opts.scale_size;
  if (size == 0) return Status::Ok();
  for (uint64_t w : kWindows) {
    const uint64_t count = std::clamp<uint64_t>(kBytesPerPhase / 8 / size, 64, 20000);
    auto r = consumer.window(size, count, w);
    if (!r.ok()) return r.status().WithContext(strf("window %llu", (unsigned long long)w));
    report->windows.push_back(*r);
  }
  for (uint64_t k = 1; k <= kMaxFanout; ++k) {
    auto r = fanout(argv0, opts, conn, consumer, k);
    if (!r.ok()) return r.status().WithContext(strf("fan-out %llu", (unsigned long long)k));
    report->fanouts.push_back(*r);
  }
  return Status::Ok();
}

Status run_consumer(const char* argv0, const Options& opts) {
  OMNICONN_ASSIGN_OR_RETURN(
      auto producer,
      ChildProcess::spawn_self(
          argv0, {"--role=producer", "--namespace=" + opts.name_space,
                  strf("--spin-us=%llu", static_cast<unsigned long long>(opts.spin_us)),
                  strf("--arena-bytes=%llu", static_cast<unsigned long long>(opts.arena_bytes))}));
  OMNICONN_ASSIGN_OR_RETURN(auto conn, make_shm(connector_extra(opts, false)));
  std::printf(
      "shm_bench: producer pid %d -> consumer pid %d, namespace %s, spin_us %llu, "
      "producer arena %s, %u CPUs, load average %s\n",
      static_cast<int>(producer->pid()), static_cast<int>(getpid()), opts.name_space.c_str(),
      static_cast<unsigned long long>(opts.spin_us), format_size(opts.arena_bytes).c_str(),
      std::thread::hardware_concurrency(), load_average().c_str());
  std::fflush(stdout);
  Consumer consumer(*conn, *producer);
  Report report;
  for (size_t i = 0; i < opts.sizes.size(); ++i) {
    auto r = bench_size(consumer, opts, opts.sizes[i]);
    if (!r.ok()) return r.status().WithContext("size " + format_size(opts.sizes[i]));
    report.sizes.push_back(*r);
  }
  OMNICONN_RETURN_IF_ERROR(bench_dirty(consumer, opts, &report));
  OMNICONN_RETURN_IF_ERROR(bench_scaling(argv0, opts, *conn, consumer, &report));
  OMNICONN_ASSIGN_OR_RETURN(report.memory, consumer.memory());
  OMNICONN_RETURN_IF_ERROR(consumer.command("quit", kMinSize, 0));
  OMNICONN_RETURN_IF_ERROR(producer->wait(omniconn::deadline_in(kOpTimeout), "producer"));
  const auto targets = check_targets(report.sizes, inline_latency(report));
  print_report(opts, report, targets);
  if (opts.json_path.empty()) return Status::Ok();
  return write_json(opts.json_path, report_json(opts, report, targets));
}

int run(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  if (!opts.ok()) {
    std::fprintf(stderr, "shm_bench: %s\n", opts.status().ToString().c_str());
    return 2;
  }
  if (opts->role == "help") {
    print_help(argv[0]);
    return 0;
  }
  Status st;
  if (opts->role == kProducer) {
    st = run_producer(*opts);
  } else if (opts->role == "fanout") {
    st = run_fanout_consumer(*opts);
  } else {
    st = run_consumer(argv[0], *opts);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "shm_bench [%s]: error: %s\n",
                 opts->role.empty() ? "consumer" : opts->role.c_str(), st.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shm_bench: fatal: %s\n", e.what());
    return 1;
  }
}

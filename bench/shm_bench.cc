// shm_bench: SharedMemoryConnector across two processes, against the design targets.
//
// This process is the consumer; it re-executes itself as the producer and drives it with
// control messages on the reverse edge (consumer -> producer). Per payload size it measures
//   copy    send(key, builder over a pre-faulted source) -> recv + release, streaming;
//           throughput at the consumer, next to a warm single-thread memcpy of the same size.
//   loan    loan -> write in place -> stamp t0 -> send_loan | recv returns -> t1, ping-pong.
// and once:
//   inline  64 B send(builder) -> recv with a spinning reader, ping-pong.
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
constexpr uint64_t kBytesPerPhase = uint64_t{8} << 30;

struct Options {
  std::vector<size_t> sizes;
  uint64_t iters = 0;  // 0: by size
  std::string json_path;
  uint64_t spin_us = 100000;
  uint64_t arena_bytes = 0;
  std::string role;  // "" (consumer, the main process), "producer" or "help"
  std::string name_space;
};

void print_help(const char* argv0) {
  std::printf(
      "usage: %s [--sizes=64,64K,1M,16M,64M] [--iters=N] [--json=FILE] [--spin-us=US]\n"
      "\n"
      "Benchmarks the SharedMemoryConnector between two processes (channel mode):\n"
      "  copy    send(builder over a pre-faulted buffer) -> recv + release, streaming;\n"
      "          consumer-side GB/s (1 GB = 1e9 B) vs warm single-thread memcpy (best/median)\n"
      "  loan    loan -> write in place -> send_loan -> recv: one-way latency p50/p99, ping-pong\n"
      "  inline  64 B send -> recv with a spinning reader: one-way latency p50/p99, ping-pong\n"
      "and checks the design targets: 16 MiB copy >= 0.6x memcpy, loan p50 <= 2 us at every\n"
      "size, 64 B inline p50 <= 1 us (p99 <= 10 us).\n"
      "\n"
      "  --sizes LIST    payload tensor sizes, comma-separated, units B/K/M/G (binary)\n"
      "  --iters N       measured iterations per phase (default: by size, <= 8 GiB a phase)\n"
      "  --json FILE     also write the results as JSON\n"
      "  --spin-us US    connector spin_us: how long a reader spins before it sleeps\n"
      "                  (default 100000, so readers spin)\n"
      "  --arena-bytes N producer arena (default max(512 MiB, 6x the largest payload))\n"
      "  --help          this text\n"
      "\n"
      "Exit status: 0 when the run completed (targets are reported, not enforced), 1 on an\n"
      "error, 2 on bad usage.\n",
      argv0);
}

Result<Options> parse_options(int argc, char** argv) {
  OMNICONN_ASSIGN_OR_RETURN(Args args, Args::parse(argc, argv));
  OMNICONN_RETURN_IF_ERROR(args.check_known(
      {"sizes", "iters", "json", "spin-us", "arena-bytes", "role", "namespace", "help"}));
  Options opts;
  if (args.has("help")) {
    opts.role = "help";
    return opts;
  }
  OMNICONN_ASSIGN_OR_RETURN(opts.sizes,
                            parse_size_list(args.get("sizes", "64,64K,1M,16M,64M"), kMinSize));
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
  if (!opts.role.empty() && opts.role != kProducer) {
    return Status::InvalidArgument("--role must be 'producer'");
  }
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

Result<MemcpyResult> measure_memcpy(size_t size) {
  AlignedBuffer src(size, 1);
  AlignedBuffer dst(size, 2);
  if (!src.ok() || !dst.ok()) return Status::ResourceExhausted("memcpy baseline: out of memory");
  const uint64_t inner = std::max<uint64_t>(2, (256 * kMiB) / size);
  // Called through a volatile pointer so the copies are not optimised away.
  void* (*volatile copy_fn)(void*, const void*, size_t) = copy_bytes;
  std::vector<double> rates;
  for (int rep = 0; rep < 8; ++rep) {  // rep 0 warms caches and TLB, untimed
    const int64_t start = now_ns();
    for (uint64_t i = 0; i < inner; ++i) copy_fn(dst.data(), src.data(), size);
    const int64_t elapsed = now_ns() - start;
    if (rep > 0) rates.push_back(gb_per_s(static_cast<double>(size * inner), elapsed));
  }
  return MemcpyResult{*std::max_element(rates.begin(), rates.end()), median(rates)};
}

// ---- Producer (child process) --------------------------------------------------------------

// Serves the consumer's commands: "copy", "loan", "inline" (size, count), then "quit".
class Producer {
 public:
  explicit Producer(Connector& conn) : conn_(conn) {}

  Status serve() {
    for (;;) {
      OMNICONN_ASSIGN_OR_RETURN(Value cmd, recv_command(conn_, kConsumer, kProducer,
                                                        omniconn::deadline_in(kOpTimeout * 3)));
      const std::string name = field_string(cmd, "cmd");
      if (name == "quit") return Status::Ok();
      const int64_t size = field_int(cmd, "size");
      const int64_t count = field_int(cmd, "count");
      if (size < static_cast<int64_t>(kMinSize) || count < 0) {
        return Status::InvalidArgument("bad command from the consumer");
      }
      OMNICONN_RETURN_IF_ERROR(run(name, static_cast<size_t>(size), static_cast<uint64_t>(count)));
    }
  }

 private:
  Status run(const std::string& name, size_t size, uint64_t count) {
    if (name == "copy") return copy(size, count);
    if (name == "loan") return loan(size, count);
    if (name == "inline") return inline_sends(count);
    return Status::InvalidArgument("unknown command '" + name + "' from the consumer");
  }

  // Pre-faulted and kept across commands: a timed stream follows the warm-up stream of the
  // same size, so it never pays for allocating its source.
  Result<const std::byte*> source(size_t size) {
    if (!source_ || source_->size() != size) {
      source_.reset();
      source_ = std::make_unique<AlignedBuffer>(size, 0x5a);
      if (!source_->ok()) return Status::ResourceExhausted("copy source: out of memory");
    }
    return static_cast<const std::byte*>(source_->data());
  }

  Status copy(size_t size, uint64_t count) {
    OMNICONN_ASSIGN_OR_RETURN(const std::byte* src, source(size));
    omniconn::PayloadBuilder builder;
    OMNICONN_RETURN_IF_ERROR(
        builder.add_tensor("data", omniconn::DType::kU8, {static_cast<int64_t>(size)}, src));
    for (uint64_t i = 0; i < count; ++i) {
      OMNICONN_RETURN_IF_ERROR(
          conn_.send(data_key("copy", size, i), builder, omniconn::deadline_in(kOpTimeout))
              .WithContext("copy send"));
    }
    return Status::Ok();
  }

  // The consumer acks every payload but the last; wait for it before the next one.
  Status wait_ack() {
    auto ack = conn_.recv(kConsumer, kProducer, omniconn::deadline_in(kOpTimeout));
    return ack.ok() ? Status::Ok() : ack.status().WithContext("wait for ack");
  }

  Status send_loaned(const omniconn::PayloadBuilder& builder, size_t size, uint64_t i) {
    const PayloadKey key = data_key("loan", size, i);
    const Deadline deadline = omniconn::deadline_in(kOpTimeout);
    OMNICONN_ASSIGN_OR_RETURN(omniconn::Loan loan, conn_.loan(builder.encoded_size(), deadline));
    OMNICONN_RETURN_IF_ERROR(builder.write_layout(loan.bytes()).status());
    OMNICONN_ASSIGN_OR_RETURN(std::span<std::byte> data,
                              omniconn::mutable_tensor_data(loan.bytes(), 0));
    std::memset(data.data(), static_cast<int>(i & 0xff), data.size());
    const int64_t t0 = now_ns();
    std::memcpy(data.data(), &t0, 8);
    OMNICONN_RETURN_IF_ERROR(omniconn::finish_payload(loan.bytes()));
    return conn_.send_loan(std::move(loan), key, deadline);
  }

  Status loan(size_t size, uint64_t count) {
    omniconn::PayloadBuilder builder;
    OMNICONN_RETURN_IF_ERROR(
        builder.add_tensor("data", omniconn::DType::kU8, {static_cast<int64_t>(size)}));
    for (uint64_t i = 0; i < count; ++i) {
      if (i > 0) OMNICONN_RETURN_IF_ERROR(wait_ack());
      OMNICONN_RETURN_IF_ERROR(send_loaned(builder, size, i).WithContext("loan send"));
    }
    return Status::Ok();
  }

  Status inline_sends(uint64_t count) {
    AlignedBuffer src(kInlineSize, 0x33);
    omniconn::PayloadBuilder builder;
    OMNICONN_RETURN_IF_ERROR(builder.add_tensor("data", omniconn::DType::kU8,
                                                {static_cast<int64_t>(kInlineSize)}, src.data()));
    for (uint64_t i = 0; i < count; ++i) {
      if (i > 0) OMNICONN_RETURN_IF_ERROR(wait_ack());
      const PayloadKey key = data_key("inline", kInlineSize, i);
      const Deadline deadline = omniconn::deadline_in(kOpTimeout);
      const int64_t t0 = now_ns();
      std::memcpy(src.data(), &t0, 8);
      OMNICONN_RETURN_IF_ERROR(conn_.send(key, builder, deadline).WithContext("inline send"));
    }
    return Status::Ok();
  }

  Connector& conn_;
  std::unique_ptr<AlignedBuffer> source_;
};

Status run_producer(const Options& opts) {
  OMNICONN_ASSIGN_OR_RETURN(auto conn, make_shm(connector_extra(opts, true)));
  Producer producer(*conn);
  return producer.serve();
}

// ---- Consumer (main process) ---------------------------------------------------------------

struct SizeResult {
  size_t size = 0;
  MemcpyResult memcpy_rate;
  uint64_t copy_count = 0;
  double copy_gbps = 0;
  LatencyStats loan;
};

class Consumer {
 public:
  Consumer(Connector& conn, ChildProcess& producer) : conn_(conn), producer_(producer) {}

  Status command(const char* name, size_t size, uint64_t count) {
    return send_command(conn_, {"ctl", kConsumer, kProducer},
                        {{"cmd", name}, {"size", Value(uint64_t{size})}, {"count", Value(count)}},
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

  // Streaming. The warm-up is a stream of its own, so that nothing is queued (written
  // ahead, e.g. while the reader maps the arena) when the timed stream starts.
  Result<double> copy_gbps(size_t size, const Plan& plan) {
    OMNICONN_RETURN_IF_ERROR(stream("copy", size, plan.warmup));
    const int64_t start = now_ns();
    OMNICONN_RETURN_IF_ERROR(stream("copy", size, plan.measured));
    return gb_per_s(static_cast<double>(size) * static_cast<double>(plan.measured),
                    now_ns() - start);
  }

  // Ping-pong: one payload in flight; latency = recv returned - stamp before send.
  Result<LatencyStats> ping_pong(const char* name, size_t size, const Plan& plan) {
    OMNICONN_RETURN_IF_ERROR(command(name, size, plan.total()));
    std::vector<int64_t> samples;
    samples.reserve(plan.measured);
    for (uint64_t i = 0; i < plan.total(); ++i) {
      OMNICONN_ASSIGN_OR_RETURN(PayloadView view, recv_data(size));
      const int64_t t1 = now_ns();
      int64_t t0 = 0;
      const auto data = view.reader().tensor(0).data;
      std::memcpy(&t0, data.data(), 8);
      // Light sanity check: a sane stamp, and a loan's fill byte (the producer writes i & 0xff).
      const bool filled = std::string_view(name) == "loan" && size > 8;
      if (t0 <= 0 || t0 > t1 || (filled && data[size - 1] != static_cast<std::byte>(i & 0xff))) {
        return Status::Corrupt(strf("%s payload %llu of %s: stale or overwritten data", name,
                                    static_cast<unsigned long long>(i), format_size(size).c_str()));
      }
      view.release();
      if (i >= plan.warmup) samples.push_back(t1 - t0);
      if (i + 1 < plan.total()) OMNICONN_RETURN_IF_ERROR(ack(i));
    }
    return summarize_ns(std::move(samples));
  }

 private:
  Status ack(uint64_t i) {
    return send_command(
        conn_, {strf("ack-%llu", static_cast<unsigned long long>(i)), kConsumer, kProducer},
        {{"cmd", "ack"}}, omniconn::deadline_in(kOpTimeout));
  }

  Connector& conn_;
  ChildProcess& producer_;
};

// ---- Report --------------------------------------------------------------------------------

struct Target {
  std::string name;
  std::string value;
  bool applicable = true;
  bool pass = false;
};

double copy_ratio(const SizeResult& r) {
  return r.memcpy_rate.median_gbps > 0 ? r.copy_gbps / r.memcpy_rate.median_gbps : 0;
}

std::vector<Target> check_targets(const std::vector<SizeResult>& results,
                                  const LatencyStats& inline_lat) {
  std::vector<Target> targets;
  Target copy{"16 MiB copy >= 0.6x memcpy", "not measured", false, false};
  Target loan{"loan p50 <= 2 us at every size", "", true, true};
  double worst = 0;
  size_t worst_size = 0;
  for (const auto& r : results) {
    if (r.size == 16 * kMiB) {
      copy = {copy.name, strf("%.2fx", copy_ratio(r)), true, copy_ratio(r) >= 0.6};
    }
    if (r.loan.p50_us >= worst) {
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

void print_report(const Options& opts, const std::vector<SizeResult>& results,
                  const LatencyStats& inline_lat, const std::vector<Target>& targets) {
  Table table({"size", "memcpy GB/s best/med", "copy GB/s", "copy/memcpy", "copy n", "loan p50 us",
               "loan p99 us", "loan n"});
  for (const auto& r : results) {
    table.add_row({format_size(r.size),
                   strf("%.2f / %.2f", r.memcpy_rate.best_gbps, r.memcpy_rate.median_gbps),
                   strf("%.3f", r.copy_gbps), strf("%.2fx", copy_ratio(r)),
                   strf("%llu", static_cast<unsigned long long>(r.copy_count)),
                   strf("%.2f", r.loan.p50_us), strf("%.2f", r.loan.p99_us),
                   strf("%zu", r.loan.count)});
  }
  table.print(stdout);
  std::printf(
      "inline 64 B send->recv (reader spin_us %llu): p50 %.2f us, p99 %.2f us, max %.1f us "
      "(n=%zu)\n",
      static_cast<unsigned long long>(opts.spin_us), inline_lat.p50_us, inline_lat.p99_us,
      inline_lat.max_us, inline_lat.count);
  std::string line = "targets:";
  for (const auto& t : targets) {
    const char* verdict = !t.applicable ? "n/a" : t.pass ? "PASS" : "FAIL";
    line += strf(" [%s] %s (%s);", verdict, t.name.c_str(), t.value.c_str());
  }
  std::printf("%s\n", line.c_str());
  std::printf("load average at the end: %s\n", load_average().c_str());
}

nlohmann::json latency_json(const LatencyStats& s) {
  return {{"count", s.count},   {"p50_us", s.p50_us}, {"p99_us", s.p99_us},
          {"min_us", s.min_us}, {"max_us", s.max_us}, {"mean_us", s.mean_us}};
}

Status write_json(const Options& opts, const std::vector<SizeResult>& results,
                  const LatencyStats& inline_lat, const std::vector<Target>& targets) {
  nlohmann::json doc = {{"benchmark", "shm_bench"},
                        {"connector", "SharedMemoryConnector"},
                        {"spin_us", opts.spin_us},
                        {"arena_bytes", opts.arena_bytes},
                        {"cpus", std::thread::hardware_concurrency()},
                        {"load_average_end", load_average()}};
  for (const auto& r : results) {
    doc["sizes"].push_back({{"size", r.size},
                            {"memcpy_best_gbps", r.memcpy_rate.best_gbps},
                            {"memcpy_median_gbps", r.memcpy_rate.median_gbps},
                            {"copy_gbps", r.copy_gbps},
                            {"copy_vs_memcpy_median", copy_ratio(r)},
                            {"copy_payloads", r.copy_count},
                            {"loan_latency", latency_json(r.loan)}});
  }
  doc["inline_64b_latency"] = latency_json(inline_lat);
  for (const auto& t : targets) {
    doc["targets"].push_back(
        {{"name", t.name}, {"value", t.value}, {"applicable", t.applicable}, {"pass", t.pass}});
  }
  std::ofstream out(opts.json_path);
  out << doc.dump(2) << "\n";
  out.close();
  if (!out) return Status::Unavailable("cannot write " + opts.json_path);
  return Status::Ok();
}

// ---- Main flow -----------------------------------------------------------------------------

Result<SizeResult> bench_size(Consumer& consumer, const Options& opts, size_t size,
                              const MemcpyResult& baseline) {
  SizeResult r;
  r.size = size;
  r.memcpy_rate = baseline;
  const Plan copy_plan = plan_for(opts, size, 16, 100000);
  r.copy_count = copy_plan.measured;
  OMNICONN_ASSIGN_OR_RETURN(r.copy_gbps, consumer.copy_gbps(size, copy_plan));
  OMNICONN_ASSIGN_OR_RETURN(r.loan,
                            consumer.ping_pong("loan", size, plan_for(opts, size, 100, 20000)));
  return r;
}

Status run_consumer(const char* argv0, const Options& opts) {
  std::vector<MemcpyResult> baselines;
  for (size_t size : opts.sizes) {
    OMNICONN_ASSIGN_OR_RETURN(MemcpyResult m, measure_memcpy(size));
    baselines.push_back(m);
  }
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
  std::vector<SizeResult> results;
  for (size_t i = 0; i < opts.sizes.size(); ++i) {
    auto r = bench_size(consumer, opts, opts.sizes[i], baselines[i]);
    if (!r.ok()) return r.status().WithContext("size " + format_size(opts.sizes[i]));
    results.push_back(*r);
  }
  Plan inline_plan;
  inline_plan.measured = opts.iters > 0 ? opts.iters : 100000;
  inline_plan.warmup = 1000;
  auto inline_lat = consumer.ping_pong("inline", kInlineSize, inline_plan);
  if (!inline_lat.ok()) return inline_lat.status().WithContext("inline 64 B");
  OMNICONN_RETURN_IF_ERROR(consumer.command("quit", kMinSize, 0));
  OMNICONN_RETURN_IF_ERROR(producer->wait(omniconn::deadline_in(kOpTimeout), "producer"));
  const auto targets = check_targets(results, *inline_lat);
  print_report(opts, results, *inline_lat, targets);
  if (!opts.json_path.empty()) return write_json(opts, results, *inline_lat, targets);
  return Status::Ok();
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
  const bool producer = opts->role == kProducer;
  const Status st = producer ? run_producer(*opts) : run_consumer(argv[0], *opts);
  if (!st.ok()) {
    std::fprintf(stderr, "shm_bench [%s]: error: %s\n", producer ? "producer" : "consumer",
                 st.ToString().c_str());
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

// memcpy_baseline: the limit. A warm single-thread memcpy of `size` bytes between two
// pre-faulted buffers in one process: median (and best) of 7 timed repetitions, each copying
// ~256 MiB worth, after one untimed warm-up repetition.
#include <cstdio>
#include <cstring>
#include <vector>

#include "baseline_common.h"

namespace {

using namespace baseline;  // NOLINT: helpers of this program

constexpr char kName[] = "memcpy_baseline";
constexpr char kDescription[] =
    "one payload = a warm single-thread memcpy of size bytes between two pre-faulted buffers "
    "in one process (median of 7 repetitions of ~256 MiB each)";
constexpr int kRepetitions = 7;

struct MemcpyResult {
  size_t size = 0;
  uint64_t copies = 0;  // per repetition
  double median_gbps = 0;
  double best_gbps = 0;
};

void* copy_bytes(void* dst, const void* src, size_t n) {
  return std::memcpy(dst, src, n);
}

MemcpyResult measure(size_t size, uint64_t bytes_per_rep) {
  AlignedBuffer src(size, 1);
  AlignedBuffer dst(size, 2);
  const uint64_t copies = std::max<uint64_t>(2, bytes_per_rep / size);
  // Called through a volatile pointer so the copies are not optimised away.
  void* (*volatile copy_fn)(void*, const void*, size_t) = copy_bytes;
  std::vector<double> rates;
  for (int rep = 0; rep <= kRepetitions; ++rep) {  // rep 0 warms caches and TLB, untimed
    const int64_t start = now_ns();
    for (uint64_t i = 0; i < copies; ++i) copy_fn(dst.data(), src.data(), size);
    const int64_t elapsed = now_ns() - start;
    if (rep > 0) rates.push_back(gb_per_s(static_cast<double>(size * copies), elapsed));
  }
  return {size, copies, median(rates), *std::max_element(rates.begin(), rates.end())};
}

void run(int argc, char** argv) {
  const Options opts = parse_options(argc, argv);
  if (opts.help) {
    print_usage(argv[0],
                "Warm single-thread memcpy between two pre-faulted buffers in one process, the\n"
                "limit for every way of moving a payload: GB/s (1 GB = 1e9 B), median and best of\n"
                "7 repetitions of ~256 MiB each (stream only; no second process, no ping-pong).");
    return;
  }
  std::printf("%s: pid %d, %u CPUs, load average %s\n", kName, static_cast<int>(getpid()),
              std::thread::hardware_concurrency(), load_average().c_str());
  std::fflush(stdout);
  // 256 MiB a repetition is ~0.1 s at 20 GB/s; a small --max-seconds shrinks it.
  const double seconds_per_rep =
      opts.max_seconds / static_cast<double>((kRepetitions + 1) * opts.sizes.size());
  const uint64_t bytes_per_rep =
      std::clamp<uint64_t>(static_cast<uint64_t>(seconds_per_rep * 2e9), 8 * kMiB, 256 * kMiB);
  nlohmann::json results = nlohmann::json::array();
  std::printf("%-8s %12s %12s %10s %12s\n", "size", "median GB/s", "best GB/s", "copies/rep",
              "CPU us/MiB");
  for (size_t size : opts.sizes) {
    const MemcpyResult r = measure(size, bytes_per_rep);
    // Copy time per MiB: 2^20 bytes at `median_gbps` bytes per ns.
    const double us_per_mib = static_cast<double>(kMiB) / r.median_gbps / 1e3;
    std::printf("%-8s %12.2f %12.2f %10llu %12.1f\n", format_size(size).c_str(), r.median_gbps,
                r.best_gbps, static_cast<unsigned long long>(r.copies), us_per_mib);
    std::fflush(stdout);
    results.push_back({{"size", size},
                       {"mode", "stream"},
                       {"count", r.copies},
                       {"repetitions", kRepetitions},
                       {"gbps", r.median_gbps},
                       {"best_gbps", r.best_gbps},
                       {"cpu_us_per_mib", us_per_mib}});
  }
  std::printf("load average at the end: %s\n", load_average().c_str());
  if (!opts.json_path.empty()) write_json(opts.json_path, kName, kDescription, results);
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(kName, [&] { run(argc, argv); });
}

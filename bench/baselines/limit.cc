// limit: what this machine allows a shared-memory handoff, measured the way shm_bench measures
// omniconn. Two processes share one pre-faulted memfd mapping; the writer publishes a payload
// by storing a sequence word (release), the reader spins on it (acquire) and acknowledges in a
// second word. No protocol, no allocation, no syscall on the path. Per size:
//   idle     the writer stamps t0 into the payload's first 8 bytes and publishes; the reader
//            reads the stamp (and the last byte) at t1. One-way t1 - t0, ping-pong.
//   filled   the same right after the writer wrote all N bytes of the payload: what a loan of N
//            bytes written in place must also pay (the reader's first touch of lines the
//            writer's cache holds).
//   copy     the writer copies N bytes from a private pre-faulted buffer into one of two slots
//            of the mapping and publishes; GB/s at the reader (first to last arrival).
// Every spin is bounded in time: a missing peer ends the program with an error, not a hang.
#include <sys/mman.h>

#include <atomic>
#include <cstdio>
#include <vector>

#include "baseline_common.h"

namespace {

using namespace baseline;  // NOLINT: helpers of this program

constexpr char kName[] = "limit";
constexpr char kDescription[] =
    "two processes, one pre-faulted memfd mapping, a spinning reader, a sequence word: one-way "
    "handoff idle and after an N-byte fill, and copy-into-mapping GB/s";
constexpr size_t kHeader = 4096;  // seq and ack, each in its own cache line
constexpr int kSlots = 2;         // copy mode: the writer fills one while the reader reads one
constexpr int64_t kSpinLimitNs = int64_t{kSocketTimeoutSeconds} * 1'000'000'000;

enum Mode { kIdle, kFilled, kCopy };
constexpr const char* kModeName[] = {"idle", "filled", "copy"};

struct alignas(64) Line {
  std::atomic<uint64_t> word{0};
};

// The mapping: [seq line][ack line] ... [slot 0][slot 1], slots page-aligned.
class Shared {
 public:
  explicit Shared(size_t max_size) : slot_bytes_(round_page(std::max(max_size, kMinSize))) {
    bytes_ = kHeader + kSlots * slot_bytes_;
    const int fd = memfd_create("omniconn-limit", MFD_CLOEXEC);
    if (fd < 0) throw_errno("memfd_create");
    if (ftruncate(fd, static_cast<off_t>(bytes_)) != 0) throw_errno("ftruncate");
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) throw_errno("mmap");
    base_ = static_cast<uint8_t*>(p);
    std::memset(base_, 0, bytes_);  // pre-faulted in the page cache and in this page table
  }
  ~Shared() { munmap(base_, bytes_); }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;

  std::atomic<uint64_t>& seq() { return reinterpret_cast<Line*>(base_)->word; }
  std::atomic<uint64_t>& ack() { return reinterpret_cast<Line*>(base_ + 64)->word; }
  uint8_t* slot(uint64_t i) { return base_ + kHeader + (i % kSlots) * slot_bytes_; }
  // The child's page table starts empty for a shared mapping: fault it in before timing.
  void touch() {
    for (size_t off = 0; off < bytes_; off += 4096) base_[off] = 0;
  }

 private:
  static size_t round_page(size_t n) { return (n + 4095) / 4096 * 4096; }
  size_t slot_bytes_ = 0;
  size_t bytes_ = 0;
  uint8_t* base_ = nullptr;
};

// Each process's own deadline for the spin in progress.
int64_t g_spin_deadline = 0;
void reset_deadline() {
  g_spin_deadline = now_ns() + kSpinLimitNs;
}

// Spins until `word` reaches `want`; an error after kSpinLimitNs.
void spin_until(const std::atomic<uint64_t>& word, uint64_t want, const char* what) {
  for (uint32_t n = 1;; ++n) {
    if (word.load(std::memory_order_acquire) >= want) return;
    __builtin_ia32_pause();
    if ((n & 0xffff) == 0 && now_ns() > g_spin_deadline) {
      throw Error(strf("%s: no progress in %d s", what, kSocketTimeoutSeconds));
    }
  }
}

// One phase: `count` payloads of `size` bytes, payload numbers from `first`.
struct Phase {
  Mode mode = kIdle;
  size_t size = 0;
  uint64_t first = 0;
  uint64_t count = 0;
};

void write_one(Shared& s, const Phase& p, uint64_t i, const uint8_t* source) {
  uint8_t* slot = s.slot(i);
  if (p.mode == kFilled) std::memset(slot, static_cast<int>(i & 0xff), p.size);
  if (p.mode == kCopy) std::memcpy(slot, source, p.size);
  if (p.mode == kIdle) slot[p.size - 1] = static_cast<uint8_t>(i & 0xff);
  const int64_t t0 = now_ns();
  std::memcpy(slot, &t0, 8);
  s.seq().store(i + 1, std::memory_order_release);
}

void writer(Shared& s, const std::vector<Phase>& phases, size_t max_size) {
  s.touch();
  AlignedBuffer source(max_size, kFill);
  for (const Phase& p : phases) {
    for (uint64_t i = p.first; i < p.first + p.count; ++i) {
      reset_deadline();
      // Ping-pong: the previous payload acknowledged; copy: a slot free.
      const uint64_t behind = p.mode == kCopy ? kSlots - 1 : 0;
      if (i > behind) spin_until(s.ack(), i - behind, "writer waiting for the reader");
      write_one(s, p, i, source.data());
    }
  }
}

// Reads payload `i` (stamp and last byte) once published; returns t1 - t0.
int64_t read_one(Shared& s, const Phase& p, uint64_t i) {
  spin_until(s.seq(), i + 1, "reader waiting for the writer");
  const int64_t t1 = now_ns();
  const uint8_t* slot = s.slot(i);
  int64_t t0 = 0;
  std::memcpy(&t0, slot, 8);
  const bool marked = p.mode == kCopy || slot[p.size - 1] == static_cast<uint8_t>(i & 0xff);
  if (t0 <= 0 || t0 > t1 || !marked)
    throw Error(strf("payload %llu: stale data", static_cast<unsigned long long>(i)));
  s.ack().store(i + 1, std::memory_order_release);
  return t1 - t0;
}

nlohmann::json read_phase(Shared& s, const Phase& p) {
  std::vector<int64_t> samples;
  samples.reserve(p.count);
  int64_t start = 0;
  for (uint64_t i = p.first; i < p.first + p.count; ++i) {
    reset_deadline();
    samples.push_back(read_one(s, p, i));
    if (i == p.first) start = now_ns();
  }
  const int64_t elapsed = now_ns() - start;
  nlohmann::json row = {{"size", p.size}, {"mode", kModeName[p.mode]}, {"count", p.count}};
  if (p.mode == kCopy) {
    row["gbps"] = gb_per_s(static_cast<double>(p.size) * static_cast<double>(p.count - 1), elapsed);
  } else {
    const PingPongResult r = summarize(p.size, std::move(samples));
    row.update({{"p50_us", r.p50_us}, {"p99_us", r.p99_us}, {"p999_us", r.p999_us}});
  }
  return row;
}

// Payloads per phase: ~`bytes` worth, 50..20000 (copy: at least 8).
std::vector<Phase> plan(const Options& opts) {
  const double phases = 3.0 * static_cast<double>(opts.sizes.size());
  const double bytes = std::clamp(opts.max_seconds / phases * 2e9, 64.0 * kMiB, 4.0 * kGiB);
  std::vector<Phase> out;
  uint64_t first = 0;
  for (size_t size : opts.sizes) {
    for (Mode m : {kIdle, kFilled, kCopy}) {
      const double n = m == kIdle ? 20000 : bytes / static_cast<double>(size);
      const auto count = static_cast<uint64_t>(std::clamp(n, m == kCopy ? 8.0 : 50.0, 20000.0));
      out.push_back({m, std::max(size, kMinSize), first, count});
      first += count;
    }
  }
  return out;
}

void print_row(const nlohmann::json& r) {
  if (r["mode"] == "copy") {
    std::printf("%-8s %-7s %10.3f GB/s %8llu\n", format_size(r["size"]).c_str(), "copy",
                r["gbps"].get<double>(), r["count"].get<unsigned long long>());
  } else {
    std::printf("%-8s %-7s p50 %7.3f us  p99 %7.3f us %8llu\n", format_size(r["size"]).c_str(),
                r["mode"].get<std::string>().c_str(), r["p50_us"].get<double>(),
                r["p99_us"].get<double>(), r["count"].get<unsigned long long>());
  }
  std::fflush(stdout);
}

void run(int argc, char** argv) {
  const Options opts = parse_options(argc, argv);
  if (opts.help) {
    print_usage(argv[0],
                "The machine's limit for a shared-memory handoff between two processes: one\n"
                "pre-faulted memfd mapping, a spinning reader, a sequence word, nothing else.\n"
                "Per size: one-way handoff p50/p99 idle and right after an N-byte fill, and\n"
                "copy-into-mapping GB/s (1 GB = 1e9 B). omniconn's figures are ratios to these.");
    return;
  }
  std::printf("%s: pid %d, %u CPUs, load average %s\n", kName, static_cast<int>(getpid()),
              std::thread::hardware_concurrency(), load_average().c_str());
  const size_t max_size = *std::max_element(opts.sizes.begin(), opts.sizes.end());
  Shared shared(max_size);
  const std::vector<Phase> phases = plan(opts);
  Child child(kName, [&] { writer(shared, phases, max_size); });
  nlohmann::json results = nlohmann::json::array();
  for (const Phase& p : phases) {
    results.push_back(read_phase(shared, p));
    print_row(results.back());
  }
  child.wait_ok();
  std::printf("load average at the end: %s\n", load_average().c_str());
  if (!opts.json_path.empty()) write_json(opts.json_path, kName, kDescription, results);
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(kName, [&] { run(argc, argv); });
}

// LatencyHistogram: how long calls took, in fixed buckets (1-2-5 steps from 1 us to 10 s),
// the shape Prometheus histograms have. Connectors keep one for put and one for get
// (Metrics); the runtime keeps end-to-end ones. Plain values: copy, merge, compare.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace omniconn {

struct LatencyHistogram {
  // Upper bounds of the buckets in nanoseconds; one more bucket above the last (+Inf).
  static constexpr std::array<int64_t, 22> kBoundsNs = {
      1'000,        2'000,        5'000,        10'000,       20'000,      50'000,
      100'000,      200'000,      500'000,      1'000'000,    2'000'000,   5'000'000,
      10'000'000,   20'000'000,   50'000'000,   100'000'000,  200'000'000, 500'000'000,
      1000'000'000, 2000'000'000, 5000'000'000, 10000'000'000};
  static constexpr size_t kBuckets = kBoundsNs.size() + 1;

  std::array<uint64_t, kBuckets> counts{};  // counts[i]: observations in bucket i (not cumulative)
  uint64_t sum_ns = 0;

  // The bucket of a duration: the first whose bound is >= ns.
  static size_t bucket_of(int64_t ns) {
    size_t i = 0;
    while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
    return i;
  }
  void observe(int64_t ns) {
    ++counts[bucket_of(ns)];
    sum_ns += static_cast<uint64_t>(ns > 0 ? ns : 0);
  }
  uint64_t count() const {
    uint64_t n = 0;
    for (uint64_t c : counts) n += c;
    return n;
  }
  void merge(const LatencyHistogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts[i] += o.counts[i];
    sum_ns += o.sum_ns;
  }
  // The bound of the bucket holding quantile q (0..1) in ns, interpolated linearly inside it
  // (Prometheus' histogram_quantile); 0 when empty; the last finite bound for the +Inf bucket.
  double quantile_ns(double q) const;

  bool operator==(const LatencyHistogram&) const = default;
};

// The same histogram with atomic counts, for a connector's calls from several threads; relaxed
// increments, a snapshot is not a consistent cut (good enough for monitoring).
class AtomicLatencyHistogram {
 public:
  void observe(int64_t ns) {
    counts_[LatencyHistogram::bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<uint64_t>(ns > 0 ? ns : 0), std::memory_order_relaxed);
  }
  LatencyHistogram snapshot() const {
    LatencyHistogram h;
    for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
      h.counts[i] = counts_[i].load(std::memory_order_relaxed);
    }
    h.sum_ns = sum_ns_.load(std::memory_order_relaxed);
    return h;
  }

 private:
  std::array<std::atomic<uint64_t>, LatencyHistogram::kBuckets> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace omniconn

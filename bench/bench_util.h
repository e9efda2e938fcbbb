// Helpers every benchmark program shares, omniconn's and the baselines' alike: no omniconn
// headers, so the baselines (bench/baselines/) stay plain POSIX + C++20.
//   time (CLOCK_MONOTONIC, comparable across processes; CPU clocks), printf into a string,
//   the load average, sizes ("64", "4K", "16MiB": parse and print), percentiles, GB/s.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace benchutil {

inline constexpr size_t kKiB = size_t{1} << 10;
inline constexpr size_t kMiB = size_t{1} << 20;
inline constexpr size_t kGiB = size_t{1} << 30;

// `clock` in nanoseconds; -1 when it cannot be read (e.g. another process's CPU clock after it
// exited).
inline int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return -1;
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// CLOCK_MONOTONIC: comparable across processes on one host (and with Python's monotonic_ns).
inline int64_t now_ns() {
  return clock_ns(CLOCK_MONOTONIC);
}

// CPU time (user + system) of process `pid` (0: this one) in ns; -1 when it cannot be read.
inline int64_t process_cpu_ns(pid_t pid) {
  clockid_t clock;
  if (clock_getcpuclockid(pid, &clock) != 0) return -1;
  return clock_ns(clock);
}

// printf into a std::string.
__attribute__((format(printf, 1, 2))) inline std::string strf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, format, args);
  va_end(args);
  return out;
}

// "2.58 3.14 1.95" from /proc/loadavg: a noisy machine explains noisy numbers.
inline std::string load_average() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "unknown";
  double a = 0, b = 0, c = 0;
  const int n = std::fscanf(f, "%lf %lf %lf", &a, &b, &c);
  std::fclose(f);
  return n == 3 ? strf("%.2f %.2f %.2f", a, b, c) : "unknown";
}

// "64", "64B", "4K", "4KiB", "1M", "16MiB", "1G" (binary units, case-insensitive); nullopt for
// anything else or above 1 TiB.
inline std::optional<size_t> parse_size(std::string_view text) {
  size_t i = 0;
  uint64_t number = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9' && number <= (uint64_t{1} << 40)) {
    number = number * 10 + static_cast<uint64_t>(text[i++] - '0');
  }
  std::string unit;
  for (char c : text.substr(i)) unit += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  uint64_t scale = 0;
  if (unit.empty() || unit == "b") scale = 1;
  if (unit == "k" || unit == "kb" || unit == "kib") scale = kKiB;
  if (unit == "m" || unit == "mb" || unit == "mib") scale = kMiB;
  if (unit == "g" || unit == "gb" || unit == "gib") scale = kGiB;
  if (i == 0 || scale == 0 || number > (uint64_t{1} << 40) / scale) return std::nullopt;
  return static_cast<size_t>(number * scale);
}

// Comma-separated sizes, each at least `min_bytes`; nullopt with *error set otherwise.
inline std::optional<std::vector<size_t>> parse_size_list(std::string_view text, size_t min_bytes,
                                                          std::string* error) {
  std::vector<size_t> sizes;
  for (;;) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const std::optional<size_t> size = parse_size(item);
    if (!size) {
      *error = strf("bad size '%.*s'", static_cast<int>(item.size()), item.data());
      return std::nullopt;
    }
    if (*size < min_bytes) {
      *error = strf("size %zu is below the minimum of %zu bytes", *size, min_bytes);
      return std::nullopt;
    }
    sizes.push_back(*size);
    if (comma == std::string_view::npos) return sizes;
    text.remove_prefix(comma + 1);
  }
}

inline std::string format_size(size_t bytes) {
  if (bytes >= kGiB && bytes % kGiB == 0) return strf("%zu GiB", bytes / kGiB);
  if (bytes >= kMiB && bytes % kMiB == 0) return strf("%zu MiB", bytes / kMiB);
  if (bytes >= kKiB && bytes % kKiB == 0) return strf("%zu KiB", bytes / kKiB);
  return strf("%zu B", bytes);
}

// Nearest-rank percentile of sorted samples, p in (0, 100].
inline int64_t percentile_sorted(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

inline double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// Decimal gigabytes per second (bytes per nanosecond).
inline double gb_per_s(double bytes, int64_t elapsed_ns) {
  return elapsed_ns > 0 ? bytes / static_cast<double>(elapsed_ns) : 0.0;
}

}  // namespace benchutil

#include "stats.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "omniconn/metrics_server.h"
#include "omniconn/prometheus.h"

namespace omniconn::tools {

namespace {

using nlohmann::json;

// Cumulative buckets of one histogram family, summed over every series of an edge.
struct Buckets {
  std::map<double, double> cumulative;  // le -> count
  double quantile(double q) const {     // Prometheus' histogram_quantile, in seconds
    if (cumulative.empty()) return 0;
    double total = cumulative.rbegin()->second;
    if (total <= 0) return 0;
    double rank = q * total, lo = 0, below = 0;
    for (const auto& [le, n] : cumulative) {
      if (n >= rank) {
        if (std::isinf(le)) return lo;
        return n == below ? le : lo + (le - lo) * (rank - below) / (n - below);
      }
      lo = le;
      below = n;
    }
    return lo;
  }
};

struct Edge {
  std::string from, to, connector, from_host, to_host;
  double sent = 0, received = 0, bytes_sent = 0, bytes_received = 0, in_flight = 0;
  double errors = 0, timeouts = 0, memory_in_use = 0;
  Buckets put, get, e2e;
};

struct Snapshot {
  std::map<std::pair<std::string, std::string>, Edge> edges;
  double issued = -1, completed = -1, target = -1;
};

void add_bucket(Buckets* b, const PrometheusSample& s) {
  std::string_view le = s.label("le");
  double bound = le == "+Inf" ? HUGE_VAL : std::strtod(std::string(le).c_str(), nullptr);
  b->cumulative[bound] += s.value;
}

void add_sample(Snapshot* snap, const PrometheusSample& s) {
  if (s.name == "omniconn_run_requests_issued_total") snap->issued = s.value;
  if (s.name == "omniconn_run_requests_completed_total") snap->completed = s.value;
  if (s.name == "omniconn_run_requests") snap->target = s.value;
  if (s.label("from").empty() && s.label("to").empty()) return;
  Edge& e = snap->edges[{std::string(s.label("from")), std::string(s.label("to"))}];
  e.from = s.label("from");
  e.to = s.label("to");
  bool out = s.label("side") != "in";
  if (e.connector.empty()) e.connector = s.label("connector");
  (out ? e.from_host : e.to_host) = s.label("host");
  const std::string& n = s.name;
  if (n == "omniconn_payloads_sent_total") e.sent += s.value;
  if (n == "omniconn_payloads_received_total") e.received += s.value;
  if (n == "omniconn_bytes_sent_total") e.bytes_sent += s.value;
  if (n == "omniconn_bytes_received_total") e.bytes_received += s.value;
  if (n == "omniconn_in_flight_payloads") e.in_flight += s.value;
  if (n == "omniconn_memory_in_use_bytes") e.memory_in_use += s.value;
  if (n == "omniconn_errors_total") e.errors += s.value;
  if (n == "omniconn_timeouts_total") e.timeouts += s.value;
  if (n == "omniconn_put_duration_seconds_bucket") add_bucket(&e.put, s);
  if (n == "omniconn_get_duration_seconds_bucket") add_bucket(&e.get, s);
  if (n == "omniconn_end_to_end_seconds_bucket") add_bucket(&e.e2e, s);
}

Result<Snapshot> scrape(const StatsArgs& args) {
  auto text = scrape_metrics(args.target, std::chrono::milliseconds(args.timeout_ms));
  if (!text.ok()) return text.status();
  auto parsed = parse_prometheus_text(*text);
  if (!parsed.ok()) return parsed.status().WithContext(args.target + " is not Prometheus text");
  Snapshot snap;
  for (const PrometheusSample& s : parsed->samples) add_sample(&snap, s);
  return snap;
}

json to_json(const Snapshot& s) {
  json edges = json::array();
  for (const auto& [k, e] : s.edges) {
    edges.push_back({{"from", e.from},
                     {"to", e.to},
                     {"connector", e.connector},
                     {"from_host", e.from_host},
                     {"to_host", e.to_host},
                     {"sent", e.sent},
                     {"received", e.received},
                     {"bytes_sent", e.bytes_sent},
                     {"bytes_received", e.bytes_received},
                     {"in_flight", e.in_flight},
                     {"memory_in_use_bytes", e.memory_in_use},
                     {"errors", e.errors},
                     {"timeouts", e.timeouts},
                     {"put_p50_s", e.put.quantile(0.5)},
                     {"put_p99_s", e.put.quantile(0.99)},
                     {"get_p50_s", e.get.quantile(0.5)},
                     {"get_p99_s", e.get.quantile(0.99)},
                     {"e2e_p50_s", e.e2e.quantile(0.5)},
                     {"e2e_p99_s", e.e2e.quantile(0.99)}});
  }
  json out = {{"edges", edges}};
  if (s.target >= 0) {
    out["run"] = {{"requests", s.target}, {"issued", s.issued}, {"completed", s.completed}};
  }
  return out;
}

std::string micros(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, seconds >= 0.01 ? "%.0f" : "%.1f", seconds * 1e6);
  return buf;
}

// The table; `prev` and `dt_s` (> 0) add rates since the previous refresh.
void print_table(const Snapshot& s, const Snapshot* prev, double dt_s) {
  if (s.target >= 0) {
    std::printf("run: %.0f/%.0f requests completed, %.0f issued\n", s.completed, s.target,
                s.issued);
  }
  std::printf("%-10s %-24s %9s %9s %9s %8s %6s %6s %15s %15s %15s\n", "edge", "connector", "sent",
              "received", "MB", "in-fl", "errors", "t/o", "put p50/p99 us", "get p50/p99 us",
              "e2e p50/p99 us");
  for (const auto& [k, e] : s.edges) {
    std::string edge = e.from + "->" + e.to;
    std::printf("%-10s %-24s %9.0f %9.0f %9.1f %8.0f %6.0f %6.0f %15s %15s %15s\n", edge.c_str(),
                e.connector.c_str(), e.sent, e.received, e.bytes_received / 1e6, e.in_flight,
                e.errors, e.timeouts,
                (micros(e.put.quantile(0.5)) + "/" + micros(e.put.quantile(0.99))).c_str(),
                (micros(e.get.quantile(0.5)) + "/" + micros(e.get.quantile(0.99))).c_str(),
                (micros(e.e2e.quantile(0.5)) + "/" + micros(e.e2e.quantile(0.99))).c_str());
    if (prev == nullptr || dt_s <= 0) continue;
    auto it = prev->edges.find(k);
    if (it == prev->edges.end()) continue;
    std::printf("%-10s %-24s %9.1f/s %7.1f/s %7.1f MB/s\n", "", "",
                (e.sent - it->second.sent) / dt_s, (e.received - it->second.received) / dt_s,
                (e.bytes_received - it->second.bytes_received) / 1e6 / dt_s);
  }
  if (s.edges.empty()) std::printf("(no edge reported yet)\n");
  std::fflush(stdout);
}

}  // namespace

int cmd_stats(const StatsArgs& args) {
  auto first = scrape(args);
  if (!first.ok()) {
    std::fprintf(stderr, "omniconn stats: %s\n", first.status().ToString().c_str());
    return 1;
  }
  if (args.once) {
    if (args.json) {
      std::printf("%s\n", to_json(*first).dump(2).c_str());
    } else {
      print_table(*first, nullptr, 0);
    }
    return 0;
  }
  const bool tty = ::isatty(STDOUT_FILENO) != 0 && !args.json;
  Snapshot prev = *first;
  auto prev_t = std::chrono::steady_clock::now();
  for (int64_t n = 1;; ++n) {
    auto now = std::chrono::steady_clock::now();
    double dt = std::chrono::duration<double>(now - prev_t).count();
    Snapshot cur = n == 1 ? *first : prev;
    if (n > 1) {
      auto s = scrape(args);
      if (!s.ok()) {
        std::fprintf(stderr, "omniconn stats: %s: the run has ended\n",
                     s.status().message().c_str());
        return 0;
      }
      cur = std::move(*s);
    }
    if (args.json) {
      std::printf("%s\n", to_json(cur).dump().c_str());  // one object per line
      std::fflush(stdout);
    } else {
      if (tty) std::printf("\x1b[H\x1b[2J");
      std::printf("%s%s\n", n > 1 && !tty ? "\n" : "", args.target.c_str());
      print_table(cur, n > 1 ? &prev : nullptr, dt);
    }
    if (args.count > 0 && n >= args.count) return 0;
    prev = std::move(cur);
    prev_t = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(args.interval_ms));
  }
}

}  // namespace omniconn::tools

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "omniconn/runtime.h"

namespace omniconn {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return fmt(u == 0 ? "%.0f" : "%.1f", b) + " " + units[u];
}

std::string pad(std::string s, size_t w) {
  if (s.size() < w) s.append(w - s.size(), ' ');
  return s;
}

std::string lpad(const std::string& s, size_t w) {
  return s.size() < w ? std::string(w - s.size(), ' ') + s : s;
}

}  // namespace

std::string format_report(const RunReport& r) {
  size_t width = 36;  // the connector column fits the longest name
  size_t host_w = 0;  // multi-host runs: "a -> b" beside the edge, the host of each stage
  for (const EdgeReport& e : r.edges) {
    width = std::max(width, e.connector.size() + 2);
    if (r.multi_host) host_w = std::max(host_w, e.from_host.size() + e.to_host.size() + 6);
  }
  if (r.multi_host) host_w = std::max<size_t>(host_w, 7);
  std::string out = "edge      " + (r.multi_host ? pad("hosts", host_w) : "") +
                    pad("connector", width) +
                    "  requests       bytes   p50 ms   p99 ms   max ms      MB/s  errors  inline\n";
  for (const EdgeReport& e : r.edges) {
    out += pad(e.from + " -> " + e.to, 10) +
           (r.multi_host ? pad(e.from_host + " -> " + e.to_host, host_w) : "") +
           pad(e.connector, width) + lpad(std::to_string(e.requests), 10) +
           lpad(human_bytes(static_cast<double>(e.bytes)), 12) + lpad(fmt("%.3f", e.p50_ms), 9) +
           lpad(fmt("%.3f", e.p99_ms), 9) + lpad(fmt("%.3f", e.max_ms), 9) +
           lpad(fmt("%.1f", e.mb_per_s), 10) + lpad(std::to_string(e.errors), 8) +
           lpad(std::to_string(e.inline_payloads), 8) + "\n";
  }
  size_t stage_host_w = 0;
  for (const StageReport& s : r.stages) {
    if (r.multi_host) stage_host_w = std::max(stage_host_w, std::max<size_t>(s.host.size(), 4) + 2);
  }
  out += "\nstage  " + (r.multi_host ? pad("host", stage_host_w) : "") +
         "name        pid      requests  peak RSS\n";
  for (const StageReport& s : r.stages) {
    out += pad(s.id, 7) + (r.multi_host ? pad(s.host, stage_host_w) : "") +
           pad(s.name.empty() ? "-" : s.name, 12) + pad(std::to_string(s.pid), 9) +
           lpad(std::to_string(s.requests), 8) +
           lpad(fmt("%.1f MiB", static_cast<double>(s.peak_rss_kb) / 1024.0), 12) + "\n";
  }
  out += "\n" + std::to_string(r.requests_done) + " requests in " + fmt("%.2f", r.wall_s) + " s (" +
         fmt("%.1f", r.wall_s > 0 ? static_cast<double>(r.requests_done) / r.wall_s : 0) +
         " requests/s)\n";
  return out;
}

std::string report_json(const RunReport& r, const PipelineConfig& config, const RunOptions& o) {
  nlohmann::json edges = nlohmann::json::array(), stages = nlohmann::json::array();
  for (const EdgeReport& e : r.edges) {
    edges.push_back({{"from", e.from},
                     {"to", e.to},
                     {"connector", e.connector},
                     {"from_host", e.from_host},
                     {"to_host", e.to_host},
                     {"requests", e.requests},
                     {"bytes", e.bytes},
                     {"p50_ms", e.p50_ms},
                     {"p99_ms", e.p99_ms},
                     {"max_ms", e.max_ms},
                     {"mb_per_s", e.mb_per_s},
                     {"errors", e.errors},
                     {"inline", e.inline_payloads}});
  }
  for (const StageReport& s : r.stages) {
    stages.push_back({{"stage", s.id},
                      {"host", s.host},
                      {"name", s.name},
                      {"pid", s.pid},
                      {"peak_rss_kb", s.peak_rss_kb},
                      {"requests", s.requests},
                      {"output_bytes", s.output_bytes}});
  }
  nlohmann::json j = {{"config", config.file},
                      {"requests", o.requests},
                      {"concurrency", o.concurrency},
                      {"workload",
                       {{"tokens", o.workload.tokens},
                        {"hidden_size", o.workload.hidden_size},
                        {"codes_per_token", o.workload.codes_per_token},
                        {"audio_samples_per_token", o.workload.audio_samples_per_token},
                        {"source_us_per_token", o.workload.source_us_per_token},
                        {"middle_us_per_token", o.workload.middle_us_per_token},
                        {"sink_us_per_token", o.workload.sink_us_per_token}}},
                      {"multi_host", r.multi_host},
                      {"wall_s", r.wall_s},
                      {"requests_done", r.requests_done},
                      {"edges", edges},
                      {"stages", stages}};
  return j.dump(2) + "\n";
}

}  // namespace omniconn

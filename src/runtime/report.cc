#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "omniconn/runtime.h"
#include "runtime/runtime_internal.h"

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

nlohmann::json request_json(const RequestReport& q) {
  return {{"measured", q.measured},
          {"aborted", q.aborted},
          {"abort_freed", q.abort_freed},
          {"chunks_sent", q.chunks_sent},
          {"chunks_received", q.chunks_received},
          {"first_chunk_p50_ms", q.first_chunk_p50_ms},
          {"first_chunk_p99_ms", q.first_chunk_p99_ms},
          {"last_chunk_p50_ms", q.last_chunk_p50_ms},
          {"last_chunk_p99_ms", q.last_chunk_p99_ms},
          {"request_p50_ms", q.request_p50_ms},
          {"request_p99_ms", q.request_p99_ms},
          {"connector_share_p50", q.connector_share_p50},
          {"connector_share_p99", q.connector_share_p99}};
}

// "requests (streamed, 12 chunks each): first chunk p50 ..."
std::string request_lines(const RequestReport& q) {
  if (q.measured == 0 && q.aborted == 0) return "";
  std::string out = "\nper request at the sink" + std::string(q.stream ? " (streamed)" : "") +
                    ", from its start at the source, p50 / p99 of " + std::to_string(q.measured) +
                    ":\n";
  out += "  first chunk " + fmt("%.3f", q.first_chunk_p50_ms) + " / " +
         fmt("%.3f", q.first_chunk_p99_ms) + " ms, last chunk " + fmt("%.3f", q.last_chunk_p50_ms) +
         " / " + fmt("%.3f", q.last_chunk_p99_ms) + " ms, done " + fmt("%.3f", q.request_p50_ms) +
         " / " + fmt("%.3f", q.request_p99_ms) + " ms\n";
  out += "  connector share of request time " + fmt("%.1f", 100 * q.connector_share_p50) + "% / " +
         fmt("%.1f", 100 * q.connector_share_p99) + "%; chunks sent " +
         std::to_string(q.chunks_sent) + ", received " + std::to_string(q.chunks_received) +
         (q.aborted > 0 ? "; aborted requests " + std::to_string(q.aborted) + " (" +
                              std::to_string(q.abort_freed) + " unread chunks freed)"
                        : "") +
         "\n";
  return out;
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
                    pad("connector", width) + (r.requests.stream ? "    chunks" : "  requests") +
                    "       bytes   p50 ms   p99 ms   max ms      MB/s  errors  inline\n";
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
  out += request_lines(r.requests);
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
                      {"output_bytes", s.output_bytes},
                      {"in_flight_end", s.in_flight_end},
                      {"in_use_bytes_end", s.in_use_bytes_end},
                      {"abort_freed", s.abort_freed},
                      {"rss_kb_early", s.rss_kb_early},
                      {"rss_kb_end", s.rss_kb_end}});
  }
  nlohmann::json j = {{"config", config.file},
                      {"requests", o.requests},
                      {"concurrency", o.concurrency},
                      {"stream", o.stream},
                      {"workload", runtime::options_json(o)["workload"]},
                      {"request_times", request_json(r.requests)},
                      {"multi_host", r.multi_host},
                      {"wall_s", r.wall_s},
                      {"requests_done", r.requests_done},
                      {"edges", edges},
                      {"stages", stages}};
  return j.dump(2) + "\n";
}

}  // namespace omniconn

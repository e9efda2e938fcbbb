#include "runtime/run_metrics.h"

#include "omniconn/prometheus.h"

namespace omniconn::runtime {

using nlohmann::json;

json histogram_json(const LatencyHistogram& h) {
  return {{"c", h.counts}, {"s", h.sum_ns}};
}

LatencyHistogram histogram_from_json(const json& j) {
  LatencyHistogram h;
  if (!j.is_object()) return h;
  auto counts = j.value("c", std::vector<uint64_t>{});
  for (size_t i = 0; i < counts.size() && i < LatencyHistogram::kBuckets; ++i) {
    h.counts[i] = counts[i];
  }
  h.sum_ns = j.value("s", uint64_t{0});
  return h;
}

namespace {

// Metrics' counters and gauges by their name in a metrics line.
constexpr std::pair<const char*, uint64_t Metrics::*> kFields[] = {
    {"puts", &Metrics::puts},           {"sends", &Metrics::sends},
    {"gets", &Metrics::gets},           {"inline", &Metrics::inline_payloads},
    {"bytes_out", &Metrics::bytes_out}, {"bytes_in", &Metrics::bytes_in},
    {"timeouts", &Metrics::timeouts},   {"errors", &Metrics::errors},
    {"reclaimed", &Metrics::reclaimed}, {"capacity", &Metrics::capacity_bytes},
    {"in_use", &Metrics::in_use_bytes}, {"in_flight", &Metrics::in_flight},
};

}  // namespace

json metrics_json(const Metrics& m) {
  json j = json::object();
  for (auto [key, field] : kFields) j[key] = m.*field;
  j["by_code"] = m.errors_by_code;
  j["put"] = histogram_json(m.put_latency);
  j["get"] = histogram_json(m.get_latency);
  return j;
}

Metrics metrics_from_json(const json& j) {
  Metrics m;
  if (!j.is_object()) return m;
  for (auto [key, field] : kFields) m.*field = j.value(key, uint64_t{0});
  auto codes = j.value("by_code", std::vector<uint64_t>{});
  for (size_t i = 0; i < codes.size() && i < kStatusCodeCount; ++i) m.errors_by_code[i] = codes[i];
  m.put_latency = histogram_from_json(j.value("put", json()));
  m.get_latency = histogram_from_json(j.value("get", json()));
  return m;
}

void RunMetrics::stage_line(size_t index, const std::string& host, const std::string& json_text) {
  json line = json::parse(json_text, nullptr, false);
  if (!line.is_object()) return;  // a torn line: the next one comes in kMetricsIntervalMs
  std::lock_guard lock(mu_);
  stages_[index] = StageState{host, std::move(line)};
}

void RunMetrics::progress(int64_t issued, int64_t completed, int64_t target) {
  std::lock_guard lock(mu_);
  issued_ = issued;
  completed_ = completed;
  target_ = target;
}

std::string RunMetrics::render() const {
  std::lock_guard lock(mu_);
  PrometheusText t;
  if (target_ >= 0) {
    (void)t.gauge("omniconn_run_requests", "Requests this run is to complete.", {},
                  static_cast<double>(target_));
    (void)t.counter("omniconn_run_requests_issued_total", "Requests handed to the source stages.",
                    {}, static_cast<double>(issued_));
    (void)t.counter("omniconn_run_requests_completed_total",
                    "Requests every sink stage has finished.", {}, static_cast<double>(completed_));
  }
  for (const auto& [index, s] : stages_) {
    const StageConfig& stage = config_.stages[index];
    const MetricLabels at = {{"stage", stage.id}, {"host", s.host}};
    if (s.line.contains("first_chunk")) {
      (void)t.histogram("omniconn_time_to_first_chunk_seconds",
                        "From a request's start at the source to its first chunk at this sink.", at,
                        histogram_from_json(s.line["first_chunk"]));
      (void)t.histogram("omniconn_request_duration_seconds",
                        "From a request's start at the source to its end at this sink.", at,
                        histogram_from_json(s.line["request"]));
    }
    for (const json& e : s.line.value("edges", json::array())) {
      MetricLabels labels = {
          {"stage", stage.id},           {"host", s.host},
          {"from", e.value("from", "")}, {"to", e.value("to", "")},
          {"side", e.value("side", "")}, {"connector", e.value("connector", "")}};
      (void)t.connector(metrics_from_json(e.value("m", json())), labels);
      (void)t.counter("omniconn_backpressure_total",
                      "Sends that found no space before a wait slice ended and were retried.",
                      labels, e.value("backpressure", 0.0));
      if (e.contains("e2e")) {
        (void)t.histogram("omniconn_end_to_end_seconds",
                          "From the producing stage's send to the payload received here.", labels,
                          histogram_from_json(e["e2e"]));
      }
    }
  }
  return t.str();
}

Result<std::string> RunMetrics::serve(const std::string& address) {
  auto server = MetricsServer::start(address, [this] { return render(); });
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  return server_->address();
}

}  // namespace omniconn::runtime

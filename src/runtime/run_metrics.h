// A run's metrics: each stage process reports its connectors' Metrics and its end-to-end
// latencies as a "metrics <json>" event line every kMetricsIntervalMs (and once more at its
// end); the orchestrator and the stage workers keep the latest line of each stage and serve
// them, with the run's progress, as Prometheus text (omniconn run --metrics, docs/metrics.md).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "omniconn/config.h"
#include "omniconn/connector.h"
#include "omniconn/metrics_server.h"

namespace omniconn::runtime {

inline constexpr int64_t kMetricsIntervalMs = 250;

nlohmann::json histogram_json(const LatencyHistogram& h);
LatencyHistogram histogram_from_json(const nlohmann::json& j);
nlohmann::json metrics_json(const Metrics& m);
Metrics metrics_from_json(const nlohmann::json& j);

class RunMetrics {
 public:
  explicit RunMetrics(const PipelineConfig& config) : config_(config) {}

  // The latest "metrics" line (its JSON text) of stages[index], which runs on `host`.
  void stage_line(size_t index, const std::string& host, const std::string& json_text);
  void progress(int64_t issued, int64_t completed, int64_t target);
  std::string render() const;

  // Serves render() on `address` until this object goes; the bound address.
  Result<std::string> serve(const std::string& address);

 private:
  struct StageState {
    std::string host;
    nlohmann::json line;
  };
  const PipelineConfig& config_;
  mutable std::mutex mu_;
  std::map<size_t, StageState> stages_;
  int64_t issued_ = 0, completed_ = 0, target_ = -1;  // target -1: no progress (a worker)
  std::unique_ptr<MetricsServer> server_;             // last: stopped before the state goes
};

}  // namespace omniconn::runtime

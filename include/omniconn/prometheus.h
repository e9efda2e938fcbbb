// The Prometheus text exposition format (version 0.0.4): build a scrape from counters, gauges,
// latency histograms and connector Metrics, and parse one back (omniconn stats, tests).
// Serving it over HTTP is metrics_server.h. The families omniconn exports: docs/metrics.md.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "omniconn/connector.h"
#include "omniconn/histogram.h"
#include "omniconn/status.h"

namespace omniconn {

// Label names and values, in the order they are written.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// One scrape. Families appear in the order first added, each with its HELP and TYPE lines and
// all its samples together, whatever order the samples were added in.
class PrometheusText {
 public:
  // InvalidArgument for a metric or label name outside the format's rules
  // ([a-zA-Z_:][a-zA-Z0-9_:]*; labels without ':' and not starting with "__"), a label named
  // twice, or a family added again with another type.
  Status counter(std::string_view name, std::string_view help, const MetricLabels& labels,
                 double value);
  Status gauge(std::string_view name, std::string_view help, const MetricLabels& labels,
               double value);
  // name_bucket{le=...} (cumulative, le="+Inf" == count), name_sum (seconds), name_count.
  Status histogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                   const LatencyHistogram& h);
  // The omniconn_* families of one connector (payloads, bytes, inline, errors by code,
  // timeouts, reclaimed, in flight, memory in use and capacity, put and get durations).
  Status connector(const Metrics& m, const MetricLabels& labels);

  std::string str() const;

 private:
  struct Family {
    std::string help, type;
    std::vector<std::string> samples;
  };
  Result<Family*> family(std::string_view name, std::string_view help, std::string_view type,
                         const MetricLabels& labels);

  std::vector<std::pair<std::string, Family>> families_;
  std::map<std::string, size_t, std::less<>> index_;
};

// One sample of a scrape.
struct PrometheusSample {
  std::string name;
  MetricLabels labels;
  double value = 0;

  // The value of label `name` ("" when absent).
  std::string_view label(std::string_view key) const;
};

// A scrape parsed back: its samples in order and each family's TYPE. InvalidArgument naming the
// line for anything outside the format (bad names, unterminated or badly escaped label values,
// a value that is not a number, a TYPE after the family's samples, a family split in two).
struct PrometheusScrape {
  std::vector<PrometheusSample> samples;
  std::map<std::string, std::string, std::less<>> types;  // family name -> counter, gauge, ...
};
Result<PrometheusScrape> parse_prometheus_text(std::string_view text);

}  // namespace omniconn

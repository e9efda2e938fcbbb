// The Prometheus text exposition: what PrometheusText writes follows the format's rules, and
// parse_prometheus_text reads it back (and refuses what breaks them).
#include "omniconn/prometheus.h"

#include <gtest/gtest.h>

#include <cmath>

namespace omniconn {
namespace {

TEST(LatencyHistogram, BucketsAreUpperBoundsInclusive) {
  EXPECT_EQ(LatencyHistogram::bucket_of(0), 0u);
  EXPECT_EQ(LatencyHistogram::bucket_of(1000), 0u);
  EXPECT_EQ(LatencyHistogram::bucket_of(1001), 1u);
  EXPECT_EQ(LatencyHistogram::bucket_of(10'000'000'000), LatencyHistogram::kBuckets - 2);
  EXPECT_EQ(LatencyHistogram::bucket_of(10'000'000'001), LatencyHistogram::kBuckets - 1);
  LatencyHistogram h;
  for (int i = 0; i < 99; ++i) h.observe(1500);  // (1, 2] us
  h.observe(3'000'000);                          // (2, 5] ms
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.sum_ns, 99u * 1500 + 3'000'000);
  double p50 = h.quantile_ns(0.5);
  EXPECT_GT(p50, 1000);
  EXPECT_LE(p50, 2000);
  EXPECT_GT(h.quantile_ns(1.0), 2e6);
  EXPECT_LE(h.quantile_ns(1.0), 5e6);
  EXPECT_EQ(LatencyHistogram{}.quantile_ns(0.5), 0);
  LatencyHistogram twice = h;
  twice.merge(h);
  EXPECT_EQ(twice.count(), 200u);
  EXPECT_EQ(twice.sum_ns, 2 * h.sum_ns);
}

TEST(PrometheusText, FamiliesHaveHelpTypeAndTheirSamplesTogether) {
  PrometheusText t;
  ASSERT_TRUE(t.counter("a_total", "A's help.", {{"edge", "0->1"}}, 3).ok());
  ASSERT_TRUE(t.gauge("b", "B.", {}, 1.5).ok());
  ASSERT_TRUE(t.counter("a_total", "A's help.", {{"edge", "1->2"}}, 4).ok());
  EXPECT_EQ(t.str(),
            "# HELP a_total A's help.\n"
            "# TYPE a_total counter\n"
            "a_total{edge=\"0->1\"} 3\n"
            "a_total{edge=\"1->2\"} 4\n"
            "# HELP b B.\n"
            "# TYPE b gauge\n"
            "b 1.5\n");
}

TEST(PrometheusText, LabelValuesAndHelpAreEscaped) {
  PrometheusText t;
  ASSERT_TRUE(t.gauge("g", "back\\slash\nnewline", {{"v", "a\"b\\c\nd"}}, 0).ok());
  EXPECT_EQ(t.str(),
            "# HELP g back\\\\slash\\nnewline\n# TYPE g gauge\ng{v=\"a\\\"b\\\\c\\nd\"} 0\n");
  auto back = parse_prometheus_text(t.str());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->samples.size(), 1u);
  EXPECT_EQ(back->samples[0].label("v"), "a\"b\\c\nd");
}

TEST(PrometheusText, BadNamesAndTypeClashesAreRefused) {
  PrometheusText t;
  EXPECT_EQ(t.counter("9lives", "", {}, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.counter("has-dash", "", {}, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.counter("ok", "", {{"__reserved", "x"}}, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.counter("ok", "", {{"a:b", "x"}}, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.counter("ok", "", {{"x", "1"}, {"x", "2"}}, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.histogram("h", "", {{"le", "1"}}, {}).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(t.counter("ns:ok_total", "", {}, 1).ok());
  EXPECT_EQ(t.gauge("ns:ok_total", "", {}, 1).code(), StatusCode::kInvalidArgument);
}

TEST(PrometheusText, HistogramBucketsAreCumulativeAndEndAtCount) {
  LatencyHistogram h;
  h.observe(500);
  h.observe(1500);
  h.observe(1500);
  h.observe(60'000'000'000);  // above the last bound: +Inf only
  PrometheusText t;
  ASSERT_TRUE(t.histogram("lat_seconds", "L.", {{"edge", "x"}}, h).ok());
  auto s = parse_prometheus_text(t.str());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->types.at("lat_seconds"), "histogram");
  double last = -1, count = -1, sum = -1;
  int buckets = 0;
  std::string last_le;
  for (const PrometheusSample& x : s->samples) {
    EXPECT_EQ(x.label("edge"), "x");
    if (x.name == "lat_seconds_bucket") {
      EXPECT_GE(x.value, last) << "le=" << x.label("le");
      last = x.value;
      last_le = std::string(x.label("le"));
      ++buckets;
      if (x.label("le") == "1e-06") {
        EXPECT_EQ(x.value, 1);
      }
      if (x.label("le") == "2e-06") {
        EXPECT_EQ(x.value, 3);
      }
    } else if (x.name == "lat_seconds_count") {
      count = x.value;
    } else if (x.name == "lat_seconds_sum") {
      sum = x.value;
    }
  }
  EXPECT_EQ(buckets, static_cast<int>(LatencyHistogram::kBuckets));
  EXPECT_EQ(last_le, "+Inf");
  EXPECT_EQ(last, 4);
  EXPECT_EQ(count, 4);
  EXPECT_NEAR(sum, 60.0000035, 1e-9);
}

TEST(PrometheusText, ConnectorMetricsRoundTrip) {
  Metrics m;
  m.puts = 2;
  m.sends = 3;
  m.gets = 4;
  m.bytes_out = 1 << 20;
  m.errors_by_code[static_cast<size_t>(StatusCode::kCorrupt)] = 7;
  m.in_flight = 1;
  m.put_latency.observe(4000);
  PrometheusText t;
  ASSERT_TRUE(t.connector(m, {{"from", "0"}, {"to", "1"}}).ok());
  ASSERT_TRUE(t.connector(Metrics{}, {{"from", "1"}, {"to", "2"}}).ok());
  auto s = parse_prometheus_text(t.str());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto value = [&](std::string_view name, std::string_view from, std::string_view code = "") {
    for (const PrometheusSample& x : s->samples) {
      if (x.name == name && x.label("from") == from && x.label("code") == code) return x.value;
    }
    return -1.0;
  };
  EXPECT_EQ(value("omniconn_payloads_sent_total", "0"), 5);
  EXPECT_EQ(value("omniconn_payloads_received_total", "0"), 4);
  EXPECT_EQ(value("omniconn_bytes_sent_total", "0"), 1 << 20);
  EXPECT_EQ(value("omniconn_errors_total", "0", "corrupt"), 7);
  EXPECT_EQ(value("omniconn_errors_total", "0", "invalid_argument"), 0);
  EXPECT_EQ(value("omniconn_errors_total", "0", "timeout"), -1);  // omniconn_timeouts_total
  EXPECT_EQ(value("omniconn_in_flight_payloads", "0"), 1);
  EXPECT_EQ(value("omniconn_put_duration_seconds_count", "0"), 1);
  EXPECT_EQ(value("omniconn_put_duration_seconds_count", "1"), 0);
  EXPECT_EQ(s->types.at("omniconn_get_duration_seconds"), "histogram");
  EXPECT_EQ(s->types.at("omniconn_memory_in_use_bytes"), "gauge");
}

TEST(ParsePrometheusText, ReadsWhatOtherExportersWrite) {
  auto s = parse_prometheus_text(
      "# a comment\n"
      "# TYPE up gauge\n"
      "up{job=\"x\",} 1 1700000000000\n"
      "untyped_thing -2.5e-3\n"
      "nan_one NaN\n"
      "inf_one +Inf\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->samples.size(), 4u);
  EXPECT_EQ(s->samples[0].label("job"), "x");
  EXPECT_EQ(s->samples[1].value, -2.5e-3);
  EXPECT_TRUE(std::isnan(s->samples[2].value));
  EXPECT_TRUE(std::isinf(s->samples[3].value));
}

TEST(ParsePrometheusText, RefusesWhatBreaksTheFormat) {
  const char* bad[] = {
      "x{a=\"unterminated} 1\n",
      "x{a=\"bad \\q escape\"} 1\n",
      "x{a=1} 1\n",
      "x{__a=\"v\"} 1\n",
      "x one\n",
      "x\n",
      "9x 1\n",
      "# TYPE x sometype\n",
      "x 1\n# TYPE x counter\n",
      "# TYPE x counter\n# TYPE x counter\n",
      "a 1\nb 1\na 2\n",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nother 1\nh_count 1\n",
  };
  for (const char* text : bad) {
    auto s = parse_prometheus_text(text);
    EXPECT_FALSE(s.ok()) << text;
    if (!s.ok()) {
      EXPECT_NE(s.status().message().find("line "), std::string::npos) << text;
    }
  }
}

}  // namespace
}  // namespace omniconn

// The pipeline runtime with real stage processes and the default SharedMemoryConnector.
#include <dirent.h>
#include <signal.h>

#include <atomic>
#include <future>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "omniconn/config.h"
#include "omniconn/metrics_server.h"
#include "omniconn/prometheus.h"
#include "omniconn/runtime.h"
#include "runtime/control.h"
#include "runtime/runtime_internal.h"

namespace omniconn {
namespace {

using namespace std::chrono_literals;

const char* kThreeStages = R"(
stage_args:
  - stage_id: 0
    engine_args: {model_stage: thinker}
  - stage_id: 1
    engine_args: {model_stage: talker}
    engine_input_source: [0]
  - stage_id: 2
    engine_args: {model_stage: code2wav}
    engine_input_source: [1]
    final_output: true
    final_output_type: audio
runtime:
  edges:
    - {from: 0, to: 1}
    - {from: 1, to: 2}
)";

const char* kFanOutFanIn = R"(
stage_args:
  - {stage_id: 0}
  - {stage_id: 1, engine_input_source: [0]}
  - {stage_id: 2, engine_input_source: [0]}
  - {stage_id: 3, engine_input_source: [1, 2]}
)";

PipelineConfig parse(const char* text) {
  ConfigLoad c = parse_pipeline_config(text, "test.yaml");
  for (const auto& e : c.errors) ADD_FAILURE() << e.ToString();
  return c.config;
}

RunOptions small(int64_t requests) {
  RunOptions o;
  o.requests = requests;
  o.concurrency = 4;
  o.workload = Workload{16, 256, 4, 32};
  o.op_timeout_ms = 10000;
  return o;
}

std::set<std::string> list_dir(const char* path) {
  std::set<std::string> names;
  if (DIR* d = ::opendir(path)) {
    while (dirent* e = ::readdir(d)) names.insert(e->d_name);
    ::closedir(d);
  }
  return names;
}

bool gone(int pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

TEST(Runtime, ThreeStagePipelineDeliversEveryRequest) {
  PipelineConfig config = parse(kThreeStages);
  auto report = run_pipeline(config, small(200));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->requests_done, 200);
  ASSERT_EQ(report->edges.size(), 2u);
  for (const EdgeReport& e : report->edges) {
    EXPECT_EQ(e.requests, 200) << e.from << "->" << e.to;
    EXPECT_EQ(e.errors, 0);
    EXPECT_GT(e.bytes, 0);
    EXPECT_GT(e.p50_ms, 0);
  }
  // Thinker hidden states (16 x 256 f32) + token ids are larger than the talker's codes.
  EXPECT_GT(report->edges[0].bytes, report->edges[1].bytes);
  for (const StageReport& s : report->stages) {
    EXPECT_EQ(s.requests, 200);
    EXPECT_GT(s.peak_rss_kb, 0);
    EXPECT_TRUE(gone(s.pid));
  }
  EXPECT_NE(format_report(*report).find("0 -> 1"), std::string::npos);
}

TEST(Runtime, FanOutAndFanIn) {
  PipelineConfig config = parse(kFanOutFanIn);
  auto report = run_pipeline(config, small(50));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->edges.size(), 4u);
  for (const EdgeReport& e : report->edges) EXPECT_EQ(e.requests, 50) << e.from << "->" << e.to;
}

TEST(Runtime, KilledStageEndsTheRunAndLeavesNothingBehind) {
  PipelineConfig config = parse(kThreeStages);
  auto shm_before = list_dir("/dev/shm");
  auto fds_before = list_dir("/proc/self/fd");
  RunOptions o = small(1'000'000'000);  // would run for hours
  std::vector<int> pids;
  std::thread killer;
  o.on_started = [&](const std::vector<int>& p) {
    pids = p;
    killer = std::thread([pid = p[1]] {
      std::this_thread::sleep_for(300ms);
      ::kill(pid, SIGKILL);
    });
  };
  auto t0 = Clock::now();
  auto report = run_pipeline(config, o);
  auto took = Clock::now() - t0;
  killer.join();
  ASSERT_FALSE(report.ok());
  EXPECT_LT(took, 300ms + 5s);
  EXPECT_NE(report.status().message().find("stage 1 (talker)"), std::string::npos)
      << report.status().ToString();
  EXPECT_NE(report.status().message().find("signal 9"), std::string::npos)
      << report.status().ToString();
  for (int pid : pids) EXPECT_TRUE(gone(pid)) << pid;
  EXPECT_EQ(list_dir("/dev/shm"), shm_before);
  EXPECT_EQ(list_dir("/proc/self/fd"), fds_before);
}

TEST(Runtime, InterruptStopsTheRun) {
  PipelineConfig config = parse(kThreeStages);
  RunOptions o = small(1'000'000'000);
  std::vector<int> pids;
  std::thread interrupter;
  o.on_started = [&](const std::vector<int>& p) {
    pids = p;
    interrupter = std::thread([] {
      std::this_thread::sleep_for(300ms);
      ::kill(::getpid(), SIGINT);
    });
  };
  auto t0 = Clock::now();
  auto report = run_pipeline(config, o);
  interrupter.join();
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kCancelled) << report.status().ToString();
  EXPECT_LT(Clock::now() - t0, 300ms + 5s);
  for (int pid : pids) EXPECT_TRUE(gone(pid)) << pid;
}

// Series identity: the name and the labels but `le`.
std::string series_of(const PrometheusSample& x, std::string_view name) {
  std::string id(name);
  for (const auto& [k, v] : x.labels) {
    if (k != "le") id += "," + k + "=" + v;
  }
  return id;
}

// Every histogram series of a scrape: buckets cumulative, +Inf == _count.
void check_histograms(const PrometheusScrape& s) {
  std::map<std::string, double> last_bucket, inf, count;
  for (const PrometheusSample& x : s.samples) {
    if (x.name.ends_with("_bucket")) {
      std::string id = series_of(x, x.name.substr(0, x.name.size() - 7));
      EXPECT_GE(x.value, last_bucket[id]) << id << " le=" << x.label("le");
      last_bucket[id] = x.value;
      if (x.label("le") == "+Inf") inf[id] = x.value;
    } else if (x.name.ends_with("_count")) {
      count[series_of(x, x.name.substr(0, x.name.size() - 6))] = x.value;
    }
  }
  for (const auto& [id, n] : count) EXPECT_EQ(inf[id], n) << id;
}

// /metrics scraped while a run lasts: Prometheus text, every counter rising or steady from one
// scrape to the next, histograms consistent, every edge reported by both its ends.
TEST(Runtime, MetricsEndpointServesTheRunWhileItLasts) {
  PipelineConfig config = parse(kThreeStages);
  RunOptions o = small(400);
  o.workload.source_us_per_token = 150;  // 2.4 ms per request: the run lasts about a second
  o.metrics_listen = "127.0.0.1:0";
  std::atomic<bool> done{false};
  std::vector<std::string> scrapes;
  std::thread scraper;
  o.on_metrics_listening = [&](const std::string& bound) {
    scraper = std::thread([&, bound] {
      for (int i = 0; i < 600 && !done; ++i) {  // bounded: 60 s at most
        auto text = scrape_metrics(bound, 2s);
        if (text.ok()) scrapes.push_back(*text);
        std::this_thread::sleep_for(100ms);
      }
    });
  };
  auto report = run_pipeline(config, o);
  done = true;
  if (scraper.joinable()) scraper.join();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_GE(scrapes.size(), 3u) << "the run ended before three scrapes";
  std::map<std::string, double> seen;  // counter series -> its value in the previous scrape
  double first_completed = -1, last_completed = -1;
  for (const std::string& text : scrapes) {
    auto s = parse_prometheus_text(text);
    ASSERT_TRUE(s.ok()) << s.status().ToString() << "\n" << text;
    check_histograms(*s);
    for (const PrometheusSample& x : s->samples) {
      auto type = s->types.find(x.name);
      if (type == s->types.end() || type->second != "counter") continue;
      std::string id = series_of(x, x.name);
      EXPECT_GE(x.value, seen[id]) << id << " went down";
      seen[id] = x.value;
      if (x.name == "omniconn_run_requests_completed_total") {
        if (first_completed < 0) first_completed = x.value;
        last_completed = x.value;
      }
    }
  }
  EXPECT_GT(last_completed, first_completed) << "completions did not rise between scrapes";
  auto last = parse_prometheus_text(scrapes.back());
  ASSERT_TRUE(last.ok());
  for (const char* edge : {"0>1", "1>2"}) {
    std::string from(1, edge[0]), to(1, edge[2]);
    double sent = -1, received = -1, e2e = -1;
    for (const PrometheusSample& x : last->samples) {
      if (x.label("from") != from || x.label("to") != to) continue;
      EXPECT_FALSE(x.label("host").empty());
      EXPECT_EQ(x.label("connector"), "SharedMemoryConnector");
      EXPECT_EQ(x.label("stage"), x.label("side") == "out" ? from : to);
      if (x.name == "omniconn_payloads_sent_total" && x.label("side") == "out") sent = x.value;
      if (x.name == "omniconn_payloads_received_total" && x.label("side") == "in") {
        received = x.value;
      }
      if (x.name == "omniconn_end_to_end_seconds_count") e2e = x.value;
    }
    EXPECT_GT(sent, 0) << edge;
    EXPECT_GT(received, 0) << edge;
    EXPECT_EQ(e2e, received) << edge;
  }
}

// Streaming: every chunk of every request crosses both edges in order (each stage checks key,
// order and content), and the sink's first chunk comes well before its last.
TEST(Runtime, StreamedRequestsArriveChunkByChunk) {
  PipelineConfig config = parse(kThreeStages);
  RunOptions o = small(30);
  o.stream = true;
  o.workload.tokens = 64;
  o.workload.first_chunk_tokens = 8;
  o.workload.chunk_tokens = 16;       // 8 + 16 + 16 + 16 + 8: 5 chunks
  o.workload.sink_us_per_token = 40;  // 2.56 ms of sink work per request
  auto report = run_pipeline(config, o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  const RequestReport& q = report->requests;
  EXPECT_EQ(report->requests_done, 30);
  EXPECT_TRUE(q.stream);
  EXPECT_EQ(q.measured, 30);
  EXPECT_EQ(q.aborted, 0);
  EXPECT_EQ(q.chunks_sent, 30 * 5 * 2);
  EXPECT_EQ(q.chunks_received, 30 * 5 * 2);
  for (const EdgeReport& e : report->edges) EXPECT_EQ(e.requests, 30 * 5) << e.from << e.to;
  EXPECT_GT(q.first_chunk_p50_ms, 0);
  EXPECT_LT(q.first_chunk_p50_ms, q.last_chunk_p50_ms);
  EXPECT_LE(q.last_chunk_p50_ms, q.request_p50_ms);
  EXPECT_GE(q.request_p50_ms, 2.0);  // at least the sink's own work
  EXPECT_GT(q.connector_share_p50, 0);
  EXPECT_LT(q.connector_share_p99, 1);
  std::string text = format_report(*report);
  EXPECT_NE(text.find("first chunk"), std::string::npos) << text;
}

// The acceptance of issue 17: 1000 streamed requests cancelled mid-stream. Every chunk sent and
// not read is freed: nothing in flight, no transport bytes in use at the end, and the stages'
// resident sets do not grow with the number cancelled.
TEST(Runtime, CancelledStreamsLeaveNothingBehind) {
#ifdef OMNICONN_SANITIZED
  // ASan keeps freed blocks in a quarantine (256 MiB by default) before reusing them, so a
  // sanitized stage's RSS grows by up to that much with no leak; 1000 leaked requests of
  // 8 x 256 KiB chunks would still be ~2 GiB over.
  constexpr long long kRssGrowthBoundKb = 320 * 1024;
#else
  constexpr long long kRssGrowthBoundKb = 16 * 1024;  // < 16 MiB more
#endif
  PipelineConfig config = parse(kThreeStages);
  RunOptions o = small(1000);
  o.stream = true;
  o.concurrency = 8;
  o.workload.tokens = 64;
  o.workload.hidden_size = 8192;  // 256 KiB chunks of hidden states: through the arena
  o.workload.first_chunk_tokens = 8;
  o.workload.chunk_tokens = 8;          // 8 chunks; cancelled after the 3rd
  o.workload.middle_us_per_token = 20;  // the talker lags: chunks wait unread
  o.abort_every = 1;
  o.abort_after_chunks = 3;
  auto report = run_pipeline(config, o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  const RequestReport& q = report->requests;
  EXPECT_EQ(report->requests_done, 1000);
  EXPECT_EQ(q.aborted, 1000);
  EXPECT_EQ(q.measured, 0);
  EXPECT_GT(q.abort_freed, 0) << "no chunk was waiting unread when its request was cancelled";
  EXPECT_LT(q.chunks_received, q.chunks_sent);
  for (const StageReport& s : report->stages) {
    EXPECT_EQ(s.in_flight_end, 0) << "stage " << s.id;
    EXPECT_EQ(s.in_use_bytes_end, 0) << "stage " << s.id;
    EXPECT_LT(s.rss_kb_end, s.rss_kb_early + kRssGrowthBoundKb) << "stage " << s.id;
    std::printf(
        "stage %s: %lld unread chunks freed; in flight at the end %lld, bytes in use %lld; "
        "RSS after 10 requests %lld KiB, at the end %lld KiB\n",
        s.id.c_str(), static_cast<long long>(s.abort_freed),
        static_cast<long long>(s.in_flight_end), static_cast<long long>(s.in_use_bytes_end),
        static_cast<long long>(s.rss_kb_early), static_cast<long long>(s.rss_kb_end));
  }
  std::printf("chunks sent %lld, received %lld, unread chunks freed %lld\n",
              static_cast<long long>(q.chunks_sent), static_cast<long long>(q.chunks_received),
              static_cast<long long>(q.abort_freed));
}

// A worker that joins with the right config and then says what no omniconn says: the run ends
// naming its host, rather than dropping the message (a lost completion would hang the run).
TEST(Runtime, MalformedControlMessageEndsTheRunNamingTheWorker) {
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OMNICONN_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(OMNICONN_TEST_TSAN)
  GTEST_SKIP() << "TSan: libzmq is not instrumented, and its I/O thread's reads of a message "
                  "show as races with the send that wrote it";
#endif
  PipelineConfig config = parse(kThreeStages);
  RunOptions o = small(10);
  o.listen = "127.0.0.1:0";
  o.local_stages = {"0"};
  o.join_timeout_ms = 10000;
  std::promise<std::string> bound;
  o.on_listening = [&](const std::string& b) { bound.set_value(b); };
  std::thread fake([&, addr = bound.get_future()]() mutable {
    runtime::ControlClient c;
    ASSERT_TRUE(c.connect(addr.get(), "w-fake").ok());
    c.send("hello {\"digest\": \"" + runtime::config_digest(config) +
           "\", \"config\": \"test.yaml\", \"stages\": [\"1\", \"2\"], \"host\": "
           "\"fakehost\", \"identity\": \"" +
           runtime::host_identity() + "\", \"pid\": 1}");
    c.send("evt 99 done 0");  // there is no stage 99
    std::string text;
    for (int i = 0; i < 100; ++i) {  // until the orchestrator says stop, at most 10 s
      auto got = c.recv(&text, 100);
      if (got.ok() && *got == 1 && (text.starts_with("stop") || text.starts_with("refuse"))) break;
    }
  });
  auto t0 = Clock::now();
  auto report = run_pipeline(config, o);
  fake.join();
  ASSERT_FALSE(report.ok());
  EXPECT_LT(Clock::now() - t0, 8s);
  EXPECT_NE(report.status().message().find("malformed control message from the worker on "
                                           "fakehost: 'evt 99 done 0'"),
            std::string::npos)
      << report.status().ToString();
}

TEST(Runtime, RejectsBadOptions) {
  PipelineConfig config = parse(kThreeStages);
  RunOptions o = small(10);
  o.concurrency = 0;
  auto report = run_pipeline(config, o);
  EXPECT_EQ(report.status().code(), StatusCode::kInvalidArgument);
  RunOptions abort_without_stream = small(10);
  abort_without_stream.abort_every = 2;
  auto r2 = run_pipeline(config, abort_without_stream);
  EXPECT_EQ(r2.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r2.status().message().find("--stream"), std::string::npos) << r2.status().ToString();
  RunOptions no_chunk = small(10);
  no_chunk.stream = true;
  no_chunk.workload.chunk_tokens = 0;
  EXPECT_EQ(run_pipeline(config, no_chunk).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omniconn

// The stage process: receives its inputs, verifies them, produces its synthetic outputs and
// sends them downstream, request after request.
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "omniconn/registry.h"
#include "runtime/run_metrics.h"
#include "runtime/runtime_internal.h"

namespace omniconn::runtime {

volatile std::sig_atomic_t g_stage_stop = 0;

std::string request_name(int64_t i) {
  return "req-" + std::to_string(i);
}

// Each run gets a namespace of its own, so that leftovers of an earlier run (store keys,
// sockets) never meet this one: for every type whose channels are scoped by one.
ConnectorSpec spec_for_run(const EdgeConfig& edge, const std::string& name_space) {
  ConnectorSpec spec = edge.spec;
  auto type = ConnectorRegistry::instance().resolve(spec);
  if (!type.ok() || !(*type)->capabilities.scoped_by_namespace) return spec;
  if (spec.extra.is_nil()) spec.extra = Value(Value::Map{});
  Value::Map* m = spec.extra.as_map();
  if (m != nullptr && !m->contains("namespace")) m->emplace("namespace", Value(name_space));
  return spec;
}

int LineReader::next(std::string* line, int timeout_ms) {
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      *line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return 1;
    }
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) return 0;
    if (rc <= 0) return rc == 0 ? 0 : -1;
    char chunk[4096];
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) return 0;
    if (n <= 0) return -1;
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

bool write_line(int fd, const std::string& line) {
  std::string s = line + "\n";
  const char* p = s.data();
  size_t left = s.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

namespace {

using nlohmann::json;

int64_t now_ns() {
  return Clock::now().time_since_epoch().count();
}

uint64_t salt_of(std::string_view name) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  return h & 0xFF;
}

// Deterministic tensor content: 8-byte words (seq << 40 | salt << 32) ^ index.
void fill(std::byte* p, size_t n, uint64_t seq, uint64_t salt) {
  const uint64_t base = (seq << 40) | (salt << 32);
  for (size_t i = 0; i < n / 8; ++i) {
    uint64_t v = base ^ i;
    std::memcpy(p + i * 8, &v, 8);
  }
}

bool verify(const std::byte* p, size_t n, uint64_t seq, uint64_t salt) {
  const uint64_t base = (seq << 40) | (salt << 32);
  for (size_t i = 0; i < n / 8; ++i) {
    uint64_t v;
    std::memcpy(&v, p + i * 8, 8);
    if (v != (base ^ i)) return false;
  }
  return true;
}

struct Tensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;
};

struct InputStats {
  int64_t count = 0, bytes = 0, errors = 0;
  std::vector<int64_t> lat_ns;
  LatencyHistogram e2e;
  uint64_t idle = 0;  // recv slices that ended with nothing yet (Timeout, retried)
};

class Stage {
 public:
  explicit Stage(const StagePlan& plan) : plan_(plan), opts_(*plan.options) {}

  Status run();
  json stats() const;
  int64_t requests = 0;

 private:
  Status connect();
  void shape_outputs();
  Status next_request(LineReader* ctl, int64_t i);
  Status receive(size_t k, int64_t i);
  Status check(const PayloadView& view, const EdgeConfig& edge, int64_t i);
  Status produce_and_send(int64_t i);
  Status send_until(size_t k, const PayloadKey& key, const PayloadBuilder& b);
  void drain();
  void report_metrics(bool now);
  void compute() const;

  const StagePlan& plan_;
  const RunOptions& opts_;
  std::vector<std::unique_ptr<Connector>> in_, out_;
  std::vector<InputStats> in_stats_;
  std::vector<uint64_t> full_retries_;  // sends that found no space (ResourceExhausted, retried)
  std::vector<Tensor> outputs_;
  int64_t output_bytes_ = 0;
  Clock::time_point last_report_{};
};

Status Stage::connect() {
  for (const EdgeConfig* e : plan_.inputs) {
    auto c = create_connector(spec_for_run(*e, plan_.name_space));
    if (!c.ok()) return c.status().WithContext("edge " + e->from + "->" + e->to);
    in_.push_back(std::move(*c));
  }
  for (const EdgeConfig* e : plan_.outputs) {
    auto c = create_connector(spec_for_run(*e, plan_.name_space));
    if (!c.ok()) return c.status().WithContext("edge " + e->from + "->" + e->to);
    out_.push_back(std::move(*c));
  }
  in_stats_.resize(in_.size());
  full_retries_.resize(out_.size());
  return Status::Ok();
}

void Stage::shape_outputs() {
  const Workload& w = opts_.workload;
  auto add = [this](std::string name, DType dt, std::vector<int64_t> shape) {
    size_t n = dtype_size(dt);
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    outputs_.push_back(Tensor{std::move(name), dt, std::move(shape), std::vector<std::byte>(n)});
  };
  if (plan_.outputs.empty()) {
    add("audio", DType::kF32, {w.tokens * w.audio_samples_per_token});
  } else if (plan_.inputs.empty()) {
    add("hidden_states", DType::kF32, {w.tokens, w.hidden_size});
    add("token_ids", DType::kI64, {w.tokens});
  } else {
    add("codec_codes", DType::kI64, {w.tokens, w.codes_per_token});
  }
}

Status Stage::next_request(LineReader* ctl, int64_t i) {
  std::string line;
  for (;;) {
    if (g_stage_stop) return Status::Cancelled("stopped");
    int rc = ctl->next(&line, 200);
    if (rc < 0) return Status::Cancelled("orchestrator closed the control pipe");
    if (rc == 0) {
      report_metrics(false);
      continue;
    }
    if (line == "req " + std::to_string(i)) return Status::Ok();
    return Status::Internal("unexpected control line '" + line + "'");
  }
}

Status Stage::check(const PayloadView& view, const EdgeConfig& edge, int64_t i) {
  std::string where = "edge " + edge.from + "->" + edge.to + " " + request_name(i);
  if (view.key().request_id != request_name(i)) {
    return Status::Corrupt(where + ": got " + view.key().request_id + " (out of order or lost)");
  }
  const PayloadReader& r = view.reader();
  if (r.tensor_count() == 0) return Status::Corrupt(where + ": no tensors");
  for (const TensorView& t : r.tensors()) {
    if (!verify(t.data.data(), t.data.size(), static_cast<uint64_t>(i), salt_of(t.name))) {
      return Status::Corrupt(where + ": tensor '" + std::string(t.name) + "' content mismatch");
    }
  }
  return Status::Ok();
}

Status Stage::receive(size_t k, int64_t i) {
  const EdgeConfig& e = *plan_.inputs[k];
  auto start = Clock::now();
  for (;;) {
    auto view = in_[k]->recv(e.from, e.to, deadline_in(std::chrono::milliseconds(200)));
    if (view.ok()) {
      int64_t t1 = now_ns();
      auto fields = view->reader().fields();
      const Value* ts = fields.ok() ? fields->find("t_send") : nullptr;
      Status st = check(*view, e, i);
      InputStats& s = in_stats_[k];
      if (!st.ok()) {
        ++s.errors;
        return st;
      }
      ++s.count;
      s.bytes += static_cast<int64_t>(view->bytes().size());
      if (ts != nullptr && ts->as_int()) {
        s.lat_ns.push_back(t1 - *ts->as_int());
        s.e2e.observe(t1 - *ts->as_int());
      }
      return Status::Ok();
    }
    if (view.status().code() != StatusCode::kTimeout) {
      ++in_stats_[k].errors;
      return view.status().WithContext("edge " + e.from + "->" + e.to);
    }
    ++in_stats_[k].idle;
    report_metrics(false);
    if (g_stage_stop) return Status::Cancelled("stopped");
    if (Clock::now() - start > std::chrono::milliseconds(opts_.op_timeout_ms)) {
      return Status::Timeout("edge " + e.from + "->" + e.to + std::string(kStarvedMarker) +
                             std::to_string(opts_.op_timeout_ms) + " ms");
    }
  }
}

Status Stage::send_until(size_t k, const PayloadKey& key, const PayloadBuilder& b) {
  auto start = Clock::now();
  for (;;) {
    Status st = out_[k]->send(key, b, deadline_in(std::chrono::milliseconds(200)));
    if (st.ok() || st.code() != StatusCode::kResourceExhausted) return st;
    ++full_retries_[k];
    report_metrics(false);
    if (g_stage_stop) return Status::Cancelled("stopped");
    if (Clock::now() - start > std::chrono::milliseconds(opts_.op_timeout_ms)) return st;
  }
}

// The stage's own work on a request: tokens x its per-token time, asleep.
void Stage::compute() const {
  const Workload& w = opts_.workload;
  double us = plan_.inputs.empty()    ? w.source_us_per_token
              : plan_.outputs.empty() ? w.sink_us_per_token
                                      : w.middle_us_per_token;
  if (us <= 0) return;
  std::this_thread::sleep_for(
      std::chrono::nanoseconds(static_cast<int64_t>(us * 1000.0 * static_cast<double>(w.tokens))));
}

Status Stage::produce_and_send(int64_t i) {
  for (Tensor& t : outputs_)
    fill(t.data.data(), t.data.size(), static_cast<uint64_t>(i), salt_of(t.name));
  if (plan_.outputs.empty()) {
    for (const Tensor& t : outputs_) output_bytes_ += static_cast<int64_t>(t.data.size());
    return write_line(plan_.evt_fd, "done " + std::to_string(i))
               ? Status::Ok()
               : Status::Cancelled("orchestrator gone");
  }
  PayloadBuilder b;
  for (const Tensor& t : outputs_) {
    OMNICONN_RETURN_IF_ERROR(b.add_tensor(t.name, t.dtype, t.shape, t.data.data()));
  }
  for (size_t k = 0; k < out_.size(); ++k) {
    const EdgeConfig& e = *plan_.outputs[k];
    Value::Map fields;
    fields.emplace("seq", Value(i));
    fields.emplace("t_send", Value(now_ns()));
    OMNICONN_RETURN_IF_ERROR(b.set_fields(Value(std::move(fields))));
    Status st = send_until(k, PayloadKey{request_name(i), e.from, e.to}, b);
    if (!st.ok()) return st.WithContext("edge " + e.from + "->" + e.to);
  }
  return Status::Ok();
}

Status Stage::run() {
  OMNICONN_RETURN_IF_ERROR(connect());
  shape_outputs();
  LineReader ctl(plan_.ctl_fd);
  for (int64_t i = 0; i < opts_.requests; ++i) {
    if (plan_.inputs.empty()) OMNICONN_RETURN_IF_ERROR(next_request(&ctl, i));
    for (size_t k = 0; k < in_.size(); ++k) OMNICONN_RETURN_IF_ERROR(receive(k, i));
    compute();
    OMNICONN_RETURN_IF_ERROR(produce_and_send(i));
    ++requests;
    report_metrics(false);
  }
  drain();
  report_metrics(true);
  return Status::Ok();
}

// Every kMetricsIntervalMs (and at the end): the connectors' metrics for /metrics.
void Stage::report_metrics(bool now) {
  auto t = Clock::now();
  if (!now && t - last_report_ < std::chrono::milliseconds(kMetricsIntervalMs)) return;
  last_report_ = t;
  json edges = json::array();
  // The stage waits in slices: a slice that ends with nothing yet (recv) or no space yet (send)
  // is retried, not a failure. Those are taken out of the connector's timeouts and errors;
  // the full ones are reported as backpressure.
  auto add = [&edges](const EdgeConfig& e, const char* side, const Connector& c, uint64_t idle,
                      uint64_t full) {
    Metrics m = c.metrics();
    m.timeouts -= std::min(m.timeouts, idle);
    m.errors_by_code[static_cast<size_t>(StatusCode::kTimeout)] = m.timeouts;
    uint64_t& exhausted = m.errors_by_code[static_cast<size_t>(StatusCode::kResourceExhausted)];
    full = std::min(full, exhausted);
    exhausted -= full;
    m.errors -= std::min(m.errors, full);
    edges.push_back({{"from", e.from},
                     {"to", e.to},
                     {"side", side},
                     {"connector", std::string(c.type_name())},
                     {"m", metrics_json(m)},
                     {"backpressure", full}});
    return &edges.back();
  };
  for (size_t k = 0; k < in_.size(); ++k) {
    (*add(*plan_.inputs[k], "in", *in_[k], in_stats_[k].idle, 0))["e2e"] =
        histogram_json(in_stats_[k].e2e);
  }
  for (size_t k = 0; k < out_.size(); ++k) {
    add(*plan_.outputs[k], "out", *out_[k], 0, full_retries_[k]);
  }
  write_line(plan_.evt_fd, "metrics " + json{{"requests", requests}, {"edges", edges}}.dump());
}

// Outputs stay readable only while this process lives: wait until downstream took them.
// Sweeping may ask a remote store, so the checks back off from 1 ms to 20 ms.
void Stage::drain() {
  const auto give_up = Clock::now() + std::chrono::milliseconds(opts_.op_timeout_ms);
  for (auto& c : out_) {
    auto pause = std::chrono::milliseconds(1);
    while (!g_stage_stop && Clock::now() < give_up) {
      if (c->sweep(give_up).ok() && c->metrics().in_flight == 0) break;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(20));
    }
  }
}

json Stage::stats() const {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  json edges = json::array();
  for (size_t k = 0; k < in_stats_.size(); ++k) {
    const InputStats& s = in_stats_[k];
    edges.push_back({{"from", plan_.inputs[k]->from},
                     {"to", plan_.inputs[k]->to},
                     {"count", s.count},
                     {"bytes", s.bytes},
                     {"errors", s.errors},
                     {"lat_ns", s.lat_ns}});
  }
  json sent = json::array();  // what the sending side alone knows
  for (size_t k = 0; k < out_.size(); ++k) {
    sent.push_back({{"from", plan_.outputs[k]->from},
                    {"to", plan_.outputs[k]->to},
                    {"inline", out_[k]->metrics().inline_payloads}});
  }
  return {{"stage", plan_.stage->id},      {"rss_kb", ru.ru_maxrss}, {"requests", requests},
          {"output_bytes", output_bytes_}, {"edges", edges},         {"sent", sent}};
}

}  // namespace

int run_stage(const StagePlan& plan) {
  Stage stage(plan);
  Status st = stage.run();
  if (!st.ok()) {
    write_line(plan.evt_fd, "error " + st.ToString());
    return st.code() == StatusCode::kCancelled ? 3 : 1;
  }
  write_line(plan.evt_fd, "stats " + stage.stats().dump());
  return 0;
}

}  // namespace omniconn::runtime

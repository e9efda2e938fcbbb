// The stage process: receives its inputs, verifies them, produces its synthetic outputs and
// sends them downstream, request after request.
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "omniconn/registry.h"
#include "omniconn/stream.h"
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

// One output tensor, token-major: a chunk of n tokens is its first n x token_elems elements
// (hidden states [n, H], token ids [n], codec codes [n, C], audio [n * S]).
struct Tensor {
  std::string name;
  DType dtype;
  int64_t token_elems = 1;  // elements per token
  bool flat = false;        // shape [n * token_elems] (audio) rather than [n, token_elems]
  std::vector<std::byte> data;

  size_t bytes(int64_t n) const { return static_cast<size_t>(n * token_elems) * dtype_size(dtype); }
  std::vector<int64_t> shape(int64_t n) const {
    if (flat) return {n * token_elems};
    if (token_elems == 1) return {n};
    return {n, token_elems};
  }
};

// What a chunk says about its request.
struct Chunk {
  int64_t tokens = 0;
  bool finished = false, aborted = false;
  int64_t t_req = 0;  // when the source started the request (steady clock, ns)
};

// The resident set now (statm), in KiB.
int64_t resident_kb() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  int got = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return got == 2 ? resident * (::sysconf(_SC_PAGESIZE) / 1024) : 0;
}

// A chunk's tensors are filled from (request, chunk).
uint64_t seq_of(int64_t i, int64_t c) {
  return (static_cast<uint64_t>(i) << 8) ^ static_cast<uint64_t>(c);
}

struct InputStats {
  int64_t count = 0, bytes = 0, errors = 0;
  std::vector<int64_t> lat_ns;
  std::vector<int64_t> at_ns;  // when each arrived, from the stage's start (for plots)
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
  bool source() const { return plan_.inputs.empty(); }
  bool sink() const { return plan_.outputs.empty(); }
  Status connect();
  void shape_outputs();
  Status read_control(int timeout_ms);
  Status next_request(int64_t i);
  bool abort_requested(int64_t i);
  Status run_request(int64_t i);
  Result<Chunk> next_chunk(int64_t i, int64_t c, int64_t sent);
  Result<Chunk> receive(size_t k, int64_t i, int64_t c);
  Status check(const PayloadView& view, const EdgeConfig& edge, int64_t i, int64_t c, Chunk* chunk);
  Status send_chunk(int64_t i, int64_t c, const Chunk& chunk);
  Status abort_outputs(int64_t i, int64_t c, int64_t t_req);
  Status send_all(int64_t i, int64_t c, PayloadBuilder b, const Value::Map& fields);
  Status send_until(size_t k, const PayloadKey& key, const PayloadBuilder& b);
  void finish_request(int64_t i, bool aborted, int64_t t_req, int64_t conn_ns);
  int64_t connector_ns() const;
  void drain();
  void report_metrics(bool now);
  void compute(int64_t tokens) const;

  const StagePlan& plan_;
  const RunOptions& opts_;
  std::unique_ptr<LineReader> ctl_;
  int64_t reqs_ready_ = 0;       // "req i" lines seen
  std::set<int64_t> abort_req_;  // "abort i" lines seen
  std::vector<std::unique_ptr<Connector>> in_, out_;
  std::vector<InputStats> in_stats_;
  std::vector<uint64_t> full_retries_;  // sends that found no space (ResourceExhausted, retried)
  std::vector<Tensor> outputs_;
  int64_t output_bytes_ = 0, chunks_sent_ = 0, aborted_ = 0, abort_freed_ = 0;
  int64_t in_flight_end_ = 0, in_use_end_ = 0, rss_kb_early_ = 0, rss_kb_end_ = 0;
  // Per request (index i; -1: not measured): connector time here; at a sink, from t_req.
  std::vector<int64_t> conn_ns_, first_ns_, last_ns_, done_ns_;
  int64_t first_arrival_ = 0, last_arrival_ = 0;  // this request's, at a sink
  LatencyHistogram first_chunk_, request_;        // a sink's, for /metrics
  Clock::time_point last_report_{};
  int64_t t0_ns_ = now_ns();  // the stage's start: arrival times count from here
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
  for (auto* v : {&conn_ns_, &first_ns_, &last_ns_, &done_ns_}) {
    v->assign(static_cast<size_t>(opts_.requests), -1);
  }
  return Status::Ok();
}

void Stage::shape_outputs() {
  const Workload& w = opts_.workload;
  auto add = [this, &w](std::string name, DType dt, int64_t elems, bool flat) {
    Tensor t{std::move(name), dt, elems, flat, {}};
    t.data.resize(t.bytes(w.tokens));
    outputs_.push_back(std::move(t));
  };
  if (sink()) {
    add("audio", DType::kF32, w.audio_samples_per_token, true);
  } else if (source()) {
    add("hidden_states", DType::kF32, w.hidden_size, false);
    add("token_ids", DType::kI64, 1, false);
  } else {
    add("codec_codes", DType::kI64, w.codes_per_token, false);
  }
}

// One control line (source stages): "req <i>" in order, or "abort <i>".
Status Stage::read_control(int timeout_ms) {
  std::string line;
  int rc = ctl_->next(&line, timeout_ms);
  if (rc < 0) return Status::Cancelled("orchestrator closed the control pipe");
  if (rc == 0) return Status::Timeout("no control line");
  if (line == "req " + std::to_string(reqs_ready_)) {
    ++reqs_ready_;
  } else if (line.rfind("abort ", 0) == 0) {
    abort_req_.insert(std::strtoll(line.c_str() + 6, nullptr, 10));
  } else {
    return Status::Internal("unexpected control line '" + line + "'");
  }
  return Status::Ok();
}

Status Stage::next_request(int64_t i) {
  while (reqs_ready_ <= i) {
    if (g_stage_stop) return Status::Cancelled("stopped");
    Status st = read_control(200);
    if (st.code() == StatusCode::kTimeout) {
      report_metrics(false);
      continue;
    }
    OMNICONN_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

bool Stage::abort_requested(int64_t i) {
  for (int k = 0; k < 1000 && read_control(0).ok(); ++k) {
  }
  return abort_req_.erase(i) > 0;
}

// Chunk c of request i: made here (a source: the next tokens) or received from every input
// (each must say the same: tokens, finished, aborted).
Result<Chunk> Stage::next_chunk(int64_t i, int64_t c, int64_t sent) {
  const Workload& w = opts_.workload;
  if (source()) {
    Chunk out;
    int64_t n = !opts_.stream ? w.tokens : c == 0 ? w.first_chunk_tokens : w.chunk_tokens;
    out.tokens = std::min(n, w.tokens - sent);
    out.finished = sent + out.tokens >= w.tokens;
    return out;
  }
  std::vector<Chunk> got(in_.size());
  bool aborted = false;
  for (size_t k = 0; k < in_.size(); ++k) {
    OMNICONN_ASSIGN_OR_RETURN(got[k], receive(k, i, c));
    aborted = aborted || got[k].aborted;
  }
  // Cancelled: an input whose path still delivered chunk c is read on to its marker.
  for (size_t k = 0; aborted && k < in_.size(); ++k) {
    for (int64_t next = c + 1; !got[k].aborted; ++next) {
      if (got[k].finished) {
        return Status::Corrupt(request_name(i) + ": finished on one input, cancelled on another");
      }
      OMNICONN_ASSIGN_OR_RETURN(got[k], receive(k, i, next));
    }
  }
  for (const Chunk& g : got) {
    if (g.tokens != got[0].tokens || g.finished != got[0].finished) {
      return Status::Corrupt(request_name(i) + " chunk " + std::to_string(c) +
                             ": the inputs disagree on the chunk");
    }
  }
  return got[0];
}

Status Stage::run_request(int64_t i) {
  const int64_t conn0 = connector_ns();
  const int64_t t_req = source() ? now_ns() : 0;
  int64_t sent = 0;
  for (int64_t c = 0;; ++c) {
    OMNICONN_ASSIGN_OR_RETURN(Chunk chunk, next_chunk(i, c, sent));
    if (source()) chunk.t_req = t_req;
    if (chunk.aborted) {
      OMNICONN_RETURN_IF_ERROR(abort_outputs(i, c, chunk.t_req));
      finish_request(i, true, chunk.t_req, connector_ns() - conn0);
      return Status::Ok();
    }
    compute(chunk.tokens);
    OMNICONN_RETURN_IF_ERROR(send_chunk(i, c, chunk));
    sent += chunk.tokens;
    if (chunk.finished) {
      finish_request(i, false, chunk.t_req, connector_ns() - conn0);
      return Status::Ok();
    }
    if (source() && c + 1 >= opts_.abort_after_chunks && abort_requested(i)) {
      OMNICONN_RETURN_IF_ERROR(abort_outputs(i, c + 1, t_req));
      finish_request(i, true, t_req, connector_ns() - conn0);
      return Status::Ok();
    }
  }
}

void Stage::finish_request(int64_t i, bool aborted, int64_t t_req, int64_t conn_ns) {
  auto at = static_cast<size_t>(i);
  conn_ns_[at] = conn_ns;
  aborted_ += aborted ? 1 : 0;
  ++requests;
  if (!sink()) return;
  if (!aborted) {
    first_ns_[at] = first_arrival_ - t_req;
    last_ns_[at] = last_arrival_ - t_req;
    done_ns_[at] = now_ns() - t_req;
    first_chunk_.observe(first_ns_[at]);
    request_.observe(done_ns_[at]);
  }
  write_line(plan_.evt_fd, "done " + std::to_string(i) + (aborted ? " aborted" : ""));
}

// The time this stage's connectors spent in successful calls so far (put + get).
int64_t Stage::connector_ns() const {
  uint64_t ns = 0;
  for (const auto* side : {&in_, &out_}) {
    for (const auto& c : *side) {
      Metrics m = c->metrics();
      ns += m.put_latency.sum_ns + m.get_latency.sum_ns;
    }
  }
  return static_cast<int64_t>(ns);
}

Status Stage::check(const PayloadView& view, const EdgeConfig& edge, int64_t i, int64_t c,
                    Chunk* chunk) {
  std::string where = "edge " + edge.from + "->" + edge.to + " " + request_name(i);
  const PayloadReader& r = view.reader();
  auto fields = r.fields();
  if (!fields.ok()) return fields.status().WithContext(where);
  auto field = [&](std::string_view k) -> const Value* { return fields->find(k); };
  auto flag = [&](std::string_view k) {
    return field(k) && field(k)->as_bool() && *field(k)->as_bool();
  };
  chunk->finished = flag(kFinishedField);
  chunk->aborted = flag(kAbortedField);
  chunk->tokens = field("tokens") ? field("tokens")->as_int().value_or(0) : 0;
  chunk->t_req = field("t_req") ? field("t_req")->as_int().value_or(0) : 0;
  // In order: chunk c, or the marker of a cancelled request at c or later (the chunks between
  // were freed unread).
  const std::string& got = view.key().request_id;
  std::string want = opts_.stream ? chunk_key(request_name(i), edge.from, c) : request_name(i);
  int64_t marker_at = field(kChunkField) ? field(kChunkField)->as_int().value_or(-1) : -1;
  bool later_marker = opts_.stream && chunk->aborted && marker_at >= c &&
                      got == chunk_key(request_name(i), edge.from, marker_at);
  if (got != want && !later_marker) {
    return Status::Corrupt(where + ": got " + got + " for " + want + " (out of order or lost)");
  }
  if (chunk->aborted) return Status::Ok();  // the marker carries no tensors
  if (r.tensor_count() == 0) return Status::Corrupt(where + ": no tensors");
  for (const TensorView& t : r.tensors()) {
    if (!verify(t.data.data(), t.data.size(), seq_of(i, c), salt_of(t.name))) {
      return Status::Corrupt(where + ": tensor '" + std::string(t.name) + "' content mismatch");
    }
  }
  return Status::Ok();
}

Result<Chunk> Stage::receive(size_t k, int64_t i, int64_t c) {
  const EdgeConfig& e = *plan_.inputs[k];
  auto start = Clock::now();
  for (;;) {
    auto view = in_[k]->recv(e.from, e.to, deadline_in(std::chrono::milliseconds(200)));
    if (view.ok()) {
      int64_t t1 = now_ns();
      Chunk chunk;
      Status st = check(*view, e, i, c, &chunk);
      InputStats& s = in_stats_[k];
      if (!st.ok()) {
        ++s.errors;
        return st;
      }
      ++s.count;
      s.bytes += static_cast<int64_t>(view->bytes().size());
      auto fields = view->reader().fields();
      const Value* ts = fields.ok() ? fields->find("t_send") : nullptr;
      if (ts != nullptr && ts->as_int()) {
        s.lat_ns.push_back(t1 - *ts->as_int());
        s.at_ns.push_back(t1 - t0_ns_);
        s.e2e.observe(t1 - *ts->as_int());
      }
      if (k == 0 && c == 0) first_arrival_ = t1;
      if (k == 0) last_arrival_ = t1;
      return chunk;
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

// The stage's own work on `tokens` tokens: tokens x its per-token time, asleep.
void Stage::compute(int64_t tokens) const {
  const Workload& w = opts_.workload;
  double us = source() ? w.source_us_per_token
              : sink() ? w.sink_us_per_token
                       : w.middle_us_per_token;
  if (us <= 0) return;
  std::this_thread::sleep_for(
      std::chrono::nanoseconds(static_cast<int64_t>(us * 1000.0 * static_cast<double>(tokens))));
}

// Chunk c to every output (fields: seq, chunk, tokens, finished, aborted, t_req, t_send), keyed
// by the chunk key when streaming.
Status Stage::send_all(int64_t i, int64_t c, PayloadBuilder out, const Value::Map& fields) {
  for (size_t k = 0; k < out_.size(); ++k) {
    const EdgeConfig& e = *plan_.outputs[k];
    Value::Map f = fields;
    f.emplace("t_send", Value(now_ns()));
    OMNICONN_RETURN_IF_ERROR(out.set_fields(Value(std::move(f))));
    std::string id = opts_.stream ? chunk_key(request_name(i), e.from, c) : request_name(i);
    Status st = send_until(k, PayloadKey{std::move(id), e.from, e.to}, out);
    if (!st.ok()) return st.WithContext("edge " + e.from + "->" + e.to);
    ++chunks_sent_;
  }
  return Status::Ok();
}

Value::Map chunk_fields(int64_t i, int64_t c, const Chunk& chunk) {
  Value::Map f;
  f.emplace("seq", Value(i));
  f.emplace(std::string(kChunkField), Value(c));
  f.emplace("tokens", Value(chunk.tokens));
  f.emplace(std::string(kFinishedField), Value(chunk.finished || chunk.aborted));
  if (chunk.aborted) f.emplace(std::string(kAbortedField), Value(true));
  f.emplace("t_req", Value(chunk.t_req));
  return f;
}

Status Stage::send_chunk(int64_t i, int64_t c, const Chunk& chunk) {
  for (Tensor& t : outputs_) {
    fill(t.data.data(), t.bytes(chunk.tokens), seq_of(i, c), salt_of(t.name));
  }
  if (sink()) {
    for (const Tensor& t : outputs_) output_bytes_ += static_cast<int64_t>(t.bytes(chunk.tokens));
    return Status::Ok();
  }
  PayloadBuilder b;
  for (const Tensor& t : outputs_) {
    OMNICONN_RETURN_IF_ERROR(b.add_tensor(t.name, t.dtype, t.shape(chunk.tokens), t.data.data()));
  }
  return send_all(i, c, std::move(b), chunk_fields(i, c, chunk));
}

// A request cancelled mid-stream: what this stage sent and downstream has not read is freed,
// and the stream ends with an aborted marker (chunk c) on every output.
Status Stage::abort_outputs(int64_t i, int64_t c, int64_t t_req) {
  for (auto& o : out_) {
    uint64_t before = o->metrics().in_flight;
    (void)o->cleanup(request_name(i));
    abort_freed_ += static_cast<int64_t>(before - std::min(before, o->metrics().in_flight));
  }
  if (sink()) return Status::Ok();
  Chunk marker;
  marker.aborted = true;
  marker.t_req = t_req;
  return send_all(i, c, PayloadBuilder(), chunk_fields(i, c, marker));
}

Status Stage::run() {
  OMNICONN_RETURN_IF_ERROR(connect());
  shape_outputs();
  ctl_ = std::make_unique<LineReader>(plan_.ctl_fd);
  for (int64_t i = 0; i < opts_.requests; ++i) {
    if (source()) OMNICONN_RETURN_IF_ERROR(next_request(i));
    OMNICONN_RETURN_IF_ERROR(run_request(i));
    if (i == std::min<int64_t>(9, opts_.requests - 1)) rss_kb_early_ = resident_kb();
    report_metrics(false);
  }
  drain();
  for (auto& o : out_) {
    Metrics m = o->metrics();
    in_flight_end_ += static_cast<int64_t>(m.in_flight);
    in_use_end_ += static_cast<int64_t>(m.in_use_bytes);
  }
  rss_kb_end_ = resident_kb();
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
  json line = {{"requests", requests}, {"edges", edges}};
  if (sink()) {
    line["first_chunk"] = histogram_json(first_chunk_);
    line["request"] = histogram_json(request_);
  }
  write_line(plan_.evt_fd, "metrics " + line.dump());
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
                     {"lat_ns", s.lat_ns},
                     {"at_ns", s.at_ns}});
  }
  json sent = json::array();  // what the sending side alone knows
  for (size_t k = 0; k < out_.size(); ++k) {
    sent.push_back({{"from", plan_.outputs[k]->from},
                    {"to", plan_.outputs[k]->to},
                    {"inline", out_[k]->metrics().inline_payloads}});
  }
  json out = {{"stage", plan_.stage->id},
              {"rss_kb", ru.ru_maxrss},
              {"requests", requests},
              {"aborted", aborted_},
              {"abort_freed", abort_freed_},
              {"in_flight_end", in_flight_end_},
              {"in_use_bytes_end", in_use_end_},
              {"rss_kb_early", rss_kb_early_},
              {"rss_kb_end", rss_kb_end_},
              {"chunks_sent", chunks_sent_},
              {"output_bytes", output_bytes_},
              {"edges", edges},
              {"sent", sent},
              {"conn_ns", conn_ns_}};
  if (sink()) {
    out["first_ns"] = first_ns_;
    out["last_ns"] = last_ns_;
    out["done_ns"] = done_ns_;
  }
  return out;
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

#include "omniconn/connector.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/bits.h"
#include "omniconn/stream.h"

namespace omniconn {

std::string PayloadKey::str() const {
  return request_id + "/" + from_stage + "_to_" + to_stage;
}

std::string chunk_key(std::string_view request_id, std::string_view stage, int64_t chunk) {
  std::string out(request_id);
  out += '_';
  out += stage;
  out += '_';
  out += std::to_string(chunk);
  return out;
}

bool belongs_to_request(std::string_view key, std::string_view request_id) {
  if (key == request_id) return true;
  size_t n = request_id.size();
  if (key.size() <= n) return false;
  return (key.starts_with(request_id) && key[n] == '_') ||
         (key.ends_with(request_id) && key[key.size() - n - 1] == '_');
}

struct PayloadView::State {
  PayloadKey key;
  std::span<const std::byte> bytes;
  std::shared_ptr<void> keepalive;
  PayloadReader reader;
};

Result<PayloadView> PayloadView::make(PayloadKey key, std::span<const std::byte> bytes,
                                      std::shared_ptr<void> keepalive, ReadOptions opts) {
  auto reader = PayloadReader::open(bytes, opts);
  if (!reader.ok()) return reader.status().WithContext("payload " + key.str());
  PayloadView view;
  view.state_ = std::make_shared<const State>(
      State{std::move(key), bytes.first(reader->size()), std::move(keepalive), *reader});
  return view;
}

Result<PayloadView> PayloadView::copy(PayloadKey key, std::span<const std::byte> bytes) {
  // Readers expect aligned tensors; aligned_alloc wants a multiple of the alignment.
  void* mem = std::aligned_alloc(kPayloadAlignment,
                                 round_up(std::max<size_t>(bytes.size(), 1), kPayloadAlignment));
  if (mem == nullptr) return Status::ResourceExhausted("out of memory for an inline payload");
  std::shared_ptr<void> keep(mem, std::free);
  if (!bytes.empty()) std::memcpy(mem, bytes.data(), bytes.size());
  return make(std::move(key), {static_cast<const std::byte*>(mem), bytes.size()}, std::move(keep));
}

const PayloadKey& PayloadView::key() const {
  static const PayloadKey kEmpty;
  return state_ ? state_->key : kEmpty;
}

std::span<const std::byte> PayloadView::bytes() const {
  return state_ ? state_->bytes : std::span<const std::byte>();
}

const PayloadReader& PayloadView::reader() const {
  return state_->reader;
}

Value Metrics::to_value() const {
  Value::Map m;
  auto put = [&m](const char* k, uint64_t v) { m.emplace(k, Value(v)); };
  put("puts", puts);
  put("sends", sends);
  put("gets", gets);
  put("inline_payloads", inline_payloads);
  put("bytes_out", bytes_out);
  put("bytes_in", bytes_in);
  put("timeouts", timeouts);
  put("errors", errors);
  put("reclaimed", reclaimed);
  put("capacity_bytes", capacity_bytes);
  put("in_use_bytes", in_use_bytes);
  put("in_flight", in_flight);
  Value::Map codes;
  for (size_t i = 1; i < kStatusCodeCount; ++i) {
    if (errors_by_code[i] != 0) {
      codes.emplace(std::string(status_code_name(static_cast<StatusCode>(i))),
                    Value(errors_by_code[i]));
    }
  }
  m.emplace("errors_by_code", Value(std::move(codes)));
  auto latency = [&m](const char* k, const LatencyHistogram& h) {
    Value::List bounds, counts;
    for (int64_t b : LatencyHistogram::kBoundsNs) bounds.emplace_back(Value(b));
    for (uint64_t c : h.counts) counts.emplace_back(Value(c));
    Value::Map v;
    v.emplace("count", Value(h.count()));
    v.emplace("sum_ns", Value(h.sum_ns));
    v.emplace("bounds_ns", Value(std::move(bounds)));
    v.emplace("counts", Value(std::move(counts)));
    m.emplace(k, Value(std::move(v)));
  };
  latency("put_latency", put_latency);
  latency("get_latency", get_latency);
  return Value(std::move(m));
}

}  // namespace omniconn

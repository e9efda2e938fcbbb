#include "omniconn/connector.h"

#include <cstring>
#include <new>

namespace omniconn {

std::string PayloadKey::str() const {
  return request_id + "/" + from_stage + "_to_" + to_stage;
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
  constexpr std::align_val_t kAlign{kPayloadAlignment};  // readers expect aligned tensors
  auto* mem = static_cast<std::byte*>(
      ::operator new(std::max<size_t>(bytes.size(), 1), kAlign, std::nothrow));
  if (mem == nullptr) return Status::ResourceExhausted("out of memory for an inline payload");
  std::shared_ptr<void> keep(mem, [](void* p) { ::operator delete(p, kAlign); });
  if (!bytes.empty()) std::memcpy(mem, bytes.data(), bytes.size());
  return make(std::move(key), {mem, bytes.size()}, std::move(keep));
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
  return Value(std::move(m));
}

}  // namespace omniconn

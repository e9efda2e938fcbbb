#include "omniconn/connector.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "mooncake_options.h"
#include "omniconn/shm_connector.h"

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

struct ConnectorRegistry::Impl {
  mutable std::mutex mu;
  std::map<std::string, ConnectorType, std::less<>> types;
};

namespace {

ConnectorType shm_connector_type() {
  ConnectorType t;
  t.name = "SharedMemoryConnector";
  t.validate = [](const Value& extra) { return ShmOptions::from_extra(extra).status(); };
  t.create = [](const ConnectorSpec& spec) -> Result<std::unique_ptr<Connector>> {
    auto opts = ShmOptions::from_extra(spec.extra);
    if (!opts.ok()) return opts.status();
    return make_shm_connector(*opts);
  };
  return t;
}

}  // namespace

ConnectorRegistry::ConnectorRegistry() : impl_(std::make_shared<Impl>()) {
  impl_->types.emplace("SharedMemoryConnector", shm_connector_type());
  impl_->types.emplace("MooncakeConnector", mooncake_connector_type());
}

ConnectorRegistry& ConnectorRegistry::instance() {
  static ConnectorRegistry registry;
  return registry;
}

Status ConnectorRegistry::register_type(ConnectorType type) {
  if (type.name.empty() || !type.create || !type.validate) {
    return Status::InvalidArgument("connector type needs a name, validate and create");
  }
  std::lock_guard lock(impl_->mu);
  if (impl_->types.contains(type.name)) {
    return Status::InvalidArgument("connector '" + type.name + "' is already registered");
  }
  impl_->types.emplace(type.name, std::move(type));
  return Status::Ok();
}

const ConnectorType* ConnectorRegistry::find(std::string_view name) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->types.find(name);
  return it == impl_->types.end() ? nullptr : &it->second;
}

std::vector<std::string> ConnectorRegistry::type_names() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> names;
  for (const auto& [name, type] : impl_->types) names.push_back(name);
  return names;
}

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

Status ConnectorRegistry::validate(const ConnectorSpec& spec) const {
  const ConnectorType* type = find(spec.type);
  if (type == nullptr) {
    return Status::InvalidArgument("unknown connector type '" + spec.type +
                                   "'; available: " + join(type_names()));
  }
  return type->validate(spec.extra);
}

Result<std::unique_ptr<Connector>> ConnectorRegistry::create(const ConnectorSpec& spec) const {
  const ConnectorType* type = find(spec.type);
  if (type == nullptr) return validate(spec);
  return type->create(spec);
}

}  // namespace omniconn

#include "mooncake_options.h"

#include "extra_keys.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace omniconn {

namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMinSegment = uint64_t{16} << 20;  // Mooncake's buffer allocator minimum
using extra::Errors;
using extra::integer_of;

void read_string(const Value::Map& m, const char* key, bool may_be_empty, std::string* out,
                 Errors* errors) {
  auto it = m.find(key);
  if (it == m.end()) return;
  const std::string* s = it->second.as_string();
  if (s == nullptr || (!may_be_empty && s->empty())) {
    errors->push_back(std::string(key) + ": want a " + (may_be_empty ? "" : "non-empty ") +
                      "string, got " +
                      (s ? std::string("an empty string") : std::string(it->second.kind_name())));
    return;
  }
  *out = *s;
}

void read_bytes(const Value::Map& m, const char* key, bool digits_ok, uint64_t min, uint64_t max,
                uint64_t* out, Errors* errors) {
  auto it = m.find(key);
  if (it == m.end()) return;
  auto v = integer_of(it->second, digits_ok);
  if (!v || *v < 0 || static_cast<uint64_t>(*v) < min || static_cast<uint64_t>(*v) > max) {
    errors->push_back(std::string(key) + ": want a byte count in [" + std::to_string(min) + ", " +
                      std::to_string(max) + "]" +
                      (digits_ok ? " (an integer or a string of digits)" : "") + ", got " +
                      (v ? std::to_string(*v) : std::string(it->second.kind_name())));
    return;
  }
  *out = static_cast<uint64_t>(*v);
}

// "host:port" with a non-empty host and a port in [1, 65535].
bool valid_host_port(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  if (s.size() - colon - 1 > 5) return false;
  int port = 0;
  for (size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    port = port * 10 + (s[i] - '0');
  }
  return port >= 1 && port <= 65535;
}

void check_values(const MooncakeOptions& o, const Value::Map& m, Errors* errors) {
  if (m.contains("master") && m.at("master").as_string() && !valid_host_port(o.master)) {
    errors->push_back("master: want \"host:port\" (port 1..65535), got \"" + o.master + "\"");
  }
  if (o.proto != "tcp" && o.proto != "rdma") {
    errors->push_back("proto: want \"tcp\" or \"rdma\", got \"" + o.proto + "\"");
  }
}

}  // namespace

Result<MooncakeOptions> MooncakeOptions::from_extra(const Value& extra) {
  MooncakeOptions o;
  if (extra.is_nil()) return o;
  const Value::Map* m = extra.as_map();
  if (m == nullptr) {
    return Status::InvalidArgument("MooncakeConnector extra: want a map, got " +
                                   std::string(extra.kind_name()));
  }
  Errors errors;
  read_string(*m, "host", false, &o.host, &errors);
  read_string(*m, "metadata_server", false, &o.metadata_server, &errors);
  read_string(*m, "master", false, &o.master, &errors);
  read_bytes(*m, "segment", true, 0, 1024 * kGiB, &o.segment_bytes, &errors);
  read_bytes(*m, "localbuf", false, 1, 64 * kGiB, &o.localbuf_bytes, &errors);
  read_bytes(*m, "inline_threshold_bytes", false, 0, kGiB, &o.inline_threshold_bytes, &errors);
  read_bytes(*m, "max_payload_bytes", false, 1, 1024 * kGiB, &o.max_payload_bytes, &errors);
  read_string(*m, "namespace", false, &o.name_space, &errors);
  read_string(*m, "proto", false, &o.proto, &errors);
  read_string(*m, "rdma", true, &o.rdma, &errors);
  read_string(*m, "library", false, &o.library, &errors);
  check_values(o, *m, &errors);
  extra::check_known_keys(
      *m,
      {"host", "metadata_server", "master", "segment", "localbuf", "proto", "rdma", "library",
       "namespace", "inline_threshold_bytes", "max_payload_bytes"},
      &errors);
  OMNICONN_RETURN_IF_ERROR(extra::to_status("MooncakeConnector", errors));
  auto round_up = [](uint64_t n) { return (n + kSizeQuantum - 1) / kSizeQuantum * kSizeQuantum; };
  o.segment_bytes = o.segment_bytes ? std::max(kMinSegment, round_up(o.segment_bytes)) : 0;
  o.localbuf_bytes = round_up(o.localbuf_bytes);
  return o;
}

}  // namespace omniconn

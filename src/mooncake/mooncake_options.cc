#include "mooncake/mooncake_options.h"

#include <algorithm>
#include <string>

#include "core/bits.h"
#include "omniconn/extra.h"

namespace omniconn::mooncake {

namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMinSegment = uint64_t{16} << 20;  // Mooncake's buffer allocator minimum

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

// A boolean into *out (left alone when the key is absent or not a boolean).
void boolean(const Value& extra, std::string_view key, bool* out, ExtraReader* r) {
  r->known(key);
  const Value::Map* map = extra.as_map();
  if (map == nullptr || !r->has(key)) return;
  const Value& v = map->find(key)->second;
  if (const bool* b = v.as_bool()) {
    *out = *b;
    return;
  }
  r->add({FieldError::Kind::kBadValue, std::string(key),
          std::string(key) + ": want true or false, got " + std::string(v.kind_name())});
}

void check_values(const MooncakeOptions& o, ExtraReader* r) {
  using Kind = FieldError::Kind;
  if (r->has("master") && !valid_host_port(o.master)) {
    r->add({Kind::kBadValue, "master",
            "master: want \"host:port\" (port 1..65535), got \"" + o.master + "\""});
  }
  if (o.proto != "tcp" && o.proto != "rdma") {
    r->add({Kind::kBadValue, "proto", "proto: want \"tcp\" or \"rdma\", got \"" + o.proto + "\""});
  }
}

}  // namespace

FieldErrors read_mooncake_options(const Value& extra, MooncakeOptions* out) {
  MooncakeOptions o;
  ExtraReader r(extra);
  r.string("host", &o.host);
  r.string("metadata_server", &o.metadata_server);
  r.string("master", &o.master);
  r.integer("segment", 0, 1024 * kGiB, &o.segment_bytes);
  r.integer("localbuf", 1, 64 * kGiB, &o.localbuf_bytes, /*digits_ok=*/false);
  r.string("proto", &o.proto);
  r.string("rdma", &o.rdma, /*may_be_empty=*/true);
  r.string("library", &o.library);
  r.string("namespace", &o.name_space);
  r.integer("inline_threshold_bytes", 0, kGiB, &o.inline_threshold_bytes, false);
  r.integer("max_payload_bytes", 1, 1024 * kGiB, &o.max_payload_bytes, false);
  boolean(extra, "preferred_placement", &o.preferred_placement, &r);
  check_values(o, &r);
  o.segment_bytes =
      o.segment_bytes
          ? std::max(kMinSegment, round_up(o.segment_bytes, MooncakeOptions::kSizeQuantum))
          : 0;
  o.localbuf_bytes = round_up(o.localbuf_bytes, MooncakeOptions::kSizeQuantum);
  *out = std::move(o);
  return r.finish();
}

Result<MooncakeOptions> MooncakeOptions::from_extra(const Value& extra) {
  MooncakeOptions o;
  OMNICONN_RETURN_IF_ERROR(
      field_errors_status("MooncakeConnector", read_mooncake_options(extra, &o)));
  return o;
}

}  // namespace omniconn::mooncake

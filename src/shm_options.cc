#include <string>
#include <vector>

#include "extra_keys.h"
#include "omniconn/shm_connector.h"

namespace omniconn {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

struct SizeKey {
  const char* name;
  uint64_t min;
  uint64_t max;
};

using extra::integer_of;

void read_size(const Value::Map& extra, const SizeKey& key, uint64_t* out,
               std::vector<std::string>* errors) {
  auto it = extra.find(key.name);
  if (it == extra.end()) return;
  auto v = integer_of(it->second);
  if (!v || *v < 0 || static_cast<uint64_t>(*v) < key.min || static_cast<uint64_t>(*v) > key.max) {
    errors->push_back(std::string(key.name) + ": want an integer in [" + std::to_string(key.min) +
                      ", " + std::to_string(key.max) + "], got " +
                      (v ? std::to_string(*v) : std::string(it->second.kind_name())));
    return;
  }
  *out = static_cast<uint64_t>(*v);
}

void check_relations(const ShmOptions& o, std::vector<std::string>* errors) {
  if (o.max_payload_bytes < o.threshold_bytes) {
    errors->push_back("max_payload_bytes (" + std::to_string(o.max_payload_bytes) +
                      ") is smaller than shm_threshold_bytes (" +
                      std::to_string(o.threshold_bytes) + ")");
  }
  // An inline record (threshold + key) must fit half the ring.
  if (o.ring_bytes / 2 < o.threshold_bytes + 4096) {
    errors->push_back("ring_bytes (" + std::to_string(o.ring_bytes) +
                      ") must be at least 2 * (shm_threshold_bytes + 4096) = " +
                      std::to_string(2 * (o.threshold_bytes + 4096)));
  }
  if (o.ring_bytes % 8 != 0) errors->push_back("ring_bytes must be a multiple of 8");
}

}  // namespace

Result<ShmOptions> ShmOptions::from_extra(const Value& extra) {
  ShmOptions o;
  if (extra.is_nil()) return o;
  const Value::Map* m = extra.as_map();
  if (m == nullptr) {
    return Status::InvalidArgument("SharedMemoryConnector extra: want a map, got " +
                                   std::string(extra.kind_name()));
  }
  std::vector<std::string> errors;
  uint64_t threshold = o.threshold_bytes, arena = o.arena_bytes, max_payload = o.max_payload_bytes,
           inflight = o.max_inflight, ring = o.ring_bytes, spin = o.spin_us;
  read_size(*m, {"shm_threshold_bytes", 0, 16 * kMiB}, &threshold, &errors);
  read_size(*m, {"arena_bytes", kMiB, 64 * kGiB}, &arena, &errors);
  read_size(*m, {"max_payload_bytes", 1, 64 * kGiB}, &max_payload, &errors);
  read_size(*m, {"max_inflight", 1, 1u << 20}, &inflight, &errors);
  read_size(*m, {"ring_bytes", 64 * 1024, kGiB}, &ring, &errors);
  read_size(*m, {"spin_us", 0, 10'000'000}, &spin, &errors);
  o.threshold_bytes = threshold;
  o.arena_bytes = arena;
  o.max_payload_bytes = max_payload;
  o.max_inflight = inflight;
  o.ring_bytes = ring;
  o.spin_us = static_cast<uint32_t>(spin);
  if (auto it = m->find("namespace"); it != m->end()) {
    const std::string* ns = it->second.as_string();
    if (ns == nullptr || ns->empty() || ns->size() > 256) {
      errors.push_back("namespace: want a string of 1..256 bytes");
    } else {
      o.name_space = *ns;
    }
  }
  extra::check_known_keys(*m,
                          {"shm_threshold_bytes", "arena_bytes", "max_payload_bytes",
                           "max_inflight", "ring_bytes", "spin_us", "namespace"},
                          &errors);
  check_relations(o, &errors);
  OMNICONN_RETURN_IF_ERROR(extra::to_status("SharedMemoryConnector", errors));
  return o;
}

}  // namespace omniconn

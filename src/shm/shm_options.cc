#include "shm/shm_options.h"

#include <string>

#include "omniconn/extra.h"

namespace omniconn::shm {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

// The first of `keys` that the user set, else the first: where a conflict is reported.
std::string key_for(const ExtraReader& r, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    if (r.has(k)) return k;
  }
  return *keys.begin();
}

// The smallest ring of at least `fallback` bytes that holds two inline records of `threshold`
// bytes (with their key and header), in whole 64 KiB.
uint64_t ring_for_threshold(uint64_t threshold, uint64_t fallback) {
  constexpr uint64_t kStep = 64 * 1024;
  uint64_t need = (2 * (threshold + 4096) + kStep - 1) / kStep * kStep;
  return need > fallback ? need : fallback;
}

void check_relations(const ShmOptions& o, ExtraReader* r) {
  using Kind = FieldError::Kind;
  if (o.max_payload_bytes < o.threshold_bytes) {
    r->add({Kind::kConflict, key_for(*r, {"max_payload_bytes", "shm_threshold_bytes"}),
            "max_payload_bytes (" + std::to_string(o.max_payload_bytes) +
                ") is smaller than shm_threshold_bytes (" + std::to_string(o.threshold_bytes) +
                ")"});
  }
  // An inline record (threshold + key) must fit half the ring.
  if (o.ring_bytes / 2 < o.threshold_bytes + 4096) {
    r->add({Kind::kConflict, key_for(*r, {"ring_bytes", "shm_threshold_bytes"}),
            "ring_bytes (" + std::to_string(o.ring_bytes) +
                ") must be at least 2 * (shm_threshold_bytes + 4096) = " +
                std::to_string(2 * (o.threshold_bytes + 4096))});
  }
  if (o.ring_bytes % 8 != 0) {
    r->add({Kind::kBadValue, "ring_bytes", "ring_bytes must be a multiple of 8"});
  }
}

}  // namespace

FieldErrors read_shm_options(const Value& extra, ShmOptions* out) {
  ShmOptions o;
  ExtraReader r(extra);
  uint64_t threshold = o.threshold_bytes, arena = o.arena_bytes, max_payload = o.max_payload_bytes,
           inflight = o.max_inflight, ring = o.ring_bytes, spin = o.spin_us;
  r.integer("shm_threshold_bytes", 0, 16 * kMiB, &threshold);
  r.integer("arena_bytes", kMiB, 64 * kGiB, &arena);
  r.integer("max_payload_bytes", 1, 64 * kGiB, &max_payload);
  r.integer("max_inflight", 1, 1u << 20, &inflight);
  r.integer("ring_bytes", 64 * 1024, kGiB, &ring);
  r.integer("spin_us", 0, 10'000'000, &spin);
  r.string("namespace", &o.name_space, /*may_be_empty=*/false, /*max_len=*/256);
  o.threshold_bytes = threshold;
  o.arena_bytes = arena;
  o.max_payload_bytes = max_payload;
  o.max_inflight = inflight;
  // The ring follows the threshold unless set: an inline record must fit half of it.
  o.ring_bytes = r.has("ring_bytes") ? ring : ring_for_threshold(threshold, ring);
  o.spin_us = static_cast<uint32_t>(spin);
  check_relations(o, &r);
  *out = o;
  return r.finish();
}

}  // namespace omniconn::shm

namespace omniconn {

Result<ShmOptions> ShmOptions::from_extra(const Value& extra) {
  ShmOptions o;
  OMNICONN_RETURN_IF_ERROR(
      field_errors_status("SharedMemoryConnector", shm::read_shm_options(extra, &o)));
  return o;
}

}  // namespace omniconn

// What a MooncakeConnector tells beyond Metrics: where its puts asked Mooncake to place their
// replicas (docs/mooncake.md, "Placement").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "omniconn/connector.h"

namespace omniconn::mooncake {

// Store puts (payloads above inline_threshold_bytes, descriptor or channel mode) so far. With
// room in the preferred segment the master places the replica there; without, it picks
// another segment and says nothing to the client: `preferred` counts puts that named it.
struct PlacementCounts {
  uint64_t preferred = 0;  // named the segment the edge's reader announced, and succeeded
  uint64_t fallback = 0;   // that put failed; made again without the preference, succeeded
  uint64_t plain = 0;      // no announcement known for the edge, or preferred_placement off
  std::string segment;     // this connector's own segment name, "host:port" ("" without one)
};

// The counts of a MooncakeConnector; nullopt for a connector of another type.
std::optional<PlacementCounts> placement_counts(const Connector& connector);

}  // namespace omniconn::mooncake

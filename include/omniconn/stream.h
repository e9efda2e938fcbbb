// Streams of chunks: a request's output over an edge as chunks 0..n-1, sent as they are made,
// the last one marked. Channel mode delivers them in order; descriptor mode and Python name
// each by vllm-omni's chunk key. Cancelling a request mid-stream is Connector::cleanup of its
// id on the writing side: every chunk sent and not yet read is freed (its queued descriptors
// are skipped as gone), whichever key scheme named them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace omniconn {

// vllm-omni's key of one chunk (chunk_transfer_adapter): "{request}_{stage}_{chunk}", where
// stage is the producing stage.
std::string chunk_key(std::string_view request_id, std::string_view stage, int64_t chunk);

// Whether a payload whose request id is `key` belongs to request `request_id` for cleanup, by
// vllm-omni's rule: equal, "{request_id}_..." (chunk keys) or "..._{request_id}".
bool belongs_to_request(std::string_view key, std::string_view request_id);

// Fields of a chunk payload in omniconn's runtime (docs/metrics.md, "Streaming"):
//   chunk (int), finished (bool: the last chunk), aborted (bool: the request was cancelled;
//   finished too, no tensors).
inline constexpr std::string_view kChunkField = "chunk";
inline constexpr std::string_view kFinishedField = "finished";
inline constexpr std::string_view kAbortedField = "aborted";

}  // namespace omniconn

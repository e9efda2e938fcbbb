// First-fit allocation of byte ranges inside one buffer, with coalescing frees. Not
// thread-safe: the owner holds its lock. Used for the SHM arena and Mooncake's registered pool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>

namespace omniconn {

class RangeAllocator {
 public:
  void reset(uint64_t size) {
    free_.clear();
    if (size > 0) free_.emplace(0, size);
  }

  // Offset of a free range of `n` bytes, or nullopt when no free range is large enough.
  std::optional<uint64_t> allocate(uint64_t n) {
    auto it = std::find_if(free_.begin(), free_.end(),
                           [n](const auto& range) { return range.second >= n; });
    if (it == free_.end()) return std::nullopt;
    uint64_t off = it->first, left = it->second - n;
    free_.erase(it);
    if (left > 0) free_.emplace(off + n, left);
    return off;
  }

  // Gives back [off, off + len), merging it with free neighbours.
  void free(uint64_t off, uint64_t len) {
    auto next = free_.lower_bound(off);
    if (next != free_.end() && next->first == off + len) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second += len;
        return;
      }
    }
    free_.emplace(off, len);
  }

 private:
  std::map<uint64_t, uint64_t> free_;  // offset -> length
};

}  // namespace omniconn

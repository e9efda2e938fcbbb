// Small arithmetic shared by the payload format and the connectors.
#pragma once

#include <cstdint>

namespace omniconn {

// n rounded up to a multiple of m (m > 0); the caller keeps n far from overflow.
constexpr uint64_t round_up(uint64_t n, uint64_t m) {
  return (n + m - 1) / m * m;
}

}  // namespace omniconn

// Deadlines: every blocking call of omniconn takes an absolute point in time on the steady
// clock, so a chain of calls shares one budget instead of each restarting its own timeout.
#pragma once

#include <chrono>

namespace omniconn {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_in(Clock::duration d) {
  return Clock::now() + d;
}
inline Deadline no_deadline() {
  return Deadline::max();
}

}  // namespace omniconn

// The call counters every connector keeps, and their part of Metrics.
#pragma once

#include <atomic>
#include <cstdint>

#include "omniconn/connector.h"

namespace omniconn {

struct CallCounters {
  std::atomic<uint64_t> puts{0}, sends{0}, gets{0}, inline_payloads{0}, bytes_out{0}, bytes_in{0},
      timeouts{0}, errors{0};

  // Metrics with the counters filled in; the connector adds its memory figures.
  Metrics snapshot() const {
    Metrics m;
    m.puts = puts.load();
    m.sends = sends.load();
    m.gets = gets.load();
    m.inline_payloads = inline_payloads.load();
    m.bytes_out = bytes_out.load();
    m.bytes_in = bytes_in.load();
    m.timeouts = timeouts.load();
    m.errors = errors.load();
    return m;
  }
};

}  // namespace omniconn

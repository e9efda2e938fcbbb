// `omniconn stats`: a running pipeline's /metrics, as a per-edge table.
#pragma once

#include <cstdint>
#include <string>

namespace omniconn::tools {

struct StatsArgs {
  std::string target;  // HOST:PORT or http://HOST:PORT/metrics
  bool once = false;
  bool json = false;
  int64_t interval_ms = 1000;
  int64_t count = 0;  // refreshes before exiting (0: until the endpoint goes away)
  int64_t timeout_ms = 2000;
};

// Exit code: 0 shown (the endpoint went away after at least one scrape: the run ended), 1 the
// first scrape failed or the text is not Prometheus text.
int cmd_stats(const StatsArgs& args);

}  // namespace omniconn::tools

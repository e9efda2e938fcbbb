// Serving metrics over HTTP for Prometheus, and scraping them (omniconn stats). The text
// itself is built with PrometheusText (prometheus.h).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "omniconn/status.h"

namespace omniconn {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  // Serves GET /metrics on `address` ("HOST:PORT", port 0: any free one; "[::1]:PORT" for
  // IPv6) with what `render` returns, as Prometheus text (version 0.0.4), from threads of its
  // own: `render` must be safe to call from them. Unavailable when it cannot listen there.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& address, Render render);

  ~MetricsServer();  // stops serving (a scrape in progress finishes first)
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The address it listens on, the port filled in: "127.0.0.1:9464".
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// The body of GET http://HOST:PORT/metrics. `target` is "HOST:PORT", "http://HOST:PORT" or a
// full "http://HOST:PORT/path" URL. Unavailable (no answer, not 200) or Timeout, with why.
Result<std::string> scrape_metrics(const std::string& target, std::chrono::milliseconds timeout);

// Splits "HOST:PORT" (or "[V6]:PORT"); InvalidArgument naming what is wrong.
Status split_host_port(const std::string& address, std::string* host, int* port);

}  // namespace omniconn

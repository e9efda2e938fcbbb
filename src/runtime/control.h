// The control channel between the orchestrator and the stage workers of other hosts: ZeroMQ,
// a ROUTER socket on the orchestrator and one DEALER per worker, one text message per frame.
// It carries control only (request ids, completions, statistics, exits); payloads go stage
// to stage through the edges' connectors.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "omniconn/status.h"

namespace omniconn::runtime {

// How often each side says it is alive; a peer silent for the run's heartbeat timeout is lost.
constexpr int kHeartbeatIntervalMs = 250;

// "HOST:PORT" -> "tcp://HOST:PORT" (a port of 0 asks for any free port when binding).
Result<std::string> tcp_endpoint(const std::string& host_port, bool bind);

// What identifies a host for the edges: connectors that cannot reach other hosts work only
// between processes with the same kernel (boot id) and network namespace (abstract sockets).
std::string host_identity();
// This host's name for reports: `given`, else gethostname().
std::string host_display_name(const std::string& given);

struct ControlMessage {
  std::string peer;  // ROUTER side: the worker's routing id
  std::string text;
  std::string peer_address;  // ROUTER side: the worker's IP address as the socket saw it
};

class ControlServer {
 public:
  ControlServer();
  ~ControlServer();
  // Binds "HOST:PORT"; bound() is then "HOST:PORT" with the port in use.
  Status bind(const std::string& host_port);
  const std::string& bound() const { return bound_; }
  // 1: a message; 0: none within timeout_ms; an error status on failure.
  Result<int> recv(ControlMessage* out, int timeout_ms);
  // false when the peer is unknown (never joined, or its connection is gone).
  bool send(const std::string& peer, const std::string& text);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string bound_;
};

class ControlClient {
 public:
  ControlClient();
  ~ControlClient();
  // Connects (in the background; messages queue until it is up) with this routing id.
  Status connect(const std::string& host_port, const std::string& id);
  Result<int> recv(std::string* text, int timeout_ms);
  bool send(const std::string& text);
  // Waits until a message can be read or one of `fds` is readable, or timeout_ms passed.
  void wait(const std::vector<int>& fds, int timeout_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace omniconn::runtime

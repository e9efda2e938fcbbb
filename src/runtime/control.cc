#include "runtime/control.h"

#include <limits.h>
#include <unistd.h>

#include <fstream>
#include <zmq.hpp>

#include "omniconn/metrics_server.h"

namespace omniconn::runtime {

namespace {

// ZeroMQ's own keepalive: a dead TCP connection is noticed and the DEALER reconnects.
void set_common(zmq::socket_t& s, int linger_ms) {
  s.set(zmq::sockopt::linger, linger_ms);
  s.set(zmq::sockopt::heartbeat_ivl, 1000);
  s.set(zmq::sockopt::heartbeat_timeout, 3000);
  s.set(zmq::sockopt::reconnect_ivl, 100);
  s.set(zmq::sockopt::reconnect_ivl_max, 1000);
}

Status zmq_error(const std::string& what, const zmq::error_t& e) {
  return Status::Unavailable(what + ": " + e.what());
}

}  // namespace

Result<std::string> tcp_endpoint(const std::string& host_port, bool bind) {
  std::string host;
  int port_number = 0;
  OMNICONN_RETURN_IF_ERROR(split_host_port(host_port, &host, &port_number));
  std::string port = std::to_string(port_number);
  if (host.empty()) {
    if (!bind) return Status::InvalidArgument("'" + host_port + "' names no host");
    host = "*";
  } else if (host.find(':') != std::string::npos) {
    host = "[" + host + "]";
  }
  if (port == "0") {
    if (!bind) return Status::InvalidArgument("'" + host_port + "': port 0 is only for --listen");
    port = "*";
  }
  return "tcp://" + host + ":" + port;
}

std::string host_identity() {
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  char ns[PATH_MAX] = {};
  ssize_t n = ::readlink("/proc/self/ns/net", ns, sizeof ns - 1);
  return boot + "/" + (n > 0 ? std::string(ns, static_cast<size_t>(n)) : "?");
}

std::string host_display_name(const std::string& given) {
  if (!given.empty()) return given;
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

struct ControlServer::Impl {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::router};
};

ControlServer::ControlServer() : impl_(std::make_unique<Impl>()) {
  set_common(impl_->sock, 500);
  impl_->sock.set(zmq::sockopt::router_mandatory, 1);
}
ControlServer::~ControlServer() = default;

Status ControlServer::bind(const std::string& host_port) {
  auto ep = tcp_endpoint(host_port, true);
  if (!ep.ok()) return ep.status();
  try {
    impl_->sock.bind(*ep);
  } catch (const zmq::error_t& e) {
    return zmq_error("cannot listen on " + host_port, e);
  }
  std::string last = impl_->sock.get(zmq::sockopt::last_endpoint);  // tcp://HOST:PORT
  bound_ = last.rfind("tcp://", 0) == 0 ? last.substr(6) : last;
  return Status::Ok();
}

Result<int> ControlServer::recv(ControlMessage* out, int timeout_ms) {
  try {
    zmq::pollitem_t item{impl_->sock.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return 0;
    zmq::message_t id, body;
    if (!impl_->sock.recv(id, zmq::recv_flags::dontwait)) return 0;
    if (!id.more()) return 0;      // a DEALER sends one frame: [routing id][body]
    (void)impl_->sock.recv(body);  // frames of one message arrive together
    while (body.more()) (void)impl_->sock.recv(body);
    out->peer = id.to_string();
    out->text = body.to_string();
    const char* addr = body.size() > 0 ? body.gets("Peer-Address") : nullptr;
    out->peer_address = addr != nullptr ? addr : "";
    return 1;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    return zmq_error("control channel", e);
  }
}

bool ControlServer::send(const std::string& peer, const std::string& text) {
  try {
    zmq::message_t id(peer.data(), peer.size()), body(text.data(), text.size());
    if (!impl_->sock.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
    return impl_->sock.send(body, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t&) {
    return false;  // EHOSTUNREACH: the peer is gone (router_mandatory)
  }
}

struct ControlClient::Impl {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
};

ControlClient::ControlClient() : impl_(std::make_unique<Impl>()) {
  set_common(impl_->sock, 1000);  // a last "bye" still leaves when the worker exits
}
ControlClient::~ControlClient() = default;

Status ControlClient::connect(const std::string& host_port, const std::string& id) {
  auto ep = tcp_endpoint(host_port, false);
  if (!ep.ok()) return ep.status();
  try {
    impl_->sock.set(zmq::sockopt::routing_id, id);  // the same id after a reconnect
    impl_->sock.connect(*ep);
  } catch (const zmq::error_t& e) {
    return zmq_error("cannot connect to " + host_port, e);
  }
  return Status::Ok();
}

Result<int> ControlClient::recv(std::string* text, int timeout_ms) {
  try {
    zmq::pollitem_t item{impl_->sock.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return 0;
    zmq::message_t body;
    if (!impl_->sock.recv(body, zmq::recv_flags::dontwait)) return 0;
    *text = body.to_string();
    return 1;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    return zmq_error("control channel", e);
  }
}

void ControlClient::wait(const std::vector<int>& fds, int timeout_ms) {
  std::vector<zmq::pollitem_t> items{{impl_->sock.handle(), 0, ZMQ_POLLIN, 0}};
  for (int fd : fds) items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
  try {
    zmq::poll(items, std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t&) {
    // EINTR: the caller looks at its flags and waits again
  }
}

bool ControlClient::send(const std::string& text) {
  try {
    zmq::message_t body(text.data(), text.size());
    return impl_->sock.send(body, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t&) {
    return false;
  }
}

}  // namespace omniconn::runtime

// MetricsServer and scrape_metrics over cpp-httplib (Debian's libcpp-httplib).
#include "omniconn/metrics_server.h"

#include <httplib.h>

#include <thread>

namespace omniconn {

Status split_host_port(const std::string& address, std::string* host, int* port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return Status::InvalidArgument("'" + address + "' is not HOST:PORT");
  }
  std::string h = address.substr(0, colon), p = address.substr(colon + 1);
  if (p.find_first_not_of("0123456789") != std::string::npos || p.size() > 5 ||
      std::stoi(p) > 65535) {
    return Status::InvalidArgument("'" + address + "': the port must be a number 0-65535");
  }
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = h;
  *port = std::stoi(p);
  return Status::Ok();
}

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& address,
                                                            Render render) {
  std::string host;
  int port = 0;
  OMNICONN_RETURN_IF_ERROR(split_host_port(address, &host, &port));
  if (host.empty()) return Status::InvalidArgument("'" + address + "' names no host");
  auto impl = std::make_unique<Impl>();
  httplib::Server& s = impl->server;
  s.new_task_queue = [] { return new httplib::ThreadPool(2); };
  s.set_keep_alive_max_count(1);  // a scrape per connection: stopping never waits on one
  s.set_read_timeout(2, 0);
  // httplib's default adds SO_REUSEPORT: a second server on a port in use would share it
  // silently. SO_REUSEADDR alone: a port in use is an error, one just freed is not.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("omniconn: metrics at /metrics\n", "text/plain");
  });
  if (port == 0) {
    port = s.bind_to_any_port(host);
  } else if (!s.bind_to_port(host, port)) {
    port = -1;
  }
  if (port < 0) {
    return Status::Unavailable("cannot listen on " + address +
                               " for metrics (in use, or not an address of this host)");
  }
  impl->thread = std::thread([&s] { s.listen_after_bind(); });
  // stop() before the loop runs would be lost: wait (bounded) until it runs.
  for (int i = 0; i < 2000 && !s.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::unique_ptr<MetricsServer> out(new MetricsServer(std::move(impl)));
  bool v6 = host.find(':') != std::string::npos;
  out->address_ = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  return out;
}

Result<std::string> scrape_metrics(const std::string& target, std::chrono::milliseconds timeout) {
  std::string rest = target;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  if (rest.find("://") != std::string::npos) {
    return Status::InvalidArgument("'" + target + "': only http:// is served");
  }
  auto slash = rest.find('/');
  std::string path = slash == std::string::npos ? "/metrics" : rest.substr(slash);
  std::string host;
  int port = 0;
  OMNICONN_RETURN_IF_ERROR(split_host_port(rest.substr(0, slash), &host, &port));
  if (host.empty() || port == 0) {
    return Status::InvalidArgument("'" + target + "' names no host or port");
  }
  httplib::Client client(host, port);
  auto usec = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
  client.set_connection_timeout(usec / 1000000, usec % 1000000);
  client.set_read_timeout(usec / 1000000, usec % 1000000);
  auto res = client.Get(path);
  if (!res) {
    auto err = res.error();
    std::string why = httplib::to_string(err);
    if (err == httplib::Error::ConnectionTimeout || err == httplib::Error::Read) {
      return Status::Timeout("no answer from " + target + " within " +
                             std::to_string(timeout.count()) + " ms (" + why + ")");
    }
    return Status::Unavailable("cannot scrape " + target + ": " + why);
  }
  if (res->status != 200) {
    return Status::Unavailable(target + " answered HTTP " + std::to_string(res->status));
  }
  return res->body;
}

}  // namespace omniconn

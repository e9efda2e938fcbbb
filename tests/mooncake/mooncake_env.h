// Mooncake for tests: where the real store library and mooncake_master are (when installed),
// a mooncake_master started on free loopback ports in a temp dir, and the fake store library
// (tests/mooncake/fake) that stands in for the C API in CI.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace omniconn::testing {

// Set by tests that created a MooncakeConnector in this process. Mooncake cannot start again in
// a forked child, so a test that forks connector processes skips once it is set: such tests need
// a process of their own (ctest runs each test in one).
inline bool& mooncake_started_here() {
  static bool started = false;
  return started;
}

inline bool is_file(const std::string& p) {
  struct stat st {};
  return !p.empty() && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// libmooncake_store.so: $MOONCAKE_STORE_LIBRARY, else /opt/mooncake/lib. "" when absent.
inline std::string mooncake_library() {
  const char* env = std::getenv("MOONCAKE_STORE_LIBRARY");
  std::string p = env ? env : "/opt/mooncake/lib/libmooncake_store.so";
  return is_file(p) ? p : "";
}

// mooncake_master: $OMNICONN_MOONCAKE_MASTER, else /opt/mooncake/bin. "" when absent.
inline std::string mooncake_master_binary() {
  const char* env = std::getenv("OMNICONN_MOONCAKE_MASTER");
  std::string p = env ? env : "/opt/mooncake/bin/mooncake_master";
  return is_file(p) ? p : "";
}

inline std::string mooncake_skip_reason() {
#ifdef OMNICONN_SANITIZED
  return "sanitizer build: the installed Mooncake library is not instrumented (its leaks and "
         "threads would be reported as ours); the plain build runs the live tests";
#endif
  if (mooncake_library().empty()) {
    return "no libmooncake_store.so (set MOONCAKE_STORE_LIBRARY or install it under "
           "/opt/mooncake/lib; docs/mooncake.md says how to build it)";
  }
  if (mooncake_master_binary().empty()) {
    return "no mooncake_master (set OMNICONN_MOONCAKE_MASTER or install it under "
           "/opt/mooncake/bin)";
  }
  return "";
}

// A port that was free a moment ago on 127.0.0.1.
inline int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

inline bool port_accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A mooncake_master on loopback, stopped (SIGTERM, then SIGKILL) by the process that started it.
class MooncakeMaster {
 public:
  MooncakeMaster() = default;
  MooncakeMaster(const MooncakeMaster&) = delete;
  MooncakeMaster& operator=(const MooncakeMaster&) = delete;
  ~MooncakeMaster() { stop(); }

  // Empty on success, else why it did not start.
  std::string start() {
    rpc_port_ = free_loopback_port();
    http_port_ = free_loopback_port();
    metrics_port_ = free_loopback_port();
    char tmpl[] = "/tmp/omniconn-mooncake-master.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
    dir_ = tmpl;
    std::string bin = mooncake_master_binary();
    owner_ = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      if (::chdir(dir_.c_str()) != 0) std::_Exit(127);
      std::string log = dir_ + "/master.log";
      std::freopen(log.c_str(), "w", stdout);
      std::freopen(log.c_str(), "a", stderr);
      std::string a1 = "--rpc_port=" + std::to_string(rpc_port_);
      std::string a2 = "--http_metadata_server_port=" + std::to_string(http_port_);
      std::string a3 = "--metrics_port=" + std::to_string(metrics_port_);
      ::execl(bin.c_str(), bin.c_str(), a1.c_str(), "--rpc_address=127.0.0.1",
              "--enable_http_metadata_server=true", a2.c_str(),
              "--http_metadata_server_host=127.0.0.1", a3.c_str(), "--metrics_host=127.0.0.1",
              static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) {
      if (port_accepts(rpc_port_) && port_accepts(http_port_)) return "";
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return "mooncake_master exited at start (see " + dir_ + "/master.log)";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "mooncake_master did not listen within 30 s (see " + dir_ + "/master.log)";
  }

  void stop() {
    if (pid_ <= 0 || ::getpid() != owner_) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && ::waitpid(pid_, nullptr, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string master() const { return "127.0.0.1:" + std::to_string(rpc_port_); }
  std::string metadata_server() const {
    return "http://127.0.0.1:" + std::to_string(http_port_) + "/metadata";
  }
  // The master's HTTP admin port (/metrics, /query_key?key=...: where a key's replicas are).
  int metrics_port() const { return metrics_port_; }

 private:
  pid_t pid_ = 0, owner_ = 0;
  int rpc_port_ = 0, http_port_ = 0, metrics_port_ = 0;
  std::string dir_;
};

}  // namespace omniconn::testing

// Helpers for tests that run producers and consumers in real child processes.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "omniconn/connector.h"
#include "omniconn/payload.h"
#include "omniconn/registry.h"

namespace omniconn::testing {

// In a child process: print and exit non-zero.
#define CHILD_CHECK(cond)                                                                 \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "child %d: check failed at %s:%d: %s\n", ::getpid(), __FILE__, \
                   __LINE__, #cond);                                                      \
      std::_Exit(1);                                                                      \
    }                                                                                     \
  } while (0)

#define CHILD_OK(expr)                                                                        \
  do {                                                                                        \
    auto&& _r = (expr);                                                                       \
    if (!_r.ok()) {                                                                           \
      std::fprintf(stderr, "child %d: %s failed at %s:%d: %s\n", ::getpid(), #expr, __FILE__, \
                   __LINE__, omniconn::testing::status_of(_r).ToString().c_str());            \
      std::_Exit(1);                                                                          \
    }                                                                                         \
  } while (0)

inline const Status& status_of(const Status& s) {
  return s;
}
template <typename T>
const Status& status_of(const Result<T>& r) {
  return r.status();
}

// Runs fn in a forked child; the child exits with fn's return value.
inline pid_t spawn(const std::function<int()>& fn) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) std::_Exit(fn());
  return pid;
}

// Waits for the child; kills it after `timeout`. Returns its exit code, or 128+signal.
inline int wait_child(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return 999;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// A pipe carrying length-prefixed messages between processes.
class MsgPipe {
 public:
  MsgPipe() {
    if (::pipe(fds_) != 0) std::abort();
  }
  ~MsgPipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void write(const std::string& s) const {
    std::string frame(4 + s.size(), '\0');
    uint32_t n = static_cast<uint32_t>(s.size());
    std::memcpy(frame.data(), &n, 4);
    std::memcpy(frame.data() + 4, s.data(), s.size());
    write_all(frame.data(), frame.size());
  }
  bool read(std::string* s) const {
    uint32_t n = 0;
    if (!read_all(&n, 4)) return false;
    s->resize(n);
    return read_all(s->data(), n);
  }

 private:
  void write_all(const char* p, size_t n) const {
    while (n > 0) {
      ssize_t w = ::write(fds_[1], p, n);
      if (w <= 0) std::abort();
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  bool read_all(void* dst, size_t n) const {
    char* p = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t r = ::read(fds_[0], p, n);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int fds_[2];
};

// Deterministic content: 8-byte words (seq << 40 | index), tail bytes from the same stream.
inline void fill_pattern(std::byte* dst, size_t n, uint64_t seq) {
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t v = (seq << 40) ^ i;
    std::memcpy(dst + i * 8, &v, 8);
  }
  for (size_t i = words * 8; i < n; ++i) dst[i] = static_cast<std::byte>((seq + i) & 0xFF);
}

inline bool check_pattern(const std::byte* src, size_t n, uint64_t seq) {
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t v;
    std::memcpy(&v, src + i * 8, 8);
    if (v != ((seq << 40) ^ i)) return false;
  }
  for (size_t i = words * 8; i < n; ++i) {
    if (src[i] != static_cast<std::byte>((seq + i) & 0xFF)) return false;
  }
  return true;
}

// A payload with one u8 tensor "data" of `n` bytes and fields {"seq": seq}.
struct TestPayload {
  std::vector<std::byte> data;
  PayloadBuilder builder;

  TestPayload(size_t n, uint64_t seq) : data(n) {
    fill_pattern(data.data(), n, seq);
    (void)builder.add_tensor("data", DType::kU8, {static_cast<int64_t>(n)},
                             n ? data.data() : nullptr);
    Value::Map fields;
    fields.emplace("seq", Value(static_cast<int64_t>(seq)));
    (void)builder.set_fields(Value(std::move(fields)));
  }
};

// Checks a received TestPayload; returns an empty string or what is wrong.
inline std::string verify_payload(const PayloadView& view, size_t n, uint64_t seq) {
  const PayloadReader& r = view.reader();
  const TensorView* t = r.find("data");
  if (t == nullptr) return "no tensor 'data'";
  if (t->data.size() != n) return "size " + std::to_string(t->data.size());
  if (reinterpret_cast<uintptr_t>(t->data.data()) % 64 != 0) return "tensor not 64-byte aligned";
  auto fields = r.fields();
  if (!fields.ok()) return fields.status().ToString();
  const Value* s = fields->find("seq");
  if (s == nullptr || s->as_int() != static_cast<int64_t>(seq)) return "wrong seq";
  if (!check_pattern(t->data.data(), n, seq)) return "content mismatch";
  return "";
}

inline std::string unique_namespace(const char* test) {
  return std::string(test) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

}  // namespace omniconn::testing

// Mooncake's transfer engine through omniconn's loader and TeEngine: a missing library is
// named with how to provide it; two processes on loopback push and pull bytes between their
// registered pools (pieces in flight at once, content checked on both sides); a transfer to
// a peer that died fails with a typed error before its deadline.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mooncake/mooncake_env.h"
#include "mooncake/te_engine.h"

namespace omniconn::testing {
namespace {

using mooncake::TeEngine;
using namespace std::chrono_literals;

constexpr size_t kPool = size_t{64} << 20;
constexpr size_t kPushed = (size_t{20} << 20) + 123;  // 5 pieces of 4 MiB, the last short
constexpr size_t kPulledAt = size_t{32} << 20, kPulled = size_t{6} << 20;

std::string te_library() {
  const char* env = std::getenv("MOONCAKE_TE_LIBRARY");
  std::string p = env ? env : "/opt/mooncake/lib/libtransfer_engine.so";
  return is_file(p) ? p : "";
}

std::string te_skip_reason() {
#ifdef OMNICONN_SANITIZED
  return "sanitizer build: the installed Mooncake library is not instrumented";
#endif
  if (te_library().empty()) {
    return "no libtransfer_engine.so (set MOONCAKE_TE_LIBRARY or install it under "
           "/opt/mooncake/lib; docs/mooncake.md says how to build it)";
  }
  return "";
}

uint8_t byte_at(size_t i, uint8_t seed) {
  return static_cast<uint8_t>((i * 131 + (i >> 12) * 7 + seed) & 0xff);
}

void fill(uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = byte_at(i, seed);
}

// The first index in [0, n) where p differs from seed's pattern, or n.
size_t first_mismatch(const uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != byte_at(i, seed)) return i;
  }
  return n;
}

uint8_t* pool() {
  void* p = ::mmap(nullptr, kPool, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

// The peer: an engine with a pool of seed 0xB0 pattern; says "segment address" on `out`, waits
// for one byte on `in`, then exits 0 when the parent's pushed bytes are intact (else 1-3).
[[noreturn]] void peer(int out, int in) {
  auto api = mooncake::load_te_api(te_library());
  if (!api.ok()) std::_Exit(2);
  auto engine = TeEngine::open(*api, "127.0.0.1", "tcp");
  uint8_t* p = pool();
  if (!engine.ok() || p == nullptr) std::_Exit(2);
  fill(p, kPool, 0xB0);
  if (!(*engine)->register_memory(p, kPool).ok()) std::_Exit(3);
  std::string hello =
      (*engine)->segment_name() + " " + std::to_string(reinterpret_cast<uintptr_t>(p)) + "\n";
  if (::write(out, hello.data(), hello.size()) != static_cast<ssize_t>(hello.size())) {
    std::_Exit(2);
  }
  char go = 0;
  if (::read(in, &go, 1) != 1) std::_Exit(2);
  std::_Exit(first_mismatch(p, kPushed, 0xA0) == kPushed ? 0 : 1);
}

struct Peer {
  pid_t pid = -1;
  int from = -1, to = -1;  // its hello; our go
  std::string segment;
  uint64_t base = 0;
};

Peer start_peer() {
  int up[2], down[2];
  Peer s;
  if (::pipe(up) != 0 || ::pipe(down) != 0) return s;
  s.pid = ::fork();
  if (s.pid == 0) {
    ::close(up[0]);
    ::close(down[1]);
    peer(up[1], down[0]);
  }
  ::close(up[1]);
  ::close(down[0]);
  s.from = up[0];
  s.to = down[1];
  char buf[256] = {};
  size_t n = 0;
  auto end = std::chrono::steady_clock::now() + 30s;
  while (n < sizeof buf - 1 && std::strchr(buf, '\n') == nullptr &&
         std::chrono::steady_clock::now() < end) {
    ssize_t r = ::read(s.from, buf + n, sizeof buf - 1 - n);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  char name[200] = {};
  unsigned long long base = 0;
  if (std::sscanf(buf, "%199s %llu", name, &base) == 2) {
    s.segment = name;
    s.base = base;
  }
  return s;
}

int finish(Peer& s) {
  char go = 1;
  (void)!::write(s.to, &go, 1);
  int status = 0;
  ::waitpid(s.pid, &status, 0);
  ::close(s.from);
  ::close(s.to);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(TransferEngine, MissingLibraryIsNamedWithTheFix) {
  auto api = mooncake::load_te_api("/nonexistent/libtransfer_engine.so");
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), StatusCode::kUnavailable);
  const std::string& m = api.status().message();
  EXPECT_NE(m.find("'/nonexistent/libtransfer_engine.so' (from extra.library)"), std::string::npos)
      << m;
  EXPECT_NE(m.find("MOONCAKE_TE_LIBRARY"), std::string::npos) << m;
}

TEST(TransferEngine, PushAndPullBetweenTwoProcesses) {
  if (std::string why = te_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  Peer s = start_peer();  // forked before this process starts any engine
  ASSERT_FALSE(s.segment.empty()) << "the peer did not start its engine";
  auto api = mooncake::load_te_api(te_library());
  ASSERT_TRUE(api.ok()) << api.status().ToString();
  auto engine = TeEngine::open(*api, "127.0.0.1", "tcp");
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  uint8_t* p = pool();
  ASSERT_NE(p, nullptr);
  fill(p, kPushed, 0xA0);
  ASSERT_TRUE((*engine)->register_memory(p, kPool).ok());
  auto seg = (*engine)->open_segment(s.segment);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();

  auto t_push = std::chrono::steady_clock::now();
  Status pushed =
      (*engine)->transfer(mooncake::kTeWrite, *seg, p, s.base, kPushed, deadline_in(30s));
  double push_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_push).count();
  EXPECT_TRUE(pushed.ok()) << pushed.ToString();
  std::printf("pushed %zu bytes in 5 pieces in %.2f ms (%.2f GB/s, first use of the connection)\n",
              kPushed, push_s * 1e3, static_cast<double>(kPushed) / push_s / 1e9);
  Status pulled = (*engine)->transfer(mooncake::kTeRead, *seg, p + kPulledAt, s.base + kPulledAt,
                                      kPulled, deadline_in(30s), size_t{1} << 20);
  EXPECT_TRUE(pulled.ok()) << pulled.ToString();
  // What came back is the peer's pattern at that offset.
  size_t bad = kPulled;
  for (size_t i = 0; i < kPulled; ++i) {
    if (p[kPulledAt + i] != byte_at(kPulledAt + i, 0xB0)) {
      bad = i;
      break;
    }
  }
  EXPECT_EQ(bad, kPulled) << "pulled bytes differ from byte " << bad;
  EXPECT_EQ(finish(s), 0) << "the peer found the pushed bytes changed";

  // The peer is gone: a transfer to it fails, typed, before its deadline.
  auto t0 = std::chrono::steady_clock::now();
  Status dead =
      (*engine)->transfer(mooncake::kTeWrite, *seg, p, s.base, size_t{1} << 20, deadline_in(5s));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(dead.ok());
  EXPECT_TRUE(dead.code() == StatusCode::kUnavailable || dead.code() == StatusCode::kTimeout)
      << dead.ToString();
  EXPECT_LT(took, 10s) << dead.ToString();
  std::printf(
      "to the dead peer: %s after %lld ms\n", dead.ToString().c_str(),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
}

}  // namespace
}  // namespace omniconn::testing

// The transfer engine's side of mooncake_hosts_bench: on each host one engine (P2P handshake,
// TCP) and a registered pool; the peer's pool opened by its segment name and address. A round
// moves N bytes between the pools: "raw" is one request through the C API, polled; "pieced" is
// omniconn's TeEngine::transfer (4 MiB pieces in flight at once).
#pragma once

#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "bench_common.h"
#include "mooncake/mooncake_env.h"
#include "mooncake/te_engine.h"

namespace ocbench {

// libtransfer_engine.so: $MOONCAKE_TE_LIBRARY, else /opt/mooncake/lib. "" when absent.
inline std::string te_library() {
  const char* env = std::getenv("MOONCAKE_TE_LIBRARY");
  std::string p = env ? env : "/opt/mooncake/lib/libtransfer_engine.so";
  return omniconn::testing::is_file(p) ? p : "";
}

struct TeSide {
  std::shared_ptr<const omniconn::mooncake::TeApi> api;
  std::unique_ptr<omniconn::mooncake::TeEngine> engine;
  void* pool = nullptr;
  size_t size = 0;
  int32_t peer = -1;
  uint64_t peer_base = 0;

  std::string init(const std::string& host, size_t n) {
    auto a = omniconn::mooncake::load_te_api(te_library());
    if (!a.ok()) return a.status().ToString();
    api = *a;
    auto e = omniconn::mooncake::TeEngine::open(api, host, "tcp");
    if (!e.ok()) return e.status().ToString();
    engine = std::move(*e);
    pool = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pool == MAP_FAILED) return "mmap of the pool failed";
    size = n;
    std::memset(pool, 0x5a, n);  // faulted in, like the store's registered buffers
    omniconn::Status s = engine->register_memory(pool, n);
    return s.ok() ? "" : s.ToString();
  }

  // One request of n bytes through the C API, polled to the end; its rc and time.
  std::string raw(int opcode, size_t n) {
    using namespace omniconn::mooncake;
    void* e = engine->handle();
    int64_t t0 = now_ns();
    uint64_t batch = api->allocate_batch(e, 1);
    TeRequest r{opcode, pool, peer, peer_base, n};
    int rc = api->submit(e, batch, &r, 1);
    TeStatusWord st{};
    while (rc == 0) {
      api->status(e, batch, 0, &st);
      if (st.status != kTeWaiting && st.status != kTePending) break;
    }
    int64_t dt = now_ns() - t0;
    api->free_batch(e, batch);
    return strf("%d %lld", rc == 0 && st.status == kTeCompleted ? 0 : -1,
                static_cast<long long>(dt));
  }

  std::string pieced(int opcode, size_t n) {
    int64_t t0 = now_ns();
    omniconn::Status s = engine->transfer(opcode, peer, pool, peer_base, n,
                                          omniconn::deadline_in(std::chrono::seconds(60)));
    return strf("%d %lld", s.ok() ? 0 : -1, static_cast<long long>(now_ns() - t0));
  }

  // "where" -> "NAME BASE"; "open NAME BASE"; "raw write|read N"; "pieced write|read N".
  std::string serve(const std::string& q) {
    char a[200] = {}, b[200] = {};
    unsigned long long x = 0;
    if (q == "where") {
      return engine->segment_name() + " " + std::to_string(reinterpret_cast<uintptr_t>(pool));
    }
    if (std::sscanf(q.c_str(), "open %199s %llu", a, &x) == 2) {
      auto seg = engine->open_segment(a);
      if (!seg.ok()) return seg.status().ToString();
      peer = *seg;
      peer_base = x;
      return "";
    }
    if (std::sscanf(q.c_str(), "%199s %199s %llu", a, b, &x) != 3 || x > size) return "bad: " + q;
    int op = std::string(b) == "write" ? omniconn::mooncake::kTeWrite : omniconn::mooncake::kTeRead;
    return std::string(a) == "raw" ? raw(op, x) : pieced(op, x);
  }
};

}  // namespace ocbench

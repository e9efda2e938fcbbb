// mooncake_bench: MooncakeConnector against Mooncake's raw Store C API (put_from / get_into of
// registered memory, then remove) on the same store, sizes and machine, in the same run.
//
// The bench starts two mooncake_masters on loopback ports (one per pair, so that one pair's
// objects never land in the other's memory), then four processes forked before any of them
// touches Mooncake: a writer and a reader for the raw API, and a writer and a reader for
// omniconn. Writers contribute the segment and readers none, so every payload lives in its
// writer's memory and crosses TCP once, on the fetch, for both kinds alike. Rounds alternate raw /
// omniconn for every iteration, so both see the same machine noise. A round is: the writer stores
// one payload (timed), the reader fetches it and the key is removed (timed). omniconn's writer is
// timed on two paths: `loan` (the payload is built in registered memory, as the raw writer's buffer
// already is: commit is timed) and `put` (copied from the caller's memory: the whole put is timed).
//
//   mooncake_bench [--sizes 1M,4M,16M,64M] [--iters N] [--json FILE]
// Needs MOONCAKE_STORE_LIBRARY (or /opt/mooncake/lib) and mooncake_master (or /opt/mooncake/bin).
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "mooncake/mooncake_api.h"
#include "mooncake/mooncake_env.h"

namespace {

using namespace ocbench;
using namespace omniconn;
namespace mc = omniconn::mooncake;
using json = nlohmann::json;

constexpr mc::ReplicateConfig kPinned{1, 0, 1, nullptr, 0};

struct Setup {
  std::string library, master, metadata;
  size_t max_size;
};

// A child process driven over two pipes: one request line in, one reply line out.
class Worker {
 public:
  template <typename Fn>
  explicit Worker(Fn fn) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::close(in[1]);
      ::close(out[0]);
      FILE* rd = ::fdopen(in[0], "r");
      FILE* wr = ::fdopen(out[1], "w");
      char line[1 << 16];
      while (std::fgets(line, sizeof line, rd) != nullptr) {
        std::string reply = fn(std::string(line, std::strlen(line) - 1));
        std::fprintf(wr, "%s\n", reply.c_str());
        std::fflush(wr);
      }
      std::_Exit(0);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = ::fdopen(in[1], "w");
    from_ = ::fdopen(out[0], "r");
  }
  ~Worker() {
    std::fclose(to_);
    std::fclose(from_);
    ::waitpid(pid_, nullptr, 0);
  }
  std::string call(const std::string& request) {
    std::fprintf(to_, "%s\n", request.c_str());
    std::fflush(to_);
    char line[1 << 16];
    if (std::fgets(line, sizeof line, from_) == nullptr) return "error worker died";
    return std::string(line, std::strlen(line) - 1);
  }

 private:
  pid_t pid_ = 0;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) out += {d[c >> 4], d[c & 15]};
  return out;
}
std::string unhex(const std::string& s) {
  std::string out;
  for (size_t i = 0; i + 1 < s.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(s.substr(i, 2), nullptr, 16)));
  return out;
}

// ---- raw C API ------------------------------------------------------------------------------

struct RawSide {
  std::shared_ptr<const mc::Api> api;
  mc::store_t store = nullptr;
  std::byte* buf = nullptr;

  std::string init(const Setup& s, uint64_t segment) {
    auto a = mc::load_api(s.library);
    if (!a.ok()) return a.status().ToString();
    api = *a;
    ::setenv("MC_TCP_BIND_ADDRESS", "127.0.0.1", 0);
    ::setenv("MC_LOG_LEVEL", "WARNING", 0);
    store = api->create();
    int rc = api->setup(store, "127.0.0.1", s.metadata.c_str(), segment, 16 * kMiB, "tcp", "",
                        s.master.c_str());
    if (rc != 0) return "setup " + mc::code_name(rc);
    buf = static_cast<std::byte*>(std::aligned_alloc(4096, s.max_size));
    std::memset(buf, 0x5a, s.max_size);
    rc = api->register_buffer(store, buf, s.max_size);
    return rc == 0 ? "" : "register_buffer " + mc::code_name(rc);
  }
};

std::string raw_writer(RawSide& w, const std::string& req) {  // "put <key> <size>"
  char key[256];
  size_t n = 0;
  std::sscanf(req.c_str(), "put %255s %zu", key, &n);
  int64_t t0 = now_ns();
  int rc = w.api->put_from(w.store, key, w.buf, n, &kPinned);
  return strf("%d %lld", rc, static_cast<long long>(now_ns() - t0));
}

std::string raw_reader(RawSide& r, const std::string& req) {  // "get <key> <size>"
  char key[256];
  size_t n = 0;
  std::sscanf(req.c_str(), "get %255s %zu", key, &n);
  int64_t t0 = now_ns();
  int64_t got = r.api->get_into(r.store, key, r.buf, n);
  int rc = r.api->remove(r.store, key, 1);
  int64_t dt = now_ns() - t0;
  return strf("%d %lld", got == static_cast<int64_t>(n) ? rc : -1, static_cast<long long>(dt));
}

// ---- omniconn ------------------------------------------------------------------------------

std::unique_ptr<Connector> omniconn_side(const Setup& s, uint64_t segment, std::string* err) {
  Value::Map m;
  m.emplace("library", Value(s.library));
  m.emplace("master", Value(s.master));
  m.emplace("metadata_server", Value(s.metadata));
  m.emplace("host", Value("127.0.0.1"));
  m.emplace("segment", Value(static_cast<int64_t>(segment)));
  m.emplace("localbuf", Value(static_cast<int64_t>(2 * s.max_size + 16 * kMiB)));
  m.emplace("namespace", Value("bench"));
  auto c = create_connector({"MooncakeConnector", Value(std::move(m))});
  if (!c.ok()) {
    *err = c.status().ToString();
    return nullptr;
  }
  return std::move(*c);
}

std::string oc_writer(Connector& c, const std::vector<std::byte>& src, const std::string& req) {
  char mode[16], rid[128];
  size_t n = 0;
  std::sscanf(req.c_str(), "%15s %127s %zu", mode, rid, &n);
  PayloadBuilder b;
  (void)b.add_tensor("data", DType::kU8, {static_cast<int64_t>(n)},
                     std::string(mode) == "put" ? src.data() : nullptr);
  PayloadKey key{rid, "0", "1"};
  auto deadline = deadline_in(std::chrono::seconds(30));
  Result<Descriptor> d = Status::Internal("unset");
  int64_t t0 = 0;
  if (std::string(mode) == "put") {
    t0 = now_ns();
    d = c.put(key, b, deadline);
  } else {
    auto loan = c.loan(b.encoded_size(), deadline);
    if (!loan.ok()) return "error " + loan.status().ToString();
    (void)b.write_layout(loan->bytes());
    auto data = mutable_tensor_data(loan->bytes(), 0);
    std::memcpy(data->data(), src.data(), n);  // the producer's own fill: not timed
    t0 = now_ns();
    d = c.commit(std::move(*loan), key, deadline);
  }
  int64_t dt = now_ns() - t0;
  if (!d.ok()) return "error " + d.status().ToString();
  return strf("0 %lld %s", static_cast<long long>(dt), hex(d->bytes).c_str());
}

std::string oc_reader(Connector& c, const std::string& req) {  // "get <hex descriptor>"
  Descriptor d{unhex(req.substr(4))};
  int64_t t0 = now_ns();
  auto v = c.get(d, deadline_in(std::chrono::seconds(30)));
  if (!v.ok()) return "error " + v.status().ToString();
  v->release();
  return strf("0 %lld", static_cast<long long>(now_ns() - t0));
}

// ---- the run --------------------------------------------------------------------------------

int64_t field_ns(const std::string& reply, bool* ok) {
  long long rc = 0, ns = 0;
  *ok = *ok && std::sscanf(reply.c_str(), "%lld %lld", &rc, &ns) == 2 && rc == 0;
  if (!*ok) std::fprintf(stderr, "mooncake_bench: %s\n", reply.c_str());
  return ns;
}

double median_ms(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : static_cast<double>(v[v.size() / 2]) / 1e6;
}

int run(const std::vector<size_t>& sizes, int iters, const std::string& json_path) {
  std::string why = omniconn::testing::mooncake_skip_reason();
  if (!why.empty()) {
    std::printf("mooncake_bench: skipped: %s\n", why.c_str());
    return 0;
  }
  omniconn::testing::MooncakeMaster raw_master, oc_master;
  for (auto* m : {&raw_master, &oc_master}) {
    if (std::string err = m->start(); !err.empty()) {
      std::fprintf(stderr, "mooncake_bench: %s\n", err.c_str());
      return 1;
    }
  }
  size_t max_size = *std::max_element(sizes.begin(), sizes.end()) + 64 * kKiB;
  Setup s{omniconn::testing::mooncake_library(), raw_master.master(), raw_master.metadata_server(),
          max_size};
  Setup so{s.library, oc_master.master(), oc_master.metadata_server(), max_size};
  const uint64_t segment = (4 * s.max_size + 64 * kMiB) / (4 * kMiB) * (4 * kMiB);
  std::vector<std::byte> src(s.max_size, std::byte{0x5a});

  RawSide rw, rr;
  std::unique_ptr<Connector> cw, cr;
  Worker raw_w([&](const std::string& q) {
    if (q == "init") return rw.init(s, segment);
    return raw_writer(rw, q);
  });
  Worker raw_r([&](const std::string& q) {
    if (q == "init") return rr.init(s, 0);
    return raw_reader(rr, q);
  });
  Worker oc_w([&](const std::string& q) {
    std::string err;
    if (q == "init") return (cw = omniconn_side(so, segment, &err)) ? std::string() : err;
    return oc_writer(*cw, src, q);
  });
  Worker oc_r([&](const std::string& q) {
    std::string err;
    if (q == "init") return (cr = omniconn_side(so, 0, &err)) ? std::string() : err;
    return oc_reader(*cr, q);
  });
  for (Worker* w : {&raw_w, &raw_r, &oc_w, &oc_r}) {
    if (std::string err = w->call("init"); !err.empty()) {
      std::fprintf(stderr, "mooncake_bench: init: %s\n", err.c_str());
      return 1;
    }
  }

  std::printf("MooncakeConnector vs the raw Store C API, TCP on loopback, load %s\n",
              load_average().c_str());
  std::printf("%8s  %-14s %10s %10s %10s %8s %12s %9s %9s\n", "size", "path", "store ms",
              "fetch ms", "total ms", "GB/s", "vs raw", "p99 ms", "p99.9 ms");
  json rows = json::array();
  bool ok = true;
  int round = 0;
  for (size_t n : sizes) {
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<int64_t>>> t;
    for (int i = 0; i < iters + 2 && ok; ++i) {
      bool warm = i >= 2;
      std::string key = strf("bench/raw-%d", round++);
      auto put = raw_w.call(strf("put %s %zu", key.c_str(), n));
      int64_t p = field_ns(put, &ok);
      int64_t g = field_ns(raw_r.call(strf("get %s %zu", key.c_str(), n)), &ok);
      if (warm) t["raw C API"].first.push_back(p), t["raw C API"].second.push_back(g);
      for (const char* mode : {"loan", "put"}) {
        std::string rep = oc_w.call(strf("%s r%d %zu", mode, round++, n));
        long long rc = -1, ns = 0;
        char hexd[1 << 15] = {0};
        ok = ok && std::sscanf(rep.c_str(), "%lld %lld %32767s", &rc, &ns, hexd) == 3 && rc == 0;
        if (!ok) std::fprintf(stderr, "mooncake_bench: %s\n", rep.c_str());
        int64_t gg = field_ns(oc_r.call(std::string("get ") + hexd), &ok);
        std::string path = std::string("omniconn ") + mode;
        if (warm) t[path].first.push_back(ns), t[path].second.push_back(gg);
      }
    }
    if (!ok) return 1;
    double raw_total = median_ms(t["raw C API"].first) + median_ms(t["raw C API"].second);
    for (const char* path : {"raw C API", "omniconn loan", "omniconn put"}) {
      double st = median_ms(t[path].first), fe = median_ms(t[path].second), total = st + fe;
      double ratio = raw_total / total;
      // Tail of store + fetch, round by round (nearest rank over `iters` rounds).
      std::vector<int64_t> totals;
      for (size_t k = 0; k < t[path].first.size(); ++k) {
        totals.push_back(t[path].first[k] + t[path].second[k]);
      }
      const LatencyStats tail = summarize_ns(totals);
      std::printf("%8s  %-14s %10.3f %10.3f %10.3f %8.2f %11.2fx %9.3f %9.3f\n",
                  format_size(n).c_str(), path, st, fe, total,
                  static_cast<double>(n) / (total * 1e6), ratio, tail.p99_us / 1e3,
                  tail.p999_us / 1e3);
      rows.push_back({{"bytes", n},
                      {"path", path},
                      {"store_ms", st},
                      {"fetch_ms", fe},
                      {"total_ms", total},
                      {"total_p99_ms", tail.p99_us / 1e3},
                      {"total_p999_ms", tail.p999_us / 1e3},
                      {"ratio_vs_raw", ratio},
                      {"iters", iters}});
    }
  }
  std::printf("target: omniconn loan >= 0.9x raw at 16-64 MiB (throughput of store + fetch)\n");
  if (!json_path.empty()) std::ofstream(json_path) << json{{"rows", rows}}.dump(1) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes = {1 * kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB};
  int iters = 15;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iters" && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--sizes" && i + 1 < argc) {
      auto parsed = parse_size_list(argv[++i], 1);
      if (!parsed.ok()) {
        std::fprintf(stderr, "mooncake_bench: --sizes: %s\n", parsed.status().ToString().c_str());
        return 64;
      }
      sizes = *parsed;
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::printf("usage: mooncake_bench [--sizes 1M,4M,16M,64M] [--iters N] [--json FILE]\n");
      return a == "--help" ? 0 : 64;
    }
  }
  return run(sizes, iters, json_path);
}

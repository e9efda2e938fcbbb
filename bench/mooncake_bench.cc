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

#include "mooncake/mooncake_env.h"
#include "mooncake_sides.h"

namespace {

using namespace ocbench;
using namespace omniconn;
using json = nlohmann::json;

// ---- the run --------------------------------------------------------------------------------

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

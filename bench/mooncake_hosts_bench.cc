// mooncake_hosts_bench: a payload from host A to host B through Mooncake, three ways in the same
// run: the raw Store C API (put_from on A into A's segment, get_into on B: the bytes cross on the
// get), and MooncakeConnector with the master's placement and with preferred placement (B's
// reader announces its segment, A's put places the replica there: the bytes cross on the put,
// and B's get is a local copy). Timed: the store (put / commit of a loan), the reader-visible get
// (get and remove), and their sum, round by round, the three ways alternating.
//
// In the same rounds, when libtransfer_engine.so is found: Mooncake's transfer engine between a
// pool on A and one on B, no store (the baseline of the MooncakeTransferEngineConnector): A
// pushes (write) and B pulls (read), as one request through the C API and as TeEngine's 4 MiB
// pieces in flight at once.
//
// Hosts are network namespaces that already exist (bench/two_hosts_bench.sh makes them and
// starts three mooncake_masters inside A, one per way: rpc port 50051 + i, HTTP metadata port
// 8080 + i, so one way's objects never land in another's segments). Each worker process enters
// its host's namespace before it touches Mooncake.
//
//   mooncake_hosts_bench --ns-a NS --ns-b NS --a ADDR --b ADDR [--sizes 1M,16M,64M]
//                        [--iters N] [--json FILE]
#include <fcntl.h>
#include <sched.h>

#include <array>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "mooncake/mooncake_connector.h"
#include "mooncake/mooncake_env.h"
#include "mooncake_sides.h"
#include "te_side.h"

namespace {

using namespace ocbench;
using namespace omniconn;
using json = nlohmann::json;

struct Hosts {
  std::string ns_a, ns_b, a, b;
};

// Moves this (single-threaded) process into the named network namespace.
std::string enter(const std::string& ns) {
  int fd = ::open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open /var/run/netns/" + ns + ": " + std::strerror(errno);
  int rc = ::setns(fd, CLONE_NEWNET);
  ::close(fd);
  return rc == 0 ? "" : "setns " + ns + ": " + std::strerror(errno);
}

// Way i's master, on A.
Setup setup_of(const Hosts& h, int way, const std::string& host, size_t max_size) {
  return {omniconn::testing::mooncake_library(), strf("%s:%d", h.a.c_str(), 50051 + way),
          strf("http://%s:%d/metadata", h.a.c_str(), 8080 + way), max_size, host};
}

const char* kWays[] = {"raw C API", "omniconn, master's placement", "omniconn, preferred"};

struct Times {
  std::vector<int64_t> store, get;
};

void print_row(size_t n, const char* way, const Times& t, const Times& raw, json* rows) {
  // The total is the median of each round's store + get, not the sum of the medians: with the
  // master's placement a round's replica lands on A or on B, and the halves do not add up.
  auto totals = [](const Times& x) {
    std::vector<int64_t> v;
    for (size_t k = 0; k < x.store.size(); ++k) v.push_back(x.store[k] + x.get[k]);
    return v;
  };
  const double st = median_ms(t.store), ge = median_ms(t.get), total = median_ms(totals(t));
  const double e2e = median_ms(totals(raw)) / total, get_ratio = median_ms(raw.get) / ge;
  const LatencyStats tail = summarize_ns(totals(t));
  std::printf("%8s  %-30s %9.3f %9.3f %9.3f %7.2f %8.2fx %8.2fx %9.3f\n", format_size(n).c_str(),
              way, st, ge, total, static_cast<double>(n) / (total * 1e6), e2e, get_ratio,
              tail.p99_us / 1e3);
  rows->push_back({{"bytes", n},
                   {"path", way},
                   {"store_ms", st},
                   {"get_ms", ge},
                   {"total_ms", total},
                   {"total_p99_ms", tail.p99_us / 1e3},
                   {"e2e_vs_raw", e2e},
                   {"get_vs_raw", get_ratio},
                   {"iters", t.store.size()}});
}

// One round of the omniconn way through writer w and reader r; false on an error.
bool oc_round(Worker& w, Worker& r, int round, size_t n, Times* t) {
  std::string rep = w.call(strf("loan r%d %zu", round, n));
  long long rc = -1, ns = 0;
  static char hexd[1 << 15];
  hexd[0] = 0;
  if (std::sscanf(rep.c_str(), "%lld %lld %32767s", &rc, &ns, hexd) != 3 || rc != 0) {
    std::fprintf(stderr, "mooncake_hosts_bench: %s\n", rep.c_str());
    return false;
  }
  bool ok = true;
  int64_t g = field_ns(r.call(std::string("get ") + hexd), &ok);
  if (ok) t->store.push_back(ns), t->get.push_back(g);
  return ok;
}

// The transfer engine's four ways, A's engine and B's engine each in a worker.
const char* kTeWays[] = {"push (A writes), one request", "pull (B reads), one request",
                         "push, 4 MiB pieces", "pull, 4 MiB pieces"};

struct TeWays {
  std::string why_not;  // "" when measured
  std::unique_ptr<Worker> a, b;
  std::map<size_t, std::array<std::vector<int64_t>, 4>> t;  // per size, per way

  // Opens each side's view of the other's pool; false (with why_not) when it cannot run.
  bool connect() {
    std::string wa = a->call("where"), wb = b->call("where");
    std::string ea = a->call("open " + wb), eb = b->call("open " + wa);
    why_not = !ea.empty() ? ea : eb;
    return why_not.empty();
  }

  bool round(size_t n, bool keep) {
    const char* q[4] = {"raw write", "raw read", "pieced write", "pieced read"};
    for (int k = 0; k < 4; ++k) {
      bool ok = true;
      int64_t ns = field_ns((k % 2 == 0 ? a : b)->call(strf("%s %zu", q[k], n)), &ok);
      if (!ok) return false;
      if (keep) t[n][k].push_back(ns);
    }
    return true;
  }

  // The rows of one size against the raw store's end to end (put_from + get_into).
  void print(size_t n, double store_total_ms, json* rows) {
    for (int k = 0; k < 4; ++k) {
      const std::vector<int64_t>& v = t[n][k];
      const double m = median_ms(v);
      const LatencyStats tail = summarize_ns(v);
      std::printf("%8s  %-30s %9.3f %7.2f %9.3f %12.2fx\n", format_size(n).c_str(), kTeWays[k], m,
                  static_cast<double>(n) / (m * 1e6), tail.p99_us / 1e3, store_total_ms / m);
      rows->push_back({{"bytes", n},
                       {"path", kTeWays[k]},
                       {"ms", m},
                       {"p99_ms", tail.p99_us / 1e3},
                       {"vs_store_raw", store_total_ms / m},
                       {"iters", v.size()}});
    }
  }
};

int run(const Hosts& h, const std::vector<size_t>& sizes, int iters, const std::string& json_path) {
  if (std::string why = omniconn::testing::mooncake_skip_reason(); !why.empty()) {
    std::printf("mooncake_hosts_bench: skipped: %s\n", why.c_str());
    return 0;
  }
  const size_t max_size = *std::max_element(sizes.begin(), sizes.end()) + 64 * kKiB;
  const uint64_t segment = (4 * max_size + 64 * kMiB) / (4 * kMiB) * (4 * kMiB);
  std::vector<std::byte> src(max_size, std::byte{0x5a});
  RawSide rw, rr;
  std::unique_ptr<Connector> cw[2], cr[2];
  Worker raw_w([&](const std::string& q) {
    if (q != "init") return raw_writer(rw, q);
    std::string e = enter(h.ns_a);
    return e.empty() ? rw.init(setup_of(h, 0, h.a, max_size), segment) : e;
  });
  Worker raw_r([&](const std::string& q) {  // no segment: the replica stays on A
    if (q != "init") return raw_reader(rr, q);
    std::string e = enter(h.ns_b);
    return e.empty() ? rr.init(setup_of(h, 0, h.b, max_size), 0) : e;
  });
  auto oc_w = [&](int i) {
    return [&, i](const std::string& q) {
      if (q == "placement") {
        auto c = mooncake::placement_counts(*cw[i]);
        return strf("%llu preferred, %llu fallback, %llu plain",
                    static_cast<unsigned long long>(c->preferred),
                    static_cast<unsigned long long>(c->fallback),
                    static_cast<unsigned long long>(c->plain));
      }
      if (q != "init") return oc_writer(*cw[i], src, q);
      std::string e = enter(h.ns_a);
      if (!e.empty()) return e;
      Value::Map x;
      x.emplace("preferred_placement", Value(i == 1));
      cw[i] = omniconn_side(setup_of(h, i + 1, h.a, max_size), segment, &e, std::move(x));
      return e;
    };
  };
  auto oc_r = [&](int i) {
    return [&, i](const std::string& q) {
      if (q != "init") return oc_reader(*cr[i], q);
      std::string e = enter(h.ns_b);
      if (!e.empty()) return e;
      Value::Map x;
      x.emplace("preferred_placement", Value(i == 1));
      cr[i] = omniconn_side(setup_of(h, i + 1, h.b, max_size), segment, &e, std::move(x));
      if (cr[i] == nullptr) return e;
      // The edge's receiver opens on the first recv (nothing comes: a timeout) and, with
      // preferred placement, announces B's segment for edge 0->1.
      auto none = cr[i]->recv("0", "1", deadline_in(std::chrono::milliseconds(300)));
      if (!none.ok() && none.status().code() != StatusCode::kTimeout) {
        return none.status().ToString();
      }
      return std::string();
    };
  };
  Worker w0(oc_w(0)), r0(oc_r(0)), w1(oc_w(1)), r1(oc_r(1));
  Worker* oc[2][2] = {{&w0, &r0}, {&w1, &r1}};
  TeWays te;
  te.why_not = te_library().empty() ? "no libtransfer_engine.so (MOONCAKE_TE_LIBRARY)" : "";
  auto te_side = [&](const std::string& ns, const std::string& host) {
    auto side = std::make_shared<TeSide>();
    return [side, ns, host, max_size](const std::string& q) {
      if (q != "init") return side->serve(q);
      std::string e = enter(ns);
      return e.empty() ? side->init(host, max_size) : e;
    };
  };
  if (te.why_not.empty()) {  // forked before any engine starts in this process (none does)
    te.a = std::make_unique<Worker>(te_side(h.ns_a, h.a));
    te.b = std::make_unique<Worker>(te_side(h.ns_b, h.b));
  }
  for (Worker* w : {&raw_w, &raw_r, &w0, &r0, &w1, &r1}) {
    if (std::string err = w->call("init"); !err.empty()) {
      std::fprintf(stderr, "mooncake_hosts_bench: init: %s\n", err.c_str());
      return 1;
    }
  }
  if (te.why_not.empty()) {
    std::string ea = te.a->call("init"), eb = te.b->call("init");
    te.why_not = !ea.empty() ? ea : eb;
    if (te.why_not.empty()) te.connect();
  }
  std::printf("Mooncake from host A (%s) to host B (%s), TCP over a veth pair, load %s\n",
              h.a.c_str(), h.b.c_str(), load_average().c_str());
  std::printf("%8s  %-30s %9s %9s %9s %7s %9s %9s %9s\n", "size", "way", "store ms", "get ms",
              "total ms", "GB/s", "e2e/raw", "get/raw", "p99 ms");
  json rows = json::array(), te_rows = json::array();
  std::vector<double> store_raw_ms;  // per size, for the transfer engine's table
  int round = 0;
  for (size_t n : sizes) {
    Times t[3];
    for (int i = 0; i < iters + 2; ++i) {
      Times* sink = i >= 2 ? t : nullptr;  // two warm-up rounds
      Times scratch[3];
      Times* dst = sink ? sink : scratch;
      std::string key = strf("bench/raw-%d", round++);
      bool ok = true;
      int64_t p = field_ns(raw_w.call(strf("put %s %zu", key.c_str(), n)), &ok);
      int64_t g = field_ns(raw_r.call(strf("get %s %zu", key.c_str(), n)), &ok);
      if (!ok) return 1;
      dst[0].store.push_back(p), dst[0].get.push_back(g);
      for (int k = 0; k < 2; ++k) {
        if (!oc_round(*oc[k][0], *oc[k][1], round++, n, &dst[k + 1])) return 1;
      }
      if (te.why_not.empty() && !te.round(n, sink != nullptr)) return 1;
    }
    for (int k = 0; k < 3; ++k) print_row(n, kWays[k], t[k], t[0], &rows);
    std::vector<int64_t> raw_total;
    for (size_t k = 0; k < t[0].store.size(); ++k) raw_total.push_back(t[0].store[k] + t[0].get[k]);
    store_raw_ms.push_back(median_ms(raw_total));
  }
  if (te.why_not.empty()) {
    std::printf("\nTransfer engine from A to B, no store (P2P handshake, TCP), same rounds\n");
    std::printf("%8s  %-30s %9s %7s %9s %13s\n", "size", "way", "ms", "GB/s", "p99 ms",
                "store raw/this");
    for (size_t i = 0; i < sizes.size(); ++i) te.print(sizes[i], store_raw_ms[i], &te_rows);
  } else {
    std::printf("transfer engine: skipped: %s\n", te.why_not.c_str());
  }
  std::string placed[2] = {w0.call("placement"), w1.call("placement")};
  std::printf("puts named a segment: master's placement %s; preferred %s\n", placed[0].c_str(),
              placed[1].c_str());
  std::printf(
      "targets: omniconn end to end >= 0.9x raw; preferred get >= 5x raw get at 16-64 "
      "MiB\n");
  if (!json_path.empty()) {
    std::ofstream(json_path) << json{{"rows", rows},
                                     {"te_rows", te_rows},
                                     {"te_skipped", te.why_not},
                                     {"placement_master", placed[0]},
                                     {"placement_preferred", placed[1]}}
                                    .dump(1)
                             << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes = {1 * kMiB, 16 * kMiB, 64 * kMiB};
  int iters = 10;
  std::string json_path;
  Hosts h;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string* str = a == "--ns-a"   ? &h.ns_a
                       : a == "--ns-b" ? &h.ns_b
                       : a == "--a"    ? &h.a
                       : a == "--b"    ? &h.b
                       : a == "--json" ? &json_path
                                       : nullptr;
    if (str != nullptr && i + 1 < argc) {
      *str = argv[++i];
    } else if (a == "--iters" && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--sizes" && i + 1 < argc) {
      auto parsed = parse_size_list(argv[++i], 1);
      if (!parsed.ok()) {
        std::fprintf(stderr, "mooncake_hosts_bench: --sizes: %s\n",
                     parsed.status().ToString().c_str());
        return 64;
      }
      sizes = *parsed;
    } else {
      std::printf(
          "usage: mooncake_hosts_bench --ns-a NS --ns-b NS --a ADDR --b ADDR "
          "[--sizes 1M,16M,64M] [--iters N] [--json FILE]\n"
          "  (bench/two_hosts_bench.sh makes the hosts and starts the masters)\n");
      return a == "--help" ? 0 : 64;
    }
  }
  if (h.ns_a.empty() || h.ns_b.empty() || h.a.empty() || h.b.empty()) {
    std::fprintf(stderr, "mooncake_hosts_bench: --ns-a, --ns-b, --a and --b are required\n");
    return 64;
  }
  return run(h, sizes, iters, json_path);
}

// What the Mooncake benchmarks share: worker processes driven over pipes, and the two sides of a
// transfer, raw (Mooncake's Store C API on registered memory) and omniconn (MooncakeConnector).
#pragma once

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "bench_common.h"
#include "mooncake/mooncake_api.h"

namespace ocbench {

namespace mc = omniconn::mooncake;

// Replica count 1, soft-pinned: what the raw writer puts with.
inline constexpr mc::ReplicateConfig kPinned{1, 0, 1, nullptr, 0};

struct Setup {
  std::string library, master, metadata;
  size_t max_size = 0;
  std::string host = "127.0.0.1";  // this side's address (its segment's and TCP's)
};

// A child process driven over two pipes: one request line in, one reply line out. It is forked
// before the caller touches Mooncake, so that each child has a store client of its own.
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
      serve(::fdopen(in[0], "r"), ::fdopen(out[1], "w"), fn);
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
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  std::string call(const std::string& request) {
    std::fprintf(to_, "%s\n", request.c_str());
    std::fflush(to_);
    char line[1 << 16];
    if (std::fgets(line, sizeof line, from_) == nullptr) return "error worker died";
    return std::string(line, std::strlen(line) - 1);
  }

 private:
  template <typename Fn>
  [[noreturn]] static void serve(FILE* rd, FILE* wr, Fn& fn) {
    char line[1 << 16];
    while (std::fgets(line, sizeof line, rd) != nullptr) {
      std::string reply = fn(std::string(line, std::strlen(line) - 1));
      std::fprintf(wr, "%s\n", reply.c_str());
      std::fflush(wr);
    }
    std::_Exit(0);
  }

  pid_t pid_ = 0;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

inline std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) out += {d[c >> 4], d[c & 15]};
  return out;
}
inline std::string unhex(const std::string& s) {
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
    ::setenv("MC_TCP_BIND_ADDRESS", s.host.c_str(), 0);
    ::setenv("MC_LOG_LEVEL", "WARNING", 0);
    store = api->create();
    int rc = api->setup(store, s.host.c_str(), s.metadata.c_str(), segment, 16 * kMiB, "tcp", "",
                        s.master.c_str());
    if (rc != 0) return "setup " + mc::code_name(rc);
    buf = static_cast<std::byte*>(std::aligned_alloc(4096, s.max_size));
    std::memset(buf, 0x5a, s.max_size);
    rc = api->register_buffer(store, buf, s.max_size);
    return rc == 0 ? "" : "register_buffer " + mc::code_name(rc);
  }
};

inline std::string raw_writer(RawSide& w, const std::string& req) {  // "put <key> <size>"
  char key[256];
  size_t n = 0;
  std::sscanf(req.c_str(), "put %255s %zu", key, &n);
  int64_t t0 = now_ns();
  int rc = w.api->put_from(w.store, key, w.buf, n, &kPinned);
  return strf("%d %lld", rc, static_cast<long long>(now_ns() - t0));
}

inline std::string raw_reader(RawSide& r, const std::string& req) {  // "get <key> <size>"
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

// A MooncakeConnector of `segment` bytes with a local buffer for two of the largest payloads;
// `extra` adds keys (e.g. preferred_placement).
inline std::unique_ptr<omniconn::Connector> omniconn_side(const Setup& s, uint64_t segment,
                                                          std::string* err,
                                                          omniconn::Value::Map extra = {}) {
  using omniconn::Value;
  extra.emplace("library", Value(s.library));
  extra.emplace("master", Value(s.master));
  extra.emplace("metadata_server", Value(s.metadata));
  extra.emplace("host", Value(s.host));
  extra.emplace("segment", Value(static_cast<int64_t>(segment)));
  extra.emplace("localbuf", Value(static_cast<int64_t>(2 * s.max_size + 16 * kMiB)));
  extra.emplace("namespace", Value("bench"));
  auto c = omniconn::create_connector({"MooncakeConnector", Value(std::move(extra))});
  if (!c.ok()) {
    *err = c.status().ToString();
    return nullptr;
  }
  return std::move(*c);
}

// "loan|put <request id> <size>": stores one payload from edge 0 to 1; replies
// "0 <ns> <hex descriptor>", timing commit (loan: built in registered memory) or the whole put.
inline std::string oc_writer(omniconn::Connector& c, const std::vector<std::byte>& src,
                             const std::string& req) {
  using namespace omniconn;
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

inline std::string oc_reader(omniconn::Connector& c, const std::string& req) {  // "get <hex>"
  omniconn::Descriptor d{unhex(req.substr(4))};
  int64_t t0 = now_ns();
  auto v = c.get(d, omniconn::deadline_in(std::chrono::seconds(30)));
  if (!v.ok()) return "error " + v.status().ToString();
  v->release();
  return strf("0 %lld", static_cast<long long>(now_ns() - t0));
}

// A reply's "<rc> <ns>": the nanoseconds, with *ok cleared (and the reply printed) on an error.
inline int64_t field_ns(const std::string& reply, bool* ok) {
  long long rc = 0, ns = 0;
  *ok = *ok && std::sscanf(reply.c_str(), "%lld %lld", &rc, &ns) == 2 && rc == 0;
  if (!*ok) std::fprintf(stderr, "mooncake bench: %s\n", reply.c_str());
  return ns;
}

inline double median_ms(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : static_cast<double>(v[v.size() / 2]) / 1e6;
}

}  // namespace ocbench

// crash_harness (issue 8): random SIGKILLs of a producer, a consumer or a pipeline stage at random
// points mid-transfer, seeded and bounded in time. After every kill, with every child reaped, it
// checks that nothing leaked (the harness's own fds and memfd mappings, leftover processes, memfds
// and omniconn sockets held by any process of the trial, /dev/shm), that the surviving parties'
// calls returned an error before their deadlines, and that every payload delivered verified
// (content pattern + data checksum). Exit 0 only when all N kills ran with zero leaks, hangs,
// corrupt deliveries and other failures.
//
//   crash_harness [--kills N] [--seed S] [--time-limit SECONDS] [--json FILE] [--verbose]
//                 [--config pipeline.yaml]
//
// Scenarios (one per kill, picked by the seeded RNG):
//   producer  SharedMemoryConnector channel mode, producer child -> consumer child on one edge;
//             the producer is killed. The consumer's recv must end with unavailable/timeout
//             before its deadline; everything it received must verify.
//   consumer  the same, the consumer is killed. The producer's sends must succeed or fail
//             before their deadline; a new consumer then connects to the same edge and drains
//             it; the producer's in_flight/in_use must drop back to 0 (reclaim).
//   stage     run_pipeline on the Qwen2.5-Omni config (smaller tokens, endless requests) in a
//             child; one stage process (a grandchild) is killed. The run must fail within a
//             bound, naming that stage, with no stage process left.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "omniconn/config.h"
#include "omniconn/connector.h"
#include "omniconn/payload.h"
#include "omniconn/runtime.h"
#include "omniconn/shm_connector.h"
#include "runtime/runtime_internal.h"
#include "shm/shm_os.h"  // edge_socket_name: the names whose sockets must be gone after a trial
#include "test_util.h"   // TestPayload, verify_payload

#ifndef OMNICONN_SOURCE_DIR
#define OMNICONN_SOURCE_DIR "."
#endif

namespace {

using namespace std::chrono_literals;
using omniconn::Clock;
using omniconn::Deadline;
using omniconn::deadline_in;
using omniconn::PayloadKey;
using omniconn::PayloadReader;
using omniconn::PayloadView;
using omniconn::Status;
using omniconn::StatusCode;
using omniconn::testing::TestPayload;
using omniconn::testing::verify_payload;
using Json = nlohmann::json;

// Deadlines of the surviving parties, and the slack allowed past them (2 cores, sanitizers).
constexpr auto kRecvDeadline = 5s;
constexpr auto kSendDeadline = 2s;
constexpr auto kMargin = 3s;
constexpr auto kRunBound = 10s;  // stage killed -> run_pipeline returned
constexpr uint64_t kEndSeq = 0xFFFFFF;
constexpr size_t kMaxPayload = size_t{8} << 20;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

uint64_t mix64(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Size of payload `seq` of a stream: a third inline-sized (64 B .. 64 KiB), the rest through
// shared memory (64 KiB .. 8 MiB), log-uniform. Producer and consumer both compute it.
size_t payload_size(uint64_t stream_seed, uint64_t seq) {
  if (seq == kEndSeq) return 64;
  uint64_t h = mix64(stream_seed ^ mix64(seq));
  double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  double lg = (h % 3 == 0) ? 6.0 + u * 10.0 : 16.0 + u * 7.0;
  return std::clamp<size_t>(static_cast<size_t>(std::exp2(lg)), 64, kMaxPayload);
}

// ---------------------------------------------------------------------------------------------
// Pipes between the harness and its children: line-oriented, read with a deadline.

std::vector<int> g_pipe_fds;  // every pipe end the harness holds

// --inject KIND: plant one fault of that kind in the first trial, to show that the checks
// catch it (fd, child, memfd, devshm, corrupt). Never used by the ctest.
std::string g_inject;

struct Chan {
  int r = -1, w = -1;
  static Chan make() {
    int f[2];
    if (::pipe2(f, O_CLOEXEC) != 0) {
      std::perror("pipe2");
      std::exit(2);
    }
    g_pipe_fds.push_back(f[0]);
    g_pipe_fds.push_back(f[1]);
    return Chan{f[0], f[1]};
  }
};

void close_fd(int* fd) {
  if (*fd < 0) return;
  ::close(*fd);
  std::erase(g_pipe_fds, *fd);
  *fd = -1;
}

using omniconn::runtime::write_line;  // the runtime's own line writer (EINTR-safe)

class LineIn {
 public:
  explicit LineIn(int fd = -1) : fd_(fd) {}
  // 1: a line; 0: none before the deadline; -1: end of file.
  int next(std::string* line, Deadline deadline) {
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        *line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return 1;
      }
      if (eof_ || fd_ < 0) return -1;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      int ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000));
      pollfd p{fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, ms);
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) {
        if (Clock::now() >= deadline) return 0;
        continue;
      }
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

// "report a=1 b=2 msg=free text" -> {report:"", a:"1", b:"2", msg:"free text"}
std::map<std::string, std::string> parse_kv(const std::string& line) {
  std::map<std::string, std::string> kv;
  std::istringstream in(line);
  std::string tok;
  while (in >> tok) {
    if (tok.rfind("msg=", 0) == 0) {
      std::string rest;
      std::getline(in, rest);
      kv["msg"] = tok.substr(4) + rest;
      break;
    }
    auto eq = tok.find('=');
    if (eq == std::string::npos) {
      kv[tok] = "";
    } else {
      kv[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
  }
  return kv;
}

std::string kv_str(const std::map<std::string, std::string>& kv, const std::string& k) {
  auto it = kv.find(k);
  return it == kv.end() ? std::string() : it->second;
}

int64_t kv_int(const std::map<std::string, std::string>& kv, const std::string& k,
               int64_t def = -1) {
  auto it = kv.find(k);
  if (it == kv.end() || it->second.empty()) return def;
  return std::strtoll(it->second.c_str(), nullptr, 10);
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// ---------------------------------------------------------------------------------------------
// Processes.

int64_t start_time_of(int pid) {  // /proc/<pid>/stat field 22; -1 when gone
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  std::istringstream in(s.substr(rp + 2));
  std::string tok;
  for (int field = 3; in >> tok; ++field) {
    if (field == 22) return std::strtoll(tok.c_str(), nullptr, 10);
  }
  return -1;
}

char state_of(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  return rp == std::string::npos || rp + 2 >= s.size() ? '?' : s[rp + 2];
}

// Forks a child that keeps only `keep` of the harness's pipe ends and dies with the harness.
pid_t spawn_child(std::vector<int> keep, const std::function<int()>& body) {
  std::fflush(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(2);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) std::_Exit(99);
    for (int fd : g_pipe_fds) {
      if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
    }
    g_pipe_fds.clear();
    std::_Exit(body());
  }
  return pid;
}

// Waits for `pid` until `deadline`; on timeout kills and reaps it. Returns the wait status, or
// nullopt when it had to be killed.
std::optional<int> reap(pid_t pid, Deadline deadline) {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return status;  // already reaped
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(2ms);
  }
}

// ---------------------------------------------------------------------------------------------
// The producer and consumer children (SharedMemoryConnector channel mode on edge 0 -> 1).

struct StreamCfg {
  uint64_t seed = 0;
  std::string name_space;
  size_t arena_bytes = 0;
};

std::unique_ptr<omniconn::Connector> make_connector(const StreamCfg& cfg, int out_fd) {
  omniconn::ShmOptions o;
  o.name_space = cfg.name_space;
  o.arena_bytes = cfg.arena_bytes;
  auto c = omniconn::make_shm_connector(o);
  if (!c.ok()) {
    write_line(out_fd, "report setup_error=1 msg=" + one_line(c.status().ToString()));
    return nullptr;
  }
  return std::move(*c);
}

// Streams payloads until told "stop" on ctl_fd (or killed). Then sends the end marker, waits
// for its in_flight to drain and reports.
int producer_main(const StreamCfg& cfg, int ctl_fd, int out_fd) {
  auto conn = make_connector(cfg, out_fd);
  if (!conn) return 2;
  LineIn ctl(ctl_fd);
  int64_t ok = 0, failed = 0, late = 0;
  double max_ms = 0;
  std::map<int, int64_t> codes;
  bool started = false;
  const auto give_up = Clock::now() + 120s;  // never outlive a lost harness for long
  auto send_one = [&](uint64_t seq) {
    TestPayload p(payload_size(cfg.seed, seq), seq);
    p.builder.set_checksum_data(true);
    if (g_inject == "corrupt" && seq % 16 == 5) p.data[p.data.size() / 2] ^= std::byte{1};
    auto t0 = Clock::now();
    Status st = conn->send(PayloadKey{"r" + std::to_string(seq), "0", "1"}, p.builder,
                           deadline_in(kSendDeadline));
    double ms = ms_since(t0);
    max_ms = std::max(max_ms, ms);
    if (ms > std::chrono::duration<double, std::milli>(kSendDeadline + kMargin).count()) ++late;
    if (st.ok()) {
      ++ok;
    } else {
      ++failed;
      ++codes[static_cast<int>(st.code())];
    }
    return st;
  };
  std::string line;
  for (uint64_t seq = 0; seq < kEndSeq && Clock::now() < give_up; ++seq) {
    if (ctl_fd >= 0 && ctl.next(&line, Clock::now()) != 0) break;  // "stop" or harness gone
    Status st = send_one(seq);
    if (st.ok() && !started) {
      write_line(out_fd, "started");
      started = true;
    }
  }
  // The end marker: retried while the consumer catches up.
  bool end = false;
  for (auto until = Clock::now() + 10s; !end && Clock::now() < until;) {
    end = send_one(kEndSeq).ok();
  }
  // Every payload written must come back: released by the reader, or reclaimed from a dead one.
  (void)conn->sweep(deadline_in(1s));
  omniconn::Metrics m = conn->metrics();
  for (auto until = Clock::now() + 5s; m.in_flight > 0 && Clock::now() < until;) {
    std::this_thread::sleep_for(5ms);
    (void)conn->sweep(deadline_in(1s));
    m = conn->metrics();
  }
  std::string codes_s;
  for (auto [c, n] : codes) codes_s += std::to_string(c) + ":" + std::to_string(n) + ",";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "report ok=%lld failed=%lld late=%lld max_ms=%.0f end=%d in_flight=%llu "
                "in_use=%llu reclaimed=%llu codes=%s",
                static_cast<long long>(ok), static_cast<long long>(failed),
                static_cast<long long>(late), max_ms, end ? 1 : 0,
                static_cast<unsigned long long>(m.in_flight),
                static_cast<unsigned long long>(m.in_use_bytes),
                static_cast<unsigned long long>(m.reclaimed), codes_s.c_str());
  write_line(out_fd, buf);
  return 0;
}

// Checks one delivered payload: strict reopen (header + data checksum), key, seq, size, content.
std::string check_delivery(const PayloadView& view, uint64_t stream_seed, uint64_t* seq_out) {
  auto strict = PayloadReader::open(view.bytes(), omniconn::ReadOptions{true});
  if (!strict.ok()) return "checksum: " + strict.status().ToString();
  if (!strict->has_data_checksum()) return "payload carries no data checksum";
  auto fields = view.reader().fields();
  if (!fields.ok()) return "fields: " + fields.status().ToString();
  const omniconn::Value* s = fields->find("seq");
  if (s == nullptr || !s->as_int() || *s->as_int() < 0) return "no seq field";
  auto seq = static_cast<uint64_t>(*s->as_int());
  *seq_out = seq;
  if (view.key().request_id != "r" + std::to_string(seq)) {
    return "key " + view.key().request_id + " carries seq " + std::to_string(seq);
  }
  return verify_payload(view, payload_size(stream_seed, seq), seq);
}

// Receives until the end marker or an error; reports counts and how the last call ended.
int consumer_main(const StreamCfg& cfg, int out_fd) {
  auto conn = make_connector(cfg, out_fd);
  if (!conn) return 2;
  int64_t received = 0, corrupt = 0;
  uint64_t last_seq = 0;
  bool have_last = false;
  double max_ok_ms = 0;
  for (;;) {
    auto t0 = Clock::now();
    auto view = conn->recv("0", "1", deadline_in(kRecvDeadline));
    double ms = ms_since(t0);
    if (!view.ok()) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "report end=0 received=%lld corrupt=%lld code=%d last_ms=%.0f ",
                    static_cast<long long>(received), static_cast<long long>(corrupt),
                    static_cast<int>(view.status().code()), ms);
      write_line(out_fd, buf + ("msg=" + one_line(view.status().ToString())));
      return 0;
    }
    max_ok_ms = std::max(max_ok_ms, ms);
    uint64_t seq = 0;
    std::string bad = check_delivery(*view, cfg.seed, &seq);
    if (bad.empty() && have_last && seq <= last_seq) {
      bad = "seq " + std::to_string(seq) + " after " + std::to_string(last_seq);
    }
    if (!bad.empty()) {
      // One line per corrupt delivery, at once: that is how the count of a consumer that is
      // killed later still reaches the harness (capped so the pipe never fills).
      if (++corrupt <= 1000) write_line(out_fd, "corrupt msg=" + one_line(bad));
    }
    view->release();
    if (received == 0) write_line(out_fd, "first");
    ++received;
    last_seq = seq;
    have_last = true;
    if (seq == kEndSeq && bad.empty()) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "report end=1 received=%lld corrupt=%lld code=0 last_ms=%.0f",
                    static_cast<long long>(received), static_cast<long long>(corrupt), max_ok_ms);
      write_line(out_fd, buf);
      return 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Leak checks.

std::set<std::string> list_dir(const std::string& path) {
  std::set<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.insert(n);
    }
    ::closedir(d);
  }
  return names;
}

std::string read_link(const std::string& path) {
  char buf[512];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

std::map<int, std::string> own_fds() {
  std::map<int, std::string> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  int self = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != self) fds[fd] = read_link(std::string("/proc/self/fd/") + e->d_name);
  }
  ::closedir(d);
  return fds;
}

int count_map_lines(const std::string& maps_path, const char* needle) {
  std::ifstream f(maps_path);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

std::vector<int> own_children() {
  std::vector<int> kids;
  for (const std::string& tid : list_dir("/proc/self/task")) {
    std::ifstream f("/proc/self/task/" + tid + "/children");
    int pid;
    while (f >> pid) kids.push_back(pid);
  }
  return kids;
}

// /proc/net/unix entries whose (abstract) name mentions omniconn: inode -> name.
std::map<uint64_t, std::string> omniconn_unix_sockets() {
  std::map<uint64_t, std::string> out;
  std::ifstream f("/proc/net/unix");
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string num, refs, proto, flags, type, st, path;
    uint64_t inode = 0;
    in >> num >> refs >> proto >> flags >> type >> st >> inode >> path;
    if (path.find("omniconn") != std::string::npos) out[inode] = path;
  }
  return out;
}

struct ProcScan {
  std::map<int, int> ppid;
  std::map<uint64_t, std::set<int>> socket_holders;  // inode -> pids
  std::vector<std::pair<int, std::string>> memfds;   // (pid, link) of memfd:omniconn* fds
};

ProcScan scan_procs() {
  ProcScan s;
  for (const std::string& name : list_dir("/proc")) {
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    int pid = std::atoi(name.c_str());
    {
      std::ifstream f("/proc/" + name + "/stat");
      std::string st((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      auto rp = st.rfind(')');
      if (rp == std::string::npos) continue;
      std::istringstream in(st.substr(rp + 2));
      char state;
      int pp = 0;
      in >> state >> pp;
      s.ppid[pid] = pp;
    }
    std::string dir = "/proc/" + name + "/fd";
    for (const std::string& fd : list_dir(dir)) {
      std::string link = read_link(dir + "/" + fd);
      if (link.rfind("socket:[", 0) == 0) {
        s.socket_holders[std::strtoull(link.c_str() + 8, nullptr, 10)].insert(pid);
      } else if (link.find("memfd:omniconn") != std::string::npos) {
        s.memfds.emplace_back(pid, link);
      }
    }
  }
  return s;
}

bool descends_from(const ProcScan& s, int pid, int root) {
  for (int i = 0; i < 64 && pid > 1; ++i) {
    auto it = s.ppid.find(pid);
    if (it == s.ppid.end()) return false;
    if (it->second == root) return true;
    pid = it->second;
  }
  return false;
}

struct Baseline {
  std::map<int, std::string> fds;
  int memfd_maps = 0;
  std::set<std::string> dev_shm;
};

struct TrialPid {
  int pid;
  int64_t start_time;
  std::string role;
};

struct TrialRecord {
  int index = 0;
  std::string scenario;
  int64_t delay_ms = 0;
  std::string outcome;  // short, one line
  std::vector<std::string> leaks, hangs, corrupt, failures;
  int64_t delivered = 0;       // payloads delivered and verified
  double error_after_ms = -1;  // kill -> surviving party's error / run end
  double took_ms = 0;
  // Things the leak check needs to know.
  std::vector<TrialPid> pids;
  std::vector<std::string> socket_names;  // abstract names ("@omniconn...") that must be gone
  std::map<uint64_t, std::string> sockets_before;
};

void note_pid(TrialRecord* t, int pid, const std::string& role) {
  t->pids.push_back(TrialPid{pid, start_time_of(pid), role});
}

std::string abstract_name(const std::string& raw) {  // "\0omniconn..." -> "@omniconn..."
  return raw.empty() || raw[0] != '\0' ? raw : "@" + raw.substr(1);
}

std::vector<std::string> find_leaks(const Baseline& base, const TrialRecord& t) {
  std::vector<std::string> leaks;
  const int self = ::getpid();
  auto fds = own_fds();
  if (fds != base.fds) {
    std::string d;
    for (auto& [fd, target] : fds) {
      auto it = base.fds.find(fd);
      if (it == base.fds.end() || it->second != target)
        d += " " + std::to_string(fd) + "->" + target;
    }
    leaks.push_back("harness fds changed (" + std::to_string(base.fds.size()) + " -> " +
                    std::to_string(fds.size()) + "):" + d);
  }
  int memfd_maps = count_map_lines("/proc/self/maps", "memfd:");
  if (memfd_maps != base.memfd_maps) {
    leaks.push_back("harness memfd mappings " + std::to_string(base.memfd_maps) + " -> " +
                    std::to_string(memfd_maps));
  }
  for (int kid : own_children()) {
    leaks.push_back("leftover child process " + std::to_string(kid) + " (state " +
                    std::string(1, state_of(kid)) + ")");
  }
  for (const TrialPid& p : t.pids) {
    if (::kill(p.pid, 0) == 0 && start_time_of(p.pid) == p.start_time) {
      leaks.push_back(p.role + " pid " + std::to_string(p.pid) + " still exists (state " +
                      std::string(1, state_of(p.pid)) + ")");
    }
  }
  for (const std::string& n : list_dir("/dev/shm")) {
    if (!base.dev_shm.contains(n)) leaks.push_back("new /dev/shm entry " + n);
  }
  ProcScan scan = scan_procs();
  auto ours = [&](int pid) {
    if (pid == self || descends_from(scan, pid, self)) return true;
    for (const TrialPid& p : t.pids) {
      if (p.pid == pid && start_time_of(pid) == p.start_time) return true;
    }
    return false;
  };
  for (auto& [pid, link] : scan.memfds) {
    if (ours(pid)) leaks.push_back("pid " + std::to_string(pid) + " holds " + link);
  }
  for (auto& [pid, pp] : scan.ppid) {
    if (pid != self && ours(pid) &&
        count_map_lines("/proc/" + std::to_string(pid) + "/maps", "memfd:omniconn") > 0) {
      leaks.push_back("pid " + std::to_string(pid) + " maps an omniconn memfd");
    }
  }
  auto sockets = omniconn_unix_sockets();
  for (auto& [inode, name] : sockets) {
    bool ours_by_name =
        std::find(t.socket_names.begin(), t.socket_names.end(), name) != t.socket_names.end();
    bool is_new = !t.sockets_before.contains(inode);
    auto h = scan.socket_holders.find(inode);
    bool held_by_ours = false, held_by_other = false;
    if (h != scan.socket_holders.end()) {
      for (int pid : h->second) (ours(pid) ? held_by_ours : held_by_other) = true;
    }
    // A new omniconn socket held only by processes of other sessions (a concurrent test
    // run) is not ours; one of our names, or one held by a process of this trial, is.
    if (ours_by_name || held_by_ours) {
      leaks.push_back("socket " + name + " (inode " + std::to_string(inode) + ", " +
                      (is_new ? "new" : "old") + (held_by_other ? ", also held elsewhere" : "") +
                      ") still exists");
    }
  }
  return leaks;
}

// Leak check with a short grace for the kernel to finish tearing down what a reaped process
// held (it normally has by the time waitpid returns).
std::vector<std::string> check_after_trial(const Baseline& base, const TrialRecord& t) {
  // Adopted orphans (the harness is a child subreaper) are leftovers of the trial: reap them.
  std::vector<std::string> leaks;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r <= 0) break;
    leaks.push_back("orphaned descendant " + std::to_string(r) +
                    " outlived its parent (adopted by the harness)");
  }
  std::vector<std::string> now;
  for (int i = 0; i < 10; ++i) {
    now = find_leaks(base, t);
    if (now.empty()) break;
    std::this_thread::sleep_for(100ms);
  }
  leaks.insert(leaks.end(), now.begin(), now.end());
  // Leave nothing running into the next trial.
  for (int kid : own_children()) {
    ::kill(kid, SIGKILL);
    ::waitpid(kid, nullptr, 0);
  }
  return leaks;
}

// A party that survives the kill must end cleanly (exit 0): a sanitizer report or a crash
// there is a failure of the trial. Records a hang when it had to be killed.
void reap_survivor(TrialRecord* t, pid_t pid, const std::string& who, Deadline deadline) {
  auto status = reap(pid, deadline);
  if (!status) {
    t->hangs.push_back(who + " did not exit");
  } else if (WIFSIGNALED(*status)) {
    t->failures.push_back(who + " died of signal " + std::to_string(WTERMSIG(*status)));
  } else if (WEXITSTATUS(*status) != 0) {
    t->failures.push_back(who + " exited with status " + std::to_string(WEXITSTATUS(*status)));
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

struct Rng {
  uint64_t state;
  uint64_t next() { return state = mix64(state); }
  uint64_t below(uint64_t n) { return next() % n; }
};

const char* code_name(int64_t code) {
  switch (code) {
    case 0:
      return "ok";
    case 1:
      return "invalid_argument";
    case 2:
      return "not_found";
    case 3:
      return "timeout";
    case 4:
      return "resource_exhausted";
    case 5:
      return "corrupt";
    case 6:
      return "unavailable";
    case 7:
      return "cancelled";
    case 8:
      return "internal";
  }
  return "?";
}

struct ChildIo {
  pid_t pid = -1;
  Chan chan;
  LineIn in;
  std::vector<std::string> lines;

  // The first line starting with `prefix` (already read, or read before the deadline).
  std::optional<std::string> expect(const std::string& prefix, Deadline deadline) {
    for (const std::string& l : lines) {
      if (l.rfind(prefix, 0) == 0) return l;
    }
    std::string line;
    while (in.next(&line, deadline) == 1) {
      lines.push_back(line);
      if (line.rfind(prefix, 0) == 0) return line;
    }
    return std::nullopt;
  }
  // Reads whatever is left without waiting.
  void drain() {
    std::string line;
    while (in.next(&line, Clock::now()) == 1) lines.push_back(line);
  }
  void collect_corrupt(TrialRecord* t, const std::string& who) {
    drain();
    for (const std::string& l : lines) {
      if (l.rfind("corrupt", 0) == 0) t->corrupt.push_back(who + ": " + parse_kv(l)["msg"]);
    }
  }
  void close() {
    close_fd(&chan.r);
    close_fd(&chan.w);
  }
};

ChildIo start_stream_child(TrialRecord* t, const std::string& role,
                           const std::function<int(int out_fd)>& body,
                           std::vector<int> extra_keep = {}) {
  ChildIo c;
  c.chan = Chan::make();
  extra_keep.push_back(c.chan.w);
  int w = c.chan.w;
  c.pid = spawn_child(extra_keep, [&body, w] { return body(w); });
  close_fd(&c.chan.w);
  c.in = LineIn(c.chan.r);
  note_pid(t, c.pid, role);
  return c;
}

StreamCfg stream_cfg(Rng& rng, int trial) {
  StreamCfg cfg;
  cfg.seed = rng.next();
  cfg.name_space = "crash-" + std::to_string(::getpid()) + "-" + std::to_string(trial);
  // A small arena sends the largest payloads to dedicated segments; a larger one keeps them
  // in the arena.
  cfg.arena_bytes = rng.below(2) == 0 ? size_t{4} << 20 : size_t{32} << 20;
  return cfg;
}

void consumer_verdict(TrialRecord* t, const std::map<std::string, std::string>& kv, bool expect_end,
                      const std::string& who) {
  if (kv_int(kv, "setup_error", 0) != 0) {
    t->failures.push_back(who + " could not start: " + kv_str(kv, "msg"));
    return;
  }
  t->delivered += std::max<int64_t>(0, kv_int(kv, "received") - kv_int(kv, "corrupt", 0));
  int64_t code = kv_int(kv, "code");
  double last_ms = static_cast<double>(kv_int(kv, "last_ms"));
  if (expect_end) {
    if (kv_int(kv, "end") != 1) {
      t->failures.push_back(who + " did not reach the end marker: " + code_name(code) + " " +
                            kv_str(kv, "msg"));
    }
  } else if (code != static_cast<int>(StatusCode::kUnavailable) &&
             code != static_cast<int>(StatusCode::kTimeout)) {
    t->failures.push_back(who + " ended with " + code_name(code) +
                          " (want unavailable or timeout): " + kv_str(kv, "msg"));
  }
  if (last_ms > std::chrono::duration<double, std::milli>(kRecvDeadline + kMargin).count()) {
    t->hangs.push_back(who + " recv took " + std::to_string(static_cast<int64_t>(last_ms)) +
                       " ms (deadline " + std::to_string(kRecvDeadline.count()) + " s)");
  }
}

// (a) producer killed mid-stream.
void trial_kill_producer(TrialRecord* t, Rng& rng) {
  StreamCfg cfg = stream_cfg(rng, t->index);
  t->delay_ms = static_cast<int64_t>(rng.below(800));
  t->socket_names.push_back(
      abstract_name(omniconn::shm::edge_socket_name(cfg.name_space, "0", "1")));
  ChildIo cons = start_stream_child(t, "consumer", [&](int w) { return consumer_main(cfg, w); });
  ChildIo prod =
      start_stream_child(t, "producer", [&](int w) { return producer_main(cfg, -1, w); });
  if (!prod.expect("started", deadline_in(20s))) {
    t->failures.push_back("producer did not start streaming");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(t->delay_ms));
  ::kill(prod.pid, SIGKILL);
  auto killed_at = Clock::now();
  reap(prod.pid, deadline_in(5s));
  auto report = cons.expect("report", killed_at + kRecvDeadline + kMargin);
  if (!report) {
    t->hangs.push_back("consumer gave no answer " +
                       std::to_string((kRecvDeadline + kMargin).count()) +
                       " s after the producer died");
  } else {
    t->error_after_ms = ms_since(killed_at);
    auto kv = parse_kv(*report);
    consumer_verdict(t, kv, false, "consumer");
    t->outcome = "consumer: " + std::to_string(kv_int(kv, "received")) + " ok then " +
                 code_name(kv_int(kv, "code")) + " after " +
                 std::to_string(static_cast<int64_t>(t->error_after_ms)) + " ms";
  }
  reap_survivor(t, cons.pid, "consumer", deadline_in(3s));
  cons.collect_corrupt(t, "consumer");
  prod.close();
  cons.close();
}

// (b) consumer killed mid-stream; a new consumer takes over the edge.
void trial_kill_consumer(TrialRecord* t, Rng& rng) {
  StreamCfg cfg = stream_cfg(rng, t->index);
  t->delay_ms = static_cast<int64_t>(rng.below(800));
  // Mostly a short gap; one trial in four leaves the edge unread past the send deadline, so
  // that the producer's sends fail (resource exhausted) before the new consumer arrives.
  auto gap =
      std::chrono::milliseconds(rng.below(4) == 0 ? 2000 + rng.below(1500) : 50 + rng.below(300));
  t->socket_names.push_back(
      abstract_name(omniconn::shm::edge_socket_name(cfg.name_space, "0", "1")));
  Chan ctl = Chan::make();
  int ctl_r = ctl.r;
  ChildIo c1 = start_stream_child(t, "consumer", [&](int w) { return consumer_main(cfg, w); });
  ChildIo prod = start_stream_child(t, "producer",
                                    [&](int w) { return producer_main(cfg, ctl_r, w); }, {ctl_r});
  close_fd(&ctl.r);
  if (!prod.expect("started", deadline_in(20s))) {
    t->failures.push_back("producer did not start streaming");
  }
  c1.expect("first", deadline_in(5s));
  std::this_thread::sleep_for(std::chrono::milliseconds(t->delay_ms));
  ::kill(c1.pid, SIGKILL);
  reap(c1.pid, deadline_in(5s));
  c1.collect_corrupt(t, "killed consumer");
  std::this_thread::sleep_for(gap);  // the producer keeps sending with nobody reading
  ChildIo c2 = start_stream_child(t, "consumer2", [&](int w) { return consumer_main(cfg, w); });
  if (!c2.expect("first", deadline_in(kRecvDeadline + kMargin))) {
    t->failures.push_back("the new consumer received nothing");
  }
  write_line(ctl.w, "stop");
  auto stop_at = Clock::now();
  // In-progress send (2 s) + end marker (10 s) + drain (5 s).
  auto preport = prod.expect("report", stop_at + kSendDeadline + 15s + kMargin);
  if (!preport) {
    t->hangs.push_back("producer did not finish after stop");
  } else {
    auto kv = parse_kv(*preport);
    if (kv_int(kv, "setup_error", 0) != 0) {
      t->failures.push_back("producer could not start: " + kv["msg"]);
    } else {
      if (kv_int(kv, "late") != 0) {
        t->hangs.push_back(kv["late"] + " producer sends outlived their deadline (max " +
                           kv["max_ms"] + " ms)");
      }
      if (kv_int(kv, "end") != 1) t->failures.push_back("producer could not send the end marker");
      if (kv_int(kv, "in_flight") != 0 || kv_int(kv, "in_use") != 0) {
        t->leaks.push_back("producer in_flight " + kv["in_flight"] + ", in_use_bytes " +
                           kv["in_use"] + " 5 s after the last consumer finished (reclaimed " +
                           kv["reclaimed"] + ")");
      }
      t->outcome = "producer: " + kv["ok"] + " sent, " + kv["failed"] + " failed (" + kv["codes"] +
                   ") max " + kv["max_ms"] + " ms, reclaimed " + kv["reclaimed"] + ", in_flight " +
                   kv["in_flight"];
    }
  }
  auto creport = c2.expect("report", deadline_in(kRecvDeadline + kMargin));
  if (!creport) {
    t->hangs.push_back("new consumer gave no answer");
  } else {
    auto kv = parse_kv(*creport);
    consumer_verdict(t, kv, true, "new consumer");
    t->outcome += "; new consumer: " + kv["received"] + " ok";
  }
  reap_survivor(t, prod.pid, "producer", deadline_in(5s));
  reap_survivor(t, c2.pid, "new consumer", deadline_in(5s));
  c2.collect_corrupt(t, "new consumer");
  close_fd(&ctl.w);
  c1.close();
  c2.close();
  prod.close();
}

// (c) one stage of a running pipeline killed.
void trial_kill_stage(TrialRecord* t, Rng& rng, const omniconn::PipelineConfig& base) {
  omniconn::PipelineConfig config = base;
  std::string ns = "crash-" + std::to_string(::getpid()) + "-" + std::to_string(t->index);
  for (omniconn::EdgeConfig& e : config.edges) {
    if (e.spec.type != "SharedMemoryConnector") continue;
    if (e.spec.extra.is_nil()) e.spec.extra = omniconn::Value(omniconn::Value::Map{});
    if (auto* m = e.spec.extra.as_map()) m->insert_or_assign("namespace", omniconn::Value(ns));
    t->socket_names.push_back(abstract_name(omniconn::shm::edge_socket_name(ns, e.from, e.to)));
  }
  omniconn::RunOptions o;
  o.requests = 1'000'000'000;  // endless: only the kill ends it
  o.concurrency = 1 + static_cast<int64_t>(rng.below(8));
  o.workload.tokens = 16 + static_cast<int64_t>(rng.below(113));
  o.op_timeout_ms = 10000;
  size_t victim = rng.below(config.stages.size());
  t->delay_ms = static_cast<int64_t>(rng.below(1500));
  ChildIo orch = start_stream_child(t, "orchestrator", [&](int w) {
    std::vector<int> stage_pids;
    o.on_started = [w, &stage_pids](const std::vector<int>& pids) {
      stage_pids = pids;
      std::string line = "pids";
      for (int p : pids) line += " " + std::to_string(p);
      write_line(w, line);
    };
    auto report = omniconn::run_pipeline(config, o);
    int alive = 0;  // run_pipeline promises that all stage processes are gone when it returns
    for (int p : stage_pids) alive += ::kill(p, 0) == 0 ? 1 : 0;
    write_line(w, "report ok=" + std::to_string(report.ok() ? 1 : 0) +
                      " code=" + std::to_string(static_cast<int>(report.status().code())) +
                      " alive=" + std::to_string(alive) +
                      " msg=" + one_line(report.ok() ? "" : report.status().message()));
    return 0;
  });
  auto pids_line = orch.expect("pids", deadline_in(20s));
  std::vector<int> pids;
  if (pids_line) {
    std::istringstream in(pids_line->substr(4));
    int p;
    while (in >> p) pids.push_back(p);
  }
  if (pids.size() != config.stages.size()) {
    t->failures.push_back("the pipeline did not start its stages");
    ::kill(orch.pid, SIGKILL);
    reap(orch.pid, deadline_in(5s));
    orch.close();
    return;
  }
  for (size_t i = 0; i < pids.size(); ++i) note_pid(t, pids[i], "stage " + config.stages[i].id);
  std::this_thread::sleep_for(std::chrono::milliseconds(t->delay_ms));
  const int victim_pid = pids[victim];
  const std::string& victim_id = config.stages[victim].id;
  // A grandchild is not ours to reap: if the run already ended, its pid may be reused. Kill it
  // only while it is still the process that was started.
  orch.drain();
  if (start_time_of(victim_pid) == t->pids[victim + 1].start_time) ::kill(victim_pid, SIGKILL);
  auto killed_at = Clock::now();
  auto report = orch.expect("report", killed_at + kRunBound);
  if (!report) {
    t->hangs.push_back("run_pipeline did not return within " + std::to_string(kRunBound.count()) +
                       " s of the kill");
  } else {
    t->error_after_ms = ms_since(killed_at);
    auto kv = parse_kv(*report);
    const std::string& msg = kv["msg"];
    std::string want = "stage " + victim_id + " ";
    if (kv_int(kv, "ok") != 0) {
      t->failures.push_back("the run succeeded after stage " + victim_id + " was killed");
    } else if (msg.find(want) == std::string::npos ||
               msg.find("(pid " + std::to_string(victim_pid) + ")") == std::string::npos ||
               msg.find("signal 9") == std::string::npos) {
      t->failures.push_back("the run's error does not name the killed stage " + victim_id +
                            " (pid " + std::to_string(victim_pid) + "): " + msg);
    }
    // Stages verify every tensor they receive; a mismatch is a corrupt delivery. A payload
    // missing from the sequence ("out of order or lost") is a loss, reported as a failure.
    if (msg.find("content mismatch") != std::string::npos) {
      t->corrupt.push_back("a stage received a corrupt payload: " + msg);
    } else if (msg.find("out of order or lost") != std::string::npos) {
      t->failures.push_back("a stage lost a payload: " + msg);
    }
    if (kv_int(kv, "alive") > 0) {
      t->leaks.push_back(kv["alive"] + " stage processes alive after run_pipeline returned");
    }
    t->outcome = "stage " + victim_id + " killed; run ended after " +
                 std::to_string(static_cast<int64_t>(t->error_after_ms)) +
                 " ms: " + msg.substr(0, 160);
  }
  reap_survivor(t, orch.pid, "orchestrator", deadline_in(5s));
  for (size_t i = 0; i < pids.size(); ++i) {
    if (::kill(pids[i], 0) == 0 && start_time_of(pids[i]) == t->pids[i + 1].start_time) {
      t->leaks.push_back("stage " + config.stages[i].id + " (pid " + std::to_string(pids[i]) +
                         ") survived the run");
    }
  }
  orch.close();
}

// ---------------------------------------------------------------------------------------------

// Plants the fault --inject asked for (the checks after the trial must report it).
void inject_leak(const std::string& kind, int* fd, std::string* file) {
  if (kind == "fd") {
    *fd = ::dup(1);
  } else if (kind == "child" || kind == "memfd") {
    bool memfd = kind == "memfd";
    spawn_child({}, [memfd] {
      if (memfd) [[maybe_unused]]
        int m = ::memfd_create("omniconn-segment", MFD_CLOEXEC);
      std::this_thread::sleep_for(60s);
      return 0;
    });
    std::this_thread::sleep_for(50ms);
  } else if (kind == "devshm") {
    *file = "/dev/shm/crash-harness-inject-" + std::to_string(::getpid());
    ::close(::open(file->c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  }
}

struct Args {
  int kills = 100;
  uint64_t seed = 1;
  double time_limit_s = 300;
  std::string json_path;
  std::string config_path = OMNICONN_SOURCE_DIR "/examples/qwen2_5_omni.yaml";
  bool verbose = false;
  std::string inject;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "crash_harness: %s\nusage: crash_harness [--kills N] [--seed S] "
               "[--time-limit SECONDS] [--json FILE] [--config pipeline.yaml] [--verbose]\n",
               why);
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + k).c_str());
      return argv[++i];
    };
    if (k == "--kills") {
      a.kills = std::atoi(value().c_str());
    } else if (k == "--seed") {
      a.seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (k == "--time-limit") {
      a.time_limit_s = std::atof(value().c_str());
    } else if (k == "--json") {
      a.json_path = value();
    } else if (k == "--config") {
      a.config_path = value();
    } else if (k == "--inject") {
      a.inject = value();
      if (a.inject != "fd" && a.inject != "child" && a.inject != "memfd" && a.inject != "devshm" &&
          a.inject != "corrupt") {
        usage("--inject wants fd, child, memfd, devshm or corrupt");
      }
    } else if (k == "--verbose" || k == "-v") {
      a.verbose = true;
    } else {
      usage(("unknown argument " + k).c_str());
    }
  }
  if (a.kills < 0 || a.time_limit_s <= 0) usage("--kills must be >= 0, --time-limit > 0");
  return a;
}

Json trial_json(const TrialRecord& t) {
  return Json{
      {"trial", t.index},     {"scenario", t.scenario},   {"delay_ms", t.delay_ms},
      {"outcome", t.outcome}, {"delivered", t.delivered}, {"error_after_ms", t.error_after_ms},
      {"took_ms", t.took_ms}, {"leaks", t.leaks},         {"hangs", t.hangs},
      {"corrupt", t.corrupt}, {"failures", t.failures}};
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  g_inject = args.inject;
  ::signal(SIGPIPE, SIG_IGN);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);  // orphaned descendants come back here: leftovers show

  omniconn::ConfigLoad load = omniconn::load_pipeline_config(args.config_path);
  if (!load.ok()) {
    for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    return 2;
  }
  Baseline base;
  base.fds = own_fds();
  base.memfd_maps = count_map_lines("/proc/self/maps", "memfd:");
  base.dev_shm = list_dir("/dev/shm");

  const char* names[3] = {"producer", "consumer", "stage"};
  std::map<std::string, int> per_scenario;
  int64_t leaks = 0, hangs = 0, corrupt = 0, failures = 0, delivered = 0, kills = 0;
  double max_error_ms[3] = {0, 0, 0};
  Rng rng{args.seed};
  Json trials = Json::array();
  const auto t0 = Clock::now();
  bool out_of_time = false;
  for (int i = 0; i < args.kills; ++i) {
    if (ms_since(t0) / 1000 >= args.time_limit_s) {
      out_of_time = true;
      break;
    }
    TrialRecord t;
    t.index = i;
    Rng trial_rng{rng.next()};
    int scenario = static_cast<int>(trial_rng.below(3));
    t.scenario = names[scenario];
    t.sockets_before = omniconn_unix_sockets();
    auto ts = Clock::now();
    if (scenario == 0) {
      trial_kill_producer(&t, trial_rng);
    } else if (scenario == 1) {
      trial_kill_consumer(&t, trial_rng);
    } else {
      trial_kill_stage(&t, trial_rng, load.config);
    }
    int injected_fd = -1;
    std::string injected_file;
    if (i == 0 && !args.inject.empty()) inject_leak(args.inject, &injected_fd, &injected_file);
    for (std::string& l : check_after_trial(base, t)) t.leaks.push_back(std::move(l));
    if (injected_fd >= 0) ::close(injected_fd);
    if (!injected_file.empty()) ::unlink(injected_file.c_str());
    t.took_ms = ms_since(ts);
    ++kills;
    ++per_scenario[t.scenario];
    leaks += static_cast<int64_t>(t.leaks.size());
    hangs += static_cast<int64_t>(t.hangs.size());
    corrupt += static_cast<int64_t>(t.corrupt.size());
    failures += static_cast<int64_t>(t.failures.size());
    delivered += t.delivered;
    max_error_ms[scenario] = std::max(max_error_ms[scenario], t.error_after_ms);
    bool bad = !t.leaks.empty() || !t.hangs.empty() || !t.corrupt.empty() || !t.failures.empty();
    if (args.verbose || bad) {
      std::printf("trial %3d %-8s delay %4lld ms %6.0f ms  %s\n", i, t.scenario.c_str(),
                  static_cast<long long>(t.delay_ms), t.took_ms, t.outcome.c_str());
      for (auto* v : {&t.leaks, &t.hangs, &t.corrupt, &t.failures}) {
        const char* what = v == &t.leaks     ? "LEAK"
                           : v == &t.hangs   ? "HANG"
                           : v == &t.corrupt ? "CORRUPT"
                                             : "FAIL";
        for (const std::string& s : *v) std::printf("    %s: %s\n", what, s.c_str());
      }
      std::fflush(stdout);
    }
    trials.push_back(trial_json(t));
  }
  double elapsed = ms_since(t0) / 1000;
  bool pass = !out_of_time && kills == args.kills && leaks == 0 && hangs == 0 && corrupt == 0 &&
              failures == 0;
  std::printf(
      "crash_harness: seed %llu: %lld/%d kills in %.1f s (producer %d, consumer %d, stage %d)\n"
      "  leaks %lld, hangs %lld, corrupt deliveries %lld, other failures %lld\n"
      "  %lld payloads delivered and verified; slowest error after a kill: consumer %.0f ms, "
      "pipeline run %.0f ms\n",
      static_cast<unsigned long long>(args.seed), static_cast<long long>(kills), args.kills,
      elapsed, per_scenario["producer"], per_scenario["consumer"], per_scenario["stage"],
      static_cast<long long>(leaks), static_cast<long long>(hangs), static_cast<long long>(corrupt),
      static_cast<long long>(failures), static_cast<long long>(delivered), max_error_ms[0],
      max_error_ms[2]);
  if (out_of_time) {
    std::printf("  TIME LIMIT of %.0f s reached after %lld of %d kills\n", args.time_limit_s,
                static_cast<long long>(kills), args.kills);
  }
  std::printf("crash_harness: %s\n", pass ? "PASS" : "FAIL");
  if (!args.json_path.empty()) {
    Json j{{"seed", args.seed},
           {"kills_requested", args.kills},
           {"kills", kills},
           {"per_scenario", per_scenario},
           {"leaks", leaks},
           {"hangs", hangs},
           {"corrupt_deliveries", corrupt},
           {"other_failures", failures},
           {"delivered_verified", delivered},
           {"elapsed_s", elapsed},
           {"time_limit_hit", out_of_time},
           {"pass", pass},
           {"trials", trials}};
    std::ofstream(args.json_path) << j.dump(2) << "\n";
  }
  return pass ? 0 : 1;
}

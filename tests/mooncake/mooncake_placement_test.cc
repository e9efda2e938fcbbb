// Placement in the reader's segment, on a real store: a mooncake_master on loopback, a receiving
// process (forked before either process starts a Mooncake client) and this one sending. The
// master's admin port says where each replica is (/query_key: the segment of every replica),
// so the tests check placement itself, not only the connector's counters:
// - the receiver announces its segment and every put lands there;
// - a receiver segment too small for what is sent: the master places the rest elsewhere, and
//   every payload arrives intact, once;
// - extra.preferred_placement: false on either side: no announcement used, the master decides.
// Skipped, with the reason, where Mooncake is not installed. The fake-store side of placement
// (fallback after a failed preferred put, the announcement's refresh) is in
// mooncake_connector_test.cc.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "mooncake/mooncake_connector.h"
#include "mooncake/mooncake_env.h"
#include "omniconn/connector.h"
#include "test_util.h"

namespace omniconn::testing {
namespace {

using namespace std::chrono_literals;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = size_t{1} << 20;

// One GET of `target` from 127.0.0.1:port; the response body, "" when there is none.
std::string http_get(int port, const std::string& target) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, n);
    }
  }
  ::close(fd);
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The segments that hold `key`'s replicas, as the master reports them (empty: no such key).
std::vector<std::string> replica_segments(int admin_port, const std::string& key) {
  const std::string json = http_get(admin_port, "/query_key?key=" + key);
  const std::string field = "\"transport_endpoint_\":\"";
  std::vector<std::string> out;
  for (size_t at = json.find(field); at != std::string::npos; at = json.find(field, at)) {
    at += field.size();
    out.push_back(json.substr(at, json.find('"', at) - at));
  }
  return out;
}

// Lines from one process to another; a read gives up after a timeout (a dead peer).
class Line {
 public:
  Line() {
    if (::pipe(fds_) != 0) std::abort();
  }
  ~Line() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void write(const std::string& s) const {
    const std::string l = s + "\n";
    if (::write(fds_[1], l.data(), l.size()) != static_cast<ssize_t>(l.size())) std::abort();
  }
  bool read(std::string* s, std::chrono::seconds timeout) const {
    s->clear();
    for (char c = 0;;) {
      pollfd p{fds_[0], POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count() * 1000)) != 1) return false;
      if (::read(fds_[0], &c, 1) != 1) return false;
      if (c == '\n') return true;
      s->push_back(c);
    }
  }

 private:
  int fds_[2];
};

// A payload the sender sends and the receiver checks, in order per edge.
struct Sent {
  std::string from, to;
  size_t n;
  uint64_t seq;
  PayloadKey key() const { return {"r" + std::to_string(seq), from, to}; }
};

// An edge the receiver opens, with its connector's preferred_placement.
struct RxEdge {
  std::string from, to;
  bool placement = true;
};

// The receiving process: opens its edges (announcing where placement is on), reports its
// segment, waits for "go", then receives and checks everything sent, then finds nothing more.
int receive(const Value::Map& base, const std::vector<RxEdge>& edges, const std::vector<Sent>& sent,
            const Line& up, const Line& down) {
  mooncake_started_here() = true;
  std::map<bool, std::unique_ptr<Connector>> rx;
  std::map<std::pair<std::string, std::string>, Connector*> by_edge;
  for (const RxEdge& e : edges) {
    auto& c = rx[e.placement];
    if (c == nullptr) {
      Value::Map m = base;
      m["preferred_placement"] = Value(e.placement);
      auto made = create_connector({"MooncakeConnector", Value(std::move(m))});
      if (!made.ok()) return std::fprintf(stderr, "rx: %s\n", made.status().ToString().c_str()), 2;
      c = std::move(*made);
    }
    by_edge[{e.from, e.to}] = c.get();
    auto none = c->recv(e.from, e.to, deadline_in(300ms));  // opens the edge
    if (none.status().code() != StatusCode::kTimeout) return 3;
  }
  up.write(mooncake::placement_counts(*rx.begin()->second)->segment);
  std::string go;
  if (!down.read(&go, std::chrono::seconds(120)) || go != "go") return 4;
  for (const Sent& s : sent) {
    auto v = by_edge.at({s.from, s.to})->recv(s.from, s.to, deadline_in(30s));
    if (!v.ok())
      return std::fprintf(stderr, "rx %lu: %s\n", s.seq, v.status().ToString().c_str()), 5;
    if (std::string bad = verify_payload(*v, s.n, s.seq); !bad.empty()) {
      return std::fprintf(stderr, "rx %lu: %s\n", s.seq, bad.c_str()), 6;
    }
  }
  for (const auto& [edge, c] : by_edge) {
    if (c->recv(edge.first, edge.second, deadline_in(100ms)).ok()) return 7;  // a duplicate
  }
  return 0;
}

// Kills the receiver if the test ends before it does.
struct Child {
  pid_t pid = -1;
  ~Child() {
    if (pid > 0) wait_child(pid, std::chrono::seconds(0));
  }
  int wait() {
    int rc = wait_child(pid, std::chrono::seconds(120));
    pid = -1;
    return rc;
  }
};

class MooncakePlacement : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = mooncake_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    if (mooncake_started_here()) {
      GTEST_SKIP() << "a Mooncake client already runs in this process and Mooncake cannot start "
                      "in a forked child: run this test in a process of its own (ctest does)";
    }
    ns_ = unique_namespace(::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(master_.start(), "");
  }

  Value::Map extra(size_t segment) const {
    return {{"library", Value(mooncake_library())},
            {"master", Value(master_.master())},
            {"metadata_server", Value(master_.metadata_server())},
            {"host", Value("127.0.0.1")},
            {"namespace", Value(ns_)},
            {"segment", Value(static_cast<int64_t>(segment))},
            {"localbuf", Value(static_cast<int64_t>(64 * kMiB))},
            {"inline_threshold_bytes", Value(int64_t{4096})}};
  }

  // Forks the receiver; its segment name once it has opened its edges ("" if it did not).
  std::string start_receiver(size_t segment, const std::vector<RxEdge>& edges,
                             const std::vector<Sent>& sent) {
    const Value::Map base = extra(segment);
    rx_.pid = spawn([&] { return receive(base, edges, sent, up_, down_); });
    std::string name;
    return up_.read(&name, std::chrono::seconds(60)) ? name : "";
  }

  std::unique_ptr<Connector> sender(bool placement) {
    mooncake_started_here() = true;
    Value::Map m = extra(256 * kMiB);
    m["preferred_placement"] = Value(placement);
    auto c = create_connector({"MooncakeConnector", Value(std::move(m))});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Sends one payload; the segments its replica went to.
  std::vector<std::string> send(Connector& tx, const Sent& s) {
    TestPayload p(s.n, s.seq);
    Status st = tx.send(s.key(), p.builder, deadline_in(30s));
    EXPECT_TRUE(st.ok()) << s.seq << ": " << st.ToString();
    return replica_segments(master_.metrics_port(), ns_ + "/" + s.key().str());
  }

  // Lets the receiver read everything; its exit code.
  int finish() {
    down_.write("go");
    return rx_.wait();
  }

  MooncakeMaster master_;
  std::string ns_;
  Line up_, down_;
  Child rx_;
};

TEST_F(MooncakePlacement, EveryReplicaLandsInTheSegmentTheReaderAnnounced) {
  std::vector<Sent> sent;
  for (uint64_t i = 0; i < 6; ++i) sent.push_back({"0", "1", (i + 1) * 512 * kKiB, i});
  const std::string rx_segment = start_receiver(64 * kMiB, {{"0", "1"}}, sent);
  ASSERT_NE(rx_segment, "") << "the receiver did not start";
  auto tx = sender(true);
  ASSERT_NE(tx, nullptr);
  const std::string tx_segment = mooncake::placement_counts(*tx)->segment;
  ASSERT_NE(tx_segment, rx_segment);
  for (const Sent& s : sent) {
    EXPECT_EQ(send(*tx, s), std::vector<std::string>{rx_segment}) << "payload " << s.seq;
  }
  auto n = *mooncake::placement_counts(*tx);
  EXPECT_EQ(n.preferred, sent.size());
  EXPECT_EQ(n.fallback + n.plain, 0u);
  EXPECT_EQ(finish(), 0);
}

// 16 MiB of receiver segment (Mooncake's smallest), 48 MiB sent before it reads: the master
// places what does not fit in the sender's segment (it says nothing to the client, so the
// puts count as preferred), and every payload arrives intact.
TEST_F(MooncakePlacement, FullPreferredSegmentFallsBackToTheMastersChoice) {
  std::vector<Sent> sent;
  for (uint64_t i = 0; i < 4; ++i) sent.push_back({"0", "1", 6 * kMiB, i});
  sent.push_back({"0", "1", 24 * kMiB, 4});  // larger than the whole receiver segment
  const std::string rx_segment = start_receiver(16 * kMiB, {{"0", "1"}}, sent);
  ASSERT_NE(rx_segment, "") << "the receiver did not start";
  auto tx = sender(true);
  ASSERT_NE(tx, nullptr);
  const std::string tx_segment = mooncake::placement_counts(*tx)->segment;
  size_t in_rx = 0;
  for (const Sent& s : sent) {
    auto where = send(*tx, s);
    ASSERT_EQ(where.size(), 1u) << "payload " << s.seq;
    EXPECT_TRUE(where[0] == rx_segment || where[0] == tx_segment) << where[0];
    in_rx += where[0] == rx_segment ? s.n : 0;
    if (s.seq == 0) {
      EXPECT_EQ(where[0], rx_segment) << "the first payload fits";
    }
    if (s.n > 16 * kMiB) {
      EXPECT_EQ(where[0], tx_segment) << "payload " << s.seq;
    }
  }
  EXPECT_LE(in_rx, 16 * kMiB);
  std::printf("placement: %zu MiB in the receiver's segment, the rest in the sender's\n",
              in_rx / kMiB);
  auto n = *mooncake::placement_counts(*tx);
  std::printf("puts: %lu preferred, %lu fell back\n", n.preferred, n.fallback);
  EXPECT_EQ(n.preferred + n.fallback, sent.size());  // this master: all preferred, rc 0
  EXPECT_EQ(n.plain, 0u);
  EXPECT_EQ(tx->metrics().errors, 0u);
  EXPECT_EQ(finish(), 0);
}

// Off at the receiver (edge 0 -> 1): nothing announced. Off at the sender (edge 2 -> 3): the
// announcement is there and not used. The master places every replica.
TEST_F(MooncakePlacement, PreferredPlacementOffLeavesPlacementToTheMaster) {
  std::vector<Sent> sent;
  for (uint64_t i = 0; i < 4; ++i) sent.push_back({"0", "1", kMiB, i});
  for (uint64_t i = 4; i < 8; ++i) sent.push_back({"2", "3", kMiB, i});
  const std::string rx_segment =
      start_receiver(64 * kMiB, {{"0", "1", false}, {"2", "3", true}}, sent);
  ASSERT_NE(rx_segment, "") << "the receiver did not start";
  const int admin = master_.metrics_port();
  EXPECT_TRUE(replica_segments(admin, ns_ + "/~channel/0_to_1/segment").empty());
  EXPECT_EQ(replica_segments(admin, ns_ + "/~channel/2_to_3/segment").size(), 1u);
  auto tx_on = sender(true);
  auto tx_off = sender(false);
  ASSERT_NE(tx_on, nullptr);
  ASSERT_NE(tx_off, nullptr);
  size_t in_rx = 0;
  for (const Sent& s : sent) {
    auto where = send(s.from == "0" ? *tx_on : *tx_off, s);
    ASSERT_EQ(where.size(), 1u) << "payload " << s.seq;
    in_rx += where[0] == rx_segment;
  }
  std::printf("placement by the master: %zu of %zu replicas in the receiver's segment\n", in_rx,
              sent.size());
  for (Connector* tx : {tx_on.get(), tx_off.get()}) {
    auto n = *mooncake::placement_counts(*tx);
    EXPECT_EQ(n.plain, 4u);
    EXPECT_EQ(n.preferred + n.fallback, 0u);
  }
  EXPECT_EQ(finish(), 0);
}

}  // namespace
}  // namespace omniconn::testing

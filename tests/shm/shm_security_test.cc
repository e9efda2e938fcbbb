// Security properties of the SharedMemoryConnector (issue 8): another uid is refused by the
// socket credential checks, memfds are sealed against shrink and grow, readers map payload data
// read-only, forged descriptors are rejected, and the size limits fail with clear errors.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>

#include <gtest/gtest.h>

#include "omniconn/connector.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_layout.h"
#include "shm/shm_os.h"
#include "shm/shm_reader.h"
#include "shm/shm_test_util.h"
#include "test_util.h"

namespace omniconn::testing {
namespace {

using namespace std::chrono_literals;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kRefBytes = 128 * kKiB;  // above the default 64 KiB inline threshold
constexpr size_t kArena = kMiB;           // the smallest arena extra accepts
constexpr size_t kBigBytes = 2 * kMiB;    // larger than kArena: a dedicated segment
const std::string kRefused = "refused: the writer process runs as another user";

// In a child: `r` must have failed with `want` and a message containing `part`.
#define CHILD_REFUSED(r, want, part)                                                            \
  do {                                                                                          \
    auto&& _r = (r);                                                                            \
    const Status& _s = omniconn::testing::status_of(_r);                                        \
    if (_s.ok() || _s.code() != (want) || _s.message().find(part) == std::string::npos) {       \
      std::fprintf(stderr, "child %d: %s at %s:%d: want %s '...%s...', got '%s'\n", ::getpid(), \
                   #r, __FILE__, __LINE__, #want, std::string(part).c_str(),                    \
                   _s.ToString().c_str());                                                      \
      std::_Exit(1);                                                                            \
    }                                                                                           \
  } while (0)

Value size_value(size_t n) {
  return Value(static_cast<int64_t>(n));
}

// Small arena, payloads up to 8 MiB: kBigBytes goes to a dedicated segment.
Value::Map small_arena() {
  Value::Map m;
  m.emplace("arena_bytes", size_value(kArena));
  m.emplace("max_payload_bytes", size_value(8 * kMiB));
  m.emplace("max_inflight", size_value(16));
  return m;
}

PayloadKey key(uint64_t seq, const char* from = "a", const char* to = "b") {
  return PayloadKey{"req-" + std::to_string(seq), from, to};
}

Result<shm::DecodedDescriptor> decode(const std::string& bytes) {
  return shm::decode_descriptor(std::as_bytes(std::span(bytes)));
}

Descriptor forge(const shm::DecodedDescriptor& d, const std::function<void(shm::ShmRef&)>& edit) {
  shm::ShmRef ref = d.ref;
  edit(ref);
  return Descriptor{shm::encode_ref_descriptor(d.key, ref)};
}

// --- Users ---------------------------------------------------------------------------------

struct Ids {
  uid_t uid;
  gid_t gid;
};

// The ids of `nobody`, or why a test that needs them cannot run. Looked up in the parent (NSS
// after fork is not safe).
std::optional<Ids> nobody_ids(std::string* why) {
  if (::geteuid() != 0) {
    *why = "needs root to start a child as 'nobody' (running as uid " +
           std::to_string(::geteuid()) + ")";
    return std::nullopt;
  }
  const passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr || pw->pw_uid == 0) {
    *why = "no unprivileged 'nobody' user on this machine";
    return std::nullopt;
  }
  return Ids{pw->pw_uid, pw->pw_gid};
}

#define NOBODY_OR_SKIP(ids)                  \
  std::string why_skipped;                   \
  const auto ids = nobody_ids(&why_skipped); \
  if (!ids) GTEST_SKIP() << why_skipped

// In a child: drops every privilege for good.
std::string become(const Ids& ids) {
  if (::setgroups(0, nullptr) != 0) return "setgroups: " + shm::errno_text(errno);
  if (::setgid(ids.gid) != 0) return "setgid: " + shm::errno_text(errno);
  if (::setuid(ids.uid) != 0) return "setuid: " + shm::errno_text(errno);
  if (::getuid() != ids.uid || ::geteuid() != ids.uid || ::getgid() != ids.gid) {
    return "ids did not change (uid " + std::to_string(::getuid()) + ")";
  }
  if (::setuid(0) == 0) return "could become root again";
  return "";
}

// Connects to a writer's socket without the reader's own credential check and asks for `op`.
// "answered" when the writer talks to us (hello or reply), "refused" when it hangs up without
// a word and without passing a descriptor; anything else is an error text.
std::string raw_request(const std::string& socket_name, uint32_t op) {
  auto fd = shm::connect_abstract(socket_name);
  if (!fd.ok()) return "connect: " + fd.status().ToString();
  shm::Request req{op, 0};
  (void)shm::send_msg(fd->get(), {reinterpret_cast<const std::byte*>(&req), sizeof req});
  shm::Reply reply{};
  shm::Fd got;
  auto n = shm::recv_msg(fd->get(), {reinterpret_cast<std::byte*>(&reply), sizeof reply}, &got,
                         deadline_in(2s));
  if (got.valid()) return "answered (and passed a descriptor)";
  if (n.ok()) return "answered";
  if (n.status().code() == StatusCode::kUnavailable) return "refused";
  return n.status().ToString();
}

// --- Descriptors, mappings -----------------------------------------------------------------

// This process's fds on memfds called `name`.
std::vector<int> memfds_named(const std::string& name) {
  std::vector<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const std::string want = "/memfd:" + name + " (deleted)";
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    char target[512];
    std::string path = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = ::readlink(path.c_str(), target, sizeof target);
    if (n > 0 && std::string_view(target, static_cast<size_t>(n)) == want) {
      fds.push_back(std::atoi(e->d_name));
    }
  }
  ::closedir(dir);
  return fds;
}

std::vector<int> new_fds(const std::vector<int>& now, const std::vector<int>& before) {
  std::vector<int> out;
  for (int fd : now) {
    if (std::find(before.begin(), before.end(), fd) == before.end()) out.push_back(fd);
  }
  return out;
}

struct MapLine {
  uintptr_t start = 0, end = 0;
  std::string perms, line;
};

// The line of /proc/self/maps whose range holds `p`.
std::optional<MapLine> mapping_of(const void* p) {
  auto addr = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &start, &end, perms) != 3) continue;
    if (addr >= start && addr < end) return MapLine{start, end, perms, line};
  }
  return std::nullopt;
}

// Empty when [p, p+n) lies in one read-only shared mapping of an omniconn segment memfd.
std::string check_read_only(const std::byte* p, size_t n) {
  auto m = mapping_of(p);
  if (!m) return "no mapping holds the payload";
  if (m->perms != "r--s") return "payload mapped '" + m->perms + "': " + m->line;
  if (m->line.find("/memfd:omniconn-segment") == std::string::npos) {
    return "payload not in a segment memfd: " + m->line;
  }
  if (reinterpret_cast<uintptr_t>(p) + n > m->end) return "payload runs past " + m->line;
  return "";
}

// Writes one byte at `p` in a grandchild; returns how that ended (128 + signal when killed).
int write_in_grandchild(const std::byte* p) {
  pid_t pid = spawn([p] {
    ::signal(SIGSEGV, SIG_DFL);
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    *const_cast<volatile std::byte*>(p) = std::byte{0x5a};
    return 0;  // the write went through
  });
  return wait_child(pid, 5s);
}

bool died_of_segv(int rc) {
#ifdef OMNICONN_SANITIZED
  return rc != 0 && rc != 999;  // the sanitizer reports the SEGV and exits non-zero
#else
  return rc == 128 + SIGSEGV;
#endif
}

class ShmSecurity : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = unique_namespace(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string ns_;
};

// --- 1. Another uid -------------------------------------------------------------------------

TEST_F(ShmSecurity, OtherUidReaderIsRefused) {
  NOBODY_OR_SKIP(ids);
  MsgPipe to_reader, to_writer;
  pid_t writer = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    TestPayload p(kRefBytes, 1);
    auto d = c->put(key(1), p.builder, deadline_in(2s));
    CHILD_OK(d);
    auto dec = decode(d->bytes);
    CHILD_OK(dec);
    CHILD_CHECK(!dec->is_inline);
    auto fds = memfds_named("omniconn-segment");
    CHILD_CHECK(fds.size() == 1);
    std::string sock = shm::producer_socket_name(dec->ref.producer_id);
    // Controls: a process of our own uid is answered on that socket.
    CHILD_CHECK(raw_request(sock, shm::kOpMapSegment) == "answered");
    CHILD_OK(shm::open_link(sock, deadline_in(2s)));
    to_reader.write(d->bytes);
    to_reader.write(sock);
    to_reader.write("/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fds[0]));
    std::string done;
    CHILD_CHECK(to_writer.read(&done));
    // The other uid took nothing: the payload is still there for a reader of ours.
    auto same_uid = make_shm(ns_);
    CHILD_CHECK(same_uid != nullptr);
    auto v = same_uid->get(*d, deadline_in(2s));
    CHILD_OK(v);
    CHILD_EMPTY(verify_payload(*v, kRefBytes, 1));
    return 0;
  });
  pid_t reader = spawn([&] {
    CHILD_EMPTY(become(*ids));
    std::string desc, sock, proc_fd;
    CHILD_CHECK(to_reader.read(&desc) && to_reader.read(&sock) && to_reader.read(&proc_fd));
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    auto v = c->get(Descriptor{desc}, deadline_in(1s));
    CHILD_REFUSED(v, StatusCode::kUnavailable, "");
    CHILD_CHECK(!v.ok());
    // The credential checks proper, on the writer's real socket: ours (reader side) ...
    CHILD_REFUSED(shm::open_link(sock, deadline_in(1s)), StatusCode::kUnavailable, kRefused);
    // ... and the writer's: it hangs up on us without a hello or a memfd.
    CHILD_CHECK(raw_request(sock, shm::kOpMapSegment) == "refused");
    // Nor can we take the memfd from the writer's fd table.
    errno = 0;
    int fd = ::open(proc_fd.c_str(), O_RDONLY | O_CLOEXEC);
    CHILD_CHECK(fd < 0 && errno == EACCES);
    to_writer.write("done");
    return 0;
  });
  int reader_rc = wait_child(reader, 10s);
  if (reader_rc != 0) to_writer.write("done");  // let the writer finish its checks
  EXPECT_EQ(reader_rc, 0);
  EXPECT_EQ(wait_child(writer, 10s), 0);
}

TEST_F(ShmSecurity, OtherUidWriterIsRefused) {
  NOBODY_OR_SKIP(ids);
  MsgPipe to_reader, to_writer;
  pid_t writer = spawn([&] {
    CHILD_EMPTY(become(*ids));
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    TestPayload p(kRefBytes, 2);
    auto d = c->put(key(2), p.builder, deadline_in(2s));
    CHILD_OK(d);
    auto dec = decode(d->bytes);
    CHILD_OK(dec);
    CHILD_CHECK(!dec->is_inline);
    std::string sock = shm::producer_socket_name(dec->ref.producer_id);
    CHILD_CHECK(raw_request(sock, shm::kOpMapSegment) == "answered");  // control: same uid
    to_reader.write(d->bytes);
    to_reader.write(sock);
    std::string done;
    CHILD_CHECK(to_writer.read(&done));
    auto same_uid = make_shm(ns_);
    CHILD_CHECK(same_uid != nullptr);
    auto v = same_uid->get(*d, deadline_in(2s));
    CHILD_OK(v);
    CHILD_EMPTY(verify_payload(*v, kRefBytes, 2));
    return 0;
  });
  pid_t reader = spawn([&] {  // root
    std::string desc, sock;
    CHILD_CHECK(to_reader.read(&desc) && to_reader.read(&sock));
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    auto v = c->get(Descriptor{desc}, deadline_in(1s));
    CHILD_REFUSED(v, StatusCode::kUnavailable, "");
    // Root refuses a writer of another uid (reader side), and that writer refuses root.
    CHILD_REFUSED(shm::open_link(sock, deadline_in(1s)), StatusCode::kUnavailable, kRefused);
    CHILD_CHECK(raw_request(sock, shm::kOpMapSegment) == "refused");
    to_writer.write("done");
    return 0;
  });
  int reader_rc = wait_child(reader, 10s);
  if (reader_rc != 0) to_writer.write("done");
  EXPECT_EQ(reader_rc, 0);
  EXPECT_EQ(wait_child(writer, 10s), 0);
}

TEST_F(ShmSecurity, OtherUidChannelReaderGetsNothing) {
  NOBODY_OR_SKIP(ids);
  MsgPipe to_reader, to_writer;
  pid_t sender = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    TestPayload by_ref(kRefBytes, 3), in_line(100, 4);
    CHILD_OK(c->send(key(3), by_ref.builder, deadline_in(2s)));
    CHILD_OK(c->send(key(4), in_line.builder, deadline_in(2s)));
    std::string sock = shm::edge_socket_name(ns_, "a", "b");
    CHILD_CHECK(raw_request(sock, shm::kOpRing) == "answered");  // control: same uid
    to_reader.write(sock);
    std::string done;
    CHILD_CHECK(to_writer.read(&done));
    // Both records are still in the ring for a receiver of ours.
    auto rx = make_shm(ns_);
    CHILD_CHECK(rx != nullptr);
    auto v3 = rx->recv("a", "b", deadline_in(2s));
    CHILD_OK(v3);
    CHILD_EMPTY(verify_payload(*v3, kRefBytes, 3));
    auto v4 = rx->recv("a", "b", deadline_in(2s));
    CHILD_OK(v4);
    CHILD_EMPTY(verify_payload(*v4, 100, 4));
    return 0;
  });
  pid_t reader = spawn([&] {
    CHILD_EMPTY(become(*ids));
    std::string sock;
    CHILD_CHECK(to_reader.read(&sock));
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    // Edge sockets are per uid: the root sender's edge does not exist for us.
    auto v = c->recv("a", "b", deadline_in(300ms));
    CHILD_REFUSED(v, StatusCode::kTimeout, "no writer on edge a->b");
    // On the sender's real edge socket both credential checks refuse.
    CHILD_REFUSED(shm::open_link(sock, deadline_in(1s)), StatusCode::kUnavailable, kRefused);
    CHILD_CHECK(raw_request(sock, shm::kOpRing) == "refused");
    to_writer.write("done");
    return 0;
  });
  int reader_rc = wait_child(reader, 10s);
  if (reader_rc != 0) to_writer.write("done");
  EXPECT_EQ(reader_rc, 0);
  EXPECT_EQ(wait_child(sender, 10s), 0);
}

// Disabled: a reader of another uid is refused, but not by the credential check and not with
// a message that says so. Every socket name embeds the *caller's* euid (src/shm/shm_os.cc,
// base_name()), so the reader connects to "omniconn.<its uid>.p.<id>", which nobody listens
// on, and LinkTable::get (src/shm/shm_reader.cc) reports "the writer process of this
// payload is gone". Fix: leave the uid out of producer_socket_name (the 64-bit random producer
// id is unique by itself; both ends still check SO_PEERCRED), so open_link's "refused: the
// writer process runs as another user" reaches the caller.
TEST_F(ShmSecurity, OtherUidReaderIsToldWhy) {
  NOBODY_OR_SKIP(ids);
  MsgPipe to_reader, to_writer;
  pid_t writer = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    TestPayload p(kRefBytes, 5);
    auto d = c->put(key(5), p.builder, deadline_in(2s));
    CHILD_OK(d);
    to_reader.write(d->bytes);
    std::string done;
    CHILD_CHECK(to_writer.read(&done));
    return 0;
  });
  pid_t reader = spawn([&] {
    CHILD_EMPTY(become(*ids));
    std::string desc;
    CHILD_CHECK(to_reader.read(&desc));
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    auto v = c->get(Descriptor{desc}, deadline_in(1s));
    CHILD_REFUSED(v, StatusCode::kUnavailable, "another user");
    to_writer.write("done");
    return 0;
  });
  int reader_rc = wait_child(reader, 10s);
  if (reader_rc != 0) to_writer.write("done");
  EXPECT_EQ(reader_rc, 0);
  EXPECT_EQ(wait_child(writer, 10s), 0);
}

// --- 2. Seals -------------------------------------------------------------------------------

void expect_sealed(int fd, const std::string& what) {
  SCOPED_TRACE(what);
  int seals = ::fcntl(fd, F_GET_SEALS);
  ASSERT_GE(seals, 0) << shm::errno_text(errno);
  EXPECT_EQ(seals & F_SEAL_SHRINK, F_SEAL_SHRINK);
  EXPECT_EQ(seals & F_SEAL_GROW, F_SEAL_GROW);
  EXPECT_EQ(seals & F_SEAL_SEAL, F_SEAL_SEAL);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  const off_t size = st.st_size;
  ASSERT_GT(size, 4096);
  for (off_t to : {off_t{0}, size - 4096, size + 4096}) {
    errno = 0;
    EXPECT_EQ(::ftruncate(fd, to), -1) << "ftruncate to " << to;
    EXPECT_EQ(errno, EPERM) << "ftruncate to " << to;
  }
  errno = 0;
  EXPECT_EQ(::fallocate(fd, 0, size, 4096), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;  // F_SEAL_SEAL: no reader can add F_SEAL_WRITE and stall the writer
  EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
  EXPECT_EQ(errno, EPERM);
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, size);
}

TEST_F(ShmSecurity, SegmentsAreSealed) {
  const auto segments_before = memfds_named("omniconn-segment");
  const auto rings_before = memfds_named("omniconn-ring");
  auto c = make_shm(ns_, small_arena());
  ASSERT_NE(c, nullptr);

  TestPayload small(kRefBytes, 1);
  auto d1 = c->put(key(1), small.builder, deadline_in(2s));
  ASSERT_TRUE(d1.ok()) << d1.status().ToString();
  auto dec1 = decode(d1->bytes);
  ASSERT_TRUE(dec1.ok() && !dec1->is_inline && dec1->ref.segment_id == 0);
  auto arena = new_fds(memfds_named("omniconn-segment"), segments_before);
  ASSERT_EQ(arena.size(), 1u);
  expect_sealed(arena[0], "arena");

  TestPayload big(kBigBytes, 2);
  auto d2 = c->put(key(2), big.builder, deadline_in(2s));
  ASSERT_TRUE(d2.ok()) << d2.status().ToString();
  auto dec2 = decode(d2->bytes);
  ASSERT_TRUE(dec2.ok() && !dec2->is_inline && dec2->ref.segment_id != 0);
  auto both = new_fds(memfds_named("omniconn-segment"), segments_before);
  auto dedicated = new_fds(both, arena);
  ASSERT_EQ(dedicated.size(), 1u);
  expect_sealed(dedicated[0], "dedicated segment");

  TestPayload sent(kRefBytes, 3);
  ASSERT_TRUE(c->send(key(3), sent.builder, deadline_in(2s)).ok());
  // The sender's ring fd and the writer server's own duplicate of it: one file.
  auto ring = new_fds(memfds_named("omniconn-ring"), rings_before);
  ASSERT_FALSE(ring.empty());
  struct stat first {};
  ASSERT_EQ(::fstat(ring[0], &first), 0);
  for (int fd : ring) {
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    EXPECT_EQ(st.st_ino, first.st_ino);
    expect_sealed(fd, "control ring");
  }

  // Still readable after all those attempts.
  auto r = make_shm(ns_);
  ASSERT_NE(r, nullptr);
  auto v2 = r->get(*d2, deadline_in(2s));
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ(verify_payload(*v2, kBigBytes, 2), "");
}

// --- 3. Read-only mappings ------------------------------------------------------------------

TEST_F(ShmSecurity, ReaderMappingsAreReadOnly) {
  MsgPipe to_reader, to_writer;
  pid_t writer = spawn([&] {
    auto c = make_shm(ns_, small_arena());
    CHILD_CHECK(c != nullptr);
    TestPayload in_arena(kRefBytes, 1), dedicated(kBigBytes, 2);
    auto d1 = c->put(key(1), in_arena.builder, deadline_in(2s));
    CHILD_OK(d1);
    auto d2 = c->put(key(2), dedicated.builder, deadline_in(2s));
    CHILD_OK(d2);
    to_reader.write(d1->bytes);
    to_reader.write(d2->bytes);
    std::string done;
    CHILD_CHECK(to_writer.read(&done));
    return 0;
  });
  pid_t reader = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    const std::pair<size_t, uint64_t> payloads[] = {{kRefBytes, 1}, {kBigBytes, 2}};
    for (const auto& [n, seq] : payloads) {
      std::string desc;
      CHILD_CHECK(to_reader.read(&desc));
      auto dec = decode(desc);
      CHILD_OK(dec);
      CHILD_CHECK(!dec->is_inline && (dec->ref.segment_id != 0) == (n == kBigBytes));
      auto v = c->get(Descriptor{desc}, deadline_in(2s));
      CHILD_OK(v);
      const TensorView* t = v->reader().find("data");
      CHILD_CHECK(t != nullptr && t->data.size() == n);
      CHILD_EMPTY(check_read_only(t->data.data(), n));
      CHILD_EMPTY(check_read_only(v->bytes().data(), v->bytes().size()));
      // Not just the flags: a write to the tensor or to the payload header faults.
      CHILD_CHECK(died_of_segv(write_in_grandchild(t->data.data() + n / 2)));
      CHILD_CHECK(died_of_segv(write_in_grandchild(v->bytes().data())));
      CHILD_EMPTY(verify_payload(*v, n, seq));
    }
    to_writer.write("done");
    return 0;
  });
  int reader_rc = wait_child(reader, 10s);
  if (reader_rc != 0) to_writer.write("done");
  EXPECT_EQ(reader_rc, 0);
  EXPECT_EQ(wait_child(writer, 10s), 0);
}

// --- 4. Forged descriptors ------------------------------------------------------------------

struct Forgery {
  const char* what;
  std::function<void(shm::ShmRef&)> edit;
  StatusCode code;
};

void expect_rejected(Connector& r, const shm::DecodedDescriptor& d,
                     const std::vector<Forgery>& forgeries) {
  for (const Forgery& f : forgeries) {
    auto v = r.get(forge(d, f.edit), deadline_in(1s));
    EXPECT_FALSE(v.ok()) << f.what;
    EXPECT_EQ(v.status().code(), f.code) << f.what << ": " << v.status().ToString();
  }
}

TEST_F(ShmSecurity, ForgedDescriptorFields) {
  auto w = make_shm(ns_, small_arena());
  auto w2 = make_shm(ns_, small_arena());
  auto r = make_shm(ns_);
  ASSERT_TRUE(w && w2 && r);
  TestPayload p1(kRefBytes, 1), p101(kRefBytes, 101);
  auto d1 = w->put(key(1), p1.builder, deadline_in(2s));
  auto d101 = w2->put(key(101), p101.builder, deadline_in(2s));
  ASSERT_TRUE(d1.ok() && d101.ok());
  auto dec1 = decode(d1->bytes);
  auto dec101 = decode(d101->bytes);
  ASSERT_TRUE(dec1.ok() && dec101.ok() && !dec1->is_inline && !dec101->is_inline);
  const shm::ShmRef g = dec1->ref;
  ASSERT_EQ(g.segment_id, 0u);

  const uint64_t top = UINT64_MAX;
  expect_rejected(
      *r, *dec1,
      {
          {"offset beyond the arena", [](auto& f) { f.offset = kArena + 64; },
           StatusCode::kCorrupt},
          {"offset at the arena end", [](auto& f) { f.offset = kArena; }, StatusCode::kCorrupt},
          {"length past the arena end", [&](auto& f) { f.size = kArena - g.offset + 64; },
           StatusCode::kCorrupt},
          {"length larger than the arena", [](auto& f) { f.size = 4 * kArena; },
           StatusCode::kCorrupt},
          {"offset + length overflows",
           [&](auto& f) {
             f.offset = top - 63;
             f.size = 128;
           },
           StatusCode::kCorrupt},
          {"length of 2^64 - 1", [](auto& f) { f.size = UINT64_MAX; }, StatusCode::kCorrupt},
          {"misaligned offset", [&](auto& f) { f.offset = g.offset + 8; }, StatusCode::kCorrupt},
          {"offset moved in the arena", [&](auto& f) { f.offset = g.offset + 4096; },
           StatusCode::kCorrupt},
          {"length changed in the arena", [&](auto& f) { f.size = g.size - 1; },
           StatusCode::kCorrupt},
          {"header checksum changed", [&](auto& f) { f.header_checksum ^= 1; },
           StatusCode::kCorrupt},
          {"slot out of range", [](auto& f) { f.slot = 16; }, StatusCode::kCorrupt},
          {"slot 2^32 - 1", [](auto& f) { f.slot = UINT32_MAX; }, StatusCode::kCorrupt},
          {"another (free) slot", [&](auto& f) { f.slot = g.slot + 1; }, StatusCode::kNotFound},
          {"future generation", [&](auto& f) { f.generation = g.generation + 1; },
           StatusCode::kNotFound},
          {"generation 0", [](auto& f) { f.generation = 0; }, StatusCode::kNotFound},
          {"unknown segment", [](auto& f) { f.segment_id = 12345; }, StatusCode::kNotFound},
          {"unknown producer", [&](auto& f) { f.producer_id = g.producer_id ^ 1; },
           StatusCode::kUnavailable},
          {"producer 0", [](auto& f) { f.producer_id = 0; }, StatusCode::kUnavailable},
      });

  // Wrong arena: the same slot, generation, offset and size in another writer's arena.
  ASSERT_EQ(dec101->ref.slot, g.slot);
  ASSERT_EQ(dec101->ref.generation, g.generation);
  ASSERT_EQ(dec101->ref.offset, g.offset);
  ASSERT_EQ(dec101->ref.size, g.size);
  const uint64_t w2_id = dec101->ref.producer_id;
  expect_rejected(
      *r, *dec1,
      {{"another writer's arena", [&](auto& f) { f.producer_id = w2_id; }, StatusCode::kCorrupt}});
  expect_rejected(*r, *dec101,
                  {{"another writer's arena", [&](auto& f) { f.producer_id = g.producer_id; },
                    StatusCode::kCorrupt}});

  // Every single-bit change of the fixed part (key lengths aside) is refused.
  for (size_t byte = 0; byte < 64; ++byte) {
    if (byte >= 6 && byte < 12) continue;  // key field lengths: the key is not bound to the slot
    for (int bit = 0; bit < 8; ++bit) {
      Descriptor f{d1->bytes};
      f.bytes[byte] = static_cast<char>(f.bytes[byte] ^ (1 << bit));
      auto v = r->get(f, deadline_in(1s));
      EXPECT_FALSE(v.ok()) << "byte " << byte << " bit " << bit;
    }
  }
  // Truncated, extended and empty descriptors.
  EXPECT_EQ(r->get(Descriptor{d1->bytes.substr(0, 63)}, deadline_in(1s)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(r->get(Descriptor{d1->bytes + '\0'}, deadline_in(1s)).status().code(),
            StatusCode::kCorrupt);
  EXPECT_EQ(r->get(Descriptor{}, deadline_in(1s)).status().code(), StatusCode::kInvalidArgument);

  // The genuine descriptors still work after all of that.
  auto v1 = r->get(*d1, deadline_in(2s));
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(verify_payload(*v1, kRefBytes, 1), "");
  auto v101 = r->get(*d101, deadline_in(2s));
  ASSERT_TRUE(v101.ok()) << v101.status().ToString();
  EXPECT_EQ(verify_payload(*v101, kRefBytes, 101), "");

  // Stale generation: consumed, released, its slot reused by the next payload.
  EXPECT_EQ(r->get(*d1, deadline_in(1s)).status().code(), StatusCode::kNotFound);
  v1->release();
  TestPayload p2(kRefBytes, 2);
  auto d2 = w->put(key(2), p2.builder, deadline_in(2s));
  ASSERT_TRUE(d2.ok());
  auto dec2 = decode(d2->bytes);
  ASSERT_TRUE(dec2.ok());
  ASSERT_EQ(dec2->ref.slot, g.slot) << "the slot was not reused";
  ASSERT_EQ(dec2->ref.generation, g.generation + 1);
  auto stale = r->get(*d1, deadline_in(1s));
  EXPECT_EQ(stale.status().code(), StatusCode::kNotFound) << stale.status().ToString();
  expect_rejected(*r, *dec1,
                  {{"old descriptor moved to the new generation",
                    [&](auto& f) { f.generation = dec2->ref.generation; }, StatusCode::kCorrupt}});
  auto v2 = r->get(*d2, deadline_in(2s));
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ(verify_payload(*v2, kRefBytes, 2), "");

  // A dedicated segment.
  TestPayload big(kBigBytes, 3);
  auto d3 = w->put(key(3), big.builder, deadline_in(2s));
  ASSERT_TRUE(d3.ok());
  auto dec3 = decode(d3->bytes);
  ASSERT_TRUE(dec3.ok() && dec3->ref.segment_id != 0);
  const uint32_t seg = dec3->ref.segment_id;
  expect_rejected(
      *r, *dec3,
      {
          {"slot 1 of a one-slot segment", [](auto& f) { f.slot = 1; }, StatusCode::kCorrupt},
          {"length past the segment", [](auto& f) { f.size = 4 * kBigBytes; },
           StatusCode::kCorrupt},
          {"offset past the segment", [](auto& f) { f.offset = 4 * kBigBytes; },
           StatusCode::kCorrupt},
          {"the next segment id", [&](auto& f) { f.segment_id = seg + 1; }, StatusCode::kNotFound},
          {"the arena instead", [](auto& f) { f.segment_id = 0; }, StatusCode::kCorrupt},
      });
  auto v3 = r->get(*d3, deadline_in(2s));
  ASSERT_TRUE(v3.ok()) << v3.status().ToString();
  EXPECT_EQ(verify_payload(*v3, kBigBytes, 3), "");

  // And a fresh payload goes through.
  TestPayload p4(kRefBytes, 4);
  auto d4 = w->put(key(4), p4.builder, deadline_in(2s));
  ASSERT_TRUE(d4.ok());
  auto v4 = r->get(*d4, deadline_in(2s));
  ASSERT_TRUE(v4.ok()) << v4.status().ToString();
  EXPECT_EQ(verify_payload(*v4, kRefBytes, 4), "");
}

// --- 5. Limits ------------------------------------------------------------------------------

TEST_F(ShmSecurity, LimitsOutOfRangeAreRefusedByName) {
  struct Bad {
    const char* key;
    Value value;
    std::string message;
  };
  const int64_t max = int64_t{64} << 30;
  const std::vector<Bad> bad = {
      {"arena_bytes", Value(int64_t{1000}),
       "arena_bytes: want an integer in [1048576, " + std::to_string(max) + "], got 1000"},
      {"arena_bytes", Value(max + 1),
       "arena_bytes: want an integer in [1048576, " + std::to_string(max) + "], got " +
           std::to_string(max + 1)},
      {"arena_bytes", Value(int64_t{-1}),
       "arena_bytes: want an integer in [1048576, " + std::to_string(max) + "], got -1"},
      {"arena_bytes", Value("lots"),
       "arena_bytes: want an integer in [1048576, " + std::to_string(max) + "], got string"},
      {"max_payload_bytes", Value(int64_t{0}),
       "max_payload_bytes: want an integer in [1, " + std::to_string(max) + "], got 0"},
      {"max_payload_bytes", Value(max + 1),
       "max_payload_bytes: want an integer in [1, " + std::to_string(max) + "], got " +
           std::to_string(max + 1)},
      {"max_payload_bytes", Value(int64_t{1000}),
       "max_payload_bytes (1000) is smaller than shm_threshold_bytes (65536)"},
  };
  for (const Bad& b : bad) {
    Value::Map extra;
    extra.emplace("namespace", Value(ns_));
    extra.emplace(b.key, b.value);
    ConnectorSpec spec{"SharedMemoryConnector", Value(extra)};
    auto c = create_connector(spec);
    ASSERT_FALSE(c.ok()) << b.message;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << b.message;
    EXPECT_EQ(c.status().message(), "SharedMemoryConnector extra: " + b.message);
    Status v = ConnectorRegistry::instance().validate(spec);
    EXPECT_EQ(v.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(v.message(), c.status().message());
  }
}

TEST_F(ShmSecurity, PayloadAboveMaxPayloadBytesIsRefused) {
  TestPayload p(200 * kKiB, 1);
  const size_t n = p.builder.encoded_size();
  auto payload_error = [](size_t bytes, size_t limit) {
    return "payload of " + std::to_string(bytes) + " bytes: must be 1.." + std::to_string(limit) +
           " bytes (extra.max_payload_bytes)";
  };
  {  // one byte over the limit: refused, by name, for put, loan and send
    Value::Map o = small_arena();
    o["max_payload_bytes"] = size_value(n - 1);
    auto c = make_shm(ns_, o);
    ASSERT_NE(c, nullptr);
    auto put = c->put(key(1), p.builder, deadline_in(1s));
    ASSERT_FALSE(put.ok());
    EXPECT_EQ(put.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(put.status().message(), payload_error(n, n - 1));
    auto loan = c->loan(n, deadline_in(1s));
    ASSERT_FALSE(loan.ok());
    EXPECT_EQ(loan.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(loan.status().message(), payload_error(n, n - 1));
    EXPECT_EQ(c->loan(0, deadline_in(1s)).status().message(), payload_error(0, n - 1));
    Status sent = c->send(key(1), p.builder, deadline_in(1s));
    EXPECT_EQ(sent.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(sent.message(), payload_error(n, n - 1));
    EXPECT_EQ(c->metrics().in_flight, 0u);
  }
  {  // exactly at the limit: accepted
    Value::Map o = small_arena();
    o["max_payload_bytes"] = size_value(n);
    auto c = make_shm(ns_, o);
    ASSERT_NE(c, nullptr);
    auto put = c->put(key(2), p.builder, deadline_in(1s));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    auto loan = c->loan(n, deadline_in(1s));
    ASSERT_TRUE(loan.ok()) << loan.status().ToString();
    EXPECT_EQ(loan->size(), n);
  }
}

TEST_F(ShmSecurity, FullArenaNamesItsLimits) {
  auto c = make_shm(ns_, small_arena());
  ASSERT_NE(c, nullptr);
  TestPayload held(600 * kKiB, 1), next(600 * kKiB, 2);
  auto d1 = c->put(key(1), held.builder, deadline_in(1s));
  ASSERT_TRUE(d1.ok()) << d1.status().ToString();
  auto full = c->put(key(2), next.builder, deadline_in(50ms));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  const std::string& m = full.status().message();
  EXPECT_EQ(m.rfind("shared-memory arena full: " + std::to_string(next.builder.encoded_size()) +
                        " bytes requested",
                    0),
            0u)
      << m;
  EXPECT_NE(m.find("(arena " + std::to_string(kArena) + " bytes, max_inflight 16)"),
            std::string::npos)
      << m;
  // The limit was the arena: once the first payload is cleaned up the second one fits.
  ASSERT_TRUE(c->cleanup("req-1").ok());
  auto d2 = c->put(key(2), next.builder, deadline_in(1s));
  EXPECT_TRUE(d2.ok()) << d2.status().ToString();
}

}  // namespace
}  // namespace omniconn::testing

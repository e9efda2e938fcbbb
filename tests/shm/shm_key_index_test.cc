// Reading SharedMemoryConnector payloads by key (shm_key_index.h) and copy-on-write views
// (GetOptions::writable), across real processes: any key is a safe entry name, a payload is
// taken once, a dead writer's entry is refused and removed, entries go with their request and
// connector, stale entries are swept, and a written view never reaches shared memory.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "omniconn/connector.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_key_index.h"
#include "shm/shm_test_util.h"
#include "test_util.h"

namespace omniconn::testing {
namespace {

using namespace std::chrono_literals;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kInlineBytes = 100;             // travels in the descriptor (and the entry)
constexpr size_t kRefBytes = 128 * kKiB;         // above the 64 KiB threshold: in the arena
constexpr size_t kLargeInlineBytes = 32 * kKiB;  // inline, in a large slot of the table
constexpr size_t kBigBytes = 2 * kMiB;           // above a 1 MiB arena: a dedicated segment

#ifdef OMNICONN_SANITIZED
constexpr auto kSlack = 1500ms;  // how late a deadline may be noticed
#else
constexpr auto kSlack = 500ms;
#endif

Value::Map one_mib_arena() {
  Value::Map m;
  m.emplace("arena_bytes", Value(static_cast<int64_t>(kMiB)));
  m.emplace("max_payload_bytes", Value(static_cast<int64_t>(8 * kMiB)));
  return m;
}

Result<PayloadView> get_by_key(Connector& c, const PayloadKey& k, Deadline deadline,
                               bool writable = false) {
  return c.get(k, deadline, GetOptions{writable});
}

std::string entry_file(const std::string& ns, const PayloadKey& k) {
  return shm::KeyIndex::directory() + "/" + shm::KeyIndex(ns).entry_name(k);
}

// In the index's table or its files (looking sweeps nothing).
bool in_index(const std::string& ns, const PayloadKey& k) {
  return shm::KeyIndex(ns).holds(k);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> index_names() {
  std::vector<std::string> names;
  DIR* d = ::opendir(shm::KeyIndex::directory().c_str());
  if (d == nullptr) return names;
  while (const dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

// The index's temporary and claimed files of process `pid` (their names carry its pid).
std::vector<std::string> leftovers_of(pid_t pid) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(pid));
  std::vector<std::string> out;
  for (const std::string& n : index_names()) {
    if (n.size() == 50 && n[0] == '.' && n.compare(18, 16, hex) == 0) out.push_back(n);
  }
  return out;
}

// Those of `keys` whose entries are in the index.
std::vector<std::string> present(const std::string& ns, const std::vector<PayloadKey>& keys) {
  std::vector<std::string> out;
  for (const PayloadKey& k : keys) {
    if (in_index(ns, k)) out.push_back(k.str());
  }
  return out;
}

// This process's mappings, and those of them that are private mappings of payload segments
// (the copy-on-write views).
struct MapCounts {
  size_t all = 0, private_segments = 0;
};
MapCounts map_counts() {
  std::ifstream maps("/proc/self/maps");
  MapCounts n;
  for (std::string line; std::getline(maps, line);) {
    ++n.all;
    if (line.find(" rw-p ") != std::string::npos &&
        line.find("/memfd:omniconn-segment") != std::string::npos) {
      ++n.private_segments;
    }
  }
  return n;
}

// The /proc/self/maps line whose range holds `p` ("" when none).
std::string mapping_of(const void* p) {
  auto addr = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &start, &end) == 2 && addr >= start && addr < end) {
      return line;
    }
  }
  return "";
}

std::string perms_of(const void* p) {
  std::string line = mapping_of(p);
  size_t sp = line.find(' ');
  return sp == std::string::npos ? "" : line.substr(sp + 1, 4);
}

// The tensor bytes of a view, writable (the view was taken with GetOptions{true}).
std::span<std::byte> data_of(const PayloadView& v) {
  const TensorView* t = v.reader().find("data");
  if (t == nullptr) return {};
  return {const_cast<std::byte*>(t->data.data()), t->data.size()};
}

// Keys no file system likes as names: the index hashes them.
std::vector<PayloadKey> odd_keys() {
  return {
      {"req/with/slashes", "a", "b"},
      {"..", "a", "b"},
      {"../../../../etc/passwd", "../x", "/"},
      {".", "..", "."},
      {std::string(300, 'k'), std::string(300, '/'), std::string(300, '.')},
      {"ключ-鍵-🔑", "стадия", "段階"},
      {std::string("nul\0and\nnewline", 15), "a", "b"},
      {"req-1_0_3_1_0", "0", "1"},  // vllm-omni's rank-aware shape
  };
}

class ShmKeyIndex : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = unique_namespace(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string ns_;
};

// --- (a) by key, across processes ----------------------------------------------------------

TEST_F(ShmKeyIndex, OddKeysAreFoundByKeyInAnotherProcess) {
  const std::vector<PayloadKey> keys = odd_keys();
  for (const PayloadKey& k : keys) {
    std::string name = shm::KeyIndex(ns_).entry_name(k);
    ASSERT_EQ(name.size(), 33u) << k.str();
    EXPECT_EQ(name.find_first_not_of("0123456789abcdef", 1), std::string::npos) << name;
  }
  MsgPipe put, done;
  pid_t writer = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    for (size_t i = 0; i < keys.size(); ++i) {
      TestPayload small(kInlineBytes, 2 * i), big(kRefBytes, 2 * i + 1);
      PayloadKey small_key = keys[i];
      small_key.to_stage += "-inline";
      CHILD_OK(c->put(small_key, small.builder, deadline_in(2s)));
      CHILD_OK(c->put(keys[i], big.builder, deadline_in(2s)));
    }
    put.write("put");
    std::string msg;
    CHILD_CHECK(done.read(&msg));
    return 0;
  });
  std::string msg;
  ASSERT_TRUE(put.read(&msg));
  auto r = make_shm(ns_);
  ASSERT_NE(r, nullptr);
  for (size_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE(keys[i].str());
    PayloadKey small_key = keys[i];
    small_key.to_stage += "-inline";
    ASSERT_TRUE(in_index(ns_, keys[i]));
    auto big = get_by_key(*r, keys[i], deadline_in(5s));
    ASSERT_TRUE(big.ok()) << big.status().ToString();
    EXPECT_EQ(verify_payload(*big, kRefBytes, 2 * i + 1), "");
    EXPECT_EQ(big->key(), keys[i]);
    auto small = get_by_key(*r, small_key, deadline_in(5s));
    ASSERT_TRUE(small.ok()) << small.status().ToString();
    EXPECT_EQ(verify_payload(*small, kInlineBytes, 2 * i), "");
    EXPECT_FALSE(in_index(ns_, keys[i]));  // taken: the entry went with it
    EXPECT_FALSE(in_index(ns_, small_key));
  }
  done.write("done");
  EXPECT_EQ(wait_child(writer, 20s), 0);
  EXPECT_EQ(present(ns_, keys), std::vector<std::string>{});
}

// vllm-omni's rank-aware keys: two writers (ranks) each put a chunk for each of two readers;
// every reader reads the keys of both writers, started before any was put.
TEST_F(ShmKeyIndex, TwoWritersTwoReadersWithRankAwareKeys) {
  constexpr int kChunks = 6;
  auto key_of = [](int chunk, int from, int to) {
    return PayloadKey{
        "req7_1_" + std::to_string(chunk) + "_" + std::to_string(from) + "_" + std::to_string(to),
        "1", "2"};
  };
  auto seq_of = [](int chunk, int from, int to) {
    return static_cast<uint64_t>(100 * from + 10 * to + chunk);
  };
  auto size_of = [](int chunk) { return chunk % 2 == 0 ? kInlineBytes : kRefBytes; };
  MsgPipe go[2], done[2];  // one pipe per child: two readers of one pipe split its frames
  std::vector<pid_t> readers, writers;
  for (int to = 0; to < 2; ++to) {
    readers.push_back(spawn([&, to] {
      auto c = make_shm(ns_);
      CHILD_CHECK(c != nullptr);
      for (int chunk = 0; chunk < kChunks; ++chunk) {
        for (int from = 0; from < 2; ++from) {
          auto v = get_by_key(*c, key_of(chunk, from, to), deadline_in(20s));
          CHILD_OK(v);
          CHILD_EMPTY(verify_payload(*v, size_of(chunk), seq_of(chunk, from, to)));
        }
      }
      return 0;
    }));
  }
  for (int from = 0; from < 2; ++from) {
    writers.push_back(spawn([&, from] {
      auto c = make_shm(ns_);
      CHILD_CHECK(c != nullptr);
      std::string msg;
      CHILD_CHECK(go[from].read(&msg));
      for (int chunk = 0; chunk < kChunks; ++chunk) {
        for (int to = 0; to < 2; ++to) {
          TestPayload p(size_of(chunk), seq_of(chunk, from, to));
          CHILD_OK(c->put(key_of(chunk, from, to), p.builder, deadline_in(5s)));
        }
      }
      CHILD_CHECK(done[from].read(&msg));  // payloads live in the writer: stay until they are read
      return 0;
    }));
  }
  std::this_thread::sleep_for(50ms);  // the readers are polling by now
  for (const MsgPipe& p : go) p.write("go");
  for (pid_t pid : readers) EXPECT_EQ(wait_child(pid, 30s), 0);
  for (const MsgPipe& p : done) p.write("done");
  for (pid_t pid : writers) EXPECT_EQ(wait_child(pid, 10s), 0);
}

// --- (b) a missing key ---------------------------------------------------------------------

TEST_F(ShmKeyIndex, MissingKeyTimesOutAtTheDeadlineNotBefore) {
  auto c = make_shm(ns_);
  ASSERT_NE(c, nullptr);
  const PayloadKey k{"never-put", "0", "1"};
  for (auto wait : {0ms, 300ms}) {
    SCOPED_TRACE(wait.count());
    auto t0 = Clock::now();
    auto v = get_by_key(*c, k, t0 + wait);
    auto took = Clock::now() - t0;
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), StatusCode::kTimeout) << v.status().ToString();
    EXPECT_NE(v.status().message().find(k.str()), std::string::npos) << v.status().ToString();
    EXPECT_NE(v.status().message().find("namespace '" + ns_ + "'"), std::string::npos);
    EXPECT_GE(took, wait);
    EXPECT_LT(took, wait + kSlack);
  }
  // A key no put accepts is refused at once, not waited for.
  auto t0 = Clock::now();
  auto bad = get_by_key(*c, PayloadKey{"", "0", "1"}, deadline_in(5s));
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
  EXPECT_LT(Clock::now() - t0, kSlack);
  // Another namespace's payload is not this one's.
  auto other = make_shm(ns_ + "-other");
  TestPayload p(kRefBytes, 1);
  ASSERT_TRUE(other->put(k, p.builder, deadline_in(2s)).ok());
  EXPECT_EQ(get_by_key(*c, k, deadline_in(100ms)).status().code(), StatusCode::kTimeout);
}

// --- (c) taken once ------------------------------------------------------------------------

TEST_F(ShmKeyIndex, TwoReadersOfOneKeyGetItOnce) {
  constexpr uint64_t kKeys = 40;
  auto w = make_shm(ns_);
  ASSERT_NE(w, nullptr);
  std::vector<Descriptor> descs;
  for (uint64_t i = 0; i < kKeys; ++i) {
    TestPayload p(i % 2 ? kRefBytes : kInlineBytes, i);
    auto d = w->put(PayloadKey{"req-" + std::to_string(i), "0", "1"}, p.builder, deadline_in(2s));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    descs.push_back(*d);
  }
  MsgPipe go[2], got;  // one go pipe per reader: two readers of one pipe split its frames
  std::vector<pid_t> readers;
  for (int r = 0; r < 2; ++r) {
    readers.push_back(spawn([&, r] {
      auto c = make_shm(ns_);
      CHILD_CHECK(c != nullptr);
      std::string msg, mine;
      CHILD_CHECK(go[r].read(&msg));
      for (uint64_t i = 0; i < kKeys; ++i) {  // both race for every key, in the same order
        auto v = get_by_key(*c, PayloadKey{"req-" + std::to_string(i), "0", "1"}, Clock::now());
        if (!v.ok()) {
          CHILD_CHECK(v.status().code() == StatusCode::kTimeout);
          continue;
        }
        CHILD_EMPTY(verify_payload(*v, i % 2 ? kRefBytes : kInlineBytes, i));
        mine += std::to_string(i) + ",";
      }
      got.write(mine);
      return 0;
    }));
  }
  for (const MsgPipe& p : go) p.write("go");
  std::multiset<uint64_t> taken;
  for (int r = 0; r < 2; ++r) {
    std::string mine;
    ASSERT_TRUE(got.read(&mine));
    for (size_t at = 0, comma; (comma = mine.find(',', at)) != std::string::npos; at = comma + 1) {
      taken.insert(std::stoull(mine.substr(at, comma - at)));
    }
  }
  for (pid_t pid : readers) EXPECT_EQ(wait_child(pid, 20s), 0);
  ASSERT_EQ(taken.size(), kKeys);  // every key once, none twice
  for (uint64_t i = 0; i < kKeys; ++i) EXPECT_EQ(taken.count(i), 1u) << i;
  // Taken by key: its descriptor finds nothing (inline descriptors carry their bytes).
  for (uint64_t i = 1; i < kKeys; i += 2) {
    EXPECT_EQ(w->get(descs[i], deadline_in(1s)).status().code(), StatusCode::kNotFound) << i;
  }
}

TEST_F(ShmKeyIndex, PayloadTakenByDescriptorIsGoneByKey) {
  auto w = make_shm(ns_);
  auto r = make_shm(ns_);
  ASSERT_TRUE(w && r);
  for (size_t n : {kInlineBytes, kRefBytes, kLargeInlineBytes}) {
    const PayloadKey k{"req-" + std::to_string(n), "0", "1"};
    TestPayload p(n, n);
    auto d = w->put(k, p.builder, deadline_in(2s));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_TRUE(in_index(ns_, k));
    EXPECT_FALSE(exists(entry_file(ns_, k)));  // in the table: small and large slots
    auto v = r->get(*d, deadline_in(2s));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_FALSE(in_index(ns_, k));
    EXPECT_EQ(get_by_key(*r, k, deadline_in(50ms)).status().code(), StatusCode::kTimeout);
  }
}

// Keys whose table windows start at the same slot, small and large (the entry name carries
// the key's hash; the large slots' count divides the small ones').
std::vector<PayloadKey> colliding_keys(const std::string& ns, size_t n,
                                       const std::string& prefix = "c-") {
  std::vector<PayloadKey> out;
  std::optional<uint64_t> start;
  for (int i = 0; out.size() < n && i < 10'000'000; ++i) {
    PayloadKey k{prefix + std::to_string(i), "0", "1"};
    const uint64_t lo = std::stoull(shm::KeyIndex(ns).entry_name(k).substr(17), nullptr, 16);
    if (!start) start = lo % shm::KeyTable::kSlots;
    if (lo % shm::KeyTable::kSlots == *start) out.push_back(k);
  }
  return out;
}

// More keys than a window holds, for a small and for a large slot: the rest go to files, and
// every one is found once, by key.
TEST_F(ShmKeyIndex, FullWindowSpillsToFiles) {
  const size_t n = shm::KeyTable::kWindow + 4;
  auto w = make_shm(ns_);
  auto r = make_shm(ns_);
  ASSERT_TRUE(w && r);
  for (size_t bytes : {kInlineBytes, kLargeInlineBytes}) {
    SCOPED_TRACE(bytes);
    const std::vector<PayloadKey> keys = colliding_keys(ns_, n, "c" + std::to_string(bytes) + "-");
    ASSERT_EQ(keys.size(), n);
    size_t files = 0;
    for (size_t i = 0; i < n; ++i) {
      TestPayload p(bytes, i);
      ASSERT_TRUE(w->put(keys[i], p.builder, deadline_in(2s)).ok());
      files += exists(entry_file(ns_, keys[i]));
    }
    // Other tests' leftovers in the window only push more of them to files.
    EXPECT_GE(files, n - shm::KeyTable::kWindow);
    for (size_t i = 0; i < n; ++i) {
      auto v = get_by_key(*r, keys[i], deadline_in(2s));
      ASSERT_TRUE(v.ok()) << keys[i].str() << ": " << v.status().ToString();
      EXPECT_EQ(verify_payload(*v, bytes, i), "");
      EXPECT_FALSE(in_index(ns_, keys[i]));
    }
    EXPECT_EQ(present(ns_, keys), std::vector<std::string>{});
  }
}

// A key put small, then large, then small again: the newest is the one found, once.
TEST_F(ShmKeyIndex, ANewerPutReplacesTheKeysEntryAcrossSlotSizes) {
  auto w = make_shm(ns_);
  auto r = make_shm(ns_);
  ASSERT_TRUE(w && r);
  const PayloadKey k{"resized", "0", "1"};
  const size_t sizes[] = {kInlineBytes, kLargeInlineBytes, kInlineBytes + 8};
  for (size_t i = 0; i < 3; ++i) {
    TestPayload p(sizes[i], i);
    ASSERT_TRUE(w->put(k, p.builder, deadline_in(2s)).ok());
  }
  auto v = get_by_key(*r, k, deadline_in(2s));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(verify_payload(*v, sizes[2], 2), "");
  EXPECT_EQ(get_by_key(*r, k, deadline_in(50ms)).status().code(), StatusCode::kTimeout);
}

// Writers and claimers racing on one window: every entry is claimed exactly once, intact.
TEST_F(ShmKeyIndex, TableEntriesAreClaimedOnceUnderRaces) {
  constexpr int kWriters = 2, kPerWriter = 2000;
  const std::vector<PayloadKey> keys = colliding_keys(ns_, 8);
  ASSERT_EQ(keys.size(), 8u);
  shm::KeyIndex index(ns_);
  std::atomic<int> claimed{0}, bad{0};
  std::atomic<bool> done{false};
  auto descriptor = [](int w, int i) {
    return std::string(200 + (i % 50), static_cast<char>('a' + w)) + std::to_string(i);
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        const PayloadKey& k = keys[static_cast<size_t>(w * 4 + i % 4)];
        // A key still unclaimed is replaced: count only what a claimer can get.
        while (index.holds(k) && !done.load()) std::this_thread::yield();
        if (!index.publish(k, 100 + static_cast<uint64_t>(w), descriptor(w, i)).ok()) ++bad;
      }
    });
  }
  threads.emplace_back([&] {
    const auto end = Clock::now() + 20s;
    while (claimed.load() < kWriters * kPerWriter && Clock::now() < end) {
      for (const PayloadKey& k : keys) {
        auto e = index.claim(k);
        if (!e.ok() || !e->has_value()) continue;
        const auto& d = (*e)->descriptor;
        const int w = static_cast<int>((*e)->producer_id) - 100;
        const bool ok = w >= 0 && w < kWriters && d.size() > 200 &&
                        d == descriptor(w, std::stoi(d.substr(d.find_first_of("0123456789"))));
        bad += !ok;
        ++claimed;
      }
    }
    done = true;
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(claimed.load(), kWriters * kPerWriter);
}

// A /dev/shm without room for the table (a container's small one): opening it is an error the
// index turns into entry files, never a mapping whose first write is a SIGBUS.
TEST_F(ShmKeyIndex, TableWithoutRoomIsRefusedAtOpen) {
  char dir[] = "/tmp/omniconn-small-tmpfs-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  if (::mount("omniconn-test", dir, "tmpfs", 0, "size=1m,mode=0700") != 0) {
    const int err = errno;
    ::rmdir(dir);
    GTEST_SKIP() << "cannot mount a 1 MiB tmpfs here (" << std::strerror(err)
                 << "): needs root and mount rights";
  }
  const int dfd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  auto table = shm::KeyTable::open(dfd);
  EXPECT_FALSE(table.ok());
  if (!table.ok()) {
    EXPECT_EQ(table.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(table.status().message().find("reserving"), std::string::npos)
        << table.status().ToString();
  }
  ::close(dfd);
  ::umount2(dir, MNT_DETACH);
  ::rmdir(dir);
}

// --- (d) a dead writer ---------------------------------------------------------------------

TEST_F(ShmKeyIndex, DeadWritersEntryIsRefusedWithWhyAndRemoved) {
  auto r = make_shm(ns_);
  ASSERT_NE(r, nullptr);
  // The reader's index is open (and swept) before the writer puts: its entries stay for the
  // claim to judge.
  EXPECT_EQ(get_by_key(*r, {"none", "0", "1"}, Clock::now()).status().code(), StatusCode::kTimeout);
  const std::vector<PayloadKey> keys = {{"small", "0", "1"}, {"big", "0", "1"}};
  MsgPipe put;
  pid_t writer = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    TestPayload small(kInlineBytes, 1), big(kRefBytes, 2);
    CHILD_OK(c->put(keys[0], small.builder, deadline_in(2s)));
    CHILD_OK(c->put(keys[1], big.builder, deadline_in(2s)));
    put.write("put");
    std::_Exit(0);  // no destructor, no close: the entries stay behind
    return 0;
  });
  std::string msg;
  ASSERT_TRUE(put.read(&msg));
  ASSERT_EQ(wait_child(writer, 10s), 0);
  for (const PayloadKey& k : keys) {
    SCOPED_TRACE(k.str());
    ASSERT_TRUE(in_index(ns_, k));
    auto t0 = Clock::now();
    auto v = get_by_key(*r, k, deadline_in(200ms));
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), StatusCode::kTimeout);
    EXPECT_NE(v.status().message().find("refused one"), std::string::npos) << v.status().ToString();
    EXPECT_NE(v.status().message().find("gone"), std::string::npos) << v.status().ToString();
    EXPECT_LT(Clock::now() - t0, 200ms + kSlack);
    EXPECT_FALSE(in_index(ns_, k));
    auto again = get_by_key(*r, k, deadline_in(50ms));
    EXPECT_EQ(again.status().code(), StatusCode::kTimeout);
    EXPECT_EQ(again.status().message().find("refused"), std::string::npos)
        << again.status().ToString();
  }
  EXPECT_EQ(leftovers_of(::getpid()), std::vector<std::string>{});
}

// A reader out of file descriptors fails, but leaves the entry for a later try.
TEST_F(ShmKeyIndex, ReaderOutOfFdsLeavesTheEntry) {
  auto w = make_shm(ns_);
  ASSERT_NE(w, nullptr);
  const std::vector<std::pair<PayloadKey, size_t>> payloads = {{{"inline", "0", "1"}, kInlineBytes},
                                                               {{"ref", "0", "1"}, kRefBytes}};
  for (size_t i = 0; i < payloads.size(); ++i) {
    TestPayload p(payloads[i].second, i);
    ASSERT_TRUE(w->put(payloads[i].first, p.builder, deadline_in(2s)).ok());
  }
  pid_t reader = spawn([&] {
    auto r = make_shm(ns_);
    CHILD_CHECK(r != nullptr);
    CHILD_CHECK(!get_by_key(*r, {"none", "0", "1"}, Clock::now()).ok());  // opens the index
    rlimit saved{};
    CHILD_CHECK(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    for (size_t i = 0; i < payloads.size(); ++i) {
      int lowest_free = ::dup(0);
      CHILD_CHECK(lowest_free >= 0);
      ::close(lowest_free);
      rlimit none{static_cast<rlim_t>(lowest_free), saved.rlim_max};
      CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &none) == 0);
      auto failed = get_by_key(*r, payloads[i].first, deadline_in(100ms));
      CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
      CHILD_CHECK(!failed.ok());
      auto v = get_by_key(*r, payloads[i].first, deadline_in(2s));
      CHILD_OK(v);
      CHILD_EMPTY(verify_payload(*v, payloads[i].second, i));
    }
    return 0;
  });
  EXPECT_EQ(wait_child(reader, 20s), 0);
}

// --- (e) entries go with their request and their connector ---------------------------------

TEST_F(ShmKeyIndex, CleanupAndCloseRemoveTheirEntries) {
  std::vector<PayloadKey> a, b;
  for (const char* to : {"1", "2"}) {
    a.push_back({"req-A", "0", to});
    b.push_back({"req-B", "0", to});
  }
  const PayloadKey shared{"req-A", "0", "shared"};  // replaced by another writer's put
  auto r = make_shm(ns_);
  auto other = make_shm(ns_);
  ASSERT_TRUE(r && other);
  {
    auto w = make_shm(ns_);
    ASSERT_NE(w, nullptr);
    uint64_t seq = 0;
    for (const auto* keys : {&a, &b}) {
      for (const PayloadKey& k : *keys) {
        TestPayload small(kInlineBytes, seq++), big(kRefBytes, seq++);
        ASSERT_TRUE(w->put(k, small.builder, deadline_in(2s)).ok());  // replaced by the next
        ASSERT_TRUE(w->put(k, big.builder, deadline_in(2s)).ok());
      }
    }
    TestPayload mine(kRefBytes, 50), theirs(kRefBytes, 51);
    ASSERT_TRUE(w->put(shared, mine.builder, deadline_in(2s)).ok());
    ASSERT_TRUE(other->put(shared, theirs.builder, deadline_in(2s)).ok());
    EXPECT_EQ(present(ns_, a).size(), a.size());
    ASSERT_TRUE(w->cleanup("req-A").ok());
    EXPECT_EQ(present(ns_, a), std::vector<std::string>{});
    EXPECT_EQ(present(ns_, b).size(), b.size());
    EXPECT_TRUE(in_index(ns_, shared));  // not w's entry any more: left alone
    EXPECT_EQ(get_by_key(*r, a[0], deadline_in(50ms)).status().code(), StatusCode::kTimeout);
  }
  EXPECT_EQ(present(ns_, b), std::vector<std::string>{});  // w is gone, and its entries
  auto v = get_by_key(*r, shared, deadline_in(2s));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(verify_payload(*v, kRefBytes, 51), "");
  other.reset();
  std::vector<PayloadKey> all = a;
  all.insert(all.end(), b.begin(), b.end());
  all.push_back(shared);
  EXPECT_EQ(present(ns_, all), std::vector<std::string>{});
  EXPECT_EQ(leftovers_of(::getpid()), std::vector<std::string>{});
}

// --- (f) copy-on-write views ---------------------------------------------------------------

// A writer (child) fills a loan and keeps a pointer to its arena bytes; the reader (here)
// writes into its writable view; the writer's shared bytes do not change, and the next
// payload in the same range reads as itself, in a read-only and in a writable view.
TEST_F(ShmKeyIndex, WritableViewWritesStayInTheView) {
  const PayloadKey k1{"req-1", "0", "1"}, k2{"req-2", "0", "1"};
  MsgPipe to_reader, to_writer;
  pid_t writer = spawn([&] {
    auto c = make_shm(ns_);
    CHILD_CHECK(c != nullptr);
    TestPayload p(kRefBytes, 1);
    auto loan = c->loan(p.builder.encoded_size(), deadline_in(2s));
    CHILD_OK(loan);
    CHILD_OK(p.builder.write_to(loan->bytes()));
    std::span<const std::byte> shared = loan->bytes();
    auto d1 = c->commit(std::move(*loan), k1, deadline_in(2s));
    CHILD_OK(d1);
    std::vector<std::byte> before(shared.begin(), shared.end());
    to_reader.write("1");
    std::string msg;
    CHILD_CHECK(to_writer.read(&msg) && msg == "written");
    CHILD_CHECK(std::equal(before.begin(), before.end(), shared.begin()));
    CHILD_CHECK(to_writer.read(&msg) && msg == "released");
    CHILD_OK(c->sweep(deadline_in(1s)));
    TestPayload p2(kRefBytes, 2);
    auto d2 = c->put(k2, p2.builder, deadline_in(2s));
    CHILD_OK(d2);
    auto dec1 = shm::decode_descriptor(std::as_bytes(std::span(d1->bytes)));
    auto dec2 = shm::decode_descriptor(std::as_bytes(std::span(d2->bytes)));
    CHILD_CHECK(dec1.ok() && dec2.ok() && dec1->ref.offset == dec2->ref.offset);  // reused
    to_reader.write(d2->bytes);
    CHILD_CHECK(to_writer.read(&msg));
    return 0;
  });
  auto r = make_shm(ns_);
  ASSERT_NE(r, nullptr);
  std::string msg;
  ASSERT_TRUE(to_reader.read(&msg));
  {
    auto v = get_by_key(*r, k1, deadline_in(5s), /*writable=*/true);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(perms_of(v->bytes().data()), "rw-p") << mapping_of(v->bytes().data());
    auto data = data_of(*v);
    ASSERT_EQ(data.size(), kRefBytes);
    std::fill(data.begin(), data.end(), std::byte{0xA5});         // no SIGSEGV
    const_cast<std::byte*>(v->bytes().data())[0] = std::byte{0};  // the header too
    EXPECT_EQ(std::count(data.begin(), data.end(), std::byte{0xA5}),
              static_cast<ptrdiff_t>(kRefBytes));
    to_writer.write("written");
  }
  ASSERT_TRUE(r->sweep(deadline_in(1s)).ok());
  to_writer.write("released");
  std::string d2;
  ASSERT_TRUE(to_reader.read(&d2));
  {
    auto ro = r->get(Descriptor{d2}, deadline_in(5s), GetOptions{false});
    ASSERT_TRUE(ro.ok()) << ro.status().ToString();
    EXPECT_EQ(verify_payload(*ro, kRefBytes, 2), "");
    EXPECT_EQ(perms_of(ro->bytes().data()), "r--s") << mapping_of(ro->bytes().data());
    EXPECT_NE(mapping_of(ro->bytes().data()).find("/memfd:omniconn-segment"), std::string::npos);
  }
  to_writer.write("done");
  EXPECT_EQ(wait_child(writer, 20s), 0);
}

// Writable and read-only views of every kind of payload: inline (a private copy), arena and
// dedicated segment (copy-on-write mappings), by key and by descriptor.
TEST_F(ShmKeyIndex, WritableAndReadOnlyViewsOfEveryKind) {
  auto w = make_shm(ns_, one_mib_arena());
  auto r = make_shm(ns_);
  ASSERT_TRUE(w && r);
  uint64_t seq = 0;
  for (size_t n : {kInlineBytes, kRefBytes, kBigBytes}) {
    for (bool by_key : {false, true}) {
      for (bool writable : {false, true}) {
        SCOPED_TRACE(std::to_string(n) + (by_key ? " by key" : " by descriptor") +
                     (writable ? " writable" : " read-only"));
        const PayloadKey k{"req-" + std::to_string(++seq), "0", "1"};
        TestPayload p(n, seq);
        auto d = w->put(k, p.builder, deadline_in(2s));
        ASSERT_TRUE(d.ok()) << d.status().ToString();
        auto v = by_key ? get_by_key(*r, k, deadline_in(2s), writable)
                        : r->get(*d, deadline_in(2s), GetOptions{writable});
        ASSERT_TRUE(v.ok()) << v.status().ToString();
        EXPECT_EQ(verify_payload(*v, n, seq), "");
        const std::string perms = perms_of(data_of(*v).data());
        if (n == kInlineBytes) {
          EXPECT_EQ(perms, "rw-p");  // the view's own copy either way
        } else {
          EXPECT_EQ(perms, writable ? "rw-p" : "r--s") << mapping_of(data_of(*v).data());
        }
        if (writable) {
          auto data = data_of(*v);
          std::fill(data.begin(), data.end(), std::byte{0x5A});
          EXPECT_EQ(data[n / 2], std::byte{0x5A});
        }
        EXPECT_FALSE(in_index(ns_, k));
      }
    }
  }
}

// A writable view's mapping goes with its last copy: many views later, no more mappings.
TEST_F(ShmKeyIndex, WritableViewsLeaveNoMappings) {
  auto w = make_shm(ns_, one_mib_arena());
  auto r = make_shm(ns_);
  ASSERT_TRUE(w && r);
  auto round = [&](uint64_t seq, size_t n) {
    TestPayload p(n, seq);
    auto d = w->put(PayloadKey{"req-" + std::to_string(seq), "0", "1"}, p.builder, deadline_in(2s));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    auto v = r->get(*d, deadline_in(2s), GetOptions{true});
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    auto data = data_of(*v);
    std::fill(data.begin(), data.end(), std::byte{0x77});
    PayloadView copy = *v;  // copies share the one mapping
    v->release();
    EXPECT_EQ(data_of(copy)[0], std::byte{0x77});
    EXPECT_EQ(map_counts().private_segments, 1u);  // the view's own, while a copy lives
  };
  round(0, kRefBytes);  // maps the arena and the dedicated machinery once
  round(1, kBigBytes);
  ASSERT_TRUE(w->sweep(deadline_in(1s)).ok());
  const MapCounts before = map_counts();
  for (uint64_t seq = 2; seq < 66; ++seq) {
    round(seq, seq % 8 == 0 ? kBigBytes : kRefBytes);
    if (HasFatalFailure()) return;
  }
  ASSERT_TRUE(w->sweep(deadline_in(1s)).ok());
  const MapCounts after = map_counts();
  EXPECT_EQ(after.private_segments, 0u);
  EXPECT_EQ(before.private_segments, 0u);
  EXPECT_LE(after.all, before.all + 8);  // slack for the allocator's (and a sanitizer's) own
  EXPECT_EQ(w->metrics().in_flight, 0u);
}

// --- Sweeping what dead processes left ------------------------------------------------------

// A temporary or claimed file name of process `pid` (as shm_key_index.cc makes them).
std::string leftover_name(char kind, pid_t pid) {
  char name[64];
  std::snprintf(name, sizeof name, ".%c%016llx%016llx%016llx", kind, 0x1234abcdULL,
                static_cast<unsigned long long>(pid), 7ULL);
  return name;
}

void touch(const std::string& name) {
  int fd = ::open((shm::KeyIndex::directory() + "/" + name).c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << name;
  ::close(fd);
}

// How many sweeps of `batch` names reach every name of the directory.
int sweeps_to_cover(size_t batch) {
  return static_cast<int>(index_names().size() / batch) + 2;
}

TEST_F(ShmKeyIndex, SweepRemovesOnlyWhatDeadProcessesLeft) {
  auto live = make_shm(ns_);
  ASSERT_NE(live, nullptr);
  const PayloadKey live_key{"live", "0", "1"}, dead_key{"dead", "0", "1"};
  TestPayload p(kRefBytes, 1);
  ASSERT_TRUE(live->put(live_key, p.builder, deadline_in(2s)).ok());
  // An entry of a writer id that nobody listens on, left by a process that is gone (its
  // KeyIndex is never destroyed, as after a crash).
  pid_t dead = spawn([&] {
    auto* planter = new shm::KeyIndex(ns_);
    return planter->publish(dead_key, shm::random_u64() | 1, "not a descriptor").ok() ? 0 : 1;
  });
  ASSERT_EQ(wait_child(dead), 0);
  // The same from a process that lives (another network namespace: nobody can be heard):
  // its entry stays.
  const PayloadKey unheard_key{"unheard", "0", "1"};
  shm::KeyIndex unheard(ns_);
  ASSERT_TRUE(unheard.publish(unheard_key, shm::random_u64() | 1, "not a descriptor").ok());
  const std::vector<std::string> dead_files = {leftover_name('t', dead), leftover_name('c', dead)};
  const std::string own_file = leftover_name('t', ::getpid());
  for (const std::string& f : dead_files) touch(f);
  touch(own_file);
  const std::string dir = shm::KeyIndex::directory() + "/";
  // Too young for a sweep that wants a minute: everything stays.
  shm::KeyIndex patient(ns_, shm::SweepPolicy{std::chrono::minutes(1), 1h, 256});
  for (int i = 0; i < sweeps_to_cover(256); ++i) ASSERT_TRUE(patient.sweep().ok());
  EXPECT_TRUE(in_index(ns_, dead_key));
  for (const std::string& f : dead_files) EXPECT_TRUE(exists(dir + f)) << f;
  // Old enough (any age): the dead writer's entry and the dead process's files go.
  shm::KeyIndex sweeper(ns_, shm::SweepPolicy{0ms, 1h, 16});
  for (int i = 0; i < sweeps_to_cover(16); ++i) ASSERT_TRUE(sweeper.sweep().ok());
  EXPECT_FALSE(in_index(ns_, dead_key));
  for (const std::string& f : dead_files) EXPECT_FALSE(exists(dir + f)) << f;
  EXPECT_TRUE(in_index(ns_, live_key));     // its writer lives
  EXPECT_TRUE(in_index(ns_, unheard_key));  // its process lives
  EXPECT_TRUE(exists(dir + own_file));      // its process lives
  ::unlink((dir + own_file).c_str());
  auto r = make_shm(ns_);
  auto v = get_by_key(*r, live_key, deadline_in(2s));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(verify_payload(*v, kRefBytes, 1), "");
}

// A writer killed with its payloads unread: once they are older than the sweep's minimum age,
// the next connector's first use of the index removes them, and a live writer's stay.
TEST_F(ShmKeyIndex, KilledWritersEntriesAreSweptByTheNextConnector) {
  constexpr int kDead = 24, kLive = 4;
  std::vector<PayloadKey> dead_keys, live_keys;
  for (int i = 0; i < kDead; ++i) dead_keys.push_back({"dead-" + std::to_string(i), "0", "1"});
  for (int i = 0; i < kLive; ++i) live_keys.push_back({"live-" + std::to_string(i), "0", "1"});
  auto writer = [&](const std::vector<PayloadKey>& keys, const MsgPipe& put, const MsgPipe& done) {
    return spawn([&] {
      auto c = make_shm(ns_);
      CHILD_CHECK(c != nullptr);
      for (size_t i = 0; i < keys.size(); ++i) {
        TestPayload p(i % 2 ? kRefBytes : kInlineBytes, i);
        CHILD_OK(c->put(keys[i], p.builder, deadline_in(2s)));
      }
      put.write("put");
      std::string msg;
      CHILD_CHECK(done.read(&msg));
      return 0;
    });
  };
  MsgPipe dead_put, dead_done, live_put, live_done;
  pid_t live = writer(live_keys, live_put, live_done);
  pid_t doomed = writer(dead_keys, dead_put, dead_done);
  std::string msg;
  ASSERT_TRUE(live_put.read(&msg));
  ASSERT_TRUE(dead_put.read(&msg));
  const auto put_at = Clock::now();
  ::kill(doomed, SIGKILL);
  EXPECT_EQ(wait_child(doomed, 10s), 128 + SIGKILL);
  EXPECT_EQ(present(ns_, dead_keys).size(), dead_keys.size());  // younger than the minimum age
  std::this_thread::sleep_until(put_at + shm::SweepPolicy{}.min_age + 200ms);
  auto c = make_shm(ns_);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(get_by_key(*c, {"nothing", "0", "1"}, Clock::now()).status().code(),
            StatusCode::kTimeout);  // the connector's first use of the index: it sweeps
  auto left = present(ns_, dead_keys);
  if (!left.empty() && index_names().size() > shm::SweepPolicy{}.batch) {
    live_done.write("done");
    wait_child(live, 10s);
    GTEST_SKIP() << "the index holds " << index_names().size() << " names, more than one sweep "
                 << "reads: this test's entries may come in a later sweep";
  }
  EXPECT_EQ(left, std::vector<std::string>{});
  EXPECT_EQ(present(ns_, live_keys).size(), live_keys.size());
  for (int i = 0; i < kLive; ++i) {
    auto v = get_by_key(*c, live_keys[static_cast<size_t>(i)], deadline_in(2s));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(verify_payload(*v, i % 2 ? kRefBytes : kInlineBytes, static_cast<uint64_t>(i)), "");
  }
  live_done.write("done");
  EXPECT_EQ(wait_child(live, 10s), 0);
}

}  // namespace
}  // namespace omniconn::testing

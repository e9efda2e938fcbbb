// The connector conformance suite (conformance.h): every connector type runs these tests,
// producers and consumers in separate real processes. A target that is not available on this
// machine is skipped with the reason.
#include <dirent.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include <filesystem>

#include "core/conformance.h"
#include "omniconn/connector.h"
#include "omniconn/stream.h"
#include "test_util.h"

namespace omniconn::testing {
namespace {

using namespace std::chrono_literals;

constexpr size_t kMiB = size_t{1} << 20;

// Set once a connector of a type that is not usable after fork exists in this process: its
// tests fork children that create their own, so they must run in a process of their own.
bool& fork_hostile_started() {
  static bool started = false;
  return started;
}

// A connector's in-flight count after it swept: what its readers released is counted out.
uint64_t in_flight(Connector& c) {
  EXPECT_TRUE(c.sweep(deadline_in(5s)).ok());
  return c.metrics().in_flight;
}

}  // namespace

void Conformance::SetUp() {
  std::string why = GetParam().skip_reason();
  if (!why.empty()) GTEST_SKIP() << GetParam().name << " not available: " << why;
  auto type = ConnectorRegistry::instance().resolve({GetParam().type, {}, GetParam().plugin});
  ASSERT_TRUE(type.ok()) << type.status().ToString();
  type_ = *type;
  if (!capabilities().usable_after_fork && fork_hostile_started()) {
    GTEST_SKIP() << GetParam().type << " already started in this process and cannot start "
                 << "again in a forked child: run each of its tests in a process of their own "
                    "(ctest does; or --gtest_filter one test)";
  }
  ns_ = unique_namespace(::testing::UnitTest::GetInstance()->current_test_info()->name());
}

void Conformance::TearDown() {
  if (!ns_.empty()) GetParam().teardown(ns_);
}

std::unique_ptr<Connector> Conformance::make(Value::Map overrides) const {
  if (!capabilities().usable_after_fork) fork_hostile_started() = true;
  Value::Map extra = GetParam().extra(ns_);
  for (auto& [k, v] : overrides) extra[k] = v;
  auto c = create_connector({GetParam().type, Value(std::move(extra)), GetParam().plugin});
  if (!c.ok()) {
    ADD_FAILURE() << c.status().ToString();
    return nullptr;
  }
  return std::move(*c);
}

namespace {

PayloadKey key(uint64_t seq, const char* from = "0", const char* to = "1") {
  return PayloadKey{"req-" + std::to_string(seq), from, to};
}

const size_t kThreshold = 65536;
const std::vector<size_t> kSizes = {0,        1,        kThreshold - 1, kThreshold, kThreshold + 1,
                                    1 * kMiB, 64 * kMiB};

TEST_P(Conformance, DescriptorRoundTripAcrossProcessesAllSizes) {
  MsgPipe descs, done;
  pid_t producer = spawn([&] {
    auto c = make();
    CHILD_CHECK(c != nullptr);
    for (size_t i = 0; i < kSizes.size(); ++i) {
      TestPayload p(kSizes[i], i);
      auto d = c->put(key(i), p.builder, deadline_in(10s));
      CHILD_OK(d);
      descs.write(d->bytes);
    }
    std::string msg;
    done.read(&msg);  // stay alive until the consumer is done
    CHILD_CHECK(in_flight(*c) == 0);
    return 0;
  });
  auto c = make();
  for (size_t i = 0; i < kSizes.size(); ++i) {
    std::string bytes;
    ASSERT_TRUE(descs.read(&bytes));
    auto view = c->get(Descriptor{bytes}, deadline_in(10s));
    ASSERT_TRUE(view.ok()) << "size " << kSizes[i] << ": " << view.status().ToString();
    EXPECT_EQ(verify_payload(*view, kSizes[i], i), "") << "size " << kSizes[i];
    EXPECT_EQ(view->key(), key(i));
  }
  done.write("done");
  EXPECT_EQ(wait_child(producer), 0);
}

TEST_P(Conformance, ChannelRoundTripAcrossProcessesAllSizes) {
  pid_t producer = spawn([&] {
    auto c = make();
    CHILD_CHECK(c != nullptr);
    for (size_t i = 0; i < kSizes.size(); ++i) {
      TestPayload p(kSizes[i], i);
      CHILD_OK(c->send(key(i), p.builder, deadline_in(20s)));
    }
    // The ring drains before the writer exits: wait until the consumer released everything.
    while (in_flight(*c) != 0) std::this_thread::sleep_for(1ms);
    auto again = c->recv("1", "0", deadline_in(20s));  // consumer's "done"
    CHILD_OK(again);
    return 0;
  });
  auto c = make();
  for (size_t i = 0; i < kSizes.size(); ++i) {
    auto view = c->recv("0", "1", deadline_in(20s));
    ASSERT_TRUE(view.ok()) << "size " << kSizes[i] << ": " << view.status().ToString();
    EXPECT_EQ(verify_payload(*view, kSizes[i], i), "") << "size " << kSizes[i];
    EXPECT_EQ(view->key(), key(i));
  }
  TestPayload bye(8, 0);
  ASSERT_TRUE(c->send(key(0, "1", "0"), bye.builder, deadline_in(10s)).ok());
  EXPECT_EQ(wait_child(producer), 0);
}

TEST_P(Conformance, EveryDtypeAcrossProcesses) {
  const DType all[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI64,
                       DType::kI32, DType::kI16, DType::kI8,   DType::kU8,  DType::kBool};
  pid_t producer = spawn([&] {
    auto c = make();
    CHILD_CHECK(c != nullptr);
    std::vector<std::vector<std::byte>> storage;
    PayloadBuilder b;
    for (DType dt : all) {
      storage.emplace_back(dtype_size(dt) * 15 * 1000);
      fill_pattern(storage.back().data(), storage.back().size(), static_cast<uint64_t>(dt));
      if (dt == DType::kBool) {
        for (auto& x : storage.back()) x = static_cast<std::byte>(static_cast<uint8_t>(x) & 1);
      }
      CHILD_OK(b.add_tensor(std::string(dtype_name(dt)), dt, {15, 1000}, storage.back().data()));
    }
    Value::Map nested;
    nested.emplace("list", Value(Value::List{Value(1), Value(2.5), Value("three")}));
    Value::Map fields;
    fields.emplace("nested", Value(std::move(nested)));
    fields.emplace("neg", Value(int64_t{-42}));
    CHILD_OK(b.set_fields(Value(std::move(fields))));
    CHILD_OK(c->send(key(1), b, deadline_in(10s)));
    CHILD_OK(c->recv("1", "0", deadline_in(20s)));
    return 0;
  });
  auto c = make();
  auto view = c->recv("0", "1", deadline_in(20s));
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  ASSERT_EQ(view->reader().tensor_count(), std::size(all));
  for (DType dt : all) {
    const TensorView* t = view->reader().find(dtype_name(dt));
    ASSERT_NE(t, nullptr) << dtype_name(dt);
    EXPECT_EQ(t->dtype, dt);
    EXPECT_EQ(t->rank, 2);
    EXPECT_EQ(t->shape[0], 15);
    EXPECT_EQ(t->shape[1], 1000);
    std::vector<std::byte> want(dtype_size(dt) * 15 * 1000);
    fill_pattern(want.data(), want.size(), static_cast<uint64_t>(dt));
    if (dt == DType::kBool) {
      for (auto& x : want) x = static_cast<std::byte>(static_cast<uint8_t>(x) & 1);
    }
    EXPECT_TRUE(std::equal(want.begin(), want.end(), t->data.begin())) << dtype_name(dt);
  }
  auto fields = view->reader().fields();
  ASSERT_TRUE(fields.ok());
  EXPECT_EQ(fields->find("neg")->as_int(), -42);
  EXPECT_EQ(*fields->find("nested")->find("list")->as_list()->at(2).as_string(), "three");
  TestPayload bye(8, 0);
  ASSERT_TRUE(c->send(key(0, "1", "0"), bye.builder, deadline_in(10s)).ok());
  EXPECT_EQ(wait_child(producer), 0);
}

TEST_P(Conformance, ThresholdIsInclusiveForInline) {
  // 64-byte header + one-tensor table = 128 bytes before the data.
  auto c = make(GetParam().threshold(4096));
  TestPayload at(4096 - 128, 1), above(4096 - 128 + 1, 2);
  ASSERT_EQ(at.builder.encoded_size(), 4096u);
  auto d1 = c->put(key(1), at.builder, deadline_in(1s));
  ASSERT_TRUE(d1.ok());
  EXPECT_EQ(c->metrics().inline_payloads, 1u);
  auto d2 = c->put(key(2), above.builder, deadline_in(1s));
  ASSERT_TRUE(d2.ok());
  EXPECT_EQ(c->metrics().inline_payloads, 1u);
  EXPECT_EQ(c->metrics().in_flight, 1u);
  for (auto* d : {&*d1, &*d2}) ASSERT_TRUE(c->get(*d, deadline_in(1s)).ok());
}

TEST_P(Conformance, RecvTimesOutAtItsDeadline) {
  auto c = make();
  auto t0 = Clock::now();
  auto view = c->recv("7", "8", deadline_in(200ms));
  auto waited = Clock::now() - t0;
  ASSERT_FALSE(view.ok());
  EXPECT_EQ(view.status().code(), StatusCode::kTimeout) << view.status().ToString();
  EXPECT_GE(waited, 190ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(c->metrics().timeouts, 1u);
  EXPECT_EQ(c->metrics().errors_by_code[static_cast<size_t>(StatusCode::kTimeout)], 1u);
  EXPECT_EQ(c->metrics().get_latency.count(), 0u);
}

TEST_P(Conformance, FullArenaIsResourceExhaustedAtTheDeadline) {
  const size_t unit = GetParam().unit;
  auto c = make(GetParam().capacity(unit));
  std::vector<Descriptor> held;
  Status last;
  for (int i = 0; i < 16 && last.ok(); ++i) {
    TestPayload p(unit / 5 - 8192, static_cast<uint64_t>(i));
    auto t0 = Clock::now();
    auto d = c->put(key(static_cast<uint64_t>(i)), p.builder, deadline_in(100ms));
    if (d.ok()) {
      held.push_back(*d);
      continue;
    }
    last = d.status();
    EXPECT_GE(Clock::now() - t0, 95ms);
  }
  EXPECT_EQ(last.code(), StatusCode::kResourceExhausted) << last.ToString();
  EXPECT_GE(held.size(), 4u);
  EXPECT_LE(held.size(), 5u);
}

TEST_P(Conformance, NoPayloadLostWhenSpaceFrees) {
  constexpr int kCount = 24;
  const size_t size = GetParam().unit / 5 - 8192;
  pid_t consumer = spawn([&] {
    auto c = make();
    CHILD_CHECK(c != nullptr);
    std::this_thread::sleep_for(300ms);  // let the writer fill its arena and block
    for (int i = 0; i < kCount; ++i) {
      auto view = c->recv("0", "1", deadline_in(20s));
      CHILD_OK(view);
      CHILD_CHECK(verify_payload(*view, size, static_cast<uint64_t>(i)).empty());
    }
    return 0;
  });
  auto c = make(GetParam().capacity(GetParam().unit));
  for (int i = 0; i < kCount; ++i) {
    TestPayload p(size, static_cast<uint64_t>(i));
    Status st = c->send(key(static_cast<uint64_t>(i)), p.builder, deadline_in(20s));
    ASSERT_TRUE(st.ok()) << i << ": " << st.ToString();
  }
  EXPECT_EQ(wait_child(consumer), 0);
}

TEST_P(Conformance, CleanupDropsUnreadPayloadsOfOneRequest) {
  auto c = make();
  std::vector<Descriptor> a;
  for (uint64_t i = 0; i < 3; ++i) {
    TestPayload p(kMiB, i);
    auto d = c->put(PayloadKey{"A", "0", "1"}, p.builder, deadline_in(1s));
    ASSERT_TRUE(d.ok());
    a.push_back(*d);
  }
  TestPayload pb(kMiB, 9);
  auto b = c->put(PayloadKey{"B", "0", "1"}, pb.builder, deadline_in(1s));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(c->metrics().in_flight, 4u);
  ASSERT_TRUE(c->cleanup("A").ok());
  EXPECT_EQ(c->metrics().in_flight, 1u);
  for (const auto& d : a) {
    auto v = c->get(d, deadline_in(1s));
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), StatusCode::kNotFound) << v.status().ToString();
  }
  auto vb = c->get(*b, deadline_in(1s));
  ASSERT_TRUE(vb.ok()) << vb.status().ToString();
  EXPECT_EQ(verify_payload(*vb, kMiB, 9), "");
}

// Readers are forked before the writer's connector exists: a process forked from one that
// already started a Mooncake client cannot start another.
// A stream cancelled mid-way (channel mode, chunk keys "{request}_{stage}_{chunk}"):
// cleanup(request) on the writing side frees every chunk sent and not yet read; the reader
// skips them and gets the stream's end marker, then the other requests' chunks in order.
TEST_P(Conformance, CleanupFreesTheUnreadChunksOfAStream) {
  constexpr int kRequests = 10, kChunks = 4;
  constexpr size_t kChunkBytes = 200 * 1024;
  MsgPipe go;
  pid_t consumer = spawn([&] {
    auto r = make();
    CHILD_CHECK(r != nullptr);
    std::string msg;
    CHILD_CHECK(go.read(&msg));
    for (int q = 0; q < kRequests; ++q) {
      const std::string req = "r" + std::to_string(q);
      const bool aborted = q % 2 == 0;
      for (int c = aborted ? kChunks : 0; c < (aborted ? kChunks + 1 : kChunks); ++c) {
        auto v = r->recv("0", "1", deadline_in(10s));
        CHILD_OK(v);
        CHILD_CHECK(v->key().request_id == chunk_key(req, "0", c));
        if (!aborted) {
          CHILD_CHECK(verify_payload(*v, kChunkBytes, static_cast<uint64_t>(q * 16 + c)).empty());
        }
      }
    }
    return 0;
  });
  auto c = make();
  for (int q = 0; q < kRequests; ++q) {
    const std::string req = "r" + std::to_string(q);
    for (int k = 0; k < kChunks; ++k) {
      TestPayload p(kChunkBytes, static_cast<uint64_t>(q * 16 + k));
      ASSERT_TRUE(
          c->send(PayloadKey{chunk_key(req, "0", k), "0", "1"}, p.builder, deadline_in(5s)).ok());
    }
    if (q % 2 != 0) continue;
    ASSERT_TRUE(c->cleanup(req).ok());  // cancelled after its 4th chunk
    TestPayload end(8, 0);
    ASSERT_TRUE(
        c->send(PayloadKey{chunk_key(req, "0", kChunks), "0", "1"}, end.builder, deadline_in(5s))
            .ok());
  }
  EXPECT_EQ(in_flight(*c), static_cast<uint64_t>(kRequests / 2 * kChunks));  // the others'
  go.write("go");
  EXPECT_EQ(wait_child(consumer), 0);
  auto until = Clock::now() + 10s;  // the reader's releases reach the writer
  while (in_flight(*c) != 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(in_flight(*c), 0u);
  EXPECT_EQ(c->metrics().in_use_bytes, 0u);
}

TEST_P(Conformance, GetsOutOfOrderInAnotherProcess) {
  constexpr int kCount = 16;
  MsgPipe descs;
  pid_t consumer = spawn([&] {
    auto r = make();
    CHILD_CHECK(r != nullptr);
    std::vector<std::string> ds(kCount);
    for (auto& d : ds) CHILD_CHECK(descs.read(&d));
    std::vector<int> order(kCount);
    for (int i = 0; i < kCount; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(7));
    std::vector<PayloadView> held;  // hold all views: none may disturb another
    for (int i : order) {
      auto v = r->get(Descriptor{ds[static_cast<size_t>(i)]}, deadline_in(5s));
      CHILD_OK(v);
      CHILD_CHECK(verify_payload(*v, 100 * 1024 + static_cast<size_t>(i), static_cast<uint64_t>(i))
                      .empty());
      held.push_back(*v);
    }
    return 0;
  });
  auto c = make();
  for (int i = 0; i < kCount; ++i) {
    TestPayload p(100 * 1024 + static_cast<size_t>(i), static_cast<uint64_t>(i));
    auto d = c->put(key(static_cast<uint64_t>(i)), p.builder, deadline_in(1s));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    descs.write(d->bytes);
  }
  EXPECT_EQ(wait_child(consumer), 0);
}

TEST_P(Conformance, SeveralConcurrentProducers) {
  constexpr int kProducers = 3, kEach = 10;
  MsgPipe descs;
  std::vector<std::unique_ptr<MsgPipe>> done;  // one each: readers of one pipe could split frames
  for (int p = 0; p < kProducers; ++p) done.push_back(std::make_unique<MsgPipe>());
  std::vector<pid_t> pids;
  for (int p = 0; p < kProducers; ++p) {
    pids.push_back(spawn([&, p] {
      auto c = make();
      CHILD_CHECK(c != nullptr);
      for (int i = 0; i < kEach; ++i) {
        uint64_t seq = static_cast<uint64_t>(p * 100 + i);
        TestPayload pl(kMiB / 2, seq);
        auto d = c->put(key(seq), pl.builder, deadline_in(10s));
        CHILD_OK(d);
        descs.write(d->bytes);
      }
      std::string msg;
      done[static_cast<size_t>(p)]->read(&msg);
      return 0;
    }));
  }
  auto c = make();
  std::set<uint64_t> seen;
  for (int n = 0; n < kProducers * kEach; ++n) {
    std::string bytes;
    ASSERT_TRUE(descs.read(&bytes));
    auto v = c->get(Descriptor{bytes}, deadline_in(10s));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    uint64_t seq = static_cast<uint64_t>(std::stoull(v->key().request_id.substr(4)));
    EXPECT_EQ(verify_payload(*v, kMiB / 2, seq), "");
    seen.insert(seq);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kProducers * kEach));
  for (auto& d : done) d->write("done");
  for (pid_t pid : pids) EXPECT_EQ(wait_child(pid), 0);
}

TEST_P(Conformance, ForgedAndTruncatedDescriptorsAreErrors) {
  auto c = make();
  TestPayload big(kMiB, 1), small(100, 2);
  auto ref = c->put(key(1), big.builder, deadline_in(1s));
  auto inl = c->put(key(2), small.builder, deadline_in(1s));
  ASSERT_TRUE(ref.ok() && inl.ok());
  for (const Descriptor* d : {&*ref, &*inl}) {
    for (size_t len = 0; len < d->bytes.size(); ++len) {
      auto v = c->get(Descriptor{d->bytes.substr(0, len)}, deadline_in(1s));
      EXPECT_FALSE(v.ok()) << "truncated to " << len;
    }
  }
  // Every fixed field of the reference descriptor (bytes 16..63), flipped: rejected.
  std::mt19937 rng(42);
  for (size_t pos = 16; pos < 64; ++pos) {
    Descriptor forged = *ref;
    forged.bytes[pos] = static_cast<char>(forged.bytes[pos] ^ (1 + rng() % 255));
    auto v = c->get(forged, deadline_in(1s));
    EXPECT_FALSE(v.ok()) << "flipped byte " << pos;
  }
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rng() % 200, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    if (i % 2 == 0 && junk.size() >= 4) std::memcpy(junk.data(), ref->bytes.data(), 8);
    EXPECT_FALSE(c->get(Descriptor{junk}, deadline_in(1s)).ok());
  }
  auto genuine = c->get(*ref, deadline_in(1s));  // the real one still works
  ASSERT_TRUE(genuine.ok()) << genuine.status().ToString();
  EXPECT_EQ(verify_payload(*genuine, kMiB, 1), "");
  auto twice = c->get(*ref, deadline_in(1s));
  EXPECT_EQ(twice.status().code(), StatusCode::kNotFound);
  // Every failure is counted under its code; only the successful calls are timed.
  Metrics m = c->metrics();
  uint64_t by_code = 0;
  for (size_t i = 0; i < kStatusCodeCount; ++i) {
    if (i != static_cast<size_t>(StatusCode::kTimeout)) by_code += m.errors_by_code[i];
  }
  EXPECT_EQ(by_code, m.errors);
  EXPECT_GE(m.errors_by_code[static_cast<size_t>(StatusCode::kNotFound)], 1u);
  EXPECT_EQ(m.errors_by_code[static_cast<size_t>(StatusCode::kOk)], 0u);
  EXPECT_EQ(m.put_latency.count(), 2u);
  EXPECT_EQ(m.get_latency.count(), 1u);
}

// A recv's get latency starts when a payload is there: the wait for one is not the
// connector's time.
TEST_P(Conformance, GetLatencyLeavesOutTheWaitForAPayload) {
  pid_t consumer = spawn([&] {
    auto r = make();
    CHILD_CHECK(r != nullptr);
    CHILD_OK(r->recv("1", "2", deadline_in(10s)));
    auto t0 = Clock::now();
    CHILD_OK(r->recv("1", "2", deadline_in(10s)));
    auto waited = Clock::now() - t0;
    Metrics m = r->metrics();
    CHILD_CHECK(m.gets == 2 && m.get_latency.count() == 2);
    CHILD_CHECK(waited >= 300ms);
    CHILD_CHECK(std::chrono::nanoseconds(m.get_latency.sum_ns) < waited - 250ms);
    return 0;
  });
  auto c = make();
  TestPayload first(kMiB, 1), second(100, 2);
  ASSERT_TRUE(c->send(key(1, "1", "2"), first.builder, deadline_in(5s)).ok());
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(c->send(key(2, "1", "2"), second.builder, deadline_in(5s)).ok());
  EXPECT_EQ(c->metrics().put_latency.count(), 2u);
  EXPECT_EQ(wait_child(consumer), 0);
}

TEST_P(Conformance, KilledReaderSpaceIsReclaimed) {
  if (!capabilities().reclaims_dead_reader) {
    GTEST_SKIP() << GetParam().type << " does not reclaim a killed reader's space "
                 << "(ConnectorCapabilities::reclaims_dead_reader is false)";
  }
  auto c = make(GetParam().capacity(4 * kMiB));
  std::vector<Descriptor> ds;
  for (uint64_t i = 0; i < 3; ++i) {
    TestPayload p(kMiB, i);
    auto d = c->put(key(i), p.builder, deadline_in(1s));
    ASSERT_TRUE(d.ok());
    ds.push_back(*d);
  }
  MsgPipe ready;
  pid_t reader = spawn([&] {
    auto r = make();
    std::vector<PayloadView> held;
    for (const auto& d : ds) {
      auto v = r->get(d, deadline_in(5s));
      CHILD_OK(v);
      held.push_back(*v);
    }
    ready.write("holding");
    ::pause();
    return 0;
  });
  std::string msg;
  ASSERT_TRUE(ready.read(&msg));
  EXPECT_FALSE(c->loan(3 * kMiB, deadline_in(50ms)).ok());  // held by the reader
  ::kill(reader, SIGKILL);
  EXPECT_EQ(wait_child(reader), 128 + SIGKILL);
  auto loan = c->loan(3 * kMiB, deadline_in(5s));
  ASSERT_TRUE(loan.ok()) << loan.status().ToString();
  EXPECT_EQ(c->metrics().reclaimed, 3u);
}

TEST_P(Conformance, WriterDeathIsUnavailableBeforeTheDeadline) {
  if (!capabilities().notices_dead_writer) {
    GTEST_SKIP() << GetParam().type << " does not tell a reader that its writer died "
                 << "(ConnectorCapabilities::notices_dead_writer is false)";
  }
  pid_t writer = spawn([&] {
    auto c = make();
    TestPayload p(kMiB, 1);
    CHILD_OK(c->send(key(1), p.builder, deadline_in(5s)));
    ::pause();
    return 0;
  });
  auto c = make();
  auto first = c->recv("0", "1", deadline_in(10s));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(verify_payload(*first, kMiB, 1), "");
  ::kill(writer, SIGKILL);
  auto t0 = Clock::now();
  auto second = c->recv("0", "1", deadline_in(30s));
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status().ToString();
  EXPECT_LT(Clock::now() - t0, 2s);
  // The view received before the death stays readable.
  EXPECT_EQ(verify_payload(*first, kMiB, 1), "");
  wait_child(writer);
}

TEST_P(Conformance, PayloadLargerThanTheArenaGoesThrough) {
  const size_t unit = GetParam().unit;
  MsgPipe descs;
  pid_t reader = spawn([&] {
    auto r = make();
    CHILD_CHECK(r != nullptr);
    std::string d;
    CHILD_CHECK(descs.read(&d));
    auto v = r->get(Descriptor{d}, deadline_in(5s));
    CHILD_OK(v);
    CHILD_CHECK(verify_payload(*v, 3 * unit, 5).empty());
    return 0;
  });
  auto c = make(GetParam().limits(unit, 8 * unit));
  TestPayload p(3 * unit, 5);
  auto d = c->put(key(5), p.builder, deadline_in(1s));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  descs.write(d->bytes);
  EXPECT_EQ(wait_child(reader), 0);
  TestPayload too_big(9 * unit, 6);
  auto refused = c->put(key(6), too_big.builder, deadline_in(1s));
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("max_payload_bytes"), std::string::npos);
}

TEST_P(Conformance, LoanCommitAndAbandon) {
  MsgPipe descs;
  pid_t reader = spawn([&] {
    auto r = make();
    CHILD_CHECK(r != nullptr);
    std::string d;
    CHILD_CHECK(descs.read(&d));
    auto v = r->get(Descriptor{d}, deadline_in(5s));
    CHILD_OK(v);
    const float* g = v->reader().tensor(0).as<float>();
    for (size_t i = 0; i < 128 * 3584; ++i) CHILD_CHECK(g[i] == static_cast<float>(i));
    return 0;
  });
  auto c = make();
  PayloadBuilder b;
  ASSERT_TRUE(b.add_tensor("hidden", DType::kF32, {128, 3584}).ok());
  {
    auto dropped = c->loan(b.encoded_size(), deadline_in(1s));
    ASSERT_TRUE(dropped.ok());
    EXPECT_EQ(c->metrics().in_flight, 1u);
  }
  EXPECT_EQ(c->metrics().in_flight, 0u);  // an abandoned loan gives its space back
  auto loan = c->loan(b.encoded_size(), deadline_in(1s));
  ASSERT_TRUE(loan.ok());
  ASSERT_TRUE(b.write_layout(loan->bytes()).ok());
  auto span = mutable_tensor_data(loan->bytes(), 0);
  ASSERT_TRUE(span.ok());
  auto* f = reinterpret_cast<float*>(span->data());
  for (size_t i = 0; i < 128 * 3584; ++i) f[i] = static_cast<float>(i);
  auto d = c->commit(std::move(*loan), key(3), deadline_in(1s));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  descs.write(d->bytes);
  EXPECT_EQ(wait_child(reader), 0);
}

std::set<std::string> dev_shm() {
  std::set<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) names.insert(e->d_name);
    ::closedir(d);
  }
  return names;
}

// Payloads live in memfds, never in /dev/shm; the one thing a type may keep there is the
// SharedMemoryConnector's per-user key index directory (its entries go with the connector).
TEST_P(Conformance, CreatesNothingInDevShm) {
  auto before = dev_shm();
  before.insert("omniconn-" + std::to_string(::geteuid()));
  auto now = [] {
    auto names = dev_shm();
    names.insert("omniconn-" + std::to_string(::geteuid()));
    return names;
  };
  {
    auto c = make();
    TestPayload p(2 * kMiB, 1);
    auto d = c->put(key(1), p.builder, deadline_in(1s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(now(), before);
    ASSERT_TRUE(c->send(key(2), p.builder, deadline_in(1s)).ok());
    auto v = c->recv("0", "1", deadline_in(1s));
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(now(), before);
  }
  EXPECT_EQ(now(), before);
}

}  // namespace
}  // namespace omniconn::testing

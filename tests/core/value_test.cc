#include "omniconn/value.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace omniconn {

// Readable gtest output for Value (found by ADL; internal linkage).
static void PrintTo(const Value& v, std::ostream* os) {
  switch (v.kind()) {
    case Value::Kind::kNil:
      *os << "nil";
      return;
    case Value::Kind::kBool:
      *os << (*v.as_bool() ? "true" : "false");
      return;
    case Value::Kind::kInt:
      *os << *v.as_int();
      return;
    case Value::Kind::kUInt:
      *os << *v.as_uint() << "u";
      return;
    case Value::Kind::kFloat:
      *os << *v.as_float() << "f";
      return;
    case Value::Kind::kString:
      *os << '"' << *v.as_string() << '"';
      return;
    case Value::Kind::kBytes:
      *os << "bytes[" << v.as_bytes()->data.size() << "]";
      return;
    case Value::Kind::kList:
      *os << "[";
      for (const Value& item : *v.as_list()) PrintTo(item, os), *os << ",";
      *os << "]";
      return;
    case Value::Kind::kMap:
      *os << "{";
      for (const auto& [k, item] : *v.as_map()) *os << k << ":", PrintTo(item, os), *os << ",";
      *os << "}";
      return;
  }
}

namespace {

using Bytes = std::vector<uint8_t>;

Result<Value> decode(const Bytes& b) {
  return decode_msgpack(b.data(), b.size());
}

Value round_trip(const Value& v) {
  Bytes enc = encode_msgpack(v);
  Result<Value> r = decode(enc);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Value();
}

TEST(ValueTest, KindsAndAccessors) {
  EXPECT_EQ(Value().kind(), Value::Kind::kNil);
  EXPECT_TRUE(Value(nullptr).is_nil());
  EXPECT_EQ(Value(true).kind(), Value::Kind::kBool);
  EXPECT_EQ(Value(1).kind(), Value::Kind::kInt);
  EXPECT_EQ(Value(int64_t{1}).kind(), Value::Kind::kInt);
  EXPECT_EQ(Value(uint64_t{1}).kind(), Value::Kind::kUInt);
  EXPECT_EQ(Value(1.5).kind(), Value::Kind::kFloat);
  EXPECT_EQ(Value("s").kind(), Value::Kind::kString);
  EXPECT_EQ(Value(std::string_view("s")).kind(), Value::Kind::kString);
  EXPECT_EQ(Value(Value::Bytes{{1, 2}}).kind(), Value::Kind::kBytes);
  EXPECT_EQ(Value(Value::List{}).kind(), Value::Kind::kList);
  EXPECT_TRUE(Value(Value::Map{}).is_map());

  EXPECT_EQ(*Value(true).as_bool(), true);
  EXPECT_EQ(*Value(2.5).as_float(), 2.5);
  EXPECT_EQ(*Value("abc").as_string(), "abc");
  EXPECT_EQ(Value(Value::Bytes{{1, 2}}).as_bytes()->data, (Bytes{1, 2}));
  EXPECT_EQ(*Value(uint64_t{7}).as_uint(), 7u);
  EXPECT_EQ(Value(1).as_string(), nullptr);
  EXPECT_EQ(Value("x").as_bool(), nullptr);
  EXPECT_EQ(Value(1).as_uint(), nullptr);
  EXPECT_EQ(Value(1).as_list(), nullptr);
  EXPECT_EQ(Value(1).as_map(), nullptr);
}

TEST(ValueTest, KindNames) {
  EXPECT_EQ(Value().kind_name(), "nil");
  EXPECT_EQ(Value(false).kind_name(), "bool");
  EXPECT_EQ(Value(1).kind_name(), "int");
  EXPECT_EQ(Value(uint64_t{1}).kind_name(), "uint");
  EXPECT_EQ(Value(1.0).kind_name(), "float");
  EXPECT_EQ(Value("").kind_name(), "string");
  EXPECT_EQ(Value(Value::Bytes{}).kind_name(), "bytes");
  EXPECT_EQ(Value(Value::List{}).kind_name(), "list");
  EXPECT_EQ(Value(Value::Map{}).kind_name(), "map");
}

TEST(ValueTest, AsInt) {
  EXPECT_EQ(Value(-5).as_int(), -5);
  EXPECT_EQ(Value(std::numeric_limits<int64_t>::min()).as_int(),
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Value(uint64_t{9}).as_int(), 9);
  const uint64_t int64_max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Value(int64_max).as_int(), std::numeric_limits<int64_t>::max());
  EXPECT_FALSE(Value(int64_max + 1).as_int().has_value());
  EXPECT_FALSE(Value(1.0).as_int().has_value());
  EXPECT_FALSE(Value("1").as_int().has_value());
  EXPECT_FALSE(Value().as_int().has_value());
}

TEST(ValueTest, FindAndMutate) {
  Value v(Value::Map{{"a", 1}, {"b", "x"}});
  ASSERT_NE(v.find("a"), nullptr);
  EXPECT_EQ(v.find("a")->as_int(), 1);
  EXPECT_EQ(v.find("zz"), nullptr);
  EXPECT_EQ(Value(1).find("a"), nullptr);
  (*v.as_map())["c"] = Value::List{1, 2};
  v.find("c");
  ASSERT_NE(v.find("c"), nullptr);
  EXPECT_EQ(v.find("c")->as_list()->size(), 2u);
  Value l(Value::List{});
  l.as_list()->push_back(3);
  EXPECT_EQ(l, Value(Value::List{3}));
}

TEST(ValueTest, Equality) {
  EXPECT_EQ(Value(1), Value(int64_t{1}));
  EXPECT_NE(Value(1), Value(uint64_t{1}));  // kinds differ
  EXPECT_NE(Value(1), Value(1.0));
  EXPECT_EQ(Value(Value::Map{{"k", Value::List{1, "a"}}}),
            Value(Value::Map{{"k", Value::List{1, "a"}}}));
}

TEST(ValueMsgpackTest, KnownEncodings) {
  EXPECT_EQ(encode_msgpack(Value()), (Bytes{0xc0}));
  EXPECT_EQ(encode_msgpack(Value(true)), (Bytes{0xc3}));
  EXPECT_EQ(encode_msgpack(Value(false)), (Bytes{0xc2}));
  EXPECT_EQ(encode_msgpack(Value(1)), (Bytes{0x01}));
  EXPECT_EQ(encode_msgpack(Value(-1)), (Bytes{0xff}));
  EXPECT_EQ(encode_msgpack(Value(300)), (Bytes{0xcd, 0x01, 0x2c}));
  EXPECT_EQ(encode_msgpack(Value("ab")), (Bytes{0xa2, 'a', 'b'}));
  EXPECT_EQ(encode_msgpack(Value(Value::Bytes{{7}})), (Bytes{0xc4, 0x01, 0x07}));
  EXPECT_EQ(encode_msgpack(Value(1.5)),
            (Bytes{0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}));
  // Floats are always float64, even when integral.
  EXPECT_EQ(encode_msgpack(Value(3.0)),
            (Bytes{0xcb, 0x40, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}));
  EXPECT_EQ(encode_msgpack(Value(Value::Map{{"a", 1}})), (Bytes{0x81, 0xa1, 'a', 0x01}));
  EXPECT_EQ(encode_msgpack(Value(Value::List{})), (Bytes{0x90}));
  EXPECT_EQ(encode_msgpack(Value(std::numeric_limits<uint64_t>::max())),
            (Bytes{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
}

TEST(ValueMsgpackTest, RoundTripScalars) {
  const Value values[] = {
      Value(),
      Value(true),
      Value(false),
      Value(0),
      Value(127),
      Value(128),
      Value(-1),
      Value(-32),
      Value(-33),
      Value(int64_t{1} << 40),
      Value(-(int64_t{1} << 40)),
      Value(std::numeric_limits<int64_t>::max()),
      Value(std::numeric_limits<int64_t>::min()),
      Value(std::numeric_limits<uint64_t>::max()),
      Value(static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1),
      Value(0.0),
      Value(-0.0),
      Value(3.0),
      Value(-7.0),
      Value(1e19),
      Value(-2.25),
      Value(1e300),
      Value(std::numeric_limits<double>::infinity()),
      Value(""),
      Value(std::string(70000, 'x')),
      Value(Value::Bytes{}),
      Value(Value::Bytes{std::vector<uint8_t>(300, 0xab)}),
  };
  for (const Value& v : values) EXPECT_EQ(round_trip(v), v) << v.kind_name();
}

TEST(ValueMsgpackTest, SmallUnsignedDecodesAsInt) {
  Value v = round_trip(Value(uint64_t{5}));
  EXPECT_EQ(v.kind(), Value::Kind::kInt);
  EXPECT_EQ(v.as_int(), 5);
  const uint64_t int64_max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(round_trip(Value(int64_max)).kind(), Value::Kind::kInt);
  EXPECT_EQ(round_trip(Value(int64_max + 1)).kind(), Value::Kind::kUInt);
}

TEST(ValueMsgpackTest, RoundTripNested) {
  Value::Map inner{{"list", Value::List{1, -2, "three", 4.5, Value(), true, Value::Bytes{{0, 255}},
                                        Value::List{}}},
                   {"map", Value::Map{}},
                   {"neg", std::numeric_limits<int64_t>::min()},
                   {"umax", std::numeric_limits<uint64_t>::max()}};
  Value v(Value::Map{{"inner", inner},
                     {"name", "request-17"},
                     {"utf8", "h\xC3\xA9llo"},
                     {"deep", Value::List{Value::List{Value::Map{{"x", Value::List{1}}}}}}});
  EXPECT_EQ(round_trip(v), v);
}

TEST(ValueMsgpackTest, NaNRoundTrips) {
  Value v = round_trip(Value(std::numeric_limits<double>::quiet_NaN()));
  ASSERT_NE(v.as_float(), nullptr);
  EXPECT_TRUE(std::isnan(*v.as_float()));
}

TEST(ValueMsgpackTest, DecodesFloat32AndOtherIntWidths) {
  // float32 1.5
  Result<Value> f = decode({0xca, 0x3f, 0xc0, 0x00, 0x00});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(*f, Value(1.5));
  // uint8 200, int8 -100, int16 -1000, uint32 70000, int64 -1
  EXPECT_EQ(*decode({0xcc, 200}), Value(200));
  EXPECT_EQ(*decode({0xd0, 0x9c}), Value(-100));
  EXPECT_EQ(*decode({0xd1, 0xfc, 0x18}), Value(-1000));
  EXPECT_EQ(*decode({0xce, 0x00, 0x01, 0x11, 0x70}), Value(70000));
  EXPECT_EQ(*decode({0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), Value(-1));
  // str8 / bin16 / array16 / map16 forms
  EXPECT_EQ(*decode({0xd9, 0x01, 'z'}), Value("z"));
  EXPECT_EQ(*decode({0xc5, 0x00, 0x01, 0x09}), Value(Value::Bytes{{9}}));
  EXPECT_EQ(*decode({0xdc, 0x00, 0x01, 0x05}), Value(Value::List{5}));
  EXPECT_EQ(*decode({0xde, 0x00, 0x01, 0xa1, 'k', 0xc0}), Value(Value::Map{{"k", Value()}}));
}

void expect_corrupt(const Bytes& b, const char* what) {
  Result<Value> r = decode(b);
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt) << what << ": " << r.status().ToString();
}

TEST(ValueMsgpackTest, RejectsEmptyAndTrailing) {
  EXPECT_EQ(decode_msgpack(nullptr, 0).status().code(), StatusCode::kCorrupt);
  expect_corrupt({}, "empty");
  expect_corrupt({0x01, 0x02}, "trailing byte");
  expect_corrupt({0xc1}, "reserved 0xc1");
}

TEST(ValueMsgpackTest, RejectsEveryTruncation) {
  Bytes enc = encode_msgpack(
      Value(Value::Map{{"a", Value::List{1, 2.5, "str", Value::Bytes{{1, 2, 3}}}}, {"b", -70000}}));
  for (size_t n = 0; n < enc.size(); ++n) {
    Bytes cut(enc.begin(), enc.begin() + static_cast<std::ptrdiff_t>(n));
    expect_corrupt(cut, "truncated");
  }
}

TEST(ValueMsgpackTest, DepthLimit) {
  auto nested = [](size_t depth) {
    Bytes b(depth, 0x91);  // fixarray of one element
    b.push_back(0x01);
    return b;
  };
  EXPECT_TRUE(decode(nested(32)).ok());
  expect_corrupt(nested(33), "33 levels");
  expect_corrupt(nested(100000), "very deep arrays");
  Bytes maps;
  for (int i = 0; i < 100000; ++i) maps.insert(maps.end(), {0x81, 0xa1, 'k'});
  maps.push_back(0xc0);
  expect_corrupt(maps, "very deep maps");
}

TEST(ValueMsgpackTest, HugeDeclaredLengths) {
  expect_corrupt({0xdd, 0xff, 0xff, 0xff, 0xff}, "array32 of 4G elements");
  expect_corrupt({0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02}, "array32 short");
  expect_corrupt({0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'k', 0x01}, "map32 of 4G pairs");
  expect_corrupt({0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, "str32 of 4 GiB");
  expect_corrupt({0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}, "bin32 of 4 GiB");
  expect_corrupt({0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, "ext32 of 4 GiB");
  // Nested huge declarations (each would allocate eagerly in a naive decoder).
  Bytes nested;
  for (int i = 0; i < 32; ++i) nested.insert(nested.end(), {0xdd, 0x7f, 0xff, 0xff, 0xff});
  expect_corrupt(nested, "nested huge arrays");
}

TEST(ValueMsgpackTest, RejectsUnsupportedTypesAndKeys) {
  expect_corrupt({0x81, 0x01, 0x02}, "int map key");
  expect_corrupt({0x81, 0xc0, 0x02}, "nil map key");
  expect_corrupt({0x81, 0x90, 0x02}, "list map key");
  expect_corrupt({0x81, 0xc4, 0x01, 'k', 0x02}, "bin map key");
  expect_corrupt({0xd4, 0x01, 0x00}, "fixext1");
  expect_corrupt({0x91, 0xc7, 0x01, 0x05, 0x00}, "ext8 in a list");
  expect_corrupt({0x82, 0xa1, 'k', 0x01, 0xa1, 'k', 0x02}, "duplicate key");
}

TEST(ValueMsgpackTest, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  const Bytes seed = encode_msgpack(Value(
      Value::Map{{"a", Value::List{1, 2.5, "str", Value::Bytes{{1, 2, 3}}, Value::Map{{"x", -1}}}},
                 {"b", std::numeric_limits<uint64_t>::max()}}));
  int ok = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    Bytes b;
    if (iter % 2 == 0) {
      b.resize(rng() % 48);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else {
      b = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    }
    Result<Value> r = decode(b);
    if (r.ok()) {
      ++ok;
      // Whatever decoded must re-encode and decode to the same value.
      EXPECT_EQ(round_trip(*r).kind(), r->kind());
    } else {
      EXPECT_TRUE(r.status().code() == StatusCode::kCorrupt ||
                  r.status().code() == StatusCode::kResourceExhausted);
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace omniconn

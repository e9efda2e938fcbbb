#include "omniconn/payload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "core/payload_internal.h"

namespace omniconn {
namespace {

namespace in = internal;
using ByteVec = std::vector<std::byte>;

// 64-byte aligned heap memory.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t n, uint8_t fill = 0)
      : size_(n), ptr_(static_cast<std::byte*>(::operator new (n + 64, std::align_val_t{64}))) {
    std::memset(ptr_.get(), fill, n + 64);
  }
  std::span<std::byte> span() { return {ptr_.get(), size_}; }
  std::byte* data() { return ptr_.get(); }
  size_t size() const { return size_; }

 private:
  struct Delete {
    void operator()(std::byte* p) const { ::operator delete (p, std::align_val_t{64}); }
  };
  size_t size_;
  std::unique_ptr<std::byte, Delete> ptr_;
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// "t7": appends rather than `"t" + std::to_string(i)`, which trips GCC 12's -Wrestrict
// false positive at -O3.
std::string indexed_name(const char* prefix, size_t i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

ByteVec encode_or_die(const PayloadBuilder& b) {
  Result<ByteVec> r = b.encode();
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ByteVec();
}

Result<PayloadReader> open(const ByteVec& bytes, bool verify_data = false) {
  return PayloadReader::open(bytes, ReadOptions{verify_data});
}

// A small payload: three tensors and a fields map (the data vectors must outlive it).
struct Sample {
  std::vector<uint8_t> a = random_bytes(2 * 3 * 4, 1);  // f32 [2,3]
  std::vector<uint8_t> b = random_bytes(5 * 2, 2);      // i16 [5]
  std::vector<uint8_t> c = random_bytes(100 * 8, 3);    // f64 [100]
  PayloadBuilder builder;
  explicit Sample(bool checksum = true, bool fields = true) {
    EXPECT_TRUE(builder.add_tensor("a", DType::kF32, {2, 3}, a.data()).ok());
    EXPECT_TRUE(builder.add_tensor("bee", DType::kI16, {5}, b.data()).ok());
    EXPECT_TRUE(builder.add_tensor("hidden", DType::kF64, {100}, c.data()).ok());
    if (fields) {
      EXPECT_TRUE(builder.set_fields(Value::Map{{"request", "r-1"}, {"step", 3}}).ok());
    }
    builder.set_checksum_data(checksum);
  }
};

in::Header header_of(const ByteVec& p) {
  return in::load_header(p.data());
}

void reseal_header(ByteVec& p) {
  const in::Header h = header_of(p);
  in::store_le(p.data() + in::hdr::kHeaderChecksum, in::header_checksum(p, h.data_offset));
}

// Byte offset of entry `index` in the table of `p`.
size_t entry_at(const ByteVec& p, size_t index) {
  size_t at = kPayloadHeaderBytes;
  for (size_t i = 0; i < index; ++i) {
    const auto rank = in::load_le<uint8_t>(p.data() + at + 17);
    const auto name_len = in::load_le<uint16_t>(p.data() + at + 18);
    at += in::entry_bytes(rank, name_len);
  }
  return at;
}

void expect_corrupt(const ByteVec& p, const std::string& needle) {
  Result<PayloadReader> r = open(p, true);
  ASSERT_FALSE(r.ok()) << "expected an error mentioning: " << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message '" << r.status().message() << "' lacks '" << needle << "'";
}

// ---------------------------------------------------------------------------------------------

TEST(PayloadDTypeTest, SizesNamesAndParsing) {
  struct Case {
    DType dtype;
    const char* name;
    size_t size;
  };
  const Case cases[] = {{DType::kF32, "f32", 4},   {DType::kF16, "f16", 2},
                        {DType::kBF16, "bf16", 2}, {DType::kF64, "f64", 8},
                        {DType::kI64, "i64", 8},   {DType::kI32, "i32", 4},
                        {DType::kI16, "i16", 2},   {DType::kI8, "i8", 1},
                        {DType::kU8, "u8", 1},     {DType::kBool, "bool", 1}};
  for (const Case& c : cases) {
    EXPECT_EQ(dtype_size(c.dtype), c.size);
    EXPECT_EQ(dtype_name(c.dtype), c.name);
    Result<DType> parsed = dtype_from_name(c.name);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, c.dtype);
    EXPECT_TRUE(dtype_valid(static_cast<uint8_t>(c.dtype)));
  }
  EXPECT_EQ(dtype_size(static_cast<DType>(0)), 0u);
  EXPECT_EQ(dtype_size(static_cast<DType>(11)), 0u);
  EXPECT_EQ(dtype_name(static_cast<DType>(0)), "invalid");
  EXPECT_FALSE(dtype_valid(0));
  EXPECT_FALSE(dtype_valid(11));
  EXPECT_FALSE(dtype_valid(255));
  EXPECT_EQ(dtype_from_name("float32").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(dtype_from_name("").status().code(), StatusCode::kInvalidArgument);
}

TEST(PayloadTest, EmptyPayload) {
  PayloadBuilder b;
  EXPECT_EQ(b.encoded_size(), 64u);
  ByteVec p = encode_or_die(b);
  ASSERT_EQ(p.size(), 64u);
  EXPECT_EQ(std::memcmp(p.data(), "OCNP", 4), 0);
  const in::Header h = header_of(p);
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.header_size, 64u);
  EXPECT_EQ(h.tensor_count, 0u);
  EXPECT_EQ(h.table_size, 0u);
  EXPECT_EQ(h.fields_size, 0u);
  EXPECT_EQ(h.data_offset, 64u);
  EXPECT_EQ(h.data_size, 0u);
  EXPECT_EQ(h.total_size, 64u);
  EXPECT_EQ(h.data_checksum, 0u);
  Result<PayloadReader> r = open(p, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensor_count(), 0u);
  EXPECT_EQ(r->size(), 64u);
  EXPECT_TRUE(r->fields_msgpack().empty());
  EXPECT_FALSE(r->has_data_checksum());
  Result<Value> f = r->fields();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Value(Value::Map{}));
}

TEST(PayloadTest, EmptyPayloadWithDataChecksum) {
  PayloadBuilder b;
  b.set_checksum_data(true);
  ByteVec p = encode_or_die(b);
  EXPECT_EQ(header_of(p).data_checksum, in::data_checksum({}));
  Result<PayloadReader> r = open(p, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->has_data_checksum());
}

TEST(PayloadTest, RoundTripEveryDType) {
  const DType all[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI64,
                       DType::kI32, DType::kI16, DType::kI8,   DType::kU8,  DType::kBool};
  std::vector<std::vector<uint8_t>> data;
  PayloadBuilder b;
  uint32_t seed = 10;
  for (DType d : all) {
    data.push_back(random_bytes(3 * 5 * dtype_size(d), seed++));
    ASSERT_TRUE(
        b.add_tensor("t_" + std::string(dtype_name(d)), d, {3, 5}, data.back().data()).ok());
  }
  ByteVec p = encode_or_die(b);
  Result<PayloadReader> r = open(p);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->tensor_count(), std::size(all));
  for (size_t i = 0; i < std::size(all); ++i) {
    const TensorView& t = r->tensor(i);
    EXPECT_EQ(t.name, "t_" + std::string(dtype_name(all[i])));
    EXPECT_EQ(t.dtype, all[i]);
    EXPECT_EQ(t.rank, 2);
    EXPECT_EQ(std::vector<int64_t>(t.dims().begin(), t.dims().end()), (std::vector<int64_t>{3, 5}));
    EXPECT_EQ(t.numel(), 15u);
    ASSERT_EQ(t.data.size(), data[i].size());
    EXPECT_EQ(std::memcmp(t.data.data(), data[i].data(), data[i].size()), 0);
  }
  const TensorView* f = r->find("t_f32");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->as<float>(), reinterpret_cast<const float*>(f->data.data()));
  EXPECT_EQ(r->find("missing"), nullptr);
}

TEST(PayloadTest, RoundTripEveryRank) {
  std::vector<std::vector<uint8_t>> data;
  PayloadBuilder b;
  for (size_t rank = 0; rank <= kMaxRank; ++rank) {
    std::vector<int64_t> shape;
    for (size_t d = 0; d < rank; ++d) shape.push_back(static_cast<int64_t>(d % 3 + 1));
    size_t numel = 1;
    for (int64_t d : shape) numel *= static_cast<size_t>(d);
    data.push_back(random_bytes(numel * 4, static_cast<uint32_t>(100 + rank)));
    ASSERT_TRUE(b.add_tensor(indexed_name("r", rank), DType::kI32, shape, data.back().data()).ok());
  }
  ByteVec p = encode_or_die(b);
  Result<PayloadReader> r = open(p);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (size_t rank = 0; rank <= kMaxRank; ++rank) {
    const TensorView& t = r->tensor(rank);
    EXPECT_EQ(t.rank, rank);
    for (size_t d = 0; d < rank; ++d) EXPECT_EQ(t.dims()[d], static_cast<int64_t>(d % 3 + 1));
    EXPECT_EQ(t.numel() * 4, data[rank].size());
    EXPECT_EQ(std::memcmp(t.data.data(), data[rank].data(), data[rank].size()), 0);
  }
  EXPECT_EQ(r->tensor(0).numel(), 1u);  // rank 0: a scalar
}

TEST(PayloadTest, ZeroSizeTensors) {
  std::vector<uint8_t> x = random_bytes(100, 7);
  PayloadBuilder b;
  ASSERT_TRUE(b.add_tensor("empty0", DType::kF32, {0}, nullptr).ok());
  ASSERT_TRUE(b.add_tensor("x", DType::kU8, {100}, x.data()).ok());
  ASSERT_TRUE(b.add_tensor("empty1", DType::kF64, {3, 0, 2}, nullptr).ok());
  ASSERT_TRUE(b.add_tensor("empty_last", DType::kBool, {0, 0}, nullptr).ok());
  b.set_checksum_data(true);
  ByteVec p = encode_or_die(b);
  Result<PayloadReader> r = open(p, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->tensor_count(), 4u);
  EXPECT_TRUE(r->tensor(0).data.empty());
  EXPECT_EQ(r->tensor(0).numel(), 0u);
  EXPECT_EQ(r->tensor(1).data.size(), 100u);
  EXPECT_EQ(std::memcmp(r->tensor(1).data.data(), x.data(), 100), 0);
  EXPECT_TRUE(r->tensor(2).data.empty());
  EXPECT_EQ(r->tensor(2).rank, 3);
  EXPECT_TRUE(r->tensor(3).data.empty());
  // The last (empty) tensor sits at the very end of the payload.
  EXPECT_EQ(static_cast<size_t>(r->tensor(3).data.data() - p.data()), p.size());
}

TEST(PayloadTest, FieldsRoundTrip) {
  Value fields(Value::Map{
      {"ints", Value::List{0, 1, -1, std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max()}},
      {"umax", std::numeric_limits<uint64_t>::max()},
      {"floats", Value::List{0.5, -1e-300, 3.0}},
      {"str", "h\xC3\xA9llo"},
      {"bytes", Value::Bytes{{0, 1, 2, 255}}},
      {"nested", Value::Map{{"a", Value::Map{{"b", Value::List{Value::Map{{"c", true}}}}}},
                            {"nil", Value()}}},
  });
  PayloadBuilder b;
  ASSERT_TRUE(b.set_fields(fields).ok());
  ByteVec p = encode_or_die(b);
  Result<PayloadReader> r = open(p);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->fields_msgpack().size(), encode_msgpack(fields).size());
  Result<Value> got = r->fields();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, fields);
}

TEST(PayloadTest, FieldsMustBeMapOrNil) {
  PayloadBuilder b;
  EXPECT_EQ(b.set_fields(Value::List{1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(b.set_fields(Value(3)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(b.set_fields(Value("x")).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.set_fields(Value::Map{{"k", 1}}).ok());
  EXPECT_GT(b.encoded_size(), 64u);
  EXPECT_TRUE(b.set_fields(Value()).ok());  // nil clears
  EXPECT_EQ(b.encoded_size(), 64u);
  EXPECT_TRUE(b.set_fields(Value::Map{}).ok());  // an empty map is no fields block
  EXPECT_EQ(b.encoded_size(), 64u);
}

TEST(PayloadTest, FieldsDepthLimit) {
  auto nest = [](size_t depth) {  // `depth` nested containers, the outermost a map
    Value v = 1;
    for (size_t i = 1; i < depth; ++i) v = Value::List{v};
    return Value(Value::Map{{"k", v}});
  };
  PayloadBuilder b;
  ASSERT_TRUE(b.set_fields(nest(32)).ok());
  ByteVec p = encode_or_die(b);
  Result<PayloadReader> r = open(p);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->fields().ok());
  EXPECT_EQ(b.set_fields(nest(33)).code(), StatusCode::kInvalidArgument);
}

TEST(PayloadTest, HeaderAndTableMatchTheSpec) {
  Sample s(/*checksum=*/true);
  ByteVec p = encode_or_die(s.builder);
  const in::Header h = header_of(p);
  const std::vector<uint8_t> fields = encode_msgpack(Value::Map{{"request", "r-1"}, {"step", 3}});
  // Entries: "a" rank 2 -> 24+16+8, "bee" rank 1 -> 24+8+8, "hidden" rank 1 -> 24+8+8.
  EXPECT_EQ(h.magic, 0x504E434Fu);
  EXPECT_EQ(h.flags, 1);
  EXPECT_EQ(h.tensor_count, 3u);
  EXPECT_EQ(h.table_size, 48u + 40u + 40u);
  EXPECT_EQ(h.fields_size, fields.size());
  EXPECT_EQ(h.data_offset, round_up(64 + 128 + fields.size(), 64));
  EXPECT_EQ(h.total_size, p.size());
  EXPECT_EQ(h.data_size, h.total_size - h.data_offset);
  // Fields block bytes.
  EXPECT_EQ(std::memcmp(p.data() + 64 + 128, fields.data(), fields.size()), 0);
  // Tensor "a": offset = data_offset, nbytes 24; "bee" at +64, 10 bytes; "hidden" at +128.
  const std::byte* e0 = p.data() + 64;
  EXPECT_EQ(in::load_le<uint64_t>(e0), h.data_offset);
  EXPECT_EQ(in::load_le<uint64_t>(e0 + 8), 24u);
  EXPECT_EQ(in::load_le<uint8_t>(e0 + 16), static_cast<uint8_t>(DType::kF32));
  EXPECT_EQ(in::load_le<uint8_t>(e0 + 17), 2);
  EXPECT_EQ(in::load_le<uint16_t>(e0 + 18), 1);
  EXPECT_EQ(in::load_le<uint32_t>(e0 + 20), 0u);
  EXPECT_EQ(in::load_le<int64_t>(e0 + 24), 2);
  EXPECT_EQ(in::load_le<int64_t>(e0 + 32), 3);
  EXPECT_EQ(static_cast<char>(e0[40]), 'a');
  for (int i = 41; i < 48; ++i) EXPECT_EQ(e0[i], std::byte{0});
  EXPECT_EQ(in::load_le<uint64_t>(p.data() + entry_at(p, 1)), h.data_offset + 64);
  EXPECT_EQ(in::load_le<uint64_t>(p.data() + entry_at(p, 2)), h.data_offset + 128);
  EXPECT_EQ(h.total_size, h.data_offset + 128 + 800 + 32);  // 800 rounded up to 832
  // Checksums.
  EXPECT_EQ(h.data_checksum,
            in::data_checksum({p.data() + h.data_offset, static_cast<size_t>(h.data_size)}));
  EXPECT_EQ(h.header_checksum, in::header_checksum(p, h.data_offset));
}

TEST(PayloadTest, AlignmentAndZeroPadding) {
  std::vector<std::vector<uint8_t>> data;
  PayloadBuilder b;
  for (int i = 0; i < 12; ++i) {
    const int64_t n = 1 + i * 13;
    data.push_back(random_bytes(static_cast<size_t>(n) * 2, static_cast<uint32_t>(i)));
    ASSERT_TRUE(b.add_tensor(indexed_name("t", i), DType::kF16, {n}, data.back().data()).ok());
  }
  ASSERT_TRUE(b.set_fields(Value::Map{{"k", "v"}}).ok());
  AlignedBuffer buf(b.encoded_size(), /*fill=*/0xAA);  // dirty memory: padding must be zeroed
  Result<size_t> written = b.write_to(buf.span());
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(*written, b.encoded_size());
  EXPECT_EQ(*written % 64, 0u);
  Result<PayloadReader> r = PayloadReader::open(buf.span());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const in::Header h = in::load_header(buf.data());
  EXPECT_EQ(h.data_offset % 64, 0u);
  // Every byte of the data region outside a tensor is zero, and every tensor is aligned.
  std::vector<bool> covered(h.total_size, false);
  for (const TensorView& t : r->tensors()) {
    const size_t off = static_cast<size_t>(t.data.data() - buf.data());
    EXPECT_EQ(off % 64, 0u) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data.data()) % 64, 0u) << t.name;
    for (size_t i = off; i < off + t.data.size(); ++i) covered[i] = true;
  }
  for (size_t i = 64 + h.table_size + h.fields_size; i < h.total_size; ++i) {
    if (!covered[i]) {
      EXPECT_EQ(buf.data()[i], std::byte{0}) << "byte " << i;
    }
  }
  // Same bytes as encode() (which starts from zeroed memory).
  ByteVec p = encode_or_die(b);
  ASSERT_EQ(p.size(), *written);
  EXPECT_EQ(std::memcmp(p.data(), buf.data(), p.size()), 0);
}

TEST(PayloadTest, WriteLayoutPlusFillEqualsWriteTo) {
  for (bool checksum : {false, true}) {
    Sample s(checksum);
    const size_t n = s.builder.encoded_size();
    AlignedBuffer direct(n, 0x11);
    ASSERT_TRUE(s.builder.write_to(direct.span()).ok());

    AlignedBuffer loan(n + 128, 0x22);  // a loan may be larger than the payload
    Result<size_t> laid = s.builder.write_layout(loan.span());
    ASSERT_TRUE(laid.ok()) << laid.status().ToString();
    EXPECT_EQ(*laid, n);
    const std::vector<uint8_t>* srcs[] = {&s.a, &s.b, &s.c};
    for (size_t i = 0; i < 3; ++i) {
      Result<std::span<std::byte>> dst = mutable_tensor_data(loan.span(), i);
      ASSERT_TRUE(dst.ok()) << dst.status().ToString();
      ASSERT_EQ(dst->size(), srcs[i]->size());
      std::memcpy(dst->data(), srcs[i]->data(), dst->size());
    }
    EXPECT_EQ(mutable_tensor_data(loan.span(), 3).status().code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(finish_payload(loan.span()).ok());
    EXPECT_EQ(std::memcmp(direct.data(), loan.data(), n), 0) << "checksum=" << checksum;
    Result<PayloadReader> r = PayloadReader::open(loan.span(), ReadOptions{true});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->size(), n);
  }
}

TEST(PayloadTest, WriteToWithoutSourceWritesZeros) {
  PayloadBuilder b;
  ASSERT_TRUE(b.add_tensor("later", DType::kU8, {10}, nullptr).ok());
  AlignedBuffer buf(b.encoded_size(), 0xEE);
  ASSERT_TRUE(b.write_to(buf.span()).ok());
  Result<PayloadReader> r = PayloadReader::open(buf.span());
  ASSERT_TRUE(r.ok());
  for (std::byte x : r->tensor(0).data) EXPECT_EQ(x, std::byte{0});
}

TEST(PayloadTest, FinishAndMutableDataRejectGarbage) {
  AlignedBuffer buf(256, 0x5A);
  EXPECT_EQ(finish_payload(buf.span()).code(), StatusCode::kCorrupt);
  EXPECT_EQ(mutable_tensor_data(buf.span(), 0).status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(finish_payload({}).code(), StatusCode::kCorrupt);
}

TEST(PayloadTest, DestinationChecks) {
  Sample s;
  const size_t n = s.builder.encoded_size();
  AlignedBuffer buf(n + 64);
  Result<size_t> small = s.builder.write_to(buf.span().first(n - 1));
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("smaller"), std::string::npos);
  Result<size_t> unaligned = s.builder.write_to(buf.span().subspan(8, n));
  EXPECT_EQ(unaligned.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unaligned.status().message().find("aligned"), std::string::npos);
  EXPECT_EQ(s.builder.write_layout(buf.span().subspan(1, n)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(s.builder.write_layout(buf.span().first(n - 1)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(PayloadTest, ReaderAcceptsUnalignedAndLongerBuffers) {
  Sample s;
  ByteVec p = encode_or_die(s.builder);
  ByteVec shifted(p.size() + 1 + 100, std::byte{0x77});
  std::memcpy(shifted.data() + 1, p.data(), p.size());
  Result<PayloadReader> r =
      PayloadReader::open(std::span<const std::byte>(shifted).subspan(1), ReadOptions{true});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), p.size());  // only the first total_size bytes
  const TensorView* t = r->find("hidden");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(std::memcmp(t->data.data(), s.c.data(), s.c.size()), 0);
}

TEST(PayloadTest, BuilderValidation) {
  PayloadBuilder b;
  uint8_t x[8] = {};
  auto code = [](const Status& st) { return st.code(); };
  EXPECT_EQ(code(b.add_tensor("", DType::kU8, {1}, x)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(b.add_tensor(std::string(kMaxNameBytes + 1, 'n'), DType::kU8, {1}, x)),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.add_tensor(std::string(kMaxNameBytes, 'n'), DType::kU8, {1}, x).ok());
  EXPECT_EQ(code(b.add_tensor("\xC3", DType::kU8, {1}, x)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(b.add_tensor("\xED\xA0\x80", DType::kU8, {1}, x)),  // surrogate
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(b.add_tensor("\xC0\x80", DType::kU8, {1}, x)),  // overlong
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.add_tensor("\xE6\xBC\xA2\xF0\x9F\x98\x80", DType::kU8, {1}, x).ok());
  EXPECT_EQ(code(b.add_tensor("bad_dtype", static_cast<DType>(0), {1}, x)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(b.add_tensor("bad_dtype", static_cast<DType>(11), {1}, x)),
            StatusCode::kInvalidArgument);
  Status rank9 = b.add_tensor("rank9", DType::kU8, std::vector<int64_t>(9, 1), x);
  EXPECT_EQ(rank9.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rank9.message().find("'rank9'"), std::string::npos) << rank9.message();
  Status neg = b.add_tensor("neg", DType::kU8, {2, -1}, x);
  EXPECT_EQ(neg.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(neg.message().find("'neg'"), std::string::npos) << neg.message();
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(code(b.add_tensor("overflow", DType::kF64, {big, big}, nullptr)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(b.add_tensor("overflow2", DType::kF64, {big}, nullptr)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(b.add_tensor("too_big", DType::kU8, {int64_t{1} << 49}, nullptr)),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.add_tensor("ok", DType::kU8, {8}, x).ok());
  Status dup = b.add_tensor("ok", DType::kU8, {8}, x);
  EXPECT_EQ(dup.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("'ok'"), std::string::npos);
  EXPECT_EQ(b.tensor_count(), 3u);  // failed adds leave no trace
  ByteVec p = encode_or_die(b);
  EXPECT_TRUE(open(p).ok());
}

TEST(PayloadTest, MaxTensors) {
  PayloadBuilder b;
  for (size_t i = 0; i < kMaxTensors; ++i) {
    ASSERT_TRUE(b.add_tensor(indexed_name("t", i), DType::kU8, {0}, nullptr).ok());
  }
  EXPECT_EQ(b.add_tensor("one_more", DType::kU8, {0}, nullptr).code(),
            StatusCode::kInvalidArgument);
  ByteVec p = encode_or_die(b);
  Result<PayloadReader> r = open(p);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensor_count(), kMaxTensors);
  EXPECT_EQ(r->tensor(kMaxTensors - 1).name, "t4095");
}

TEST(PayloadTest, DataChecksum) {
  Sample off(/*checksum=*/false);
  ByteVec p_off = encode_or_die(off.builder);
  EXPECT_EQ(header_of(p_off).flags, 0);
  EXPECT_EQ(header_of(p_off).data_checksum, 0u);
  Sample on(/*checksum=*/true);
  ByteVec p_on = encode_or_die(on.builder);
  EXPECT_EQ(header_of(p_on).flags, 1);

  const size_t data_byte = static_cast<size_t>(header_of(p_on).data_offset) + 3;
  p_off[data_byte] ^= std::byte{0x40};
  p_on[data_byte] ^= std::byte{0x40};
  EXPECT_TRUE(open(p_off, false).ok());
  EXPECT_TRUE(open(p_off, true).ok());  // nothing to verify
  ASSERT_TRUE(open(p_on, false).ok());
  EXPECT_TRUE(open(p_on, false)->has_data_checksum());
  expect_corrupt(p_on, "data checksum mismatch");
  // A flipped padding byte in the data region is caught too.
  p_on[data_byte] ^= std::byte{0x40};
  ASSERT_TRUE(open(p_on, true).ok());
  p_on[p_on.size() - 1] ^= std::byte{1};
  expect_corrupt(p_on, "data checksum mismatch");
}

TEST(PayloadTest, HeaderChecksumCoversEveryHeaderTableAndFieldsByte) {
  Sample s(/*checksum=*/true);
  const ByteVec p = encode_or_die(s.builder);
  const size_t data_offset = static_cast<size_t>(header_of(p).data_offset);
  for (size_t i = 0; i < data_offset; ++i) {
    for (uint8_t bit : {0x01, 0x80}) {
      ByteVec q = p;
      q[i] ^= std::byte{bit};
      Result<PayloadReader> r = open(q);
      ASSERT_FALSE(r.ok()) << "flip at byte " << i;
      EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
    }
  }
  // With the sizes intact, the checksum is what catches it.
  ByteVec q = p;
  q[64 + 40] ^= std::byte{1};  // a byte of the first tensor's name
  expect_corrupt(q, "header checksum mismatch");
  q = p;
  q[data_offset - 1] ^= std::byte{1};  // last padding byte before the data
  expect_corrupt(q, "header checksum mismatch");
}

TEST(PayloadTest, EveryTruncationFails) {
  Sample s;
  const ByteVec p = encode_or_die(s.builder);
  for (size_t n = 0; n < p.size(); ++n) {
    Result<PayloadReader> r = PayloadReader::open(std::span<const std::byte>(p).first(n));
    ASSERT_FALSE(r.ok()) << "length " << n;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  }
  EXPECT_TRUE(open(p).ok());
}

TEST(PayloadTest, RandomMutationsNeverCrash) {
  Sample s(/*checksum=*/true);
  const ByteVec p = encode_or_die(s.builder);
  const size_t data_offset = static_cast<size_t>(header_of(p).data_offset);
  std::mt19937 rng(20240601);
  int accepted = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    ByteVec q = p;
    const int flips = 1 + static_cast<int>(rng() % 8);
    const bool data_only = iter % 2 == 0;
    for (int k = 0; k < flips; ++k) {
      const size_t lo = data_only ? data_offset : 0;
      q[lo + rng() % (q.size() - lo)] = static_cast<std::byte>(rng());
    }
    const bool meta_changed = std::memcmp(q.data(), p.data(), data_offset) != 0;
    const bool data_changed = q != p && !meta_changed;
    const bool verify = rng() % 2 == 0;
    Result<PayloadReader> r = open(q, verify);
    if (meta_changed || (verify && data_changed)) {
      ASSERT_FALSE(r.ok()) << "iteration " << iter;
      EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
    } else {
      ASSERT_TRUE(r.ok()) << "iteration " << iter << ": " << r.status().ToString();
      ++accepted;
      EXPECT_EQ(r->tensor_count(), 3u);
      EXPECT_EQ(r->tensor(2).name, "hidden");
      EXPECT_TRUE(r->fields().ok());
    }
  }
  EXPECT_GT(accepted, 500);
}

TEST(PayloadTest, RandomMutationsWithResealedHeaderNeverCrash) {
  // Mutate header/table/fields and recompute the header checksum, so the structural checks
  // (not the checksum) must catch or tolerate every change.
  Sample s(/*checksum=*/false);
  const ByteVec p = encode_or_die(s.builder);
  const size_t data_offset = static_cast<size_t>(header_of(p).data_offset);
  std::mt19937 rng(7);
  for (int iter = 0; iter < 4000; ++iter) {
    ByteVec q = p;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % data_offset;
      if (at >= in::hdr::kHeaderChecksum && at < 64) continue;
      q[at] = static_cast<std::byte>(rng());
    }
    const in::Header h = header_of(q);
    if (h.data_offset >= 64 && h.data_offset <= q.size()) reseal_header(q);
    Result<PayloadReader> r = open(q, true);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
      continue;
    }
    for (const TensorView& t : r->tensors()) {  // views stay inside the buffer
      EXPECT_GE(t.data.data(), q.data());
      EXPECT_LE(t.data.data() + t.data.size(), q.data() + q.size());
      EXPECT_EQ(t.numel() * dtype_size(t.dtype), t.data.size());
    }
    (void)r->fields();  // may fail, must not crash
  }
}

// ---------------------------------------------------------------------------------------------
// Forged entries: each test breaks one field, re-seals the header checksum and expects the
// specific check to fire.

class PayloadForgeryTest : public ::testing::Test {
 protected:
  PayloadForgeryTest() : s_(/*checksum=*/true, /*fields=*/false), p_(encode_or_die(s_.builder)) {}

  std::byte* entry(size_t i) { return p_.data() + entry_at(p_, i); }
  in::Header header() const { return header_of(p_); }
  void expect(const std::string& needle) {
    reseal_header(p_);
    expect_corrupt(p_, needle);
  }

  Sample s_;
  ByteVec p_;
};

TEST_F(PayloadForgeryTest, Baseline) {
  reseal_header(p_);
  EXPECT_TRUE(open(p_, true).ok());
}

TEST_F(PayloadForgeryTest, OffsetBeyondPayload) {
  in::store_le(entry(2), header().total_size);
  expect("payload: tensor 2 'hidden' data [offset " + std::to_string(header().total_size) +
         ", 800 bytes] exceeds payload size " + std::to_string(header().total_size));
}

TEST_F(PayloadForgeryTest, OffsetOverflows) {
  in::store_le(entry(2), std::numeric_limits<uint64_t>::max() - 63);
  expect("exceeds payload size");
}

TEST_F(PayloadForgeryTest, DataPartlyOutside) {
  in::store_le(entry(2), header().total_size - 64);  // 800 bytes from 64 before the end
  expect("exceeds payload size");
}

TEST_F(PayloadForgeryTest, OffsetUnaligned) {
  in::store_le(entry(1), in::load_le<uint64_t>(entry(1)) + 8);
  expect("tensor 1 'bee' data [offset");
  expect("not 64-byte aligned");
}

TEST_F(PayloadForgeryTest, OffsetBeforeDataRegion) {
  in::store_le(entry(0), uint64_t{0});
  expect("starts before data_offset");
}

TEST_F(PayloadForgeryTest, NbytesMismatch) {
  in::store_le(entry(0) + 8, uint64_t{25});
  expect("tensor 0 'a': nbytes 25 != numel * dtype size 24");
}

TEST_F(PayloadForgeryTest, Rank9) {
  in::store_le(entry(0) + 17, uint8_t{9});
  expect("tensor 0: rank 9 exceeds the maximum 8");
}

TEST_F(PayloadForgeryTest, BadDType) {
  in::store_le(entry(1) + 16, uint8_t{0});
  expect("tensor 1 'bee': invalid dtype 0");
  in::store_le(entry(1) + 16, uint8_t{11});
  expect("invalid dtype 11");
}

TEST_F(PayloadForgeryTest, DimsOverflow) {
  in::store_le(entry(0) + 24, std::numeric_limits<int64_t>::max());
  in::store_le(entry(0) + 32, std::numeric_limits<int64_t>::max());
  expect("overflows");
}

TEST_F(PayloadForgeryTest, HugeDimTimesDTypeSizeOverflows) {
  in::store_le(entry(2) + 24, int64_t{1} << 62);  // f64: 2^62 * 8 overflows
  expect("overflows");
}

TEST_F(PayloadForgeryTest, NegativeDim) {
  in::store_le(entry(1) + 24, int64_t{-5});
  expect("negative");
}

TEST_F(PayloadForgeryTest, ReservedNonZero) {
  in::store_le(entry(0) + 20, uint32_t{1});
  expect("reserved");
}

TEST_F(PayloadForgeryTest, NameLength) {
  in::store_le(entry(0) + 18, uint16_t{0});
  expect("name_len 0");
  in::store_le(entry(0) + 18, uint16_t{1025});
  expect("name_len 1025");
  in::store_le(entry(0) + 18, uint16_t{1});
  in::store_le(entry(2) + 18, uint16_t{1000});  // runs past the table
  expect("tensor 2: entry table truncated");
}

TEST_F(PayloadForgeryTest, NameNotUtf8) {
  entry(1)[24 + 8] = std::byte{0xFF};
  expect("tensor 1: name is not valid UTF-8");
}

TEST_F(PayloadForgeryTest, MoreTensorsThanEntries) {
  in::store_le(p_.data() + in::hdr::kTensorCount, uint32_t{4});
  expect("tensor 3: entry table truncated");
  in::store_le(p_.data() + in::hdr::kTensorCount, uint32_t{5});  // 5 * 32 > table_size
  expect("too small for 5 tensors");
}

TEST_F(PayloadForgeryTest, FewerTensorsThanEntries) {
  in::store_le(p_.data() + in::hdr::kTensorCount, uint32_t{2});
  expect("bytes after the last entry");
}

TEST_F(PayloadForgeryTest, HeaderFields) {
  const ByteVec good = p_;
  auto forge = [&](size_t at, auto value, const std::string& needle) {
    p_ = good;
    in::store_le(p_.data() + at, value);
    expect(needle);
  };
  forge(in::hdr::kMagic, uint32_t{0x504E434E}, "bad magic");
  forge(in::hdr::kVersion, uint16_t{2}, "unsupported format version 2");
  forge(in::hdr::kVersion, uint16_t{0}, "unsupported format version 0");
  forge(in::hdr::kFlags, uint16_t{3}, "unknown flags");
  forge(in::hdr::kFlags, uint16_t{0x8000}, "unknown flags");
  forge(in::hdr::kHeaderSize, uint32_t{128}, "header_size");
  forge(in::hdr::kTensorCount, uint32_t{kMaxTensors + 1}, "tensor_count");
  forge(in::hdr::kTableSize, uint32_t{132}, "table_size");
  forge(in::hdr::kFieldsSize, uint32_t{0xFFFFFFFF}, "data_offset");
  forge(in::hdr::kDataOffset, uint64_t{header().data_offset + 64}, "data_offset");
  forge(in::hdr::kDataSize, uint64_t{1}, "data_size");
  forge(in::hdr::kTotalSize, uint64_t{good.size() + 64}, "exceeds the buffer");
  forge(in::hdr::kTotalSize, uint64_t{good.size() - 1}, "total_size");
  forge(in::hdr::kTotalSize, std::numeric_limits<uint64_t>::max() - 63, "total_size");
  p_ = good;
  in::store_le(p_.data() + in::hdr::kFlags, uint16_t{0});  // checksum word left non-zero
  expect("data_checksum set without");
}

TEST(PayloadForgery2Test, TableSizeWithTrailingBytes) {
  // One rank-0 tensor: a 32-byte table, then 32 bytes of padding before the data at 128.
  PayloadBuilder b;
  const float x = 1.0f;
  ASSERT_TRUE(b.add_tensor("a", DType::kF32, {}, &x).ok());
  ByteVec p = encode_or_die(b);
  in::Header h = header_of(p);
  ASSERT_EQ(h.table_size, 32u);
  ASSERT_EQ(h.data_offset, 128u);
  in::store_le(p.data() + in::hdr::kTableSize, uint32_t{40});  // claim 8 padding bytes
  reseal_header(p);
  expect_corrupt(p, "entry table has 8 bytes after the last entry");
}

TEST(PayloadForgery2Test, BadFieldsBlockIsCaughtByFields) {
  PayloadBuilder b;
  ASSERT_TRUE(b.set_fields(Value::Map{{"k", 1}}).ok());
  ByteVec p = encode_or_die(b);
  const size_t fields_at = 64;
  p[fields_at] = std::byte{0x91};  // a one-element array instead of a map
  reseal_header(p);
  Result<PayloadReader> r = open(p);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->fields().status().code(), StatusCode::kCorrupt);
  p[fields_at] = std::byte{0xc1};  // never used
  reseal_header(p);
  r = open(p);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->fields().status().code(), StatusCode::kCorrupt);
}

}  // namespace
}  // namespace omniconn

// Writes the fuzzers' seed corpora: valid (and a few near-valid) inputs made with the library's
// own encoders, plus the example stage configs.
//
//   make_seeds <corpus dir> <examples dir>     e.g.  build-fuzz/make_seeds fuzz/corpus examples
//
// Output is deterministic; each target's files go to <corpus dir>/<target>/.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "mooncake/mooncake_descriptor.h"
#include "omniconn/payload.h"
#include "omniconn/value.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_ring.h"

namespace fs = std::filesystem;
using omniconn::DType;
using omniconn::PayloadBuilder;
using omniconn::PayloadKey;
using omniconn::Value;

namespace {

fs::path g_root;

void write(const std::string& target, const std::string& name, const void* data, size_t n) {
  fs::create_directories(g_root / target);
  std::ofstream f(g_root / target / name, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!f) {
    std::cerr << "make_seeds: cannot write " << (g_root / target / name) << "\n";
    std::exit(1);
  }
}

template <typename Bytes>
void write(const std::string& target, const std::string& name, const Bytes& b) {
  write(target, name, b.data(), b.size());
}

void die(const std::string& what) {
  std::cerr << "make_seeds: " << what << "\n";
  std::exit(1);
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + 31 * i);
  return v;
}

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

std::vector<std::byte> make_payload(const std::vector<TensorSpec>& tensors, const Value& fields,
                                    bool checksum_data) {
  PayloadBuilder b;
  std::vector<std::vector<uint8_t>> data;
  data.reserve(tensors.size());
  for (const TensorSpec& t : tensors) {
    size_t n = omniconn::dtype_size(t.dtype);
    for (int64_t d : t.shape) n *= static_cast<size_t>(d);
    data.push_back(pattern(n, static_cast<uint8_t>(data.size() + 1)));
    if (!b.add_tensor(t.name, t.dtype, t.shape, data.back().data()).ok()) die("add_tensor");
  }
  if (!b.set_fields(fields).ok()) die("set_fields");
  b.set_checksum_data(checksum_data);
  auto out = b.encode();
  if (!out.ok()) die("encode: " + out.status().ToString());
  return *out;
}

Value sample_fields() {
  return Value(Value::Map{
      {"request_id", Value("req-0001")},
      {"n", Value(5)},
      {"neg", Value(int64_t{-7})},
      {"big", Value(std::numeric_limits<uint64_t>::max())},
      {"f", Value(1.5)},
      {"ok", Value(true)},
      {"none", Value()},
      {"list", Value(Value::List{Value(1), Value("a"), Value(), Value(false)})},
      {"bin", Value(Value::Bytes{{0, 1, 2, 255}})},
      {"nested", Value(Value::Map{{"k", Value(Value::List{Value(2.25)})}})},
  });
}

void payload_seeds() {
  const std::string t = "fuzz_payload";
  write(t, "empty", make_payload({}, Value(), false));
  write(t, "fields_only", make_payload({}, sample_fields(), false));
  write(t, "f32_2x3", make_payload({{"x", DType::kF32, {2, 3}}}, Value(), false));
  write(t, "f16_3x5_checksum", make_payload({{"hidden", DType::kF16, {3, 5}}}, Value(), true));
  write(t, "mixed_fields",
        make_payload({{"emb", DType::kBF16, {4}},
                      {"scalar", DType::kI64, {}},
                      {"empty", DType::kBool, {0}},
                      {"rank8", DType::kU8, {1, 1, 1, 1, 1, 1, 1, 2}}},
                     sample_fields(), false));
  write(t, "f64_i32_i16_i8",
        make_payload({{"a", DType::kF64, {2, 2}},
                      {"b", DType::kI32, {3}},
                      {"c", DType::kI16, {5}},
                      {"d", DType::kI8, {9}}},
                     Value(Value::Map{{"k", Value("v")}}), true));
  write(t, "utf8_name",
        make_payload({{"\xc3\xa9mbed/\xe5\xb1\xa4", DType::kI8, {7}}}, Value(), false));
  std::vector<TensorSpec> many;
  for (int i = 0; i < 12; ++i) many.push_back({"t" + std::to_string(i), DType::kI16, {i % 3}});
  write(t, "many_tensors", make_payload(many, Value(), false));
  write(t, "long_name", make_payload({{std::string(70, 'n'), DType::kU8, {3}}}, Value(), false));
}

void shm_descriptor_seeds(const std::vector<std::byte>& payload) {
  namespace shm = omniconn::shm;
  const std::string t = "fuzz_shm_descriptor";
  const PayloadKey key{"req-1", "0", "1"};
  write(t, "inline_payload", shm::encode_inline_descriptor(key, payload));
  const char hello[] = "hello";
  write(t, "inline_5_bytes",
        shm::encode_inline_descriptor(key, std::as_bytes(std::span(hello, 5))));
  // An empty span with a non-null pointer: encode_inline_descriptor memcpys from it.
  write(t, "inline_empty",
        shm::encode_inline_descriptor({"r", "a", "b"}, std::as_bytes(std::span(hello, 0))));
  shm::ShmRef ref{0x1122334455667788ULL, 3, 17, 42, 4096, 1 << 20, 0xdeadbeefcafef00dULL};
  write(t, "ref", shm::encode_ref_descriptor(key, ref));
  write(t, "ref_padded_key", shm::encode_ref_descriptor({"req-0001", "thinker", "talker"}, ref));
  write(t, "ref_long_key",
        shm::encode_ref_descriptor({std::string(100, 'r'), "stage_a", "stage_b"}, ref));
}

// A ring image for fuzz_ring_record: [u64 tail][i32 head - tail][data area of cap bytes], the
// records written by the writer's own append_ring_record.
void ring_seed(const std::string& name, uint64_t cap, uint64_t tail,
               const std::vector<std::string>& bodies) {
  namespace shm = omniconn::shm;
  std::vector<std::byte> area(cap);
  uint64_t head = tail;
  for (const std::string& b : bodies) {
    if (cap - (head - tail) < shm::ring_space_needed(cap, head, b.size())) die("ring seed full");
    head = shm::append_ring_record(area.data(), cap, head, std::as_bytes(std::span(b)));
  }
  std::vector<uint8_t> out(12 + cap);
  const auto delta = static_cast<int32_t>(head - tail);
  std::memcpy(out.data(), &tail, 8);
  std::memcpy(out.data() + 8, &delta, 4);
  std::memcpy(out.data() + 12, area.data(), cap);
  write("fuzz_ring_record", name, out);
}

void ring_seeds(const std::vector<std::byte>& payload) {
  namespace shm = omniconn::shm;
  const PayloadKey key{"req-1", "0", "1"};
  const std::string inl = shm::encode_inline_descriptor(key, std::as_bytes(std::span("hi", 2)));
  shm::ShmRef ref{0x1122334455667788ULL, 3, 17, 42, 4096, 1 << 20, 0xdeadbeefcafef00dULL};
  const std::string r = shm::encode_ref_descriptor(key, ref);
  const std::string big = shm::encode_inline_descriptor(key, payload);
  ring_seed("empty", 256, 0, {});
  ring_seed("one_ref", 256, 0, {r});
  ring_seed("three", 512, 0, {r, inl, r});
  ring_seed("wrap_with_pad", 256, 200, {inl, r});  // the second record wraps: a pad first
  ring_seed("large_index", 512, (uint64_t{1} << 40) + 64, {big});
  ring_seed("odd_lengths", 256, 8, {"a", "abc", "abcdefghi"});
}

void mooncake_descriptor_seeds(const std::vector<std::byte>& payload) {
  namespace mc = omniconn::mooncake;
  const std::string t = "fuzz_mooncake_descriptor";
  mc::DescriptorInfo d;
  d.key = {"req-1", "0", "1"};
  d.is_inline = true;
  d.inline_bytes.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
  d.size = payload.size();
  d.checksum = mc::checksum_of(payload);
  write(t, "inline_payload", mc::encode_descriptor(d));
  d.inline_bytes.clear();
  d.size = 0;
  d.checksum = mc::checksum_of({});
  write(t, "inline_empty", mc::encode_descriptor(d));
  d.is_inline = false;
  d.store_key = "omniconn/req-1/0_to_1/7f3a";
  d.size = 1 << 20;
  d.checksum = 0x0123456789abcdefULL;
  write(t, "store", mc::encode_descriptor(d));
  d.key = {std::string(300, 'q'), "thinker", "talker"};
  write(t, "store_long_key", mc::encode_descriptor(d));
}

void msgpack_seeds() {
  const std::string t = "fuzz_value_msgpack";
  auto enc = [&](const std::string& name, const Value& v) {
    write(t, name, omniconn::encode_msgpack(v));
  };
  enc("nil", Value());
  enc("true", Value(true));
  enc("int_neg", Value(int64_t{-1}));
  enc("int_min", Value(std::numeric_limits<int64_t>::min()));
  enc("uint_max", Value(std::numeric_limits<uint64_t>::max()));
  enc("float", Value(-0.0));
  enc("float_nan", Value(std::nan("")));
  enc("string", Value("h\xc3\xa9llo"));
  enc("bytes", Value(Value::Bytes{pattern(40, 9)}));
  enc("list_mixed", Value(Value::List{Value(1), Value("x"), Value(2.5), Value(), Value(true)}));
  enc("map_fields", sample_fields());
  enc("string_300", Value(std::string(300, 's')));
  Value deep = Value(1);
  for (int i = 0; i < 32; ++i) deep = Value(Value::List{deep});
  enc("depth_32", deep);                      // the deepest accepted nesting
  enc("depth_33", Value(Value::List{deep}));  // one too deep
  Value::Map wide;
  for (int i = 0; i < 40; ++i) wide.emplace("key" + std::to_string(i), Value(i));
  enc("map_40", Value(wide));
  // Hand-written encodings the encoder never produces.
  auto raw = [&](const std::string& name, std::initializer_list<uint8_t> b) {
    std::vector<uint8_t> v(b);
    write(t, name, v);
  };
  raw("float32", {0xca, 0x3f, 0xc0, 0x00, 0x00});
  raw("str8", {0xd9, 0x03, 'a', 'b', 'c'});
  raw("bin16", {0xc5, 0x00, 0x02, 0x01, 0x02});
  raw("array16", {0xdc, 0x00, 0x02, 0xc0, 0xc3});
  raw("map32_int_key", {0xdf, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02});
  raw("dup_key", {0x82, 0xa1, 'k', 0x01, 0xa1, 'k', 0x02});
  raw("fixext1", {0xd4, 0x01, 0x00});
  raw("truncated_array", {0x93, 0x01});
  raw("trailing", {0x01, 0x02});
  raw("int8_pos", {0xd0, 0x05});
}

void yaml_seeds(const fs::path& examples) {
  const std::string t = "fuzz_config_yaml";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(examples)) {
    if (e.path().extension() == ".yaml") files.push_back(e.path());
  }
  if (files.empty()) die("no .yaml files in " + examples.string());
  for (const fs::path& p : files) {
    std::ifstream f(p, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    write(t, "example_" + p.stem().string(), text);
  }
  auto text = [&](const std::string& name, const std::string& s) { write(t, name, s); };
  text("minimal", "stage_args:\n  - stage_id: 0\n  - stage_id: 1\n    engine_input_source: [0]\n");
  text("runtime_edges",
       "stage_args:\n  - {stage_id: 0}\n  - {stage_id: 1}\nruntime:\n  edges:\n"
       "    - {from: 0, to: 1, window_size: -1}\n");
  text("inline_connector",
       "stage_args:\n  - stage_id: 0\n    output_connectors:\n      to_stage_1:\n"
       "        name: SharedMemoryConnector\n        extra: {shm_threshold_bytes: 1_048_576}\n"
       "  - stage_id: 1\n    engine_input_source: [0]\n");
  text("anchors",
       "x: &c {name: SharedMemoryConnector}\nruntime:\n  connectors:\n    shm: *c\n"
       "stage_args:\n  - stage_id: 0\n    output_connectors: {to_stage_1: shm}\n"
       "  - stage_id: 1\n    input_connectors: {from_stage_0: shm}\n");
  text("errors",
       "stage_args:\n  - stage_id: 0\n    engine_input_source: [0]\n  - stage_id: -3\n"
       "    output_connectors: {to_stage_9: {name: NoSuchConnector}}\n");
  text("two_documents", "stage_args: []\n---\nstage_args: []\n");
  text("scalars", "a: [0x1F, 0o17, .inf, -.Inf, .nan, ~, null, yes, 1e3, '1', \"\\u00e9\"]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds <corpus dir> <examples dir>\n";
    return 2;
  }
  g_root = argv[1];
  payload_seeds();
  const std::vector<std::byte> small =
      make_payload({{"x", DType::kF32, {2, 3}}}, Value(Value::Map{{"k", Value(1)}}), false);
  shm_descriptor_seeds(small);
  mooncake_descriptor_seeds(small);
  ring_seeds(small);
  msgpack_seeds();
  yaml_seeds(argv[2]);
  std::cout << "seeds written under " << g_root << "\n";
  return 0;
}

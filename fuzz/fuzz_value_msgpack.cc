// decode_msgpack on untrusted bytes (a payload's fields block).
//
// When a value decodes: encoding it and decoding again gives the same value (floats by bit
// pattern), that encoding is a fixed point, and a map is accepted as a payload's fields and
// reads back the same through PayloadBuilder / PayloadReader.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_check.h"
#include "omniconn/payload.h"
#include "omniconn/value.h"
#include "value_eq.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using omniconn::Value;
  auto v = omniconn::decode_msgpack(data, size);
  if (!v.ok()) return 0;

  const std::vector<uint8_t> once = omniconn::encode_msgpack(*v);
  auto again = omniconn::decode_msgpack(once.data(), once.size());
  FUZZ_CHECK(again.ok(), "the encoding of a decoded value does not decode");
  FUZZ_CHECK(omniconn::fuzz::same_value(*v, *again), "decode(encode(v)) != v");
  FUZZ_CHECK(omniconn::encode_msgpack(*again) == once, "encode is not a fixed point");

  if (!v->is_map()) return 0;
  omniconn::PayloadBuilder b;
  FUZZ_CHECK(b.set_fields(*v).ok(), "a decoded map is rejected as payload fields");
  auto payload = b.encode();
  FUZZ_CHECK(payload.ok(), "encoding a fields-only payload failed");
  auto r = omniconn::PayloadReader::open(*payload);
  FUZZ_CHECK(r.ok(), "a fields-only payload does not open");
  auto fields = r->fields();
  FUZZ_CHECK(fields.ok() && omniconn::fuzz::same_value(*fields, *v), "fields changed");
  return 0;
}

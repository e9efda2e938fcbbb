// mooncake::decode_descriptor (the MooncakeConnector's descriptor) on untrusted bytes.
//
// Each input is decoded twice: as is, and with its last 8 bytes replaced by the xxh3-64 of the
// rest, so that mutations get past the trailer check. The encoding is a bijection: when a
// descriptor decodes, encoding it again must give the input back byte for byte.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fuzz_check.h"
#include "mooncake/mooncake_descriptor.h"

namespace {

void check(std::string_view in) {
  namespace mc = omniconn::mooncake;
  auto d = mc::decode_descriptor(in);
  if (!d.ok()) return;
  FUZZ_CHECK(d->is_inline == d->store_key.empty(), "inline flag and store key disagree");
  if (d->is_inline) FUZZ_CHECK(d->inline_bytes.size() == d->size, "inline size");
  FUZZ_CHECK(mc::encode_descriptor(*d) == in, "encode(decode(x)) != x");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  check(raw);
  if (size < 8) return 0;
  // An exactly sized heap copy, so that ASan catches a read past its end.
  std::unique_ptr<char[]> fixed(new char[size]);
  std::memcpy(fixed.get(), data, size);
  const uint64_t sum = XXH3_64bits(fixed.get(), size - 8);
  for (int i = 0; i < 8; ++i) fixed[size - 8 + i] = static_cast<char>(sum >> (8 * i));
  check({fixed.get(), size});
  return 0;
}

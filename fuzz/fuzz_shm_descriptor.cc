// shm::decode_descriptor (the SharedMemoryConnector's descriptor) on untrusted bytes.
//
// When a descriptor decodes: its key passes check_key, inline bytes lie inside the input, and
// encoding the decoded descriptor again gives the input back byte for byte, except the zero
// padding after the key strings, which the decoder does not check. Set OMNICONN_FUZZ_STRICT=1
// to require that padding to be zero too (it reports the decoder accepting non-canonical input).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "fuzz_check.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_layout.h"

namespace {

bool strict() {
  static const bool on = [] {
    const char* v = std::getenv("OMNICONN_FUZZ_STRICT");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace shm = omniconn::shm;
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  auto d = shm::decode_descriptor(in);
  if (!d.ok()) return 0;

  FUZZ_CHECK(shm::check_key(d->key).ok(), "a decoded key fails check_key");
  std::string again;
  if (d->is_inline) {
    const auto* b = d->inline_bytes.data();
    FUZZ_CHECK(b >= in.data() && d->inline_bytes.size() <= size &&
                   static_cast<size_t>(b - in.data()) == size - d->inline_bytes.size(),
               "inline bytes are not the tail of the input");
    again = shm::encode_inline_descriptor(d->key, d->inline_bytes);
  } else {
    again = shm::encode_ref_descriptor(d->key, d->ref);
  }
  FUZZ_CHECK(again.size() == size, "re-encoded descriptor has another length");

  const size_t strings_end =
      64 + d->key.request_id.size() + d->key.from_stage.size() + d->key.to_stage.size();
  const size_t pad_end = omniconn::round_up(strings_end, 8);
  FUZZ_CHECK(pad_end <= size, "key strings run past the descriptor");
  FUZZ_CHECK(std::memcmp(again.data(), data, strings_end) == 0 &&
                 std::memcmp(again.data() + pad_end, data + pad_end, size - pad_end) == 0,
             "encode(decode(x)) != x");
  if (strict()) {
    for (size_t i = strings_end; i < pad_end; ++i) {
      FUZZ_CHECK(data[i] == 0, "decoder accepted non-zero padding after the key strings");
    }
  }
  return 0;
}

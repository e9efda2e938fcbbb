#include "mooncake/mooncake_descriptor.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <cstring>

namespace omniconn::mooncake {

namespace {

constexpr char kMagic[4] = {'O', 'M', 'K', '1'};
constexpr size_t kFixed = 24, kTrailer = 8;

void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void put_str(std::string* out, const std::string& s) {
  out->push_back(static_cast<char>(s.size() & 0xff));
  out->push_back(static_cast<char>(s.size() >> 8));
  out->append(s);
}

uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool str(std::string* out) {
    if (s_.size() < 2) return false;
    size_t n = static_cast<uint8_t>(s_[0]) | (size_t{static_cast<uint8_t>(s_[1])} << 8);
    if (s_.size() - 2 < n) return false;
    out->assign(s_.substr(2, n));
    s_.remove_prefix(2 + n);
    return true;
  }
  std::string_view rest() const { return s_; }

 private:
  std::string_view s_;
};

}  // namespace

uint64_t checksum_of(std::span<const std::byte> bytes) {
  constexpr size_t kHead = 64 * 1024, kTail = 4 * 1024;
  if (bytes.size() <= kHead + kTail) return XXH3_64bits(bytes.data(), bytes.size());
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, bytes.data(), kHead);
  XXH3_64bits_update(&state, bytes.data() + bytes.size() - kTail, kTail);
  uint64_t n = bytes.size();
  XXH3_64bits_update(&state, &n, sizeof n);
  return XXH3_64bits_digest(&state);
}

std::string encode_descriptor(const DescriptorInfo& d) {
  std::string out(kMagic, sizeof kMagic);
  uint32_t flags = d.is_inline ? 1 : 0;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(flags >> (8 * i)));
  put_u64(&out, d.size);
  put_u64(&out, d.checksum);
  for (const std::string* s : {&d.store_key, &d.key.request_id, &d.key.from_stage, &d.key.to_stage})
    put_str(&out, *s);
  if (d.is_inline) out += d.inline_bytes;
  put_u64(&out, XXH3_64bits(out.data(), out.size()));
  return out;
}

Result<DescriptorInfo> decode_descriptor(std::string_view b) {
  auto corrupt = [](const char* why) {
    return Status::Corrupt(std::string("MooncakeConnector descriptor: ") + why);
  };
  if (b.size() < kFixed + 8 + kTrailer) return corrupt("too short");
  if (std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) {
    return corrupt("not a MooncakeConnector descriptor (wrong magic)");
  }
  size_t body = b.size() - kTrailer;
  if (XXH3_64bits(b.data(), body) != get_u64(b.data() + body)) {
    return corrupt("checksum mismatch (truncated or altered)");
  }
  DescriptorInfo d;
  uint32_t flags = static_cast<uint8_t>(b[4]);
  if (flags > 1 || b[5] || b[6] || b[7]) return corrupt("unknown flags");
  d.is_inline = flags == 1;
  d.size = get_u64(b.data() + 8);
  d.checksum = get_u64(b.data() + 16);
  Cursor c(b.substr(kFixed, body - kFixed));
  if (!c.str(&d.store_key) || !c.str(&d.key.request_id) || !c.str(&d.key.from_stage) ||
      !c.str(&d.key.to_stage)) {
    return corrupt("truncated key");
  }
  if (d.is_inline != d.store_key.empty()) return corrupt("inline flag and store key disagree");
  if (d.is_inline) {
    if (c.rest().size() != d.size) return corrupt("inline size mismatch");
    d.inline_bytes.assign(c.rest());
  } else if (!c.rest().empty()) {
    return corrupt("trailing bytes");
  }
  return d;
}

}  // namespace omniconn::mooncake

#include "shm/shm_descriptor.h"

#include <cstring>

#include "shm/shm_layout.h"

namespace omniconn::shm {

namespace {

constexpr uint32_t kDescMagic = 0x3144434F;  // "OCD1"
constexpr uint8_t kDescVersion = 1;
constexpr uint8_t kKindInline = 1;
constexpr uint8_t kKindRef = 2;
constexpr size_t kFixed = 64;

template <typename T>
void put_at(std::string& s, size_t off, T v) {
  std::memcpy(s.data() + off, &v, sizeof v);
}

template <typename T>
T get_at(std::span<const std::byte> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

std::string encode_common(const PayloadKey& key, uint8_t kind, uint64_t payload_size,
                          size_t tail_bytes) {
  size_t strings = key.request_id.size() + key.from_stage.size() + key.to_stage.size();
  std::string s(round_up(kFixed + strings, 8) + tail_bytes, '\0');
  put_at<uint32_t>(s, 0, kDescMagic);
  put_at<uint8_t>(s, 4, kDescVersion);
  put_at<uint8_t>(s, 5, kind);
  put_at<uint16_t>(s, 6, static_cast<uint16_t>(key.request_id.size()));
  put_at<uint16_t>(s, 8, static_cast<uint16_t>(key.from_stage.size()));
  put_at<uint16_t>(s, 10, static_cast<uint16_t>(key.to_stage.size()));
  put_at<uint64_t>(s, 16, payload_size);
  size_t off = kFixed;
  for (const std::string* part : {&key.request_id, &key.from_stage, &key.to_stage}) {
    std::memcpy(s.data() + off, part->data(), part->size());
    off += part->size();
  }
  return s;
}

}  // namespace

Status check_key(const PayloadKey& key) {
  for (const std::string* part : {&key.request_id, &key.from_stage, &key.to_stage}) {
    if (part->empty() || part->size() > kMaxIdBytes) {
      return Status::InvalidArgument("payload key '" + key.str().substr(0, 64) +
                                     "': request id and stage names must be 1.." +
                                     std::to_string(kMaxIdBytes) + " bytes");
    }
  }
  return Status::Ok();
}

std::string encode_inline_descriptor(const PayloadKey& key, std::span<const std::byte> payload) {
  std::string s = encode_common(key, kKindInline, payload.size(), payload.size());
  if (!payload.empty())
    std::memcpy(s.data() + s.size() - payload.size(), payload.data(), payload.size());
  return s;
}

std::string encode_ref_descriptor(const PayloadKey& key, const ShmRef& ref) {
  std::string s = encode_common(key, kKindRef, ref.size, 0);
  put_at<uint64_t>(s, 24, ref.producer_id);
  put_at<uint32_t>(s, 32, ref.segment_id);
  put_at<uint32_t>(s, 36, ref.slot);
  put_at<uint32_t>(s, 40, ref.generation);
  put_at<uint64_t>(s, 48, ref.offset);
  put_at<uint64_t>(s, 56, ref.header_checksum);
  return s;
}

namespace {

Status decode_key(std::span<const std::byte> b, DecodedDescriptor* out, size_t* end) {
  size_t lens[3] = {get_at<uint16_t>(b, 6), get_at<uint16_t>(b, 8), get_at<uint16_t>(b, 10)};
  std::string* parts[3] = {&out->key.request_id, &out->key.from_stage, &out->key.to_stage};
  size_t off = kFixed;
  for (int i = 0; i < 3; ++i) {
    if (lens[i] == 0 || lens[i] > kMaxIdBytes || off + lens[i] > b.size()) {
      return Status::Corrupt("descriptor: key field " + std::to_string(i) + " of " +
                             std::to_string(lens[i]) + " bytes is out of range");
    }
    parts[i]->assign(reinterpret_cast<const char*>(b.data()) + off, lens[i]);
    off += lens[i];
  }
  *end = round_up(off, 8);
  for (size_t p = off; p < *end && p < b.size(); ++p) {
    if (b[p] != std::byte{0}) return Status::Corrupt("descriptor: key padding bytes set");
  }
  return Status::Ok();
}

}  // namespace

Result<DecodedDescriptor> decode_descriptor(std::span<const std::byte> b) {
  if (b.size() < kFixed || get_at<uint32_t>(b, 0) != kDescMagic) {
    return Status::InvalidArgument("not a SharedMemoryConnector descriptor (" +
                                   std::to_string(b.size()) + " bytes, bad magic or too short)");
  }
  if (get_at<uint8_t>(b, 4) != kDescVersion) {
    return Status::InvalidArgument("descriptor version " + std::to_string(get_at<uint8_t>(b, 4)) +
                                   " is not supported (want 1)");
  }
  if (get_at<uint32_t>(b, 12) != 0) return Status::Corrupt("descriptor: reserved bytes set");
  DecodedDescriptor d;
  size_t end = 0;
  OMNICONN_RETURN_IF_ERROR(decode_key(b, &d, &end));
  uint8_t kind = get_at<uint8_t>(b, 5);
  uint64_t size = get_at<uint64_t>(b, 16);
  if (kind == kKindInline) {
    for (size_t off = 24; off < kFixed; off += 8) {
      if (get_at<uint64_t>(b, off) != 0) return Status::Corrupt("descriptor: reserved bytes set");
    }
    if (end > b.size() || b.size() - end != size) {
      return Status::Corrupt("descriptor: inline payload of " + std::to_string(size) +
                             " bytes does not match the descriptor length " +
                             std::to_string(b.size()));
    }
    d.is_inline = true;
    d.inline_bytes = b.subspan(end);
    return d;
  }
  if (kind != kKindRef || end != b.size() || get_at<uint32_t>(b, 44) != 0) {
    return Status::Corrupt("descriptor: bad kind " + std::to_string(kind) + " or length");
  }
  d.ref = ShmRef{get_at<uint64_t>(b, 24), get_at<uint32_t>(b, 32), get_at<uint32_t>(b, 36),
                 get_at<uint32_t>(b, 40), get_at<uint64_t>(b, 48), size,
                 get_at<uint64_t>(b, 56)};
  return d;
}

}  // namespace omniconn::shm

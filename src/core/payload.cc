#include "omniconn/payload.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "payload_internal.h"

namespace omniconn {

namespace in = internal;
using in::load_le;
using in::store_le;

// ---------------------------------------------------------------------------------------------
// Internal helpers shared with the tests

namespace internal {

Header load_header(const std::byte* p) {
  Header h;
  h.magic = load_le<uint32_t>(p + hdr::kMagic);
  h.version = load_le<uint16_t>(p + hdr::kVersion);
  h.flags = load_le<uint16_t>(p + hdr::kFlags);
  h.header_size = load_le<uint32_t>(p + hdr::kHeaderSize);
  h.tensor_count = load_le<uint32_t>(p + hdr::kTensorCount);
  h.table_size = load_le<uint32_t>(p + hdr::kTableSize);
  h.fields_size = load_le<uint32_t>(p + hdr::kFieldsSize);
  h.data_offset = load_le<uint64_t>(p + hdr::kDataOffset);
  h.data_size = load_le<uint64_t>(p + hdr::kDataSize);
  h.total_size = load_le<uint64_t>(p + hdr::kTotalSize);
  h.data_checksum = load_le<uint64_t>(p + hdr::kDataChecksum);
  h.header_checksum = load_le<uint64_t>(p + hdr::kHeaderChecksum);
  return h;
}

void store_header(std::byte* p, const Header& h) {
  store_le(p + hdr::kMagic, h.magic);
  store_le(p + hdr::kVersion, h.version);
  store_le(p + hdr::kFlags, h.flags);
  store_le(p + hdr::kHeaderSize, h.header_size);
  store_le(p + hdr::kTensorCount, h.tensor_count);
  store_le(p + hdr::kTableSize, h.table_size);
  store_le(p + hdr::kFieldsSize, h.fields_size);
  store_le(p + hdr::kDataOffset, h.data_offset);
  store_le(p + hdr::kDataSize, h.data_size);
  store_le(p + hdr::kTotalSize, h.total_size);
  store_le(p + hdr::kDataChecksum, h.data_checksum);
  store_le(p + hdr::kHeaderChecksum, h.header_checksum);
}

uint64_t header_checksum(std::span<const std::byte> payload, uint64_t data_offset) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, payload.data(), hdr::kHeaderChecksum);
  XXH3_64bits_update(&state, payload.data() + kPayloadHeaderBytes,
                     static_cast<size_t>(data_offset) - kPayloadHeaderBytes);
  return XXH3_64bits_digest(&state);
}

uint64_t data_checksum(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

bool utf8_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07u;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    static constexpr uint32_t kMinForLen[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLen[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------
// DType

namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, "f32", 4},   {DType::kF16, "f16", 2}, {DType::kBF16, "bf16", 2},
    {DType::kF64, "f64", 8},   {DType::kI64, "i64", 8}, {DType::kI32, "i32", 4},
    {DType::kI16, "i16", 2},   {DType::kI8, "i8", 1},   {DType::kU8, "u8", 1},
    {DType::kBool, "bool", 1},
};

const DTypeInfo* dtype_info(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}

}  // namespace

size_t dtype_size(DType dtype) {
  const DTypeInfo* info = dtype_info(dtype);
  return info ? info->size : 0;
}

std::string_view dtype_name(DType dtype) {
  const DTypeInfo* info = dtype_info(dtype);
  return info ? info->name : "invalid";
}

Result<DType> dtype_from_name(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return Status::InvalidArgument("unknown dtype '" + std::string(name) + "'");
}

bool dtype_valid(uint8_t raw) {
  return dtype_info(static_cast<DType>(raw)) != nullptr;
}

size_t TensorView::numel() const {
  size_t n = 1;
  for (int64_t d : dims()) n *= static_cast<size_t>(d);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Shared checks

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// A tensor name for an error message: printable, at most 64 bytes.
std::string printable(std::string_view name) {
  std::string out(name.substr(0, 64));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = '?';
  }
  if (name.size() > 64) out += "...";
  return out;
}

// numel * dtype_size of `dims`, or an error message.
Status tensor_nbytes(DType dtype, std::span<const int64_t> dims, uint64_t* nbytes) {
  uint64_t n = dtype_size(dtype);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) {
      return Status::InvalidArgument("dim " + std::to_string(i) + " is negative (" +
                                     std::to_string(dims[i]) + ")");
    }
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(dims[i]), &n)) {
      return Status::InvalidArgument("numel * dtype size overflows 64 bits");
    }
  }
  *nbytes = n;
  return Status::Ok();
}

Status check_name(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("payload: tensor name is empty");
  if (name.size() > kMaxNameBytes) {
    return Status::InvalidArgument("payload: tensor '" + printable(name) + "': name of " +
                                   std::to_string(name.size()) + " bytes exceeds " +
                                   std::to_string(kMaxNameBytes));
  }
  if (!in::utf8_valid(name)) {
    return Status::InvalidArgument("payload: tensor '" + printable(name) +
                                   "': name is not valid UTF-8");
  }
  return Status::Ok();
}

Status check_tensor_shape(DType dtype, std::span<const int64_t> shape, uint64_t* nbytes) {
  if (!dtype_valid(static_cast<uint8_t>(dtype))) {
    return Status::InvalidArgument("invalid dtype " + std::to_string(static_cast<int>(dtype)));
  }
  if (shape.size() > kMaxRank) {
    return Status::InvalidArgument("rank " + std::to_string(shape.size()) +
                                   " exceeds the maximum " + std::to_string(kMaxRank));
  }
  OMNICONN_RETURN_IF_ERROR(tensor_nbytes(dtype, shape, nbytes));
  if (*nbytes > in::kMaxTensorBytes) {
    return Status::InvalidArgument(std::to_string(*nbytes) + " bytes exceeds the limit of " +
                                   std::to_string(in::kMaxTensorBytes));
  }
  return Status::Ok();
}

// Lists/maps nested at most kMaxValueDepth deep, each with at most 2^32-1 elements.
Status check_fields_value(const Value& v, size_t depth) {
  constexpr size_t kMaxLen = std::numeric_limits<uint32_t>::max();
  const std::string* s = v.as_string();
  const Value::Bytes* b = v.as_bytes();
  if ((s && s->size() > kMaxLen) || (b && b->data.size() > kMaxLen)) {
    return Status::InvalidArgument("payload: fields hold a string/bytes over 4 GiB");
  }
  if (!v.as_list() && !v.as_map()) return Status::Ok();
  if (depth + 1 > in::kMaxValueDepth) {
    return Status::InvalidArgument("payload: fields nest deeper than " +
                                   std::to_string(in::kMaxValueDepth) + " levels");
  }
  if (const Value::List* l = v.as_list()) {
    if (l->size() > kMaxLen) return Status::InvalidArgument("payload: fields list too long");
    for (const Value& item : *l) OMNICONN_RETURN_IF_ERROR(check_fields_value(item, depth + 1));
    return Status::Ok();
  }
  const Value::Map* m = v.as_map();
  if (m->size() > kMaxLen) return Status::InvalidArgument("payload: fields map too large");
  for (const auto& [key, item] : *m) {
    if (key.size() > kMaxLen) return Status::InvalidArgument("payload: fields key too long");
    OMNICONN_RETURN_IF_ERROR(check_fields_value(item, depth + 1));
  }
  return Status::Ok();
}

Status check_destination(std::span<std::byte> dst, size_t needed) {
  if (dst.size() < needed) {
    return Status::InvalidArgument("payload: destination of " + std::to_string(dst.size()) +
                                   " bytes is smaller than the encoded size " +
                                   std::to_string(needed));
  }
  if (reinterpret_cast<uintptr_t>(dst.data()) % kPayloadAlignment != 0) {
    return Status::InvalidArgument("payload: destination is not " +
                                   std::to_string(kPayloadAlignment) + "-byte aligned");
  }
  return Status::Ok();
}

// Header fields that describe the layout: header_size, tensor_count, table_size, data_offset.
Status check_header_layout(const in::Header& h) {
  if (h.header_size != kPayloadHeaderBytes) {
    return Status::Corrupt("payload: header_size " + std::to_string(h.header_size) +
                           " (expected 64)");
  }
  if (h.tensor_count > kMaxTensors) {
    return Status::Corrupt("payload: tensor_count " + std::to_string(h.tensor_count) +
                           " exceeds the maximum " + std::to_string(kMaxTensors));
  }
  if (h.table_size % 8 != 0 || h.table_size < uint64_t{h.tensor_count} * in::kEntryMinBytes) {
    return Status::Corrupt("payload: table_size " + std::to_string(h.table_size) +
                           " is not a multiple of 8 or too small for " +
                           std::to_string(h.tensor_count) + " tensors");
  }
  const uint64_t expect_data_offset =
      round_up(uint64_t{kPayloadHeaderBytes} + h.table_size + h.fields_size, kPayloadAlignment);
  if (h.data_offset != expect_data_offset) {
    return Status::Corrupt("payload: data_offset " + std::to_string(h.data_offset) + " (expected " +
                           std::to_string(expect_data_offset) + ")");
  }
  return Status::Ok();
}

Status check_header_sizes(const in::Header& h, size_t buffer_size) {
  if (h.total_size > buffer_size) {
    return Status::Corrupt("payload: total_size " + std::to_string(h.total_size) +
                           " exceeds the buffer of " + std::to_string(buffer_size) + " bytes");
  }
  if (h.total_size % kPayloadAlignment != 0 || h.total_size < h.data_offset) {
    return Status::Corrupt("payload: total_size " + std::to_string(h.total_size) +
                           " is not a multiple of 64 or below data_offset " +
                           std::to_string(h.data_offset));
  }
  if (h.data_size != h.total_size - h.data_offset) {
    return Status::Corrupt("payload: data_size " + std::to_string(h.data_size) +
                           " != total_size - data_offset");
  }
  if ((h.flags & in::kFlagDataChecksum) == 0 && h.data_checksum != 0) {
    return Status::Corrupt("payload: data_checksum set without the data checksum flag");
  }
  return Status::Ok();
}

Result<in::Header> parse_header(std::span<const std::byte> bytes) {
  if (bytes.size() < kPayloadHeaderBytes) {
    return Status::Corrupt("payload: buffer of " + std::to_string(bytes.size()) +
                           " bytes is smaller than the 64-byte header");
  }
  const in::Header h = in::load_header(bytes.data());
  if (h.magic != in::kPayloadMagic) {
    return Status::Corrupt("payload: bad magic " + hex(h.magic) + " (expected " +
                           hex(in::kPayloadMagic) + ", \"OCNP\")");
  }
  if (h.version != in::kPayloadVersion) {
    return Status::Corrupt("payload: unsupported format version " + std::to_string(h.version) +
                           " (this reader supports 1)");
  }
  if ((h.flags & ~in::kKnownFlags) != 0) {
    return Status::Corrupt("payload: unknown flags " + hex(h.flags));
  }
  OMNICONN_RETURN_IF_ERROR(check_header_layout(h));
  OMNICONN_RETURN_IF_ERROR(check_header_sizes(h, bytes.size()));
  return h;
}

// One entry-table entry as stored.
struct RawEntry {
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  uint8_t dtype = 0;
  uint8_t rank = 0;
  uint16_t name_len = 0;
  uint32_t reserved = 0;
  std::array<int64_t, kMaxRank> dims{};
  std::string_view name;
};

// Reads entry `index` at `table[*cursor]` (bounds only) and advances the cursor past it.
Status read_entry(std::span<const std::byte> table, size_t index, size_t* cursor, RawEntry* e) {
  const std::string where = "payload: tensor " + std::to_string(index);
  const size_t left = table.size() - *cursor;
  if (left < in::kEntryFixedBytes) return Status::Corrupt(where + ": entry table truncated");
  const std::byte* p = table.data() + *cursor;
  e->offset = load_le<uint64_t>(p);
  e->nbytes = load_le<uint64_t>(p + 8);
  e->dtype = load_le<uint8_t>(p + 16);
  e->rank = load_le<uint8_t>(p + 17);
  e->name_len = load_le<uint16_t>(p + 18);
  e->reserved = load_le<uint32_t>(p + 20);
  if (e->rank > kMaxRank) {
    return Status::Corrupt(where + ": rank " + std::to_string(e->rank) + " exceeds the maximum " +
                           std::to_string(kMaxRank));
  }
  if (e->name_len == 0 || e->name_len > kMaxNameBytes) {
    return Status::Corrupt(where + ": name_len " + std::to_string(e->name_len) + " is not in [1, " +
                           std::to_string(kMaxNameBytes) + "]");
  }
  const size_t size = in::entry_bytes(e->rank, e->name_len);
  if (left < size) return Status::Corrupt(where + ": entry table truncated");
  for (size_t d = 0; d < e->rank; ++d) e->dims[d] = load_le<int64_t>(p + 24 + 8 * d);
  e->name = {reinterpret_cast<const char*>(p + 24 + 8 * e->rank), e->name_len};
  *cursor += size;
  return Status::Ok();
}

// Checks a read entry against the header: dtype, dims, nbytes, alignment, bounds.
Status check_entry(const RawEntry& e, size_t index, const in::Header& h) {
  std::string where = "payload: tensor " + std::to_string(index);
  if (!in::utf8_valid(e.name)) return Status::Corrupt(where + ": name is not valid UTF-8");
  where += " '" + printable(e.name) + "'";
  if (e.reserved != 0) return Status::Corrupt(where + ": reserved field is not zero");
  if (!dtype_valid(e.dtype)) {
    return Status::Corrupt(where + ": invalid dtype " + std::to_string(e.dtype));
  }
  uint64_t expect = 0;
  Status st = tensor_nbytes(static_cast<DType>(e.dtype), {e.dims.data(), e.rank}, &expect);
  if (!st.ok()) return Status::Corrupt(where + ": " + st.message());
  if (e.nbytes != expect) {
    return Status::Corrupt(where + ": nbytes " + std::to_string(e.nbytes) + " != numel * " +
                           "dtype size " + std::to_string(expect));
  }
  const std::string range =
      " data [offset " + std::to_string(e.offset) + ", " + std::to_string(e.nbytes) + " bytes]";
  if (e.offset % kPayloadAlignment != 0) {
    return Status::Corrupt(where + range + " is not 64-byte aligned");
  }
  if (e.offset < h.data_offset) {
    return Status::Corrupt(where + range + " starts before data_offset " +
                           std::to_string(h.data_offset));
  }
  if (e.offset > h.total_size || e.nbytes > h.total_size - e.offset) {
    return Status::Corrupt(where + range + " exceeds payload size " + std::to_string(h.total_size));
  }
  return Status::Ok();
}

Status parse_table(std::span<const std::byte> payload, const in::Header& h,
                   std::vector<TensorView>* out) {
  const auto table = payload.subspan(kPayloadHeaderBytes, h.table_size);
  out->reserve(h.tensor_count);
  size_t cursor = 0;
  for (size_t i = 0; i < h.tensor_count; ++i) {
    RawEntry e;
    OMNICONN_RETURN_IF_ERROR(read_entry(table, i, &cursor, &e));
    OMNICONN_RETURN_IF_ERROR(check_entry(e, i, h));
    TensorView& t = out->emplace_back();
    t.name = e.name;
    t.dtype = static_cast<DType>(e.dtype);
    t.rank = e.rank;
    t.shape = e.dims;
    t.data = payload.subspan(static_cast<size_t>(e.offset), static_cast<size_t>(e.nbytes));
  }
  if (cursor != table.size()) {
    return Status::Corrupt("payload: entry table has " + std::to_string(table.size() - cursor) +
                           " bytes after the last entry");
  }
  return Status::Ok();
}

// Writes one table entry at `p`; returns its size.
size_t write_entry(std::byte* p, uint64_t offset, uint64_t nbytes, DType dtype,
                   std::span<const int64_t> shape, std::string_view name) {
  store_le(p, offset);
  store_le(p + 8, nbytes);
  store_le(p + 16, static_cast<uint8_t>(dtype));
  store_le(p + 17, static_cast<uint8_t>(shape.size()));
  store_le(p + 18, static_cast<uint16_t>(name.size()));
  store_le(p + 20, uint32_t{0});
  for (size_t d = 0; d < shape.size(); ++d) store_le(p + 24 + 8 * d, shape[d]);
  std::byte* name_at = p + 24 + 8 * shape.size();
  std::memcpy(name_at, name.data(), name.size());
  std::memset(name_at + name.size(), 0, round_up(name.size(), 8) - name.size());
  return in::entry_bytes(shape.size(), name.size());
}

struct AlignedDelete {
  void operator()(std::byte* p) const {
    ::operator delete[](p, std::align_val_t{kPayloadAlignment});
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// PayloadBuilder

Status PayloadBuilder::add_tensor(std::string name, DType dtype, std::vector<int64_t> shape,
                                  const void* data) {
  OMNICONN_RETURN_IF_ERROR(check_name(name));
  if (tensors_.size() >= kMaxTensors) {
    return Status::InvalidArgument("payload: tensor '" + printable(name) + "': more than " +
                                   std::to_string(kMaxTensors) + " tensors");
  }
  for (const Entry& e : tensors_) {
    if (e.name == name) {
      return Status::InvalidArgument("payload: tensor '" + printable(name) + "' added twice");
    }
  }
  uint64_t nbytes = 0;
  Status st = check_tensor_shape(dtype, shape, &nbytes);
  if (!st.ok()) return st.WithContext("payload: tensor '" + printable(name) + "'");
  tensors_.push_back(
      Entry{std::move(name), dtype, std::move(shape), data, static_cast<size_t>(nbytes)});
  return Status::Ok();
}

Status PayloadBuilder::set_fields(const Value& fields) {
  if (fields.is_nil() || (fields.is_map() && fields.as_map()->empty())) {
    fields_.clear();
    return Status::Ok();
  }
  if (!fields.is_map()) {
    return Status::InvalidArgument("payload: fields must be a map or nil, got " +
                                   std::string(fields.kind_name()));
  }
  OMNICONN_RETURN_IF_ERROR(check_fields_value(fields, 0));
  std::vector<uint8_t> encoded = encode_msgpack(fields);
  if (encoded.size() > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("payload: fields encode to " + std::to_string(encoded.size()) +
                                   " bytes (max 4 GiB - 1)");
  }
  fields_ = std::move(encoded);
  return Status::Ok();
}

size_t PayloadBuilder::table_bytes() const {
  size_t n = 0;
  for (const Entry& e : tensors_) n += in::entry_bytes(e.shape.size(), e.name.size());
  return n;
}

size_t PayloadBuilder::data_offset() const {
  return round_up(kPayloadHeaderBytes + table_bytes() + fields_.size(), kPayloadAlignment);
}

size_t PayloadBuilder::encoded_size() const {
  size_t end = data_offset();
  for (const Entry& e : tensors_) end = round_up(end + e.nbytes, kPayloadAlignment);
  return end;
}

Result<size_t> PayloadBuilder::write_layout(std::span<std::byte> dst) const {
  const size_t total = encoded_size();
  OMNICONN_RETURN_IF_ERROR(check_destination(dst, total));
  std::byte* p = dst.data();
  in::Header h;
  h.flags = checksum_data_ ? in::kFlagDataChecksum : 0;
  h.tensor_count = static_cast<uint32_t>(tensors_.size());
  h.table_size = static_cast<uint32_t>(table_bytes());
  h.fields_size = static_cast<uint32_t>(fields_.size());
  h.data_offset = data_offset();
  h.data_size = total - h.data_offset;
  h.total_size = total;
  in::store_header(p, h);  // checksums 0 until finish_payload

  size_t cursor = kPayloadHeaderBytes;
  size_t data_at = h.data_offset;
  for (const Entry& e : tensors_) {
    cursor += write_entry(p + cursor, data_at, e.nbytes, e.dtype, e.shape, e.name);
    const size_t end = data_at + e.nbytes;
    data_at = round_up(end, kPayloadAlignment);
    std::memset(p + end, 0, data_at - end);  // padding after the tensor
  }
  if (!fields_.empty()) std::memcpy(p + cursor, fields_.data(), fields_.size());
  cursor += fields_.size();
  std::memset(p + cursor, 0, h.data_offset - cursor);
  return total;
}

Result<size_t> PayloadBuilder::write_to(std::span<std::byte> dst) const {
  OMNICONN_ASSIGN_OR_RETURN(const size_t total, write_layout(dst));
  size_t at = data_offset();
  for (const Entry& e : tensors_) {
    if (e.nbytes > 0) {
      if (e.src != nullptr) {
        std::memcpy(dst.data() + at, e.src, e.nbytes);
      } else {
        std::memset(dst.data() + at, 0, e.nbytes);  // no source: zeros, never stale bytes
      }
    }
    at = round_up(at + e.nbytes, kPayloadAlignment);
  }
  OMNICONN_RETURN_IF_ERROR(finish_payload(dst.first(total)));
  return total;
}

Result<std::vector<std::byte>> PayloadBuilder::encode() const {
  std::vector<std::byte> out(encoded_size());
  if (reinterpret_cast<uintptr_t>(out.data()) % kPayloadAlignment == 0) {
    OMNICONN_RETURN_IF_ERROR(write_to(out).status());
    return out;
  }
  // The vector's storage is not 64-byte aligned: write into aligned memory, then copy.
  std::unique_ptr<std::byte[], AlignedDelete> tmp(new (std::align_val_t{kPayloadAlignment})
                                                      std::byte[out.size()]);
  Result<size_t> written = write_to({tmp.get(), out.size()});
  if (!written.ok()) return written.status();
  std::memcpy(out.data(), tmp.get(), out.size());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loan path

Status finish_payload(std::span<std::byte> payload) {
  OMNICONN_ASSIGN_OR_RETURN(const in::Header h, parse_header(payload));
  std::byte* p = payload.data();
  if (h.flags & in::kFlagDataChecksum) {
    const uint64_t sum =
        in::data_checksum({p + h.data_offset, static_cast<size_t>(h.total_size - h.data_offset)});
    store_le(p + in::hdr::kDataChecksum, sum);
  }
  store_le(p + in::hdr::kHeaderChecksum,
           in::header_checksum(payload.first(h.total_size), h.data_offset));
  return Status::Ok();
}

Result<std::span<std::byte>> mutable_tensor_data(std::span<std::byte> payload, size_t index) {
  OMNICONN_ASSIGN_OR_RETURN(const in::Header h, parse_header(payload));
  if (index >= h.tensor_count) {
    return Status::InvalidArgument("payload: tensor index " + std::to_string(index) +
                                   " out of range (" + std::to_string(h.tensor_count) +
                                   " tensors)");
  }
  const auto table = std::span<const std::byte>(payload).subspan(kPayloadHeaderBytes, h.table_size);
  size_t cursor = 0;
  RawEntry e;
  for (size_t i = 0; i <= index; ++i) OMNICONN_RETURN_IF_ERROR(read_entry(table, i, &cursor, &e));
  OMNICONN_RETURN_IF_ERROR(check_entry(e, index, h));
  return payload.subspan(static_cast<size_t>(e.offset), static_cast<size_t>(e.nbytes));
}

// ---------------------------------------------------------------------------------------------
// PayloadReader

Result<PayloadReader> PayloadReader::open(std::span<const std::byte> bytes, ReadOptions opts) {
  OMNICONN_ASSIGN_OR_RETURN(const in::Header h, parse_header(bytes));
  const auto payload = bytes.first(static_cast<size_t>(h.total_size));
  const uint64_t header_sum = in::header_checksum(payload, h.data_offset);
  if (header_sum != h.header_checksum) {
    return Status::Corrupt("payload: header checksum mismatch (stored " + hex(h.header_checksum) +
                           ", computed " + hex(header_sum) + ")");
  }
  PayloadReader r;
  r.bytes_ = payload;
  r.fields_ = payload.subspan(kPayloadHeaderBytes + h.table_size, h.fields_size);
  r.data_checksum_present_ = (h.flags & in::kFlagDataChecksum) != 0;
  OMNICONN_RETURN_IF_ERROR(parse_table(payload, h, &r.tensors_));
  if (opts.verify_data && r.data_checksum_present_) {
    const uint64_t data_sum = in::data_checksum(payload.subspan(h.data_offset));
    if (data_sum != h.data_checksum) {
      return Status::Corrupt("payload: data checksum mismatch (stored " + hex(h.data_checksum) +
                             ", computed " + hex(data_sum) + ")");
    }
  }
  return r;
}

const TensorView* PayloadReader::find(std::string_view name) const {
  for (const TensorView& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<Value> PayloadReader::fields() const {
  if (fields_.empty()) return Value(Value::Map{});
  Result<Value> v =
      decode_msgpack(reinterpret_cast<const uint8_t*>(fields_.data()), fields_.size());
  if (v.ok() && !v->is_map()) {
    return Status::Corrupt("payload: fields block holds a " + std::string(v->kind_name()) +
                           ", not a map");
  }
  return v;
}

}  // namespace omniconn

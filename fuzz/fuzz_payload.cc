// PayloadReader::open on untrusted bytes (docs/format.md §8).
//
// Each input is opened twice: as is, and with its checksums recomputed (data checksum when the
// flag asks for it, then the header checksum), so that mutations get past the checksum check
// and reach the entry table and the fields. When a payload opens, every view must lie inside
// the input, and rebuilding it with PayloadBuilder must give a payload that reads back the same.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <set>
#include <span>
#include <string_view>
#include <vector>

#include "core/payload_internal.h"
#include "fuzz_check.h"
#include "omniconn/payload.h"
#include "value_eq.h"

namespace {

using omniconn::DType;
using omniconn::PayloadBuilder;
using omniconn::PayloadReader;
using omniconn::ReadOptions;
using omniconn::TensorView;
using omniconn::Value;
namespace in = omniconn::internal;

struct AlignedFree {
  void operator()(std::byte* p) const {
    ::operator delete[](p, std::align_val_t{omniconn::kPayloadAlignment});
  }
};

bool inside(std::span<const std::byte> part, std::span<const std::byte> whole) {
  auto b = reinterpret_cast<uintptr_t>(whole.data());
  auto p = reinterpret_cast<uintptr_t>(part.data());
  return p >= b && p - b <= whole.size() && part.size() <= whole.size() - (p - b);
}

bool same_tensor(const TensorView& a, const TensorView& b) {
  if (a.name != b.name || a.dtype != b.dtype || a.rank != b.rank) return false;
  for (size_t d = 0; d < a.rank; ++d) {
    if (a.shape[d] != b.shape[d]) return false;
  }
  return a.data.size() == b.data.size() &&
         (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size()) == 0);
}

// Rebuilds an opened payload with the builder and checks that it reads back the same.
void check_rebuild(const PayloadReader& r, const Value& fields) {
  PayloadBuilder b;
  for (const TensorView& t : r.tensors()) {
    std::vector<int64_t> shape(t.dims().begin(), t.dims().end());
    FUZZ_CHECK(b.add_tensor(std::string(t.name), t.dtype, shape, t.data.data()).ok(),
               "the builder rejects a tensor the reader accepted");
  }
  FUZZ_CHECK(b.set_fields(fields).ok(), "the builder rejects fields the reader accepted");
  b.set_checksum_data(r.has_data_checksum());
  auto encoded = b.encode();
  FUZZ_CHECK(encoded.ok(), "encoding the rebuilt payload failed");
  auto again = PayloadReader::open(*encoded, ReadOptions{.verify_data = true});
  FUZZ_CHECK(again.ok(), "the rebuilt payload does not open");
  FUZZ_CHECK(again->tensor_count() == r.tensor_count(), "tensor count changed");
  for (size_t i = 0; i < r.tensor_count(); ++i) {
    FUZZ_CHECK(same_tensor(again->tensor(i), r.tensor(i)), "a tensor changed in the rebuild");
  }
  auto fields_again = again->fields();
  FUZZ_CHECK(fields_again.ok() && omniconn::fuzz::same_value(*fields_again, fields),
             "fields changed in the rebuild");
}

void check_open(std::span<const std::byte> input, ReadOptions opts) {
  auto r = PayloadReader::open(input, opts);
  if (!r.ok()) return;
  FUZZ_CHECK(r->size() >= omniconn::kPayloadHeaderBytes && r->size() <= input.size() &&
                 r->size() % omniconn::kPayloadAlignment == 0,
             "payload size");
  const std::span<const std::byte> payload = input.first(r->size());
  FUZZ_CHECK(r->tensor_count() <= omniconn::kMaxTensors, "tensor count");
  FUZZ_CHECK(inside(r->fields_msgpack(), payload), "fields block outside the payload");
  std::set<std::string_view> names;
  for (const TensorView& t : r->tensors()) {
    FUZZ_CHECK(!t.name.empty() && t.name.size() <= omniconn::kMaxNameBytes, "name length");
    FUZZ_CHECK(inside({reinterpret_cast<const std::byte*>(t.name.data()), t.name.size()},
                      payload.subspan(omniconn::kPayloadHeaderBytes)),
               "name outside the entry table");
    FUZZ_CHECK(in::utf8_valid(t.name), "name is not UTF-8");
    FUZZ_CHECK(omniconn::dtype_valid(static_cast<uint8_t>(t.dtype)), "dtype");
    FUZZ_CHECK(t.rank <= omniconn::kMaxRank, "rank");
    for (int64_t d : t.dims()) FUZZ_CHECK(d >= 0, "negative dim");
    FUZZ_CHECK(inside(t.data, payload), "tensor data outside the payload");
    const size_t offset = static_cast<size_t>(t.data.data() - payload.data());
    FUZZ_CHECK(offset % omniconn::kPayloadAlignment == 0, "tensor data not 64-byte aligned");
    FUZZ_CHECK(offset >= omniconn::kPayloadHeaderBytes + r->fields_msgpack().size(),
               "tensor data inside the header");
    FUZZ_CHECK(t.data.size() == t.numel() * omniconn::dtype_size(t.dtype), "nbytes != numel");
    const TensorView* found = r->find(t.name);
    FUZZ_CHECK(found != nullptr && found->name == t.name, "find() misses a tensor");
    names.insert(t.name);
  }
  auto fields = r->fields();
  if (r->fields_msgpack().empty()) {
    FUZZ_CHECK(fields.ok() && fields->is_map() && fields->as_map()->empty(), "empty fields");
  }
  if (!fields.ok()) return;
  FUZZ_CHECK(fields->is_map(), "fields() returned a non-map");
  // Duplicate names are legal for readers (docs/format.md §8) but the builder rejects them.
  if (names.size() == r->tensor_count()) check_rebuild(*r, *fields);
}

// Recomputes the checksums in place, where the header's offsets allow it.
void fix_checksums(std::span<std::byte> p) {
  if (p.size() < omniconn::kPayloadHeaderBytes) return;
  const auto h = in::load_header(p.data());
  if (h.data_offset < omniconn::kPayloadHeaderBytes || h.data_offset > p.size()) return;
  if ((h.flags & in::kFlagDataChecksum) != 0 && h.total_size >= h.data_offset &&
      h.total_size <= p.size()) {
    const uint64_t sum = in::data_checksum(
        p.subspan(h.data_offset, static_cast<size_t>(h.total_size - h.data_offset)));
    in::store_le(p.data() + in::hdr::kDataChecksum, sum);
  }
  in::store_le(p.data() + in::hdr::kHeaderChecksum, in::header_checksum(p, h.data_offset));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> raw(reinterpret_cast<const std::byte*>(data), size);
  check_open(raw, ReadOptions{});
  check_open(raw, ReadOptions{.verify_data = true});

  // A 64-byte aligned, exactly sized copy: ASan still catches a read one byte past the end.
  std::unique_ptr<std::byte[], AlignedFree> buf(new (std::align_val_t{omniconn::kPayloadAlignment})
                                                    std::byte[size > 0 ? size : 1]);
  if (size > 0) std::memcpy(buf.get(), data, size);
  const std::span<std::byte> fixed(buf.get(), size);
  fix_checksums(fixed);
  check_open(fixed, ReadOptions{.verify_data = true});
  return 0;
}

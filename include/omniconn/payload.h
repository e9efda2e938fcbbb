// Payload format v1: named tensors plus a msgpack map of other fields, in one contiguous,
// checksummed buffer whose tensor data is 64-byte aligned (see docs/format.md).
//
// PayloadBuilder describes a payload and writes it straight into destination memory (an arena
// loan, a registered buffer); PayloadReader validates a buffer and returns views into it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/status.h"
#include "omniconn/value.h"

namespace omniconn {

enum class DType : uint8_t {
  kF32 = 1,
  kF16 = 2,
  kBF16 = 3,
  kF64 = 4,
  kI64 = 5,
  kI32 = 6,
  kI16 = 7,
  kI8 = 8,
  kU8 = 9,
  kBool = 10,
};

inline constexpr size_t kMaxRank = 8;
inline constexpr size_t kMaxTensors = 4096;
inline constexpr size_t kMaxNameBytes = 1024;
inline constexpr size_t kPayloadAlignment = 64;
inline constexpr size_t kPayloadHeaderBytes = 64;

size_t dtype_size(DType dtype);            // 0 for an invalid value
std::string_view dtype_name(DType dtype);  // "f32", "bf16", ... ; "invalid" otherwise
Result<DType> dtype_from_name(std::string_view name);
bool dtype_valid(uint8_t raw);

struct TensorView {
  std::string_view name;
  DType dtype = DType::kU8;
  uint8_t rank = 0;
  std::array<int64_t, kMaxRank> shape{};
  std::span<const std::byte> data;

  std::span<const int64_t> dims() const { return {shape.data(), rank}; }
  size_t numel() const;
  template <typename T>
  const T* as() const {
    return reinterpret_cast<const T*>(data.data());
  }
};

class PayloadBuilder {
 public:
  // Adds a tensor whose bytes are copied from `data` at write time (`data` must stay valid
  // until write_to). `data` may be null: the tensor's bytes are then left for the caller to
  // fill through mutable_tensor_data (the loan path; write_to writes zeros).
  Status add_tensor(std::string name, DType dtype, std::vector<int64_t> shape,
                    const void* data = nullptr);
  // Non-tensor fields: must be a map (or nil for none).
  Status set_fields(const Value& fields);
  void set_checksum_data(bool on) { checksum_data_ = on; }

  // Exact number of bytes write_to needs.
  size_t encoded_size() const;
  size_t tensor_count() const { return tensors_.size(); }

  // Writes header, entry table, fields and tensor data into `dst` (at least encoded_size()
  // bytes, 64-byte aligned). Returns the number of bytes written.
  Result<size_t> write_to(std::span<std::byte> dst) const;

  // Writes everything but the tensor data (for the loan path); the caller fills the tensors
  // and then calls finish_payload(dst) to seal the checksums.
  Result<size_t> write_layout(std::span<std::byte> dst) const;

  // Convenience: encodes into a fresh vector (tests, small payloads). The vector's storage is
  // not guaranteed 64-byte aligned: do not assume aligned tensor pointers when reading it.
  Result<std::vector<std::byte>> encode() const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* src;
    size_t nbytes;
  };
  size_t table_bytes() const;
  size_t data_offset() const;

  std::vector<Entry> tensors_;
  std::vector<uint8_t> fields_;
  bool checksum_data_ = false;
};

// Seals a payload written with write_layout and filled in place: computes the data checksum
// (when the header's flag asks for it) and the header checksum.
Status finish_payload(std::span<std::byte> payload);

// Tensor data of a payload being written (after write_layout), by tensor index.
Result<std::span<std::byte>> mutable_tensor_data(std::span<std::byte> payload, size_t index);

struct ReadOptions {
  bool verify_data = false;  // also verify the data checksum when the payload carries one
};

class PayloadReader {
 public:
  // Validates header, sizes, entry table and header checksum; every field bounds-checked.
  static Result<PayloadReader> open(std::span<const std::byte> bytes, ReadOptions opts = {});

  size_t size() const { return bytes_.size(); }
  size_t tensor_count() const { return tensors_.size(); }
  const TensorView& tensor(size_t i) const { return tensors_[i]; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* find(std::string_view name) const;
  // The raw msgpack of the fields block (may be empty).
  std::span<const std::byte> fields_msgpack() const { return fields_; }
  Result<Value> fields() const;
  bool has_data_checksum() const { return data_checksum_present_; }

 private:
  std::span<const std::byte> bytes_;
  std::span<const std::byte> fields_;
  std::vector<TensorView> tensors_;
  bool data_checksum_present_ = false;
};

}  // namespace omniconn

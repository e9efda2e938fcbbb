#include "omniconn/value.h"

#include <msgpack.hpp>

#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "payload_internal.h"

namespace omniconn {

std::optional<int64_t> Value::as_int() const {
  if (const auto* i = std::get_if<int64_t>(&v_)) return *i;
  const auto* u = std::get_if<uint64_t>(&v_);
  if (u != nullptr && *u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(*u);
  }
  return std::nullopt;
}

const Value* Value::find(std::string_view key) const {
  const Map* m = as_map();
  if (m == nullptr) return nullptr;
  auto it = m->find(key);
  return it == m->end() ? nullptr : &it->second;
}

std::string_view Value::kind_name() const {
  switch (kind()) {
    case Kind::kNil:
      return "nil";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kUInt:
      return "uint";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "string";
    case Kind::kBytes:
      return "bytes";
    case Kind::kList:
      return "list";
    case Kind::kMap:
      return "map";
  }
  return "invalid";
}

// ---------------------------------------------------------------------------------------------
// Encoding

namespace {

struct VectorSink {
  std::vector<uint8_t>* out;
  void write(const char* p, size_t n) {
    const auto* b = reinterpret_cast<const uint8_t*>(p);
    out->insert(out->end(), b, b + n);
  }
};

struct Encoder {
  explicit Encoder(std::vector<uint8_t>* out) : sink{out}, pk(sink) {}
  VectorSink sink;
  msgpack::packer<VectorSink> pk;
};

void pack_value(Encoder& e, const Value& v);

// Always float64 (0xcb + big-endian IEEE 754 bits): msgpack-c's pack_double writes integral
// doubles as integers, which would not round-trip the kind.
void pack_float64(Encoder& e, double d) {
  uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof(bits));
  char buf[9];
  buf[0] = static_cast<char>(0xcb);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
  e.sink.write(buf, sizeof(buf));
}

void pack_container(Encoder& e, const Value& v) {
  if (const Value::List* l = v.as_list()) {
    e.pk.pack_array(static_cast<uint32_t>(l->size()));
    for (const Value& item : *l) pack_value(e, item);
    return;
  }
  const Value::Map* m = v.as_map();
  e.pk.pack_map(static_cast<uint32_t>(m->size()));
  for (const auto& [key, item] : *m) {
    e.pk.pack_str(static_cast<uint32_t>(key.size()));
    e.pk.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
    pack_value(e, item);
  }
}

void pack_value(Encoder& e, const Value& v) {
  auto& pk = e.pk;
  switch (v.kind()) {
    case Value::Kind::kNil:
      pk.pack_nil();
      return;
    case Value::Kind::kBool:
      *v.as_bool() ? pk.pack_true() : pk.pack_false();
      return;
    case Value::Kind::kInt:
      pk.pack_int64(*v.as_int());
      return;
    case Value::Kind::kUInt:
      pk.pack_uint64(*v.as_uint());
      return;
    case Value::Kind::kFloat:
      pack_float64(e, *v.as_float());
      return;
    case Value::Kind::kString: {
      const std::string& s = *v.as_string();
      pk.pack_str(static_cast<uint32_t>(s.size()));
      pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
      return;
    }
    case Value::Kind::kBytes: {
      const auto& b = v.as_bytes()->data;
      pk.pack_bin(static_cast<uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
      return;
    }
    case Value::Kind::kList:
    case Value::Kind::kMap:
      pack_container(e, v);
      return;
  }
}

}  // namespace

std::vector<uint8_t> encode_msgpack(const Value& value) {
  std::vector<uint8_t> out;
  Encoder e(&out);
  pack_value(e, value);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding: a first pass with a non-allocating visitor checks that the document is complete,
// well formed, of supported types and at most kMaxValueDepth deep. Only then does
// msgpack::unpack build objects: every declared element then exists in the input, so its
// allocations are bounded by the input size.

namespace {

class CheckingVisitor : public msgpack::null_visitor {
 public:
  bool visit_ext(const char* /*v*/, uint32_t /*size*/) {
    error_ = "ext types are not supported";
    return false;
  }
  bool start_array(uint32_t /*n*/) { return enter(); }
  bool end_array() { return leave(); }
  bool start_map(uint32_t /*n*/) { return enter(); }
  bool end_map() { return leave(); }
  void parse_error(size_t /*parsed*/, size_t at) {
    error_ = "malformed data at byte " + std::to_string(at);
  }
  void insufficient_bytes(size_t /*parsed*/, size_t at) {
    error_ = "truncated data at byte " + std::to_string(at);
  }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ <= internal::kMaxValueDepth) return true;
    error_ = "nesting deeper than " + std::to_string(internal::kMaxValueDepth) + " levels";
    return false;
  }
  bool leave() {
    --depth_;
    return true;
  }

  size_t depth_ = 0;
  std::string error_;
};

Status precheck(const char* data, size_t size) {
  CheckingVisitor visitor;
  size_t off = 0;
  if (!msgpack::parse(data, size, off, visitor)) {
    return Status::Corrupt(
        "msgpack: " + (visitor.error().empty() ? std::string("invalid data") : visitor.error()));
  }
  if (off != size) {
    return Status::Corrupt("msgpack: " + std::to_string(size - off) +
                           " trailing bytes after the value");
  }
  return Status::Ok();
}

// Converts into *out (never returning a Value by value: that keeps GCC's -O3
// -Wmaybe-uninitialized false positives on std::variant moves away).
Status to_value(const msgpack::object& o, Value* out);

Status to_list(const msgpack::object& o, Value* out) {
  Value::List list(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    OMNICONN_RETURN_IF_ERROR(to_value(o.via.array.ptr[i], &list[i]));
  }
  *out = Value(std::move(list));
  return Status::Ok();
}

Status to_map(const msgpack::object& o, Value* out) {
  Value::Map map;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) {
      return Status::Corrupt("msgpack: map key of type " + std::to_string(kv.key.type) +
                             " (only string keys are supported)");
    }
    auto [it, inserted] = map.try_emplace(std::string(kv.key.via.str.ptr, kv.key.via.str.size));
    if (!inserted) return Status::Corrupt("msgpack: duplicate map key '" + it->first + "'");
    OMNICONN_RETURN_IF_ERROR(to_value(kv.val, &it->second));
  }
  *out = Value(std::move(map));
  return Status::Ok();
}

Status to_value(const msgpack::object& o, Value* out) {
  switch (o.type) {
    case msgpack::type::NIL:
      *out = Value();
      return Status::Ok();
    case msgpack::type::BOOLEAN:
      *out = Value(o.via.boolean);
      return Status::Ok();
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        *out = Value(static_cast<int64_t>(o.via.u64));
      } else {
        *out = Value(o.via.u64);
      }
      return Status::Ok();
    case msgpack::type::NEGATIVE_INTEGER:
      *out = Value(o.via.i64);
      return Status::Ok();
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      *out = Value(o.via.f64);
      return Status::Ok();
    case msgpack::type::STR:
      *out = Value(std::string(o.via.str.ptr, o.via.str.size));
      return Status::Ok();
    case msgpack::type::BIN: {
      const auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
      *out = Value(Value::Bytes{std::vector<uint8_t>(p, p + o.via.bin.size)});
      return Status::Ok();
    }
    case msgpack::type::ARRAY:
      return to_list(o, out);
    case msgpack::type::MAP:
      return to_map(o, out);
    default:
      break;
  }
  return Status::Corrupt("msgpack: unsupported type " + std::to_string(o.type));
}

bool reference_all(msgpack::type::object_type /*type*/, std::size_t /*size*/, void* /*user*/) {
  return true;  // the input outlives the msgpack objects: no copies
}

Status unpack_checked(const char* data, size_t size, Value* out) {
  // Every element takes at least one byte (a key/value pair two).
  const msgpack::unpack_limit limit(size, size / 2, size, size, 0, internal::kMaxValueDepth);
  size_t off = 0;
  msgpack::object_handle handle = msgpack::unpack(data, size, off, reference_all, nullptr, limit);
  if (off != size) return Status::Corrupt("msgpack: trailing bytes after the value");
  return to_value(handle.get(), out);
}

Status decode_into(const uint8_t* data, size_t size, Value* out) {
  if (data == nullptr || size == 0) return Status::Corrupt("msgpack: empty input");
  const auto* chars = reinterpret_cast<const char*>(data);
  try {
    OMNICONN_RETURN_IF_ERROR(precheck(chars, size));
    return unpack_checked(chars, size, out);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("msgpack: out of memory decoding " + std::to_string(size) +
                                     " bytes");
  } catch (const std::exception& e) {
    return Status::Corrupt(std::string("msgpack: ") + e.what());
  } catch (...) {
    return Status::Corrupt("msgpack: undecodable data");
  }
}

}  // namespace

Result<Value> decode_msgpack(const uint8_t* data, size_t size) {
  Result<Value> result{Value()};  // built in place: no Value is moved into the Result
  Status st = decode_into(data, size, &*result);
  if (!st.ok()) return st;
  return result;
}

}  // namespace omniconn

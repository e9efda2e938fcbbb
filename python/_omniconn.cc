// Python bindings (the extension `omniconn._omniconn`): connectors with vllm-omni's call shapes.
// numpy arrays and CPU torch tensors travel as tensors of the payload format, written once into
// the transport, and come back as views on the shared memory (kept valid while referenced).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <msgpack.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "omniconn/connector.h"
#include "omniconn/metrics_server.h"
#include "omniconn/payload.h"
#include "omniconn/prometheus.h"
#include "omniconn/registry.h"
#include "omniconn/stream.h"

namespace py = pybind11;
using namespace omniconn;

namespace {

constexpr const char* kTensorMarker = "__omniconn_tensor__";
constexpr const char* kTorchMarker = "torch";  // set in a marker when the sender used torch

// ---- Python object <-> Value + tensors ------------------------------------------------------

// One array or tensor of the object being sent; `keep` holds its memory until it is written.
struct TensorRef {
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  py::object keep;
  bool torch;
};

struct Encoded {
  Value tree;
  std::vector<TensorRef> tensors;
  py::object torch_tensor_type = py::none();  // torch.Tensor when the caller imported torch
};

// torch.Tensor if torch is already imported (omniconn never imports torch to send).
py::object imported_torch_tensor_type() {
  PyObject* torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed
  if (torch == nullptr) return py::none();
  return py::reinterpret_borrow<py::object>(torch).attr("Tensor");
}

Result<DType> dtype_of(const py::dtype& dt) {
  switch (dt.kind()) {
    case 'f':
      if (dt.itemsize() == 4) return DType::kF32;
      if (dt.itemsize() == 8) return DType::kF64;
      if (dt.itemsize() == 2) return DType::kF16;
      break;
    case 'i':
      if (dt.itemsize() == 8) return DType::kI64;
      if (dt.itemsize() == 4) return DType::kI32;
      if (dt.itemsize() == 2) return DType::kI16;
      if (dt.itemsize() == 1) return DType::kI8;
      break;
    case 'u':
      if (dt.itemsize() == 1) return DType::kU8;
      break;
    case 'b':
      return DType::kBool;
  }
  return Status::InvalidArgument("numpy dtype '" + py::repr(dt).cast<std::string>() +
                                 "' has no payload dtype (bf16: send a torch.bfloat16 tensor)");
}

Result<DType> torch_dtype_of(const std::string& name) {  // str(tensor.dtype)
  static const std::pair<const char*, DType> kMap[] = {
      {"torch.float32", DType::kF32},   {"torch.float16", DType::kF16},
      {"torch.bfloat16", DType::kBF16}, {"torch.float64", DType::kF64},
      {"torch.int64", DType::kI64},     {"torch.int32", DType::kI32},
      {"torch.int16", DType::kI16},     {"torch.int8", DType::kI8},
      {"torch.uint8", DType::kU8},      {"torch.bool", DType::kBool}};
  for (const auto& [n, d] : kMap) {
    if (name == n) return d;
  }
  return Status::InvalidArgument("torch dtype '" + name + "' has no payload dtype");
}

py::dtype make_numpy_dtype(DType d) {
  switch (d) {
    case DType::kF32:
      return py::dtype("float32");
    case DType::kF16:
      return py::dtype("float16");
    case DType::kF64:
      return py::dtype("float64");
    case DType::kI64:
      return py::dtype("int64");
    case DType::kI32:
      return py::dtype("int32");
    case DType::kI16:
      return py::dtype("int16");
    case DType::kI8:
      return py::dtype("int8");
    case DType::kU8:
      return py::dtype("uint8");
    case DType::kBool:
      return py::dtype("bool");
    case DType::kBF16:
      return py::dtype("uint16");  // raw bits; numpy has no bfloat16
  }
  return py::dtype("uint8");
}

// The numpy dtype of `d`, made once per dtype (parsing a dtype name costs a microsecond).
// Leaked on purpose: destroying Python objects after the interpreter's end is not allowed.
const py::dtype& numpy_dtype(DType d) {
  constexpr size_t kCount = static_cast<size_t>(DType::kBool) + 1;
  static auto* cache = new std::array<std::optional<py::dtype>, kCount>();
  const auto i = static_cast<size_t>(d);
  if (i >= kCount) return numpy_dtype(DType::kU8);
  if (!(*cache)[i]) (*cache)[i] = make_numpy_dtype(d);
  return *(*cache)[i];
}

Value encode(const py::handle& obj, Encoded* out, int depth);

TensorRef numpy_ref(const py::handle& obj) {
  py::array a = py::array::ensure(obj, py::array::c_style);
  auto dt = dtype_of(a.dtype());
  if (!dt.ok()) throw py::type_error(dt.status().message());
  return TensorRef{*dt, std::vector<int64_t>(a.shape(), a.shape() + a.ndim()), a.data(), a, false};
}

// A CPU, dense, contiguous view of `obj` (vllm-omni also moves tensors to the CPU to send).
TensorRef torch_ref(const py::handle& obj) {
  py::object t = obj.attr("detach")();
  if (py::str(t.attr("layout")).cast<std::string>() != "torch.strided") {
    throw py::type_error("omniconn: only dense (strided) torch tensors can be sent");
  }
  auto dt = torch_dtype_of(py::str(t.attr("dtype")));
  if (!dt.ok()) throw py::type_error(dt.status().message());
  t = t.attr("cpu")().attr("resolve_neg")().attr("contiguous")();
  std::vector<int64_t> shape;
  for (auto d : t.attr("shape")) shape.push_back(d.cast<int64_t>());
  auto* data = reinterpret_cast<const void*>(t.attr("data_ptr")().cast<uintptr_t>());
  return TensorRef{*dt, std::move(shape), data, t, true};
}

Value add_tensor(TensorRef ref, Encoded* out) {
  Value::Map m;
  m.emplace(kTensorMarker, Value(static_cast<int64_t>(out->tensors.size())));
  if (ref.torch) m.emplace(kTorchMarker, Value(true));
  out->tensors.push_back(std::move(ref));
  return Value(std::move(m));
}

Value encode_map(const py::dict& d, Encoded* out, int depth) {
  Value::Map m;
  for (auto item : d) {
    if (!py::isinstance<py::str>(item.first)) {
      throw py::type_error("omniconn: dict keys must be str, got " +
                           std::string(py::str(item.first.get_type())));
    }
    m.emplace(item.first.cast<std::string>(), encode(item.second, out, depth + 1));
  }
  return Value(std::move(m));
}

Value encode(const py::handle& obj, Encoded* out, int depth) {
  if (depth > 32) throw py::value_error("omniconn: data nested deeper than 32 levels");
  if (obj.is_none()) return Value();
  if (py::isinstance<py::bool_>(obj)) return Value(obj.cast<bool>());
  if (py::isinstance<py::int_>(obj)) {
    try {
      return Value(obj.cast<int64_t>());
    } catch (const py::cast_error&) {
      return Value(obj.cast<uint64_t>());
    }
  }
  if (py::isinstance<py::float_>(obj)) return Value(obj.cast<double>());
  if (py::isinstance<py::str>(obj)) return Value(obj.cast<std::string>());
  if (py::isinstance<py::bytes>(obj)) {
    std::string s = obj.cast<std::string>();
    return Value(Value::Bytes{std::vector<uint8_t>(s.begin(), s.end())});
  }
  if (py::isinstance<py::array>(obj)) return add_tensor(numpy_ref(obj), out);
  if (!out->torch_tensor_type.is_none() && py::isinstance(obj, out->torch_tensor_type)) {
    return add_tensor(torch_ref(obj), out);
  }
  if (py::isinstance<py::dict>(obj)) return encode_map(obj.cast<py::dict>(), out, depth);
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    Value::List l;
    for (auto item : obj) l.push_back(encode(item, out, depth + 1));
    return Value(std::move(l));
  }
  throw py::type_error("omniconn: cannot send an object of type " +
                       std::string(py::str(obj.get_type())) +
                       " (supported: dict, list, tuple, int, float, str, bytes, None, "
                       "numpy.ndarray, torch.Tensor; nothing is pickled)");
}

void check(const Status& st) {
  if (!st.ok()) throw std::runtime_error(st.ToString());
}

// Builds the payload: tensors "t0".."tN" + fields {"obj": tree}.
PayloadBuilder build(const Encoded& e) {
  PayloadBuilder b;
  for (size_t i = 0; i < e.tensors.size(); ++i) {
    const TensorRef& t = e.tensors[i];
    check(b.add_tensor("t" + std::to_string(i), t.dtype, t.shape, t.data));
  }
  Value::Map fields;
  fields.emplace("obj", e.tree);
  check(b.set_fields(Value(std::move(fields))));
  return b;
}

// Holds a PayloadView for as long as numpy arrays point into it.
struct ViewHolder {
  PayloadView view;
};

// What decode builds arrays on: the view's reader, its keepalive, and whether its memory may be
// written (a copy-on-write mapping or private memory) or not (the shared read-only mapping).
struct DecodeCtx {
  const PayloadReader& reader;
  py::object owner;
  bool writable;
};

void set_writeable(py::array& a, bool on) {
  auto& flags = py::detail::array_proxy(a.ptr())->flags;
  flags = on ? (flags | py::detail::npy_api::NPY_ARRAY_WRITEABLE_)
             : (flags & ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_);
}

// A torch tensor on the memory of numpy array `a`. bf16 goes through int16 (torch has no
// uint16). torch has no read-only tensors, so `a` is marked writeable only for
// torch.from_numpy to take it silently; the numpy array itself is never handed out.
py::object torch_view(py::array a, DType dtype) {
  py::module_ torch = py::module_::import("torch");
  if (dtype == DType::kBF16) a = a.attr("view")("int16");
  set_writeable(a, true);
  py::object t = torch.attr("from_numpy")(a);
  if (dtype == DType::kBF16) t = t.attr("view")(torch.attr("bfloat16"));
  return t;
}

bool torch_importable() {
  static const bool ok = [] {
    try {
      py::module_::import("torch");
      return true;
    } catch (const py::error_already_set&) {
      return false;
    }
  }();
  return ok;
}

py::object decode_tensor(int64_t index, bool as_torch, const DecodeCtx& ctx) {
  const PayloadReader& r = ctx.reader;
  if (index < 0 || static_cast<size_t>(index) >= r.tensor_count()) {
    throw std::runtime_error("corrupt: tensor reference out of range");
  }
  const TensorView& t = r.tensor(static_cast<size_t>(index));
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.begin() + t.rank);
  py::array a(numpy_dtype(t.dtype), shape, t.data.data(), ctx.owner);
  set_writeable(a, ctx.writable);
  if (as_torch && torch_importable()) return torch_view(std::move(a), t.dtype);
  return a;
}

// ---- msgpack -> Python objects in one pass -------------------------------------------------

constexpr size_t kMaxDepth = 32;  // the payload format's nesting limit (docs/format.md)

// Builds the Python objects of a fields block straight from its msgpack, with no Value tree in
// between. Safe on any input: containers grow element by element (never by a declared count),
// nesting is bounded, a map key must be a str seen once in its map, and ext types are refused,
// as PayloadReader::fields() refuses them. A map that is a tensor marker becomes the array (or
// torch tensor) it names.
class PyDecoder : public msgpack::null_visitor {
 public:
  explicit PyDecoder(const DecodeCtx& ctx) : ctx_(ctx) {}

  bool visit_nil() { return emit(py::none()); }
  bool visit_boolean(bool v) { return emit(py::bool_(v)); }
  bool visit_positive_integer(uint64_t v) { return emit(py::int_(v)); }
  bool visit_negative_integer(int64_t v) { return emit(py::int_(v)); }
  bool visit_float32(float v) { return emit(py::float_(v)); }
  bool visit_float64(double v) { return emit(py::float_(v)); }
  bool visit_str(const char* v, uint32_t n) { return emit(py::str(v, n)); }
  bool visit_bin(const char* v, uint32_t n) { return emit(py::bytes(v, n)); }
  bool visit_ext(const char*, uint32_t) { return fail("ext types are not supported"); }
  bool start_array(uint32_t) { return enter(py::list(), false); }
  bool end_array() { return leave(); }
  bool start_map(uint32_t) { return enter(py::dict(), true); }
  bool end_map() { return leave(); }
  void parse_error(size_t, size_t at) { error_ = "malformed data at byte " + std::to_string(at); }
  void insufficient_bytes(size_t, size_t at) {
    error_ = "truncated data at byte " + std::to_string(at);
  }

  // The decoded object of `bytes`, or Corrupt naming what is wrong.
  Result<py::object> run(std::span<const std::byte> bytes) {
    size_t off = 0;
    const auto* data = reinterpret_cast<const char*>(bytes.data());
    if (!msgpack::parse(data, bytes.size(), off, *this)) {
      return Status::Corrupt("msgpack: " + (error_.empty() ? "invalid data" : error_));
    }
    if (off != bytes.size()) {
      return Status::Corrupt("msgpack: " + std::to_string(bytes.size() - off) +
                             " trailing bytes after the value");
    }
    return root_;
  }

 private:
  struct Frame {
    py::object obj;
    bool map;
    bool want_key = true;
    py::object key;
  };

  bool fail(std::string why) {
    error_ = std::move(why);
    return false;
  }
  bool enter(py::object obj, bool map) {
    if (stack_.size() >= kMaxDepth) {
      return fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    stack_.push_back(Frame{std::move(obj), map, true, py::object()});
    return true;
  }
  bool leave() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    return emit(f.map ? as_tensor(std::move(f.obj)) : std::move(f.obj));
  }
  bool emit(py::object obj) {
    if (stack_.empty()) {
      root_ = std::move(obj);
      return true;
    }
    Frame& f = stack_.back();
    if (!f.map) return PyList_Append(f.obj.ptr(), obj.ptr()) == 0 || fail("out of memory");
    if (f.want_key) {
      if (!PyUnicode_Check(obj.ptr())) return fail("map key of a type other than str");
      f.key = std::move(obj);
      f.want_key = false;
      return true;
    }
    f.want_key = true;
    if (PyDict_Contains(f.obj.ptr(), f.key.ptr()) == 1) {
      return fail("duplicate map key '" + f.key.cast<std::string>() + "'");
    }
    return PyDict_SetItem(f.obj.ptr(), f.key.ptr(), obj.ptr()) == 0 || fail("out of memory");
  }
  // {"__omniconn_tensor__": i} or {"__omniconn_tensor__": i, "torch": true} -> the tensor.
  py::object as_tensor(py::object dict) {
    PyObject* index = PyDict_GetItemString(dict.ptr(), kTensorMarker);  // borrowed
    if (index == nullptr || !PyLong_Check(index) || PyBool_Check(index)) return dict;
    PyObject* torch = PyDict_GetItemString(dict.ptr(), kTorchMarker);
    if (PyDict_Size(dict.ptr()) != 1 + (torch != nullptr)) return dict;
    int overflow = 0;
    const long long i = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (overflow != 0) return dict;
    return decode_tensor(i, torch == Py_True, ctx_);
  }

  const DecodeCtx& ctx_;
  std::vector<Frame> stack_;
  py::object root_;
  std::string error_;
};

Deadline deadline_from(const py::object& timeout, double fallback_s) {
  double s = timeout.is_none() ? fallback_s : timeout.cast<double>();
  if (!std::isfinite(s) || s < 0) throw py::value_error("timeout must be a number >= 0");
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

Encoded encode_object(const py::handle& obj) {
  Encoded e;
  e.torch_tensor_type = imported_torch_tensor_type();
  e.tree = encode(obj, &e, 0);
  return e;
}

Value to_value(const py::handle& obj) {
  Encoded e = encode_object(obj);
  if (!e.tensors.empty()) throw py::type_error("omniconn: arrays are not allowed in a spec");
  return e.tree;
}

// A Value (connector metrics) as Python objects, through the same decoder as payload fields.
py::object value_to_py(const Value& v) {
  PayloadBuilder empty;
  auto bytes = empty.encode();
  auto r = PayloadReader::open(*bytes);
  const std::vector<uint8_t> packed = encode_msgpack(v);
  const DecodeCtx ctx{*r, py::none(), false};  // the decoder keeps a reference to it
  PyDecoder decoder(ctx);
  auto obj = decoder.run(std::as_bytes(std::span(packed)));
  check(obj.status());
  return std::move(*obj);
}

py::tuple put_failed(const Status& st) {
  py::dict err;
  err["error"] = st.ToString();
  err["code"] = std::string(status_code_name(st.code()));
  return py::make_tuple(false, 0, err);
}

py::tuple put_succeeded(const Descriptor& d, size_t size) {
  py::dict meta;
  meta["descriptor"] = py::bytes(d.bytes);
  meta["size"] = size;
  return py::make_tuple(true, size, meta);
}

// ---- loans: a producer fills one tensor in place --------------------------------------------

// What `loan` hands out: a writable array (or torch tensor) on transport memory. Leaving the
// `with` block normally commits; an exception drops the loan and its space comes back.
class PyLoan {
 public:
  PyLoan(std::shared_ptr<Connector> conn, PayloadKey key, Loan loan, py::object buffer)
      : conn_(std::move(conn)),
        key_(std::move(key)),
        loan_(std::move(loan)),
        buffer_(std::move(buffer)) {}

  py::object enter() {
    if (!loan_.valid()) throw std::runtime_error("loan already committed or aborted");
    return buffer_;
  }

  bool exit(const py::object& exc_type, const py::object&, const py::object&) {
    if (!loan_.valid()) return false;
    if (exc_type.is_none()) {
      commit(py::none());
    } else {
      abort();
    }
    return false;
  }

  py::tuple commit(const py::object& timeout) {
    if (!loan_.valid()) throw std::runtime_error("loan already committed or aborted");
    freeze();
    size_t size = loan_.size();
    Result<Descriptor> d = Status::Internal("unset");
    Deadline deadline = deadline_from(timeout, 10.0);
    {
      py::gil_scoped_release nogil;
      d = conn_->commit(std::move(loan_), key_, deadline);  // commit seals the checksums
    }
    loan_ = Loan();
    result_ = d.ok() ? put_succeeded(*d, size) : put_failed(d.status());
    return result_.cast<py::tuple>();
  }

  void abort() {
    freeze();
    loan_ = Loan();
    result_ = put_failed(Status::Cancelled("loan aborted"));
  }

  py::object result() const { return result_; }
  py::object buffer() const { return buffer_; }

 private:
  // A numpy buffer becomes read-only once the payload is handed over (torch has no such flag).
  void freeze() {
    if (py::isinstance<py::array>(buffer_)) {
      auto a = buffer_.cast<py::array>();
      set_writeable(a, false);
    }
  }

  std::shared_ptr<Connector> conn_;
  PayloadKey key_;
  Loan loan_;
  py::object buffer_;
  py::object result_ = py::none();
};

struct LoanRequest {
  DType dtype;
  bool torch;
  std::vector<int64_t> shape;
};

// dtype: a numpy dtype (or anything np.dtype() takes) or a torch dtype.
LoanRequest loan_request(const py::object& shape, const py::object& dtype) {
  LoanRequest req{DType::kU8, false, {}};
  for (auto d : shape) req.shape.push_back(d.cast<int64_t>());
  std::string name = py::str(dtype);
  if (name.rfind("torch.", 0) == 0) {
    auto dt = torch_dtype_of(name);
    if (!dt.ok()) throw py::type_error(dt.status().message());
    req.dtype = *dt;
    req.torch = true;
  } else {
    auto dt = dtype_of(py::dtype::from_args(dtype));
    if (!dt.ok()) throw py::type_error(dt.status().message());
    req.dtype = *dt;
  }
  return req;
}

// ---- the connector ---------------------------------------------------------------------------

// A Python dict of label name -> value (None: no labels).
MetricLabels labels_from(const py::object& labels) {
  MetricLabels out;
  if (labels.is_none()) return out;
  for (auto item : labels.cast<py::dict>()) {
    out.emplace_back(py::str(item.first).cast<std::string>(),
                     py::str(item.second).cast<std::string>());
  }
  return out;
}

class PyConnector {
 public:
  explicit PyConnector(const py::dict& spec) {
    if (!spec.contains("name")) throw py::value_error("connector spec needs 'name'");
    ConnectorSpec s{spec["name"].cast<std::string>(),
                    spec.contains("extra") ? to_value(spec["extra"]) : Value(),
                    spec.contains("plugin") ? spec["plugin"].cast<std::string>() : ""};
    auto c = create_connector(s);
    if (!c.ok()) throw py::value_error(c.status().ToString());
    conn_ = std::shared_ptr<Connector>(std::move(*c));
    type_ = s.type;
  }

  // An object that cannot be sent is a failed put, not an exception (vllm-omni returns
  // (False, 0, None) there): the data path reports, programming errors raise.
  py::tuple put(const std::string& from, const std::string& to, const std::string& request_id,
                const py::object& data, const py::object& timeout) {
    std::shared_ptr<Connector> c = live();
    Deadline deadline = deadline_from(timeout, 10.0);
    Encoded enc;  // holds the arrays (and contiguous copies) the builder points at
    std::optional<PayloadBuilder> b;
    try {
      enc = encode_object(data);
      b.emplace(build(enc));
    } catch (const py::type_error& e) {
      return put_failed(Status::InvalidArgument(e.what()));
    } catch (const py::value_error& e) {
      return put_failed(Status::InvalidArgument(e.what()));
    } catch (const std::runtime_error& e) {  // build: the payload format refused it
      return put_failed(Status::InvalidArgument(e.what()));
    }
    size_t size = b->encoded_size();
    Result<Descriptor> d = Status::Internal("unset");
    {
      py::gil_scoped_release nogil;
      d = c->put(PayloadKey{request_id, from, to}, *b, deadline);
    }
    return d.ok() ? put_succeeded(*d, size) : put_failed(d.status());
  }

  std::unique_ptr<PyLoan> loan(const std::string& from, const std::string& to,
                               const std::string& request_id, const py::object& shape,
                               const py::object& dtype, const py::object& timeout) {
    std::shared_ptr<Connector> c = live();
    LoanRequest req = loan_request(shape, dtype);
    PayloadBuilder b;
    check(b.add_tensor("t0", req.dtype, req.shape));
    Value::Map marker;
    marker.emplace(kTensorMarker, Value(int64_t{0}));
    if (req.torch) marker.emplace(kTorchMarker, Value(true));
    Value::Map fields;
    fields.emplace("obj", Value(std::move(marker)));
    check(b.set_fields(Value(std::move(fields))));
    Result<Loan> l = Status::Internal("unset");
    Deadline deadline = deadline_from(timeout, 10.0);
    {
      py::gil_scoped_release nogil;
      l = c->loan(b.encoded_size(), deadline);
    }
    if (!l.ok()) throw std::runtime_error(l.status().ToString());
    check(b.write_layout(l->bytes()).status());
    auto data = mutable_tensor_data(l->bytes(), 0);
    check(data.status());
    // The array's base keeps the connector, and with it the mapping, alive.
    py::capsule owner(new std::shared_ptr<Connector>(c),
                      [](void* p) { delete static_cast<std::shared_ptr<Connector>*>(p); });
    py::array a(numpy_dtype(req.dtype),
                std::vector<py::ssize_t>(req.shape.begin(), req.shape.end()), data->data(), owner);
    py::object buffer = req.torch ? torch_view(a, req.dtype) : py::object(a);
    return std::make_unique<PyLoan>(c, PayloadKey{request_id, from, to}, std::move(*l),
                                    std::move(buffer));
  }

  // The metadata (this connector's {"descriptor": bytes, ...}, or {key: that}) names the
  // payload; without it (None, {}, another connector's metadata) the payload is looked up by
  // (from, to, key). A lookup waits `timeout` (default 0: one look, as vllm-omni's polling
  // callers expect); a descriptor get waits up to 10 s by default for the writer to answer.
  py::object get(const std::string& from, const std::string& to, const std::string& key,
                 const py::object& metadata, const py::object& timeout, bool writable) {
    std::shared_ptr<Connector> c = live();
    std::optional<Descriptor> desc = descriptor_in(metadata, key);
    Deadline deadline = deadline_from(timeout, desc ? 10.0 : 0.0);
    return get_until(c, PayloadKey{key, from, to}, desc, deadline, writable);
  }

  // `deadline` is absolute, in time.monotonic() seconds (CLOCK_MONOTONIC, as steady_clock).
  py::object get_with_deadline(const std::string& from, const std::string& to,
                               const std::string& key, const py::object& metadata, double deadline,
                               bool writable) {
    std::shared_ptr<Connector> c = live();
    if (!std::isfinite(deadline)) throw py::value_error("deadline must be a finite number");
    auto at = Deadline(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(deadline)));
    return get_until(c, PayloadKey{key, from, to}, descriptor_in(metadata, key), at, writable);
  }

  static std::optional<Descriptor> descriptor_in(py::object metadata, const std::string& key) {
    if (!py::isinstance<py::dict>(metadata)) return std::nullopt;
    py::dict m = metadata.cast<py::dict>();
    if (m.contains(key) && py::isinstance<py::dict>(m[py::str(key)])) m = m[py::str(key)];
    if (!m.contains("descriptor") || !py::isinstance<py::bytes>(m["descriptor"])) {
      return std::nullopt;
    }
    return Descriptor{m["descriptor"].cast<std::string>()};
  }

  py::object get_until(const std::shared_ptr<Connector>& c, const PayloadKey& key,
                       const std::optional<Descriptor>& desc, Deadline deadline, bool writable) {
    Result<PayloadView> view = Status::Internal("unset");
    {
      py::gil_scoped_release nogil;
      GetOptions o{writable};
      view = desc ? c->get(*desc, deadline, o) : c->get(key, deadline, o);
    }
    if (!view.ok()) {
      last_error_ = view.status().ToString();
      return py::none();
    }
    const size_t size = view->bytes().size();
    auto holder = std::make_unique<ViewHolder>(ViewHolder{std::move(*view)});
    const PayloadReader& r = holder->view.reader();
    py::capsule owner(holder.release(), [](void* p) { delete static_cast<ViewHolder*>(p); });
    Result<py::object> obj = decode_fields(DecodeCtx{r, owner, writable});
    if (!obj.ok()) {
      last_error_ = obj.status().ToString();
      return py::none();
    }
    last_error_.clear();
    return py::make_tuple(std::move(*obj), size);
  }

  // The fields block's "obj" (None when absent), decoded straight to Python objects.
  static Result<py::object> decode_fields(const DecodeCtx& ctx) {
    const auto bytes = ctx.reader.fields_msgpack();
    if (bytes.empty()) return py::object(py::none());
    PyDecoder decoder(ctx);
    OMNICONN_ASSIGN_OR_RETURN(py::object fields, decoder.run(bytes));
    if (!PyDict_Check(fields.ptr())) {
      return Status::Corrupt("payload: fields block holds a " +
                             std::string(py::str(fields.get_type().attr("__name__"))) +
                             ", not a map");
    }
    PyObject* obj = PyDict_GetItemString(fields.ptr(), "obj");  // borrowed
    return obj ? py::reinterpret_borrow<py::object>(obj) : py::object(py::none());
  }

  void cleanup(const std::string& request_id) { check(live()->cleanup(request_id)); }

  py::dict health() {
    py::dict d;
    std::shared_ptr<Connector> c = conn_;
    if (!c) {
      d["status"] = "closed";
      return d;
    }
    Status st = c->health();
    d["status"] = st.ok() ? "healthy" : "unhealthy";
    if (!st.ok()) d["error"] = st.ToString();
    d["type"] = type_;
    {
      py::gil_scoped_release nogil;  // brings in_flight and in_use_bytes up to date
      (void)c->sweep(deadline_in(std::chrono::seconds(5)));
    }
    Metrics mt = c->metrics();
    py::dict m = value_to_py(mt.to_value()).cast<py::dict>();
    for (auto item : m) d[item.first] = item.second;
    d["bytes_transferred"] = mt.bytes_out;  // vllm-omni's name: bytes this connector put
    return d;
  }

  void close() { conn_.reset(); }
  std::string last_error() const { return last_error_; }

  // This connector's omniconn_* families as Prometheus text, with `labels` on every sample.
  std::string prometheus(const py::object& labels) {
    std::shared_ptr<Connector> c = live();
    PrometheusText t;
    Status st = t.connector(c->metrics(), labels_from(labels));
    if (!st.ok()) throw py::value_error(st.ToString());
    return t.str();
  }
  std::weak_ptr<Connector> weak() const { return conn_; }
  const std::string& type() const { return type_; }

 private:
  // A reference that keeps the connector alive through a call, even if another thread closes it.
  std::shared_ptr<Connector> live() {
    if (!conn_) throw std::runtime_error("connector is closed");
    return conn_;
  }

  std::shared_ptr<Connector> conn_;
  std::string type_;
  std::string last_error_;
};

}  // namespace

namespace {

// The payload-format bytes of `data`, as put would write them (docs/format.md).
py::bytes encode_payload(const py::object& data) {
  Encoded e = encode_object(data);
  auto bytes = build(e).encode();
  check(bytes.status());
  return py::bytes(reinterpret_cast<const char*>(bytes->data()), bytes->size());
}

}  // namespace

// Serves /metrics for some connectors of this process (label connector=<name>, type=<type>)
// from threads of its own, without the GIL; a connector closed since is left out.
class PyMetricsServer {
 public:
  PyMetricsServer(const std::string& address, const py::dict& connectors) {
    for (auto item : connectors) {
      auto& c = item.second.cast<PyConnector&>();
      entries_.push_back({py::str(item.first).cast<std::string>(), c.type(), c.weak()});
    }
    auto entries = entries_;
    auto server = MetricsServer::start(address, [entries] {
      PrometheusText t;
      for (const Entry& e : entries) {
        if (auto c = e.conn.lock()) {
          (void)t.connector(c->metrics(), {{"connector", e.name}, {"type", e.type}});
        }
      }
      return t.str();
    });
    if (!server.ok()) {
      if (server.status().code() == StatusCode::kInvalidArgument) {
        throw py::value_error(server.status().ToString());
      }
      throw std::runtime_error(server.status().ToString());
    }
    server_ = std::move(*server);
  }
  std::string address() const {
    if (!server_) throw std::runtime_error("metrics server is closed");
    return server_->address();
  }
  void close() {
    py::gil_scoped_release nogil;  // a scrape in progress finishes first
    server_.reset();
  }

 private:
  struct Entry {
    std::string name, type;
    std::weak_ptr<Connector> conn;
  };
  std::vector<Entry> entries_;
  std::unique_ptr<MetricsServer> server_;
};

PYBIND11_MODULE(_omniconn, m) {
  m.doc() = "omniconn connectors with vllm-omni's call shapes; arrays and tensors zero-copy.";
  py::class_<PyLoan>(m, "Loan",
                     "Transport memory for one tensor, from Connector.loan. Fill it inside "
                     "`with loan as buf:`; a normal exit commits, an exception aborts. "
                     "Do not use buf after the block.")
      .def("__enter__", &PyLoan::enter)
      .def("__exit__", &PyLoan::exit)
      .def("commit", &PyLoan::commit, py::arg("timeout") = py::none(),
           "Hands the payload over -> (ok, size, metadata); waits at most `timeout` seconds "
           "(default 10) for the transport.")
      .def("abort", &PyLoan::abort, "Drops the loan; its space comes back.")
      .def_property_readonly("buffer", &PyLoan::buffer)
      .def_property_readonly("result", &PyLoan::result,
                             "(ok, size, metadata) after commit or abort, else None.");
  m.def("encode_payload", &encode_payload, py::arg("data"),
        "The payload-format bytes (docs/format.md) that put would write for `data`.");
  py::class_<PyConnector>(m, "Connector")
      .def(py::init<const py::dict&>(), py::arg("spec"))
      .def("put", &PyConnector::put, py::arg("from_stage"), py::arg("to_stage"), py::arg("put_key"),
           py::arg("data"), py::arg("timeout") = py::none(),
           "-> (ok, size, metadata). On failure (False, 0, {'error': msg, 'code': name}).")
      .def("get", &PyConnector::get, py::arg("from_stage"), py::arg("to_stage"), py::arg("get_key"),
           py::arg("metadata") = py::none(), py::arg("timeout") = py::none(), py::kw_only(),
           py::arg("writable") = true,
           "-> (obj, size), or None (the reason is in last_error()). Without this connector's "
           "metadata the payload is looked up by (from_stage, to_stage, get_key), waiting "
           "`timeout` seconds (default 0). Arrays and tensors are zero-copy views, "
           "copy-on-write (writable=False: read-only, on the shared mapping).")
      .def("get_with_deadline", &PyConnector::get_with_deadline, py::arg("from_stage"),
           py::arg("to_stage"), py::arg("key"), py::arg("metadata") = py::none(), py::kw_only(),
           py::arg("deadline"), py::arg("writable") = true,
           "Like get; deadline is absolute time.monotonic() seconds.")
      .def("loan", &PyConnector::loan, py::arg("from_stage"), py::arg("to_stage"),
           py::arg("request_id"), py::arg("shape"), py::arg("dtype"),
           py::arg("timeout") = py::none(),
           "-> Loan: one writable tensor of `shape` and `dtype` (numpy or torch dtype) on "
           "transport memory. get returns that tensor (a torch tensor for a torch dtype). "
           "Raises RuntimeError when no space frees up before the timeout.")
      .def("cleanup", &PyConnector::cleanup, py::arg("request_id"))
      .def("health", &PyConnector::health)
      .def("close", &PyConnector::close)
      .def("last_error", &PyConnector::last_error)
      .def("prometheus", &PyConnector::prometheus, py::arg("labels") = py::none(),
           "This connector's metrics in the Prometheus text format (omniconn_* families, "
           "docs/metrics.md), with `labels` (a dict) on every sample.")
      .def(
          "__enter__", [](PyConnector& c) -> PyConnector& { return c; },
          py::return_value_policy::reference)
      .def("__exit__", [](PyConnector& c, const py::args&) { c.close(); })
      .def("__del__", &PyConnector::close)
      .attr("supports_raw_data") = false;
  py::class_<PyMetricsServer>(m, "MetricsServer",
                              "Serves GET /metrics (Prometheus text) for connectors of this "
                              "process: MetricsServer('127.0.0.1:9464', {'thinker_to_talker': "
                              "conn}). Port 0: any free one (see .address).")
      .def(py::init<const std::string&, const py::dict&>(), py::arg("address"),
           py::arg("connectors"))
      .def_property_readonly("address", &PyMetricsServer::address)
      .def("close", &PyMetricsServer::close)
      .def(
          "__enter__", [](PyMetricsServer& s) -> PyMetricsServer& { return s; },
          py::return_value_policy::reference)
      .def("__exit__", [](PyMetricsServer& s, const py::args&) { s.close(); });
  m.def(
      "chunk_key",
      [](const std::string& request_id, const std::string& stage, int64_t chunk) {
        return chunk_key(request_id, stage, chunk);
      },
      py::arg("request_id"), py::arg("stage"), py::arg("chunk"),
      "vllm-omni's key of one streamed chunk: '{request_id}_{stage}_{chunk}' (stage: the "
      "producing one). cleanup(request_id) drops every chunk of the request not yet read.");
  m.def(
      "create_connector", [](const py::dict& spec) { return std::make_unique<PyConnector>(spec); },
      py::arg("spec"),
      "Creates a connector from {'name': <type>, 'extra': {...}} (and 'plugin': <library> for "
      "a type from a plugin library, docs/plugins.md).");
}

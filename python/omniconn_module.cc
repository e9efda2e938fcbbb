// Python bindings: omniconn connectors with vllm-omni's call shapes. numpy arrays travel as
// tensors of the payload format, written once into the transport, and come back as read-only
// numpy views on the shared memory (kept valid while any view is referenced).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "omniconn/connector.h"
#include "omniconn/payload.h"

namespace py = pybind11;
using namespace omniconn;

namespace {

constexpr const char* kTensorMarker = "__omniconn_tensor__";

// ---- Python object <-> Value + tensors ------------------------------------------------------

struct Encoded {
  Value tree;
  std::vector<py::array> arrays;  // keeps the arrays alive until the payload is written
};

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
                                 "' has no payload dtype (bf16: send a torch tensor later, "
                                 "or its raw uint16 bits)");
}

py::dtype numpy_dtype(DType d) {
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

Value encode(const py::handle& obj, Encoded* out, int depth);

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
  if (py::isinstance<py::array>(obj)) {
    out->arrays.push_back(py::array::ensure(obj, py::array::c_style));
    Value::Map ref;
    ref.emplace(kTensorMarker, Value(static_cast<int64_t>(out->arrays.size() - 1)));
    return Value(std::move(ref));
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
                       "numpy.ndarray; nothing is pickled)");
}

void check(const Status& st) {
  if (!st.ok()) throw std::runtime_error(st.ToString());
}

// Builds the payload: tensors "t0".."tN" + fields {"obj": tree}.
PayloadBuilder build(const Encoded& e) {
  PayloadBuilder b;
  for (size_t i = 0; i < e.arrays.size(); ++i) {
    const py::array& a = e.arrays[i];
    auto dt = dtype_of(a.dtype());
    if (!dt.ok()) throw py::type_error(dt.status().message());
    std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
    check(b.add_tensor("t" + std::to_string(i), *dt, std::move(shape), a.data()));
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

py::object decode(const Value& v, const PayloadReader& r, const py::object& owner);

py::object decode_tensor(int64_t index, const PayloadReader& r, const py::object& owner) {
  if (index < 0 || static_cast<size_t>(index) >= r.tensor_count()) {
    throw std::runtime_error("corrupt: tensor reference out of range");
  }
  const TensorView& t = r.tensor(static_cast<size_t>(index));
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.begin() + t.rank);
  py::array a(numpy_dtype(t.dtype), shape, t.data.data(), owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

py::object decode(const Value& v, const PayloadReader& r, const py::object& owner) {
  switch (v.kind()) {
    case Value::Kind::kNil:
      return py::none();
    case Value::Kind::kBool:
      return py::bool_(*v.as_bool());
    case Value::Kind::kInt:
      return py::int_(*v.as_int());
    case Value::Kind::kUInt:
      return py::int_(*v.as_uint());
    case Value::Kind::kFloat:
      return py::float_(*v.as_float());
    case Value::Kind::kString:
      return py::str(*v.as_string());
    case Value::Kind::kBytes: {
      const auto& d = v.as_bytes()->data;
      return py::bytes(reinterpret_cast<const char*>(d.data()), d.size());
    }
    case Value::Kind::kList: {
      py::list l;
      for (const Value& x : *v.as_list()) l.append(decode(x, r, owner));
      return l;
    }
    case Value::Kind::kMap: {
      const Value::Map& m = *v.as_map();
      if (m.size() == 1 && m.begin()->first == kTensorMarker && m.begin()->second.as_int()) {
        return decode_tensor(*m.begin()->second.as_int(), r, owner);
      }
      py::dict d;
      for (const auto& [k, x] : m) d[py::str(k)] = decode(x, r, owner);
      return d;
    }
  }
  return py::none();
}

Deadline deadline_from(const py::object& timeout, double fallback_s) {
  double s = timeout.is_none() ? fallback_s : timeout.cast<double>();
  if (!std::isfinite(s) || s < 0) throw py::value_error("timeout must be a number >= 0");
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

Value to_value(const py::handle& obj) {
  Encoded e;
  Value v = encode(obj, &e, 0);
  if (!e.arrays.empty()) throw py::type_error("omniconn: arrays are not allowed in a spec");
  return v;
}

py::object value_to_py(const Value& v) {
  PayloadBuilder empty;
  auto bytes = empty.encode();
  auto r = PayloadReader::open(*bytes);
  return decode(v, *r, py::none());
}

// ---- the connector ---------------------------------------------------------------------------

class PyConnector {
 public:
  explicit PyConnector(const py::dict& spec) {
    if (!spec.contains("name")) throw py::value_error("connector spec needs 'name'");
    ConnectorSpec s{spec["name"].cast<std::string>(),
                    spec.contains("extra") ? to_value(spec["extra"]) : Value()};
    auto c = create_connector(s);
    if (!c.ok()) throw py::value_error(c.status().ToString());
    conn_ = std::move(*c);
    type_ = s.type;
  }

  py::tuple put(const std::string& from, const std::string& to, const std::string& request_id,
                const py::object& data, const py::object& timeout) {
    Connector& c = live();
    Encoded e;
    e.tree = encode(data, &e, 0);
    PayloadBuilder b = build(e);
    size_t size = b.encoded_size();
    Result<Descriptor> d = Status::Internal("unset");
    Deadline deadline = deadline_from(timeout, 10.0);
    {
      py::gil_scoped_release nogil;
      d = c.put(PayloadKey{request_id, from, to}, b, deadline);
    }
    if (!d.ok()) {
      py::dict err;
      err["error"] = d.status().ToString();
      err["code"] = std::string(status_code_name(d.status().code()));
      return py::make_tuple(false, 0, err);
    }
    py::dict meta;
    meta["descriptor"] = py::bytes(d->bytes);
    meta["size"] = size;
    return py::make_tuple(true, size, meta);
  }

  // Like vllm-omni, the metadata (descriptor) names the payload; the stage names and request id
  // are the caller's labels.
  py::object get(const std::string& /*from*/, const std::string& /*to*/,
                 const std::string& /*request_id*/, const py::object& metadata,
                 const py::object& timeout) {
    return get_until(metadata, deadline_from(timeout, 10.0));
  }

  // `deadline` is absolute, in time.monotonic() seconds (CLOCK_MONOTONIC, as steady_clock).
  py::object get_with_deadline(const std::string& /*from*/, const std::string& /*to*/,
                               const std::string& /*key*/, const py::object& metadata,
                               double deadline) {
    if (!std::isfinite(deadline)) throw py::value_error("deadline must be a finite number");
    auto at = Deadline(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(deadline)));
    return get_until(metadata, at);
  }

  py::object get_until(const py::object& metadata, Deadline deadline) {
    Connector& c = live();
    if (metadata.is_none() || !py::isinstance<py::dict>(metadata) ||
        !metadata.cast<py::dict>().contains("descriptor")) {
      return py::none();
    }
    Descriptor desc{metadata.cast<py::dict>()["descriptor"].cast<std::string>()};
    Result<PayloadView> view = Status::Internal("unset");
    {
      py::gil_scoped_release nogil;
      view = c.get(desc, deadline);
    }
    if (!view.ok()) {
      last_error_ = view.status().ToString();
      return py::none();
    }
    auto fields = view->reader().fields();
    if (!fields.ok()) throw std::runtime_error(fields.status().ToString());
    size_t size = view->bytes().size();
    auto holder = std::make_unique<ViewHolder>(ViewHolder{std::move(*view)});
    const PayloadReader& r = holder->view.reader();
    py::capsule owner(holder.release(), [](void* p) { delete static_cast<ViewHolder*>(p); });
    const Value* obj = fields->find("obj");
    return py::make_tuple(obj ? decode(*obj, r, owner) : py::none(), size);
  }

  void cleanup(const std::string& request_id) { check(live().cleanup(request_id)); }

  py::dict health() {
    py::dict d;
    if (!conn_) {
      d["status"] = "closed";
      return d;
    }
    Status st = conn_->health();
    d["status"] = st.ok() ? "healthy" : "unhealthy";
    if (!st.ok()) d["error"] = st.ToString();
    d["type"] = type_;
    py::dict m = value_to_py(conn_->metrics().to_value()).cast<py::dict>();
    for (auto item : m) d[item.first] = item.second;
    return d;
  }

  void close() { conn_.reset(); }
  std::string last_error() const { return last_error_; }

 private:
  Connector& live() {
    if (!conn_) throw std::runtime_error("connector is closed");
    return *conn_;
  }

  std::unique_ptr<Connector> conn_;
  std::string type_;
  std::string last_error_;
};

}  // namespace

namespace {

// The payload-format bytes of `data`, as put would write them (docs/format.md).
py::bytes encode_payload(const py::object& data) {
  Encoded e;
  e.tree = encode(data, &e, 0);
  auto bytes = build(e).encode();
  check(bytes.status());
  return py::bytes(reinterpret_cast<const char*>(bytes->data()), bytes->size());
}

}  // namespace

PYBIND11_MODULE(omniconn, m) {
  m.doc() = "omniconn connectors with vllm-omni's call shapes; numpy arrays travel zero-copy.";
  m.def("encode_payload", &encode_payload, py::arg("data"),
        "The payload-format bytes (docs/format.md) that put would write for `data`.");
  py::class_<PyConnector>(m, "Connector")
      .def(py::init<const py::dict&>(), py::arg("spec"))
      .def("put", &PyConnector::put, py::arg("from_stage"), py::arg("to_stage"),
           py::arg("request_id"), py::arg("data"), py::arg("timeout") = py::none(),
           "-> (ok, size, metadata). On failure (False, 0, {'error': msg, 'code': name}).")
      .def("get", &PyConnector::get, py::arg("from_stage"), py::arg("to_stage"),
           py::arg("request_id"), py::arg("metadata"), py::arg("timeout") = py::none(),
           "-> (obj, size), or None (the reason is in last_error()). Arrays are read-only "
           "views on the transport's memory.")
      .def("get_with_deadline", &PyConnector::get_with_deadline, py::arg("from_stage"),
           py::arg("to_stage"), py::arg("key"), py::arg("metadata") = py::none(), py::kw_only(),
           py::arg("deadline"), "Like get; deadline is absolute time.monotonic() seconds.")
      .def("cleanup", &PyConnector::cleanup, py::arg("request_id"))
      .def("health", &PyConnector::health)
      .def("close", &PyConnector::close)
      .def("last_error", &PyConnector::last_error)
      .def(
          "__enter__", [](PyConnector& c) -> PyConnector& { return c; },
          py::return_value_policy::reference)
      .def("__exit__", [](PyConnector& c, const py::args&) { c.close(); });
  m.def(
      "create_connector", [](const py::dict& spec) { return std::make_unique<PyConnector>(spec); },
      py::arg("spec"), "Creates a connector from {'name': <type>, 'extra': {...}}.");
}

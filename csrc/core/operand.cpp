// Operands from NumPy, PyTorch (zero-copy through DLPack), CuPy (__cuda_array_interface__) and
// other DLPack producers; results in the main input's library. See core/operand.hpp.
#include "core/operand.hpp"

#include <cstring>
#include <utility>
#include <vector>
#include <string>

#include "core/dlpack.hpp"
#if defined(NK_WITH_CUDA)
#include "core/cuda_runtime.hpp"
#endif

namespace nk {

namespace {

using dlpack::DLManagedTensor;
using dlpack::DLTensor;

// Objects looked up once and kept for the life of the process (never released: interpreter
// shutdown may run after the modules that own them are gone).
PyObject* intern(PyObject* o) {
  if (!o) throw py::error_already_set();
  return o;
}

// PyTorch, found in sys.modules (nnkernels never imports it: without torch loaded no tensor exists).
struct TorchApi {
  PyTypeObject* tensor = nullptr;
  PyObject* to_dlpack = nullptr;    // torch._C._to_dlpack(tensor) -> "dltensor" capsule (no Python-level checks)
  PyObject* from_dlpack = nullptr;  // torch._C._from_dlpack(capsule) -> tensor over the same memory
  PyObject* from_numpy = nullptr;   // torch.from_numpy(ndarray) -> tensor over the same memory
  std::vector<std::pair<PyObject*, dlpack::DLDataType>> dtypes;  // torch.float32 -> {kDLFloat, 32}, ...
};
const TorchApi* torch_api() {
  static TorchApi api;
  if (api.tensor) return &api;
  PyObject* torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed
  if (!torch) return nullptr;
  py::object C = py::reinterpret_borrow<py::object>(torch).attr("_C");
  py::object tensor = py::reinterpret_borrow<py::object>(torch).attr("Tensor");
  api.to_dlpack = intern(py::object(C.attr("_to_dlpack")).release().ptr());
  api.from_dlpack = intern(py::object(C.attr("_from_dlpack")).release().ptr());
  api.from_numpy = intern(py::reinterpret_borrow<py::object>(torch).attr("from_numpy").cast<py::object>().release().ptr());
  const std::pair<const char*, dlpack::DLDataType> names[] = {
      {"float32", {dlpack::kDLFloat, 32, 1}}, {"float64", {dlpack::kDLFloat, 64, 1}},
      {"float16", {dlpack::kDLFloat, 16, 1}}, {"bfloat16", {dlpack::kDLBfloat, 16, 1}},
      {"int64", {dlpack::kDLInt, 64, 1}},     {"int32", {dlpack::kDLInt, 32, 1}},
      {"int16", {dlpack::kDLInt, 16, 1}},     {"int8", {dlpack::kDLInt, 8, 1}},
      {"uint8", {dlpack::kDLUInt, 8, 1}},     {"bool", {dlpack::kDLBool, 8, 1}},
      {"complex64", {dlpack::kDLComplex, 64, 1}}, {"complex128", {dlpack::kDLComplex, 128, 1}}};
  for (const auto& n : names)
    api.dtypes.emplace_back(intern(py::reinterpret_borrow<py::object>(torch).attr(n.first).cast<py::object>().release().ptr()),
                            n.second);
  api.tensor = reinterpret_cast<PyTypeObject*>(tensor.release().ptr());
  return &api;
}
bool is_torch_tensor(PyObject* o) {
  const TorchApi* t = torch_api();
  return t && PyObject_TypeCheck(o, t->tensor);
}

// nnkernels._arraylib: the per-library adapters (allocate, copy, current stream).
py::object arraylib(const char* fn) {
  static PyObject* mod = nullptr;
  if (!mod) mod = intern(py::module_::import("nnkernels._arraylib").release().ptr());
  return py::reinterpret_borrow<py::object>(mod).attr(fn);
}

std::string type_name(const py::handle& h) {
  PyTypeObject* t = Py_TYPE(h.ptr());
  py::object mod = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(t)).attr("__module__");
  std::string m = py::isinstance<py::str>(mod) ? mod.cast<std::string>() : std::string();
  return (m.empty() || m == "builtins") ? std::string(t->tp_name) : m + "." + t->tp_name;
}

// NumPy descriptor of a DLPack element type (cached: built once per type).
PyObject* descr_of(const dlpack::DLDataType& t, const char* arg) {
  static PyObject* cache[8][5] = {};  // [code][log2(bits / 8)]
  const int b = t.bits == 8 ? 0 : t.bits == 16 ? 1 : t.bits == 32 ? 2 : t.bits == 64 ? 3 : t.bits == 128 ? 4 : -1;
  if (t.lanes != 1 || t.code > dlpack::kDLBool || b < 0)
    throw py::type_error(std::string(arg) + ": unsupported DLPack element type (code " + std::to_string(t.code) +
                         ", " + std::to_string(t.bits) + " bits, " + std::to_string(t.lanes) + " lanes)");
  PyObject*& slot = cache[t.code][b];
  if (slot) return slot;
  py::object d;
  switch (t.code) {
    case dlpack::kDLFloat: d = py::dtype("float" + std::to_string(t.bits)); break;
    case dlpack::kDLInt: d = py::dtype("int" + std::to_string(t.bits)); break;
    case dlpack::kDLUInt: d = py::dtype("uint" + std::to_string(t.bits)); break;
    case dlpack::kDLBool: d = py::dtype("bool"); break;
    case dlpack::kDLComplex: d = py::dtype("complex" + std::to_string(t.bits)); break;
    case dlpack::kDLBfloat:
      if (t.bits == 16) {
        d = py::reinterpret_borrow<py::object>(bfloat16_dtype().descr);
        break;
      }
      [[fallthrough]];
    default:
      throw py::type_error(std::string(arg) + ": unsupported DLPack element type (code " + std::to_string(t.code) + ")");
  }
  slot = d.release().ptr();
  return slot;
}

// A NumPy array over `view`'s memory with element type `descr`, whose base keeps `owner` alive.
py::array numpy_over(const ArrayView& view, PyObject* descr, int itemsize, const py::object& owner, bool writeable) {
  py::ssize_t sh[Dims::kMax], st[Dims::kMax];
  const int nd = view.ndim();
  for (int i = 0; i < nd; ++i) {
    sh[i] = py::ssize_t(view.shape[size_t(i)]);
    st[i] = py::ssize_t(view.strides[size_t(i)] * itemsize);
  }
  auto& api = py::detail::npy_api::get();
  Py_INCREF(descr);  // NewFromDescr steals a reference
  PyObject* o = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, nd, sh, st, view.data,
                                          writeable ? py::detail::npy_api::NPY_ARRAY_WRITEABLE_ : 0, nullptr);
  if (!o) throw py::error_already_set();
  py::array a = py::reinterpret_steal<py::array>(o);
  if (api.PyArray_SetBaseObject_(a.ptr(), owner.inc_ref().ptr()) != 0) throw py::error_already_set();
  return a;
}

// A view over a host NumPy array (float types: float_dtype's checks; else any dtype, kind recorded).
void fill_host(Operand& r, const char* arg, Elements elements) {
  if (elements != Elements::real) {
    view_into(r.view, r.host, arg, elements == Elements::storage);
    r.kind = 'f';
    r.itemsize = int(dtype_size(r.view.dtype));
    return;
  }
  const py::dtype d = r.host.dtype();
  r.kind = d.kind();
  r.itemsize = int(d.itemsize());
  r.view.data = const_cast<void*>(r.host.data());
  r.view.writeable = r.host.writeable();
  const int nd = int(r.host.ndim());
  r.view.shape.resize(size_t(nd));
  r.view.strides.resize(size_t(nd));
  r.view.size = 1;
  for (int i = 0; i < nd; ++i) {
    r.view.shape[size_t(i)] = r.host.shape(i);
    r.view.strides[size_t(i)] = r.host.strides(i) / r.itemsize;  // labels are read byte-wise from host
    r.view.size *= r.host.shape(i);
  }
}

// The dtype part of float_dtype's message, for the element rule of an operand.
const char* expected_floats(Elements e) {
  return e == Elements::storage ? ": expected a float32, float64, float16 or bfloat16 array, got dtype "
                                : ": expected a float32 or float64 array, got dtype ";
}

// Interned attribute names for the per-call reads of a tensor's geometry.
PyObject* name_of(const char* s) { return intern(PyUnicode_InternFromString(s)); }

PyObject* call_method(PyObject* o, PyObject* name) {
  PyObject* r = PyObject_CallMethodNoArgs(o, name);
  if (!r) throw py::error_already_set();
  return r;
}

// A torch tensor's geometry, read through its public attributes (data_ptr(), shape, stride(),
// dtype, is_cuda): about half the cost of a DLPack export and its capsule on this call-overhead
// path, and the tensor object itself keeps its storage alive for the call.
Operand from_torch(const py::handle& h, const char* arg, Elements elements) {
  static PyObject *s_is_neg = name_of("is_neg"), *s_data_ptr = name_of("data_ptr"), *s_shape = name_of("shape"),
                  *s_stride = name_of("stride"), *s_dtype = name_of("dtype"), *s_is_cuda = name_of("is_cuda"),
                  *s_is_cpu = name_of("is_cpu"), *s_get_device = name_of("get_device");
  const TorchApi* t = torch_api();
  py::object tensor = py::reinterpret_borrow<py::object>(h);
  // A tensor with the negative bit set (a lazily negated view, e.g. .imag of a conjugate) would
  // be read without its sign: materialise it (inputs only; an output must be a plain tensor).
  {
    py::object neg = py::reinterpret_steal<py::object>(call_method(tensor.ptr(), s_is_neg));
    if (neg.ptr() == Py_True) tensor = tensor.attr("resolve_neg")();
  }
  Operand r;
  r.library = Library::torch;
  r.object = tensor;
  py::object dtype = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), s_dtype));
  if (!dtype) throw py::error_already_set();
  const dlpack::DLDataType* dl = nullptr;
  for (const auto& e : t->dtypes)
    if (e.first == dtype.ptr()) dl = &e.second;
  if (!dl) {
    std::string name = py::str(dtype);
    if (name.rfind("torch.", 0) == 0) name = name.substr(6);
    throw py::type_error(std::string(arg) + (elements != Elements::real ? expected_floats(elements) : ": unsupported tensor dtype ") + name);
  }
  if (elements != Elements::real) {  // checked on torch's dtype (before any NumPy descriptor is looked up)
    const bool with_16bit = elements == Elements::storage;
    if (dl->code == dlpack::kDLFloat && dl->bits == 32) r.view.dtype = DType::f32;
    else if (dl->code == dlpack::kDLFloat && dl->bits == 64) r.view.dtype = DType::f64;
    else if (with_16bit && dl->code == dlpack::kDLFloat && dl->bits == 16) r.view.dtype = DType::f16;
    else if (with_16bit && dl->code == dlpack::kDLBfloat && dl->bits == 16) r.view.dtype = DType::bf16;
    else {
      std::string name = py::str(dtype);
      if (name.rfind("torch.", 0) == 0) name = name.substr(6);
      throw py::type_error(std::string(arg) + expected_floats(elements) + name);
    }
  }
  r.descr = descr_of(*dl, arg);
  const py::dtype descr = py::reinterpret_borrow<py::dtype>(r.descr);
  // A float operand has kind 'f' whatever its NumPy descriptor says (ml_dtypes.bfloat16's kind is 'V'),
  // as fill_host records for NumPy operands: contiguous_copy_of keeps the copy's element rule by it.
  r.kind = elements != Elements::real ? 'f' : descr.kind();
  r.itemsize = int(descr.itemsize());
  // is_cpu first: a CPU tensor (the call-overhead case) needs one device attribute, not two
  py::object is_cpu = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), s_is_cpu));
  if (!is_cpu) throw py::error_already_set();
  if (is_cpu.ptr() != Py_True) {
    py::object is_cuda = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), s_is_cuda));
    if (!is_cuda) throw py::error_already_set();
    if (is_cuda.ptr() != Py_True)
      throw py::type_error(std::string(arg) + ": expected a CPU or CUDA tensor, got one on " +
                           std::string(py::str(tensor.attr("device"))));
    py::object dev = py::reinterpret_steal<py::object>(call_method(tensor.ptr(), s_get_device));
    r.device = Device{Device::cuda, dev.cast<int>()};
  }
  PyObject* strides_o = PyObject_CallMethodNoArgs(tensor.ptr(), s_stride);
  if (!strides_o) {  // sparse and other non-strided layouts have no strides
    PyErr_Clear();
    throw py::type_error(std::string(arg) + ": expected a dense (strided) tensor, got layout " +
                         std::string(py::str(tensor.attr("layout"))));
  }
  py::object strides = py::reinterpret_steal<py::object>(strides_o);
  py::object shape = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), s_shape));
  if (!shape) throw py::error_already_set();
  PyObject* ptr_o = PyObject_CallMethodNoArgs(tensor.ptr(), s_data_ptr);
  if (!ptr_o) {  // sparse and other layouts without one strided storage
    PyErr_Clear();
    throw py::type_error(std::string(arg) + ": expected a dense (strided) tensor, got layout " +
                         std::string(py::str(tensor.attr("layout"))));
  }
  py::object ptr = py::reinterpret_steal<py::object>(ptr_o);
  r.view.data = PyLong_AsVoidPtr(ptr.ptr());
  const Py_ssize_t nd = PyTuple_GET_SIZE(shape.ptr());
  if (nd > Py_ssize_t(Dims::kMax)) throw py::value_error(std::string(arg) + ": more than 64 dimensions");
  r.view.shape.resize(size_t(nd));
  r.view.strides.resize(size_t(nd));
  r.view.size = 1;
  for (Py_ssize_t i = 0; i < nd; ++i) {
    r.view.shape[size_t(i)] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), i));
    r.view.strides[size_t(i)] = PyLong_AsLongLong(PyTuple_GET_ITEM(strides.ptr(), i));
    r.view.size *= r.view.shape[size_t(i)];
  }
  r.view.writeable = true;
  if (r.view.size > 0 && reinterpret_cast<uintptr_t>(r.view.data) % uintptr_t(r.itemsize) != 0)
    throw py::value_error(std::string(arg) + ": data pointer is not aligned to the item size");
  return r;
}

Operand from_cuda_array_interface(const py::handle& h, const char* arg, Elements elements) {
  const std::string tn = type_name(h);
  if (tn.rfind("cupy", 0) != 0)
    throw py::type_error(std::string(arg) + ": GPU arrays must be CuPy arrays or PyTorch tensors, got " + tn);
  py::dict cai = h.attr("__cuda_array_interface__");
  py::tuple data = cai["data"];
  py::tuple shape = cai["shape"];
  const std::string typestr = py::str(cai["typestr"]);
  const py::dtype descr(typestr);
  Operand r;
  r.library = Library::cupy;
  r.object = py::reinterpret_borrow<py::object>(h);
  r.kind = descr.kind();
  r.itemsize = int(descr.itemsize());
  if (elements != Elements::real) {
    if (r.kind == 'f' && r.itemsize == 4) r.view.dtype = DType::f32;
    else if (r.kind == 'f' && r.itemsize == 8) r.view.dtype = DType::f64;
    else if (elements == Elements::storage && r.kind == 'f' && r.itemsize == 2) r.view.dtype = DType::f16;
    else
      throw py::type_error(std::string(arg) + expected_floats(elements) + std::string(py::str(descr)));
    if (typestr[0] == '>') throw py::type_error(std::string(arg) + ": expected native byte order");
  }
  r.view.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  r.view.writeable = !data[1].cast<bool>();
  const int nd = int(shape.size());
  r.view.shape.resize(size_t(nd));
  r.view.strides.resize(size_t(nd));
  py::object strides = cai.contains("strides") ? py::object(cai["strides"]) : py::object(py::none());
  int64_t expect = 1;
  r.view.size = 1;
  for (int i = nd - 1; i >= 0; --i) {
    r.view.shape[size_t(i)] = shape[size_t(i)].cast<int64_t>();
    if (strides.is_none()) {
      r.view.strides[size_t(i)] = expect;
    } else {
      const int64_t sb = py::tuple(strides)[size_t(i)].cast<int64_t>();
      if (sb % r.itemsize != 0)
        throw py::value_error(std::string(arg) + ": strides must be a multiple of the item size (unaligned view)");
      r.view.strides[size_t(i)] = sb / r.itemsize;
    }
    expect *= r.view.shape[size_t(i)];
    r.view.size *= r.view.shape[size_t(i)];
  }
  py::tuple dev = h.attr("__dlpack_device__")();
  r.device = Device{Device::cuda, dev[1].cast<int>()};
  return r;
}

bool has_attr(const py::handle& h, const char* name) { return PyObject_HasAttrString(h.ptr(), name) == 1; }

}  // namespace

Library library_of(const py::handle& h) {
  if (py::isinstance<py::array>(h)) return Library::numpy;
  if (is_torch_tensor(h.ptr())) return Library::torch;
  if (has_attr(h, "__cuda_array_interface__")) return Library::cupy;
  if (has_attr(h, "__dlpack__")) return Library::foreign;
  return Library::numpy;
}

namespace {
// Before anything is allocated for a GPU operand: a build without CUDA kernels says so by name.
Operand checked_device(Operand r, const char* arg) {
#if !defined(NK_WITH_CUDA)
  if (r.is_cuda())
    throw std::runtime_error(std::string(arg) +
                             ": a CUDA array was passed, but this nnkernels build has no CUDA kernels (built without "
                             "nvcc or with NNKERNELS_CUDA=OFF); rebuild with a CUDA toolkit to use GPU arrays");
#else
  (void)arg;
#endif
  return r;
}

Operand host_operand(const py::handle& h, const char* arg, Elements elements) {
  Operand r;
  r.object = py::reinterpret_borrow<py::object>(h);
  r.host = py::reinterpret_borrow<py::array>(h);
  fill_host(r, arg, elements);
  return r;
}
}  // namespace

Operand operand_of(const py::handle& h, const char* arg, Elements elements) {
  // the common case first: no attribute lookups, the operand built in place (host_operand)
  if (py::isinstance<py::array>(h)) return host_operand(h, arg, elements);
  Operand r;
  if (h.is_none()) throw py::type_error(std::string(arg) + ": expected an array, got None");
  if (is_torch_tensor(h.ptr())) return checked_device(from_torch(h, arg, elements), arg);
  if (has_attr(h, "__cuda_array_interface__")) return checked_device(from_cuda_array_interface(h, arg, elements), arg);
  if (has_attr(h, "__dlpack__") && has_attr(h, "__dlpack_device__")) {
    py::tuple dev = h.attr("__dlpack_device__")();
    const int type = dev[0].cast<int>();
    if (type != dlpack::kDLCPU && type != dlpack::kDLCUDAHost)
      throw py::type_error(std::string(arg) + ": GPU arrays must be CuPy arrays or PyTorch tensors, got " + type_name(h));
    // Another library's host array (JAX, ...): NumPy imports it (read-only when the producer says so).
    r.host = py::module_::import("numpy").attr("from_dlpack")(h);
    r.object = r.host;
    r.library = Library::foreign;
    fill_host(r, arg, elements);
    return r;
  }
  r.host = as_array(h, arg);  // array-likes: NumPy converts, non-real refused
  r.object = r.host;
  fill_host(r, arg, elements);
  return r;
}

py::array Operand::host_array() {
  if (host) return host;
  if (is_cuda()) throw py::type_error("a CUDA array has no host view");
  host = numpy_over(view, descr, itemsize, keep ? keep : object, view.writeable);
  return host;
}

Operand optional_operand(const py::handle& h, const char* arg, Elements elements) {
  if (h.is_none()) return Operand{};
  return operand_of(h, arg, elements);
}

py::object Operand::result() const {
  if (!fresh || is_cuda() || library != Library::torch) return object;
  if (view.dtype == DType::f32 || view.dtype == DType::f64) {  // NumPy's own dtypes: torch's fastest import
    PyObject* t = PyObject_CallOneArg(torch_api()->from_numpy, host.ptr());
    if (!t) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(t);
  }
  // A new host result for a torch caller: a tensor over the same memory, exported through DLPack
  // (the NumPy array stays its owner; any dtype, bfloat16 included, unlike torch.from_numpy).
  struct Export {
    dlpack::DLManagedTensor mt;
    int64_t shape[Dims::kMax];
    int64_t strides[Dims::kMax];
  };
  auto* e = new Export;
  const int nd = view.ndim();
  for (int i = 0; i < nd; ++i) {
    e->shape[i] = view.shape[size_t(i)];
    e->strides[i] = view.strides[size_t(i)];
  }
  DLTensor& t = e->mt.dl_tensor;
  t.data = view.data;
  t.device = {dlpack::kDLCPU, 0};
  t.ndim = nd;
  const DType dt = view.dtype;
  t.dtype = {uint8_t(dt == DType::bf16 ? dlpack::kDLBfloat : dlpack::kDLFloat), uint8_t(dtype_size(dt) * 8), 1};
  t.shape = e->shape;
  t.strides = e->strides;
  t.byte_offset = 0;
  e->mt.manager_ctx = host.inc_ref().ptr();
  e->mt.deleter = [](dlpack::DLManagedTensor* self) {
    // torch may free the tensor on any thread: take the GIL to drop the array's reference.
    if (Py_IsInitialized()) {
      PyGILState_STATE g = PyGILState_Ensure();
      Py_XDECREF(static_cast<PyObject*>(self->manager_ctx));
      PyGILState_Release(g);
    }
    delete reinterpret_cast<Export*>(self);
  };
  PyObject* cap = PyCapsule_New(&e->mt, "dltensor", [](PyObject* c) {
    // Not consumed (the name is still "dltensor"): nobody else will call the deleter.
    if (PyCapsule_IsValid(c, "dltensor")) {
      auto* m = static_cast<dlpack::DLManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
      m->deleter(m);
    }
  });
  if (!cap) {
    e->mt.deleter(&e->mt);
    throw py::error_already_set();
  }
  py::object capsule = py::reinterpret_steal<py::object>(cap);
  PyObject* tensor = PyObject_CallOneArg(torch_api()->from_dlpack, cap);
  if (!tensor) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(tensor);
}

namespace {
// new_result on the CPU. One named result and a single return (here and in host_operand): the
// Operand is built in place (NRVO), not moved; small calls make several of them.
Operand new_host_result(Library lib, DType dt, const Dims& shape, const void* apart_from, const void* also_apart_from) {
  Operand r;
  r.library = lib;
  r.fresh = true;
  r.host = empty_array(dt, shape, apart_from, also_apart_from, &r.untouched);
  r.object = r.host;
  // The view of a new C-contiguous array, written directly (view_of's checks cannot fail on
  // it, and its dtype lookups are a measurable part of a small call that makes several results).
  r.view.data = r.host.mutable_data();
  r.view.dtype = dt;
  r.view.writeable = true;
  r.view.shape = shape;
  r.view.strides.resize(shape.size());
  int64_t n = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    r.view.strides[i] = n;
    n *= shape[i];
  }
  r.view.size = n;
  r.itemsize = int(dtype_size(dt));
  return r;
}
}  // namespace

Operand new_result(const Operand& like, DType dt, const Dims& shape, const void* apart_from,
                   const void* also_apart_from) {
  const Library lib = like.library == Library::foreign ? Library::numpy : like.library;
  if (!like.is_cuda()) return new_host_result(lib, dt, shape, apart_from, also_apart_from);
  py::tuple sh(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) sh[i] = py::int_(shape[i]);
  py::object a = arraylib("empty")(like.object, sh, dtype_name(dt));
  Operand o = operand_of(a, "out", Elements::storage);
  o.library = lib;
  o.fresh = true;
  return o;
}

namespace {
bool is_array_object(const py::handle& h) {
  return py::isinstance<py::array>(h) || is_torch_tensor(h.ptr()) || has_attr(h, "__cuda_array_interface__") ||
         has_attr(h, "__dlpack__");
}
}  // namespace

Operand output_operand(const py::object& out, const Operand& like, DType dt, const Dims& shape, const char* arg,
                       const void* apart_from, const void* also_apart_from) {
  if (out.is_none()) return new_result(like, dt, shape, apart_from, also_apart_from);
  if (!is_array_object(out))
    throw py::type_error(std::string(arg) + ": expected an array (NumPy, PyTorch, CuPy) or None, got " +
                         type_name(out));
  Operand o = operand_of(out, arg, Elements::storage);  // any float dtype: compared with dt below
  if (o.view.dtype != dt)
    throw py::value_error(std::string(arg) + ": expected dtype " + dtype_name(dt) + ", got " + dtype_name(o.view.dtype));
  if (o.view.shape != shape)
    throw py::value_error(std::string(arg) + ": expected shape " + shape_str(shape) + ", got " + shape_str(o.view.shape));
  if (!o.view.writeable) throw py::value_error(std::string(arg) + ": array is read-only");
  check_no_self_overlap(o.view, arg);
  check_same_device(like, "the input", o, arg);
  return o;
}

namespace {
std::string device_str(const Device& d) { return d.is_cuda() ? "cuda:" + std::to_string(d.index) : "the CPU"; }
}  // namespace

void check_same_device(const Operand& a, const char* an, const Operand& b, const char* bn) {
  if (a.device != b.device)
    throw py::value_error(std::string(bn) + ": expected an array on " + device_str(a.device) + " like " + an +
                          ", got one on " + device_str(b.device) +
                          " (nnkernels never copies between host and device inside an op)");
}

Operand contiguous_copy_of(const Operand& a, const char* arg) {
  if (!a.is_cuda()) {
    Operand t = a;
    Operand r = operand_of(contiguous_copy(t.host_array()), arg, a.kind == 'f' ? Elements::storage : Elements::real);
    r.library = a.library;
    return r;
  }
  Operand r = operand_of(arraylib("contiguous_copy")(a.object), arg, a.kind == 'f' ? Elements::storage : Elements::real);
  r.library = a.library;
  return r;
}

Operand device_int64_copy(const Operand& a, const char* arg) {
  Operand r = operand_of(arraylib("int64_copy")(a.object), arg, Elements::real);
  r.library = a.library;
  return r;
}

Operand device_float64_copy(const Operand& a, const char* arg) {
  Operand r = operand_of(arraylib("astype_copy")(a.object, "float64"), arg);
  r.library = a.library;
  return r;
}

void make_contiguous_on_gpu(Operand& a, const char* arg) {
  if (a.is_cuda() && a.object && !a.view.c_contiguous()) a = contiguous_copy_of(a, arg);
}

GpuStagedOutput::GpuStagedOutput(const Operand& out, bool always) : out_(&out) {
  if (!out.is_cuda() || (out.view.c_contiguous() && !always)) return;
  Operand like = out;
  tmp_ = new_result(like, out.view.dtype, out.view.shape);
  staged_ = true;
}

void GpuStagedOutput::finish() {
  if (staged_) arraylib("copy_into")(out_->object, tmp_.object);
}

ExecContext context_of(const Operand& main) {
  ExecContext c;
  c.device = main.device;
  if (main.is_cuda()) c.stream = arraylib("current_stream")(main.object, main.device.index).cast<uintptr_t>();
  return c;
}

DeviceScope::DeviceScope(const Device& d) {
#if defined(NK_WITH_CUDA)
  if (d.is_cuda()) previous_ = cuda::exchange_device(d.index);
#else
  (void)d;
#endif
}

DeviceScope::~DeviceScope() {
#if defined(NK_WITH_CUDA)
  if (previous_ >= 0) cuda::exchange_device(previous_);
#endif
}

}  // namespace nk

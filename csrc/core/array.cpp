#include "core/array.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/operand.hpp"
#include "core/parallel.hpp"
#include "core/result_cache.hpp"

namespace nk {

std::string shape_str(const Dims& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += std::to_string(s[i]) + (s.size() == 1 ? "," : (i + 1 < s.size() ? ", " : ""));
  return r + ")";
}

// ml_dtypes.bfloat16 is a NumPy user dtype (kind 'V', itemsize 2): recognised by its type number,
// looked up once (ml_dtypes is imported the first time a 2-byte 'V' array arrives, or a bfloat16
// result is made) and then compared as an int on every call.
const Bfloat16Dtype& bfloat16_dtype() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<Bfloat16Dtype> storage;
  return storage
      .call_once_and_store_result([]() {
        Bfloat16Dtype b;
        py::dtype dt = py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16"));
        b.type_num = dt.num();
        b.descr = dt.release().ptr();
        return b;
      })
      .get_stored();
}
namespace {
constexpr int kNpyHalf = 23;  // NPY_HALF
}  // namespace

DType float_dtype(const py::array& a, const char* arg, bool with_16bit) {
  const auto* d = py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr);
  const char kind = d->kind;
  const auto size = a.itemsize();
  if (kind == 'f' && size == 4) return DType::f32;
  if (kind == 'f' && size == 8) return DType::f64;
  if (with_16bit && size == 2) {
    if (kind == 'f') return DType::f16;
    if (kind == 'V' && d->type_num == bfloat16_dtype().type_num) return DType::bf16;
  }
  throw py::type_error(std::string(arg) +
                       (with_16bit ? ": expected a float32, float64, float16 or bfloat16 array, got dtype "
                                   : ": expected a float32 or float64 array, got dtype ") +
                       std::string(py::str(a.dtype())));
}

ArrayView view_of(const py::array& a, const char* arg, bool with_16bit) {
  ArrayView v;
  view_into(v, a, arg, with_16bit);
  return v;
}

void view_into(ArrayView& v, const py::array& a, const char* arg, bool with_16bit) {
  v.size = 1;
  v.dtype = float_dtype(a, arg, with_16bit);
  // dtype.isnative, read from the descriptor ('=' native, '|' not applicable, else '<' / '>'
  // compared with this machine's order) instead of a Python attribute lookup on every call.
  const char bo = py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr)->byteorder;
  const char native_bo = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) ? '<' : '>';
  if (bo != '=' && bo != '|' && bo != native_bo)
    throw py::type_error(std::string(arg) + ": expected native byte order, got " + std::string(py::str(a.dtype())));
  v.data = const_cast<void*>(a.data());
  v.writeable = a.writeable();
  const int nd = int(a.ndim());
  const int64_t isz = dtype_size(v.dtype);
  v.shape.resize(nd);
  v.strides.resize(nd);
  for (int i = 0; i < nd; ++i) {
    v.shape[i] = a.shape(i);
    const int64_t sb = a.strides(i);
    if (sb % isz != 0)
      throw py::value_error(std::string(arg) + ": strides must be a multiple of the item size (unaligned view)");
    v.strides[i] = sb / isz;
    v.size *= v.shape[i];
  }
  if (v.size > 0 && (reinterpret_cast<uintptr_t>(v.data) % uintptr_t(isz)) != 0)
    throw py::value_error(std::string(arg) + ": data pointer is not aligned to the item size");
}

namespace {
// dtype kind of an ndarray, read from its descriptor (no dtype object built: every call's path).
char kind_of(const py::array& a) {
  return py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr)->kind;
}
[[noreturn]] void not_real(const py::array& a, const char* arg) {
  throw py::type_error(std::string(arg) + ": expected a real-valued numeric array, got dtype " +
                       std::string(py::str(a.dtype())));
}
}  // namespace

double finite_real(const py::handle& h, const char* arg) {
  PyObject* o = h.ptr();
  double v;
  if (PyFloat_Check(o)) {
    v = PyFloat_AS_DOUBLE(o);
  } else {
    if (PyBool_Check(o) || PyComplex_Check(o) || !PyNumber_Check(o) ||
        (!PyIndex_Check(o) && !PyObject_HasAttrString(o, "__float__")))
      throw py::type_error(std::string(arg) + ": expected a real number, got " + Py_TYPE(o)->tp_name);
    v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      throw py::type_error(std::string(arg) + ": expected a real number, got " + Py_TYPE(o)->tp_name);
    }
  }
  if (!std::isfinite(v))
    throw py::value_error(std::string(arg) + ": expected a finite number, got " + std::string(py::str(py::float_(v))));
  return v;
}

void check_no_self_overlap(const ArrayView& v, const char* arg) {
  if (v.size <= 1) return;
  std::pair<int64_t, int64_t> dims[Dims::kMax];  // (|stride|, extent) of the dimensions longer than 1
  size_t n = 0;
  for (int i = 0; i < v.ndim(); ++i)
    if (v.shape[i] > 1) dims[n++] = {v.strides[i] < 0 ? -v.strides[i] : v.strides[i], v.shape[i]};
  std::sort(dims, dims + n);
  int64_t span = 1;  // elements covered by the inner dimensions
  for (size_t k = 0; k < n; ++k) {
    const auto [stride, extent] = dims[k];
    if (stride < span)
      throw py::value_error(std::string(arg) + ": elements overlap in memory (a zero or interleaved stride); "
                            "expected an array that can hold one value per element");
    span = stride * (extent - 1) + span;
  }
}

py::array as_array(const py::handle& h, const char* arg) {
  // An ndarray goes on as it is: the dtype check of the op (float_dtype, the labels' integer
  // check, as_float64) accepts only the real dtypes it takes and says which they are.
  if (py::isinstance<py::array>(h)) return py::reinterpret_borrow<py::array>(h);
  if (h.is_none()) throw py::type_error(std::string(arg) + ": expected an array, got None");
  // A torch tensor or another DLPack / CUDA-array-interface producer: its host memory zero-copy
  // (core/operand.hpp). Bindings with a GPU path take such arguments as Operands before this.
  if (library_of(h) != Library::numpy) {
    Operand o = operand_of(h, arg, Elements::real);
    if (o.is_cuda())
      throw py::type_error(std::string(arg) + ": expected a host array (this function has no GPU path), got a CUDA array");
    return o.host_array();
  }
  py::module_ np = py::module_::import("numpy");
  py::array a = np.attr("asarray")(h);
  switch (kind_of(a)) {
    case 'b': case 'c': case 'O': case 'S': case 'U': case 'M': case 'm': case 'V': not_real(a, arg);
    default: return a;
  }
}

py::array as_float64(const py::handle& h, const char* arg) {
  py::array a = as_array(h, arg);
  const char k = kind_of(a);
  if (k != 'f' && k != 'i' && k != 'u') not_real(a, arg);
  py::module_ np = py::module_::import("numpy");
  py::array c = np.attr("ascontiguousarray")(a, py::arg("dtype") = "float64");
  // ascontiguousarray keeps a misaligned float64 buffer (np.frombuffer at an odd offset) as it
  // is: copy it, so that callers may read the data through a double* without UB.
  if (!(c.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) c = np.attr("array")(c, py::arg("copy") = true);
  return c;
}

uint32_t page_offset_apart(const void* a, const void* b) {
  // Page offsets of the inputs' first vectors; a missing input is taken for a NumPy block
  // (16 bytes into a page, vector offset 0).
  const uint32_t pa = a ? uint32_t(reinterpret_cast<uintptr_t>(a) & 4095 & ~uintptr_t(63)) : 0;
  if (!b) return (pa + 2048 + 64) & 4095;
  const uint32_t pb = uint32_t(reinterpret_cast<uintptr_t>(b) & 4095 & ~uintptr_t(63));
  // the middle of the larger gap between the two on the 4096-byte circle
  const uint32_t up = (pb - pa) & 4095;
  const uint32_t mid = up >= 2048 ? pa + up / 2 : pb + (4096 - up) / 2;
  return mid & 4095 & ~uint32_t(63);
}

py::array empty_array(DType dt, const Dims& shape, const void* apart_from, const void* also_apart_from,
                      bool* untouched) {
  // NumPy's own constructor (C order, NumPy's allocator) without pybind11's intermediate
  // shape/stride vectors: this runs for every result of every call.
  py::ssize_t sh[Dims::kMax];
  const int nd = int(shape.size());
  int64_t nbytes = dtype_size(dt);
  for (int i = 0; i < nd; ++i) {
    sh[i] = py::ssize_t(shape[size_t(i)]);
    nbytes *= shape[size_t(i)];
  }
  auto& api = py::detail::npy_api::get();
  py::dtype descr = dt == DType::f32   ? py::dtype::of<float>()
                    : dt == DType::f64 ? py::dtype::of<double>()
                    : dt == DType::f16 ? py::dtype(kNpyHalf)
                                       : py::reinterpret_borrow<py::dtype>(bfloat16_dtype().descr);
  if (nbytes < kPlacedMinBytes) {
    if (untouched) *untouched = true;  // unknown: whatever malloc returns
    PyObject* o = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr.release().ptr(), nd, sh, nullptr, nullptr, 0,
                                            nullptr);  // steals the descriptor reference
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::array>(o);
  }
  // Placed: 64-byte aligned (whole vectors, non-temporal stores from the first element) and
  // half a page away from `apart_from` modulo 4096. NumPy's large blocks all start 16 bytes into
  // a page, so a result and its input would otherwise share their page offsets, and loads of
  // the input then wait on stores to the result at the same offset ("4K aliasing"): layer norm
  // backward at (65536, 1024) float32 took 34.0 ms into such a dx, 24.5 ms into a placed one.
  // With two streamed inputs (dout and the saved x or y of a backward, often itself a placed
  // result at NumPy's offset + 2112) it goes midway between their offsets, at least ~1 KiB
  // from each; without a known input it is placed as if its input were such a NumPy block.
  // The memory comes from the result cache (core/result_cache.hpp): a block freed by an earlier
  // result, its pages already faulted in, or a new mapping; the object owning it is the base.
  const uint32_t offset = page_offset_apart(apart_from, also_apart_from);
  char* data = nullptr;
  py::object owner = result_block(nbytes, offset, &data, untouched);
  PyObject* o = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr.release().ptr(), nd, sh, nullptr, data,
                                          py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                              py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                                              py::detail::npy_api::NPY_ARRAY_WRITEABLE_,
                                          nullptr);
  if (!o) throw py::error_already_set();
  py::array res = py::reinterpret_steal<py::array>(o);
  if (api.PyArray_SetBaseObject_(res.ptr(), owner.release().ptr()) != 0) throw py::error_already_set();
  return res;
}

py::array output_for(const py::object& out, DType dt, const Dims& shape, const char* arg, const void* apart_from,
                     const void* also_apart_from) {
  if (out.is_none()) return empty_array(dt, shape, apart_from, also_apart_from);
  py::array o = null_array();
  if (py::isinstance<py::array>(out)) {
    o = py::reinterpret_borrow<py::array>(out);
  } else if (library_of(out) == Library::torch) {
    Operand t = operand_of(out, arg, Elements::storage);
    if (t.is_cuda()) throw py::type_error(std::string(arg) + ": expected a host array (this function has no GPU path), got a CUDA tensor");
    o = t.host_array();
  } else {
    throw py::type_error(std::string(arg) + ": expected an array or None, got " +
                         std::string(py::str(py::type::of(out).attr("__name__"))));
  }
  ArrayView v = view_of(o, arg, /*with_16bit=*/true);  // any float dtype: compared with dt below
  if (v.dtype != dt)
    throw py::value_error(std::string(arg) + ": expected dtype " + dtype_name(dt) + ", got " + dtype_name(v.dtype));
  if (v.shape != shape)
    throw py::value_error(std::string(arg) + ": expected shape " + shape_str(shape) + ", got " + shape_str(v.shape));
  if (!v.writeable) throw py::value_error(std::string(arg) + ": array is read-only");
  check_no_self_overlap(v, arg);
  return o;
}

void check_same_shape(const ArrayView& a, const char* an, const ArrayView& b, const char* bn) {
  if (a.shape != b.shape)
    throw py::value_error(std::string(bn) + ": expected the shape of " + an + " " + shape_str(a.shape) + ", got " +
                          shape_str(b.shape));
}

void check_same_dtype(const ArrayView& a, const char* an, const ArrayView& b, const char* bn) {
  if (a.dtype != b.dtype)
    throw py::value_error(std::string(bn) + ": expected the dtype of " + an + " (" + dtype_name(a.dtype) + "), got " +
                         dtype_name(b.dtype));
}

static void byte_extent(const ArrayView& v, uintptr_t& lo, uintptr_t& hi) {
  const int64_t isz = dtype_size(v.dtype);
  int64_t mn = 0, mx = 0;
  for (int i = 0; i < v.ndim(); ++i) {
    const int64_t span = (v.shape[i] - 1) * v.strides[i];
    if (span < 0) mn += span; else mx += span;
  }
  lo = reinterpret_cast<uintptr_t>(v.data) + uintptr_t(mn * isz);
  hi = reinterpret_cast<uintptr_t>(v.data) + uintptr_t((mx + 1) * isz);
}

bool may_overlap(const ArrayView& a, const ArrayView& b) {
  if (a.size == 0 || b.size == 0) return false;
  uintptr_t alo, ahi, blo, bhi;
  byte_extent(a, alo, ahi);
  byte_extent(b, blo, bhi);
  return alo < bhi && blo < ahi;
}

bool same_layout(const ArrayView& a, const ArrayView& b) {
  return a.data == b.data && a.shape == b.shape && a.strides == b.strides && a.dtype == b.dtype;
}

py::array contiguous_copy(const py::array& a) {
  py::module_ np = py::module_::import("numpy");
  return np.attr("array")(a, py::arg("copy") = true, py::arg("order") = "C");
}

void run_elementwise(const ArrayView* ins, int n_in, const ArrayView& out, ElementwiseFn fn, const void* params,
                     int64_t grain_elems) {
  const int64_t n = out.size;
  if (n == 0) return;
  const int64_t isz = dtype_size(out.dtype);
  bool contiguous = out.c_contiguous();
  for (int k = 0; k < n_in; ++k) contiguous = contiguous && ins[k].c_contiguous();

  if (contiguous) {
    const bool stream = n * isz >= kStreamBytes;
    parallel_for(n, grain_elems, [&](int64_t b, int64_t e) {
      const void* p[4];
      for (int k = 0; k < n_in; ++k) p[k] = static_cast<const char*>(ins[k].data) + b * isz;
      fn(p, static_cast<char*>(out.data) + b * isz, e - b, params, stream);
    });
    return;
  }

  // Coalesce the dimensions shared by every operand; drop length-1 dimensions.
  const int nops = n_in + 1;
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides(nops);
  for (int d = 0; d < out.ndim(); ++d) {
    if (out.shape[d] == 1) continue;
    shape.push_back(out.shape[d]);
    for (int k = 0; k < nops; ++k) strides[k].push_back(k < n_in ? ins[k].strides[d] : out.strides[d]);
  }
  for (int d = int(shape.size()) - 2; d >= 0; --d) {
    bool merge = true;
    for (int k = 0; k < nops; ++k) merge = merge && strides[k][d] == strides[k][d + 1] * shape[d + 1];
    if (!merge) continue;
    shape[d] *= shape[d + 1];
    shape.erase(shape.begin() + d + 1);
    for (int k = 0; k < nops; ++k) {
      strides[k][d] = strides[k][d + 1];
      strides[k].erase(strides[k].begin() + d + 1);
    }
  }
  const int nd = int(shape.size());
  const int64_t inner = shape[nd - 1];
  const int64_t rows = n / inner;
  constexpr int64_t kBlock = 2048;
  const int64_t row_grain = std::max<int64_t>(1, grain_elems / inner);

  parallel_for(rows, row_grain, [&](int64_t rb, int64_t re) {
    std::vector<char> buf(size_t(nops) * kBlock * isz);
    std::vector<int64_t> idx(nd, 0);
    for (int64_t r = rb; r < re; ++r) {
      // offsets of this row for every operand
      int64_t off[5] = {0, 0, 0, 0, 0};
      int64_t rem = r;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t i = rem % shape[d];
        rem /= shape[d];
        for (int k = 0; k < nops; ++k) off[k] += i * strides[k][d];
      }
      for (int64_t c0 = 0; c0 < inner; c0 += kBlock) {
        const int64_t len = std::min(kBlock, inner - c0);
        const void* p[4];
        for (int k = 0; k < n_in; ++k) {
          const char* base = static_cast<const char*>(ins[k].data) + (off[k] + c0 * strides[k][nd - 1]) * isz;
          const int64_t s = strides[k][nd - 1];
          if (s == 1) {
            p[k] = base;
          } else {
            char* dst = buf.data() + size_t(k) * kBlock * isz;
            for (int64_t j = 0; j < len; ++j) std::memcpy(dst + j * isz, base + j * s * isz, size_t(isz));
            p[k] = dst;
          }
        }
        const int64_t so = strides[n_in][nd - 1];
        char* obase = static_cast<char*>(out.data) + (off[n_in] + c0 * so) * isz;
        if (so == 1) {
          fn(p, obase, len, params, false);
        } else {
          char* tmp = buf.data() + size_t(n_in) * kBlock * isz;
          fn(p, tmp, len, params, false);
          for (int64_t j = 0; j < len; ++j) std::memcpy(obase + j * so * isz, tmp + j * isz, size_t(isz));
        }
      }
    }
  });
}

}  // namespace nk

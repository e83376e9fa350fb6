// Host-side array handling for the bindings: typed views of NumPy arrays, argument
// checks that raise clear Python exceptions, output allocation, and the elementwise
// driver that runs a contiguous 1-D kernel over any strided layout.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/common.hpp"
#include "core/elementwise.hpp"
#include "core/view.hpp"

namespace nk {
namespace py = pybind11;

// "(2, 3)" / "(5,)" for error messages.
std::string shape_str(const Dims& s);
// dtype of a NumPy array if it is float32 or float64, or with `with_16bit` also float16 or
// ml_dtypes.bfloat16 (the storage types of the ops that take them); TypeError naming `arg` otherwise.
DType float_dtype(const py::array& a, const char* arg, bool with_16bit = false);
// View of `a`; requires a supported float dtype (as float_dtype) and element-aligned strides.
ArrayView view_of(const py::array& a, const char* arg, bool with_16bit = false);
// The same, written into v (no copy of the view: operands are built in place on every call's path).
void view_into(ArrayView& v, const py::array& a, const char* arg, bool with_16bit = false);
// ml_dtypes.bfloat16, the NumPy dtype of bfloat16 storage (a user dtype, kind 'V', itemsize 2):
// its type number and descriptor, looked up once (importing ml_dtypes) and held for the process.
struct Bfloat16Dtype {
  int type_num = -1;
  PyObject* descr = nullptr;  // one reference held for the life of the process
};
const Bfloat16Dtype& bfloat16_dtype();
// Accepts an ndarray (no copy) or converts an array-like (list, scalar) to one. Every array
// argument of every op comes through here, and non-real input is refused for arrays and
// array-likes alike (never a silent cast that drops an imaginary part or reads bytes as numbers):
// an array-like that converts to a complex, bool, object, bytes/str, datetime/timedelta or
// structured dtype is a TypeError naming `arg` here; an ndarray goes on to the op's dtype check
// (float_dtype for float32/float64 data, an integer check for labels, as_float64), each of which
// accepts only the real dtypes it names.
py::array as_array(const py::handle& h, const char* arg);
// The values of a real-valued (integer or floating) array or array-like as a C-contiguous float64
// array (a copy unless it already is one): small host-side vectors (merge statistics, affine
// parameters) where any real dtype is fine. Every other dtype is a TypeError naming `arg`.
py::array as_float64(const py::handle& h, const char* arg);
// A finite real scalar argument (Python int/float, NumPy real scalar; not bool, str or None):
// TypeError / ValueError naming `arg` otherwise. Taken as py::handle by the bindings so that a wrong
// type is reported with the argument's name instead of pybind11's overload list.
double finite_real(const py::handle& h, const char* arg);
// An output must not overlap itself (a zero stride or interleaved strides on a writeable view):
// ValueError naming `arg`. Conservative: dimensions sorted by stride must nest.
void check_no_self_overlap(const ArrayView& v, const char* arg);
// A new C-contiguous array of the given dtype and shape. At least kPlacedMinBytes, it is
// 64-byte aligned, placed half a page away from `apart_from` (the main input of the op; a
// typical NumPy block when null) modulo the page size, or midway between it and
// `also_apart_from` (a second streamed input), and its memory comes from the result cache
// (core/result_cache.hpp; see array.cpp); smaller results come from NumPy's allocator.
// `*untouched` (if given) says whether the pages are new to this process, to be faulted in by
// the kernel's first stores (a new mapping, or NumPy's allocator), or already present (a block
// reused from the cache): kernels that pick ordinary stores for memory they fault in anyway
// and non-temporal stores otherwise decide with it.
constexpr int64_t kPlacedMinBytes = int64_t(1) << 20;
py::array empty_array(DType dt, const Dims& shape, const void* apart_from = nullptr,
                      const void* also_apart_from = nullptr, bool* untouched = nullptr);
// The page offset (0..4095, a multiple of 64) empty_array gives a result of those inputs.
uint32_t page_offset_apart(const void* apart_from, const void* also_apart_from = nullptr);

// A null array handle for members and locals assigned later. py::array's default constructor
// allocates an empty float64 NumPy array: ~0.1 us each, five of them per layer-norm call.
inline py::array null_array() { return py::reinterpret_steal<py::array>(py::handle()); }
// `out` argument: None -> a fresh array (empty_array, placed apart from the inputs given);
// otherwise it must be a writeable ndarray of the same shape and dtype (TypeError if not an
// array; ValueError naming "out" for a shape or dtype mismatch or a read-only array).
py::array output_for(const py::object& out, DType dt, const Dims& shape, const char* arg = "out",
                     const void* apart_from = nullptr, const void* also_apart_from = nullptr);
void check_same_shape(const ArrayView& a, const char* an, const ArrayView& b, const char* bn);
// Mismatches between arguments are ValueErrors naming the second argument.
void check_same_dtype(const ArrayView& a, const char* an, const ArrayView& b, const char* bn);
// may_overlap, same_layout: core/view.hpp.
// A C-contiguous copy of `a` (used when an input partially overlaps the output).
py::array contiguous_copy(const py::array& a);

}  // namespace nk

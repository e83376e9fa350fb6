// Python bindings of the fused softmax cross-entropy (CPU: csrc/cpu/losses.cpp, CUDA: csrc/cuda/losses.cu).
// Validation happens here before any memory is touched; rows run in fixed chunks in parallel and the
// per-chunk loss partials (float64) are added in chunk order: bitwise identical for any thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/parallel.hpp"
#include "cpu/losses.hpp"
#if defined(NK_WITH_CUDA)
#include "cuda/losses.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {

// Labels are read exactly once, here, with the GIL held and before anything is written: each
// value is loaded from the caller's buffer (any integer dtype, any stride, any address: a
// byte copy, so an odd address is no misaligned int64 load), checked against [0, classes) and
// stored in a private int64 buffer that the kernel indexes with. Labels that share memory with
// `out`, or that another thread changes while the kernel runs without the GIL, therefore cannot
// make the kernel index outside a row: it never reads the caller's labels again.
template <class T>
bool copy_labels(const char* p, int64_t stride, int64_t n, int64_t classes, int64_t* dst, int64_t& bad_at,
                 std::string& bad_value) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * stride, sizeof(T));
    bool ok;
    if constexpr (std::is_signed<T>::value) ok = v >= 0 && int64_t(v) < classes;
    else ok = uint64_t(v) < uint64_t(classes);
    if (!ok) {
      bad_at = i;
      bad_value = std::to_string(v);
      return false;
    }
    dst[i] = int64_t(v);
  }
  return true;
}

// `labels` (n,) integers in [0, classes) into dst; TypeError/ValueError naming labels otherwise.
void read_labels(const py::handle& h, int64_t n, int64_t classes, std::vector<int64_t>& dst) {
  py::array a = as_array(h, "labels");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("labels: expected an integer array, got dtype " + std::string(py::str(a.dtype())));
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error("labels: expected shape (" + std::to_string(n) + ",) matching logits' rows, got ndim " +
                          std::to_string(a.ndim()) + (a.ndim() >= 1 ? " with " + std::to_string(a.shape(0)) + " rows" : ""));
  const char bo = a.dtype().byteorder();
  const char native_bo = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) ? '<' : '>';
  if (bo != '=' && bo != '|' && bo != native_bo)  // rare: swap to native order with NumPy first
    a = py::module_::import("numpy").attr("asarray")(a, py::arg("dtype") = kind == 'i' ? "int64" : "uint64");
  const int isz = int(a.dtype().itemsize());
  const char* p = static_cast<const char*>(a.data());
  const int64_t stride = n > 1 ? int64_t(a.strides(0)) : 0;
  dst.resize(size_t(n));
  int64_t bad_at = -1;
  std::string bad;
  bool ok = true;
  if (kind == 'i') {
    switch (isz) {
      case 1: ok = copy_labels<int8_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      case 2: ok = copy_labels<int16_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      case 4: ok = copy_labels<int32_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      case 8: ok = copy_labels<int64_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      default: throw py::type_error("labels: unsupported integer dtype " + std::string(py::str(a.dtype())));
    }
  } else {
    switch (isz) {
      case 1: ok = copy_labels<uint8_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      case 2: ok = copy_labels<uint16_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      case 4: ok = copy_labels<uint32_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      case 8: ok = copy_labels<uint64_t>(p, stride, n, classes, dst.data(), bad_at, bad); break;
      default: throw py::type_error("labels: unsupported integer dtype " + std::string(py::str(a.dtype())));
    }
  }
  if (!ok)
    throw py::value_error("labels: expected values in [0, " + std::to_string(classes) + "), got " + bad +
                          " at index " + std::to_string(bad_at));
}

py::tuple softmax_cross_entropy(const py::handle& logits_in, const py::handle& labels_in, const py::object& out) {
  py::array logits = as_array(logits_in, "logits");
  ArrayView xv = view_of(logits, "logits");
  if (xv.ndim() != 2)
    throw py::value_error("logits: expected a 2-D array (batch, classes), got ndim " + std::to_string(xv.ndim()));
  const int64_t n = xv.shape[0], c = xv.shape[1];
  if (c < 1) throw py::value_error("logits: expected at least one class (column), got 0");
  std::vector<int64_t> labels;
  read_labels(labels_in, n, c, labels);
  py::array o = output_for(out, xv.dtype, xv.shape, "out", xv.data);
  ArrayView ov = view_of(o, "out");
  if (n > 0 && c > 1 && ov.strides[1] != 1) throw py::value_error("out: expected unit stride along the class axis");
  // Kernel rows need unit column stride; an out that partially overlaps logits reads from a copy.
  const bool unit_cols = c == 1 || xv.strides[1] == 1;
  if (!unit_cols || (may_overlap(xv, ov) && !same_layout(xv, ov))) {
    logits = contiguous_copy(logits);
    xv = view_of(logits, "logits");
  }
  if (n == 0) return py::make_tuple(std::numeric_limits<double>::quiet_NaN(), o);

  const SoftmaxXentFn fn = loss_kernels().softmax_xent[dtype_index(xv.dtype)];
  const int64_t grain = std::max<int64_t>(1, 16384 / c);  // rows per chunk: depends on the shape only
  std::vector<double> partial(size_t(num_chunks(n, grain)), 0.0);
  const double inv_n = 1.0 / double(n);
  const int64_t isz = dtype_size(xv.dtype);
  const char* xp = static_cast<const char*>(xv.data);
  char* op = static_cast<char*>(ov.data);
  const int64_t ldx = xv.strides[0], ldo = ov.strides[0];
  const int64_t* lp = labels.data();  // the private copy (see read_labels)
  {
    py::gil_scoped_release release;
    parallel_for_chunks(n, grain, [&](int64_t chunk, int64_t b, int64_t e) {
      partial[size_t(chunk)] = fn(xp + b * ldx * isz, ldx, lp + b, op + b * ldo * isz, ldo, 0, e - b, c, inv_n);
    });
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return py::make_tuple(total * inv_n, o);
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(losses) {
  using namespace nk;
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("out") = py::none());
#if defined(NK_WITH_CUDA)
  // GPU entry: raw device pointers (see nnkernels/losses.py). row_loss: float64 workspace of n,
  // loss: one float64 on the device; labels: int64, range-checked by the caller (and, as read, by the kernel).
  m.def("cuda_softmax_cross_entropy",
        [](int dtype, uintptr_t logits, uintptr_t labels, uintptr_t dlogits, int64_t n, int64_t c, uintptr_t row_loss,
           uintptr_t loss, uintptr_t stream) {
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          py::gil_scoped_release release;
          cuda::launch_softmax_xent(dtype, logits, labels, dlogits, n, c, row_loss, loss, stream);
        },
        py::arg("dtype"), py::arg("logits"), py::arg("labels"), py::arg("dlogits"), py::arg("n"), py::arg("c"),
        py::arg("row_loss"), py::arg("loss"), py::arg("stream"));
#endif
}

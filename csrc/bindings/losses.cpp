// Python bindings of the fused softmax cross-entropy (CPU: csrc/cpu/losses.cpp, CUDA: csrc/cuda/losses.cu).
// Validation happens here before any memory is touched; rows run in fixed chunks in parallel and the
// per-chunk loss partials (float64) are added in chunk order: bitwise identical for any thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
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

// Integer labels as a contiguous int64 array of shape (n,), every value in [0, classes).
py::array_t<int64_t> checked_labels(const py::handle& h, int64_t n, int64_t classes) {
  py::array a = as_array(h, "labels");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("labels: expected an integer array, got dtype " + std::string(py::str(a.dtype())));
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error("labels: expected shape (" + std::to_string(n) + ",) matching logits' rows, got ndim " +
                          std::to_string(a.ndim()) + (a.ndim() >= 1 ? " with " + std::to_string(a.shape(0)) + " rows" : ""));
  py::array_t<int64_t> l;
  if (kind == 'i' && a.dtype().itemsize() == 8 && (a.flags() & py::array::c_style) && a.dtype().attr("isnative").cast<bool>()) {
    l = py::reinterpret_borrow<py::array_t<int64_t>>(a);  // fast path: already int64, contiguous
  } else {
  py::module_ np = py::module_::import("numpy");
  if (kind == 'u' && a.dtype().itemsize() == 8) {
    // uint64 values above INT64_MAX would wrap: check before the conversion
    py::object mx = n > 0 ? np.attr("max")(a) : py::int_(0);
    if (mx.cast<uint64_t>() >= uint64_t(classes))
      throw py::value_error("labels: expected values in [0, " + std::to_string(classes) + "), got " +
                            std::string(py::str(mx)));
  }
  l = np.attr("ascontiguousarray")(a, py::arg("dtype") = "int64");
  }
  const int64_t* p = l.data();
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] < 0 || p[i] >= classes)
      throw py::value_error("labels: expected values in [0, " + std::to_string(classes) + "), got " +
                            std::to_string(p[i]) + " at index " + std::to_string(i));
  }
  return l;
}

py::tuple softmax_cross_entropy(const py::handle& logits_in, const py::handle& labels_in, const py::object& out) {
  py::array logits = as_array(logits_in, "logits");
  ArrayView xv = view_of(logits, "logits");
  if (xv.ndim() != 2)
    throw py::value_error("logits: expected a 2-D array (batch, classes), got ndim " + std::to_string(xv.ndim()));
  const int64_t n = xv.shape[0], c = xv.shape[1];
  if (c < 1) throw py::value_error("logits: expected at least one class (column), got 0");
  py::array_t<int64_t> labels = checked_labels(labels_in, n, c);
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
  const int64_t* lp = labels.data();
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
  // loss: one float64 on the device; labels: int64, already range-checked by the caller.
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

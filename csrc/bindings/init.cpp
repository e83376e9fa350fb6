// Python bindings of the weight-initialisation kernels (CPU: csrc/cpu/init.cpp, CUDA:
// csrc/cuda/init.cu). The public API (shapes, fans, gains, dtype/out handling) lives in
// python/nnkernels/init.py; these entries fill a given contiguous array in place.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/parallel.hpp"
#include "cpu/init.hpp"
#if defined(NK_WITH_CUDA)
#include "cuda/init.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {

constexpr int64_t kGroupsPerChunk = 2048;  // 128K float32 / 64K float64 elements per parallel chunk

InitParams make_params(int dist, uint64_t seed, double a, double b) {
  if (dist != kInitUniform && dist != kInitNormal) throw py::value_error("dist: expected 0 (uniform) or 1 (normal)");
  InitParams p;
  p.seed = seed;
  p.dist = dist;
  p.a = a;
  p.b = b;
  return p;
}

void init_fill(const py::handle& out_h, int dist, uint64_t seed, double a, double b) {
  if (!py::isinstance<py::array>(out_h)) throw py::type_error("out: expected a NumPy array");
  py::array out = py::reinterpret_borrow<py::array>(out_h);
  ArrayView ov = view_of(out, "out");
  if (!ov.writeable) throw py::value_error("out: array is read-only");
  const InitParams p = make_params(dist, seed, a, b);
  if (ov.size == 0) return;
  if (!ov.c_contiguous()) throw py::value_error("out: expected a C-contiguous array");
  const int di = dtype_index(ov.dtype);
  const int64_t n = ov.size;
  const int64_t G = di ? kInitGroupF64 : kInitGroupF32;
  const int64_t groups = (n + G - 1) / G;
  const InitFillFn fn = init_kernels().fill[di];
  const bool stream = n * dtype_size(ov.dtype) >= (int64_t(8) << 20);
  void* data = ov.data;
  py::gil_scoped_release release;
  parallel_for(groups, kGroupsPerChunk, [&](int64_t g0, int64_t g1) { fn(data, g0, g1, n, &p, stream); });
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(init) {
  using namespace nk;
  m.def("init_fill", &init_fill, py::arg("out"), py::arg("dist"), py::arg("seed"), py::arg("a"), py::arg("b"),
        "Fill a C-contiguous float32/float64 array with Philox4x32-10 uniform (dist=0: a + b*u) or normal "
        "(dist=1: a + b*z) numbers; element i depends only on (seed, i).");
  m.def("philox4x32_10",
        [](std::vector<uint32_t> ctr, std::vector<uint32_t> key) {
          if (ctr.size() != 4) throw py::value_error("ctr: expected 4 words");
          if (key.size() != 2) throw py::value_error("key: expected 2 words");
          std::vector<uint32_t> out(4);
          init_kernels().philox(ctr.data(), key.data(), out.data());
          return out;
        },
        py::arg("ctr"), py::arg("key"));
#if defined(NK_WITH_CUDA)
  m.def("cuda_init_fill",
        [](uintptr_t out, int64_t n, int dtype, int dist, uint64_t seed, double a, double b, uintptr_t stream) {
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          const InitParams p = make_params(dist, seed, a, b);
          py::gil_scoped_release release;
          cuda::launch_init_fill(out, n, dtype, p, stream);
        },
        py::arg("out"), py::arg("n"), py::arg("dtype"), py::arg("dist"), py::arg("seed"), py::arg("a"), py::arg("b"),
        py::arg("stream"));
#endif
}

// Bindings of the bandwidth kernels (csrc/cpu/stream.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "core/array.hpp"
#include "core/module.hpp"
#include "cpu/stream.hpp"

namespace py = pybind11;

NK_REGISTER_BINDINGS(stream) {
  using namespace nk;
  m.def("stream_copy",
        [](py::array_t<float, py::array::c_style> a, py::array_t<float, py::array::c_style> b) {
          ArrayView av = view_of(a, "a"), bv = view_of(b, "b");
          check_same_shape(av, "a", bv, "b");
          if (!bv.writeable) throw py::value_error("b: array is read-only");
          py::gil_scoped_release r;
          run_elementwise(&av, 1, bv, stream_kernels().copy, nullptr);
        },
        py::arg("a").noconvert(), py::arg("b").noconvert(), "b[:] = a (float32, C-contiguous), streaming stores for large arrays");
  m.def("stream_triad",
        [](py::array_t<float, py::array::c_style> a, py::array_t<float, py::array::c_style> b,
           py::array_t<float, py::array::c_style> c, double s) {
          ArrayView ins[2] = {view_of(a, "a"), view_of(b, "b")};
          ArrayView cv = view_of(c, "c");
          check_same_shape(ins[0], "a", ins[1], "b");
          check_same_shape(ins[0], "a", cv, "c");
          if (!cv.writeable) throw py::value_error("c: array is read-only");
          py::gil_scoped_release r;
          run_elementwise(ins, 2, cv, stream_kernels().triad, &s);
        },
        py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("c").noconvert(), py::arg("scalar"), "c[:] = a + scalar * b (float32)");
}

// Bindings of the bandwidth kernels (csrc/cpu/stream.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/parallel.hpp"
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
  m.def("stream_convert",
        [](py::array a, py::array b) {
          ArrayView av = view_of(a, "a", true), bv = view_of(b, "b", true);
          check_same_shape(av, "a", bv, "b");
          if (!bv.writeable) throw py::value_error("b: array is read-only");
          if (!av.c_contiguous() || !bv.c_contiguous()) throw py::value_error("a, b: expected C-contiguous arrays");
          if (may_overlap(av, bv)) throw py::value_error("b: overlaps a");
          const auto fn = stream_kernels().convert[dtype_index(av.dtype)][dtype_index(bv.dtype)];
          if (!fn) throw py::type_error("a, b: expected float32, float16 or bfloat16 arrays");
          const char* src = static_cast<const char*>(av.data);
          char* dst = static_cast<char*>(bv.data);
          const int64_t sa = dtype_size(av.dtype), sb = dtype_size(bv.dtype);
          py::gil_scoped_release r;
          parallel_for(av.size, 1 << 16, [&](int64_t i0, int64_t i1) {
            const void* in[1] = {src + i0 * sa};
            fn(in, dst + i0 * sb, i1 - i0, nullptr, false);
          });
        },
        py::arg("a"), py::arg("b"),
        "b[:] = a in b's dtype (float32, float16, bfloat16; C-contiguous), rounded to nearest even: "
        "the conversions every kernel uses on 16-bit storage, at the selected ISA level");
}

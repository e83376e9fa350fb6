// Python bindings of the activation kernels (CPU: csrc/cpu/activations.cpp,
// CUDA: csrc/cuda/activations.cu). Argument checks happen here, before any memory is
// touched; the kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/array.hpp"
#include "core/module.hpp"
#include "cpu/activations.hpp"
#if defined(NK_WITH_CUDA)
#include "cuda/activations.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {

py::array unary(ActivationOp op, const py::handle& x_in, const py::object& out, const ActivationParams& params) {
  py::array x = as_array(x_in, "x");
  ArrayView xv = view_of(x, "x");
  py::array o = output_for(out, xv.dtype, xv.shape, "out", xv.data);
  ArrayView ov = view_of(o, "out");
  if (may_overlap(xv, ov) && !same_layout(xv, ov)) {  // partial overlap: read from a copy
    x = contiguous_copy(x);
    xv = view_of(x, "x");
  }
  const ActivationFn fn = activation_kernels().fn[op][dtype_index(xv.dtype)];
  {
    py::gil_scoped_release release;
    run_elementwise(&xv, 1, ov, fn, &params);
  }
  return o;
}

py::array binary(ActivationOp op, const py::handle& dout_in, const char* second_name, const py::handle& second_in,
                 const py::object& out, const ActivationParams& params) {
  py::array dout = as_array(dout_in, "dout");
  py::array second = as_array(second_in, second_name);
  ArrayView ins[2] = {view_of(dout, "dout"), view_of(second, second_name)};
  check_same_shape(ins[0], "dout", ins[1], second_name);
  check_same_dtype(ins[0], "dout", ins[1], second_name);
  py::array o = output_for(out, ins[0].dtype, ins[0].shape, "out", ins[0].data, ins[1].data);
  ArrayView ov = view_of(o, "out");
  py::array keep[2] = {dout, second};
  for (int k = 0; k < 2; ++k) {
    if (may_overlap(ins[k], ov) && !same_layout(ins[k], ov)) {
      keep[k] = contiguous_copy(keep[k]);
      ins[k] = view_of(keep[k], k == 0 ? "dout" : second_name);
    }
  }
  const ActivationFn fn = activation_kernels().fn[op][dtype_index(ins[0].dtype)];
  {
    py::gil_scoped_release release;
    run_elementwise(ins, 2, ov, fn, &params);
  }
  return o;
}

ActivationParams slope_params(const py::handle& s) {
  ActivationParams p;
  p.negative_slope = finite_real(s, "negative_slope");
  return p;
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(activations) {
  using namespace nk;
  const ActivationParams none{};
  m.def("relu", [none](py::handle x, py::object out) { return unary(kRelu, x, out, none); },
        py::arg("x"), py::arg("out") = py::none());
  m.def("relu_backward",
        [none](py::handle dout, py::handle x, py::object out) { return binary(kReluBackward, dout, "x", x, out, none); },
        py::arg("dout"), py::arg("x"), py::arg("out") = py::none());
  m.def("leaky_relu",
        [](py::handle x, py::handle s, py::object out) { return unary(kLeakyRelu, x, out, slope_params(s)); },
        py::arg("x"), py::arg("negative_slope") = 0.01, py::arg("out") = py::none());
  m.def("leaky_relu_backward",
        [](py::handle dout, py::handle x, py::handle s, py::object out) {
          return binary(kLeakyReluBackward, dout, "x", x, out, slope_params(s));
        },
        py::arg("dout"), py::arg("x"), py::arg("negative_slope") = 0.01, py::arg("out") = py::none());
  m.def("sigmoid", [none](py::handle x, py::object out) { return unary(kSigmoid, x, out, none); },
        py::arg("x"), py::arg("out") = py::none());
  m.def("sigmoid_backward",
        [none](py::handle dout, py::handle y, py::object out) { return binary(kSigmoidBackward, dout, "y", y, out, none); },
        py::arg("dout"), py::arg("y"), py::arg("out") = py::none());
  m.def("tanh", [none](py::handle x, py::object out) { return unary(kTanh, x, out, none); },
        py::arg("x"), py::arg("out") = py::none());
  m.def("tanh_backward",
        [none](py::handle dout, py::handle y, py::object out) { return binary(kTanhBackward, dout, "y", y, out, none); },
        py::arg("dout"), py::arg("y"), py::arg("out") = py::none());
  m.attr("ACTIVATION_OPS") = py::dict(py::arg("relu") = int(kRelu), py::arg("relu_backward") = int(kReluBackward),
                                      py::arg("leaky_relu") = int(kLeakyRelu),
                                      py::arg("leaky_relu_backward") = int(kLeakyReluBackward),
                                      py::arg("sigmoid") = int(kSigmoid), py::arg("sigmoid_backward") = int(kSigmoidBackward),
                                      py::arg("tanh") = int(kTanh), py::arg("tanh_backward") = int(kTanhBackward));
#if defined(NK_WITH_CUDA)
  // GPU entry: raw device pointers from __cuda_array_interface__ / DLPack (see nnkernels/_gpu.py).
  m.def("cuda_activation",
        [](int op, int dtype, std::vector<uintptr_t> ins, uintptr_t out, int64_t n, double slope, uintptr_t stream) {
          if (op < 0 || op >= kActivationOpCount) throw py::value_error("op: unknown activation op");
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          py::gil_scoped_release release;
          cuda::launch_activation(op, dtype, ins.data(), int(ins.size()), out, n, slope, stream);
        },
        py::arg("op"), py::arg("dtype"), py::arg("ins"), py::arg("out"), py::arg("n"), py::arg("negative_slope"),
        py::arg("stream"));
#endif
}

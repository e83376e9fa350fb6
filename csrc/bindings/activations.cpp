// Python bindings of the activation ops: argument parsing and validation (once, for every device
// and array library: core/operand.hpp), then one call of activation_stub (drivers/activations.hpp),
// which runs the CPU driver or the CUDA launcher with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/array.hpp"
#include "core/operand.hpp"
#include "drivers/activations.hpp"
#include "core/module.hpp"

namespace py = pybind11;

namespace nk {
namespace {

// Validated operands -> the op's implementation on the main input's device.
void run(ActivationOp op, Operand* ins, int n_in, const Operand& out, const ActivationParams& params) {
  const ExecContext ctx = context_of(ins[0]);
  static const char* const names[2] = {"x", "y"};
  for (int k = 0; k < n_in; ++k) make_contiguous_on_gpu(ins[k], names[k]);
  GpuStagedOutput target(out);
  ArrayView views[2];
  for (int k = 0; k < n_in; ++k) views[k] = ins[k].view;
  const ActivationImpl impl = activation_stub(ctx.device);
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(op, views, n_in, target.target().view, params, ctx);
  }
  target.finish();
}

py::object unary(ActivationOp op, const py::handle& x_in, const py::object& out, const ActivationParams& params) {
  Operand x = operand_of(x_in, "x", Elements::storage);
  Operand o = output_operand(out, x, x.view.dtype, x.view.shape, "out", x.view.data);
  if (may_overlap(x.view, o.view) && !same_layout(x.view, o.view)) x = contiguous_copy_of(x, "x");  // read from a copy
  run(op, &x, 1, o, params);
  return o.result();
}

py::object binary(ActivationOp op, const py::handle& dout_in, const char* second_name, const py::handle& second_in,
                  const py::object& out, const ActivationParams& params) {
  Operand ins[2] = {operand_of(dout_in, "dout", Elements::storage), operand_of(second_in, second_name, Elements::storage)};
  check_same_shape(ins[0].view, "dout", ins[1].view, second_name);
  check_same_dtype(ins[0].view, "dout", ins[1].view, second_name);
  check_same_device(ins[0], "dout", ins[1], second_name);
  Operand o = output_operand(out, ins[0], ins[0].view.dtype, ins[0].view.shape, "out", ins[0].view.data,
                             ins[1].view.data);
  for (int k = 0; k < 2; ++k)
    if (may_overlap(ins[k].view, o.view) && !same_layout(ins[k].view, o.view))
      ins[k] = contiguous_copy_of(ins[k], k == 0 ? "dout" : second_name);
  run(op, ins, 2, o, params);
  return o.result();
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
}

// Python bindings of the weight-initialisation fill: argument parsing and validation (once, for
// every device and array library: core/operand.hpp), then one call of init_fill_stub
// (drivers/init.hpp). The public API (shapes, fans, gains, seeds) is python/nnkernels/init.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/operand.hpp"
#include "drivers/init.hpp"

namespace py = pybind11;

namespace nk {
namespace {

InitParams make_params(int dist, uint64_t seed, double a, double b) {
  if (dist != kInitUniform && dist != kInitNormal) throw py::value_error("dist: expected 0 (uniform) or 1 (normal)");
  if (!std::isfinite(a) || !std::isfinite(b)) throw py::value_error("parameters must be finite");
  InitParams p;
  p.seed = seed;
  p.dist = dist;
  p.a = a;
  p.b = b;
  return p;
}

// The `dtype` argument: anything numpy.dtype accepts that names float32, float64, float16 or
// ml_dtypes.bfloat16 (16-bit: the float32 numbers of the same seed rounded to nearest even).
DType init_dtype(const py::handle& h) {
  constexpr const char* kExpected = "dtype: expected float32, float64, float16 or bfloat16, got ";
  py::dtype d;
  try {
    d = py::dtype::from_args(py::reinterpret_borrow<py::object>(h));
  } catch (py::error_already_set&) {
    // NumPy knows the name "bfloat16" once ml_dtypes is imported, which nnkernels leaves to the
    // first bfloat16 array (importing ml_dtypes 0.7 takes about a second): import it and retry.
    if (!py::isinstance<py::str>(h)) throw py::type_error(kExpected + std::string(py::repr(h)));
    (void)bfloat16_dtype();
    try {
      d = py::dtype::from_args(py::reinterpret_borrow<py::object>(h));
    } catch (py::error_already_set&) {
      throw py::type_error(kExpected + std::string(py::repr(h)));
    }
  }
  if (d.kind() == 'f' && d.itemsize() == 4) return DType::f32;
  if (d.kind() == 'f' && d.itemsize() == 8) return DType::f64;
  if (d.kind() == 'f' && d.itemsize() == 2) return DType::f16;
  if (d.kind() == 'V' && d.itemsize() == 2 && d.num() == bfloat16_dtype().type_num) return DType::bf16;
  throw py::type_error(kExpected + std::string(py::str(d)));
}

// out None: a new NumPy array of `shape` and `dtype` (float32 when None). Otherwise out (NumPy,
// torch CPU or CUDA tensor, CuPy, any strides) is filled in place and returned; its dtype must be
// `dtype` when given. Element i of the C-order flattening depends only on (seed, i).
py::object init_fill(const py::object& out_h, const std::vector<int64_t>& shape_v, const py::handle& dtype,
                     int dist, uint64_t seed, double a, double b) {
  const Dims shape(shape_v);
  Operand o;
  if (out_h.is_none()) {
    o.host = empty_array(dtype.is_none() ? DType::f32 : init_dtype(dtype), shape);
    o.object = o.host;
    o.view = view_of(o.host, "out", /*with_16bit=*/true);
  } else {
    // The op's only array: it is its own device reference (output_operand checks type, dtype,
    // shape, writeability and self-overlap).
    const Operand ref = operand_of(out_h, "out", Elements::storage);
    o = output_operand(out_h, ref, dtype.is_none() ? ref.view.dtype : init_dtype(dtype), shape, "out");
  }
  const InitParams p = make_params(dist, seed, a, b);
  GpuStagedOutput target(o);
  const ExecContext ctx = context_of(o);
  const InitFillImpl impl = init_fill_stub(ctx.device);
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(target.target().view, p, ctx);
  }
  target.finish();
  return o.object;
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(init) {
  using namespace nk;
  m.def("init_fill", &init_fill, py::arg("out"), py::arg("shape"), py::arg("dtype"), py::arg("dist"), py::arg("seed"),
        py::arg("a"), py::arg("b"),
        "Fill `out` (or a new float32/float64/float16/bfloat16 NumPy array of `shape` and `dtype` when out is "
        "None) with Philox4x32-10 uniform (dist=0: a + b*u) or normal (dist=1: a + b*z) numbers; element i of the "
        "C-order flattening depends only on (seed, i); 16-bit: the float32 numbers rounded to nearest even. "
        "Returns the filled array.");
  m.def("philox4x32_10",
        [](std::vector<uint32_t> ctr, std::vector<uint32_t> key) {
          if (ctr.size() != 4) throw py::value_error("ctr: expected 4 words");
          if (key.size() != 2) throw py::value_error("key: expected 2 words");
          std::vector<uint32_t> out(4);
          init_kernels().philox(ctr.data(), key.data(), out.data());
          return out;
        },
        py::arg("ctr"), py::arg("key"));
}

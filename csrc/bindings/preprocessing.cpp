// Python bindings of the preprocessing ops: argument parsing and validation (once, for every
// device and array library: core/operand.hpp), then one call of the op's stub
// (drivers/preprocessing.hpp), which runs the CPU driver or the CUDA launcher with the GIL released.
// The estimators live in python/nnkernels/preprocessing.py. Results are arrays of X's library on
// X's device (statistics included: a CUDA X gives device arrays, nothing is copied to the host).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/operand.hpp"
#include "drivers/preprocessing.hpp"

namespace py = pybind11;

namespace nk {
namespace {

// A validated 2-D input of at least one row and column in canonical layout (drivers/
// preprocessing.hpp); a host array in neither C nor F order, and any non-contiguous CUDA array,
// is copied to C order. cpu_only: the op has no CUDA kernel (a CUDA X is refused, naming it).
Operand matrix_operand(const py::handle& h, const char* name, Matrix& m, const char* cpu_only = nullptr) {
  Operand x = operand_of(h, name);
  if (cpu_only && x.is_cuda())
    throw py::value_error(std::string(name) + ": " + cpu_only +
                          " runs on the CPU only (no CUDA kernel): pass a host array (NumPy array or CPU tensor)");
  if (x.view.ndim() != 2)
    throw py::value_error(std::string(name) + ": expected a 2-D array, got " + std::to_string(x.view.ndim()) + "-D");
  if (x.view.shape[0] < 1 || x.view.shape[1] < 1)
    throw py::value_error(std::string(name) + ": expected at least one row and one column");
  make_contiguous_on_gpu(x, name);
  if (!matrix_layout(x.view, m)) {
    x = contiguous_copy_of(x, name);
    matrix_layout(x.view, m);
  }
  return x;
}

// A per-column parameter vector of n values for an op on x: for a host x any real array or
// array-like (converted to float64); for a CUDA x a float64 array on x's device (a host array is
// refused: nnkernels never copies between host and device inside an op).
struct ParamVector {
  py::array host = null_array();
  Operand device;
  const double* data = nullptr;
};

ParamVector param_vector(const py::handle& h, int64_t n, const char* name, const Operand& x) {
  ParamVector p;
  const auto bad_shape = [&] {
    return py::value_error(std::string(name) + ": expected a 1-D array of " + std::to_string(n) + " values");
  };
  if (!x.is_cuda()) {
    p.host = as_float64(h, name);  // refuses non-real input (core/array.hpp)
    if (p.host.ndim() != 1 || p.host.shape(0) != n) throw bad_shape();
    p.data = static_cast<const double*>(p.host.data());
    return p;
  }
  p.device = operand_of(h, name);
  check_same_device(x, "X", p.device, name);
  if (p.device.view.dtype != DType::f64)
    throw py::type_error(std::string(name) + ": expected a float64 array on the device (the CUDA kernels read float64 "
                         "parameters), got " + dtype_name(p.device.view.dtype));
  if (p.device.view.ndim() != 1 || p.device.view.shape[0] != n) throw bad_shape();
  make_contiguous_on_gpu(p.device, name);
  p.data = p.device.view.ptr<const double>();
  return p;
}

// Column statistics (see prep_nan_col_stats' docstring). `prior` (count, mean, m2) of earlier
// data is merged first (StandardScaler.partial_fit). Returns (count, mean, m2, min, max, finite)
// with None for what `flags` does not ask for; finite is None for a CUDA X (it would need a read on
// the host: the statistics themselves show non-finite input).
py::tuple col_stats(const py::handle& xh, int flags, const py::handle& wh, const py::handle& prior) {
  Matrix m;
  Operand x = matrix_operand(xh, "X", m);
  if (flags <= 0 || flags > 15 || !(flags & 7)) throw py::value_error("flags: expected a combination of 1, 2, 4 (+8)");
  const int64_t C = m.cols, R = m.rows;
  const bool moments = (flags & (kPrepMean | kPrepMoments)) != 0;
  if (x.is_cuda() && (flags & kPrepIgnoreNan))
    throw py::value_error("X: NaN-ignoring statistics (prep_nan_col_stats) run on the CPU only (no CUDA kernel): "
                          "pass a host array, or use prep_col_stats");
  ColStatsArgs args;
  args.flags = flags;
  py::array w = null_array();
  if (!wh.is_none()) {
    if (!moments) throw py::value_error("sample_weight: only used with the moments (flags 1 or 2)");
    w = as_float64(wh, "sample_weight");
    if (w.ndim() != 1 || w.shape(0) != R)
      throw py::value_error("sample_weight: expected a 1-D array of " + std::to_string(R) + " values");
    args.weight = static_cast<const double*>(w.data());
    for (int64_t i = 0; i < R; ++i)
      if (!std::isfinite(args.weight[i])) throw py::value_error("sample_weight: expected finite values");
  }
  ParamVector pc, pm, pm2;
  if (!prior.is_none()) {
    if (!py::isinstance<py::tuple>(prior) || py::len(prior) != 3)
      throw py::type_error("prior: expected a tuple (count, mean, m2) or None");
    py::tuple t = py::reinterpret_borrow<py::tuple>(prior);
    pc = param_vector(t[0], C, "prior count", x);
    pm = param_vector(t[1], C, "prior mean", x);
    pm2 = param_vector(t[2], C, "prior m2", x);
    args.prior_count = pc.data;
    args.prior_mean = pm.data;
    args.prior_m2 = pm2.data;
  }
  const Dims col{C};
  Operand count, mean, m2, mn, mx, work;
  ColStatsOut out;
  if (moments && (flags & kPrepIgnoreNan)) out.count = (count = new_result(x, DType::f64, col)).view.ptr<double>();
  if (moments) out.mean = (mean = new_result(x, DType::f64, col)).view.ptr<double>();
  if (flags & kPrepMoments) out.m2 = (m2 = new_result(x, DType::f64, col)).view.ptr<double>();
  if (flags & kPrepMinMax) {
    out.min = (mn = new_result(x, DType::f64, col)).view.ptr<double>();
    out.max = (mx = new_result(x, DType::f64, col)).view.ptr<double>();
  }
  bool finite = true;
  if (x.is_cuda()) args.workspace = (work = new_result(x, DType::f64, Dims{col_stats_workspace(R, C)})).view.ptr<double>();
  else out.finite = &finite;
  const ExecContext ctx = context_of(x);
  const ColStatsImpl impl = col_stats_stub(ctx.device);
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(m, args, out, ctx);
  }
  const auto res = [](const Operand& o) { return o.object ? o.result() : py::object(py::none()); };
  return py::make_tuple(res(count), res(mean), res(m2), res(mn), res(mx),
                        x.is_cuda() ? py::object(py::none()) : py::object(py::bool_(finite)));
}

// A fresh result in X's memory order (C, or F for F-ordered host X: the transpose of a C array),
// placed apart from X (core/array.cpp: no 4K aliasing between X's loads and its stores).
Operand fresh_output(const Operand& x, const Matrix& m) {
  if (x.is_cuda() || !(m.rs == 1 && m.cs != 1)) return new_result(x, x.view.dtype, x.view.shape, x.view.data);
  Operand r = new_result(x, x.view.dtype, Dims{m.cols, m.rows}, x.view.data);
  r.host = r.host.attr("T");
  r.object = r.host;
  r.view = view_of(r.host, "out");
  return r;
}

// `out` of a transform of X: None gives a fresh array; else X's shape and dtype on X's device, and
// either X itself (in place) or apart from it.
Operand transform_output(const py::object& outh, const Operand& x, const Matrix& m) {
  if (outh.is_none()) return fresh_output(x, m);
  Operand o = output_operand(outh, x, x.view.dtype, x.view.shape, "out");
  if (may_overlap(o.view, m.v) && !(o.view.data == m.v.data && o.view.strides[0] == m.rs && o.view.strides[1] == m.cs))
    throw py::value_error("out: partially overlaps X");
  return o;
}

py::object affine(const py::handle& xh, const py::handle& ah, const py::handle& sh, const py::handle& ch,
                  const py::object& outh) {
  Matrix m;
  Operand x = matrix_operand(xh, "X", m);
  const ParamVector a = param_vector(ah, m.cols, "shift", x), s = param_vector(sh, m.cols, "scale", x);
  ParamVector c;
  if (!ch.is_none()) c = param_vector(ch, m.cols, "offset", x);
  const Operand o = transform_output(outh, x, m);
  GpuStagedOutput target(o);
  const ExecContext ctx = context_of(x);
  const AffineImpl impl = prep_affine_stub(ctx.device);
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(m, target.target().view, a.data, s.data, c.data, o.fresh, ctx);
  }
  target.finish();
  return o.result();
}

py::tuple normalize(const py::handle& xh, const std::string& norm, const py::object& outh) {
  Matrix m;
  Operand x = matrix_operand(xh, "X", m);
  int nt;
  if (norm == "l2") nt = kNormL2;
  else if (norm == "l1") nt = kNormL1;
  else if (norm == "max") nt = kNormMax;
  else throw py::value_error("norm: expected 'l1', 'l2' or 'max', got '" + norm + "'");
  const Operand o = transform_output(outh, x, m);
  const Operand norms = new_result(x, DType::f64, Dims{m.rows});
  GpuStagedOutput target(o);
  const ExecContext ctx = context_of(x);
  const NormalizeImpl impl = prep_normalize_stub(ctx.device);
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(m, target.target().view, nt, norms.view.ptr<double>(), o.fresh, ctx);
  }
  target.finish();
  return py::make_tuple(o.result(), norms.result());
}

py::object col_quantiles(const py::handle& xh, const std::vector<double>& qs) {
  Matrix m;
  Operand x = matrix_operand(xh, "X", m, "prep_col_quantiles");
  if (qs.empty() || qs.size() > 8) throw py::value_error("q: expected 1 to 8 percentiles");
  for (size_t k = 0; k < qs.size(); ++k) {
    if (!(qs[k] >= 0.0 && qs[k] <= 100.0)) throw py::value_error("q: percentiles must lie in [0, 100]");
    if (k && qs[k] < qs[k - 1]) throw py::value_error("q: percentiles must be sorted ascending");
  }
  const Operand res = new_result(x, DType::f64, Dims{int64_t(qs.size()), m.cols});
  const ExecContext ctx = context_of(x);
  const ColQuantilesImpl impl = col_quantiles_stub(ctx.device);
  bool finite;
  {
    py::gil_scoped_release release;
    finite = impl(m, qs.data(), int(qs.size()), res.view.ptr<double>(), ctx);
  }
  if (!finite)
    throw py::value_error("Input X contains infinity or a value too large for " +
                          std::string(m.v.dtype == DType::f32 ? "dtype('float32')." : "dtype('float64')."));
  return res.result();
}

py::tuple centered_gram(const py::handle& xh, bool float64_products) {
  const Operand x = operand_of(xh, "X");
  if (x.is_cuda())
    throw py::value_error("X: prep_centered_gram runs on the CPU only (no CUDA kernel): pass a host array (NumPy "
                          "array or CPU tensor)");
  const ArrayView& v = x.view;
  if (v.ndim() != 2)
    throw py::value_error("X: expected a 2-D array (n_samples, n_features), got " + std::to_string(v.ndim()) + "-D");
  const int64_t R = v.shape[0], C = v.shape[1];
  if (R < 1 || C < 1) throw py::value_error("X: expected at least one row and one column, got shape " + shape_str(v.shape));
  const Operand mean = new_result(x, DType::f64, Dims{C}), cov = new_result(x, DType::f64, Dims{C, C});
  const ExecContext ctx = context_of(x);
  const CenteredGramImpl impl = centered_gram_stub(ctx.device);
  {
    py::gil_scoped_release release;
    impl(v, float64_products, mean.view.ptr<double>(), cov.view.ptr<double>(), ctx);
  }
  return py::make_tuple(mean.result(), cov.result());
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(preprocessing) {
  using namespace nk;
  m.def("prep_col_stats",
        [](const py::handle& x, int flags) {
          if (flags & kPrepIgnoreNan) throw py::value_error("flags: NaN-ignoring statistics are prep_nan_col_stats");
          py::tuple t = col_stats(x, flags, py::none(), py::none());
          return py::make_tuple(t[1], t[2], t[3], t[4], t[5]);
        },
        py::arg("X"), py::arg("flags"),
        "(mean, m2, min, max, finite) of the columns of a 2-D array; flags: 1 mean, 2 mean+M2, 4 min/max; "
        "finite: X holds no NaN or infinity. Statistics are float64 arrays of X's library on X's device (None "
        "where flags do not ask for them); min/max skip NaN. For a CUDA X (CuPy, torch) nothing is copied to the "
        "host and finite is None.");
  m.def("prep_nan_col_stats",
        [](const py::handle& x, int flags, const py::handle& w, const py::handle& prior) {
          return col_stats(x, flags | kPrepIgnoreNan, w, prior);
        },
        py::arg("X"), py::arg("flags"), py::arg("sample_weight") = py::none(), py::arg("prior") = py::none(),
        "(count, mean, m2, min, max, finite) of the columns of a 2-D host array with NaN skipped (scikit-learn's "
        "scalers): count[j] = number (weight sum) of non-NaN values of column j; flags: 1 mean, 2 mean+M2, "
        "4 min/max; sample_weight: one weight per row; prior: (count, mean, m2) of earlier data, merged first; "
        "finite: X holds no infinity. CPU only.");
  m.def("prep_affine", &affine, py::arg("X"), py::arg("shift"), py::arg("scale"), py::arg("offset"),
        py::arg("out") = py::none(),
        "out = (X - shift) * scale + offset, per column, in float64 arithmetic; out None: a new array of X's "
        "library in X's memory order. For a CUDA X the parameters are float64 arrays on X's device. Returns out");
  m.def("prep_normalize", &normalize, py::arg("X"), py::arg("norm"), py::arg("out") = py::none(),
        "out = rows of X divided by their norm (0 -> 1); out None: a new array of X's library in X's memory "
        "order. Returns (out, norms), norms a float64 array on X's device");
  m.def("prep_col_quantiles", &col_quantiles, py::arg("X"), py::arg("q"),
        "percentiles (NumPy 'linear', NaN skipped as np.nanpercentile) of each column by quickselect: "
        "array (len(q), n_features); ValueError for infinite values. CPU only.");
  m.def("prep_centered_gram", &centered_gram, py::arg("X"), py::arg("float64_products") = false,
        "(mean, M) of a 2-D float32/float64 array: column means and M = (X - mean)^T (X - mean) in float64, "
        "in one blocked pass (divide by n - 1 for the covariance). CPU only.");
}

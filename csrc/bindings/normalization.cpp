// Python bindings of the normalization ops: argument parsing and validation (once, for every
// device and array library: core/operand.hpp), then one call of the op's stub
// (drivers/normalization.hpp), which runs the CPU driver or the CUDA implementation with the GIL
// released. Everything is validated before any memory is touched.
//
// Dtypes (issue 15): x (and dout, y, out, dx: x's dtype) is float32, float64, float16 or bfloat16.
// With 16-bit x, the parameter vectors (gamma, beta, running statistics) are float32 or x's dtype
// (mixed precision, as under autocast; float64 or the other 16-bit dtype refused, naming the
// argument), statistics given back in (layer-norm mean/rstd, batch-norm mean/rstd, sum_dout,
// sum_dout_xhat) are float32 or float64 and the ones returned are float32 (never rounded to 16
// bits), dgamma/dbeta come back in gamma's dtype. float32/float64 x: as before (vectors of either
// dtype, 16-bit ones refused; results in x's dtype).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/operand.hpp"
#include "drivers/normalization.hpp"

namespace py = pybind11;

namespace nk {
namespace {

int parse_activation(const py::object& a) {
  if (a.is_none()) return kNormActNone;
  if (py::isinstance<py::str>(a)) {
    const std::string s = a.cast<std::string>();
    if (s == "relu") return kNormActRelu;
    if (s == "leaky_relu") return kNormActLeakyRelu;
  }
  throw py::value_error("activation: expected None, 'relu' or 'leaky_relu', got " + std::string(py::repr(a)));
}

NormAct norm_act(const py::object& activation, double slope, bool backward) {
  const int act = parse_activation(activation);
  if (act == kNormActLeakyRelu) {
    if (!std::isfinite(slope)) throw py::value_error("negative_slope: expected a finite number");
    if (backward && slope < 0)
      throw py::value_error("negative_slope: backward from the saved output y needs negative_slope >= 0");
  }
  return NormAct{act, slope};
}

void check_eps(double eps) {
  if (!(eps >= 0) || !std::isfinite(eps)) throw py::value_error("eps: expected a finite number >= 0");
}

// An absent operand (null object). Default-initialised: a value-initialised Operand would zero
// its inline shape arrays first (a kilobyte), and small calls make several.
Operand absent() {
  Operand r;
  return r;
}

// The dtype rule of a per-channel / per-column vector.
enum class VecRule : uint8_t {
  stats,  // float32 or float64 whatever x is (mean, rstd, sums given back to an op)
  param,  // float32/float64 for float32/float64 x; float32 or x's dtype for 16-bit x
};

// A per-channel / per-column vector of length n (any stride) on main's device, or None (an
// operand with a null object; "required" refuses it). Its dtype follows `rule` for main's dtype.
Operand vec_arg(const py::object& o, const char* name, int64_t n, bool required, const Operand& main,
                const char* main_name, VecRule rule = VecRule::stats) {
  if (o.is_none() && required) throw py::value_error(std::string(name) + ": required (got None)");
  const DType xd = main.view.dtype;
  const bool half = rule == VecRule::param && is_16bit(xd);
  // built in place, returned by NRVO
  Operand v = o.is_none() ? absent() : operand_of(o, name, half ? Elements::storage : Elements::float32_64);
  if (v.object) {
    // float64 (or the other 16-bit dtype) with 16-bit x: every value would be rounded to float32 anyway
    if (half && v.view.dtype != DType::f32 && v.view.dtype != xd)
      throw py::value_error(std::string(name) + ": expected float32 or " + dtype_name(xd) + " (the dtype of x) for " +
                            dtype_name(xd) + " x, got " + dtype_name(v.view.dtype));
    if (v.view.ndim() != 1 || v.view.shape[0] != n)
      throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(n) + ",), got " +
                            shape_str(v.view.shape));
    if (v.device != main.device) check_same_device(main, main_name, v, name);
  }
  return v;
}
const ArrayView* view_or_null(const Operand& o) { return o.object ? &o.view : nullptr; }

// An array of exactly `shape` (float32 or float64; the saved layer-norm mean/rstd) on main's device.
Operand shaped_arg(const py::object& o, const char* name, const Dims& shape, const Operand& main) {
  if (o.is_none()) throw py::value_error(std::string(name) + ": required (got None)");
  Operand v = operand_of(o, name);
  if (v.view.shape != shape)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " + shape_str(v.view.shape));
  if (v.device != main.device) check_same_device(main, "x", v, name);
  return v;
}

// A secondary input (dout, y) of x's shape, dtype and device. (16-bit only next to a 16-bit x: a
// float32 x refuses it by its element type, as before 16-bit storage existed.)
Operand like_x(const py::handle& h, const char* name, const Operand& x) {
  Operand a = operand_of(h, name, is_16bit(x.view.dtype) ? Elements::storage : Elements::float32_64);
  check_same_shape(x.view, "x", a.view, name);
  check_same_dtype(x.view, "x", a.view, name);
  if (a.device != x.device) check_same_device(x, "x", a, name);
  return a;
}

// The layouts the kernels read: rows of a constant stride on the CPU (norm_rows_of; others are
// copied), C-contiguous on the GPU.
void prepare_rows(Operand& a, int first_inner, const char* name) {
  if (!a.object) return;
  if (a.is_cuda()) {
    make_contiguous_on_gpu(a, name);
    return;
  }
  int64_t rs;
  if (!norm_rows_of(a.view, first_inner, rs)) a = contiguous_copy_of(a, name);
}

// The kernels read every input element before writing the destination element at the same
// index, so an input may be the destination itself; an input that overlaps it any other way
// is read from a copy taken before anything is written.
void read_apart_from(Operand& a, const ArrayView& dst, const char* name) {
  if (a.object && may_overlap(a.view, dst) && !same_layout(a.view, dst)) a = contiguous_copy_of(a, name);
}

// Destination of a result: `out` itself when C-contiguous, else a C-contiguous temporary copied
// into it after the call (on the GPU also when stage_on_gpu(true): a kernel that reads its inputs
// again after writing, with an out that overlaps them). A new array (out None, or the temporary)
// is placed apart from the main input (empty_array).
class Dest {
 public:
  // out: the `out` argument of a result of like's dtype and shape (output_operand's checks). For
  // a CUDA out, stage_on_gpu must be called before view().
  Dest(const py::object& out, const Operand& like, const void* apart_from)
      : out_(output_operand(out, like, like.view.dtype, like.view.shape, "out", apart_from)) {
    if (out_.is_cuda()) return;
    if (out_.view.c_contiguous()) return;
    tmp_ = new_result(like, out_.view.dtype, out_.view.shape, apart_from);
    staged_ = true;
  }
  // CUDA: stage (also a contiguous out) when `always`.
  void stage_on_gpu(bool always = false) {
    if (out_.is_cuda()) gpu_.emplace(out_, always);
  }
  Dest(const Dest&) = delete;
  Dest& operator=(const Dest&) = delete;
  const Operand& out() const { return out_; }
  const ArrayView& view() const { return gpu_ ? gpu_->target().view : staged_ ? tmp_.view : out_.view; }
  // memory new to this call (its pages are first touched by the kernel)
  bool fresh() const { return staged_ ? tmp_.untouched : out_.untouched; }
  py::object finish() {
    if (gpu_) gpu_->finish();
    if (staged_) py::module_::import("numpy").attr("copyto")(out_.host_array(), tmp_.host_array());
    return out_.result();
  }

 private:
  Operand out_, tmp_;
  std::optional<GpuStagedOutput> gpu_;
  bool staged_ = false;
};

// The dtype of the statistics an op returns for x of dtype dt (mean, rstd, backward_reduce's sums):
// x's, float32 for 16-bit x.
DType stats_dtype(DType dt) { return is_16bit(dt) ? DType::f32 : dt; }
// The dtype of dgamma/dbeta: x's, gamma's for 16-bit x (float32 or x's dtype).
DType param_grad_dtype(const Operand& x, const Operand& gamma) {
  return is_16bit(x.view.dtype) ? gamma.view.dtype : x.view.dtype;
}

// The CUDA workspace of an op (float64 elements), allocated by main's library; none on the CPU.
Operand gpu_work(const Operand& main, int64_t n) {
  return main.is_cuda() ? new_result(main, DType::f64, {n > 0 ? n : 1}) : absent();
}

// Runs impl(args, ctx) on main's device with the GIL released.
template <class Stub, class Args> void call(const Stub& stub, const Args& args, const Operand& main) {
  const ExecContext ctx = context_of(main);
  const auto impl = stub(ctx.device);
  py::gil_scoped_release release;
  DeviceScope scope(ctx.device);
  impl(args, ctx);
}

// ---------------------------------------------------------------- layer norm

py::tuple layernorm_forward(const py::handle& x_in, const py::object& gamma_o, const py::object& beta_o, double eps,
                            const py::object& activation, double slope, const py::object& out) {
  Operand x = operand_of(x_in, "x", Elements::storage);
  if (x.view.ndim() < 1) throw py::value_error("x: expected at least one dimension (normalised over the last axis)");
  const int64_t d = x.view.shape.back();
  if (d == 0) throw py::value_error("x: the last axis (normalised over) is empty");
  const NormAct act = norm_act(activation, slope, false);
  check_eps(eps);
  Operand gv = vec_arg(gamma_o, "gamma", d, false, x, "x", VecRule::param);
  Operand bv = vec_arg(beta_o, "beta", d, false, x, "x", VecRule::param);
  Dest dst(out, x, x.view.data);
  dst.stage_on_gpu();
  read_apart_from(x, dst.view(), "x");
  prepare_rows(x, x.view.ndim() - 1, "x");
  const Dims sshape(x.view.shape.begin(), x.view.shape.end() - 1);
  const DType dt = stats_dtype(x.view.dtype);  // of mean, rstd and of gamma/beta as the kernels read them
  Operand mean = new_result(x, dt, sshape), rstd = new_result(x, dt, sshape);
  // CUDA: gamma and beta are converted into a workspace unless the kernel can read them as they are
  const bool convert = x.is_cuda() && !(norm_vec_usable(view_or_null(gv), dt, &dst.view()) &&
                                        norm_vec_usable(view_or_null(bv), dt, &dst.view()));
  const Operand work = convert ? gpu_work(x, norm_gpu_ln_forward_work(d)) : absent();
  call(layernorm_forward_stub,
       LayerNormForwardArgs{&x.view, view_or_null(gv), view_or_null(bv), &dst.view(), &mean.view, &rstd.view,
                            view_or_null(work), eps, act},
       x);
  return py::make_tuple(dst.finish(), mean.result(), rstd.result());
}

py::tuple layernorm_backward(const py::handle& dout_in, const py::handle& x_in, const py::object& gamma_o,
                             const py::object& mean_o, const py::object& rstd_o, const py::object& activation,
                             const py::object& y_o, double slope, const py::object& out) {
  Operand x = operand_of(x_in, "x", Elements::storage);
  if (x.view.ndim() < 1) throw py::value_error("x: expected at least one dimension (normalised over the last axis)");
  Operand dout = like_x(dout_in, "dout", x);
  const int64_t d = x.view.shape.back();
  if (d == 0) throw py::value_error("x: the last axis (normalised over) is empty");
  const NormAct act = norm_act(activation, slope, true);
  Operand gv = vec_arg(gamma_o, "gamma", d, false, x, "x", VecRule::param);
  const Dims sshape(x.view.shape.begin(), x.view.shape.end() - 1);
  Operand mean = shaped_arg(mean_o, "mean", sshape, x), rstd = shaped_arg(rstd_o, "rstd", sshape, x);
  Operand y;
  if (act.act != kNormActNone) {
    if (y_o.is_none()) throw py::value_error("y: the saved forward output is required when activation is given");
    y = like_x(y_o, "y", x);
  }
  Dest dst(out, dout, x.view.data);
  // The CUDA backward reads its inputs again after writing dx (the dgamma/dbeta pass).
  bool restage = false;
  if (dst.out().is_cuda())
    for (const Operand* in : {&dout, &x, &y, &gv, &mean, &rstd})
      restage = restage || (in->object && may_overlap(in->view, dst.out().view));
  dst.stage_on_gpu(restage);
  read_apart_from(dout, dst.view(), "dout");
  read_apart_from(x, dst.view(), "x");
  read_apart_from(y, dst.view(), "y");
  const int inner = x.view.ndim() - 1;
  prepare_rows(dout, inner, "dout");
  prepare_rows(x, inner, "x");
  prepare_rows(y, inner, "y");
  make_contiguous_on_gpu(mean, "mean");
  make_contiguous_on_gpu(rstd, "rstd");
  Operand dg, db;
  if (gv.object) {
    dg = new_result(dout, param_grad_dtype(x, gv), {d});
    db = new_result(dout, param_grad_dtype(x, gv), {d});
  }
  const Operand work = gpu_work(x, norm_gpu_ln_backward_work(x.view.size / d, d));
  call(layernorm_backward_stub,
       LayerNormBackwardArgs{&dout.view, &x.view, view_or_null(y), view_or_null(gv), &mean.view, &rstd.view,
                             &dst.view(), view_or_null(dg), view_or_null(db), view_or_null(work), act},
       dout);
  py::object dx = dst.finish();
  if (!gv.object) return py::make_tuple(dx, py::none(), py::none());
  return py::make_tuple(dx, dg.result(), db.result());
}

// ---------------------------------------------------------------- batch norm

Operand bn_input(const py::handle& x_in) {
  Operand x = operand_of(x_in, "x", Elements::storage);
  if (x.view.ndim() < 2)
    throw py::value_error("x: expected an array of shape (N, C) or (N, C, *spatial), got shape " +
                          shape_str(x.view.shape));
  return x;
}
int64_t channels_of(const Operand& x) { return x.view.shape[1]; }
int64_t spatial_of(const Operand& x) {
  int64_t s = 1;
  for (int i = 2; i < x.view.ndim(); ++i) s *= x.view.shape[size_t(i)];
  return s;
}
int64_t count_of(const Operand& x) { return x.view.shape[0] * spatial_of(x); }  // values per channel
int64_t bn_work_size(const Operand& x) { return norm_gpu_bn_work(x.view.shape[0], channels_of(x), spatial_of(x)); }

// Training mode normalises with the batch statistics: like PyTorch, a channel needs more than
// one value (with one, y = beta whatever x is and the unbiased running variance is undefined).
// Shared by every entry point that normalises in training mode (batchnorm_forward, the
// BatchNorm classes, nn.BatchNorm's synchronised path through batchnorm_check_training_count).
void check_training_count(int64_t count, int64_t C, const Dims& shape) {
  if (count > 1 || C == 0) return;
  if (count == 0)
    throw py::value_error("x: training mode needs at least one value per channel (N * spatial size is 0), "
                          "got input size " + shape_str(shape));
  throw py::value_error("x: expected more than 1 value per channel when training, got input size " +
                        shape_str(shape));
}

bool is_array_object(const py::handle& h) { return py::isinstance<py::array>(h) || library_of(h) != Library::numpy; }

// Running statistics are updated in place: each must be a writeable array of its own (NumPy,
// a tensor, a CuPy array: a list or another array-like would be converted to a temporary and
// the update lost), apart from the other one (updated twice otherwise) and from every other
// array of the call (the update would read a written y, or write into an input). `arrays`:
// (operand, name) of the other operands, absent ones with a null object.
void check_running_stats(const py::object& rm_o, const Operand& rm, const py::object& rv_o, const Operand& rv,
                         std::initializer_list<std::pair<const Operand*, const char*>> arrays) {
  const std::pair<const py::object*, const Operand*> stats[2] = {{&rm_o, &rm}, {&rv_o, &rv}};
  const char* names[2] = {"running_mean", "running_var"};
  for (int k = 0; k < 2; ++k) {
    const char* name = names[k];
    if (!is_array_object(*stats[k].first))
      throw py::type_error(std::string(name) + ": expected a writeable NumPy array, PyTorch tensor or CuPy array "
                           "(updated in place in training mode), got " +
                           std::string(py::str(py::type::of(*stats[k].first).attr("__name__"))));
    const ArrayView& v = stats[k].second->view;
    if (!v.writeable) throw py::value_error(std::string(name) + ": array is read-only (updated in place in training mode)");
    for (const auto& a : arrays)
      if (a.first->object && may_overlap(v, a.first->view))
        throw py::value_error(std::string(name) + ": shares memory with " + a.second +
                              " (updated in place after " + a.second + " is read or written)");
  }
  if (may_overlap(rm.view, rv.view))
    throw py::value_error("running_var: shares memory with running_mean (each is updated in place)");
}

py::tuple batchnorm_forward(const py::handle& x_in, const py::object& gamma_o, const py::object& beta_o, bool training,
                            const py::object& rm_o, const py::object& rv_o, double momentum, double eps,
                            bool unbiased, const py::object& activation, double slope, const py::object& out) {
  Operand x = bn_input(x_in);
  const int64_t C = channels_of(x);
  const NormAct act = norm_act(activation, slope, false);
  check_eps(eps);
  if (!std::isfinite(momentum)) throw py::value_error("momentum: expected a finite number");
  // 16-bit x: gamma, beta and the running statistics in float32 or x's dtype
  Operand gv = vec_arg(gamma_o, "gamma", C, false, x, "x", VecRule::param);
  Operand bv = vec_arg(beta_o, "beta", C, false, x, "x", VecRule::param);
  Operand rm = vec_arg(rm_o, "running_mean", C, !training, x, "x", VecRule::param);
  Operand rv = vec_arg(rv_o, "running_var", C, !training, x, "x", VecRule::param);
  if (bool(rm.object) != bool(rv.object))
    throw py::value_error(rm.object ? "running_var: required when running_mean is given"
                                    : "running_mean: required when running_var is given");
  if (training) check_training_count(count_of(x), C, x.view.shape);
  Dest dst(out, x, x.view.data);
  dst.stage_on_gpu();
  if (training && rm.object)
    check_running_stats(rm_o, rm, rv_o, rv, {{&x, "x"}, {&dst.out(), "out"}, {&gv, "gamma"}, {&bv, "beta"}});
  read_apart_from(x, dst.view(), "x");
  prepare_rows(x, 1, "x");
  Operand mean = new_result(x, stats_dtype(x.view.dtype), {C}), rstd = new_result(x, stats_dtype(x.view.dtype), {C});
  const Operand work = gpu_work(x, bn_work_size(x));
  call(batchnorm_forward_stub,
       BatchNormForwardArgs{&x.view, view_or_null(gv), view_or_null(bv), view_or_null(rm), view_or_null(rv),
                            &dst.view(), &mean.view, &rstd.view, view_or_null(work), training, unbiased, dst.fresh(),
                            momentum, eps, act},
       x);
  return py::make_tuple(dst.finish(), mean.result(), rstd.result());
}

py::tuple batchnorm_stats(const py::handle& x_in) {
  Operand x = bn_input(x_in);
  prepare_rows(x, 1, "x");
  const int64_t C = channels_of(x);
  Operand mean = new_result(x, DType::f64, {C}), m2 = new_result(x, DType::f64, {C});
  const Operand work = gpu_work(x, bn_work_size(x));
  call(batchnorm_stats_stub, BatchNormStatsArgs{&x.view, &mean.view, &m2.view, view_or_null(work)}, x);
  return py::make_tuple(py::int_(count_of(x)), mean.result(), m2.result());
}

// A merge input: real values of any dtype (integer or float). Host statistics (an all-gather's
// result) become a C-contiguous float64 NumPy array (as_float64) whose values the binding checks
// before merging; device statistics stay on the device (another dtype is converted there by the
// array's library), their values unchecked: the kernel poisons what it cannot merge (NaN).
struct MergeInput {
  Operand given;  // the argument as passed (its library and device: the results')
  Operand f64;    // float64 view of its values
};
MergeInput merge_input(const py::handle& h, const char* name) {
  MergeInput m;
  m.given = operand_of(h, name, Elements::real);
  if (!m.given.is_cuda()) {
    m.f64 = operand_of(as_float64(m.given.host_array(), name), name);
    return m;
  }
  const char k = m.given.kind;
  if (k != 'f' && k != 'i' && k != 'u') {  // as_float64's refusal (tensors keep a NumPy descriptor, CuPy arrays not)
    std::string dt = m.given.descr ? std::string(py::str(py::handle(m.given.descr)))
                                   : std::string(py::str(m.given.object.attr("dtype")));
    if (dt.rfind("torch.", 0) == 0) dt = dt.substr(6);
    throw py::type_error(std::string(name) + ": expected a real-valued numeric array, got dtype " + dt);
  }
  m.f64 = k == 'f' && m.given.itemsize == 8 ? m.given : device_float64_copy(m.given, name);
  return m;
}

py::tuple batchnorm_merge_stats(const py::handle& counts_in, const py::handle& means_in, const py::handle& m2s_in) {
  const MergeInput means = merge_input(means_in, "means"), m2s = merge_input(m2s_in, "m2s");
  const MergeInput counts = merge_input(counts_in, "counts");
  check_same_device(means.given, "means", m2s.given, "m2s");
  check_same_device(means.given, "means", counts.given, "counts");
  // the shapes as given (as_float64's host copy of a 0-d array is 1-d; the device keeps it 0-d)
  const Dims& shape = means.given.view.shape;
  if (shape.size() != 2) throw py::value_error("means: expected shape (P, C), got " + shape_str(shape));
  const Dims &m2_shape = m2s.given.view.shape, &c_shape = counts.given.view.shape;
  if (m2_shape != shape)
    throw py::value_error("m2s: expected the shape of means " + shape_str(shape) + ", got " + shape_str(m2_shape));
  const int64_t P = shape[0], C = shape[1];
  const bool per_channel = c_shape == shape;
  if (!per_channel && c_shape != Dims{P})
    throw py::value_error("counts: expected shape (" + std::to_string(P) + ",) or " + shape_str(shape) + ", got " +
                          shape_str(c_shape));
  if (P == 0) throw py::value_error("counts: expected statistics of at least one part, got P = 0");
  const bool on_host = !means.given.is_cuda();
  if (on_host) {  // host values are checked before anything is merged (C-contiguous float64 here)
    const double* cp = counts.f64.view.ptr<const double>();
    const double* qp = m2s.f64.view.ptr<const double>();
    const int64_t nc = per_channel ? P * C : P;
    for (int64_t i = 0; i < nc; ++i)
      if (!(cp[i] >= 0) || !std::isfinite(cp[i]))
        throw py::value_error("counts: expected finite non-negative counts, got " + std::string(py::str(py::float_(cp[i]))));
    // A sum of squared deviations is never negative (NaN, from NaN data, propagates as it is).
    for (int64_t i = 0; i < P * C; ++i)
      if (qp[i] < 0)
        throw py::value_error("m2s: expected non-negative sums of squared deviations, got " +
                              std::string(py::str(py::float_(qp[i]))) + " at index " + std::to_string(i));
  }
  Operand mean = new_result(means.given, DType::f64, {C}), m2 = new_result(means.given, DType::f64, {C});
  Operand count, total;
  if (per_channel)
    count = new_result(means.given, DType::f64, {C});
  else
    total = new_result(means.given, DType::f64, Dims{});
  call(batchnorm_merge_stats_stub,
       BatchNormMergeArgs{&counts.f64.view, &means.f64.view, &m2s.f64.view, view_or_null(count), &mean.view, &m2.view,
                          view_or_null(total)},
       means.f64);
  py::object n;
  if (per_channel)
    n = count.result();
  else if (on_host)
    n = py::int_(std::llround(*total.view.ptr<const double>()));  // host statistics: the count as an int
  else
    n = total.result();  // a 0-d float64 array on the device (reading it would synchronise)
  return py::make_tuple(n, mean.result(), m2.result());
}

py::object batchnorm_normalize(const py::handle& x_in, const py::object& mean_o, const py::object& rstd_o,
                               const py::object& gamma_o, const py::object& beta_o, const py::object& activation,
                               double slope, const py::object& out) {
  Operand x = bn_input(x_in);
  const int64_t C = channels_of(x);
  const NormAct act = norm_act(activation, slope, false);
  Operand mv = vec_arg(mean_o, "mean", C, true, x, "x"), rv = vec_arg(rstd_o, "rstd", C, true, x, "x");
  Operand gv = vec_arg(gamma_o, "gamma", C, false, x, "x", VecRule::param);
  Operand bv = vec_arg(beta_o, "beta", C, false, x, "x", VecRule::param);
  Dest dst(out, x, x.view.data);
  dst.stage_on_gpu();
  read_apart_from(x, dst.view(), "x");
  prepare_rows(x, 1, "x");
  const Operand work = gpu_work(x, bn_work_size(x));
  call(batchnorm_normalize_stub,
       BatchNormNormalizeArgs{&x.view, &mv.view, &rv.view, view_or_null(gv), view_or_null(bv), &dst.view(),
                              view_or_null(work), dst.fresh(), act},
       x);
  return dst.finish();
}

// The inputs shared by the backward entry points: x, dout (main: the results follow it) and
// the saved output y of a fused activation.
struct BwdInputs {
  Operand x, dout, y;
  NormAct act;
};
BwdInputs bwd_inputs(const py::handle& dout_in, const py::handle& x_in, const py::object& activation,
                     const py::object& y_o, double slope) {
  BwdInputs b;
  b.x = bn_input(x_in);
  b.dout = like_x(dout_in, "dout", b.x);
  b.act = norm_act(activation, slope, true);
  if (b.act.act != kNormActNone) {
    if (y_o.is_none()) throw py::value_error("y: the saved forward output is required when activation is given");
    b.y = like_x(y_o, "y", b.x);
  }
  return b;
}
void bwd_rows(BwdInputs& b) {
  prepare_rows(b.dout, 1, "dout");
  prepare_rows(b.x, 1, "x");
  prepare_rows(b.y, 1, "y");
}

py::tuple batchnorm_backward(const py::handle& dout_in, const py::handle& x_in, const py::object& gamma_o,
                             const py::object& mean_o, const py::object& rstd_o, const py::object& activation,
                             const py::object& y_o, double slope, const py::object& out) {
  BwdInputs b = bwd_inputs(dout_in, x_in, activation, y_o, slope);
  const int64_t C = channels_of(b.x);
  Operand gv = vec_arg(gamma_o, "gamma", C, false, b.x, "x", VecRule::param);
  Operand mv = vec_arg(mean_o, "mean", C, true, b.x, "x"), rv = vec_arg(rstd_o, "rstd", C, true, b.x, "x");
  Dest dst(out, b.dout, b.x.view.data);
  dst.stage_on_gpu();
  read_apart_from(b.dout, dst.view(), "dout");
  read_apart_from(b.x, dst.view(), "x");
  read_apart_from(b.y, dst.view(), "y");
  bwd_rows(b);
  Operand dg, db;
  if (gv.object) {
    dg = new_result(b.dout, param_grad_dtype(b.x, gv), {C});
    db = new_result(b.dout, param_grad_dtype(b.x, gv), {C});
  }
  const Operand work = gpu_work(b.x, bn_work_size(b.x));
  call(batchnorm_backward_stub,
       BatchNormBackwardArgs{&b.dout.view, &b.x.view, view_or_null(b.y), view_or_null(gv), &mv.view, &rv.view,
                             &dst.view(), view_or_null(dg), view_or_null(db), view_or_null(work), dst.fresh(), b.act},
       b.dout);
  py::object dx = dst.finish();
  if (!gv.object) return py::make_tuple(dx, py::none(), py::none());
  return py::make_tuple(dx, dg.result(), db.result());
}

py::tuple batchnorm_backward_reduce(const py::handle& dout_in, const py::handle& x_in, const py::object& mean_o,
                                    const py::object& rstd_o, const py::object& activation, const py::object& y_o,
                                    double slope) {
  BwdInputs b = bwd_inputs(dout_in, x_in, activation, y_o, slope);
  const int64_t C = channels_of(b.x);
  Operand mv = vec_arg(mean_o, "mean", C, true, b.x, "x"), rv = vec_arg(rstd_o, "rstd", C, true, b.x, "x");
  bwd_rows(b);
  // the sums to all-reduce: x's dtype, float32 for 16-bit x (never rounded to 16 bits before the reduction)
  const DType sdt = stats_dtype(b.x.view.dtype);
  Operand sg = new_result(b.dout, sdt, {C}), sgx = new_result(b.dout, sdt, {C});
  const Operand work = gpu_work(b.x, bn_work_size(b.x));
  call(batchnorm_backward_reduce_stub,
       BatchNormReduceArgs{&b.dout.view, &b.x.view, view_or_null(b.y), &mv.view, &rv.view, &sg.view, &sgx.view,
                           view_or_null(work), b.act},
       b.dout);
  return py::make_tuple(sg.result(), sgx.result());
}

py::object batchnorm_backward_elemt(const py::handle& dout_in, const py::handle& x_in, const py::object& gamma_o,
                                    const py::object& mean_o, const py::object& rstd_o, const py::object& sg_o,
                                    const py::object& sgx_o, const py::object& count_o, const py::object& activation,
                                    const py::object& y_o, double slope) {
  BwdInputs b = bwd_inputs(dout_in, x_in, activation, y_o, slope);
  const int64_t C = channels_of(b.x);
  Operand gv = vec_arg(gamma_o, "gamma", C, false, b.x, "x", VecRule::param);
  Operand mv = vec_arg(mean_o, "mean", C, true, b.x, "x"), rv = vec_arg(rstd_o, "rstd", C, true, b.x, "x");
  Operand sv = vec_arg(sg_o, "sum_dout", C, true, b.x, "x"), xv = vec_arg(sgx_o, "sum_dout_xhat", C, true, b.x, "x");
  py::module_ np = py::module_::import("numpy");
  if (py::isinstance<py::bool_>(count_o) || (!py::isinstance(count_o, np.attr("integer")) && !py::isinstance<py::int_>(count_o)))
    throw py::type_error("count: expected an integer (the global number of values per channel)");
  const long long count = count_o.cast<long long>();
  if (count < 1) throw py::value_error("count: expected a positive integer, got " + std::to_string(count));
  bwd_rows(b);
  Operand dx = new_result(b.dout, b.x.view.dtype, b.x.view.shape);
  const Operand work = gpu_work(b.x, bn_work_size(b.x));
  call(batchnorm_backward_elemt_stub,
       BatchNormElemtArgs{&b.dout.view, &b.x.view, view_or_null(b.y), view_or_null(gv), &mv.view, &rv.view, &sv.view,
                          &xv.view, &dx.view, view_or_null(work), double(count), b.act},
       b.dout);
  return dx.result();
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(normalization) {
  using namespace nk;
  // Scalars arrive as Python objects so that a wrong type is a TypeError naming the argument
  // (pybind11's own conversion error lists the overloads instead).
  const auto real = [](const py::handle& h, const char* name) { return finite_real(h, name); };
  m.def("layernorm_forward",
        [real](py::handle x, py::object gamma, py::object beta, py::handle eps, py::object act, py::handle slope,
               py::object out) {
          return layernorm_forward(x, gamma, beta, real(eps, "eps"), act, real(slope, "negative_slope"), out);
        },
        py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"), py::arg("activation"),
        py::arg("negative_slope"), py::arg("out"));
  m.def("layernorm_backward",
        [real](py::handle dout, py::handle x, py::object gamma, py::object mean, py::object rstd, py::object act,
               py::object y, py::handle slope, py::object out) {
          return layernorm_backward(dout, x, gamma, mean, rstd, act, y, real(slope, "negative_slope"), out);
        },
        py::arg("dout"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"), py::arg("activation"),
        py::arg("y"), py::arg("negative_slope"), py::arg("out"));
  m.def("batchnorm_forward",
        [real](py::handle x, py::object gamma, py::object beta, bool training, py::object rm, py::object rv,
               py::handle momentum, py::handle eps, bool unbiased, py::object act, py::handle slope, py::object out) {
          return batchnorm_forward(x, gamma, beta, training, rm, rv, real(momentum, "momentum"), real(eps, "eps"),
                                   unbiased, act, real(slope, "negative_slope"), out);
        },
        py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("training"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("momentum"), py::arg("eps"), py::arg("unbiased_running_var"),
        py::arg("activation"), py::arg("negative_slope"), py::arg("out"));
  m.def("batchnorm_backward",
        [real](py::handle dout, py::handle x, py::object gamma, py::object mean, py::object rstd, py::object act,
               py::object y, py::handle slope, py::object out) {
          return batchnorm_backward(dout, x, gamma, mean, rstd, act, y, real(slope, "negative_slope"), out);
        },
        py::arg("dout"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"), py::arg("activation"),
        py::arg("y"), py::arg("negative_slope"), py::arg("out"));
  m.def("batchnorm_stats", &batchnorm_stats, py::arg("x"));
  m.def("batchnorm_merge_stats", &batchnorm_merge_stats, py::arg("counts"), py::arg("means"), py::arg("m2s"));
  m.def(
      "batchnorm_check_training_count",
      [](const std::vector<int64_t>& shape, long long count) {
        if (shape.size() < 2)
          throw py::value_error("x: expected an array of shape (N, C) or (N, C, *spatial), got shape " +
                                shape_str(shape));
        check_training_count(count, shape[1], shape);
      },
      py::arg("shape"), py::arg("count"),
      "Raise the ValueError of batchnorm_forward(training=True) when `count` (the number of values per channel "
      "that an x of this shape is normalised over, e.g. the global count of synchronised batch norm) is not "
      "more than 1.");
  m.def("batchnorm_normalize",
        [real](py::handle x, py::object mean, py::object rstd, py::object gamma, py::object beta, py::object act,
               py::handle slope, py::object out) {
          return batchnorm_normalize(x, mean, rstd, gamma, beta, act, real(slope, "negative_slope"), out);
        },
        py::arg("x"), py::arg("mean"), py::arg("rstd"), py::arg("gamma"), py::arg("beta"), py::arg("activation"),
        py::arg("negative_slope"), py::arg("out"));
  m.def("batchnorm_backward_reduce",
        [real](py::handle dout, py::handle x, py::object mean, py::object rstd, py::object act, py::object y,
               py::handle slope) {
          return batchnorm_backward_reduce(dout, x, mean, rstd, act, y, real(slope, "negative_slope"));
        },
        py::arg("dout"), py::arg("x"), py::arg("mean"), py::arg("rstd"), py::arg("activation"), py::arg("y"),
        py::arg("negative_slope"));
  m.def("batchnorm_backward_elemt",
        [real](py::handle dout, py::handle x, py::object gamma, py::object mean, py::object rstd, py::object sg,
               py::object sgx, py::object count, py::object act, py::object y, py::handle slope) {
          return batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sg, sgx, count, act, y,
                                          real(slope, "negative_slope"));
        },
        py::arg("dout"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"), py::arg("sum_dout"),
        py::arg("sum_dout_xhat"), py::arg("count"), py::arg("activation"), py::arg("y"), py::arg("negative_slope"));
}

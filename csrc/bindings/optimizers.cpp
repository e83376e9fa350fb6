// Python bindings of the optimizer ops (multi-tensor apply): argument parsing and validation
// (once, for every device and array library), then one call of the op's stub
// (drivers/optimizers.hpp: the CPU driver or the CUDA launcher) with the GIL released.
// Every array argument is one array or a list of arrays: NumPy arrays, torch tensors (CPU ones
// read and written in place, nn.Parameter leaves included), CuPy arrays, other DLPack
// producers; all on one device. Parameters and gradients are float32, float64, float16 or bfloat16
// (16-bit: float32 states or states of their dtype, a float32 master copy, stochastic rounding;
// issue 15). Everything is validated first (list lengths, dtypes, shapes,
// C-contiguity, writeability, device, memory overlap between an updated array and any other
// operand); only then is memory touched, so a refused call changes nothing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/module.hpp"
#include "core/operand.hpp"
#include "drivers/optimizers.hpp"

namespace py = pybind11;

namespace nk {
namespace {

// ----------------------------------------------------------------------------- scalars
double real_arg(py::handle h, const char* name) {
  PyObject* o = h.ptr();
  if (PyFloat_Check(o)) return PyFloat_AS_DOUBLE(o);
  if (PyBool_Check(o) || !PyNumber_Check(o))
    throw py::type_error(std::string(name) + ": expected a real number, got " + Py_TYPE(o)->tp_name);
  const double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + ": expected a real number, got " + Py_TYPE(o)->tp_name);
  }
  return v;
}

// lo <= v (or lo < v when open_lo) and v <= hi (v < hi when open_hi), finite.
double ranged(py::handle h, const char* name, double lo, double hi, bool open_hi, const char* what) {
  const double v = real_arg(h, name);
  if (!std::isfinite(v) || v < lo || v > hi || (open_hi && v == hi))
    throw py::value_error(std::string(name) + ": expected " + what + ", got " + std::string(py::str(py::float_(v))));
  return v;
}
double nonneg(py::handle h, const char* name) { return ranged(h, name, 0.0, HUGE_VAL, false, "a finite number >= 0"); }
bool flag_arg(py::handle h, const char* name) {
  const int r = PyObject_IsTrue(h.ptr());
  if (r < 0) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + ": expected a bool");
  }
  return r == 1;
}
int64_t step_arg(py::handle h) {
  PyObject* o = h.ptr();
  if (PyBool_Check(o) || PyFloat_Check(o) || !PyIndex_Check(o))
    throw py::type_error(std::string("step: expected an int (the 1-based step count), got ") + Py_TYPE(o)->tp_name);
  const long long v = PyLong_AsLongLong(py::reinterpret_steal<py::object>(PyNumber_Index(o)).ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("step: integer out of range");
  }
  if (v < 1) throw py::value_error("step: expected an int >= 1 (the 1-based step count), got " + std::to_string(v));
  return int64_t(v);
}

// ----------------------------------------------------------------------------- arrays
// What an operand is to the update, for its dtype: the parameters (their dtype selects the kernel),
// arrays of the params' dtype (gradients; the params an EMA averages are kParamRole), states (the
// params' dtype, or float32 for 16-bit params: all states of one tensor alike), the float32 master
// copy of 16-bit params.
enum Role : int { kParamRole = 0, kSameAsParam, kState, kMaster };

struct ListArg {
  const char* name;
  py::handle arg;
  bool write;  // updated in place
  Role role = kSameAsParam;
};

// "grads[3]" for entry 3 of a list, "grads" for a single array (built only for messages).
std::string item_name(const ListArg& a, bool list, size_t i) {
  return list ? std::string(a.name) + "[" + std::to_string(i) + "]" : std::string(a.name);
}

std::string shape_str(int nd, const int64_t* d) { return nk::shape_str(Dims(d, d + nd)); }

// An array object of any library (not a list or a scalar): library_of falls back to NumPy only
// for objects that are neither ndarrays nor tensors / DLPack / CUDA-array producers.
bool is_array(PyObject* o) { return py::detail::npy_api::get().PyArray_Check_(o) || library_of(o) != Library::numpy; }

// The Python side of one call: the TensorList the drivers run on, and what keeps its memory alive.
struct Parsed {
  TensorList list;
  // A reference to every array taken from a list: the kernels run without the GIL, and another
  // thread may meanwhile empty the list (dropping the list's references). (The arguments
  // themselves are held by the caller for the whole call.)
  std::vector<py::object> owned;
  // The non-NumPy entries (each holds its array, hence the memory, for the call); pointers: the
  // Items point into them, and an empty vector allocates nothing (NumPy calls).
  std::vector<std::unique_ptr<Operand>> tensors;
  const Operand* main = nullptr;  // the first entry when it is not a NumPy array (device, library, stream)
  bool is_list[kOptimMaxOperands] = {};
};

// One array -> [it]; list/tuple -> its items (each one owned, see Parsed::owned).
void collect(const ListArg& a, std::vector<PyObject*>& out, bool& is_list, std::vector<py::object>& owned) {
  PyObject* o = a.arg.ptr();
  out.clear();
  if (PyList_Check(o) || PyTuple_Check(o)) {
    is_list = true;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** items = PySequence_Fast_ITEMS(o);
    out.assign(items, items + n);
    if (PyList_Check(o))
      for (Py_ssize_t i = 0; i < n; ++i) owned.push_back(py::reinterpret_borrow<py::object>(items[i]));
    return;
  }
  if (is_array(o)) {
    is_list = false;
    out.push_back(o);
    return;
  }
  throw py::type_error(std::string(a.name) + ": expected an array or a list of arrays, got " +
                       (o == Py_None ? std::string("None") : std::string(Py_TYPE(o)->tp_name)));
}

// What the checks need of one entry (dims: the array's own shape, alive for the call).
struct Item {
  void* data = nullptr;
  int64_t size = 1;
  const int64_t* dims = nullptr;
  int nd = 0;
  DType dt = DType::f32;
  Device device;
};

[[noreturn]] void refuse_strided(const std::string& nm) {
  throw py::value_error(nm + ": expected a C-contiguous array (strided views are refused: the update is in place "
                             "over one flat buffer); pass np.ascontiguousarray(...) or tensor.contiguous() and keep "
                             "that array");
}

// Checks one entry: an array of float32/float64/float16/bfloat16, native byte order, C-contiguous, aligned,
// writeable when updated. NumPy arrays are read through their header (no Operand: lists of
// hundreds of small tensors are common); other libraries through core's Operand.
Item inspect(PyObject* o, const ListArg& a, bool list, size_t t, Parsed& P) {
  namespace d = py::detail;
  Item it;
  if (d::npy_api::get().PyArray_Check_(o)) {
    static_assert(sizeof(py::ssize_t) == sizeof(int64_t), "NumPy dimensions are read as int64");
    const auto* arr = d::array_proxy(o);
    const auto* desc = d::array_descriptor_proxy(arr->descr);
    if (desc->type_num == d::npy_api::NPY_FLOAT_) it.dt = DType::f32;
    else if (desc->type_num == d::npy_api::NPY_DOUBLE_) it.dt = DType::f64;
    else it.dt = float_dtype(py::reinterpret_borrow<py::array>(o), item_name(a, list, t).c_str(), /*with_16bit=*/true);
    if (desc->byteorder == '>') throw py::type_error(item_name(a, list, t) + ": expected native byte order");
    if (!(arr->flags & d::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) refuse_strided(item_name(a, list, t));
    if (!(arr->flags & d::npy_api::NPY_ARRAY_ALIGNED_)) throw py::value_error(item_name(a, list, t) + ": array data is not aligned");
    if (a.write && !(arr->flags & d::npy_api::NPY_ARRAY_WRITEABLE_))
      throw py::value_error(item_name(a, list, t) + ": array is read-only");
    it.data = arr->data;
    it.nd = arr->nd;
    it.dims = reinterpret_cast<const int64_t*>(arr->dimensions);
    for (int k = 0; k < it.nd; ++k) it.size *= it.dims[k];
    return it;
  }
  const std::string nm = item_name(a, list, t);
  if (!is_array(o)) throw py::type_error(nm + ": expected an array (NumPy, torch tensor, CuPy), got " + Py_TYPE(o)->tp_name);
  P.tensors.push_back(std::make_unique<Operand>(operand_of(o, nm.c_str(), Elements::storage)));  // dtype, alignment
  const Operand& op = *P.tensors.back();
  if (op.view.size != 0 && !op.view.c_contiguous()) refuse_strided(nm);
  if (a.write && !op.view.writeable) throw py::value_error(nm + ": array is read-only");
  if (a.write && op.library == Library::torch && op.object.ptr() != o)  // operand_of resolved a lazy negation
    throw py::value_error(nm + ": a lazily negated tensor (is_neg()) cannot be updated in place; pass t.resolve_neg()");
  it.data = op.view.data;
  it.size = op.view.size;
  it.nd = op.view.ndim();
  it.dims = op.view.shape.begin();
  it.dt = op.view.dtype;
  it.device = op.device;
  return it;
}

// The dtype rules of the roles (ListArg::role) for tensor t, whose operands have dtypes dts[0..nops). The
// names are built only for a message (this runs for every tensor of every call).
void check_dtypes(const ListArg* args, int nops, const Parsed& P, size_t t, const DType* dts, int pk, bool has_master) {
  const DType pdt = dts[pk];
  const bool half = is_16bit(pdt);
  auto name = [&](int k) { return item_name(args[k], P.is_list[k], t); };
  int first_state = -1;
  for (int k = 0; k < nops; ++k) {
    const DType dt = dts[k];
    switch (args[k].role) {
      case kParamRole: break;
      case kSameAsParam:
        if (dt != pdt)
          throw py::type_error(name(k) + ": expected the dtype of " + name(pk) + " (" + dtype_name(pdt) + "), got " +
                               dtype_name(dt));
        break;
      case kState:
        if (first_state >= 0) {
          const DType fs = dts[first_state];
          if (dt != fs)
            throw py::type_error(name(k) + ": expected the dtype of " + name(first_state) + " (" + dtype_name(fs) +
                                 "; the states of one parameter share a dtype), got " + dtype_name(dt));
        } else if (dt != pdt && !(half && dt == DType::f32)) {
          throw py::type_error(name(k) + ": expected the dtype of " + name(pk) + " (" + dtype_name(pdt) + ")" +
                               (half ? " or float32" : "") + ", got " + dtype_name(dt));
        } else if (has_master && dt != DType::f32) {
          throw py::type_error(name(k) + ": expected float32 with master_params (the master copy's update runs in "
                                         "float32), got " + dtype_name(dt));
        }
        if (first_state < 0) first_state = k;
        break;
      case kMaster:
        if (!half)
          throw py::type_error(name(k) + ": master copies are for float16/bfloat16 params, " + name(pk) + " is " +
                               dtype_name(pdt));
        if (dt != DType::f32)
          throw py::type_error(name(k) + ": expected a float32 array (the master copy), got " + dtype_name(dt));
        break;
    }
  }
}

// Validates every operand of every tensor into P.list (operand k of tensor t at slot t * nops + k).
// Throws before any write.
void parse(const ListArg* args, int nops, Parsed& P) {
  std::vector<PyObject*> objs[kOptimMaxOperands];
  size_t listed = 0;
  for (int k = 0; k < nops; ++k)
    if (PyList_Check(args[k].arg.ptr())) listed += size_t(PyList_GET_SIZE(args[k].arg.ptr()));
  P.owned.reserve(listed);
  for (int k = 0; k < nops; ++k) collect(args[k], objs[k], P.is_list[k], P.owned);
  const size_t T = objs[0].size();
  for (int k = 1; k < nops; ++k)
    if (objs[k].size() != T)
      throw py::value_error(std::string(args[k].name) + ": expected " + std::to_string(T) + " array" +
                            (T == 1 ? "" : "s") + " (one per entry of " + args[0].name + "), got " +
                            std::to_string(objs[k].size()));
  TensorList& L = P.list;
  L.nops = nops;
  bool has_master = false;
  for (int k = nops - 1; k >= 0; --k) {
    if (args[k].role == kParamRole) L.param_op = k;
    if (args[k].role == kState) L.state_op = k;
    has_master = has_master || args[k].role == kMaster;
  }
  L.data.resize(T * size_t(nops));
  L.size.resize(T);
  L.dtype.resize(T);
  Device device;
  Item ref;  // operand 0 of the tensor: the shape every other operand must have
  DType dts[kOptimMaxOperands];
  for (size_t t = 0; t < T; ++t) {
    for (int k = 0; k < nops; ++k) {
      const size_t before = P.tensors.size();
      const Item it = inspect(objs[k][t], args[k], P.is_list[k], t, P);
      if (t == 0 && k == 0) {
        device = it.device;
        if (P.tensors.size() > before) P.main = P.tensors.back().get();
      } else if (it.device != device) {
        Operand first, other;  // only their devices: check_same_device's message
        first.device = device;
        other.device = it.device;
        const std::string fn = item_name(args[0], P.is_list[0], 0), nm = item_name(args[k], P.is_list[k], t);
        check_same_device(first, fn.c_str(), other, nm.c_str());
      }
      if (k == 0) {
        ref = it;
      } else {
        if (it.nd != ref.nd || !std::equal(it.dims, it.dims + it.nd, ref.dims))
          throw py::value_error(item_name(args[k], P.is_list[k], t) + ": expected the shape of " +
                                item_name(args[0], P.is_list[0], t) + " " + shape_str(ref.nd, ref.dims) +
                                ", got " + shape_str(it.nd, it.dims));
      }
      dts[k] = it.dt;
      L.data[t * size_t(nops) + size_t(k)] = it.data;
    }
    const DType pdt = dts[L.param_op];
    bool uniform = !has_master;
    for (int k = 0; k < nops; ++k) uniform = uniform && dts[k] == pdt;
    if (!uniform) {  // the role rules; per-operand dtypes from here on (earlier tensors: their params')
      check_dtypes(args, nops, P, t, dts, L.param_op, has_master);
      if (L.op_dtype.empty()) {
        L.op_dtype.resize(T * size_t(nops));
        for (size_t u = 0; u < t; ++u)
          for (int k = 0; k < nops; ++k) L.op_dtype[u * size_t(nops) + size_t(k)] = L.dtype[u];
      }
    }
    if (!L.op_dtype.empty())
      for (int k = 0; k < nops; ++k) L.op_dtype[t * size_t(nops) + size_t(k)] = dts[k];
    L.size[t] = ref.size;
    L.dtype[t] = pdt;
  }
  bool written[kOptimMaxOperands];
  for (int k = 0; k < nops; ++k) written[k] = args[k].write;
  const SharedSlots s = find_shared_memory(L, written);
  if (s.first >= 0) {
    const int ka = int(s.first % nops), kb = int(s.second % nops);
    throw py::value_error(item_name(args[ka], P.is_list[ka], size_t(s.first / nops)) + ": shares memory with " +
                          item_name(args[kb], P.is_list[kb], size_t(s.second / nops)) +
                          "; every updated array must be distinct from all other operands");
  }
}

ExecContext context_for(const Parsed& P) { return P.main ? context_of(*P.main) : ExecContext{}; }

// The operands of one step, in kernel order (no allocation: every call builds one).
struct StepArgs {
  ListArg a[kOptimMaxOperands];
  int n = 0;
  StepArgs(std::initializer_list<ListArg> l) {
    for (const ListArg& x : l) a[n++] = x;
  }
};

void run_step(OptimOp op, const StepArgs& sa, const OptimHyper& h) {
  const ListArg* args = sa.a;
  const int nops = sa.n;
  Parsed P;  // destroyed after `release` below: with the GIL held
  parse(args, nops, P);
  if (P.list.count() == 0) return;
  const ExecContext ctx = context_for(P);
  const OptimStepImpl impl = optim_step_stub(ctx.device);
  py::gil_scoped_release release;
  DeviceScope scope(ctx.device);
  impl(op, P.list, h, ctx);
}

// ----------------------------------------------------------------------------- hyperparameters
OptimHyper sgd_hyper(py::handle lr, py::handle momentum, py::handle nesterov, py::handle dampening,
                     py::handle weight_decay, py::handle maximize) {
  OptimHyper h;
  h.maximize = flag_arg(maximize, "maximize");
  h.lr = nonneg(lr, "lr");
  h.momentum = nonneg(momentum, "momentum");
  h.nesterov = flag_arg(nesterov, "nesterov");
  h.dampening = ranged(dampening, "dampening", 0.0, 1.0, false, "a number in [0, 1]");
  h.weight_decay = nonneg(weight_decay, "weight_decay");
  if (h.nesterov && (h.momentum <= 0 || h.dampening != 0))
    throw py::value_error("nesterov: Nesterov momentum requires momentum > 0 and dampening = 0");
  return h;
}
OptimHyper adagrad_hyper(py::handle lr, py::handle eps, py::handle weight_decay, py::handle maximize) {
  OptimHyper h;
  h.maximize = flag_arg(maximize, "maximize");
  h.lr = nonneg(lr, "lr");
  h.eps = nonneg(eps, "eps");
  h.weight_decay = nonneg(weight_decay, "weight_decay");
  return h;
}
OptimHyper rmsprop_hyper(py::handle lr, py::handle alpha, py::handle eps, py::handle weight_decay,
                         py::handle eps_in_sqrt, py::handle maximize, py::handle momentum) {
  OptimHyper h;
  h.maximize = flag_arg(maximize, "maximize");
  h.lr = nonneg(lr, "lr");
  h.alpha = ranged(alpha, "alpha", 0.0, 1.0, false, "a number in [0, 1]");
  h.eps = nonneg(eps, "eps");
  h.weight_decay = nonneg(weight_decay, "weight_decay");
  h.eps_in_sqrt = flag_arg(eps_in_sqrt, "eps_in_sqrt");
  h.momentum = nonneg(momentum, "momentum");
  return h;
}
OptimHyper adam_hyper(py::handle step, py::handle lr, py::handle beta1, py::handle beta2, py::handle eps,
                      py::handle weight_decay, py::handle decoupled, py::handle maximize) {
  OptimHyper h;
  h.maximize = flag_arg(maximize, "maximize");
  const int64_t t = step_arg(step);
  h.lr = nonneg(lr, "lr");
  h.beta1 = ranged(beta1, "beta1", 0.0, 1.0, true, "a number in [0, 1)");
  h.beta2 = ranged(beta2, "beta2", 0.0, 1.0, true, "a number in [0, 1)");
  h.eps = nonneg(eps, "eps");
  h.weight_decay = nonneg(weight_decay, "weight_decay");
  h.decoupled = flag_arg(decoupled, "decoupled_weight_decay");
  // PyTorch: bias_correction = 1 - beta ** step (1-based step), computed in float64.
  const double bc1 = 1.0 - std::pow(h.beta1, double(t));
  const double bc2 = 1.0 - std::pow(h.beta2, double(t));
  h.step_size = h.lr / bc1;
  h.inv_bc2_sqrt = 1.0 / std::sqrt(bc2);
  h.rng_step = uint64_t(t);  // stochastic rounding: the step joins the Philox counter
  return h;
}
OptimHyper ema_hyper(py::handle decay) {
  OptimHyper h;
  h.decay = ranged(decay, "decay", 0.0, 1.0, false, "a number in [0, 1]");
  return h;
}

// ----------------------------------------------------------------------------- 16-bit parameters
// master_params / stochastic_rounding / seed (cpu/optimizers.hpp, OptimHyper::rounding). The step
// in the Philox counter (h.rng_step) is the step count of the functions that have one (adam_hyper
// sets it), 0 for the others.
void rounding_args(OptimHyper& h, py::handle master, py::handle stochastic, py::handle seed) {
  const bool sr = flag_arg(stochastic, "stochastic_rounding");
  if (!master.is_none() && sr)
    throw py::value_error("stochastic_rounding: not with master_params (the parameters are then the float32 "
                          "master copies rounded to nearest)");
  if (sr) {
    PyObject* o = seed.ptr();
    if (seed.is_none())
      throw py::value_error("seed: required with stochastic_rounding=True (an int in [0, 2**64); give each call of a "
                            "step function without a step count its own seed)");
    if (PyBool_Check(o) || PyFloat_Check(o) || !PyIndex_Check(o))
      throw py::type_error(std::string("seed: expected an int in [0, 2**64), got ") + Py_TYPE(o)->tp_name);
    py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    const unsigned long long v = PyLong_AsUnsignedLongLong(idx.ptr());
    if (PyErr_Occurred()) {
      PyErr_Clear();
      throw py::value_error("seed: expected an int in [0, 2**64), got " + std::string(py::str(idx)));
    }
    h.seed = uint64_t(v);
    h.rounding = kRoundStochastic;
  } else if (!seed.is_none()) {
    throw py::value_error("seed: only used with stochastic_rounding=True");
  }
  if (!master.is_none()) h.rounding = kRoundMaster;
}

// The operand list of a step: params, grads, [master_params,] states (roles: ListArg::role).
StepArgs step_args(py::handle params, py::handle grads, py::handle master, std::initializer_list<ListArg> states) {
  StepArgs a{{"params", params, true, kParamRole}, {"grads", grads, false, kSameAsParam}};
  if (!master.is_none()) a.a[a.n++] = {"master_params", master, true, kMaster};
  for (const ListArg& x : states) a.a[a.n++] = x;
  return a;
}

// `maximize` of a keyword dict (the constructors' hyperparameter check): absent means False.
py::object maximize_kw(const py::dict& kw) {
  return kw.contains("maximize") ? py::reinterpret_borrow<py::object>(kw["maximize"]) : py::object(py::bool_(false));
}

// ----------------------------------------------------------------------------- clip_grad_norm
// CPU gradients: the norm as a Python float. CUDA gradients: the norm stays on the device, a 0-d
// float64 array of the gradients' library (the clip coefficient is computed there from it).
py::object clip_grad_norm(py::handle grads, py::handle max_norm_h) {
  const double max_norm = nonneg(max_norm_h, "max_norm");
  const ListArg args[1] = {{"grads", grads, true, kParamRole}};
  Parsed P;  // outlives the GIL-released block below
  parse(args, 1, P);
  const ExecContext ctx = context_for(P);
  double host_norm = 0.0;
  ArrayView norm_view, workspace_view;
  norm_view.data = &host_norm;
  norm_view.dtype = DType::f64;
  norm_view.writeable = true;
  Operand norm, workspace;
  if (ctx.device.is_cuda()) {
    norm = new_result(*P.main, DType::f64, Dims{});
    workspace = new_result(*P.main, DType::f64, Dims{clip_workspace_size(P.list)});
    norm_view = norm.view;
    workspace_view = workspace.view;
  }
  const ClipGradNormImpl impl = clip_grad_norm_stub(ctx.device);
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(P.list, max_norm, norm_view, workspace_view, ctx);
  }
  return ctx.device.is_cuda() ? norm.result() : py::float_(host_norm);
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(optimizers) {
  using namespace nk;
  using H = py::handle;
  // Operand lists: params, grads, [master_params], states (kParamRole / kSameAsParam / kMaster / kState).
  m.def("sgd_step",
        [](H params, H grads, H lr, H momentum, H velocity, H nesterov, H dampening, H weight_decay, H maximize,
           H master, H sr, H seed) {
          OptimHyper h = sgd_hyper(lr, momentum, nesterov, dampening, weight_decay, maximize);
          rounding_args(h, master, sr, seed);
          if (h.momentum > 0) {
            if (velocity.is_none()) throw py::value_error("velocity: required when momentum > 0 (arrays of zeros to start)");
            run_step(kSgdMomentum, step_args(params, grads, master, {{"velocity", velocity, true, kState}}), h);
          } else {
            run_step(kSgd, step_args(params, grads, master, {}), h);
          }
        },
        py::arg("params"), py::arg("grads"), py::arg("lr"), py::arg("momentum"), py::arg("velocity"),
        py::arg("nesterov"), py::arg("dampening"), py::arg("weight_decay"), py::arg("maximize"),
        py::arg("master_params") = py::none(), py::arg("stochastic_rounding") = false, py::arg("seed") = py::none());
  m.def("adagrad_step",
        [](H params, H grads, H sum_sq, H lr, H eps, H weight_decay, H maximize, H master, H sr, H seed) {
          OptimHyper h = adagrad_hyper(lr, eps, weight_decay, maximize);
          rounding_args(h, master, sr, seed);
          run_step(kAdagrad, step_args(params, grads, master, {{"sum_sq", sum_sq, true, kState}}), h);
        },
        py::arg("params"), py::arg("grads"), py::arg("sum_sq"), py::arg("lr"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("maximize"), py::arg("master_params") = py::none(), py::arg("stochastic_rounding") = false,
        py::arg("seed") = py::none());
  // RMSprop: centered adds the state grad_avg, momentum > 0 the state velocity (kernel order: sq_avg,
  // [grad_avg,] [velocity]); an unused one may be passed and is left untouched.
  m.def("rmsprop_step",
        [](H params, H grads, H sq_avg, H lr, H alpha, H eps, H weight_decay, H eps_in_sqrt, H maximize, H momentum,
           H velocity, H centered_h, H grad_avg, H master, H sr, H seed) {
          OptimHyper h = rmsprop_hyper(lr, alpha, eps, weight_decay, eps_in_sqrt, maximize, momentum);
          const bool centered = flag_arg(centered_h, "centered");
          rounding_args(h, master, sr, seed);
          const bool mom = h.momentum > 0;
          if (mom && velocity.is_none())
            throw py::value_error("velocity: required when momentum > 0 (arrays of zeros to start)");
          if (centered && grad_avg.is_none())
            throw py::value_error("grad_avg: required when centered=True (arrays of zeros to start)");
          const ListArg sq{"sq_avg", sq_avg, true, kState}, ga{"grad_avg", grad_avg, true, kState},
              vel{"velocity", velocity, true, kState};
          if (centered && mom) run_step(kRmspropCenteredMomentum, step_args(params, grads, master, {sq, ga, vel}), h);
          else if (centered) run_step(kRmspropCentered, step_args(params, grads, master, {sq, ga}), h);
          else if (mom) run_step(kRmspropMomentum, step_args(params, grads, master, {sq, vel}), h);
          else run_step(kRmsprop, step_args(params, grads, master, {sq}), h);
        },
        py::arg("params"), py::arg("grads"), py::arg("sq_avg"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("eps_in_sqrt"), py::arg("maximize"), py::arg("momentum") = 0.0,
        py::arg("velocity") = py::none(), py::arg("centered") = false, py::arg("grad_avg") = py::none(),
        py::arg("master_params") = py::none(), py::arg("stochastic_rounding") = false, py::arg("seed") = py::none());
  m.def("adam_step",
        [](H params, H grads, H exp_avg, H exp_avg_sq, H step, H lr, H beta1, H beta2, H eps, H weight_decay,
           H decoupled, H max_exp_avg_sq, H maximize, H master, H sr, H seed) {
          OptimHyper h = adam_hyper(step, lr, beta1, beta2, eps, weight_decay, decoupled, maximize);
          rounding_args(h, master, sr, seed);
          // AMSGrad when the running maxima of exp_avg_sq are given (a further state, updated in place).
          if (max_exp_avg_sq.is_none())
            run_step(kAdam, step_args(params, grads, master, {{"exp_avg", exp_avg, true, kState},
                                                              {"exp_avg_sq", exp_avg_sq, true, kState}}), h);
          else
            run_step(kAdamAmsgrad, step_args(params, grads, master, {{"exp_avg", exp_avg, true, kState},
                                                                     {"exp_avg_sq", exp_avg_sq, true, kState},
                                                                     {"max_exp_avg_sq", max_exp_avg_sq, true, kState}}),
                     h);
        },
        py::arg("params"), py::arg("grads"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("step"),
        py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled_weight_decay"), py::arg("max_exp_avg_sq"), py::arg("maximize"),
        py::arg("master_params") = py::none(), py::arg("stochastic_rounding") = false, py::arg("seed") = py::none());
  // EMA: the averages are the updated state of the (16-bit or not) params they follow; a float32
  // average of 16-bit params is its own master copy, so there is no master_params here.
  m.def("ema_update",
        [](H averages, H params, H decay, H sr, H seed) {
          OptimHyper h = ema_hyper(decay);
          rounding_args(h, py::none(), sr, seed);
          run_step(kEma, {{"averages", averages, true, kState}, {"params", params, false, kParamRole}}, h);
        },
        py::arg("averages"), py::arg("params"), py::arg("decay"), py::arg("stochastic_rounding") = false,
        py::arg("seed") = py::none());
  m.def("clip_grad_norm", &clip_grad_norm, py::arg("grads"), py::arg("max_norm"));
  // nnkernels.optim's constructors: the parameter list, validated as the steps validate it (arrays
  // of float32/float64/float16/bfloat16, C-contiguous, writeable, one device, no two sharing
  // memory), as a list.
  m.def("optimizer_param_list",
        [](H params) {
          const ListArg args[1] = {{"params", params, true, kParamRole}};
          Parsed P;
          parse(args, 1, P);
          if (!P.is_list[0]) return py::list(py::make_tuple(params));
          return py::reinterpret_steal<py::list>(PySequence_List(params.ptr()));  // a new list
        },
        py::arg("params"));
  // The hyperparameter checks of the steps, for nnkernels.optim's constructors (returns nothing;
  // raises on bad values), so that a bad value fails at construction, as in torch.optim.
  m.def("check_optimizer_scalars",
        [](const std::string& op, py::dict kw) {
          const py::object mx = maximize_kw(kw);
          if (op == "sgd") sgd_hyper(kw["lr"], kw["momentum"], kw["nesterov"], kw["dampening"], kw["weight_decay"], mx);
          else if (op == "adagrad") adagrad_hyper(kw["lr"], kw["eps"], kw["weight_decay"], mx);
          else if (op == "rmsprop") {
            rmsprop_hyper(kw["lr"], kw["alpha"], kw["eps"], kw["weight_decay"], kw["eps_in_sqrt"], mx,
                          kw.contains("momentum") ? py::object(kw["momentum"]) : py::object(py::float_(0.0)));
            if (kw.contains("centered")) flag_arg(kw["centered"], "centered");
          }
          else if (op == "adam") adam_hyper(kw["step"], kw["lr"], kw["beta1"], kw["beta2"], kw["eps"], kw["weight_decay"], kw["decoupled_weight_decay"], mx);
          else if (op == "ema") ema_hyper(kw["decay"]);
          else if (op == "clip") nonneg(kw["max_norm"], "max_norm");
          else throw py::value_error("op: unknown optimizer op");
        },
        py::arg("op"), py::arg("kw"));
}

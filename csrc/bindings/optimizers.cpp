// Python bindings of the optimizer kernels (CPU: csrc/cpu/optimizers.cpp, CUDA:
// csrc/cuda/optimizers.cu): multi-tensor apply. Every array argument is one array or a
// list of arrays. All arrays and scalars are validated first (list lengths, dtypes, shapes,
// C-contiguity, writeability, memory overlap between an updated array and any other
// operand); only then is memory touched, so a refused call changes nothing.
// The whole list is then laid end to end as one index range [0, total) cut into fixed
// chunks of kGrain elements; one parallel region runs every chunk, each chunk walking the
// tensors it covers. Small tensors are thereby batched, and the chunking (hence every
// result, including clip_grad_norm's per-chunk partial sums) is independent of the thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/module.hpp"
#include "core/parallel.hpp"
#include "cpu/optimizers.hpp"
#if defined(NK_WITH_CUDA)
#include "cuda/optimizers.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {

constexpr int64_t kGrain = 16384;  // elements per chunk (64 KiB of each float32 operand)
constexpr int kMaxOps = 5;

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

std::string num_str(double v) {
  std::string s = py::str(py::float_(v));
  return s;
}

// lo <= v (or lo < v when open_lo) and v <= hi (v < hi when open_hi), finite.
double ranged(py::handle h, const char* name, double lo, double hi, bool open_hi, const char* what) {
  const double v = real_arg(h, name);
  if (!std::isfinite(v) || v < lo || v > hi || (open_hi && v == hi))
    throw py::value_error(std::string(name) + ": expected " + what + ", got " + num_str(v));
  return v;
}
double nonneg(py::handle h, const char* name) {
  return ranged(h, name, 0.0, HUGE_VAL, false, "a finite number >= 0");
}
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
struct Item {
  char* data = nullptr;
  int64_t size = 0;
  int dt = 0;  // 0 float32, 1 float64
  int nd = 0;
  const py::ssize_t* dims = nullptr;
};

struct Operand {
  const char* name;
  py::handle arg;
  bool write;
};

std::string item_name(const Operand& op, bool list, size_t i) {
  return list ? std::string(op.name) + "[" + std::to_string(i) + "]" : std::string(op.name);
}

std::string shape_str(int nd, const py::ssize_t* d) {
  std::string r = "(";
  for (int i = 0; i < nd; ++i) r += std::to_string(d[i]) + (nd == 1 ? "," : (i + 1 < nd ? ", " : ""));
  return r + ")";
}

// One array -> [it]; list/tuple -> its items. Each item gets a reference in `owned`: the kernels
// run without the GIL, and another thread may meanwhile empty the list (dropping the list's
// references); the arrays must live until the call returns. (The array argument itself, and
// the list or tuple, are held by the caller for the whole call.)
void collect(const Operand& op, std::vector<PyObject*>& out, bool& is_list, std::vector<py::object>& owned) {
  PyObject* o = op.arg.ptr();
  out.clear();
  if (py::detail::npy_api::get().PyArray_Check_(o)) {
    is_list = false;
    out.push_back(o);
    return;
  }
  if (PyList_Check(o) || PyTuple_Check(o)) {
    is_list = true;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** items = PySequence_Fast_ITEMS(o);
    out.assign(items, items + n);
    if (PyList_Check(o))
      for (Py_ssize_t i = 0; i < n; ++i) owned.push_back(py::reinterpret_borrow<py::object>(items[i]));
    return;
  }
  throw py::type_error(std::string(op.name) + ": expected a NumPy array or a list of arrays, got " +
                       (o == Py_None ? std::string("None") : std::string(Py_TYPE(o)->tp_name)));
}

Item inspect(PyObject* o, const std::string& name, bool write) {
  namespace d = py::detail;
  if (!d::npy_api::get().PyArray_Check_(o))
    throw py::type_error(name + ": expected a NumPy array, got " + Py_TYPE(o)->tp_name);
  const auto* a = d::array_proxy(o);
  const auto* desc = d::array_descriptor_proxy(a->descr);
  Item it;
  if (desc->type_num == d::npy_api::NPY_FLOAT_) it.dt = 0;
  else if (desc->type_num == d::npy_api::NPY_DOUBLE_) it.dt = 1;
  else throw py::type_error(name + ": expected a float32 or float64 array, got dtype " +
                            std::string(py::str(py::handle(a->descr))));
  if (desc->byteorder == '>') throw py::type_error(name + ": expected native byte order");
  if (!(a->flags & d::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
    throw py::value_error(name + ": expected a C-contiguous array (strided views are refused: the update is in "
                                 "place over one flat buffer); pass np.ascontiguousarray(...) and keep that array");
  if (!(a->flags & d::npy_api::NPY_ARRAY_ALIGNED_)) throw py::value_error(name + ": array data is not aligned");
  if (write && !(a->flags & d::npy_api::NPY_ARRAY_WRITEABLE_)) throw py::value_error(name + ": array is read-only");
  it.data = a->data;
  it.nd = a->nd;
  it.dims = a->dimensions;
  it.size = 1;
  for (int k = 0; k < it.nd; ++k) it.size *= int64_t(it.dims[k]);
  return it;
}

// Validates every operand of every tensor; items[t * nops + k]. Throws before any write.
// `owned` holds a reference to every array taken from a list (keep it until the GIL is back).
void gather(const Operand* ops, int nops, std::vector<Item>& items, int64_t& ntensors, std::vector<py::object>& owned) {
  std::vector<PyObject*> objs[kMaxOps];
  bool is_list[kMaxOps];
  size_t listed = 0;
  for (int k = 0; k < nops; ++k)
    if (PyList_Check(ops[k].arg.ptr())) listed += size_t(PyList_GET_SIZE(ops[k].arg.ptr()));
  owned.reserve(listed);
  for (int k = 0; k < nops; ++k) collect(ops[k], objs[k], is_list[k], owned);
  const size_t T = objs[0].size();
  for (int k = 1; k < nops; ++k)
    if (objs[k].size() != T)
      throw py::value_error(std::string(ops[k].name) + ": expected " + std::to_string(T) + " array" +
                            (T == 1 ? "" : "s") + " (one per entry of " + ops[0].name + "), got " +
                            std::to_string(objs[k].size()));
  items.resize(T * size_t(nops));
  for (size_t t = 0; t < T; ++t) {
    for (int k = 0; k < nops; ++k) {
      const std::string nm = item_name(ops[k], is_list[k], t);
      Item it = inspect(objs[k][t], nm, ops[k].write);
      if (k > 0) {
        const Item& ref = items[t * nops];
        const std::string rn = item_name(ops[0], is_list[0], t);
        if (it.dt != ref.dt)
          throw py::type_error(nm + ": expected the dtype of " + rn + " (" + (ref.dt ? "float64" : "float32") +
                               "), got " + (it.dt ? "float64" : "float32"));
        if (it.nd != ref.nd || !std::equal(it.dims, it.dims + it.nd, ref.dims))
          throw py::value_error(nm + ": expected the shape of " + rn + " " + shape_str(ref.nd, ref.dims) + ", got " +
                                shape_str(it.nd, it.dims));
      }
      items[t * nops + k] = it;
    }
  }
  // Memory overlap: an updated array may not share memory with any other operand (another
  // tensor's state, its own gradient, the same param listed twice...). Sweep over extents sorted by start.
  struct Ext { uintptr_t lo, hi; int32_t idx; bool write; };
  std::vector<Ext> ext;
  ext.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    if (it.size == 0) continue;
    const uintptr_t lo = reinterpret_cast<uintptr_t>(it.data);
    ext.push_back({lo, lo + uintptr_t(it.size) * (it.dt ? 8u : 4u), int32_t(i), ops[i % nops].write});
  }
  std::sort(ext.begin(), ext.end(), [](const Ext& a, const Ext& b) { return a.lo < b.lo; });
  uintptr_t hi_any = 0, hi_w = 0;
  int32_t who_any = -1, who_w = -1;
  for (const Ext& e : ext) {
    int32_t other = -1;
    if (e.write && e.lo < hi_any) other = who_any;
    else if (!e.write && e.lo < hi_w) other = who_w;
    if (other >= 0) {
      const int ka = e.idx % nops, kb = other % nops;
      throw py::value_error(item_name(ops[ka], is_list[ka], size_t(e.idx / nops)) + ": shares memory with " +
                            item_name(ops[kb], is_list[kb], size_t(other / nops)) +
                            "; every updated array must be distinct from all other operands");
    }
    if (e.hi > hi_any) { hi_any = e.hi; who_any = e.idx; }
    if (e.write && e.hi > hi_w) { hi_w = e.hi; who_w = e.idx; }
  }
  ntensors = int64_t(T);
}

// One piece of the flat index range: tensor t's operands and where it starts.
struct Seg {
  void* ptr[kMaxOps];
  int64_t start, n;
  int dt;
};

std::vector<Seg> segments(const std::vector<Item>& items, int nops, int64_t T, int64_t& total) {
  std::vector<Seg> segs;
  segs.reserve(size_t(T));
  total = 0;
  for (int64_t t = 0; t < T; ++t) {
    const Item& p = items[size_t(t * nops)];
    if (p.size == 0) continue;
    Seg s{};
    for (int k = 0; k < nops; ++k) s.ptr[k] = items[size_t(t * nops + k)].data;
    s.start = total;
    s.n = p.size;
    s.dt = p.dt;
    total += p.size;
    segs.push_back(s);
  }
  return segs;
}

// f(chunk, seg, first_element_in_seg, count) for every piece of chunk [b, e).
template <class F>
inline void for_pieces(const std::vector<Seg>& segs, int64_t b, int64_t e, F&& f) {
  size_t s = size_t(std::upper_bound(segs.begin(), segs.end(), b,
                                     [](int64_t v, const Seg& sg) { return v < sg.start; }) - segs.begin()) - 1;
  for (; s < segs.size() && segs[s].start < e; ++s) {
    const Seg& sg = segs[s];
    const int64_t lo = std::max(b, sg.start), hi = std::min(e, sg.start + sg.n);
    f(sg, lo - sg.start, hi - lo);
  }
}

void run_update(OptimOp op, const Operand* ops, int nops, const OptimHyper& h) {
  std::vector<py::object> owned;  // destroyed after `release` below: with the GIL held
  std::vector<Item> items;
  int64_t T = 0;
  gather(ops, nops, items, T, owned);
  int64_t total = 0;
  const std::vector<Seg> segs = segments(items, nops, T, total);
  if (total == 0) return;
  const OptimizerKernels& K = optimizer_kernels();
  const OptimUpdateFn fns[2] = {K.update[op][0], K.update[op][1]};
  py::gil_scoped_release release;
  parallel_for(total, kGrain, [&](int64_t b, int64_t e) {
    for_pieces(segs, b, e, [&](const Seg& sg, int64_t off, int64_t n) {
      void* p[kMaxOps];
      const int64_t isz = sg.dt ? 8 : 4;
      for (int k = 0; k < nops; ++k) p[k] = static_cast<char*>(sg.ptr[k]) + off * isz;
      fns[sg.dt](p, n, &h);
    });
  });
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
                         py::handle eps_in_sqrt, py::handle maximize) {
  OptimHyper h;
  h.maximize = flag_arg(maximize, "maximize");
  h.lr = nonneg(lr, "lr");
  h.alpha = ranged(alpha, "alpha", 0.0, 1.0, false, "a number in [0, 1]");
  h.eps = nonneg(eps, "eps");
  h.weight_decay = nonneg(weight_decay, "weight_decay");
  h.eps_in_sqrt = flag_arg(eps_in_sqrt, "eps_in_sqrt");
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
  return h;
}
OptimHyper ema_hyper(py::handle decay) {
  OptimHyper h;
  h.decay = ranged(decay, "decay", 0.0, 1.0, false, "a number in [0, 1]");
  return h;
}

// ----------------------------------------------------------------------------- clip_grad_norm
double clip_grad_norm(py::handle grads, py::handle max_norm_h) {
  const double max_norm = nonneg(max_norm_h, "max_norm");
  const Operand ops[1] = {{"grads", grads, true}};
  std::vector<py::object> owned;  // outlives the GIL-released block below
  std::vector<Item> items;
  int64_t T = 0;
  gather(ops, 1, items, T, owned);
  int64_t total = 0;
  const std::vector<Seg> segs = segments(items, 1, T, total);
  if (total == 0) return 0.0;
  const OptimizerKernels& K = optimizer_kernels();
  double norm = 0.0;
  {
    py::gil_scoped_release release;
    std::vector<double> partial(size_t(num_chunks(total, kGrain)), 0.0);
    parallel_for_chunks(total, kGrain, [&](int64_t c, int64_t b, int64_t e) {
      double s = 0.0;
      for_pieces(segs, b, e, [&](const Seg& sg, int64_t off, int64_t n) {
        s += K.sumsq[sg.dt](static_cast<char*>(sg.ptr[0]) + off * (sg.dt ? 8 : 4), n);
      });
      partial[size_t(c)] = s;
    });
    double sum = 0.0;
    for (double v : partial) sum += v;  // chunk order: independent of the thread count
    norm = std::sqrt(sum);
    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when it is < 1.
    // A NaN norm gives a NaN coefficient, as in PyTorch: NaN reaches every gradient (no masking).
    if (norm > max_norm || std::isnan(norm)) {
      OptimHyper h;
      h.scale = max_norm / (norm + 1e-6);
      const OptimUpdateFn fns[2] = {K.update[kScale][0], K.update[kScale][1]};
      parallel_for(total, kGrain, [&](int64_t b, int64_t e) {
        for_pieces(segs, b, e, [&](const Seg& sg, int64_t off, int64_t n) {
          void* p[1] = {static_cast<char*>(sg.ptr[0]) + off * (sg.dt ? 8 : 4)};
          fns[sg.dt](p, n, &h);
        });
      });
    }
  }
  return norm;
}

// `maximize` of a keyword dict (the hyperparameter check and the GPU entry): absent means False.
py::object maximize_kw(const py::dict& kw) {
  return kw.contains("maximize") ? py::reinterpret_borrow<py::object>(kw["maximize"]) : py::object(py::bool_(false));
}

#if defined(NK_WITH_CUDA)
// GPU entry: the Python side (nnkernels/optimizers.py) validated the CUDA arrays and passes
// a flat table of device pointers (ntensors x nops) and element counts.
void cuda_run(int op, int dtype, const std::vector<uintptr_t>& ptrs, const std::vector<int64_t>& sizes,
              const OptimHyper& h, uintptr_t stream) {
  if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
  py::gil_scoped_release release;
  cuda::launch_multi_tensor(op, dtype, ptrs.data(), sizes.data(), int64_t(sizes.size()), h, stream);
}
#endif

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(optimizers) {
  using namespace nk;
  using H = py::handle;
  m.def("sgd_step",
        [](H params, H grads, H lr, H momentum, H velocity, H nesterov, H dampening, H weight_decay, H maximize) {
          const OptimHyper h = sgd_hyper(lr, momentum, nesterov, dampening, weight_decay, maximize);
          if (h.momentum > 0) {
            if (velocity.is_none()) throw py::value_error("velocity: required when momentum > 0 (arrays of zeros to start)");
            const Operand ops[3] = {{"params", params, true}, {"grads", grads, false}, {"velocity", velocity, true}};
            run_update(kSgdMomentum, ops, 3, h);
          } else {
            const Operand ops[2] = {{"params", params, true}, {"grads", grads, false}};
            run_update(kSgd, ops, 2, h);
          }
        },
        py::arg("params"), py::arg("grads"), py::arg("lr"), py::arg("momentum"), py::arg("velocity"),
        py::arg("nesterov"), py::arg("dampening"), py::arg("weight_decay"), py::arg("maximize"));
  m.def("adagrad_step",
        [](H params, H grads, H sum_sq, H lr, H eps, H weight_decay, H maximize) {
          const OptimHyper h = adagrad_hyper(lr, eps, weight_decay, maximize);
          const Operand ops[3] = {{"params", params, true}, {"grads", grads, false}, {"sum_sq", sum_sq, true}};
          run_update(kAdagrad, ops, 3, h);
        },
        py::arg("params"), py::arg("grads"), py::arg("sum_sq"), py::arg("lr"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("maximize"));
  m.def("rmsprop_step",
        [](H params, H grads, H sq_avg, H lr, H alpha, H eps, H weight_decay, H eps_in_sqrt, H maximize) {
          const OptimHyper h = rmsprop_hyper(lr, alpha, eps, weight_decay, eps_in_sqrt, maximize);
          const Operand ops[3] = {{"params", params, true}, {"grads", grads, false}, {"sq_avg", sq_avg, true}};
          run_update(kRmsprop, ops, 3, h);
        },
        py::arg("params"), py::arg("grads"), py::arg("sq_avg"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("eps_in_sqrt"), py::arg("maximize"));
  m.def("adam_step",
        [](H params, H grads, H exp_avg, H exp_avg_sq, H step, H lr, H beta1, H beta2, H eps, H weight_decay,
           H decoupled, H max_exp_avg_sq, H maximize) {
          const OptimHyper h = adam_hyper(step, lr, beta1, beta2, eps, weight_decay, decoupled, maximize);
          // AMSGrad when the running maximum of exp_avg_sq is given (a fifth operand, updated in place).
          const Operand ops[5] = {{"params", params, true}, {"grads", grads, false}, {"exp_avg", exp_avg, true},
                                  {"exp_avg_sq", exp_avg_sq, true}, {"max_exp_avg_sq", max_exp_avg_sq, true}};
          if (max_exp_avg_sq.is_none()) run_update(kAdam, ops, 4, h);
          else run_update(kAdamAmsgrad, ops, 5, h);
        },
        py::arg("params"), py::arg("grads"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("step"),
        py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled_weight_decay"), py::arg("max_exp_avg_sq"), py::arg("maximize"));
  m.def("ema_update",
        [](H averages, H params, H decay) {
          const OptimHyper h = ema_hyper(decay);
          const Operand ops[2] = {{"averages", averages, true}, {"params", params, false}};
          run_update(kEma, ops, 2, h);
        },
        py::arg("averages"), py::arg("params"), py::arg("decay"));
  m.def("clip_grad_norm", &clip_grad_norm, py::arg("grads"), py::arg("max_norm"));
  m.attr("OPTIMIZER_OPS") = py::dict(py::arg("sgd") = int(kSgd), py::arg("sgd_momentum") = int(kSgdMomentum),
                                     py::arg("adagrad") = int(kAdagrad), py::arg("rmsprop") = int(kRmsprop),
                                     py::arg("adam") = int(kAdam), py::arg("ema") = int(kEma),
                                     py::arg("adam_amsgrad") = int(kAdamAmsgrad));
  // Hyperparameter validation shared with the GPU path (returns nothing; raises on bad values).
  m.def("check_optimizer_scalars",
        [](const std::string& op, py::dict kw) {
          const py::object mx = maximize_kw(kw);
          if (op == "sgd") sgd_hyper(kw["lr"], kw["momentum"], kw["nesterov"], kw["dampening"], kw["weight_decay"], mx);
          else if (op == "adagrad") adagrad_hyper(kw["lr"], kw["eps"], kw["weight_decay"], mx);
          else if (op == "rmsprop") rmsprop_hyper(kw["lr"], kw["alpha"], kw["eps"], kw["weight_decay"], kw["eps_in_sqrt"], mx);
          else if (op == "adam") adam_hyper(kw["step"], kw["lr"], kw["beta1"], kw["beta2"], kw["eps"], kw["weight_decay"], kw["decoupled_weight_decay"], mx);
          else if (op == "ema") ema_hyper(kw["decay"]);
          else if (op == "clip") nonneg(kw["max_norm"], "max_norm");
          else throw py::value_error("op: unknown optimizer op");
        },
        py::arg("op"), py::arg("kw"));
#if defined(NK_WITH_CUDA)
  m.def("cuda_optimizer_step",
        [](const std::string& op, int dtype, std::vector<uintptr_t> ptrs, std::vector<int64_t> sizes, py::dict kw,
           uintptr_t stream) {
          OptimHyper h;
          int code = 0;
          const py::object mx = maximize_kw(kw);
          if (op == "sgd") {
            h = sgd_hyper(kw["lr"], kw["momentum"], kw["nesterov"], kw["dampening"], kw["weight_decay"], mx);
            code = h.momentum > 0 ? kSgdMomentum : kSgd;
          } else if (op == "adagrad") {
            h = adagrad_hyper(kw["lr"], kw["eps"], kw["weight_decay"], mx);
            code = kAdagrad;
          } else if (op == "rmsprop") {
            h = rmsprop_hyper(kw["lr"], kw["alpha"], kw["eps"], kw["weight_decay"], kw["eps_in_sqrt"], mx);
            code = kRmsprop;
          } else if (op == "adam") {
            h = adam_hyper(kw["step"], kw["lr"], kw["beta1"], kw["beta2"], kw["eps"], kw["weight_decay"],
                           kw["decoupled_weight_decay"], mx);
            // The pointer table has a fifth operand (max_exp_avg_sq) per tensor for AMSGrad.
            code = kw.contains("amsgrad") && flag_arg(kw["amsgrad"], "amsgrad") ? kAdamAmsgrad : kAdam;
          } else if (op == "ema") {
            h = ema_hyper(kw["decay"]);
            code = kEma;
          } else {
            throw py::value_error("op: unknown optimizer op");
          }
          cuda_run(code, dtype, ptrs, sizes, h, stream);
        },
        py::arg("op"), py::arg("dtype"), py::arg("ptrs"), py::arg("sizes"), py::arg("kw"), py::arg("stream"));
  m.def("cuda_clip_grad_norm",
        [](int dtype, std::vector<uintptr_t> ptrs, std::vector<int64_t> sizes, py::handle max_norm, uintptr_t stream) {
          const double mn = nonneg(max_norm, "max_norm");
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          py::gil_scoped_release release;
          return cuda::clip_grad_norm(dtype, ptrs.data(), sizes.data(), int64_t(sizes.size()), mn, stream);
        },
        py::arg("dtype"), py::arg("ptrs"), py::arg("sizes"), py::arg("max_norm"), py::arg("stream"));
#endif
}

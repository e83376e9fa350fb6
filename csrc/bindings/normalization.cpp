// Python bindings of the normalization kernels (CPU: csrc/cpu/normalization.cpp, CUDA:
// csrc/cuda/normalization.cu). Everything is validated before any memory is touched; the
// kernels run with the GIL released over a fixed decomposition (core/parallel.hpp), and
// per-task partials (statistics, dgamma/dbeta, backward reductions) are combined in task
// order, so results are bitwise identical for any thread count.
//
// Batch norm layout: x is (N, C, *spatial), viewed as N rows of W = C*S values (S = spatial
// size). Small S: "column" path, per-column statistics of row blocks, the S columns of a
// channel merged afterwards. S >= kPlaneMin: "plane" path, each (n, c) plane is a contiguous run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/parallel.hpp"
#include "cpu/normalization.hpp"
#if defined(NK_WITH_CUDA)
#include "cuda/normalization.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {

constexpr int64_t kPlaneMin = 64;            // spatial size from which planes are runs
constexpr int64_t kTaskElems = int64_t(1) << 20;   // elements per reduction task (fixed decomposition)
constexpr int64_t kApplyElems = int64_t(1) << 16;  // elements per elementwise task
constexpr int64_t kSerialElems = int64_t(1) << 16; // below this, reductions run on the calling thread
constexpr int64_t kStreamBytes = int64_t(8) << 20;

template <class T> const NormKernelsT<T>& kern();
template <> const NormKernelsT<float>& kern<float>() { return normalization_kernels().f32; }
template <> const NormKernelsT<double>& kern<double>() { return normalization_kernels().f64; }

int parse_activation(const py::object& a) {
  if (a.is_none()) return kNormActNone;
  if (py::isinstance<py::str>(a)) {
    const std::string s = a.cast<std::string>();
    if (s == "relu") return kNormActRelu;
    if (s == "leaky_relu") return kNormActLeakyRelu;
  }
  throw py::value_error("activation: expected None, 'relu' or 'leaky_relu', got " + std::string(py::repr(a)));
}

void check_slope(int act, double slope, bool backward) {
  if (act != kNormActLeakyRelu) return;
  if (!std::isfinite(slope)) throw py::value_error("negative_slope: expected a finite number");
  if (backward && slope < 0)
    throw py::value_error("negative_slope: backward from the saved output y needs negative_slope >= 0");
}

void check_eps(double eps) {
  if (!(eps >= 0) || !std::isfinite(eps)) throw py::value_error("eps: expected a finite number >= 0");
}

double read_at(const ArrayView& v, int64_t i) {
  const int64_t off = v.ndim() == 0 ? 0 : i * v.strides[0];
  return v.dtype == DType::f64 ? v.ptr<double>()[off] : double(v.ptr<float>()[off]);
}
void write_at(const ArrayView& v, int64_t i, double val) {
  const int64_t off = i * v.strides[0];
  if (v.dtype == DType::f64) v.ptr<double>()[off] = val; else v.ptr<float>()[off] = float(val);
}

// A per-channel / per-column 1-D float array of length n (any float dtype, any stride), or None.
struct Vec {
  py::array arr = null_array();
  ArrayView view;
  bool present = false;
};
Vec vec_arg(const py::object& o, const char* name, int64_t n, bool required) {
  Vec v;
  if (o.is_none()) {
    if (required) throw py::value_error(std::string(name) + ": required (got None)");
    return v;
  }
  v.arr = as_array(o, name);
  v.view = view_of(v.arr, name);
  if (v.view.ndim() != 1 || v.view.shape[0] != n)
    throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(n) + ",), got " +
                          shape_str(v.view.shape));
  v.present = true;
  return v;
}
std::vector<double> to_double(const Vec& v, int64_t n, double dflt) {
  std::vector<double> r(size_t(n), dflt);
  if (v.present)
    for (int64_t i = 0; i < n; ++i) r[size_t(i)] = read_at(v.view, i);
  return r;
}

template <class T> constexpr DType dtype_of() { return sizeof(T) == 4 ? DType::f32 : DType::f64; }

// An array of exactly `shape` (any float dtype; layer-norm mean/rstd), kept alive by `keep`.
ArrayView shaped_arg(const py::object& o, const char* name, const Dims& shape, py::array& keep) {
  if (o.is_none()) throw py::value_error(std::string(name) + ": required (got None)");
  keep = as_array(o, name);
  ArrayView v = view_of(keep, name);
  if (v.shape != shape)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " + shape_str(v.shape));
  return v;
}
// Its values as T in C order: the array's own memory when it is C-contiguous of dtype T and
// does not overlap `out` (no per-call copy of a per-row vector), else a converted copy in buf.
template <class T> const T* shaped_as(const ArrayView& v, const ArrayView& out, std::vector<T>& buf) {
  if (v.dtype == dtype_of<T>() && v.c_contiguous() && !may_overlap(v, out)) return v.ptr<T>();
  buf.resize(size_t(v.size));
  const int nd = v.ndim();
  int64_t idx[Dims::kMax] = {};
  for (int64_t k = 0; k < v.size; ++k) {  // C-order walk over any strides
    int64_t off = 0;
    for (int i = 0; i < nd; ++i) off += idx[i] * v.strides[size_t(i)];
    buf[size_t(k)] = T(v.dtype == DType::f64 ? v.ptr<double>()[off] : double(v.ptr<float>()[off]));
    for (int i = nd - 1; i >= 0; --i) {
      if (++idx[i] < v.shape[size_t(i)]) break;
      idx[i] = 0;
    }
  }
  return buf.data();
}

// x viewed as (rows, d) rows with a constant row stride and unit stride along the row.
bool row_stride_of(const ArrayView& v, int first_inner, int64_t& rs) {
  const int nd = v.ndim();
  int64_t expect = 1;
  for (int i = nd - 1; i >= first_inner; --i) {  // the inner block must be C-contiguous
    if (v.shape[i] != 1 && v.strides[i] != expect) return false;
    expect *= v.shape[i];
  }
  rs = expect;
  bool have = false;
  int64_t next = 0;
  for (int i = first_inner - 1; i >= 0; --i) {  // outer dims collapse into one row index
    if (v.shape[i] == 1) continue;
    if (!have) { rs = v.strides[i]; next = v.strides[i] * v.shape[i]; have = true; continue; }
    if (v.strides[i] != next) return false;
    next = v.strides[i] * v.shape[i];
  }
  return true;
}

// Input prepared for the kernels: a row-strided view (copied to C order when needed).
struct Rows {
  py::array keep = null_array();
  ArrayView view;
  int64_t rs = 0;
};
Rows rows_of(py::array a, ArrayView v, int first_inner, const char* name) {
  Rows r;
  if (!row_stride_of(v, first_inner, r.rs)) {
    a = contiguous_copy(a);
    v = view_of(a, name);
    row_stride_of(v, first_inner, r.rs);
  }
  r.keep = a;
  r.view = v;
  return r;
}

// Destination of a result: `out` when C-contiguous, else a temporary copied back; a new array
// (out None, or the temporary) is placed apart from `input` (empty_array).
struct Dest {
  py::array result = null_array(), target = null_array();
  ArrayView view;
  bool fresh = true;  // memory new to this call (its pages are first touched by the kernel)
};
Dest dest_for(const py::object& out, DType dt, const Dims& shape, const void* input) {
  Dest d;
  bool untouched = false;  // a block reused from the result cache is not (empty_array)
  d.result = out.is_none() ? empty_array(dt, shape, input, nullptr, &untouched) : output_for(out, dt, shape);
  ArrayView v = view_of(d.result, "out");
  d.target = v.c_contiguous() ? d.result : empty_array(dt, shape, input, nullptr, &untouched);
  d.fresh = untouched;
  d.view = view_of(d.target, "out");
  return d;
}
void finish(Dest& d) {
  if (!d.target.is(d.result)) py::module_::import("numpy").attr("copyto")(d.result, d.target);
}
// The kernels read every input element before writing the destination element at the same
// index, so an input may be the destination itself; an input that overlaps it any other way
// is read from a copy taken before anything is written.
void read_apart_from(py::array& a, ArrayView& v, const ArrayView& dst, const char* name) {
  if (may_overlap(v, dst) && !same_layout(v, dst)) {
    a = contiguous_copy(a);
    v = view_of(a, name);
  }
}

// Run f(task) for tasks [0, n): in parallel for large work, inline otherwise (same results).
template <class F> void run_tasks(int64_t n, int64_t total_elems, F&& f) {
  if (total_elems < kSerialElems) {
    for (int64_t t = 0; t < n; ++t) f(t);
    return;
  }
  parallel_for_chunks(n, 1, [&](int64_t t, int64_t, int64_t) { f(t); });
}

inline void chan_merge(double& cnt, double& mean, double& m2, double nb, double mb, double m2b) {
  const double n = cnt + nb;
  if (n == 0) return;
  if (cnt == 0) {  // first part: the general update reduces to a copy (no divisions)
    mean = mb;
    m2 = m2b;
    cnt = nb;
    return;
  }
  const double delta = mb - mean;
  mean += delta * (nb / n);
  m2 += m2b + delta * delta * (cnt * nb / n);
  cnt = n;
}

// ---------------------------------------------------------------- batch norm host drivers

struct Geom {
  int64_t N = 0, C = 0, S = 1, W = 0;
  bool plane = false;
  int64_t row_grain() const {  // rows per reduction task (column path)
    int64_t g = (kTaskElems / std::max<int64_t>(W, 1)) / kNormSubRows * kNormSubRows;
    return std::max<int64_t>(kNormSubRows, g);
  }
  int64_t plane_grain() const { return std::max<int64_t>(1, kTaskElems / std::max<int64_t>(S, 1)); }
};
Geom geom_of(const ArrayView& x) {
  Geom g;
  g.N = x.shape[0];
  g.C = x.shape[1];
  for (int i = 2; i < x.ndim(); ++i) g.S *= x.shape[i];
  g.W = g.C * g.S;
  g.plane = g.S >= kPlaneMin;
  return g;
}

// Per-channel statistics of x (N rows of stride rs): mean = shift + rel (shift a value of type T,
// rel small: full precision for |mean| >> std), m2. Partials are merged in a fixed order,
// relative to the channel's first shift (differences of T values are exact in double).
template <class T>
void bn_stats(const Geom& g, const T* x, int64_t rs, std::vector<double>& shift, std::vector<double>& rel,
              std::vector<double>& m2) {
  const auto& K = kern<T>();
  shift.assign(size_t(g.C), 0.0);
  rel.assign(size_t(g.C), 0.0);
  m2.assign(size_t(g.C), 0.0);
  if (g.N * g.W == 0) return;
  auto merge = [](double& cnt, double& mu, double& q, bool& first, double& k0, double nb, double kb, double mb,
                  double qb) {
    if (first) { k0 = kb; first = false; }
    chan_merge(cnt, mu, q, nb, (kb - k0) + mb, qb);
  };
  if (!g.plane) {
    const int64_t grain = g.row_grain(), tasks = num_chunks(g.N, grain), W = g.W;
    if (tasks == 1 && g.S == 1) {  // one part per channel: the merge below would be a copy
      K.col_stats(x, rs, g.N, W, shift.data(), rel.data(), m2.data());
      return;
    }
    std::vector<double> pk(size_t(tasks * W)), pm(size_t(tasks * W)), pq(size_t(tasks * W));
    run_tasks(tasks, g.N * W, [&](int64_t t) {
      const int64_t b = t * grain, e = std::min(g.N, b + grain);
      K.col_stats(x + b * rs, rs, e - b, W, &pk[size_t(t * W)], &pm[size_t(t * W)], &pq[size_t(t * W)]);
    });
    for (int64_t c = 0; c < g.C; ++c) {
      double cnt = 0, mu = 0, q = 0, k0 = 0;
      bool first = true;
      for (int64_t s = 0; s < g.S; ++s)
        for (int64_t t = 0; t < tasks; ++t) {
          const size_t j = size_t(t * W + c * g.S + s);
          const double rows = double(std::min(g.N, (t + 1) * grain) - t * grain);
          merge(cnt, mu, q, first, k0, rows, pk[j], pm[j], pq[j]);
        }
      shift[size_t(c)] = k0; rel[size_t(c)] = mu; m2[size_t(c)] = q;
    }
  } else {
    const int64_t nb = g.plane_grain(), nch = num_chunks(g.N, nb), tasks = g.C * nch;
    std::vector<double> pk(static_cast<size_t>(tasks)), pm(static_cast<size_t>(tasks)), pq(static_cast<size_t>(tasks)),
        pc(static_cast<size_t>(tasks));
    run_tasks(tasks, g.N * g.W, [&](int64_t t) {
      const int64_t c = t / nch, k = t % nch, n0 = k * nb, n1 = std::min(g.N, n0 + nb);
      double cnt = 0, mu = 0, q = 0, k0 = 0;
      bool first = true;
      for (int64_t n = n0; n < n1; ++n) {
        double kk, m, qq;
        K.run_stats(x + n * rs + c * g.S, g.S, &kk, &m, &qq);
        merge(cnt, mu, q, first, k0, double(g.S), kk, m, qq);
      }
      pc[size_t(t)] = cnt; pk[size_t(t)] = k0; pm[size_t(t)] = mu; pq[size_t(t)] = q;
    });
    for (int64_t c = 0; c < g.C; ++c) {
      double cnt = 0, mu = 0, q = 0, k0 = 0;
      bool first = true;
      for (int64_t k = 0; k < nch; ++k) {
        const size_t i = size_t(c * nch + k);
        merge(cnt, mu, q, first, k0, pc[i], pk[i], pm[i], pq[i]);
      }
      shift[size_t(c)] = k0; rel[size_t(c)] = mu; m2[size_t(c)] = q;
    }
  }
}

// Per-channel parameters are planar: pc = [p0 x C | p1 x C | ...]. For the column kernels they
// are spread to the W = C*S columns of the (N, W) layout (one row of W values per parameter);
// with S == 1 that is pc itself (no copy on the hot path).
template <class T>
std::vector<T> per_column(const Geom& g, const std::vector<T>& pc, int k) {
  const int64_t W = g.W;
  std::vector<T> p(size_t(k * W));
  for (int64_t c = 0, j = 0; c < g.C; ++c)
    for (int64_t sp = 0; sp < g.S; ++sp, ++j)
      for (int q = 0; q < k; ++q) p[size_t(q * W + j)] = pc[size_t(q * g.C + c)];
  return p;
}
template <class T>
void channel_params(const Geom& g, const std::vector<T>& pc, int k, int64_t c, T* out) {
  for (int q = 0; q < k; ++q) out[q] = pc[size_t(q * g.C + c)];
}

template <class T>
void bn_apply(const Geom& g, const T* x, int64_t rs, T* y, const std::vector<T>& pc, int act, double slope,
              bool fresh_out) {
  const auto& K = kern<T>();
  if (g.N * g.W == 0) return;
  // Non-temporal stores into large memory already present, an `out` or a result block reused
  // from the cache (no read-for-ownership of its lines); ordinary stores into memory newly
  // mapped for this call: the kernel zeroes each fresh page on first touch, leaving it in cache. Measured on the 2-core VM, (65536, 1024) float32, medians of 12
  // interleaved calls: with `out` 24.0 (stream) vs 27.0 ms, fresh 35.9 (cached) vs 39.3 ms.
  const bool stream = !fresh_out && g.N * g.W * int64_t(sizeof(T)) >= kStreamBytes;
  if (!g.plane) {
    const int64_t W = g.W;
    const std::vector<T> spread = g.S == 1 ? std::vector<T>() : per_column(g, pc, 3);
    const T* p = g.S == 1 ? pc.data() : spread.data();
    const int64_t grain = std::max<int64_t>(1, kApplyElems / W);
    parallel_for(g.N, grain, [&](int64_t b, int64_t e) {
      K.col_apply(x + b * rs, rs, y + b * W, W, e - b, W, p, act, slope, stream);
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, kApplyElems / g.S);
    parallel_for(g.N * g.C, grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t n = i / g.C, c = i % g.C;
        T pp[3];
        channel_params(g, pc, 3, c, pp);
        K.run_apply(x + n * rs + c * g.S, y + i * g.S, g.S, pp, act, slope, stream);
      }
    });
  }
}

// Per-channel sums of g, g*(x - m), (x - m) (double).
template <class T>
void bn_bwd_reduce(const Geom& g, const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss,
                   const std::vector<T>& m, int act, double slope, std::vector<double>& out) {
  const auto& K = kern<T>();
  out.assign(size_t(3 * g.C), 0.0);
  if (g.N * g.W == 0) return;
  if (!g.plane) {
    const int64_t grain = g.row_grain(), tasks = num_chunks(g.N, grain), W = g.W;
    std::vector<T> mcol(static_cast<size_t>(W));
    for (int64_t c = 0, j = 0; c < g.C; ++c)
      for (int64_t sp = 0; sp < g.S; ++sp, ++j) mcol[size_t(j)] = m[size_t(c)];
    std::vector<double> part(size_t(tasks * 3 * W));
    run_tasks(tasks, g.N * W, [&](int64_t t) {
      const int64_t b = t * grain, e = std::min(g.N, b + grain);
      K.col_bwd_reduce(dout + b * ds, ds, x + b * xs, xs, y ? y + b * yss : nullptr, yss, e - b, W, mcol.data(),
                       &part[size_t(t * 3 * W)], act, slope);
    });
    for (int64_t c = 0; c < g.C; ++c)
      for (int q = 0; q < 3; ++q) {
        double s = 0;
        for (int64_t sp = 0; sp < g.S; ++sp)
          for (int64_t t = 0; t < tasks; ++t) s += part[size_t(t * 3 * W + q * W + c * g.S + sp)];
        out[size_t(3 * c + q)] = s;
      }
  } else {
    const int64_t nb = g.plane_grain(), nch = num_chunks(g.N, nb), tasks = g.C * nch;
    std::vector<double> part(size_t(3 * tasks));
    run_tasks(tasks, g.N * g.W, [&](int64_t t) {
      const int64_t c = t / nch, k = t % nch, n0 = k * nb, n1 = std::min(g.N, n0 + nb);
      double acc[3] = {0, 0, 0};
      for (int64_t n = n0; n < n1; ++n) {
        double o3[3];
        const int64_t off = c * g.S;
        K.run_bwd_reduce(dout + n * ds + off, x + n * xs + off, y ? y + n * yss + off : nullptr, g.S, m[size_t(c)], o3,
                         act, slope);
        for (int q = 0; q < 3; ++q) acc[q] += o3[q];
      }
      for (int q = 0; q < 3; ++q) part[size_t(3 * t + q)] = acc[q];
    });
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t k = 0; k < nch; ++k)
        for (int q = 0; q < 3; ++q) out[size_t(3 * c + q)] += part[size_t(3 * (c * nch + k) + q)];
  }
}

// dx = A*g + K*(x - mh) + B, per-channel params pc = [mh, A, K, B] x C.
template <class T>
void bn_bwd_apply(const Geom& g, const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx,
                  const std::vector<T>& pc, int act, double slope, bool fresh_out) {
  const auto& K = kern<T>();
  if (g.N * g.W == 0) return;
  // As in bn_apply: non-temporal stores only into a large existing `out`.
  const bool stream = !fresh_out && g.N * g.W * int64_t(sizeof(T)) >= kStreamBytes;
  if (!g.plane) {
    const int64_t W = g.W;
    const std::vector<T> spread = g.S == 1 ? std::vector<T>() : per_column(g, pc, 4);
    const T* p = g.S == 1 ? pc.data() : spread.data();
    const int64_t grain = std::max<int64_t>(1, kApplyElems / W);
    parallel_for(g.N, grain, [&](int64_t b, int64_t e) {
      K.col_bwd_apply(dout + b * ds, ds, x + b * xs, xs, y ? y + b * yss : nullptr, yss, dx + b * W, W, e - b, W,
                      p, act, slope, stream);
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, kApplyElems / g.S);
    parallel_for(g.N * g.C, grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t n = i / g.C, c = i % g.C, off = c * g.S;
        T pp[4];
        channel_params(g, pc, 4, c, pp);
        K.run_bwd_apply(dout + n * ds + off, x + n * xs + off, y ? y + n * yss + off : nullptr, dx + i * g.S, g.S,
                        pp, act, slope, stream);
      }
    });
  }
}

// ---------------------------------------------------------------- argument handling

struct BnInput {
  py::array x = null_array();
  ArrayView xv;
  Geom g;
};
BnInput bn_input(const py::handle& x_in, const char* name = "x") {
  BnInput b;
  b.x = as_array(x_in, name);
  b.xv = view_of(b.x, name);
  if (b.xv.ndim() < 2)
    throw py::value_error(std::string(name) + ": expected an array of shape (N, C) or (N, C, *spatial), got shape " +
                          shape_str(b.xv.shape));
  b.g = geom_of(b.xv);
  return b;
}

// Secondary input (dout, y) of the same shape and dtype as x.
std::pair<py::array, ArrayView> like_x(const py::handle& h, const char* name, const ArrayView& xv) {
  py::array a = as_array(h, name);
  ArrayView v = view_of(a, name);
  check_same_shape(xv, "x", v, name);
  check_same_dtype(xv, "x", v, name);
  return {a, v};
}

py::array vec_array(DType dt, const std::vector<double>& v) {
  py::array a = empty_array(dt, {int64_t(v.size())});
  ArrayView av = view_of(a, "result");
  for (size_t i = 0; i < v.size(); ++i) write_at(av, int64_t(i), v[i]);
  return a;
}

// ---------------------------------------------------------------- layer norm

// Layer-norm gamma/beta as T pointers for the kernel: both null when both are None; the array's
// own data when it is contiguous, of dtype T and not overlapping the output (no copy on the hot
// path); otherwise a converted copy in buf (an absent one of the pair is filled with dflt).
template <class T>
const T* ln_param(const Vec& v, const Vec& other, int64_t n, T dflt, const ArrayView& out, std::vector<T>& buf) {
  if (!v.present && !other.present) return nullptr;
  if (v.present && v.view.dtype == dtype_of<T>() && (n <= 1 || v.view.strides[0] == 1) && !may_overlap(v.view, out))
    return v.view.ptr<T>();
  buf.assign(size_t(n), dflt);
  if (v.present)
    for (int64_t i = 0; i < n; ++i) buf[size_t(i)] = T(read_at(v.view, i));
  return buf.data();
}

template <class T>
void ln_forward_run(const Rows& x, T* y, T* mean, T* rstd, const Vec& gv, const Vec& bv, const ArrayView& yv,
                    int64_t rows, int64_t d, double eps, int act, double slope) {
  const auto& K = kern<T>();
  std::vector<T> gbuf, bbuf;
  const T* gamma = ln_param<T>(gv, bv, d, T(1), yv, gbuf);
  const T* beta = ln_param<T>(bv, gv, d, T(0), yv, bbuf);
  const bool stream = rows * d * int64_t(sizeof(T)) >= kStreamBytes;
  const T* xp = x.view.ptr<T>();
  const int64_t xs = x.rs;
  py::gil_scoped_release release;
  parallel_for(rows, std::max<int64_t>(1, kApplyElems / d), [&](int64_t b, int64_t e) {
    K.ln_fwd(xp + b * xs, xs, y + b * d, d, gamma, beta, mean + b, rstd + b, e - b, d, eps, act, slope, stream);
  });
}

py::tuple layernorm_forward(const py::handle& x_in, const py::object& gamma_o, const py::object& beta_o, double eps,
                            const py::object& activation, double slope, const py::object& out) {
  py::array x = as_array(x_in, "x");
  ArrayView xv = view_of(x, "x");
  if (xv.ndim() < 1) throw py::value_error("x: expected at least one dimension (normalised over the last axis)");
  const int64_t d = xv.shape.back();
  if (d == 0) throw py::value_error("x: the last axis (normalised over) is empty");
  const int act = parse_activation(activation);
  check_slope(act, slope, false);
  check_eps(eps);
  Vec gv = vec_arg(gamma_o, "gamma", d, false), bv = vec_arg(beta_o, "beta", d, false);
  Dest dst = dest_for(out, xv.dtype, xv.shape, xv.data);
  read_apart_from(x, xv, dst.view, "x");
  Rows xr = rows_of(x, xv, xv.ndim() - 1, "x");
  const int64_t rows = xv.size / d;
  const Dims sshape(xv.shape.begin(), xv.shape.end() - 1);
  py::array mean = empty_array(xv.dtype, sshape), rstd = empty_array(xv.dtype, sshape);
  if (xv.dtype == DType::f32)
    ln_forward_run<float>(xr, dst.view.ptr<float>(), static_cast<float*>(mean.mutable_data()),
                          static_cast<float*>(rstd.mutable_data()), gv, bv, dst.view, rows, d, eps, act, slope);
  else
    ln_forward_run<double>(xr, dst.view.ptr<double>(), static_cast<double*>(mean.mutable_data()),
                           static_cast<double*>(rstd.mutable_data()), gv, bv, dst.view, rows, d, eps, act, slope);
  finish(dst);
  return py::make_tuple(dst.result, mean, rstd);
}

template <class T>
void ln_backward_run(const Rows& dr, const Rows& xr, const Rows* yr, const std::vector<T>& gamma, const T* mean,
                     const T* rstd, T* dx, bool want_params, int64_t rows, int64_t d, int act, double slope,
                     std::vector<double>& dg, std::vector<double>& db) {
  const auto& K = kern<T>();
  const bool stream = rows * d * int64_t(sizeof(T)) >= kStreamBytes;
  const int64_t grain = std::max<int64_t>(1, kTaskElems / d);
  const int64_t tasks = num_chunks(rows, grain);
  std::vector<double> part(want_params ? size_t(tasks * 2 * d) : 0);
  std::vector<T> scratch(want_params ? size_t(tasks * 2 * d) : 0);
  const T* dp = dr.view.ptr<T>();
  const T* xp = xr.view.ptr<T>();
  const T* yp = yr ? yr->view.ptr<T>() : nullptr;
  const int64_t ds = dr.rs, xs = xr.rs, yss = yr ? yr->rs : 0;
  {
    py::gil_scoped_release release;
    parallel_for_chunks(rows, grain, [&](int64_t t, int64_t b, int64_t e) {
      K.ln_bwd(dp + b * ds, ds, xp + b * xs, xs, yp ? yp + b * yss : nullptr, yss, gamma.data(), mean + b, rstd + b, dx + b * d, d, want_params ? &part[size_t(t * 2 * d)] : nullptr,
               want_params ? &scratch[size_t(t * 2 * d)] : nullptr, e - b, d, act, slope, stream);
    });
  }
  dg.assign(size_t(d), 0.0);
  db.assign(size_t(d), 0.0);
  if (want_params)
    for (int64_t t = 0; t < tasks; ++t)
      for (int64_t j = 0; j < d; ++j) {
        dg[size_t(j)] += part[size_t(t * 2 * d + j)];
        db[size_t(j)] += part[size_t(t * 2 * d + d + j)];
      }
}

py::tuple layernorm_backward(const py::handle& dout_in, const py::handle& x_in, const py::object& gamma_o,
                             const py::object& mean_o, const py::object& rstd_o, const py::object& activation,
                             const py::object& y_o, double slope, const py::object& out) {
  py::array x = as_array(x_in, "x");
  ArrayView xv = view_of(x, "x");
  if (xv.ndim() < 1) throw py::value_error("x: expected at least one dimension (normalised over the last axis)");
  auto [dout, dv] = like_x(dout_in, "dout", xv);
  const int64_t d = xv.shape.back();
  if (d == 0) throw py::value_error("x: the last axis (normalised over) is empty");
  const int act = parse_activation(activation);
  check_slope(act, slope, true);
  Vec gv = vec_arg(gamma_o, "gamma", d, false);
  const Dims sshape(xv.shape.begin(), xv.shape.end() - 1);
  py::array mean_a = null_array(), rstd_a = null_array();
  const ArrayView mv = shaped_arg(mean_o, "mean", sshape, mean_a), rv = shaped_arg(rstd_o, "rstd", sshape, rstd_a);
  py::array y = null_array();
  ArrayView yv;
  if (act != kNormActNone) {
    if (y_o.is_none()) throw py::value_error("y: the saved forward output is required when activation is given");
    std::tie(y, yv) = like_x(y_o, "y", xv);
  }
  Dest dst = dest_for(out, xv.dtype, xv.shape, xv.data);
  read_apart_from(dout, dv, dst.view, "dout");
  read_apart_from(x, xv, dst.view, "x");
  if (act != kNormActNone) read_apart_from(y, yv, dst.view, "y");
  Rows dr = rows_of(dout, dv, dv.ndim() - 1, "dout"), xr = rows_of(x, xv, xv.ndim() - 1, "x");
  Rows yr;
  if (act != kNormActNone) yr = rows_of(y, yv, yv.ndim() - 1, "y");
  const int64_t rows = xv.size / d;
  const std::vector<double> gd = to_double(gv, d, 1.0);
  std::vector<double> dg, db;
  if (xv.dtype == DType::f32) {
    std::vector<float> g(gd.begin(), gd.end()), mb, rb;
    ln_backward_run<float>(dr, xr, act ? &yr : nullptr, g, shaped_as<float>(mv, dst.view, mb),
                           shaped_as<float>(rv, dst.view, rb), dst.view.ptr<float>(), gv.present, rows, d, act, slope,
                           dg, db);
  } else {
    std::vector<double> mb, rb;
    ln_backward_run<double>(dr, xr, act ? &yr : nullptr, gd, shaped_as<double>(mv, dst.view, mb),
                            shaped_as<double>(rv, dst.view, rb), dst.view.ptr<double>(), gv.present, rows, d, act,
                            slope, dg, db);
  }
  finish(dst);
  if (!gv.present) return py::make_tuple(dst.result, py::none(), py::none());
  return py::make_tuple(dst.result, vec_array(xv.dtype, dg), vec_array(xv.dtype, db));
}

// ---------------------------------------------------------------- batch norm entry points

// Forward params of one channel, planar (stride C): mh, scale = gamma * rstd, shift.
template <class T>
inline void forward_channel(double hi, double lo, T rstd, double gamma, double beta, T* p, size_t C) {
  const T mh = T(hi);
  const double ml = lo + (hi - double(mh)), sc = gamma * double(rstd);
  p[0] = mh;
  p[C] = T(sc);
  p[2 * C] = T(beta - ml * sc);
}

// Forward params [mh | scale | shift] (planar) from a double mean and the T-rounded rstd.
// The mean is given as hi + lo (lo may be zero); mh = T(hi) and the rest of the mean,
// ml = lo + (hi - mh), goes into the shift: y = (x - mh) * scale + (beta - ml * scale).
template <class T>
std::vector<T> forward_params(const std::vector<double>& hi, const std::vector<double>& lo, const std::vector<T>& rstd,
                              const std::vector<double>& gamma, const std::vector<double>& beta) {
  const size_t C = hi.size();
  std::vector<T> pc(3 * C);
  for (size_t c = 0; c < C; ++c) forward_channel<T>(hi[c], lo[c], rstd[c], gamma[c], beta[c], &pc[c], C);
  return pc;
}

template <class T>
void bn_normalize_run(const Geom& g, const Rows& xr, T* y, const std::vector<double>& hi, const std::vector<double>& lo,
                      const std::vector<double>& rstd_d, const std::vector<double>& gamma,
                      const std::vector<double>& beta, int act, double slope, bool fresh_out) {
  std::vector<T> rs(rstd_d.begin(), rstd_d.end());
  const std::vector<T> pc = forward_params<T>(hi, lo, rs, gamma, beta);
  py::gil_scoped_release release;
  bn_apply<T>(g, xr.view.ptr<T>(), xr.rs, y, pc, act, slope, fresh_out);
}

template <class T>
void bn_stats_run(const Geom& g, const Rows& xr, std::vector<double>& hi, std::vector<double>& lo,
                  std::vector<double>& m2) {
  py::gil_scoped_release release;
  bn_stats<T>(g, xr.view.ptr<T>(), xr.rs, hi, lo, m2);
}

// Channels whose fast statistics cannot be right (wide_needed, cpu/normalization.hpp) are redone
// by wide_stats: hi becomes the centre the kernels subtract (a T value, chosen so that x - hi
// cannot overflow), lo = mean - hi, m2 the wide M2 rounded to double. Where that overflows or
// underflows (float64 data beyond ~1e154 or below ~1e-154), var (empty otherwise: no per-channel
// long double work on the normal path; -1 for the other channels) receives the channel's biased
// variance in long double, in range for any finite data.
// Empty channels (count 0) are left as they are.
template <class T>
void bn_wide_channels(const Geom& g, const Rows& xr, double eps, std::vector<double>& hi, std::vector<double>& lo,
                      std::vector<double>& m2, std::vector<long double>& var) {
  const int64_t count = g.N * g.S;
  var.clear();
  if (count == 0) return;
  const T* x = xr.view.ptr<T>();
  const int64_t rs = xr.rs, S = g.S;
  if (__builtin_expect(!kern<T>().any_outside(m2.data(), g.C, wide_floor<T>(double(count), eps)), 1)) return;
  for (int64_t c = 0; c < g.C; ++c) {
    const size_t k = size_t(c);
    if (!wide_needed<T>(m2[k], m2[k] / double(count), lo[k], eps)) continue;
    const T* xc = x + c * S;
    const WideStats<T> w = wide_stats<T>(count, [xc, rs, S](int64_t i) { return xc[(i / S) * rs + i % S]; });
    if (!w.finite) continue;
    const T mh = wide_center<T>(w);
    hi[k] = double(mh);
    lo[k] = double(w.mean - WideOf<T>(mh));
    m2[k] = double(w.m2);
    if (!(m2[k] <= std::numeric_limits<double>::max()) || (m2[k] < std::numeric_limits<double>::min() && w.m2 > 0)) {
      if (var.empty()) var.assign(size_t(g.C), -1.0L);  // -1: not set (the double m2 is exact enough)
      var[k] = w.m2 / count;
    }
  }
}

void stats_dispatch(const Geom& g, const Rows& xr, std::vector<double>& hi, std::vector<double>& lo,
                    std::vector<double>& m2, double eps, std::vector<long double>& var) {
  if (xr.view.dtype == DType::f32) {
    bn_stats_run<float>(g, xr, hi, lo, m2);
    bn_wide_channels<float>(g, xr, eps, hi, lo, m2, var);
  } else {
    bn_stats_run<double>(g, xr, hi, lo, m2);
    bn_wide_channels<double>(g, xr, eps, hi, lo, m2, var);
  }
}

void normalize_dispatch(const Geom& g, const Rows& xr, const Dest& dst, const std::vector<double>& hi,
                        const std::vector<double>& lo, const std::vector<double>& rstd,
                        const std::vector<double>& gamma, const std::vector<double>& beta, int act, double slope) {
  if (xr.view.dtype == DType::f32)
    bn_normalize_run<float>(g, xr, dst.view.ptr<float>(), hi, lo, rstd, gamma, beta, act, slope, dst.fresh);
  else
    bn_normalize_run<double>(g, xr, dst.view.ptr<double>(), hi, lo, rstd, gamma, beta, act, slope, dst.fresh);
}


// Everything per channel after the statistics in one loop (mean, rstd rounded to T, the
// planar kernel parameters, the returned arrays), then the normalise pass, then the running
// statistics: few allocations and no per-element dtype dispatch, since at small sizes
// (32 x 256) this host work is a large part of the call.
template <class T>
py::tuple bn_forward_typed(const Geom& g, const Rows& xr, Dest& dst, bool training, const Vec& gv, const Vec& bv,
                           const Vec& rm, const Vec& rv, double momentum, double eps, bool unbiased, int act,
                           double slope) {
  const int64_t C = g.C, count = g.N * g.S;
  const size_t Cs = size_t(C);
  std::vector<double> hi, lo, m2;
  std::vector<long double> wvar;
  if (training) stats_dispatch(g, xr, hi, lo, m2, eps, wvar);
  py::array mean_a = empty_array(dtype_of<T>(), {C}), rstd_a = empty_array(dtype_of<T>(), {C});
  T* mean_o = static_cast<T*>(mean_a.mutable_data());
  T* rstd_o = static_cast<T*>(rstd_a.mutable_data());
  std::vector<T> pc(3 * Cs);
  for (int64_t c = 0; c < C; ++c) {
    const size_t k = size_t(c);
    const double h = training ? hi[k] : read_at(rm.view, c);
    const double l = training ? lo[k] : 0.0;
    // long double only where a channel's variance needs it (wide statistics): same bits otherwise
    const bool wide = training && !wvar.empty() && wvar[k] >= 0;
    const T rs = wide
                     ? T(1.0L / std::sqrt(wvar[k] + (long double)eps))
                     : T(1.0 / std::sqrt((training ? m2[k] / double(count) : read_at(rv.view, c)) + eps));
    mean_o[c] = T(h + l);
    rstd_o[c] = rs;
    forward_channel<T>(h, l, rs, gv.present ? read_at(gv.view, c) : 1.0, bv.present ? read_at(bv.view, c) : 0.0,
                       &pc[k], Cs);
  }
  {
    py::gil_scoped_release release;
    bn_apply<T>(g, xr.view.ptr<T>(), xr.rs, dst.view.ptr<T>(), pc, act, slope, dst.fresh);
  }
  finish(dst);
  if (training && rm.present) {
    for (int64_t c = 0; c < C; ++c) {
      const size_t k = size_t(c);
      const bool wide = !wvar.empty() && wvar[k] >= 0;  // as for rs above
      const long double var = wide ? wvar[k] : (long double)(m2[k] / double(count));
      const double vu = (unbiased && count > 1)
                            ? (wide ? double(var * count / (count - 1)) : m2[k] / double(count - 1))
                            : double(var);
      write_at(rm.view, c, (1.0 - momentum) * read_at(rm.view, c) + momentum * (hi[k] + lo[k]));
      write_at(rv.view, c, (1.0 - momentum) * read_at(rv.view, c) + momentum * vu);
    }
  }
  return py::make_tuple(dst.result, mean_a, rstd_a);
}

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

// Running statistics are updated in place after y is written: each must be a writeable NumPy
// array of its own (a list or another array-like would be converted to a temporary and the
// update lost), apart from the other one (updated twice otherwise) and from every other array
// of the call (the update would read a written y, or write into an input). `arrays`: (view, name)
// of the other operands, null for an absent one.
void check_running_stats(const py::object& rm_o, const Vec& rm, const py::object& rv_o, const Vec& rv,
                         std::initializer_list<std::pair<const ArrayView*, const char*>> arrays) {
  const std::pair<const py::object*, const Vec*> stats[2] = {{&rm_o, &rm}, {&rv_o, &rv}};
  const char* names[2] = {"running_mean", "running_var"};
  for (int k = 0; k < 2; ++k) {
    const char* name = names[k];
    if (!py::isinstance<py::array>(*stats[k].first))
      throw py::type_error(std::string(name) + ": expected a writeable NumPy array (updated in place in training "
                           "mode), got " + std::string(py::str(py::type::of(*stats[k].first).attr("__name__"))));
    const ArrayView& v = stats[k].second->view;
    if (!v.writeable) throw py::value_error(std::string(name) + ": array is read-only (updated in place in training mode)");
    for (const auto& a : arrays)
      if (a.first && may_overlap(v, *a.first))
        throw py::value_error(std::string(name) + ": shares memory with " + a.second +
                              " (updated in place after " + a.second + " is read or written)");
  }
  if (may_overlap(rm.view, rv.view))
    throw py::value_error("running_var: shares memory with running_mean (each is updated in place)");
}

py::tuple batchnorm_forward(const py::handle& x_in, const py::object& gamma_o, const py::object& beta_o, bool training,
                            const py::object& rm_o, const py::object& rv_o, double momentum, double eps,
                            bool unbiased, const py::object& activation, double slope, const py::object& out) {
  BnInput in = bn_input(x_in);
  const Geom& g = in.g;
  const int act = parse_activation(activation);
  check_slope(act, slope, false);
  check_eps(eps);
  if (!std::isfinite(momentum)) throw py::value_error("momentum: expected a finite number");
  Vec gv = vec_arg(gamma_o, "gamma", g.C, false), bv = vec_arg(beta_o, "beta", g.C, false);
  Vec rm = vec_arg(rm_o, "running_mean", g.C, !training), rv = vec_arg(rv_o, "running_var", g.C, !training);
  if (rm.present != rv.present)
    throw py::value_error(rm.present ? "running_var: required when running_mean is given"
                                     : "running_mean: required when running_var is given");
  if (training) check_training_count(g.N * g.S, g.C, in.xv.shape);
  Dest dst = dest_for(out, in.xv.dtype, in.xv.shape, in.xv.data);
  if (training && rm.present) {
    const ArrayView outv = view_of(dst.result, "out");
    check_running_stats(rm_o, rm, rv_o, rv,
                        {{&in.xv, "x"}, {&outv, "out"}, {gv.present ? &gv.view : nullptr, "gamma"},
                         {bv.present ? &bv.view : nullptr, "beta"}});
  }
  py::array x = in.x;
  ArrayView xv = in.xv;
  read_apart_from(x, xv, dst.view, "x");
  Rows xr = rows_of(x, xv, 1, "x");
  if (xv.dtype == DType::f32)
    return bn_forward_typed<float>(g, xr, dst, training, gv, bv, rm, rv, momentum, eps, unbiased, act, slope);
  return bn_forward_typed<double>(g, xr, dst, training, gv, bv, rm, rv, momentum, eps, unbiased, act, slope);
}

py::tuple batchnorm_stats(const py::handle& x_in) {
  BnInput in = bn_input(x_in);
  Rows xr = rows_of(in.x, in.xv, 1, "x");
  std::vector<double> hi, lo, m2;
  std::vector<long double> var;
  stats_dispatch(in.g, xr, hi, lo, m2, 0.0, var);
  std::vector<double> mean(hi.size());
  for (size_t c = 0; c < hi.size(); ++c) mean[c] = hi[c] + lo[c];
  return py::make_tuple(py::int_(in.g.N * in.g.S), vec_array(DType::f64, mean), vec_array(DType::f64, m2));
}

// Chan et al.'s parallel update of per-part (count, mean, m2), parts merged in order (the same
// chan_merge as the statistics of batchnorm_stats); parts with count 0 leave a channel as it is.
// Small host-side arrays: read as float64 values (as_float64 refuses non-real input).
py::tuple batchnorm_merge_stats(const py::handle& counts_in, const py::handle& means_in, const py::handle& m2s_in) {
  const py::array means = as_float64(means_in, "means"), m2s = as_float64(m2s_in, "m2s");
  const py::array counts = as_float64(counts_in, "counts");
  if (means.ndim() != 2)
    throw py::value_error("means: expected shape (P, C), got " + shape_str(Dims(means.shape(), means.shape() + means.ndim())));
  const Dims shape(means.shape(), means.shape() + 2);
  const Dims m2_shape(m2s.shape(), m2s.shape() + m2s.ndim()), c_shape(counts.shape(), counts.shape() + counts.ndim());
  if (m2_shape != shape)
    throw py::value_error("m2s: expected the shape of means " + shape_str(shape) + ", got " + shape_str(m2_shape));
  const int64_t P = shape[0], C = shape[1];
  const bool per_channel = c_shape == shape;
  if (!per_channel && c_shape != Dims{P})
    throw py::value_error("counts: expected shape (" + std::to_string(P) + ",) or " + shape_str(shape) + ", got " +
                          shape_str(c_shape));
  if (P == 0) throw py::value_error("counts: expected statistics of at least one part, got P = 0");
  const double* cp = static_cast<const double*>(counts.data());
  const double* mp = static_cast<const double*>(means.data());
  const double* qp = static_cast<const double*>(m2s.data());
  const int64_t nc = per_channel ? P * C : P;
  for (int64_t i = 0; i < nc; ++i)
    if (!(cp[i] >= 0) || !std::isfinite(cp[i]))
      throw py::value_error("counts: expected finite non-negative counts, got " + std::string(py::str(py::float_(cp[i]))));
  // A sum of squared deviations is never negative (NaN, from NaN data, propagates as it is).
  for (int64_t i = 0; i < P * C; ++i)
    if (qp[i] < 0)
      throw py::value_error("m2s: expected non-negative sums of squared deviations, got " +
                            std::string(py::str(py::float_(qp[i]))) + " at index " + std::to_string(i));
  std::vector<double> n(size_t(C), 0.0), mean(size_t(C), 0.0), m2(size_t(C), 0.0);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t c = 0; c < C; ++c) {
      const double nb = per_channel ? cp[p * C + c] : cp[p];
      if (nb > 0) chan_merge(n[size_t(c)], mean[size_t(c)], m2[size_t(c)], nb, mp[p * C + c], qp[p * C + c]);
    }
  py::object count;
  if (per_channel) {
    count = vec_array(DType::f64, n);
  } else {
    double total = 0;
    for (int64_t p = 0; p < P; ++p) total += cp[p];
    count = py::int_(std::llround(total));
  }
  return py::make_tuple(count, vec_array(DType::f64, mean), vec_array(DType::f64, m2));
}

py::array batchnorm_normalize(const py::handle& x_in, const py::object& mean_o, const py::object& rstd_o,
                              const py::object& gamma_o, const py::object& beta_o, const py::object& activation,
                              double slope, const py::object& out) {
  BnInput in = bn_input(x_in);
  const Geom& g = in.g;
  const int act = parse_activation(activation);
  check_slope(act, slope, false);
  Vec mv = vec_arg(mean_o, "mean", g.C, true), rv = vec_arg(rstd_o, "rstd", g.C, true);
  Vec gv = vec_arg(gamma_o, "gamma", g.C, false), bv = vec_arg(beta_o, "beta", g.C, false);
  Dest dst = dest_for(out, in.xv.dtype, in.xv.shape, in.xv.data);
  py::array x = in.x;
  ArrayView xv = in.xv;
  read_apart_from(x, xv, dst.view, "x");
  Rows xr = rows_of(x, xv, 1, "x");
  normalize_dispatch(g, xr, dst, to_double(mv, g.C, 0.0), std::vector<double>(size_t(g.C), 0.0),
                     to_double(rv, g.C, 1.0), to_double(gv, g.C, 1.0), to_double(bv, g.C, 0.0), act, slope);
  finish(dst);
  return dst.result;
}

// Shared by the fused and the separable backward.
struct BwdInputs {
  BnInput in;
  py::array dout = null_array(), y = null_array();
  ArrayView dv, yv;
  int act = 0;
  Rows dr, xr, yr;
};
BwdInputs bwd_inputs(const py::handle& dout_in, const py::handle& x_in, const py::object& activation,
                     const py::object& y_o, double slope) {
  BwdInputs b;
  b.in = bn_input(x_in);
  std::tie(b.dout, b.dv) = like_x(dout_in, "dout", b.in.xv);
  b.act = parse_activation(activation);
  check_slope(b.act, slope, true);
  if (b.act != kNormActNone) {
    if (y_o.is_none()) throw py::value_error("y: the saved forward output is required when activation is given");
    std::tie(b.y, b.yv) = like_x(y_o, "y", b.in.xv);
  }
  return b;
}
void bwd_rows(BwdInputs& b) {
  b.dr = rows_of(b.dout, b.dv, 1, "dout");
  b.xr = rows_of(b.in.x, b.in.xv, 1, "x");
  if (b.act != kNormActNone) b.yr = rows_of(b.y, b.yv, 1, "y");
}

template <class T>
std::vector<double> reduce_run(BwdInputs& b, const std::vector<T>& m, double slope) {
  std::vector<double> out;
  py::gil_scoped_release release;
  bn_bwd_reduce<T>(b.in.g, b.dr.view.ptr<T>(), b.dr.rs, b.xr.view.ptr<T>(), b.xr.rs,
                   b.act ? b.yr.view.ptr<T>() : nullptr, b.yr.rs, m, b.act, slope, out);
  return out;
}

template <class T>
void elemt_run(BwdInputs& b, T* dx, bool fresh_dx, const std::vector<T>& pc, double slope) {
  py::gil_scoped_release release;
  bn_bwd_apply<T>(b.in.g, b.dr.view.ptr<T>(), b.dr.rs, b.xr.view.ptr<T>(), b.xr.rs,
                  b.act ? b.yr.view.ptr<T>() : nullptr, b.yr.rs, dx, pc, b.act, slope, fresh_dx);
}

// dx params [mh, A, K, B] for dx = A*g + K*(x - mh) + B with A = gamma*rstd,
// K = -A*rstd*sum_gxhat/count, B = -A*sum_g/count - K*ml (mean = mh + ml, ml folded in).
template <class T>
std::vector<T> elemt_params(const std::vector<double>& mh_d, const std::vector<double>& ml_d, const std::vector<double>& gamma,
                            const std::vector<double>& rstd, const std::vector<double>& sg, const std::vector<double>& sgxh,
                            double count) {
  const size_t C = gamma.size();
  std::vector<T> pc(4 * C);
  for (size_t c = 0; c < C; ++c) {
    const double A = gamma[c] * rstd[c], K = -A * rstd[c] * sgxh[c] / count;
    pc[c] = T(mh_d[c]);
    pc[C + c] = T(A);
    pc[2 * C + c] = T(K);
    pc[3 * C + c] = T(-A * sg[c] / count - K * ml_d[c]);  // B with the mean's low part ml folded in
  }
  return pc;
}

// ---- extreme magnitudes in the backward (see wide_needed, cpu/normalization.hpp)
// The float block sums of g * (x - m) overflow for |x - m| * |g| near max, and the dx coefficient
// K = -gamma * rstd^2 * sum_dout_xhat / count leaves T's normal range when the std is beyond
// ~1e19 (float32): the xhat term of dx would be lost. Such channels are redone in WideOf<T>.
template <class T> bool bn_bwd_wide(const double* red3, double K) {
  const double aK = std::fabs(K);
  return !(std::fabs(red3[0]) + std::fabs(red3[1]) + std::fabs(red3[2]) <= std::numeric_limits<double>::max()) ||
         (aK != 0 && (aK < double(std::numeric_limits<T>::min()) || aK > double(std::numeric_limits<T>::max())));
}
// Element i of channel c (i over the N * S values) of a row-strided (N, C*S) operand.
inline int64_t chan_off(const Geom& g, int64_t rs, int64_t c, int64_t i) { return (i / g.S) * rs + c * g.S + i % g.S; }
template <class T> T bwd_grad(const BwdInputs& b, int64_t c, int64_t i, T slope) {
  const T d = b.dr.view.ptr<T>()[chan_off(b.in.g, b.dr.rs, c, i)];
  if (b.act == kNormActNone) return d;
  const T yv = b.yr.view.ptr<T>()[chan_off(b.in.g, b.yr.rs, c, i)];
  return yv > T(0) ? d : (b.act == kNormActRelu ? T(0) : d * slope);
}
// Wide sums of channel c around m: [sum g | sum g*(x - m) | sum (x - m)].
template <class T> void bn_wide_sums(const BwdInputs& b, int64_t c, WideOf<T> m, T slope, WideOf<T>* out3) {
  using W = WideOf<T>;
  const int64_t count = b.in.g.N * b.in.g.S;
  const T* x = b.xr.view.ptr<T>();
  W a = 0, bb = 0, e = 0;
  for (int64_t i = 0; i < count; ++i) {
    const W gi = W(bwd_grad<T>(b, c, i, slope)), xm = W(x[chan_off(b.in.g, b.xr.rs, c, i)]) - m;
    a += gi; bb += gi * xm; e += xm;
  }
  out3[0] = a; out3[1] = bb; out3[2] = e;
}
// dx of channel c, dx = gamma * rstd * (g - sg / count - xhat * sgxh / count) with xhat = (x - m) * rstd,
// into buf (C order over the channel's values).
template <class T>
void bn_wide_dx(const BwdInputs& b, int64_t c, WideOf<T> m, WideOf<T> gamma, WideOf<T> rstd, WideOf<T> sg,
                WideOf<T> sgxh, WideOf<T> count, T slope, std::vector<T>& buf) {
  using W = WideOf<T>;
  const int64_t n = b.in.g.N * b.in.g.S;
  const T* x = b.xr.view.ptr<T>();
  buf.resize(size_t(n));
  const W ma = sg / count, k = sgxh / count;
  for (int64_t i = 0; i < n; ++i) {
    const W xhat = (W(x[chan_off(b.in.g, b.xr.rs, c, i)]) - m) * rstd;
    buf[size_t(i)] = T(gamma * rstd * (W(bwd_grad<T>(b, c, i, slope)) - ma - xhat * k));
  }
}
template <class T> void bn_scatter_channel(const Geom& g, T* dx, int64_t c, const std::vector<T>& buf) {
  for (int64_t i = 0; i < g.N * g.S; ++i) dx[chan_off(g, g.W, c, i)] = buf[size_t(i)];
}

template <class T>
py::tuple bn_backward_typed(BwdInputs& b, Dest& dst, const Vec& gv, const std::vector<double>& mean_d,
                            const std::vector<double>& rstd, double slope) {
  using W = WideOf<T>;
  const Geom& g = b.in.g;
  const size_t C = size_t(g.C);
  std::vector<T> mh(C);
  std::vector<double> mhd(C);
  for (size_t c = 0; c < C; ++c) { mh[c] = T(mean_d[c]); mhd[c] = double(mh[c]); }
  const std::vector<double> red = reduce_run<T>(b, mh, slope);
  const double count = double(g.N * g.S);
  const std::vector<double> gamma = to_double(gv, g.C, 1.0);
  std::vector<double> sg(C), sgxh(C), ml(C);
  std::vector<int64_t> wide;  // channels redone in WideOf<T>, their dx kept in bufs until the fast pass is done
  std::vector<std::vector<T>> bufs;
  for (size_t c = 0; c < C; ++c) {
    // Residual of the stored mean (c = mean(x - mh)) is folded back in: accuracy at large |mean|.
    const double cres = count > 0 ? red[3 * c + 2] / count : 0.0;
    ml[c] = cres;
    sg[c] = red[3 * c];
    sgxh[c] = (red[3 * c + 1] - cres * red[3 * c]) * rstd[c];
    if (count > 0 && __builtin_expect(bn_bwd_wide<T>(&red[3 * c], -gamma[c] * rstd[c] * rstd[c] * sgxh[c] / count), 0)) {
      W s3[3];
      bn_wide_sums<T>(b, int64_t(c), W(mh[c]), T(slope), s3);
      const W cw = s3[2] / W(count);
      const W sgxh_w = (s3[1] - cw * s3[0]) * W(rstd[c]);
      sg[c] = double(s3[0]);
      sgxh[c] = double(sgxh_w);
      ml[c] = 0;  // this channel's fast dx is replaced below
      wide.push_back(int64_t(c));
      bufs.emplace_back();
      bn_wide_dx<T>(b, int64_t(c), W(mh[c]) + cw, W(gamma[c]), W(rstd[c]), s3[0], sgxh_w, W(count), T(slope),
                    bufs.back());
    }
  }
  if (count > 0) {
    const std::vector<T> pc = elemt_params<T>(mhd, ml, gamma, rstd, sg, sgxh, count);
    elemt_run<T>(b, dst.view.ptr<T>(), dst.fresh, pc, slope);
    for (size_t k = 0; k < wide.size(); ++k) bn_scatter_channel<T>(g, dst.view.ptr<T>(), wide[k], bufs[k]);
  }
  finish(dst);
  if (!gv.present) return py::make_tuple(dst.result, py::none(), py::none());
  return py::make_tuple(dst.result, vec_array(b.in.xv.dtype, sgxh), vec_array(b.in.xv.dtype, sg));
}

py::tuple batchnorm_backward(const py::handle& dout_in, const py::handle& x_in, const py::object& gamma_o,
                             const py::object& mean_o, const py::object& rstd_o, const py::object& activation,
                             const py::object& y_o, double slope, const py::object& out) {
  BwdInputs b = bwd_inputs(dout_in, x_in, activation, y_o, slope);
  const int64_t C = b.in.g.C;
  Vec gv = vec_arg(gamma_o, "gamma", C, false);
  Vec mv = vec_arg(mean_o, "mean", C, true), rv = vec_arg(rstd_o, "rstd", C, true);
  Dest dst = dest_for(out, b.in.xv.dtype, b.in.xv.shape, b.in.xv.data);
  read_apart_from(b.dout, b.dv, dst.view, "dout");
  read_apart_from(b.in.x, b.in.xv, dst.view, "x");
  if (b.act != kNormActNone) read_apart_from(b.y, b.yv, dst.view, "y");
  bwd_rows(b);
  const std::vector<double> mean = to_double(mv, C, 0.0), rstd = to_double(rv, C, 1.0);
  if (b.in.xv.dtype == DType::f32) return bn_backward_typed<float>(b, dst, gv, mean, rstd, slope);
  return bn_backward_typed<double>(b, dst, gv, mean, rstd, slope);
}

template <class T>
py::tuple reduce_typed(BwdInputs& b, const std::vector<double>& mean, const std::vector<double>& rstd, double slope) {
  const size_t C = size_t(b.in.g.C);
  std::vector<T> mh(C);
  for (size_t c = 0; c < C; ++c) mh[c] = T(mean[c]);
  const std::vector<double> red = reduce_run<T>(b, mh, slope);
  std::vector<double> sg(C), sgxh(C);
  for (size_t c = 0; c < C; ++c) {
    // sum g*(x - mean) = sum g*(x - mh) - (mean - mh) * sum g   (exact split of the given mean)
    sg[c] = red[3 * c];
    sgxh[c] = (red[3 * c + 1] - (mean[c] - double(mh[c])) * red[3 * c]) * rstd[c];
    if (__builtin_expect(bn_bwd_wide<T>(&red[3 * c], 0.0), 0)) {  // float block sums overflowed: wide sums
      WideOf<T> s3[3];
      bn_wide_sums<T>(b, int64_t(c), WideOf<T>(mean[c]), T(slope), s3);
      sg[c] = double(s3[0]);
      sgxh[c] = double(s3[1] * WideOf<T>(rstd[c]));
    }
  }
  return py::make_tuple(vec_array(b.in.xv.dtype, sg), vec_array(b.in.xv.dtype, sgxh));
}

py::tuple batchnorm_backward_reduce(const py::handle& dout_in, const py::handle& x_in, const py::object& mean_o,
                                    const py::object& rstd_o, const py::object& activation, const py::object& y_o,
                                    double slope) {
  BwdInputs b = bwd_inputs(dout_in, x_in, activation, y_o, slope);
  const int64_t C = b.in.g.C;
  Vec mv = vec_arg(mean_o, "mean", C, true), rv = vec_arg(rstd_o, "rstd", C, true);
  bwd_rows(b);
  const std::vector<double> mean = to_double(mv, C, 0.0), rstd = to_double(rv, C, 1.0);
  if (b.in.xv.dtype == DType::f32) return reduce_typed<float>(b, mean, rstd, slope);
  return reduce_typed<double>(b, mean, rstd, slope);
}

template <class T>
void elemt_typed(BwdInputs& b, py::array& dx, const std::vector<double>& mean, const std::vector<double>& gamma,
                 const std::vector<double>& rstd, const std::vector<double>& sg, const std::vector<double>& sgxh,
                 double count, double slope) {
  const size_t C = size_t(b.in.g.C);
  std::vector<double> mh(C), ml(C);
  for (size_t c = 0; c < C; ++c) {
    mh[c] = double(T(mean[c]));
    ml[c] = mean[c] - mh[c];
  }
  const std::vector<T> pc = elemt_params<T>(mh, ml, gamma, rstd, sg, sgxh, count);
  elemt_run<T>(b, static_cast<T*>(dx.mutable_data()), true, pc, slope);
  // Channels whose dx coefficient K leaves T's normal range (std beyond ~1e19 in float32) are
  // recomputed in the wide type over the fresh dx (see bn_bwd_wide).
  const double zero3[3] = {0, 0, 0};
  std::vector<T> buf;
  for (size_t c = 0; c < C; ++c)
    if (__builtin_expect(bn_bwd_wide<T>(zero3, -gamma[c] * rstd[c] * rstd[c] * sgxh[c] / count), 0)) {
      using W = WideOf<T>;
      bn_wide_dx<T>(b, int64_t(c), W(mean[c]), W(gamma[c]), W(rstd[c]), W(sg[c]), W(sgxh[c]), W(count), T(slope), buf);
      bn_scatter_channel<T>(b.in.g, static_cast<T*>(dx.mutable_data()), int64_t(c), buf);
    }
}

py::array batchnorm_backward_elemt(const py::handle& dout_in, const py::handle& x_in, const py::object& gamma_o,
                                   const py::object& mean_o, const py::object& rstd_o, const py::object& sg_o,
                                   const py::object& sgx_o, const py::object& count_o, const py::object& activation,
                                   const py::object& y_o, double slope) {
  BwdInputs b = bwd_inputs(dout_in, x_in, activation, y_o, slope);
  const int64_t C = b.in.g.C;
  Vec gv = vec_arg(gamma_o, "gamma", C, false);
  Vec mv = vec_arg(mean_o, "mean", C, true), rv = vec_arg(rstd_o, "rstd", C, true);
  Vec sv = vec_arg(sg_o, "sum_dout", C, true), xv = vec_arg(sgx_o, "sum_dout_xhat", C, true);
  py::module_ np = py::module_::import("numpy");
  if (py::isinstance<py::bool_>(count_o) || (!py::isinstance(count_o, np.attr("integer")) && !py::isinstance<py::int_>(count_o)))
    throw py::type_error("count: expected an integer (the global number of values per channel)");
  const long long count = count_o.cast<long long>();
  if (count < 1) throw py::value_error("count: expected a positive integer, got " + std::to_string(count));
  bwd_rows(b);
  py::array dx = empty_array(b.in.xv.dtype, b.in.xv.shape);
  const auto mean = to_double(mv, C, 0.0), gamma = to_double(gv, C, 1.0), rstd = to_double(rv, C, 1.0);
  const auto sg = to_double(sv, C, 0.0), sgx = to_double(xv, C, 0.0);
  if (b.in.xv.dtype == DType::f32) elemt_typed<float>(b, dx, mean, gamma, rstd, sg, sgx, double(count), slope);
  else elemt_typed<double>(b, dx, mean, gamma, rstd, sg, sgx, double(count), slope);
  return dx;
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
#if defined(NK_WITH_CUDA)
  m.def("cuda_layernorm_forward",
        [](int dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t rstd,
           int64_t rows, int64_t d, double eps, int act, double slope, uintptr_t stream) {
          py::gil_scoped_release r;
          cuda::layernorm_forward(dtype, x, gamma, beta, y, mean, rstd, rows, d, eps, act, slope, stream);
        });
  m.def("cuda_layernorm_backward",
        [](int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
           uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, uintptr_t work, int64_t rows, int64_t d, int act,
           double slope, uintptr_t stream) {
          py::gil_scoped_release r;
          cuda::layernorm_backward(dtype, dout, x, y, gamma, mean, rstd, dx, dgamma, dbeta, work, rows, d, act, slope,
                                   stream);
        });
  m.def("cuda_layernorm_backward_workspace", &cuda::layernorm_backward_workspace);
  m.def("cuda_batchnorm_stats",
        [](int dtype, uintptr_t x, int64_t n, int64_t c, int64_t s, uintptr_t work, uintptr_t mean, uintptr_t m2,
           uintptr_t stream) {
          py::gil_scoped_release r;
          cuda::batchnorm_stats(dtype, x, n, c, s, work, mean, m2, stream);
        });
  m.def("cuda_batchnorm_workspace", &cuda::batchnorm_workspace);
  m.def("cuda_batchnorm_apply",
        [](int dtype, uintptr_t x, uintptr_t y, int64_t n, int64_t c, int64_t s, uintptr_t params, int act,
           double slope, uintptr_t stream) {
          py::gil_scoped_release r;
          cuda::batchnorm_apply(dtype, x, y, n, c, s, params, act, slope, stream);
        });
  m.def("cuda_batchnorm_backward_reduce",
        [](int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t mean, int64_t n, int64_t c, int64_t s,
           uintptr_t work, uintptr_t out3, int act, double slope, uintptr_t stream) {
          py::gil_scoped_release r;
          cuda::batchnorm_backward_reduce(dtype, dout, x, y, mean, n, c, s, work, out3, act, slope, stream);
        });
  m.def("cuda_batchnorm_backward_apply",
        [](int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t dx, int64_t n, int64_t c, int64_t s,
           uintptr_t params, int act, double slope, uintptr_t stream) {
          py::gil_scoped_release r;
          cuda::batchnorm_backward_apply(dtype, dout, x, y, dx, n, c, s, params, act, slope, stream);
        });
#endif
}

// CPU driver of the normalization ops (layer norm, batch norm and its separable pieces) over
// the ISA tables of cpu/normalization.cpp. Operands arrive validated (bindings/normalization.cpp)
// and the GIL is released. The kernels run over a fixed decomposition (core/parallel.hpp), and
// per-task partials (statistics, dgamma/dbeta, backward reductions) are combined in task order,
// so results are bitwise identical for any thread count.
//
// Batch norm layout: x is (N, C, *spatial), viewed as N rows of W = C*S values (S = spatial
// size). Small S: "column" path, per-column statistics of row blocks, the S columns of a
// channel merged afterwards. S >= kPlaneMin: "plane" path, each (n, c) plane is a contiguous run.
//
// 16-bit storage (float16 / bfloat16 x, issue 15): the drivers are templated on the storage type X
// of x, y, dout and dx, with C = compute_of_t<X> (float32 for the 16-bit types) the type of the
// kernels' arithmetic and of everything per row / per channel they take or return (mean, rstd,
// gamma/beta as the kernels read them, the planar parameters). Per-channel vectors of any dtype
// are read and written through core/float16.hpp (rounded to nearest even once).
#include "drivers/normalization.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/elementwise.hpp"
#include "core/float16.hpp"
#include "core/parallel.hpp"

NK_DEFINE_DISPATCH(LayerNormForwardImpl, layernorm_forward_stub)
NK_DEFINE_DISPATCH(LayerNormBackwardImpl, layernorm_backward_stub)
NK_DEFINE_DISPATCH(BatchNormForwardImpl, batchnorm_forward_stub)
NK_DEFINE_DISPATCH(BatchNormStatsImpl, batchnorm_stats_stub)
NK_DEFINE_DISPATCH(BatchNormMergeImpl, batchnorm_merge_stats_stub)
NK_DEFINE_DISPATCH(BatchNormNormalizeImpl, batchnorm_normalize_stub)
NK_DEFINE_DISPATCH(BatchNormBackwardImpl, batchnorm_backward_stub)
NK_DEFINE_DISPATCH(BatchNormReduceImpl, batchnorm_backward_reduce_stub)
NK_DEFINE_DISPATCH(BatchNormElemtImpl, batchnorm_backward_elemt_stub)

namespace nk {

bool norm_rows_of(const ArrayView& v, int first_inner, int64_t& rs) {
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

namespace {

constexpr int64_t kPlaneMin = 64;            // spatial size from which planes are runs
constexpr int64_t kTaskElems = int64_t(1) << 20;   // elements per reduction task (fixed decomposition)
constexpr int64_t kApplyElems = int64_t(1) << 16;  // elements per elementwise task
constexpr int64_t kSerialElems = int64_t(1) << 16; // below this, reductions run on the calling thread

template <class T> const NormKernelsT<T>& kern();
template <> const NormKernelsT<float>& kern<float>() { return normalization_kernels().f32; }
template <> const NormKernelsT<double>& kern<double>() { return normalization_kernels().f64; }
template <> const NormKernelsT<float16_t>& kern<float16_t>() { return normalization_kernels().f16; }
template <> const NormKernelsT<bfloat16_t>& kern<bfloat16_t>() { return normalization_kernels().bf16; }

template <class T> constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float16_t>) return DType::f16;
  else if constexpr (std::is_same_v<T, bfloat16_t>) return DType::bf16;
  else return sizeof(T) == 4 ? DType::f32 : DType::f64;
}

// Run f(X()) with X the storage type of dt.
template <class F> void with_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(float()); break;
    case DType::f64: f(double()); break;
    case DType::f16: f(float16_t()); break;
    case DType::bf16: f(bfloat16_t()); break;
  }
}

// Element i of a 1-d vector of any float dtype as double / written from a double (rounded once to
// the vector's dtype: core/float16.hpp).
// float32/float64 first, without the dtype switch: small calls read and write every channel's values.
double read_at(const ArrayView& v, int64_t i) {
  const int64_t off = v.ndim() == 0 ? 0 : i * v.strides[0];
  if (v.dtype == DType::f32) return double(v.ptr<float>()[off]);
  if (v.dtype == DType::f64) return v.ptr<double>()[off];
  return read_value(v.data, v.dtype, off);
}
void write_at(const ArrayView& v, int64_t i, double val) {
  const int64_t off = i * v.strides[0];
  if (v.dtype == DType::f32) v.ptr<float>()[off] = float(val);
  else if (v.dtype == DType::f64) v.ptr<double>()[off] = val;
  else write_value(v.data, v.dtype, off, val);
}

// One element of x-typed data as its compute type, and back (rounded to nearest even): the wide
// (extreme-magnitude) paths read and write 16-bit storage through these, with the kernels' bits.
template <class X> inline compute_of_t<X> elem(const X* p, int64_t i) {
  if constexpr (std::is_same_v<X, bfloat16_t>) return bf16_to_float(p[i].bits);
  else if constexpr (std::is_same_v<X, float16_t>) return f16_to_float(p[i].bits);
  else return p[i];
}
template <class X> inline void put_elem(X* p, int64_t i, compute_of_t<X> v) {
  if constexpr (std::is_same_v<X, bfloat16_t>) p[i].bits = float_to_bf16(v);
  else if constexpr (std::is_same_v<X, float16_t>) p[i].bits = float_to_f16(v);
  else p[i] = v;
}
// An optional per-channel vector's n values as double (dflt where absent).
std::vector<double> to_double(const ArrayView* v, int64_t n, double dflt) {
  std::vector<double> r(size_t(n), dflt);
  if (v)
    for (int64_t i = 0; i < n; ++i) r[size_t(i)] = read_at(*v, i);
  return r;
}
// A result vector (C-contiguous, any float dtype) from double values, each rounded once.
void write_vec(const ArrayView* v, const std::vector<double>& vals) {
  if (!v) return;
  if (v->dtype == DType::f32) {  // float32/float64 without a per-element dtype switch
    float* p = v->ptr<float>();
    for (size_t i = 0; i < vals.size(); ++i) p[i] = float(vals[i]);
  } else if (v->dtype == DType::f64) {
    double* p = v->ptr<double>();
    for (size_t i = 0; i < vals.size(); ++i) p[i] = vals[i];
  } else {
    for (size_t i = 0; i < vals.size(); ++i) write_value(v->data, v->dtype, int64_t(i), vals[i]);
  }
}

// Input rows: data pointer and row stride (norm_rows_of holds: the binding checked).
template <class T> struct RowsOf {
  const T* p = nullptr;
  int64_t rs = 0;
};
template <class T> RowsOf<T> rows_of(const ArrayView* v, int first_inner) {
  RowsOf<T> r;
  if (!v) return r;
  r.p = v->ptr<T>();
  norm_rows_of(*v, first_inner, r.rs);
  return r;
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
    buf[size_t(k)] = T(read_value(v.data, v.dtype, off));
    for (int i = nd - 1; i >= 0; --i) {
      if (++idx[i] < v.shape[size_t(i)]) break;
      idx[i] = 0;
    }
  }
  return buf.data();
}

// Run f(task) for tasks [0, n): in parallel for large work, inline otherwise (same results).
template <class F> void run_tasks(int64_t n, int64_t total_elems, F&& f) {
  if (total_elems < kSerialElems) {
    for (int64_t t = 0; t < n; ++t) f(t);
    return;
  }
  parallel_for_chunks(n, 1, [&](int64_t t, int64_t, int64_t) { f(t); });
}

// ---------------------------------------------------------------- layer norm

// Layer-norm gamma/beta as T pointers for the kernel: both null when both are absent; the
// array's own data when it is contiguous, of dtype T and not overlapping the output (no copy on
// the hot path); otherwise a converted copy in buf (an absent one of the pair is filled with dflt).
template <class T>
const T* ln_param(const ArrayView* v, const ArrayView* other, int64_t n, T dflt, const ArrayView& out,
                  std::vector<T>& buf) {
  if (!v && !other) return nullptr;
  if (v && v->dtype == dtype_of<T>() && (n <= 1 || v->strides[0] == 1) && !may_overlap(*v, out)) return v->ptr<T>();
  buf.assign(size_t(n), dflt);
  if (v)
    for (int64_t i = 0; i < n; ++i) buf[size_t(i)] = T(read_at(*v, i));
  return buf.data();
}

// X: the dtype of x and y; mean, rstd and the kernel's gamma/beta are C (float32 for 16-bit x).
template <class X, class C = compute_of_t<X>> void ln_forward(const LayerNormForwardArgs& a) {
  const auto& K = kern<X>();
  const ArrayView& xv = *a.x;
  const int64_t d = xv.shape.back(), rows = xv.size / d;
  std::vector<C> gbuf, bbuf;
  const C* gamma = ln_param<C>(a.gamma, a.beta, d, C(1), *a.y, gbuf);
  const C* beta = ln_param<C>(a.beta, a.gamma, d, C(0), *a.y, bbuf);
  const bool stream = rows * d * int64_t(sizeof(X)) >= kStreamBytes;
  const RowsOf<X> x = rows_of<X>(a.x, xv.ndim() - 1);
  X* y = a.y->ptr<X>();
  C* mean = a.mean->ptr<C>();
  C* rstd = a.rstd->ptr<C>();
  const double eps = a.eps, slope = a.act.slope;
  const int act = a.act.act;
  parallel_for(rows, std::max<int64_t>(1, kApplyElems / d), [&](int64_t b, int64_t e) {
    K.ln_fwd(x.p + b * x.rs, x.rs, y + b * d, d, gamma, beta, mean + b, rstd + b, e - b, d, eps, act, slope, stream);
  });
}

// dgamma/dbeta: float sums per task (C), combined in double, rounded once to their dtype.
template <class X, class C = compute_of_t<X>> void ln_backward(const LayerNormBackwardArgs& a) {
  const auto& K = kern<X>();
  const ArrayView& xv = *a.x;
  const int64_t d = xv.shape.back(), rows = xv.size / d;
  const bool want_params = a.gamma != nullptr;
  const std::vector<double> gd = to_double(a.gamma, d, 1.0);
  const std::vector<C> gamma(gd.begin(), gd.end());
  std::vector<C> mbuf, rbuf;
  const C* mean = shaped_as<C>(*a.mean, *a.dx, mbuf);
  const C* rstd = shaped_as<C>(*a.rstd, *a.dx, rbuf);
  const bool stream = rows * d * int64_t(sizeof(X)) >= kStreamBytes;
  const int64_t grain = std::max<int64_t>(1, kTaskElems / d);
  const int64_t tasks = num_chunks(rows, grain);
  std::vector<double> part(want_params ? size_t(tasks * 2 * d) : 0);
  std::vector<C> scratch(want_params ? size_t(tasks * 2 * d) : 0);
  const int first_inner = xv.ndim() - 1;
  const RowsOf<X> dr = rows_of<X>(a.dout, first_inner), xr = rows_of<X>(a.x, first_inner);
  const RowsOf<X> yr = rows_of<X>(a.act.act != kNormActNone ? a.y : nullptr, first_inner);
  X* dx = a.dx->ptr<X>();
  parallel_for_chunks(rows, grain, [&](int64_t t, int64_t b, int64_t e) {
    K.ln_bwd(dr.p + b * dr.rs, dr.rs, xr.p + b * xr.rs, xr.rs, yr.p ? yr.p + b * yr.rs : nullptr, yr.rs,
             gamma.data(), mean + b, rstd + b, dx + b * d, d, want_params ? &part[size_t(t * 2 * d)] : nullptr,
             want_params ? &scratch[size_t(t * 2 * d)] : nullptr, e - b, d, a.act.act, a.act.slope, stream);
  });
  if (!want_params) return;
  std::vector<double> dg(size_t(d), 0.0), db(size_t(d), 0.0);
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t j = 0; j < d; ++j) {
      dg[size_t(j)] += part[size_t(t * 2 * d + j)];
      db[size_t(j)] += part[size_t(t * 2 * d + d + j)];
    }
  write_vec(a.dgamma, dg);
  write_vec(a.dbeta, db);
}

void layernorm_forward_cpu(const LayerNormForwardArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { ln_forward<decltype(tag)>(a); });
}
void layernorm_backward_cpu(const LayerNormBackwardArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { ln_backward<decltype(tag)>(a); });
}

// ---------------------------------------------------------------- batch norm building blocks

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
  const auto& K = kern<T>();  // T: the storage type (16-bit values are summed in float32 blocks)
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

template <class T, class C = compute_of_t<T>>
void bn_apply(const Geom& g, const T* x, int64_t rs, T* y, const std::vector<C>& pc, int act, double slope,
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
    const std::vector<C> spread = g.S == 1 ? std::vector<C>() : per_column(g, pc, 3);
    const C* p = g.S == 1 ? pc.data() : spread.data();
    const int64_t grain = std::max<int64_t>(1, kApplyElems / W);
    parallel_for(g.N, grain, [&](int64_t b, int64_t e) {
      K.col_apply(x + b * rs, rs, y + b * W, W, e - b, W, p, act, slope, stream);
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, kApplyElems / g.S);
    parallel_for(g.N * g.C, grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t n = i / g.C, c = i % g.C;
        C pp[3];
        channel_params(g, pc, 3, c, pp);
        K.run_apply(x + n * rs + c * g.S, y + i * g.S, g.S, pp, act, slope, stream);
      }
    });
  }
}

// Per-channel sums of g, g*(x - m), (x - m) (double).
template <class T, class C = compute_of_t<T>>
void bn_bwd_reduce(const Geom& g, const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss,
                   const std::vector<C>& m, int act, double slope, std::vector<double>& out) {
  const auto& K = kern<T>();
  out.assign(size_t(3 * g.C), 0.0);
  if (g.N * g.W == 0) return;
  if (!g.plane) {
    const int64_t grain = g.row_grain(), tasks = num_chunks(g.N, grain), W = g.W;
    std::vector<C> mcol(static_cast<size_t>(W));
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
template <class T, class C = compute_of_t<T>>
void bn_bwd_apply(const Geom& g, const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx,
                  const std::vector<C>& pc, int act, double slope, bool fresh_out) {
  const auto& K = kern<T>();
  if (g.N * g.W == 0) return;
  // As in bn_apply: non-temporal stores only into a large existing `out`.
  const bool stream = !fresh_out && g.N * g.W * int64_t(sizeof(T)) >= kStreamBytes;
  if (!g.plane) {
    const int64_t W = g.W;
    const std::vector<C> spread = g.S == 1 ? std::vector<C>() : per_column(g, pc, 4);
    const C* p = g.S == 1 ? pc.data() : spread.data();
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
        C pp[4];
        channel_params(g, pc, 4, c, pp);
        K.run_bwd_apply(dout + n * ds + off, x + n * xs + off, y ? y + n * yss + off : nullptr, dx + i * g.S, g.S,
                        pp, act, slope, stream);
      }
    });
  }
}

// ---------------------------------------------------------------- batch norm forward and statistics

// Channels whose fast statistics cannot be right (wide_needed, cpu/normalization.hpp) are redone
// by wide_stats: hi becomes the centre the kernels subtract (a T value, chosen so that x - hi
// cannot overflow), lo = mean - hi, m2 the wide M2 rounded to double. Where that overflows or
// underflows (float64 data beyond ~1e154 or below ~1e-154), var (empty otherwise: no per-channel
// long double work on the normal path; -1 for the other channels) receives the channel's biased
// variance in long double, in range for any finite data.
// Empty channels (count 0) are left as they are.
// (X: the storage type of x; T: its compute type, in which the fast statistics were summed.)
template <class X, class T = compute_of_t<X>>
void bn_wide_channels(const Geom& g, const X* x, int64_t rs, double eps, std::vector<double>& hi,
                      std::vector<double>& lo, std::vector<double>& m2, std::vector<long double>& var) {
  const int64_t count = g.N * g.S;
  var.clear();
  if (count == 0) return;
  const int64_t S = g.S;
  if (__builtin_expect(!kern<X>().any_outside(m2.data(), g.C, wide_floor<T>(double(count), eps)), 1)) return;
  for (int64_t c = 0; c < g.C; ++c) {
    const size_t k = size_t(c);
    if (!wide_needed<T>(m2[k], m2[k] / double(count), lo[k], eps)) continue;
    const X* xc = x + c * S;
    const WideStats<T> w = wide_stats<T>(count, [xc, rs, S](int64_t i) { return elem(xc, (i / S) * rs + i % S); });
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

// Statistics as hi + lo (see bn_wide_channels), m2 and the long double variances of wide channels.
template <class T>
void bn_full_stats(const Geom& g, const T* x, int64_t rs, double eps, std::vector<double>& hi, std::vector<double>& lo,
                   std::vector<double>& m2, std::vector<long double>& var) {
  bn_stats<T>(g, x, rs, hi, lo, m2);
  bn_wide_channels<T>(g, x, rs, eps, hi, lo, m2, var);
}

// Everything per channel after the statistics in one loop (mean, rstd rounded to T, the
// planar kernel parameters, the returned arrays), then the normalise pass, then the running
// statistics: few allocations and no per-element dtype dispatch, since at small sizes
// (32 x 256) this host work is a large part of the call.
// X: the dtype of x and y; T: the compute type (mean, rstd and the kernel parameters; float32 for
// 16-bit x). Running statistics (any float dtype) are updated in double and rounded once.
template <class X, class T = compute_of_t<X>> void bn_forward(const BatchNormForwardArgs& a) {
  const Geom g = geom_of(*a.x);
  const RowsOf<X> xr = rows_of<X>(a.x, 1);
  const int64_t C = g.C, count = g.N * g.S;
  const size_t Cs = size_t(C);
  const bool training = a.training;
  std::vector<double> hi, lo, m2;
  std::vector<long double> wvar;
  if (training) bn_full_stats<X>(g, xr.p, xr.rs, a.eps, hi, lo, m2, wvar);
  T* mean_o = a.mean->ptr<T>();
  T* rstd_o = a.rstd->ptr<T>();
  const double eps = a.eps;
  std::vector<T> pc(3 * Cs);
  for (int64_t c = 0; c < C; ++c) {
    const size_t k = size_t(c);
    const double h = training ? hi[k] : read_at(*a.running_mean, c);
    const double l = training ? lo[k] : 0.0;
    // long double only where a channel's variance needs it (wide statistics): same bits otherwise
    const bool wide = training && !wvar.empty() && wvar[k] >= 0;
    const T rs = wide ? T(1.0L / std::sqrt(wvar[k] + (long double)eps))
                      : T(1.0 / std::sqrt((training ? m2[k] / double(count) : read_at(*a.running_var, c)) + eps));
    mean_o[c] = T(h + l);
    rstd_o[c] = rs;
    bn_forward_channel<T>(h, l, rs, a.gamma ? read_at(*a.gamma, c) : 1.0, a.beta ? read_at(*a.beta, c) : 0.0, &pc[k],
                          C);
  }
  bn_apply<X>(g, xr.p, xr.rs, a.y->ptr<X>(), pc, a.act.act, a.act.slope, a.fresh_y);
  if (training && a.running_mean) {
    const ArrayView &rm = *a.running_mean, &rv = *a.running_var;
    for (int64_t c = 0; c < C; ++c) {
      const size_t k = size_t(c);
      const bool wide = !wvar.empty() && wvar[k] >= 0;  // as for rs above
      const long double var = wide ? wvar[k] : (long double)(m2[k] / double(count));
      const double vu = (a.unbiased && count > 1)
                            ? (wide ? double(var * count / (count - 1)) : m2[k] / double(count - 1))
                            : double(var);
      write_at(rm, c, bn_running_update(read_at(rm, c), a.momentum, hi[k] + lo[k]));
      write_at(rv, c, bn_running_update(read_at(rv, c), a.momentum, vu));
    }
  }
}

template <class X> void bn_stats_out(const BatchNormStatsArgs& a) {
  const Geom g = geom_of(*a.x);
  const RowsOf<X> xr = rows_of<X>(a.x, 1);
  std::vector<double> hi, lo, m2;
  std::vector<long double> var;
  bn_full_stats<X>(g, xr.p, xr.rs, 0.0, hi, lo, m2, var);
  double* mean = a.mean->ptr<double>();
  double* m2o = a.m2->ptr<double>();
  for (size_t c = 0; c < hi.size(); ++c) {
    mean[c] = hi[c] + lo[c];
    m2o[c] = m2[c];
  }
}

template <class X, class T = compute_of_t<X>> void bn_normalize(const BatchNormNormalizeArgs& a) {
  const Geom g = geom_of(*a.x);
  const RowsOf<X> xr = rows_of<X>(a.x, 1);
  const int64_t C = g.C;
  std::vector<T> pc(3 * size_t(C));
  for (int64_t c = 0; c < C; ++c)
    bn_forward_channel<T>(read_at(*a.mean, c), 0.0, T(read_at(*a.rstd, c)), a.gamma ? read_at(*a.gamma, c) : 1.0,
                          a.beta ? read_at(*a.beta, c) : 0.0, &pc[size_t(c)], C);
  bn_apply<X>(g, xr.p, xr.rs, a.y->ptr<X>(), pc, a.act.act, a.act.slope, a.fresh_y);
}

void batchnorm_forward_cpu(const BatchNormForwardArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { bn_forward<decltype(tag)>(a); });
}
void batchnorm_stats_cpu(const BatchNormStatsArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { bn_stats_out<decltype(tag)>(a); });
}
void batchnorm_normalize_cpu(const BatchNormNormalizeArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { bn_normalize<decltype(tag)>(a); });
}

// Chan's parallel update of per-part (count, mean, m2), parts merged in order (the same
// chan_merge as the statistics above); parts with count 0 leave a channel as it is. The binding
// has checked the values (counts finite and non-negative, m2s non-negative).
void batchnorm_merge_stats_cpu(const BatchNormMergeArgs& a, const ExecContext&) {
  const int64_t P = a.means->shape[0], C = a.means->shape[1];
  const bool per_channel = a.counts->ndim() == 2;
  const double* cp = a.counts->ptr<double>();
  const double* mp = a.means->ptr<double>();
  const double* qp = a.m2s->ptr<double>();
  const int64_t cs0 = a.counts->strides[0], cs1 = per_channel ? a.counts->strides[1] : 0;
  const int64_t ms0 = a.means->strides[0], ms1 = a.means->strides[1];
  const int64_t qs0 = a.m2s->strides[0], qs1 = a.m2s->strides[1];
  std::vector<double> n(size_t(C), 0.0);
  double* mean = a.mean->ptr<double>();
  double* m2 = a.m2->ptr<double>();
  for (int64_t c = 0; c < C; ++c) mean[c] = m2[c] = 0.0;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t c = 0; c < C; ++c) {
      const double nb = cp[p * cs0 + c * cs1];
      if (nb > 0) chan_merge(n[size_t(c)], mean[c], m2[c], nb, mp[p * ms0 + c * ms1], qp[p * qs0 + c * qs1]);
    }
  if (a.count)
    for (int64_t c = 0; c < C; ++c) a.count->ptr<double>()[c] = n[size_t(c)];
  if (a.total) {
    double t = 0;
    for (int64_t p = 0; p < P; ++p) t += cp[p * cs0];
    *a.total->ptr<double>() = t;
  }
}

// ---------------------------------------------------------------- batch norm backward
// X: the storage type of dout, x, y and dx; T = compute_of_t<X>: the kernels' mean and parameters
// (float32 for 16-bit x). Sums are double; dgamma/dbeta and the reduce sums are rounded once to
// their dtype (the binding's choice: gamma's dtype, float32 for 16-bit x's backward_reduce).

// dout, x and y of a backward call as rows, with the geometry and the activation.
template <class X> struct BwdRows {
  Geom g;
  RowsOf<X> d, x, y;
  int act;
};
template <class X> BwdRows<X> bwd_rows(const ArrayView* dout, const ArrayView* x, const ArrayView* y, const NormAct& act) {
  BwdRows<X> b;
  b.g = geom_of(*x);
  b.d = rows_of<X>(dout, 1);
  b.x = rows_of<X>(x, 1);
  b.y = rows_of<X>(act.act != kNormActNone ? y : nullptr, 1);
  b.act = act.act;
  return b;
}

template <class X, class T = compute_of_t<X>>
std::vector<double> reduce_run(const BwdRows<X>& b, const std::vector<T>& m, double slope) {
  std::vector<double> out;
  bn_bwd_reduce<X>(b.g, b.d.p, b.d.rs, b.x.p, b.x.rs, b.y.p, b.y.rs, m, b.act, slope, out);
  return out;
}
template <class X, class T = compute_of_t<X>>
void elemt_run(const BwdRows<X>& b, X* dx, bool fresh_dx, const std::vector<T>& pc, double slope) {
  bn_bwd_apply<X>(b.g, b.d.p, b.d.rs, b.x.p, b.x.rs, b.y.p, b.y.rs, dx, pc, b.act, slope, fresh_dx);
}

// dx params [mh, A, K, B] (planar) for all channels (bn_elemt_channel).
template <class T>
std::vector<T> elemt_params(const std::vector<double>& mh_d, const std::vector<double>& ml_d,
                            const std::vector<double>& gamma, const std::vector<double>& rstd,
                            const std::vector<double>& sg, const std::vector<double>& sgxh, double count) {
  const size_t C = gamma.size();
  std::vector<T> pc(4 * C);
  for (size_t c = 0; c < C; ++c)
    bn_elemt_channel<T>(mh_d[c], ml_d[c], gamma[c], rstd[c], sg[c], sgxh[c], count, &pc[c], int64_t(C));
  return pc;
}

// ---- extreme magnitudes in the backward (bn_backward_wide): such channels are redone in WideOf<T>.
// Element i of channel c (i over the N * S values) of a row-strided (N, C*S) operand.
inline int64_t chan_off(const Geom& g, int64_t rs, int64_t c, int64_t i) { return (i / g.S) * rs + c * g.S + i % g.S; }
template <class X, class T = compute_of_t<X>> T bwd_grad(const BwdRows<X>& b, int64_t c, int64_t i, T slope) {
  const T d = elem(b.d.p, chan_off(b.g, b.d.rs, c, i));
  if (b.act == kNormActNone) return d;
  const T yv = elem(b.y.p, chan_off(b.g, b.y.rs, c, i));
  return yv > T(0) ? d : (b.act == kNormActRelu ? T(0) : d * slope);
}
// Wide sums of channel c around m: [sum g | sum g*(x - m) | sum (x - m)].
template <class X, class T = compute_of_t<X>>
void bn_wide_sums(const BwdRows<X>& b, int64_t c, WideOf<T> m, T slope, WideOf<T>* out3) {
  using W = WideOf<T>;
  const int64_t count = b.g.N * b.g.S;
  W s0 = 0, s1 = 0, s2 = 0;
  for (int64_t i = 0; i < count; ++i) {
    const W gi = W(bwd_grad<X>(b, c, i, slope)), xm = W(elem(b.x.p, chan_off(b.g, b.x.rs, c, i))) - m;
    s0 += gi; s1 += gi * xm; s2 += xm;
  }
  out3[0] = s0; out3[1] = s1; out3[2] = s2;
}
// dx of channel c, dx = gamma * rstd * (g - sg / count - xhat * sgxh / count) with xhat = (x - m) * rstd,
// into buf (C order over the channel's values, in the compute type: rounded to X when scattered).
template <class X, class T = compute_of_t<X>>
void bn_wide_dx(const BwdRows<X>& b, int64_t c, WideOf<T> m, WideOf<T> gamma, WideOf<T> rstd, WideOf<T> sg,
                WideOf<T> sgxh, WideOf<T> count, T slope, std::vector<T>& buf) {
  using W = WideOf<T>;
  const int64_t n = b.g.N * b.g.S;
  buf.resize(size_t(n));
  const W ma = sg / count, k = sgxh / count;
  for (int64_t i = 0; i < n; ++i) {
    const W xhat = (W(elem(b.x.p, chan_off(b.g, b.x.rs, c, i))) - m) * rstd;
    buf[size_t(i)] = T(gamma * rstd * (W(bwd_grad<X>(b, c, i, slope)) - ma - xhat * k));
  }
}
template <class X, class T = compute_of_t<X>>
void bn_scatter_channel(const Geom& g, X* dx, int64_t c, const std::vector<T>& buf) {
  for (int64_t i = 0; i < g.N * g.S; ++i) put_elem(dx, chan_off(g, g.W, c, i), buf[size_t(i)]);
}

template <class X, class T = compute_of_t<X>> void bn_backward(const BatchNormBackwardArgs& a) {
  using W = WideOf<T>;
  const BwdRows<X> b = bwd_rows<X>(a.dout, a.x, a.y, a.act);
  const Geom& g = b.g;
  const size_t C = size_t(g.C);
  const double slope = a.act.slope;
  const std::vector<double> mean_d = to_double(a.mean, g.C, 0.0), rstd = to_double(a.rstd, g.C, 1.0);
  std::vector<T> mh(C);
  std::vector<double> mhd(C);
  for (size_t c = 0; c < C; ++c) { mh[c] = T(mean_d[c]); mhd[c] = double(mh[c]); }
  const std::vector<double> red = reduce_run<X>(b, mh, slope);
  const double count = double(g.N * g.S);
  const std::vector<double> gamma = to_double(a.gamma, g.C, 1.0);
  std::vector<double> sg(C), sgxh(C), ml(C);
  std::vector<int64_t> wide;  // channels redone in WideOf<T>, their dx kept in bufs until the fast pass is done
  std::vector<std::vector<T>> bufs;
  for (size_t c = 0; c < C; ++c) {
    // Residual of the stored mean (c = mean(x - mh)) is folded back in: accuracy at large |mean|.
    const double cres = count > 0 ? red[3 * c + 2] / count : 0.0;
    ml[c] = cres;
    sg[c] = red[3 * c];
    sgxh[c] = (red[3 * c + 1] - cres * red[3 * c]) * rstd[c];
    if (count > 0 && __builtin_expect(bn_backward_wide<T>(red[3 * c], red[3 * c + 1], red[3 * c + 2],
                                                          -gamma[c] * rstd[c] * rstd[c] * sgxh[c] / count), 0)) {
      W s3[3];
      bn_wide_sums<X>(b, int64_t(c), W(mh[c]), T(slope), s3);
      const W cw = s3[2] / W(count);
      const W sgxh_w = (s3[1] - cw * s3[0]) * W(rstd[c]);
      sg[c] = double(s3[0]);
      sgxh[c] = double(sgxh_w);
      ml[c] = 0;  // this channel's fast dx is replaced below
      wide.push_back(int64_t(c));
      bufs.emplace_back();
      bn_wide_dx<X>(b, int64_t(c), W(mh[c]) + cw, W(gamma[c]), W(rstd[c]), s3[0], sgxh_w, W(count), T(slope),
                    bufs.back());
    }
  }
  if (count > 0) {
    const std::vector<T> pc = elemt_params<T>(mhd, ml, gamma, rstd, sg, sgxh, count);
    elemt_run<X>(b, a.dx->ptr<X>(), a.fresh_dx, pc, slope);
    for (size_t k = 0; k < wide.size(); ++k) bn_scatter_channel<X>(g, a.dx->ptr<X>(), wide[k], bufs[k]);
  }
  write_vec(a.dgamma, sgxh);
  write_vec(a.dbeta, sg);
}

template <class X, class T = compute_of_t<X>> void bn_reduce(const BatchNormReduceArgs& a) {
  const BwdRows<X> b = bwd_rows<X>(a.dout, a.x, a.y, a.act);
  const size_t C = size_t(b.g.C);
  const std::vector<double> mean = to_double(a.mean, b.g.C, 0.0), rstd = to_double(a.rstd, b.g.C, 1.0);
  std::vector<T> mh(C);
  for (size_t c = 0; c < C; ++c) mh[c] = T(mean[c]);
  const std::vector<double> red = reduce_run<X>(b, mh, a.act.slope);
  std::vector<double> sg(C), sgxh(C);
  for (size_t c = 0; c < C; ++c) {
    // sum g*(x - mean) = sum g*(x - mh) - (mean - mh) * sum g   (exact split of the given mean)
    sg[c] = red[3 * c];
    sgxh[c] = (red[3 * c + 1] - (mean[c] - double(mh[c])) * red[3 * c]) * rstd[c];
    if (__builtin_expect(bn_backward_wide<T>(red[3 * c], red[3 * c + 1], red[3 * c + 2], 0.0), 0)) {
      WideOf<T> s3[3];  // float block sums overflowed: wide sums
      bn_wide_sums<X>(b, int64_t(c), WideOf<T>(mean[c]), T(a.act.slope), s3);
      sg[c] = double(s3[0]);
      sgxh[c] = double(s3[1] * WideOf<T>(rstd[c]));
    }
  }
  write_vec(a.sum_dout, sg);
  write_vec(a.sum_dout_xhat, sgxh);
}

template <class X, class T = compute_of_t<X>> void bn_elemt(const BatchNormElemtArgs& a) {
  const BwdRows<X> b = bwd_rows<X>(a.dout, a.x, a.y, a.act);
  const int64_t Cn = b.g.C;
  const size_t C = size_t(Cn);
  const double count = a.count, slope = a.act.slope;
  const auto mean = to_double(a.mean, Cn, 0.0), gamma = to_double(a.gamma, Cn, 1.0), rstd = to_double(a.rstd, Cn, 1.0);
  const auto sg = to_double(a.sum_dout, Cn, 0.0), sgxh = to_double(a.sum_dout_xhat, Cn, 0.0);
  std::vector<double> mh(C), ml(C);
  for (size_t c = 0; c < C; ++c) {
    mh[c] = double(T(mean[c]));
    ml[c] = mean[c] - mh[c];
  }
  X* dx = a.dx->ptr<X>();
  const std::vector<T> pc = elemt_params<T>(mh, ml, gamma, rstd, sg, sgxh, count);
  elemt_run<X>(b, dx, true, pc, slope);
  // Channels whose dx coefficient K leaves T's normal range (std beyond ~1e19 in float32) are
  // recomputed in the wide type over the fresh dx (see bn_backward_wide).
  std::vector<T> buf;
  for (size_t c = 0; c < C; ++c)
    if (__builtin_expect(bn_backward_wide<T>(0, 0, 0, -gamma[c] * rstd[c] * rstd[c] * sgxh[c] / count), 0)) {
      using W = WideOf<T>;
      bn_wide_dx<X>(b, int64_t(c), W(mean[c]), W(gamma[c]), W(rstd[c]), W(sg[c]), W(sgxh[c]), W(count), T(slope), buf);
      bn_scatter_channel<X>(b.g, dx, int64_t(c), buf);
    }
}

void batchnorm_backward_cpu(const BatchNormBackwardArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { bn_backward<decltype(tag)>(a); });
}
void batchnorm_backward_reduce_cpu(const BatchNormReduceArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { bn_reduce<decltype(tag)>(a); });
}
void batchnorm_backward_elemt_cpu(const BatchNormElemtArgs& a, const ExecContext&) {
  with_dtype(a.x->dtype, [&](auto tag) { bn_elemt<decltype(tag)>(a); });
}

}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(layernorm_forward_stub, cpu, &nk::layernorm_forward_cpu);
NK_REGISTER_DISPATCH(layernorm_backward_stub, cpu, &nk::layernorm_backward_cpu);
NK_REGISTER_DISPATCH(batchnorm_forward_stub, cpu, &nk::batchnorm_forward_cpu);
NK_REGISTER_DISPATCH(batchnorm_stats_stub, cpu, &nk::batchnorm_stats_cpu);
NK_REGISTER_DISPATCH(batchnorm_merge_stats_stub, cpu, &nk::batchnorm_merge_stats_cpu);
NK_REGISTER_DISPATCH(batchnorm_normalize_stub, cpu, &nk::batchnorm_normalize_cpu);
NK_REGISTER_DISPATCH(batchnorm_backward_stub, cpu, &nk::batchnorm_backward_cpu);
NK_REGISTER_DISPATCH(batchnorm_backward_reduce_stub, cpu, &nk::batchnorm_backward_reduce_cpu);
NK_REGISTER_DISPATCH(batchnorm_backward_elemt_stub, cpu, &nk::batchnorm_backward_elemt_cpu);

// CPU drivers of the preprocessing ops (kernels: cpu/preprocessing.cpp).
//
// Decomposition: rows are cut into fixed blocks (a function of the shape only); statistics
// of each block are merged in block order with Chan, Golub & LeVeque's pairwise update
// (mean_ab = mean_a + d n_b / n, M2_ab = M2_a + M2_b + d^2 n_a n_b / n), so results are
// bitwise identical for any thread count.
#include "drivers/preprocessing.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/chan.hpp"
#include "core/parallel.hpp"

NK_DEFINE_DISPATCH(ColStatsImpl, col_stats_stub)
NK_DEFINE_DISPATCH(AffineImpl, prep_affine_stub)
NK_DEFINE_DISPATCH(NormalizeImpl, prep_normalize_stub)
NK_DEFINE_DISPATCH(ColQuantilesImpl, col_quantiles_stub)
NK_DEFINE_DISPATCH(CenteredGramImpl, centered_gram_stub)

namespace nk {

bool matrix_layout(const ArrayView& v, Matrix& m) {
  m.v = v;
  m.rows = v.shape[0];
  m.cols = v.shape[1];
  const bool c_ok = m.cols == 1 ? true : v.strides[1] == 1;
  const bool f_ok = m.rows == 1 ? true : v.strides[0] == 1;
  if (!(c_ok && v.strides[0] >= m.cols) && !(f_ok && v.strides[1] >= m.rows) && !(c_ok && m.rows == 1)) return false;
  m.rs = v.strides[0];
  m.cs = v.strides[1];
  if (m.cols == 1) m.cs = 1;
  else if (m.rows == 1) m.rs = 1;
  return m.cs == 1 || m.rs == 1;
}

namespace {

// Rows per block: a function of the shape only (never of the thread count). Matrices up to
// 2^18 elements are one block, run inline on the calling thread (no parallel-region cost).
constexpr int64_t kInlineElems = int64_t(1) << 18;
int64_t block_rows(int64_t rows, int64_t cols, int64_t elems) {
  if (rows * cols <= kInlineElems) return std::max<int64_t>(rows, 1);
  return std::max<int64_t>(16, elems / cols);
}

PrepBlock block_of(const Matrix& m, int64_t r0, int64_t r1) {
  PrepBlock b;
  b.x = static_cast<const char*>(m.v.data) + r0 * m.rs * dtype_size(m.v.dtype);
  b.rows = r1 - r0;
  b.cols = m.cols;
  b.rs = m.rs;
  b.cs = m.cs;
  return b;
}

void col_stats_cpu(const Matrix& m, const ColStatsArgs& a, const ColStatsOut& out, const ExecContext&) {
  const int flags = a.flags;
  const int64_t C = m.cols, R = m.rows, RB = block_rows(R, C, 65536);
  const int64_t nb = num_chunks(R, RB);
  const bool moments = (flags & (kPrepMean | kPrepMoments)) != 0, ignore = (flags & kPrepIgnoreNan) != 0;
  const bool masked = ignore || a.weight != nullptr;
  std::vector<double> cnt(size_t(nb * C)), mean(size_t(nb * C)), m2(size_t(nb * C)), mn(size_t(nb * C)),
      mx(size_t(nb * C)), bad(size_t(nb * C)), scratch(size_t(nb * C));
  const auto fn = prep_kernels().col_stats[dtype_index(m.v.dtype)];
  parallel_for_chunks(R, RB, [&](int64_t c, int64_t r0, int64_t r1) {
    const size_t o = size_t(c * C);
    fn(block_of(m, r0, r1), flags, a.weight ? a.weight + r0 : nullptr, &cnt[o], &mean[o], &m2[o], &mn[o], &mx[o],
       &bad[o], &scratch[o]);
    if (!masked)
      for (int64_t j = 0; j < C; ++j) cnt[o + size_t(j)] = double(r1 - r0);
  });
  // merge blocks in order
  for (int64_t c = 1; c < nb; ++c) {
    const size_t o = size_t(c * C);
    for (int64_t j = 0; j < C; ++j) {
      if (moments) chan_merge(cnt[j], mean[j], m2[j], cnt[o + j], mean[o + j], m2[o + j]);
      if (flags & kPrepMinMax) {
        mn[j] = mn[o + j] < mn[j] ? mn[o + j] : mn[j];
        mx[j] = mx[o + j] > mx[j] ? mx[o + j] : mx[j];
        bad[j] += bad[o + j];
      }
    }
  }
  if (a.prior_count)
    for (int64_t j = 0; j < C; ++j) {
      double n = a.prior_count[j], mu = a.prior_mean[j], s = a.prior_m2[j];
      chan_merge(n, mu, s, cnt[j], mean[j], m2[j]);
      cnt[j] = n; mean[j] = mu; m2[j] = s;
    }
  bool finite = true;
  for (int64_t j = 0; j < C; ++j) {
    if (moments && cnt[j] > 0.0) finite = finite && std::isfinite(mean[j]) && std::isfinite(m2[j]);
    if (flags & kPrepMinMax) {
      if (!ignore) finite = finite && std::isfinite(bad[j]);
      finite = finite && mn[j] != -HUGE_VAL && mx[j] != HUGE_VAL;
      if (mn[j] > mx[j]) mn[j] = mx[j] = NAN;  // no value in the column
    }
  }
  std::copy_n(cnt.begin(), out.count ? C : 0, out.count);
  std::copy_n(mean.begin(), out.mean ? C : 0, out.mean);
  std::copy_n(m2.begin(), out.m2 ? C : 0, out.m2);
  std::copy_n(mn.begin(), out.min ? C : 0, out.min);
  std::copy_n(mx.begin(), out.max ? C : 0, out.max);
  if (out.finite) *out.finite = finite;
}

// Output strides in the kernels' canonical form (a length-1 dimension's stride is free).
void out_strides(const Matrix& m, const ArrayView& y, int64_t& yrs, int64_t& ycs) {
  yrs = y.strides[0];
  ycs = y.strides[1];
  if (m.cols == 1) ycs = 1;
  if (m.rows == 1) yrs = 1;
}

// Non-temporal stores only into a distinct, existing output far above the caches (in place, X's
// lines are already cached; fresh outputs were just faulted in and zeroed by the kernel's first
// stores and sit in the caches, so ordinary stores cost one write-back while non-temporal stores
// would write twice).
bool stream_stores(const Matrix& m, const ArrayView& y, bool fresh) {
  return !fresh && y.data != m.v.data && y.size * dtype_size(y.dtype) >= (int64_t(8) << 20);
}

void affine_cpu(const Matrix& m, const ArrayView& y, const double* a, const double* s, const double* c, bool fresh,
                const ExecContext&) {
  int64_t yrs, ycs;
  out_strides(m, y, yrs, ycs);
  const auto fn = prep_kernels().affine[dtype_index(m.v.dtype)];
  const int64_t RB = block_rows(m.rows, m.cols, 32768);
  char* yp = static_cast<char*>(y.data);
  const int64_t ys = dtype_size(y.dtype);
  const bool stream = stream_stores(m, y, fresh);
  parallel_for(m.rows, RB, [&](int64_t r0, int64_t r1) {
    fn(block_of(m, r0, r1), yp + r0 * y.strides[0] * ys, yrs, ycs, a, s, c, stream);
  });
}

void normalize_cpu(const Matrix& m, const ArrayView& y, int norm, double* norms, bool fresh, const ExecContext&) {
  int64_t yrs, ycs;
  out_strides(m, y, yrs, ycs);
  const auto fn = prep_kernels().normalize[dtype_index(m.v.dtype)];
  const int64_t RB = block_rows(m.rows, m.cols, 32768);
  char* yp = static_cast<char*>(y.data);
  const int64_t ys = dtype_size(y.dtype);
  const bool stream = stream_stores(m, y, fresh);
  parallel_for(m.rows, RB, [&](int64_t r0, int64_t r1) {
    std::vector<double> scratch(size_t(r1 - r0));
    fn(block_of(m, r0, r1), yp + r0 * y.strides[0] * ys, yrs, ycs, norm, norms + r0, scratch.data(), stream);
  });
}

bool col_quantiles_cpu(const Matrix& m, const double* qs, int nq, double* res, const ExecContext&) {
  const int64_t C = m.cols, R = m.rows;
  constexpr int64_t kCols = 16;
  const int64_t gcols = R * C <= kInlineElems ? C : kCols;  // small: one inline chunk
  const int64_t ngroups = num_chunks(C, gcols);
  std::vector<double> bad(size_t(ngroups), 0.0);
  std::vector<int64_t> counts(size_t(C), 0);
  const int d = dtype_index(m.v.dtype);
  const auto& K = prep_kernels();
  const int64_t es = dtype_size(m.v.dtype);
  parallel_for_chunks(C, gcols, [&](int64_t g, int64_t c0, int64_t c1) {
    // Per-thread buffers, kept between calls: fresh 10-100 MB allocations cost more in page
    // faults and zeroing than the selection itself. (Released with the thread.)
    thread_local std::vector<char> buf, scratch;
    if (buf.size() < size_t((c1 - c0) * R * es)) {
      buf = std::vector<char>();
      buf.resize(size_t((c1 - c0) * R * es));
    }
    PrepBlock b;
    b.x = static_cast<const char*>(m.v.data) + c0 * m.cs * es;
    b.rows = R;
    b.cols = c1 - c0;
    b.rs = m.rs;
    b.cs = m.cs;
    bad[size_t(g)] = K.gather[d](b, buf.data(), R, counts.data() + c0);
    if (!std::isfinite(bad[size_t(g)])) return;
    std::vector<double> out(static_cast<size_t>(nq));
    const int64_t cap = R;  // candidate buffers never overflow
    if (scratch.size() < size_t(nq * (cap + 1) * es)) {
      scratch = std::vector<char>();
      scratch.resize(size_t(nq * (cap + 1) * es));
    }
    for (int64_t j = c0; j < c1; ++j) {
      const int64_t n = counts[size_t(j)];
      if (n == 0) {  // every value NaN: NaN percentiles (as np.nanpercentile)
        for (int64_t k = 0; k < nq; ++k) res[size_t(k * C + j)] = NAN;
        continue;
      }
      K.quantiles[d](buf.data() + (j - c0) * R * es, n, qs, nq, out.data(), scratch.data(), cap);
      for (int64_t k = 0; k < nq; ++k) res[size_t(k * C + j)] = out[size_t(k)];
    }
  });
  for (double b : bad)
    if (!std::isfinite(b)) return false;
  return true;
}

// ---- centred cross-product (covariance) for PCA / ZCA on tall data ------------------------
// Rows are cut into parts of a fixed size (a function of the shape only); each part runs the
// chunked kernel sequentially on one thread and the part results are merged here in part
// order with the matrix form of Chan's update, so the result is bitwise the same for any
// thread count. The number of parts is bounded so their ld x ld partial matrices stay small.
constexpr int64_t kGramPartBytes = int64_t(128) << 20;

void centered_gram_cpu(const ArrayView& v, bool float64_products, double* mo, double* co, const ExecContext&) {
  const int64_t R = v.shape[0], C = v.shape[1];
  const int64_t ld = (C + kGramPad - 1) / kGramPad * kGramPad;
  int64_t part = R;
  if (R * C > (int64_t(1) << 16)) {
    const int64_t max_parts = std::max<int64_t>(1, std::min<int64_t>(64, kGramPartBytes / (8 * ld * ld)));
    part = std::max<int64_t>(16 * kGramChunkRows, (R + max_parts - 1) / max_parts);
    part = (part + kGramChunkRows - 1) / kGramChunkRows * kGramChunkRows;
  }
  const int64_t np_ = num_chunks(R, part);
  std::vector<double> m2(size_t(np_ * ld * ld)), mean(size_t(np_ * ld));
  const int which = v.dtype == DType::f64 ? 1 : (float64_products ? 2 : 0);
  const auto fn = prep_gram_kernels().centered_gram[which];
  const char* x = static_cast<const char*>(v.data);
  const int64_t es = dtype_size(v.dtype), rs = v.strides[0], cs = v.strides[1];
  parallel_for_chunks(R, part, [&](int64_t p, int64_t r0, int64_t r1) {
    std::vector<double> work(size_t(kGramChunkRows * ld + 6 * ld));
    fn(x + r0 * rs * es, r1 - r0, C, rs, cs, &mean[size_t(p * ld)], &m2[size_t(p * ld * ld)], ld, work.data());
  });
  double na = double(std::min(R, part));
  std::vector<double> d(static_cast<size_t>(C));
  for (int64_t p = 1; p < np_; ++p) {
    const double nb = double(std::min(R, (p + 1) * part) - p * part), n = na + nb, f = na * nb / n;
    const double* mp = &mean[size_t(p * ld)];
    const double* cp = &m2[size_t(p * ld * ld)];
    for (int64_t j = 0; j < C; ++j) d[size_t(j)] = mp[j] - mean[size_t(j)];
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = i; j < C; ++j) m2[size_t(i * ld + j)] += cp[i * ld + j] + f * d[size_t(i)] * d[size_t(j)];
    for (int64_t j = 0; j < C; ++j) mean[size_t(j)] += d[size_t(j)] * (nb / n);
    na = n;
  }
  for (int64_t j = 0; j < C; ++j) mo[j] = mean[size_t(j)];
  for (int64_t i = 0; i < C; ++i)
    for (int64_t j = i; j < C; ++j) co[i * C + j] = co[j * C + i] = m2[size_t(i * ld + j)];
}

}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(col_stats_stub, cpu, &nk::col_stats_cpu);
NK_REGISTER_DISPATCH(prep_affine_stub, cpu, &nk::affine_cpu);
NK_REGISTER_DISPATCH(prep_normalize_stub, cpu, &nk::normalize_cpu);
NK_REGISTER_DISPATCH(col_quantiles_stub, cpu, &nk::col_quantiles_cpu);
NK_REGISTER_DISPATCH(centered_gram_stub, cpu, &nk::centered_gram_cpu);

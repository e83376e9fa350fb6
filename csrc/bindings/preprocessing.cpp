// Python bindings of the preprocessing kernels (CPU: csrc/cpu/preprocessing.cpp, CUDA:
// csrc/cuda/preprocessing.cu). The estimators live in python/nnkernels/preprocessing.py;
// these entries compute column statistics, quantiles and the fused transforms.
//
// Decomposition: rows are cut into fixed blocks (a function of the shape only); statistics
// of each block are merged in block order with Chan, Golub & LeVeque's pairwise update
// (mean_ab = mean_a + d n_b / n, M2_ab = M2_a + M2_b + d^2 n_a n_b / n), so results are
// bitwise identical for any thread count.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/parallel.hpp"
#include "cpu/preprocessing.hpp"
#if defined(NK_WITH_CUDA)
#include "cuda/preprocessing.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {


// A validated 2-D input; arrays that are neither C- nor F-contiguous are copied to C order.
struct Matrix {
  py::array keep = null_array();
  ArrayView v;
  int64_t rows = 0, cols = 0, rs = 0, cs = 0;
};

Matrix matrix_arg(const py::handle& h, const char* name) {
  Matrix m;
  m.keep = as_array(h, name);
  m.v = view_of(m.keep, name);
  if (m.v.ndim() != 2)
    throw py::value_error(std::string(name) + ": expected a 2-D array, got " + std::to_string(m.v.ndim()) + "-D");
  m.rows = m.v.shape[0];
  m.cols = m.v.shape[1];
  if (m.rows < 1 || m.cols < 1) throw py::value_error(std::string(name) + ": expected at least one row and one column");
  const bool c_ok = m.cols == 1 ? true : m.v.strides[1] == 1;
  const bool f_ok = m.rows == 1 ? true : m.v.strides[0] == 1;
  if (!(c_ok && m.v.strides[0] >= m.cols) && !(f_ok && m.v.strides[1] >= m.rows) && !(c_ok && m.rows == 1)) {
    m.keep = contiguous_copy(m.keep);
    m.v = view_of(m.keep, name);
  }
  m.rs = m.v.strides[0];
  m.cs = m.v.strides[1];
  // canonical form: cs == 1 (C order) or rs == 1 (F order)
  if (m.cols == 1) m.cs = 1;
  else if (m.rows == 1) m.rs = 1;
  if (m.cs != 1 && m.rs != 1) {
    m.keep = contiguous_copy(m.keep);
    m.v = view_of(m.keep, name);
    m.rs = m.cols;
    m.cs = 1;
  }
  return m;
}

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

py::array_t<double> vec(const std::vector<double>& v) {
  py::array_t<double> a(py::ssize_t(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

std::vector<double> dvec(const py::handle& h, int64_t n, const char* name) {
  const py::array a = as_float64(h, name);  // refuses non-real input (core/array.hpp)
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error(std::string(name) + ": expected a 1-D array of " + std::to_string(n) + " values");
  const double* p = static_cast<const double*>(a.data());
  return std::vector<double>(p, p + n);
}

// Output argument: writeable ndarray of X's shape and dtype with unit stride along rows or columns.
ArrayView out_arg(const py::handle& out, const Matrix& m) {
  if (!py::isinstance<py::array>(out)) throw py::type_error("out: expected a NumPy array");
  ArrayView o = view_of(py::reinterpret_borrow<py::array>(out), "out");
  if (o.shape != m.v.shape) throw py::value_error("out: expected the shape of X");
  if (o.dtype != m.v.dtype) throw py::value_error("out: expected the dtype of X");
  if (!o.writeable) throw py::value_error("out: array is read-only");
  if (may_overlap(o, m.v) && !(o.data == m.v.data && o.strides[0] == m.rs && o.strides[1] == m.cs))
    throw py::value_error("out: partially overlaps X");
  return o;
}

py::tuple col_stats(const py::handle& xh, int flags) {
  Matrix m = matrix_arg(xh, "X");
  if (flags <= 0 || flags > 7) throw py::value_error("flags: expected a combination of 1, 2, 4");
  const int64_t C = m.cols, R = m.rows, RB = block_rows(R, C, 65536);
  const int64_t nb = num_chunks(R, RB);
  std::vector<double> mean(size_t(nb * C)), m2(size_t(nb * C)), mn(size_t(nb * C)), mx(size_t(nb * C)),
      bad(size_t(nb * C)), scratch(size_t(nb * C));
  const auto fn = prep_kernels().col_stats[dtype_index(m.v.dtype)];
  {
    py::gil_scoped_release release;
    parallel_for_chunks(R, RB, [&](int64_t c, int64_t r0, int64_t r1) {
      const size_t o = size_t(c * C);
      fn(block_of(m, r0, r1), flags, &mean[o], &m2[o], &mn[o], &mx[o], &bad[o], &scratch[o]);
    });
    // merge blocks in order
    double na = double(std::min(R, RB));
    for (int64_t c = 1; c < nb; ++c) {
      const double nbk = double(std::min(R, (c + 1) * RB) - c * RB);
      const double n = na + nbk;
      const size_t o = size_t(c * C);
      for (int64_t j = 0; j < C; ++j) {
        if (flags & (kPrepMean | kPrepMoments)) {
          const double d = mean[o + j] - mean[j];
          mean[j] = mean[j] + d * (nbk / n);
          if (flags & kPrepMoments) m2[j] = m2[j] + m2[o + j] + d * d * (na * nbk / n);
        }
        if (flags & kPrepMinMax) {
          mn[j] = mn[o + j] < mn[j] ? mn[o + j] : mn[j];
          mx[j] = mx[o + j] > mx[j] ? mx[o + j] : mx[j];
          bad[j] += bad[o + j];
        }
      }
      na = n;
    }
  }
  mean.resize(size_t(C)); m2.resize(size_t(C)); mn.resize(size_t(C)); mx.resize(size_t(C)); bad.resize(size_t(C));
  bool finite = true;
  for (int64_t j = 0; j < C; ++j) finite = finite && std::isfinite(bad[j]);
  py::object none = py::none();
  return py::make_tuple((flags & (kPrepMean | kPrepMoments)) ? py::object(vec(mean)) : none,
                        (flags & kPrepMoments) ? py::object(vec(m2)) : none,
                        (flags & kPrepMinMax) ? py::object(vec(mn)) : none,
                        (flags & kPrepMinMax) ? py::object(vec(mx)) : none, py::bool_(finite));
}

void affine(const py::handle& xh, const py::handle& ah, const py::handle& sh, const py::handle& ch,
            const py::handle& outh) {
  Matrix m = matrix_arg(xh, "X");
  const std::vector<double> a = dvec(ah, m.cols, "shift"), s = dvec(sh, m.cols, "scale");
  std::vector<double> c;
  if (!ch.is_none()) c = dvec(ch, m.cols, "offset");
  ArrayView o = out_arg(outh, m);
  int64_t yrs = o.strides[0], ycs = o.strides[1];
  if (m.cols == 1) ycs = 1;
  if (m.rows == 1) yrs = 1;
  const auto fn = prep_kernels().affine[dtype_index(m.v.dtype)];
  const int64_t RB = block_rows(m.rows, m.cols, 32768);
  const double* cp = c.empty() ? nullptr : c.data();
  char* y = static_cast<char*>(o.data);
  const int64_t ys = dtype_size(o.dtype);
  const bool stream = o.size * ys >= (int64_t(8) << 20);
  py::gil_scoped_release release;
  parallel_for(m.rows, RB, [&](int64_t r0, int64_t r1) {
    fn(block_of(m, r0, r1), y + r0 * o.strides[0] * ys, yrs, ycs, a.data(), s.data(), cp, stream);
  });
}

py::array_t<double> normalize(const py::handle& xh, const std::string& norm, const py::handle& outh) {
  Matrix m = matrix_arg(xh, "X");
  int nt;
  if (norm == "l2") nt = kNormL2;
  else if (norm == "l1") nt = kNormL1;
  else if (norm == "max") nt = kNormMax;
  else throw py::value_error("norm: expected 'l1', 'l2' or 'max', got '" + norm + "'");
  ArrayView o = out_arg(outh, m);
  int64_t yrs = o.strides[0], ycs = o.strides[1];
  if (m.cols == 1) ycs = 1;
  if (m.rows == 1) yrs = 1;
  py::array_t<double> norms(py::ssize_t(m.rows));
  double* np_ = norms.mutable_data();
  const auto fn = prep_kernels().normalize[dtype_index(m.v.dtype)];
  const int64_t RB = block_rows(m.rows, m.cols, 32768);
  char* y = static_cast<char*>(o.data);
  const int64_t ys = dtype_size(o.dtype);
  const bool stream = o.size * ys >= (int64_t(8) << 20);
  {
    py::gil_scoped_release release;
    parallel_for(m.rows, RB, [&](int64_t r0, int64_t r1) {
      std::vector<double> scratch(size_t(r1 - r0));
      fn(block_of(m, r0, r1), y + r0 * o.strides[0] * ys, yrs, ycs, nt, np_ + r0, scratch.data(), stream);
    });
  }
  return norms;
}

py::array_t<double> col_quantiles(const py::handle& xh, const std::vector<double>& qs) {
  Matrix m = matrix_arg(xh, "X");
  if (qs.empty() || qs.size() > 8) throw py::value_error("q: expected 1 to 8 percentiles");
  for (size_t k = 0; k < qs.size(); ++k) {
    if (!(qs[k] >= 0.0 && qs[k] <= 100.0)) throw py::value_error("q: percentiles must lie in [0, 100]");
    if (k && qs[k] < qs[k - 1]) throw py::value_error("q: percentiles must be sorted ascending");
  }
  const int64_t C = m.cols, R = m.rows, nq = int64_t(qs.size());
  constexpr int64_t kCols = 16;
  const int64_t ngroups = num_chunks(C, R * C <= kInlineElems ? C : kCols);
  std::vector<double> res(size_t(nq * C));
  std::vector<double> bad(size_t(ngroups), 0.0);
  const int d = dtype_index(m.v.dtype);
  const auto& K = prep_kernels();
  const int64_t es = dtype_size(m.v.dtype);
  {
    py::gil_scoped_release release;
    const int64_t gcols = R * C <= kInlineElems ? C : kCols;  // small: one inline chunk
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
      bad[size_t(g)] = K.gather[d](b, buf.data(), R);
      if (!std::isfinite(bad[size_t(g)])) return;
      std::vector<double> out(static_cast<size_t>(nq));
      const int64_t cap = R;  // candidate buffers never overflow
      if (scratch.size() < size_t(nq * (cap + 1) * es)) {
        scratch = std::vector<char>();
        scratch.resize(size_t(nq * (cap + 1) * es));
      }
      for (int64_t j = c0; j < c1; ++j) {
        K.quantiles[d](buf.data() + (j - c0) * R * es, R, qs.data(), int(nq), out.data(), scratch.data(), cap);
        for (int64_t k = 0; k < nq; ++k) res[size_t(k * C + j)] = out[size_t(k)];
      }
    });
  }
  for (double b : bad)
    if (!std::isfinite(b)) throw py::value_error("X: contains NaN or infinity");
  py::array_t<double> r({py::ssize_t(nq), py::ssize_t(C)});
  std::copy(res.begin(), res.end(), r.mutable_data());
  return r;
}


// ---- centred cross-product (covariance) for PCA / ZCA on tall data ------------------------
// Rows are cut into parts of a fixed size (a function of the shape only); each part runs the
// chunked kernel sequentially on one thread and the part results are merged here in part
// order with the matrix form of Chan's update, so the result is bitwise the same for any
// thread count. The number of parts is bounded so their ld x ld partial matrices stay small.
constexpr int64_t kGramPartBytes = int64_t(128) << 20;

py::tuple centered_gram(const py::handle& xh, bool float64_products) {
  py::array keep = as_array(xh, "X");
  const ArrayView v = view_of(keep, "X");
  if (v.ndim() != 2)
    throw py::value_error("X: expected a 2-D array (n_samples, n_features), got " + std::to_string(v.ndim()) + "-D");
  const int64_t R = v.shape[0], C = v.shape[1];
  if (R < 1 || C < 1) throw py::value_error("X: expected at least one row and one column, got shape " + shape_str(v.shape));
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
  py::array_t<double> mean_out{py::ssize_t(C)};
  py::array_t<double> cov({py::ssize_t(C), py::ssize_t(C)});
  double* mo = mean_out.mutable_data();
  double* co = cov.mutable_data();
  {
    py::gil_scoped_release release;
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
        for (int64_t j = i; j < C; ++j)
          m2[size_t(i * ld + j)] += cp[i * ld + j] + f * d[size_t(i)] * d[size_t(j)];
      for (int64_t j = 0; j < C; ++j) mean[size_t(j)] += d[size_t(j)] * (nb / n);
      na = n;
    }
    for (int64_t j = 0; j < C; ++j) mo[j] = mean[size_t(j)];
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = i; j < C; ++j) co[i * C + j] = co[j * C + i] = m2[size_t(i * ld + j)];
  }
  return py::make_tuple(mean_out, cov);
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(preprocessing) {
  using namespace nk;
  m.def("prep_col_stats", &col_stats, py::arg("X"), py::arg("flags"),
        "(mean, m2, min, max, finite) of the columns of a 2-D array; flags: 1 mean, 2 mean+M2, 4 min/max");
  m.def("prep_affine", &affine, py::arg("X"), py::arg("shift"), py::arg("scale"), py::arg("offset"), py::arg("out"),
        "out = (X - shift) * scale + offset, per column, in float64 arithmetic");
  m.def("prep_normalize", &normalize, py::arg("X"), py::arg("norm"), py::arg("out"),
        "out = rows of X divided by their norm (0 -> 1); returns the norms");
  m.def("prep_col_quantiles", &col_quantiles, py::arg("X"), py::arg("q"),
        "percentiles (NumPy 'linear') of each column by quickselect: array (len(q), n_features)");
  m.def("prep_centered_gram", &centered_gram, py::arg("X"), py::arg("float64_products") = false,
        "(mean, M) of a 2-D float32/float64 array: column means and M = (X - mean)^T (X - mean) in float64, "
        "in one blocked pass (divide by n - 1 for the covariance)");
#if defined(NK_WITH_CUDA)
  m.def("cuda_prep_col_stats",
        [](uintptr_t x, int64_t rows, int64_t cols, int dtype, uintptr_t stream) {
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          if (rows < 1 || cols < 1) throw py::value_error("X: expected at least one row and one column");
          const size_t nc = static_cast<size_t>(cols);
          std::vector<double> mean(nc), m2(nc), mn(nc), mx(nc);
          {
            py::gil_scoped_release release;
            cuda::col_stats(x, rows, cols, dtype, mean.data(), m2.data(), mn.data(), mx.data(), stream);
          }
          return py::make_tuple(vec(mean), vec(m2), vec(mn), vec(mx));
        },
        py::arg("X"), py::arg("rows"), py::arg("cols"), py::arg("dtype"), py::arg("stream"));
  m.def("cuda_prep_affine",
        [](uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, int dtype, py::handle a, py::handle s, py::handle c,
           uintptr_t stream) {
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          const std::vector<double> av = dvec(a, cols, "shift"), sv = dvec(s, cols, "scale");
          std::vector<double> cv = c.is_none() ? std::vector<double>(size_t(cols), 0.0) : dvec(c, cols, "offset");
          py::gil_scoped_release release;
          cuda::affine(x, y, rows, cols, dtype, av.data(), sv.data(), cv.data(), stream);
        },
        py::arg("X"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("dtype"), py::arg("shift"),
        py::arg("scale"), py::arg("offset"), py::arg("stream"));
  m.def("cuda_prep_normalize",
        [](uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, int dtype, const std::string& norm, uintptr_t stream) {
          if (dtype != 0 && dtype != 1) throw py::type_error("dtype: expected float32 or float64");
          int nt = norm == "l2" ? kNormL2 : norm == "l1" ? kNormL1 : norm == "max" ? kNormMax : -1;
          if (nt < 0) throw py::value_error("norm: expected 'l1', 'l2' or 'max'");
          std::vector<double> norms(static_cast<size_t>(rows));
          {
            py::gil_scoped_release release;
            cuda::normalize(x, y, rows, cols, dtype, nt, norms.data(), stream);
          }
          return vec(norms);
        },
        py::arg("X"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("dtype"), py::arg("norm"),
        py::arg("stream"));
#endif
}

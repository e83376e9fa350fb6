// CPU driver of the fused softmax cross-entropy: rows run in fixed chunks in parallel and the
// per-chunk loss partials (float64) are added in chunk order, so the result is bitwise identical
// for any thread count.
#include "drivers/losses.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "core/parallel.hpp"

NK_DEFINE_DISPATCH(SoftmaxXentImpl, softmax_xent_stub)

namespace nk {
namespace {
void softmax_xent_cpu(const ArrayView& x, const int64_t* labels, const ArrayView& d, double* loss, double*,
                      const ExecContext&) {
  const int64_t n = x.shape[0], c = x.shape[1];
  if (n == 0) {
    *loss = std::numeric_limits<double>::quiet_NaN();  // as PyTorch's mean over an empty batch
    return;
  }
  const SoftmaxXentFn fn = loss_kernels().softmax_xent[dtype_index(x.dtype)];
  const int64_t grain = std::max<int64_t>(1, 16384 / c);  // rows per chunk: depends on the shape only
  std::vector<double> partial(size_t(num_chunks(n, grain)), 0.0);
  const double inv_n = 1.0 / double(n);
  const int64_t isz = dtype_size(x.dtype);
  const char* xp = static_cast<const char*>(x.data);
  char* dp = static_cast<char*>(d.data);
  const int64_t ldx = x.strides[0], ldd = d.strides[0];
  parallel_for_chunks(n, grain, [&](int64_t chunk, int64_t b, int64_t e) {
    partial[size_t(chunk)] = fn(xp + b * ldx * isz, ldx, labels + b, dp + b * ldd * isz, ldd, 0, e - b, c, inv_n);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  *loss = total * inv_n;
}
}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(softmax_xent_stub, cpu, &nk::softmax_xent_cpu);

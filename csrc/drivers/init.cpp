// CPU driver of the weight-initialisation fill: fixed groups of elements in parallel chunks (the
// numbers depend on the element index only, never on the thread count).
#include "drivers/init.hpp"

#include <cstring>
#include <vector>

#include "core/elementwise.hpp"
#include "core/parallel.hpp"

NK_DEFINE_DISPATCH(InitFillImpl, init_fill_stub)

namespace nk {
namespace {

constexpr int64_t kGroupsPerChunk = 2048;  // 128K float32 / 64K float64 elements per parallel chunk

void fill_contiguous(void* data, DType dt, int64_t n, const InitParams& p) {
  const int di = dtype_index(dt);
  const int64_t G = dt == DType::f64 ? kInitGroupF64 : kInitGroupF32;  // 16-bit: float32 groups
  const int64_t groups = (n + G - 1) / G;
  const InitFillFn fn = init_kernels().fill[di];
  const bool stream = n * dtype_size(dt) >= (int64_t(8) << 20);  // non-temporal stores far above the caches
  parallel_for(groups, kGroupsPerChunk, [&](int64_t g0, int64_t g1) { fn(data, g0, g1, n, &p, stream); });
}

void copy_run(const void* const* ins, void* out, int64_t n, const void* itemsize, bool) {
  std::memcpy(out, ins[0], size_t(n * *static_cast<const int64_t*>(itemsize)));
}

void init_fill_cpu(const ArrayView& out, const InitParams& p, const ExecContext&) {
  const int64_t n = out.size;
  if (n == 0) return;
  if (out.c_contiguous()) return fill_contiguous(out.data, out.dtype, n, p);
  // Any other layout gets the numbers of a C-contiguous array (element order = C order): filled
  // contiguously, then scattered by the elementwise driver.
  const int64_t isz = dtype_size(out.dtype);
  std::vector<char> tmp(size_t(n * isz));
  fill_contiguous(tmp.data(), out.dtype, n, p);
  ArrayView src = out;
  src.data = tmp.data();
  int64_t expect = 1;
  for (int i = src.ndim() - 1; i >= 0; --i) {
    src.strides[size_t(i)] = expect;
    expect *= src.shape[size_t(i)];
  }
  run_elementwise(&src, 1, out, &copy_run, &isz);
}

}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(init_fill_stub, cpu, &nk::init_fill_cpu);

// CUDA weight-initialisation kernel: Philox4x32-10 (core/philox.hpp, shared with the CPU kernels)
// + uniform / Box-Muller normal transforms, bit-identical to the CPU kernels (csrc/cpu/init.cpp;
// float16/bfloat16: the float32 numbers rounded to nearest even by DevStorage, as the CPU's
// stores round them): one thread per Philox block, the
// shared math of csrc/cpu/init.hpp evaluated on `Rn` values whose operators are the
// round-to-nearest intrinsics (__fadd_rn, __fmul_rn, __fdiv_rn, __fsqrt_rn, ...), which the
// compiler never contracts into FMA. Reference: nnkernels.reference.init.
// Test: pytest -m gpu tests/test_init.py ; bench: python -m nnkernels bench --ops init
#include <cuda_runtime.h>

#include "core/philox.hpp"
#include "cpu/init.hpp"
#include "cuda/common.cuh"
#include "drivers/init.hpp"

namespace nk {
namespace cuda {
namespace {

template <class T> struct Rn;
template <> struct Rn<float> {
  float v;
  __device__ Rn() : v(0.f) {}
  __device__ Rn(float x) : v(x) {}
};
template <> struct Rn<double> {
  double v;
  __device__ Rn() : v(0.0) {}
  __device__ Rn(double x) : v(x) {}
};
__device__ __forceinline__ Rn<float> operator+(Rn<float> a, Rn<float> b) { return __fadd_rn(a.v, b.v); }
__device__ __forceinline__ Rn<float> operator-(Rn<float> a, Rn<float> b) { return __fsub_rn(a.v, b.v); }
__device__ __forceinline__ Rn<float> operator*(Rn<float> a, Rn<float> b) { return __fmul_rn(a.v, b.v); }
__device__ __forceinline__ Rn<float> operator/(Rn<float> a, Rn<float> b) { return __fdiv_rn(a.v, b.v); }
__device__ __forceinline__ Rn<float> operator+(Rn<float> a, float b) { return __fadd_rn(a.v, b); }
__device__ __forceinline__ Rn<float> operator-(Rn<float> a, float b) { return __fsub_rn(a.v, b); }
__device__ __forceinline__ Rn<float> operator*(Rn<float> a, float b) { return __fmul_rn(a.v, b); }
__device__ __forceinline__ Rn<double> operator+(Rn<double> a, Rn<double> b) { return __dadd_rn(a.v, b.v); }
__device__ __forceinline__ Rn<double> operator-(Rn<double> a, Rn<double> b) { return __dsub_rn(a.v, b.v); }
__device__ __forceinline__ Rn<double> operator*(Rn<double> a, Rn<double> b) { return __dmul_rn(a.v, b.v); }
__device__ __forceinline__ Rn<double> operator/(Rn<double> a, Rn<double> b) { return __ddiv_rn(a.v, b.v); }
__device__ __forceinline__ Rn<double> operator+(Rn<double> a, double b) { return __dadd_rn(a.v, b); }
__device__ __forceinline__ Rn<double> operator-(Rn<double> a, double b) { return __dsub_rn(a.v, b); }
__device__ __forceinline__ Rn<double> operator*(Rn<double> a, double b) { return __dmul_rn(a.v, b); }
__device__ __forceinline__ float sqrt_rn(float x) { return __fsqrt_rn(x); }
__device__ __forceinline__ double sqrt_rn(double x) { return __dsqrt_rn(x); }

using namespace philox_detail;

// Philox4x32-10, as philox10 in csrc/cpu/init.cpp (both: core/philox.hpp).
__device__ __forceinline__ void philox10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  philox::rounds10(c[0], c[1], c[2], c[3], k0, k1);
}

// log x, x in (0, 1] normal, as vlog_unit in csrc/cpu/init.cpp (the reduction is exact).
template <class T>
__device__ __forceinline__ Rn<T> log_unit(T x) {
  int e;
  T m = sizeof(T) == 4 ? T(frexpf(float(x), &e)) : T(frexp(double(x), &e));  // x = m 2^e, m in [1/2, 1)
  m = m * T(2);  // exact
  e -= 1;
  if (m > T(1.4142135623730951)) {
    m = m * T(0.5);
    e += 1;
  }
  return log_from_reduced<T>(Rn<T>(m), Rn<T>(T(e)));
}

template <class T>
__device__ __forceinline__ void box_muller(T u1, T y, T& z0, T& z1) {
  const Rn<T> R = sqrt_rn((log_unit<T>(u1) * T(-2)).v);
  const Rn<T> n = round_small<T>(Rn<T>(y));
  const Rn<T> r = Rn<T>(y) - n;
  Rn<T> s, c;
  sincos_halfpi<T>(r, s, c);
  const int q = int(n.v) & 3;
  T sn = (q == 1 || q == 3) ? c.v : s.v;
  T cs = (q == 1 || q == 3) ? s.v : c.v;
  if (q == 2 || q == 3) sn = -sn;
  if (q == 1 || q == 2) cs = -cs;
  z0 = (R * cs).v;
  z1 = (R * sn).v;
}

__device__ __forceinline__ float affine(float v, float a, float b) { return __fadd_rn(__fmul_rn(v, b), a); }
__device__ __forceinline__ double affine(double v, double a, double b) { return __dadd_rn(__dmul_rn(v, b), a); }

__device__ __forceinline__ double u53(uint32_t w0, uint32_t w1, bool add) {
  double k = __dadd_rn(__dmul_rn(double(w0 >> 5), 67108864.0), double(w1 >> 6));
  if (add) k = __dadd_rn(k, 1.0);
  return __dmul_rn(k, 1.0 / 9007199254740992.0);
}

// Thread j computes Philox block j = 16 g + l and writes its outputs of group g (layout: init.hpp).
// S: the storage (float16/bfloat16: the float32 layout and numbers, rounded on the store); T: the
// type the numbers are computed in.
template <class S, class T = typename DevStorage<S>::C>
__global__ void init_kernel(S* __restrict__ out, int64_t n, int64_t blocks, uint64_t seed, int dist, T a, T b) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < blocks; j += stride) {
    uint32_t c[4] = {uint32_t(uint64_t(j)), uint32_t(uint64_t(j) >> 32), 0u, 0u};
    philox10(c, k0, k1);
    const int64_t g = j >> 4, l = j & 15;
    if constexpr (sizeof(T) == 4) {
      const int64_t base = g * 64 + l;
      T v[4];
      if (dist == kInitUniform) {
#pragma unroll
        for (int w = 0; w < 4; ++w) v[w] = T(__fmul_rn(float(c[w] >> 8), 1.0f / 16777216.0f));
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float u1 = __fmul_rn(float((c[2 * h] >> 8) + 1u), 1.0f / 16777216.0f);
          const float y = __fmul_rn(float(c[2 * h + 1] >> 8), 1.0f / 4194304.0f);
          float z0, z1;
          box_muller<float>(u1, y, z0, z1);
          v[2 * h] = T(z0);
          v[2 * h + 1] = T(z1);
        }
      }
#pragma unroll
      for (int w = 0; w < 4; ++w)
        if (base + 16 * w < n) out[base + 16 * w] = DevStorage<S>::store(affine(v[w], a, b));
    } else {
      const int64_t base = g * 32 + l;
      T v[2];
      if (dist == kInitUniform) {
        v[0] = T(u53(c[0], c[1], false));
        v[1] = T(u53(c[2], c[3], false));
      } else {
        const double u1 = u53(c[0], c[1], true);
        const double y = __dmul_rn(u53(c[2], c[3], false), 4.0);
        double z0, z1;
        box_muller<double>(u1, y, z0, z1);
        v[0] = T(z0);
        v[1] = T(z1);
      }
      if (base < n) out[base] = affine(v[0], a, b);
      if (base + 16 < n) out[base + 16] = affine(v[1], a, b);
    }
  }
}

}  // namespace

// The init_fill_stub's CUDA implementation: a C-contiguous device array, on ctx's stream.
void init_fill_cuda(const ArrayView& out, const InitParams& p, const ExecContext& ctx) {
  const int64_t n = out.size;
  if (n <= 0) return;
  constexpr int block = 256;
  const bool f64 = out.dtype == DType::f64;
  const int64_t G = f64 ? kInitGroupF64 : kInitGroupF32;  // 16-bit: float32 groups
  const int64_t blocks = (n + G - 1) / G * 16;
  const cudaStream_t s = as_stream(ctx.stream);
  const unsigned grid = grid_for(blocks, block);
  const float a = float(p.a), b = float(p.b);
  switch (out.dtype) {
    case DType::f32: init_kernel<float><<<grid, block, 0, s>>>(out.ptr<float>(), n, blocks, p.seed, p.dist, a, b); break;
    case DType::f64: init_kernel<double><<<grid, block, 0, s>>>(out.ptr<double>(), n, blocks, p.seed, p.dist, p.a, p.b); break;
    case DType::f16: init_kernel<__half><<<grid, block, 0, s>>>(out.ptr<__half>(), n, blocks, p.seed, p.dist, a, b); break;
    case DType::bf16:
      init_kernel<__nv_bfloat16><<<grid, block, 0, s>>>(out.ptr<__nv_bfloat16>(), n, blocks, p.seed, p.dist, a, b);
      break;
  }
  throw_if_error(cudaGetLastError(), "init kernel launch");
}

}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(init_fill_stub, cuda, &nk::cuda::init_fill_cuda);

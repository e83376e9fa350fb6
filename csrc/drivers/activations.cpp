// CPU driver of the activation ops: the elementwise driver over the best ISA table.
#include "drivers/activations.hpp"

#include <cmath>
#include <vector>

#include "core/elementwise.hpp"
#include "core/float16.hpp"

NK_DEFINE_DISPATCH(ActivationImpl, activation_stub)

namespace nk {
namespace {

// sigmoid of a 16-bit input has one correctly rounded 16-bit result per input pattern: the kernels
// below AVX-512 look it up (cpu/activations.cpp says why and what it gains). The value in float64
// (libm's exp) rounded once to the storage dtype (core/float16.hpp: no double rounding); a NaN
// is the float32 round trip of the other ops (sign and payload kept, made quiet). Built on a
// dtype's first call (1.1-1.3 ms here), 128 KB per dtype.
template <bool Bf16> std::vector<uint16_t> sigmoid_table() {
  std::vector<uint16_t> table(1 << 16);
  for (uint32_t h = 0; h < (1u << 16); ++h) {
    const float f = Bf16 ? bf16_to_float(uint16_t(h)) : f16_to_float(uint16_t(h));
    if (std::isnan(f)) {
      table[h] = Bf16 ? float_to_bf16(f) : float_to_f16(f);
      continue;
    }
    const double x = f;
    const double e = std::exp(-std::fabs(x));  // in [0, 1]: no overflow
    const double y = x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    table[h] = Bf16 ? double_to_bf16(y) : double_to_f16(y);
  }
  return table;
}

const uint16_t* sigmoid_table_of(DType dtype) {  // thread-safe first use (a function-local static)
  if (dtype == DType::bf16) {
    static const std::vector<uint16_t> bf16 = sigmoid_table<true>();
    return bf16.data();
  }
  static const std::vector<uint16_t> f16 = sigmoid_table<false>();
  return f16.data();
}

void activation_cpu(ActivationOp op, const ArrayView* ins, int n_in, const ArrayView& out, const ActivationParams& p,
                    const ExecContext&) {
  ActivationParams params = p;
  if (op == kSigmoid && (out.dtype == DType::f16 || out.dtype == DType::bf16))
    params.sigmoid16_table = sigmoid_table_of(out.dtype);
  run_elementwise(ins, n_in, out, activation_kernels().fn[op][dtype_index(out.dtype)], &params);
}
}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(activation_stub, cpu, &nk::activation_cpu);

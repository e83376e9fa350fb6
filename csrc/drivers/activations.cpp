// CPU driver of the activation ops: the elementwise driver over the best ISA table.
#include "drivers/activations.hpp"

#include "core/elementwise.hpp"

NK_DEFINE_DISPATCH(ActivationImpl, activation_stub)

namespace nk {
namespace {
void activation_cpu(ActivationOp op, const ArrayView* ins, int n_in, const ArrayView& out, const ActivationParams& p,
                    const ExecContext&) {
  run_elementwise(ins, n_in, out, activation_kernels().fn[op][dtype_index(out.dtype)], &p);
}
}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(activation_stub, cpu, &nk::activation_cpu);

// Optimizer ops on any device (multi-tensor apply): the validated tensor list, the memory-overlap
// sweep run on it for every device, and one function type per op with the CPU driver
// (drivers/optimizers.cpp, over the ISA tables of cpu/optimizers.cpp) and the CUDA launcher
// (cuda/optimizers.cu) registered. Pybind-free: bindings/optimizers.cpp parses the Python
// arguments into a TensorList, validates it once, and calls the stub.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dispatch.hpp"
#include "core/view.hpp"
#include "cpu/optimizers.hpp"

namespace nk {

// AMSGrad with a master copy: params, grads, master_params, exp_avg, exp_avg_sq, max_exp_avg_sq
constexpr int kOptimMaxOperands = 6;
// Elements per chunk (64 KiB of each float32 operand): the CPU cuts the list laid end to end
// into chunks of this size (one parallel task each), the GPU cuts each tensor into chunks of
// this size (one thread block each). Fixed: results never depend on the thread count.
constexpr int64_t kOptimChunk = 16384;

// The tensors of one call, validated (C-contiguous, one device, no forbidden overlap): tensor t
// has size[t] elements, its operand k (in the order of cpu/optimizers.hpp for the op: params,
// grads, [master,] states...) starts at data[t * nops + k] and has dtype dtype_at(t, k): dtype[t]
// (the parameters' dtype, operand param_op's; it selects the kernel) for every operand, unless some
// operand of the call differs (16-bit params with float32 states or a master copy): op_dtype then
// holds every operand's (empty otherwise: no allocation for the common uniform call). 16-bit parameters
// (issue 15) may have float32 states (operand state_op, the first state; -1 without states) and
// a float32 master copy. Empty tensors stay in the list (the slot indices name arguments in
// error messages); the drivers skip them.
struct TensorList {
  int nops = 0;
  int param_op = 0;   // 0; EMA: 1 (the averages are operand 0)
  int state_op = -1;
  std::vector<void*> data;
  std::vector<DType> op_dtype;
  std::vector<int64_t> size;
  std::vector<DType> dtype;
  int64_t count() const { return int64_t(size.size()); }
  void* at(int64_t t, int k) const { return data[size_t(t * nops + k)]; }
  DType dtype_at(int64_t t, int k) const { return op_dtype.empty() ? dtype[size_t(t)] : op_dtype[size_t(t * nops + k)]; }
  // 16-bit parameters whose states are float32 (OptimHyper::state_f32 for tensor t).
  bool state_f32(int64_t t) const {
    return state_op >= 0 && is_16bit(dtype[size_t(t)]) && dtype_at(t, state_op) == DType::f32;
  }
};

// Memory an updated operand shares with any other operand (another tensor's state, its own
// gradient, the same array listed twice, overlapping views...), on any device: byte ranges
// swept in address order. written[k]: operand k is updated in place. Returns the slots
// (t * nops + k) of one offending pair, the one that starts later first, or {-1, -1}.
struct SharedSlots {
  int64_t first = -1, second = -1;
};
SharedSlots find_shared_memory(const TensorList& list, const bool* written);

// Per-tensor chunks of kOptimChunk elements over the non-empty tensors (the CUDA clip_grad_norm
// workspace holds one partial sum per chunk, then the clip coefficient and its flag).
int64_t tensor_chunk_count(const TensorList& list);
inline int64_t clip_workspace_size(const TensorList& list) { return tensor_chunk_count(list) + 2; }

// One fused update of every tensor of the list (op and operand order: cpu/optimizers.hpp). h's
// rounding / seed / rng_step apply to the 16-bit parameters (h.state_f32 is set per tensor by
// the drivers, from the list); the element at flat index e of the list (tensors end to end, in
// list order) takes the stochastic-rounding word of e.
using OptimStepImpl = void (*)(OptimOp op, const TensorList& list, const OptimHyper& h, const ExecContext& ctx);
// clip_grad_norm over list (nops 1: the gradients): writes the global L2 norm (float64, fixed
// reduction order) to the 0-d float64 `norm` on the list's device, and scales every gradient by
// max_norm / (norm + 1e-6) when norm > max_norm or is NaN. `workspace`: float64 on the device,
// clip_workspace_size(list) elements (CUDA; the CPU driver takes an empty view).
using ClipGradNormImpl = void (*)(const TensorList& list, double max_norm, const ArrayView& norm,
                                  const ArrayView& workspace, const ExecContext& ctx);

}  // namespace nk

NK_DECLARE_DISPATCH(OptimStepImpl, optim_step_stub)
NK_DECLARE_DISPATCH(ClipGradNormImpl, clip_grad_norm_stub)

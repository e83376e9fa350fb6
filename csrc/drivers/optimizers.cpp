// CPU driver of the optimizer ops (multi-tensor apply) and the device-independent host pieces of
// every optimizer call: the overlap sweep and the chunk count.
// The whole list is laid end to end as one index range [0, total) cut into fixed chunks of
// kOptimChunk elements; one parallel region runs every chunk, each chunk walking the pieces of the
// tensors it covers with the contiguous kernels of cpu/optimizers.cpp. Small tensors are thereby
// batched, and the chunking (hence every result, including clip_grad_norm's per-chunk partial
// sums) is independent of the thread count.
#include "drivers/optimizers.hpp"

#include <algorithm>
#include <cmath>

#include "core/parallel.hpp"

NK_DEFINE_DISPATCH(OptimStepImpl, optim_step_stub)
NK_DEFINE_DISPATCH(ClipGradNormImpl, clip_grad_norm_stub)

namespace nk {

SharedSlots find_shared_memory(const TensorList& list, const bool* written) {
  // One extent per non-empty operand, sorted by start; a running maximum of the ends seen so far
  // (over all operands, and over the updated ones) finds any intersection in one pass.
  struct Ext {
    uintptr_t lo, hi;
    int64_t slot;
    bool write;
  };
  const int nops = list.nops;
  std::vector<Ext> ext;
  ext.reserve(list.data.size());
  const bool uniform = list.op_dtype.empty();
  for (int64_t t = 0; t < list.count(); ++t) {
    if (list.size[size_t(t)] == 0) continue;
    const uintptr_t tensor_bytes = uintptr_t(list.size[size_t(t)]) * uintptr_t(dtype_size(list.dtype[size_t(t)]));
    for (int k = 0; k < nops; ++k) {
      const uintptr_t bytes =
          uniform ? tensor_bytes : uintptr_t(list.size[size_t(t)]) * uintptr_t(dtype_size(list.dtype_at(t, k)));
      const uintptr_t lo = reinterpret_cast<uintptr_t>(list.at(t, k));
      ext.push_back({lo, lo + bytes, t * nops + k, written[k]});
    }
  }
  std::sort(ext.begin(), ext.end(), [](const Ext& a, const Ext& b) { return a.lo < b.lo; });
  uintptr_t hi_any = 0, hi_w = 0;
  int64_t who_any = -1, who_w = -1;
  for (const Ext& e : ext) {
    if (e.write && e.lo < hi_any) return {e.slot, who_any};
    if (!e.write && e.lo < hi_w) return {e.slot, who_w};
    if (e.hi > hi_any) {
      hi_any = e.hi;
      who_any = e.slot;
    }
    if (e.write && e.hi > hi_w) {
      hi_w = e.hi;
      who_w = e.slot;
    }
  }
  return {};
}

int64_t tensor_chunk_count(const TensorList& list) {
  int64_t n = 0;
  for (int64_t s : list.size) n += num_chunks(s, kOptimChunk);
  return n;
}

namespace {

// One piece of the flat index range: tensor t's elements [start, start + n) of the range.
struct Seg {
  int64_t start, n, tensor;
};

std::vector<Seg> segments(const TensorList& list, int64_t& total) {
  std::vector<Seg> segs;
  segs.reserve(size_t(list.count()));
  total = 0;
  for (int64_t t = 0; t < list.count(); ++t) {
    const int64_t n = list.size[size_t(t)];
    if (n == 0) continue;
    segs.push_back({total, n, t});
    total += n;
  }
  return segs;
}

// f(seg, first_element_in_seg, count) for every piece of chunk [b, e).
template <class F>
inline void for_pieces(const std::vector<Seg>& segs, int64_t b, int64_t e, F&& f) {
  size_t s = size_t(std::upper_bound(segs.begin(), segs.end(), b,
                                     [](int64_t v, const Seg& sg) { return v < sg.start; }) - segs.begin()) - 1;
  for (; s < segs.size() && segs[s].start < e; ++s) {
    const Seg& sg = segs[s];
    const int64_t lo = std::max(b, sg.start), hi = std::min(e, sg.start + sg.n);
    f(sg, lo - sg.start, hi - lo);
  }
}

// Every piece of every tensor through fns[params' dtype](operand pointers at the piece, n, h,
// flat index of the piece's first element); 16-bit params with float32 states get h with state_f32.
void apply_cpu(const TensorList& list, const std::vector<Seg>& segs, int64_t total, const OptimUpdateFn* fns,
               const OptimHyper& h) {
  const int nops = list.nops;
  if (list.op_dtype.empty()) {  // every operand of a tensor in its params' dtype (no float32 states of 16-bit params)
    parallel_for(total, kOptimChunk, [&](int64_t b, int64_t e) {
      for_pieces(segs, b, e, [&](const Seg& sg, int64_t off, int64_t n) {
        const DType dt = list.dtype[size_t(sg.tensor)];
        void* p[kOptimMaxOperands];
        for (int k = 0; k < nops; ++k) p[k] = static_cast<char*>(list.at(sg.tensor, k)) + off * dtype_size(dt);
        fns[dtype_index(dt)](p, n, &h, sg.start + off);
      });
    });
    return;
  }
  OptimHyper hs[2] = {h, h};  // [state_f32]
  hs[0].state_f32 = 0;
  hs[1].state_f32 = 1;
  parallel_for(total, kOptimChunk, [&](int64_t b, int64_t e) {
    for_pieces(segs, b, e, [&](const Seg& sg, int64_t off, int64_t n) {
      void* p[kOptimMaxOperands];
      for (int k = 0; k < nops; ++k)
        p[k] = static_cast<char*>(list.at(sg.tensor, k)) + off * dtype_size(list.dtype_at(sg.tensor, k));
      fns[dtype_index(list.dtype[size_t(sg.tensor)])](p, n, &hs[list.state_f32(sg.tensor) ? 1 : 0], sg.start + off);
    });
  });
}

void optim_step_cpu(OptimOp op, const TensorList& list, const OptimHyper& h, const ExecContext&) {
  int64_t total = 0;
  const std::vector<Seg> segs = segments(list, total);
  if (total == 0) return;
  apply_cpu(list, segs, total, optimizer_kernels().update[op], h);
}

void clip_grad_norm_cpu(const TensorList& list, double max_norm, const ArrayView& norm_out, const ArrayView&,
                        const ExecContext&) {
  double& norm = *norm_out.ptr<double>();
  norm = 0.0;
  int64_t total = 0;
  const std::vector<Seg> segs = segments(list, total);
  if (total == 0) return;
  const OptimizerKernels& K = optimizer_kernels();
  std::vector<double> partial(size_t(num_chunks(total, kOptimChunk)), 0.0);
  parallel_for_chunks(total, kOptimChunk, [&](int64_t c, int64_t b, int64_t e) {
    double s = 0.0;
    for_pieces(segs, b, e, [&](const Seg& sg, int64_t off, int64_t n) {
      const DType dt = list.dtype[size_t(sg.tensor)];
      s += K.sumsq[dtype_index(dt)](static_cast<char*>(list.at(sg.tensor, 0)) + off * dtype_size(dt), n);
    });
    partial[size_t(c)] = s;
  });
  double sum = 0.0;
  for (double v : partial) sum += v;  // chunk order: independent of the thread count
  norm = std::sqrt(sum);
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when it is < 1.
  // A NaN norm gives a NaN coefficient, as in PyTorch: NaN reaches every gradient (no masking).
  if (norm > max_norm || std::isnan(norm)) {
    OptimHyper h;
    h.scale = max_norm / (norm + 1e-6);
    apply_cpu(list, segs, total, K.update[kScale], h);  // 16-bit gradients: rounded to nearest
  }
}

}  // namespace
}  // namespace nk

NK_REGISTER_DISPATCH(optim_step_stub, cpu, &nk::optim_step_cpu);
NK_REGISTER_DISPATCH(clip_grad_norm_stub, cpu, &nk::clip_grad_norm_cpu);

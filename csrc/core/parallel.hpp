// Host-side parallel loops with a fixed decomposition.
//
// Work is cut into chunks whose boundaries depend only on the problem size and a grain,
// never on the thread count; threads take whole chunks, and reductions combine per-chunk
// partials in chunk order. Results are therefore bitwise identical for 1 or N threads.
// Small problems run inline on the calling thread (no OpenMP fork: call overhead).
#pragma once
#include <algorithm>
#include <cstdint>
#include "core/common.hpp"

namespace nk {

inline int64_t num_chunks(int64_t n, int64_t grain) { return n <= 0 ? 0 : (n + grain - 1) / grain; }

// f(chunk_index, begin, end) for each fixed chunk of [0, n).
template <class F>
void parallel_for_chunks(int64_t n, int64_t grain, F&& f) {
  const int64_t chunks = num_chunks(n, grain);
  if (chunks == 0) return;
  int threads = chunks > 1 ? max_threads() : 1;
  if (threads > chunks) threads = int(chunks);
  if (threads <= 1) {
    for (int64_t c = 0; c < chunks; ++c) f(c, c * grain, std::min(n, (c + 1) * grain));
    return;
  }
#if defined(NK_WITH_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) f(c, c * grain, std::min(n, (c + 1) * grain));
#else
  for (int64_t c = 0; c < chunks; ++c) f(c, c * grain, std::min(n, (c + 1) * grain));
#endif
}

// f(begin, end) over [0, n) in fixed chunks.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  parallel_for_chunks(n, grain, [&](int64_t, int64_t b, int64_t e) { f(b, e); });
}

}  // namespace nk

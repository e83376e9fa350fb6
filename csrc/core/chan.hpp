// Chan, Golub & LeVeque's pairwise update of (count, mean, M2) statistics ("Updating formulae and
// a pairwise algorithm for computing sample variances", 1979): merging part b into part a,
//   n = na + nb, delta = mean_b - mean_a, mean = mean_a + delta * nb / n,
//   M2 = M2_a + M2_b + delta^2 * na * nb / n.
// One definition for every layer that merges statistics: the CPU kernels (per-block merges of
// csrc/cpu/normalization.cpp), the CPU drivers (per-task partials merged in a fixed order) and
// the CUDA kernels (block trees and per-part merges), host and device alike.
//
// The functions have internal linkage (an unnamed namespace): the per-ISA kernel translation
// units include this header too, and an inline function with external linkage would be merged
// by the linker across ISA levels (see core/common.hpp). Nothing here includes other headers.
#pragma once

#if defined(__CUDACC__)
#define NK_HOST_DEVICE __host__ __device__
#else
#define NK_HOST_DEVICE
#endif

namespace nk {
namespace {

// The weights of one merge (na values merged with nb values): loops that merge many columns with
// the same counts compute them once per block.
struct ChanWeights {
  double n;    // merged count
  double wb;   // weight of delta in the merged mean: nb / n
  double wab;  // weight of delta^2 in the merged M2: na * nb / n
};
NK_HOST_DEVICE inline ChanWeights chan_weights(double na, double nb) {
  const double n = na + nb;
  return ChanWeights{n, nb / n, na * nb / n};
}
// Merges (mean_b, m2_b) into (mean, m2) with the weights of their counts (n > 0).
NK_HOST_DEVICE inline void chan_apply(double& mean, double& m2, double mean_b, double m2_b, const ChanWeights& w) {
  const double delta = mean_b - mean;
  mean += delta * w.wb;
  m2 += m2_b + delta * delta * w.wab;
}
// Merges part (nb, mean_b, m2_b) into (cnt, mean, m2). Counts may be weight sums (West 1979:
// preprocessing's sample_weight) and 0 (an empty part, or a column whose values were all NaN in
// one part). Empty parts leave it as it is; the first non-empty part is copied (the general update
// would reach the same values up to the sign of a zero, with a division more and inf * 0 = NaN for
// a huge first mean).
NK_HOST_DEVICE inline void chan_merge(double& cnt, double& mean, double& m2, double nb, double mean_b, double m2_b) {
  if (!(nb > 0)) return;
  if (!(cnt > 0)) {
    cnt = nb;
    mean = mean_b;
    m2 = m2_b;
    return;
  }
  const ChanWeights w = chan_weights(cnt, nb);
  chan_apply(mean, m2, mean_b, m2_b, w);
  cnt = w.n;
}

}  // namespace
}  // namespace nk

// A bounded cache of the memory blocks behind large results (>= kPlacedMinBytes, see
// array.hpp): the host-side counterpart of CuPy's memory pool and PyTorch's CUDA caching
// allocator. A fresh result of 1 MB and more would otherwise be a new mapping on every call,
// and the kernel would pay for faulting and zeroing its pages (2-10x the kernel's own time
// at 256 MB, with transparent-huge-page compaction outliers of hundreds of milliseconds).
//
// A block goes back to the cache only when the object owning it (a capsule set as the
// result's NumPy base) is deallocated, i.e. when no array, view or buffer export of the result
// survives; the next result whose size class fits takes it, its pages already touched.
// Idle blocks are bounded by a limit (default min(2 GiB, 10% of RAM), the environment variable
// NNKERNELS_RESULT_CACHE_LIMIT at import, nk.set_result_cache_limit); blocks beyond it are
// unmapped, returning their memory to the operating system. A forked child starts empty.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>

namespace nk {

// Memory for a result of `nbytes` whose first byte is `page_offset` (0..4095) bytes into a
// page: `*data` receives that address. Returns a new reference to the object that owns the
// memory (set it as the array's base object). `*newly_mapped` (if given) says whether the block
// is a new mapping whose pages the caller's kernel will fault in (a miss) or a reused one (a
// hit: pages present). The caller holds the GIL. Raises MemoryError when the memory cannot be
// mapped even after emptying the cache.
pybind11::object result_block(int64_t nbytes, uint32_t page_offset, char** data, bool* newly_mapped = nullptr);

}  // namespace nk

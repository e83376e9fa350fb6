#include "core/result_cache.hpp"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iterator>
#include <list>
#include <map>
#include <limits>
#include <mutex>
#include <new>
#include <string>

#include "core/array.hpp"
#include "core/module.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#define NK_HAVE_MMAP 1
#endif

namespace py = pybind11;

namespace nk {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t(2) << 20;
// Blocks this large are mapped 2 MiB aligned and advised for transparent huge pages, as
// NumPy advises its own allocations of 4 MiB and more: fewer faults on first touch, fewer
// TLB misses in the kernels that stream through them.
constexpr size_t kHugeMin = size_t(4) << 20;
const char* const kCapsuleName = "nnkernels.result_block";

// Size classes: eight per power of two (a block is at most 12.5% larger than asked
// for), so the results of one call site always land in the same class. A request takes the
// smallest idle block of its class or above, up to twice the class: a slightly smaller result
// (a last, partial batch) still reuses the block of the full one.
size_t size_class(size_t need) {
  size_t p = 1;
  while (p <= need / 2) p *= 2;  // largest power of two <= need
  const size_t step = std::max(kPage, p / 8);
  return (need + step - 1) / step * step;
}

struct Block {
  char* base;
  size_t bytes;
};

char* map_block(size_t bytes) {
#if defined(NK_HAVE_MMAP)
  if (bytes >= kHugeMin) {
    // over-map by one huge page and trim both ends to a 2 MiB aligned start
    const size_t len = bytes + kHugePage;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uintptr_t start = (a + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
    if (start > a) munmap(p, start - a);
    const uintptr_t end = start + bytes;
    if (a + len > end) munmap(reinterpret_cast<void*>(end), a + len - end);
#if defined(MADV_HUGEPAGE)
    madvise(reinterpret_cast<void*>(start), bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
    return reinterpret_cast<char*>(start);
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
#else
  return static_cast<char*>(std::malloc(bytes));  // page alignment is not needed: placement uses the slack
#endif
}

void unmap_block(const Block& b) {
#if defined(NK_HAVE_MMAP)
  munmap(b.base, b.bytes);
#else
  std::free(b.base);
#endif
}

int64_t default_limit() {
  int64_t limit = int64_t(2) << 30;
#if defined(NK_HAVE_MMAP)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) limit = std::min(limit, int64_t(pages) * int64_t(page) / 10);
#endif
  return limit;
}

// The cache. Idle blocks are kept in the order they were freed (eviction takes the oldest)
// and indexed by size (lookup takes the smallest fitting, the most recently freed among
// equals: its pages are the likeliest still in the caches and TLB).
struct Cache {
  std::mutex mu;
  std::list<Block> idle;  // oldest first
  std::multimap<size_t, std::list<Block>::iterator> by_size;
  int64_t limit = default_limit();
  int64_t idle_bytes = 0;
  int64_t live_bytes = 0, live_blocks = 0;  // handed out and not yet returned
  int64_t hits = 0, misses = 0, evictions = 0;

  void drop(std::multimap<size_t, std::list<Block>::iterator>::iterator it) {
    idle_bytes -= int64_t(it->second->bytes);
    idle.erase(it->second);
    by_size.erase(it);
  }
  // Unmaps the oldest idle blocks until at most `bound` bytes stay idle. (Under the lock: the
  // free path runs from a deallocator and must not allocate; the GIL serialises it anyway.)
  void evict_to(int64_t bound) {
    while (idle_bytes > bound && !idle.empty()) {
      const Block b = idle.front();
      auto range = by_size.equal_range(b.bytes);
      for (auto it = range.first; it != range.second; ++it)
        if (it->second == idle.begin()) {
          drop(it);
          break;
        }
      unmap_block(b);
      ++evictions;
    }
  }
};

// Never destroyed: results may be deallocated during interpreter shutdown, after static
// destructors would have run.
Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

// Called (with the GIL) when the capsule owning a block is deallocated: the last reference to
// the result's memory is gone. Never calls into Python while holding the lock (a garbage
// collection there could free another result and re-enter).
void return_block(char* base, size_t bytes) noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.live_bytes -= int64_t(bytes);
  c.live_blocks -= 1;
  if (int64_t(bytes) > c.limit) {
    unmap_block({base, bytes});
    return;
  }
  try {
    c.idle.push_back({base, bytes});
    try {
      c.by_size.emplace(bytes, std::prev(c.idle.end()));
    } catch (...) {
      c.idle.pop_back();
      throw;
    }
  } catch (...) {  // no memory for the bookkeeping: return the block to the OS instead
    unmap_block({base, bytes});
    return;
  }
  c.idle_bytes += int64_t(bytes);
  c.evict_to(c.limit);
}

void capsule_destructor(PyObject* capsule) {
  char* base = static_cast<char*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  const size_t bytes = reinterpret_cast<size_t>(PyCapsule_GetContext(capsule));
  if (base && bytes) return_block(base, bytes);
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.evict_to(0);
}

// Fork: the parent's idle blocks must not serve the child (the child starts empty). The
// prepare handler takes the lock, so the list is consistent when the address space is copied
// and no other thread's half-done update is inherited; the child unmaps its copies of the idle
// blocks (the parent keeps its own) and resets the counters; blocks of results alive in the
// child stay its own and come back to its cache when freed.
void before_fork() { cache().mu.lock(); }
void after_fork_parent() { cache().mu.unlock(); }
void after_fork_child() {
  Cache& c = cache();
  for (const Block& b : c.idle) unmap_block(b);
  c.idle.clear();
  c.by_size.clear();
  c.idle_bytes = 0;
  c.hits = c.misses = c.evictions = 0;
  c.mu.unlock();
}

void set_limit(int64_t limit) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = limit;
  c.evict_to(limit);
}

// "1073741824", "512M", "512MiB", "2G", "1.5GiB": K/M/G/T and KiB/MiB/GiB/TiB are powers of
// 1024, KB/MB/GB/TB powers of 1000, B or nothing plain bytes; letters in any case.
int64_t parse_bytes(const std::string& text, const char* what) {
  auto bad = [&]() {
    return py::value_error(std::string(what) + ": expected a byte count such as 1073741824, 512M or 2GiB (0 disables), got '" +
                           text + "'");
  };
  size_t i = 0, n = text.size();
  while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  while (n > i && std::isspace(static_cast<unsigned char>(text[n - 1]))) --n;
  const std::string s = text.substr(i, n - i);
  size_t num_end = 0;
  while (num_end < s.size() && (std::isdigit(static_cast<unsigned char>(s[num_end])) || s[num_end] == '.')) ++num_end;
  if (num_end == 0 || s.find('.') != s.rfind('.')) throw bad();
  std::string unit;
  for (size_t k = num_end; k < s.size(); ++k) {
    if (std::isspace(static_cast<unsigned char>(s[k])) && unit.empty()) continue;
    unit += char(std::tolower(static_cast<unsigned char>(s[k])));
  }
  double scale = 1.0;
  if (!unit.empty() && unit != "b") {
    const std::string prefixes = "kmgt";
    const size_t p = prefixes.find(unit[0]);
    if (p == std::string::npos) throw bad();
    const std::string rest = unit.substr(1);
    double base;
    if (rest.empty() || rest == "ib") base = 1024.0;
    else if (rest == "b") base = 1000.0;
    else throw bad();
    for (size_t k = 0; k <= p; ++k) scale *= base;
  }
  const double value = std::strtod(s.substr(0, num_end).c_str(), nullptr) * scale;
  if (!(value >= 0.0) || value > 9.0e18) throw bad();
  if (s.find('.') != std::string::npos && scale == 1.0) throw bad();  // fractional bytes
  return int64_t(value);
}

void init_from_env() {
  const char* env = std::getenv("NNKERNELS_RESULT_CACHE_LIMIT");
  if (env && *env) set_limit(parse_bytes(env, "NNKERNELS_RESULT_CACHE_LIMIT"));
}

py::dict cache_info() {
  Cache& c = cache();
  int64_t v[8];
  {
    std::lock_guard<std::mutex> lock(c.mu);  // copy first: building the dict may run the GC
    const int64_t copy[8] = {c.limit, c.idle_bytes, int64_t(c.idle.size()), c.hits, c.misses, c.evictions,
                             c.live_bytes, c.live_blocks};
    std::copy(copy, copy + 8, v);
  }
  const char* names[8] = {"limit", "bytes_cached", "blocks", "hits", "misses", "evictions", "bytes_in_use",
                          "blocks_in_use"};
  py::dict d;
  for (int i = 0; i < 8; ++i) d[names[i]] = v[i];
  d["min_result_bytes"] = kPlacedMinBytes;
  return d;
}

}  // namespace

py::object result_block(int64_t nbytes, uint32_t page_offset, char** data, bool* newly_mapped) {
  // The block has a page of slack, so any placement fits any block of the class: the offset
  // is chosen per result (apart from that call's input), not per block.
  const size_t want = size_class(size_t(nbytes) + kPage);
  Cache& c = cache();
  Block b{nullptr, 0};
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.by_size.lower_bound(want);
    if (it != c.by_size.end() && it->first <= 2 * want) {
      auto last = std::prev(c.by_size.upper_bound(it->first));  // the most recently freed of that size
      b = *last->second;
      c.drop(last);
      ++c.hits;
    } else {
      ++c.misses;
    }
  }
  if (newly_mapped) *newly_mapped = b.base == nullptr;
  if (!b.base) {
    b = {map_block(want), want};
    if (!b.base) {  // the idle blocks may be what is missing
      empty_cache();
      b.base = map_block(want);
      if (!b.base) throw std::bad_alloc();
    }
  }
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.live_bytes += int64_t(b.bytes);
    c.live_blocks += 1;
  }
  PyObject* capsule = PyCapsule_New(b.base, kCapsuleName, capsule_destructor);
  if (!capsule || PyCapsule_SetContext(capsule, reinterpret_cast<void*>(b.bytes)) != 0) {
    Py_XDECREF(capsule);  // without its context the destructor leaves the block alone
    return_block(b.base, b.bytes);
    throw py::error_already_set();
  }
  *data = b.base + (page_offset & (kPage - 1));
  return py::reinterpret_steal<py::object>(capsule);
}

}  // namespace nk

NK_REGISTER_BINDINGS(result_cache) {
  using namespace nk;
  m.def(
      "set_result_cache_limit",
      [](const py::object& limit) {
        // Any integer (Python int, NumPy integer: the __index__ protocol), not bool.
        if (py::isinstance<py::bool_>(limit) || !PyIndex_Check(limit.ptr()))
          throw py::type_error("limit: expected an int number of bytes, got " +
                               std::string(py::str(py::type::of(limit).attr("__name__"))));
        const py::int_ n = py::reinterpret_steal<py::int_>(PyNumber_Index(limit.ptr()));
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
        if (overflow < 0 || (overflow == 0 && v < 0))
          throw py::value_error("limit: expected a number of bytes >= 0 (0 disables the cache), got " +
                                std::string(py::str(n)));
        // Larger than any memory: no limit beyond what the machine has.
        set_limit(overflow > 0 ? std::numeric_limits<int64_t>::max() : int64_t(v));
      },
      py::arg("limit"),
      "Bytes of idle result blocks kept for reuse; idle blocks beyond it are returned to the OS. 0 disables.");
  m.def("empty_result_cache", &empty_cache, "Return every idle result block to the operating system.");
  m.def("result_cache_info", &cache_info,
        "Statistics of the result cache: limit, bytes_cached, blocks, hits, misses, evictions, bytes_in_use, "
        "blocks_in_use, min_result_bytes.");
  init_from_env();
#if defined(NK_HAVE_MMAP)
  static bool registered = false;
  if (!registered) {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    registered = true;
  }
#endif
}

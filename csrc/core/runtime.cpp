// Runtime state of the extension: instruction-set selection, thread count, build info,
// and the module entry point that collects every family's bindings.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include <pthread.h>

#include "core/common.hpp"
#include "core/module.hpp"
#if defined(NK_WITH_OPENMP)
#include <omp.h>
#endif
#if defined(NK_WITH_CUDA)
#include "core/cuda_runtime.hpp"
#endif

namespace py = pybind11;

namespace nk {
namespace {

Isa compiled_max_isa() {
#if defined(NK_HAVE_AVX512)
  return Isa::avx512;
#elif defined(NK_HAVE_AVX2)
  return Isa::avx2;
#else
  return Isa::baseline;
#endif
}

Isa detect_cpu_isa() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx512 && avx2) return Isa::avx512;
  if (avx2) return Isa::avx2;
#endif
  return Isa::baseline;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::baseline: return "baseline";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

Isa parse_isa(const std::string& s) {
  if (s == "baseline" || s == "sse2" || s == "x86-64") return Isa::baseline;
  if (s == "avx2") return Isa::avx2;
  if (s == "avx512" || s == "avx-512") return Isa::avx512;
  throw py::value_error("isa: expected one of 'baseline', 'avx2', 'avx512', got '" + s + "'");
}

Isa best_isa() { return std::min(detect_cpu_isa(), compiled_max_isa()); }

bool cpu_has_avx512_bf16() {
#if defined(NK_HAVE_AVX512) && (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return detect_cpu_isa() == Isa::avx512 && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

std::atomic<int> g_active_isa{-1};

// Set in the child of a fork(). GNU libgomp keeps the parent's thread pool in the forking
// thread's state, but the pool's threads do not exist in the child: the child's first parallel
// region would wait for them forever (multiprocessing's default fork context, PyTorch DataLoader
// workers). A forked child therefore runs every kernel on the calling thread and never enters an
// OpenMP region (parallel_for_chunks runs inline at one thread). Results are the same: the
// decomposition never depends on the thread count.
std::atomic<bool> g_forked_child{false};
void on_fork_child() { g_forked_child.store(true, std::memory_order_relaxed); }

int hardware_threads() {
  const unsigned h = std::thread::hardware_concurrency();
  return h ? int(h) : 1;
}

}  // namespace

bool g_use_avx512_bf16 = cpu_has_avx512_bf16();

// More threads than this never help a kernel and make every call slow (thousands of OpenMP
// threads: a relu took 20 s): nk.set_num_threads refuses larger values, and a larger count
// coming from OMP_NUM_THREADS or threadpoolctl is clamped to it.
int thread_cap() {
  static const int cap = std::max(64, 4 * hardware_threads());
  return cap;
}

Isa active_isa() {
  int v = g_active_isa.load(std::memory_order_relaxed);
  return v < 0 ? best_isa() : Isa(v);
}

int max_threads() {
#if defined(NK_WITH_OPENMP)
  if (g_forked_child.load(std::memory_order_relaxed)) return 1;
  return std::min(omp_get_max_threads(), thread_cap());
#else
  return 1;
#endif
}

namespace {
std::map<std::string, BindingsFn>& registry() {
  static std::map<std::string, BindingsFn> r;
  return r;
}

void set_isa(const std::string& name) {
  Isa want = parse_isa(name);
  Isa cpu = detect_cpu_isa();
  if (want > compiled_max_isa())
    throw py::value_error(std::string("isa: '") + isa_name(want) + "' was not compiled into this build");
  if (want > cpu)
    throw py::value_error(std::string("isa: this CPU does not support '") + isa_name(want) +
                          "' (best: '" + isa_name(cpu) + "')");
  g_active_isa.store(int(want));
}

void init_isa_from_env() {
  const char* env = std::getenv("NNKERNELS_ISA");
  if (!env || !*env) return;
  // The variable can only lower the level; asking for more than the CPU has is an error
  // at import rather than a crash later.
  set_isa(env);
}

// n: a Python int or NumPy integer (not bool, not float), 1 <= n <= thread_cap().
void set_num_threads(py::handle h) {
  PyObject* o = h.ptr();
  if (PyBool_Check(o) || PyFloat_Check(o) || !PyIndex_Check(o) ||
      std::string(Py_TYPE(o)->tp_name) == "numpy.bool")
    throw py::type_error(std::string("n: expected an int, got ") + Py_TYPE(o)->tp_name);
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(o));
  if (!idx) throw py::error_already_set();
  int overflow = 0;
  const long long n = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  if (overflow < 0 || (!overflow && n < 1))
    throw py::value_error("n: expected a positive number of threads, got " + std::string(py::str(idx)));
  if (overflow > 0 || n > thread_cap())
    throw py::value_error("n: expected at most " + std::to_string(thread_cap()) +
                          " threads (4 per hardware thread, at least 64), got " + std::string(py::str(idx)));
#if defined(NK_WITH_OPENMP)
  omp_set_num_threads(int(n));
#endif
}

py::dict build_info() {
  py::dict d;
  d["version"] = std::string(NK_VERSION);
  d["compiler"] = std::string(NK_COMPILER);
  py::list compiled;
  compiled.append("baseline");
#if defined(NK_HAVE_AVX2)
  compiled.append("avx2");
#endif
#if defined(NK_HAVE_AVX512)
  compiled.append("avx512");
#endif
  d["isa_compiled"] = compiled;
  d["isa_cpu"] = isa_name(detect_cpu_isa());
  d["isa_selected"] = isa_name(active_isa());
  d["avx512_bf16"] = g_use_avx512_bf16;  // the AVX-512 level rounds to bfloat16 with VCVTNEPS2BF16
  d["num_threads"] = max_threads();
  d["max_num_threads"] = thread_cap();
  d["forked_child"] = g_forked_child.load();
#if defined(NK_WITH_OPENMP)
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
#if defined(NK_WITH_CUDA)
  d["cuda_compiled"] = true;
  d["cuda_version"] = std::string(NK_CUDA_VERSION);
  d["cuda_architectures"] = std::string(NK_CUDA_ARCHS);
  d["gpu_count"] = cuda::device_count();
#else
  d["cuda_compiled"] = false;
  d["cuda_version"] = py::none();
  d["cuda_architectures"] = py::none();
  d["gpu_count"] = 0;
#endif
  return d;
}

}  // namespace

BindingsRegistrar::BindingsRegistrar(const char* name, BindingsFn fn) { registry()[name] = fn; }

}  // namespace nk

PYBIND11_MODULE(_core, m) {
  m.doc() = "nnkernels compiled kernels (use the nnkernels package, not this module)";
  m.def("build_info", &nk::build_info, "Build and runtime configuration.");
  m.def("set_num_threads", &nk::set_num_threads, py::arg("n"));
  // Registered once per process, at import: the child of any later fork() (os.fork,
  // multiprocessing, subprocess before exec) runs the kernels single-threaded.
  pthread_atfork(nullptr, nullptr, &nk::on_fork_child);
  m.def("get_num_threads", &nk::max_threads);
  m.def("set_isa", &nk::set_isa, py::arg("isa"),
        "Select the instruction-set level of the CPU kernels ('baseline', 'avx2', 'avx512').");
  m.def("get_isa", []() { return std::string(nk::isa_name(nk::active_isa())); });
  m.def("reset_isa", []() { nk::g_active_isa.store(-1); nk::init_isa_from_env(); },
        "Back to the level chosen at import (NNKERNELS_ISA, else the best this CPU supports).");
  // Tests only: the AVX-512 level's bfloat16 rounding without the AVX-512 BF16 instruction (the
  // integer fallback of CPUs without it), to compare the two bit for bit on one machine.
  m.def("_set_avx512_bf16", [](bool on) {
    if (on && !nk::cpu_has_avx512_bf16())
      throw py::value_error("on: this CPU (or build) has no AVX-512 BF16 instructions");
    nk::g_use_avx512_bf16 = on;
  }, py::arg("on"));
  nk::init_isa_from_env();
  for (auto& [name, fn] : nk::registry()) fn(m);
}

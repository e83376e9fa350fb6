// The one operand type of every op: an array argument from NumPy, any DLPack producer (PyTorch CPU
// and CUDA tensors, JAX, ...) or a __cuda_array_interface__ exporter (CuPy), seen as a typed view
// (pointer, dtype, shape, strides, writeability), the device it lives on, the library that made
// it, and the references that keep its memory alive for the whole call. Bindings build one per
// array argument, validate them once with the device-agnostic checks of core/array.hpp (shape,
// dtype, overlap: the same code for every device and library), pick the implementation with the
// op's DispatchStub (core/dispatch.hpp) and return Operand::result(), which gives the caller an
// array of the main input's library on its device:
//   NumPy in -> NumPy out; torch tensor (CPU or CUDA) in -> torch tensor out; CuPy in -> CuPy out;
//   another DLPack producer (read-only, e.g. JAX) -> NumPy on the CPU.
// CPU tensors are read and written in place (zero-copy): the host side of an operand is a NumPy
// array over the tensor's memory. GPU results are allocated by the input's library on its device
// (nnkernels/_arraylib.py: one small adapter per library); kernels run on that library's current
// stream. Nothing here copies between host and device or synchronises.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "core/array.hpp"
#include "core/view.hpp"

namespace nk {
namespace py = pybind11;

enum class Library : uint8_t { numpy = 0, torch = 1, cupy = 2, foreign = 3 };

// The element types an array argument may have (the op's dtype rule, checked where the operand is built).
enum class Elements : uint8_t {
  float32_64,  // float32 or float64 (ops without 16-bit kernels: preprocessing, statistics merges)
  storage,     // float32, float64 or a 16-bit storage type (float16, bfloat16: float32 math, issue 15)
  real,        // any real integer or float dtype (labels, counts), read by kind and item size
};

struct Operand {
  ArrayView view;         // typed view (float operands) on `device`; see `kind` for others
  Device device;
  Library library = Library::numpy;
  char kind = 'f';        // NumPy kind of the element type ('f', 'i', 'u', 'b', ...)
  int itemsize = 4;
  py::object object;      // the array as passed (or the new result): what result() returns
  py::array host = null_array();  // NumPy operands: the array itself (null for tensors: see host_array)
  py::object keep;        // what else keeps the memory alive (a DLPack capsule)
  PyObject* descr = nullptr;  // NumPy descriptor of the element type (tensors; cached, never freed)
  bool fresh = false;     // a result allocated by the op (converted to the main input's library)
  bool untouched = false; // a fresh host result whose pages are new to the process (empty_array's
                          // `untouched`: kernels that fault them in anyway choose ordinary stores)
  bool is_cuda() const { return device.is_cuda(); }
  // CPU: a NumPy array over the operand's memory (built on first use for a tensor, which the
  // drivers read through `view` directly), for host code written against NumPy arrays.
  py::array host_array();
  // The caller's array: `out` itself when one was given, else the new result in the main input's
  // library (NumPy, a torch tensor over the same memory, or the GPU library's array).
  py::object result() const;
};

// Library of an array argument without converting it (ndarray: one type check).
Library library_of(const py::handle& h);

// Any array argument. Array-likes (lists, scalars) are converted by NumPy, with non-real input
// refused as in as_array. `elements`: the dtypes accepted (float_dtype's TypeError naming `arg`
// otherwise). 16-bit storage: NumPy float16 and ml_dtypes.bfloat16, torch.float16/bfloat16, CuPy float16.
Operand operand_of(const py::handle& h, const char* arg, Elements elements = Elements::float32_64);
// An optional array argument: None gives an operand with a null object (check .object).
Operand optional_operand(const py::handle& h, const char* arg, Elements elements = Elements::float32_64);

// A new C-contiguous result of `dt` and `shape` on like's device, made by like's library (CPU:
// core's empty_array placed apart from the given inputs; see array.hpp). result() converts it.
Operand new_result(const Operand& like, DType dt, const Dims& shape, const void* apart_from = nullptr,
                   const void* also_apart_from = nullptr);
// The `out` argument of an op whose result is `dt`/`shape` next to main input `like`: None gives
// new_result; an array must have that dtype and shape, be writeable, hold one value per element
// and live on like's device (ValueError naming `arg` otherwise; TypeError for a non-array).
Operand output_operand(const py::object& out, const Operand& like, DType dt, const Dims& shape, const char* arg = "out",
                       const void* apart_from = nullptr, const void* also_apart_from = nullptr);
// `b` must live on a's device (ValueError naming bn): a kernel on a's device cannot read another's memory,
// and moving it would be hidden host<->device traffic.
void check_same_device(const Operand& a, const char* an, const Operand& b, const char* bn);
// A C-contiguous copy in the operand's library on its device (for an input that partially
// overlaps an output, or a strided GPU input of a kernel that reads contiguous memory).
Operand contiguous_copy_of(const Operand& a, const char* arg);
// Where and on which stream the op runs: main's device and its library's current stream there.
ExecContext context_of(const Operand& main);
// A copy of a 0-d/1-d GPU operand converted to int64, C-contiguous (labels on the device), by its library.
Operand device_int64_copy(const Operand& a, const char* arg);
// A copy of a GPU operand converted to float64, C-contiguous (statistics of another dtype), by its library.
Operand device_float64_copy(const Operand& a, const char* arg);

// For GPU kernels that read and write contiguous memory (the CPU drivers take any strides):
// each non-contiguous CUDA input becomes a contiguous device copy, and a non-contiguous CUDA
// output gets a contiguous temporary that finish() copies into it (both by the array's library,
// on the device, asynchronously). No-ops for host operands. `always`: a CUDA output is staged even
// when contiguous (a kernel that reads its inputs again after writing the output, when they overlap).
void make_contiguous_on_gpu(Operand& a, const char* arg);
class GpuStagedOutput {
 public:
  explicit GpuStagedOutput(const Operand& out, bool always = false);
  const Operand& target() const { return staged_ ? tmp_ : *out_; }
  void finish();

 private:
  const Operand* out_;
  Operand tmp_;
  bool staged_ = false;
};

// Makes `device` current for the kernels launched in its scope (no-op on the CPU and in builds
// without CUDA), restoring the previous device after.
class DeviceScope {
 public:
  explicit DeviceScope(const Device& d);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace nk

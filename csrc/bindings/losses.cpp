// Python bindings of the fused softmax cross-entropy: argument parsing and validation (once, for
// every device and array library: core/operand.hpp), then one call of softmax_xent_stub
// (drivers/losses.hpp), which runs the CPU driver or the CUDA launcher with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/array.hpp"
#include "core/module.hpp"
#include "core/operand.hpp"
#include "drivers/losses.hpp"

namespace py = pybind11;

namespace nk {
namespace {

std::string dtype_str(const Operand& a) {
  if (a.host) return py::str(a.host.dtype());
  if (a.descr) return py::str(py::handle(a.descr));
  // a CuPy array (no descriptor kept): its kind and size
  const std::string bits = std::to_string(8 * a.itemsize);
  switch (a.kind) {
    case 'i': return "int" + bits;
    case 'u': return "uint" + bits;
    case 'f': return "float" + bits;
    case 'c': return "complex" + bits;
    case 'b': return "bool";
  }
  return std::string(1, a.kind) + bits;
}

// labels: (n,) integers, on any device (their values are checked where they are read).
void check_labels(const Operand& lab, int64_t n) {
  if (lab.kind != 'i' && lab.kind != 'u')
    throw py::type_error("labels: expected an integer array, got dtype " + dtype_str(lab));
  const int nd = lab.view.ndim();
  if (nd != 1 || lab.view.shape[0] != n)
    throw py::value_error("labels: expected shape (" + std::to_string(n) + ",) matching logits' rows, got ndim " +
                          std::to_string(nd) + (nd >= 1 ? " with " + std::to_string(lab.view.shape[0]) + " rows" : ""));
}

// Host labels are read exactly once, here, with the GIL held and before anything is written: each
// value is loaded from the caller's buffer (any integer dtype, any stride, any address: a byte
// copy, so an odd address is no misaligned int64 load), checked against [0, classes) and stored in
// a private int64 buffer that the kernel indexes with. Labels that share memory with `out`, or that
// another thread changes while the kernel runs without the GIL, therefore cannot make the kernel
// index outside a row: it never reads the caller's labels again.
template <class T>
bool copy_labels(const char* p, int64_t stride, int64_t n, int64_t classes, int64_t* dst, int64_t& bad_at,
                 std::string& bad_value) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * stride, sizeof(T));
    bool ok;
    if constexpr (std::is_signed<T>::value) ok = v >= 0 && int64_t(v) < classes;
    else ok = uint64_t(v) < uint64_t(classes);
    if (!ok) {
      bad_at = i;
      bad_value = std::to_string(v);
      return false;
    }
    dst[i] = int64_t(v);
  }
  return true;
}

bool copy_labels_of(char kind, int isz, const char* p, int64_t stride, int64_t n, int64_t classes, int64_t* dst,
                    int64_t& bad_at, std::string& bad) {
  switch (isz) {
    case 1: return kind == 'i' ? copy_labels<int8_t>(p, stride, n, classes, dst, bad_at, bad)
                               : copy_labels<uint8_t>(p, stride, n, classes, dst, bad_at, bad);
    case 2: return kind == 'i' ? copy_labels<int16_t>(p, stride, n, classes, dst, bad_at, bad)
                               : copy_labels<uint16_t>(p, stride, n, classes, dst, bad_at, bad);
    case 4: return kind == 'i' ? copy_labels<int32_t>(p, stride, n, classes, dst, bad_at, bad)
                               : copy_labels<uint32_t>(p, stride, n, classes, dst, bad_at, bad);
    case 8: return kind == 'i' ? copy_labels<int64_t>(p, stride, n, classes, dst, bad_at, bad)
                               : copy_labels<uint64_t>(p, stride, n, classes, dst, bad_at, bad);
  }
  throw py::type_error("labels: unsupported integer dtype of " + std::to_string(isz) + " bytes");
}

// Checked (n,) host labels (a NumPy array, or a CPU tensor: native order, strides in elements) into dst.
void read_host_labels(const Operand& lab, int64_t n, int64_t classes, std::vector<int64_t>& dst) {
  py::array a = lab.host;
  const char* p = static_cast<const char*>(lab.view.data);
  int64_t stride = lab.view.strides[0] * lab.itemsize;
  int isz = lab.itemsize;
  if (a) {
    const char bo = a.dtype().byteorder();
    const char native_bo = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) ? '<' : '>';
    if (bo != '=' && bo != '|' && bo != native_bo)  // rare: swap to native order with NumPy first
      a = py::module_::import("numpy").attr("asarray")(a, py::arg("dtype") = lab.kind == 'i' ? "int64" : "uint64");
    p = static_cast<const char*>(a.data());
    stride = int64_t(a.strides(0));  // in bytes: NumPy strides need not be multiples of the item size
    isz = int(a.dtype().itemsize());
  }
  if (n <= 1) stride = 0;
  dst.resize(size_t(n));
  int64_t bad_at = -1;
  std::string bad;
  if (!copy_labels_of(lab.kind, isz, p, stride, n, classes, dst.data(), bad_at, bad))
    throw py::value_error("labels: expected values in [0, " + std::to_string(classes) + "), got " + bad +
                          " at index " + std::to_string(bad_at));
}

// Bytes of the contiguous int64 labels `lab` intersect the memory of `v`.
bool labels_overlap(const Operand& lab, const ArrayView& v) {
  ArrayView l = lab.view;
  l.dtype = DType::f64;  // 8-byte elements: may_overlap measures extents by the element size
  return may_overlap(l, v);
}

py::tuple softmax_cross_entropy(const py::handle& logits_in, const py::handle& labels_in, const py::object& out) {
  Operand x = operand_of(logits_in, "logits", Elements::storage);
  if (x.view.ndim() != 2)
    throw py::value_error("logits: expected a 2-D array (batch, classes), got ndim " + std::to_string(x.view.ndim()));
  const int64_t n = x.view.shape[0], c = x.view.shape[1];
  if (c < 1) throw py::value_error("logits: expected at least one class (column), got 0");
  Operand lab = operand_of(labels_in, "labels", Elements::real);
  check_labels(lab, n);
  check_same_device(x, "logits", lab, "labels");
  std::vector<int64_t> host_labels;
  if (!x.is_cuda()) read_host_labels(lab, n, c, host_labels);  // GPU labels: the kernel checks each one it reads
  Operand o = output_operand(out, x, x.view.dtype, x.view.shape, "out", x.view.data);
  if (n > 0 && c > 1 && o.view.strides[1] != 1) throw py::value_error("out: expected unit stride along the class axis");
  // Kernel rows need unit column stride (CUDA: contiguous rows); an out that partially overlaps
  // logits reads from a copy.
  if (!(c == 1 || x.view.strides[1] == 1) || (may_overlap(x.view, o.view) && !same_layout(x.view, o.view)))
    x = contiguous_copy_of(x, "logits");
  make_contiguous_on_gpu(x, "logits");
  const ExecContext ctx = context_of(x);
  const SoftmaxXentImpl impl = softmax_xent_stub(ctx.device);
  if (!x.is_cuda()) {
    double loss = 0.0;
    {
      py::gil_scoped_release release;
      impl(x.view, host_labels.data(), o.view, &loss, nullptr, ctx);
    }
    return py::make_tuple(loss, o.result());
  }
  GpuStagedOutput target(o);
  // GPU: int64 labels that no row's gradient store can overwrite (a device copy otherwise: made on
  // the library's current stream, so it is ordered before the kernel); the loss stays on the device.
  if (!(lab.kind == 'i' && lab.itemsize == 8 && lab.view.c_contiguous()) || labels_overlap(lab, target.target().view))
    lab = device_int64_copy(lab, "labels");
  Operand loss = new_result(x, DType::f64, Dims{});
  Operand row_loss = new_result(x, DType::f64, Dims{n > 0 ? n : 1});
  {
    py::gil_scoped_release release;
    DeviceScope scope(ctx.device);
    impl(x.view, lab.view.ptr<const int64_t>(), target.target().view, loss.view.ptr<double>(),
         row_loss.view.ptr<double>(), ctx);
  }
  target.finish();
  return py::make_tuple(loss.result(), o.result());
}

}  // namespace
}  // namespace nk

NK_REGISTER_BINDINGS(losses) {
  using namespace nk;
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("out") = py::none());
}

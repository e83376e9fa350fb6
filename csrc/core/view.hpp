// Pybind-free array geometry shared by every layer (bindings, CPU drivers, CUDA launchers): the
// shape and strides of a view and a typed view of an n-d array on any device.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <vector>

#include "core/common.hpp"

namespace nk {

// Shape or strides of a view, stored inline (NumPy's limit of 64 dimensions): building and
// copying views is on every call's path, and heap vectors there cost more than a small
// kernel at call-overhead sizes. Copies move only the used entries.
class Dims {
 public:
  static constexpr size_t kMax = 64;
  Dims() = default;
  Dims(std::initializer_list<int64_t> v) { assign(v.begin(), v.end()); }
  Dims(const std::vector<int64_t>& v) { assign(v.data(), v.data() + v.size()); }  // NOLINT: implicit by design
  Dims(const int64_t* b, const int64_t* e) { assign(b, e); }
  Dims(const Dims& o) { assign(o.begin(), o.end()); }
  Dims& operator=(const Dims& o) {
    if (this != &o) assign(o.begin(), o.end());
    return *this;
  }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  void resize(size_t n) {
    if (n > kMax) throw std::length_error("more than 64 dimensions");
    for (size_t i = n_; i < n; ++i) d_[i] = 0;
    n_ = n;
  }
  int64_t& operator[](size_t i) { return d_[i]; }
  int64_t operator[](size_t i) const { return d_[i]; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  friend bool operator==(const Dims& a, const Dims& b) {
    if (a.n_ != b.n_) return false;
    for (size_t i = 0; i < a.n_; ++i)
      if (a.d_[i] != b.d_[i]) return false;
    return true;
  }
  friend bool operator!=(const Dims& a, const Dims& b) { return !(a == b); }

 private:
  void assign(const int64_t* b, const int64_t* e) {
    resize(size_t(e - b));
    for (size_t i = 0; i < n_; ++i) d_[i] = b[i];
  }
  size_t n_ = 0;
  int64_t d_[kMax];
};

// A typed view of an n-d array: strides in elements (NumPy's are in bytes).
struct ArrayView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Dims shape;
  Dims strides;  // in elements
  int64_t size = 1;
  bool writeable = false;
  int ndim() const { return int(shape.size()); }
  bool c_contiguous() const {
    int64_t expect = 1;
    for (int i = ndim() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expect) return false;
      expect *= shape[i];
    }
    return true;
  }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// True when the memory spanned by a and b intersects (bounds test, like np.may_share_memory).
// Pure geometry (any device; defined in array.cpp), used by the bindings and the drivers.
bool may_overlap(const ArrayView& a, const ArrayView& b);
// Same data pointer, shape and strides (elementwise in-place is safe).
bool same_layout(const ArrayView& a, const ArrayView& b);

// Where an operand's memory lives: the host, or a CUDA device (ordinal `index`).
struct Device {
  enum Type : int8_t { cpu = 0, cuda = 1 };
  Type type = cpu;
  int index = 0;
  bool is_cuda() const { return type == cuda; }
  friend bool operator==(const Device& a, const Device& b) { return a.type == b.type && (a.type == cpu || a.index == b.index); }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

// What a kernel launch needs besides its operands: the device and, on CUDA, the stream of the
// array library that owns the main input (its current stream on that device).
struct ExecContext {
  Device device;
  uintptr_t stream = 0;
};

}  // namespace nk

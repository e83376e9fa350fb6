// CUDA runtime queries for Python (device count, names, stream sync). Present in every
// build; without CUDA compiled in, they report no devices.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "core/module.hpp"
#if defined(NK_WITH_CUDA)
#include "core/cuda_runtime.hpp"
#endif

namespace py = pybind11;

NK_REGISTER_BINDINGS(gpu) {
#if defined(NK_WITH_CUDA)
  m.attr("CUDA_COMPILED") = true;
  m.def("cuda_device_count", &nk::cuda::device_count);
  m.def("cuda_device_name", &nk::cuda::device_name, py::arg("device"));
  m.def("cuda_synchronize", [](uintptr_t s) { py::gil_scoped_release r; nk::cuda::synchronize(s); }, py::arg("stream"));
#else
  m.attr("CUDA_COMPILED") = false;
  m.def("cuda_device_count", []() { return 0; });
  m.def("cuda_device_name", [](int) { return std::string(); }, py::arg("device"));
#endif
}

// Each binding file registers its functions with NK_REGISTER_BINDINGS(name) { ... };
// the module init (core/runtime.cpp) calls them in name order. Adding an op family
// therefore touches no shared file.
#pragma once
#include <pybind11/pybind11.h>

namespace nk {
using BindingsFn = void (*)(pybind11::module_&);
struct BindingsRegistrar {
  BindingsRegistrar(const char* name, BindingsFn fn);
};
}  // namespace nk

#define NK_REGISTER_BINDINGS(name)                                                  \
  static void nk_bind_##name(pybind11::module_& m);                                 \
  static const ::nk::BindingsRegistrar nk_registrar_##name(#name, &nk_bind_##name); \
  static void nk_bind_##name(pybind11::module_& m)

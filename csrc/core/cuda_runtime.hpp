// Small CUDA runtime helpers callable from host C++ (implemented in csrc/cuda/runtime.cu).
#pragma once
#include <cstdint>
#include <string>

namespace nk {
namespace cuda {
int device_count();                 // 0 when no driver or no device (never throws)
std::string device_name(int device);
void check_last(const char* what);  // throws std::runtime_error naming `what` on a pending CUDA error
void synchronize(uintptr_t stream);
// Makes `device` current and returns the device that was current (for DeviceScope).
int exchange_device(int device);
}  // namespace cuda
}  // namespace nk

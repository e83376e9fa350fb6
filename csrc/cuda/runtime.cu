// CUDA runtime helpers shared by every CUDA op family. Built only with NNKERNELS_CUDA.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "core/cuda_runtime.hpp"

namespace nk {
namespace cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later queries start clean
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return prop.name;
}

namespace {
void throw_on(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}
}  // namespace

void check_last(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

void synchronize(uintptr_t stream) {
  cudaError_t err = cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream));
  if (err != cudaSuccess) throw std::runtime_error(std::string("cudaStreamSynchronize: ") + cudaGetErrorString(err));
}

int exchange_device(int device) {
  int previous = 0;
  throw_on(cudaGetDevice(&previous), "cudaGetDevice");
  if (previous != device) throw_on(cudaSetDevice(device), "cudaSetDevice");
  return previous;
}

}  // namespace cuda
}  // namespace nk

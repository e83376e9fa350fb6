# nk_gpu_visible(<out_var>): ON when an NVIDIA GPU is visible to this build: the device node exists
# (NK_NVIDIA_DEVICE_NODE, default /dev/nvidia0) or `nvidia-smi -L` lists a GPU (NK_NVIDIA_SMI,
# default: nvidia-smi on PATH; the tests point both at stand-ins). NNKERNELS_CUDA=AUTO
# builds the CUDA kernels only then: compiling them for sm_80/sm_90 takes minutes that a machine
# without a GPU would spend for nothing (CI sets NNKERNELS_CUDA=ON to compile them anyway).
#
# Script mode, for the tests:  cmake -P cmake/gpu_visible.cmake   prints "gpu_visible=ON|OFF".
function(nk_gpu_visible out_var)
  if(NOT DEFINED NK_NVIDIA_DEVICE_NODE)
    set(NK_NVIDIA_DEVICE_NODE /dev/nvidia0)
  endif()
  set(_visible OFF)
  if(EXISTS "${NK_NVIDIA_DEVICE_NODE}")
    set(_visible ON)
  else()
    if(DEFINED NK_NVIDIA_SMI)
      set(_smi "${NK_NVIDIA_SMI}")
    else()
      find_program(_nk_nvidia_smi nvidia-smi)
      set(_smi "${_nk_nvidia_smi}")
      unset(_nk_nvidia_smi CACHE)  # looked up afresh on every configure (a GPU may come or go)
    endif()
    if(_smi AND EXISTS "${_smi}")
      execute_process(COMMAND "${_smi}" -L RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_QUIET
                      TIMEOUT 30)
      if(_rc EQUAL 0 AND _out MATCHES "GPU [0-9]+:")
        set(_visible ON)
      endif()
    endif()
  endif()
  set(${out_var} ${_visible} PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  nk_gpu_visible(_nk_visible)
  message("gpu_visible=${_nk_visible}")
endif()

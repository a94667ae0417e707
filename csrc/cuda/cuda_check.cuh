// Every CUDA call and launch goes through RSTG_CUDA_CHECK: a failure becomes a C++
// exception naming the call, which pybind11 raises in Python as RuntimeError.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define RSTG_CUDA_CHECK(expr)                                                          \
  do {                                                                                 \
    cudaError_t rstg_err_ = (expr);                                                    \
    if (rstg_err_ != cudaSuccess) {                                                    \
      throw std::runtime_error(std::string("rstg_fast CUDA error in ") + #expr + ": " + \
                               cudaGetErrorString(rstg_err_));                        \
    }                                                                                  \
  } while (0)

// After a <<<...>>> launch: reports launch-configuration errors with the kernel's name.
#define RSTG_CUDA_CHECK_LAUNCH(kernel_name)                                             \
  do {                                                                                  \
    cudaError_t rstg_err_ = cudaGetLastError();                                         \
    if (rstg_err_ != cudaSuccess) {                                                     \
      throw std::runtime_error(std::string("rstg_fast CUDA kernel ") + (kernel_name) +  \
                               " failed to launch: " + cudaGetErrorString(rstg_err_));  \
    }                                                                                   \
  } while (0)

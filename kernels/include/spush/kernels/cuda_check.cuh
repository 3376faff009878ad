// Error checking for CUDA, cuBLAS, cuDNN, NCCL and MPI calls: one generic reporter
// (statement, file, line) that throws spush::kernels::CudaError. The *_CHECK_NOTHROW
// forms print instead of throwing, for destructors.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace spush::kernels {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void report_error(const char* lib, const char* what, const char* stmt,
                                      const char* file, int line) {
  throw CudaError(std::string(lib) + " error '" + what + "' in " + stmt + " at " + file + ":" +
                  std::to_string(line));
}

inline unsigned ceil_div(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

}  // namespace spush::kernels

#define CUDA_CHECK(stmt)                                                                      \
  do {                                                                                        \
    cudaError_t spush_err_ = (stmt);                                                          \
    if (spush_err_ != cudaSuccess)                                                            \
      ::spush::kernels::report_error("CUDA", cudaGetErrorString(spush_err_), #stmt, __FILE__, \
                                     __LINE__);                                               \
  } while (0)

#define CUDA_CHECK_NOTHROW(stmt)                                                               \
  do {                                                                                         \
    cudaError_t spush_err_ = (stmt);                                                           \
    if (spush_err_ != cudaSuccess)                                                             \
      std::fprintf(stderr, "CUDA error '%s' in %s at %s:%d\n", cudaGetErrorString(spush_err_), \
                   #stmt, __FILE__, __LINE__);                                                 \
  } while (0)

#define SPUSH_LIB_CHECK(lib, stmt, ok, tostr)                                           \
  do {                                                                                  \
    auto spush_st_ = (stmt);                                                            \
    if (spush_st_ != (ok))                                                              \
      ::spush::kernels::report_error(lib, tostr(spush_st_), #stmt, __FILE__, __LINE__); \
  } while (0)

// The library-specific forms are usable wherever the library header is included first.
#ifdef CUBLAS_STATUS_SUCCESS
#define CUBLAS_CHECK(stmt) \
  SPUSH_LIB_CHECK("cuBLAS", stmt, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
#endif
#ifdef CUDNN_STATUS_SUCCESS
#define CUDNN_CHECK(stmt) SPUSH_LIB_CHECK("cuDNN", stmt, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#endif
#ifdef NCCL_MAJOR
#define NCCL_CHECK(stmt) SPUSH_LIB_CHECK("NCCL", stmt, ncclSuccess, ncclGetErrorString)
#endif

// Status checks for every CUDA runtime, cuBLAS, cuFFT and cuDNN call. A failure throws
// mg::CudaError whose message names the call, file:line and the library's status text, e.g.
//   cudaMalloc(&p, bytes) failed at engine/cuda_backend.cu:57: out of memory (cudaErrorMemoryAllocation)
// Kernel launches are followed by MG_CUDA_CHECK_LAUNCH() (cudaGetLastError).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace mg {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Builds the message and throws; `lib_status` is the library's own status text.
[[noreturn]] void throw_cuda_error(const char* call, const char* file, int line, const std::string& lib_status);

// Status texts. cuFFT has no string function of its own.
const char* cufft_status_name(int status);

// Throws CudaError(message) while `stream` is being captured into a CUDA Graph: for the first
// use of a shape, which allocates, plans or synchronises, none of which a capture allows.
void throw_if_capturing(cudaStream_t stream, const std::string& message);

}  // namespace mg

#define MG_CUDA_CHECK(call)                                                                           \
  do {                                                                                                \
    const cudaError_t mg_st_ = (call);                                                                \
    if (mg_st_ != cudaSuccess)                                                                        \
      ::mg::throw_cuda_error(#call, __FILE__, __LINE__,                                               \
                             std::string(cudaGetErrorString(mg_st_)) + " (" + cudaGetErrorName(mg_st_) + ")"); \
  } while (0)

#define MG_CUDA_CHECK_LAUNCH() MG_CUDA_CHECK(cudaGetLastError())

#define MG_CUBLAS_CHECK(call)                                                                           \
  do {                                                                                                  \
    const cublasStatus_t mg_st_ = (call);                                                               \
    if (mg_st_ != CUBLAS_STATUS_SUCCESS)                                                                \
      ::mg::throw_cuda_error(#call, __FILE__, __LINE__,                                                 \
                             std::string(cublasGetStatusName(mg_st_)) + ": " + cublasGetStatusString(mg_st_)); \
  } while (0)

#define MG_CUFFT_CHECK(call)                                                                      \
  do {                                                                                            \
    const cufftResult mg_st_ = (call);                                                            \
    if (mg_st_ != CUFFT_SUCCESS)                                                                  \
      ::mg::throw_cuda_error(#call, __FILE__, __LINE__, ::mg::cufft_status_name(static_cast<int>(mg_st_))); \
  } while (0)

#define MG_CUDNN_CHECK(call)                                                                   \
  do {                                                                                         \
    const cudnnStatus_t mg_st_ = (call);                                                       \
    if (mg_st_ != CUDNN_STATUS_SUCCESS)                                                        \
      ::mg::throw_cuda_error(#call, __FILE__, __LINE__, cudnnGetErrorString(mg_st_));          \
  } while (0)

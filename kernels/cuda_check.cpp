#include "kernels/cuda_check.h"

namespace mg {

void throw_cuda_error(const char* call, const char* file, int line, const std::string& lib_status) {
  std::string where = file;
  // Name the file from the project root, not the build machine's absolute path.
  for (const char* top : {"/kernels/", "/engine/", "/apps/", "/tests/", "/bench/"}) {
    const size_t at = where.rfind(top);
    if (at != std::string::npos) {
      where = where.substr(at + 1);
      break;
    }
  }
  std::string msg = std::string(call) + " failed at " + where + ":" + std::to_string(line) + ": " + lib_status;
  if (lib_status.find("out of memory") != std::string::npos || lib_status.find("ALLOC_FAILED") != std::string::npos)
    msg += " (GPU memory exhausted: try a smaller batch, e.g. fewer train.batch_triplets)";
  throw CudaError(msg);
}

const char* cufft_status_name(int status) {
  switch (status) {
    case 0x0: return "CUFFT_SUCCESS";
    case 0x1: return "CUFFT_INVALID_PLAN";
    case 0x2: return "CUFFT_ALLOC_FAILED";
    case 0x3: return "CUFFT_INVALID_TYPE";
    case 0x4: return "CUFFT_INVALID_VALUE";
    case 0x5: return "CUFFT_INTERNAL_ERROR";
    case 0x6: return "CUFFT_EXEC_FAILED";
    case 0x7: return "CUFFT_SETUP_FAILED";
    case 0x8: return "CUFFT_INVALID_SIZE";
    case 0x9: return "CUFFT_UNALIGNED_DATA";
    case 0xB: return "CUFFT_INVALID_DEVICE";
    case 0xD: return "CUFFT_NO_WORKSPACE";
    case 0xE: return "CUFFT_NOT_IMPLEMENTED";
    case 0x10: return "CUFFT_NOT_SUPPORTED";
    case 0x11: return "CUFFT_MISSING_DEPENDENCY";
    case 0x12: return "CUFFT_NVRTC_FAILURE";
    case 0x13: return "CUFFT_NVJITLINK_FAILURE";
    case 0x14: return "CUFFT_NVSHMEM_FAILURE";
    default: return "unknown cuFFT status";
  }
}

void throw_if_capturing(cudaStream_t stream, const std::string& message) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  MG_CUDA_CHECK(cudaStreamIsCapturing(stream, &st));
  if (st != cudaStreamCaptureStatusNone) throw CudaError(message);
}

}  // namespace mg

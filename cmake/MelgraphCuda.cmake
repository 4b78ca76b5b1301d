# CUDA toolkit and cuDNN detection for melgraph.
#   MELGRAPH_CUDA=OFF   never look
#   MELGRAPH_CUDA=AUTO  build the CUDA parts when a CUDA compiler is found
#   MELGRAPH_CUDA=ON    fail the configure step when no CUDA compiler is found
# The toolkit is taken from its usual place or from CUDAToolkit_ROOT.
set(MELGRAPH_HAVE_CUDA OFF)
set(MELGRAPH_HAVE_CUDNN OFF)
set(MELGRAPH_CUDA_STATUS "not used (CPU-only build)")

if(NOT MELGRAPH_CUDA STREQUAL "OFF")
  if(CUDAToolkit_ROOT AND NOT CMAKE_CUDA_COMPILER AND EXISTS "${CUDAToolkit_ROOT}/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "${CUDAToolkit_ROOT}/bin/nvcc")
  elseif(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS "/usr/local/cuda/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "/usr/local/cuda/bin/nvcc")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Explicit architectures: "native" needs a GPU at build time, and CUDA 13 has nothing
    # below sm_75. 80 = A100, 90 = H100/H200; PTX for 90 lets newer GPUs JIT.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
    endif()
    # One CUDA runtime in the process: the shared one, as CUDA::cudart, cuBLAS, cuDNN and cuFFT
    # use (CMake's default for CUDA targets is the static runtime, which put both on the link
    # line: two runtimes with separate state in one process).
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    enable_language(CUDA)
    # CMake 3.25 does not know the C++20 flag for nvcc 13; device code needs no more than 17.
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(MELGRAPH_HAVE_CUDA ON)

    find_path(CUDNN_INCLUDE_DIR cudnn_version.h
              HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV CUDNN_ROOT PATH_SUFFIXES include)
    find_library(CUDNN_LIBRARY cudnn
                 HINTS ${CUDAToolkit_LIBRARY_DIR} ENV CUDNN_ROOT PATH_SUFFIXES lib lib64)
    if(CUDNN_INCLUDE_DIR AND CUDNN_LIBRARY)
      file(READ "${CUDNN_INCLUDE_DIR}/cudnn_version.h" _cudnn_version_h)
      string(REGEX MATCH "define CUDNN_MAJOR ([0-9]+)" _ "${_cudnn_version_h}")
      set(CUDNN_VERSION_MAJOR ${CMAKE_MATCH_1})
      string(REGEX MATCH "define CUDNN_MINOR ([0-9]+)" _ "${_cudnn_version_h}")
      set(CUDNN_VERSION_MINOR ${CMAKE_MATCH_1})
      string(REGEX MATCH "define CUDNN_PATCHLEVEL ([0-9]+)" _ "${_cudnn_version_h}")
      set(CUDNN_VERSION_PATCH ${CMAKE_MATCH_1})
      set(CUDNN_VERSION "${CUDNN_VERSION_MAJOR}.${CUDNN_VERSION_MINOR}.${CUDNN_VERSION_PATCH}")
      set(MELGRAPH_HAVE_CUDNN ON)
      add_library(melgraph_cudnn INTERFACE)
      target_include_directories(melgraph_cudnn INTERFACE ${CUDNN_INCLUDE_DIR})
      target_link_libraries(melgraph_cudnn INTERFACE ${CUDNN_LIBRARY})
    endif()
    set(MELGRAPH_CUDA_STATUS "nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${CUDNN_VERSION}")
    if(NOT MELGRAPH_HAVE_CUDNN)
      # The CUDA backend needs cuDNN for the conv stack: without it there is no CUDA backend.
      set(MELGRAPH_HAVE_CUDA OFF)
      set(MELGRAPH_CUDA_STATUS "nvcc ${CMAKE_CUDA_COMPILER_VERSION} found but cuDNN not (set CUDNN_ROOT); CPU-only build")
      if(MELGRAPH_CUDA STREQUAL "ON")
        message(FATAL_ERROR "MELGRAPH_CUDA=ON but cuDNN (cudnn_version.h, libcudnn) was not found. "
                            "Install cuDNN or point CUDNN_ROOT at it, or use -DMELGRAPH_CUDA=OFF.")
      endif()
    endif()
  elseif(MELGRAPH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MELGRAPH_CUDA=ON but no CUDA compiler was found. "
                        "Install the CUDA toolkit or pass -DCUDAToolkit_ROOT=<dir>, or use -DMELGRAPH_CUDA=OFF.")
  else()
    message(STATUS "melgraph: no CUDA compiler found; building the CPU backend only")
  endif()
endif()

// The backends a benchmark binary runs on, made on first use and shared by its cases.
//
// main() calls release_bench_backends() before it returns: left to static destruction, a CUDA
// backend would destroy its cuBLAS/cuDNN handles after the CUDA runtime has shut down (the
// runtime registers its exit handler after the first use of this map, so it runs first).
#pragma once
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>

#include "engine/backend_factory.h"
#include "engine/perf/roofline.h"

namespace mg {

struct BenchBackend {
  std::unique_ptr<Backend> be;  // null when the device cannot be used
  std::string skip;             // why there is no backend
  int64_t cache_bytes = 0;      // GPU L2 (0 on the CPU): what input rotation must exceed
};

inline std::map<std::string, BenchBackend>& bench_backends() {
  static std::map<std::string, BenchBackend> made;
  return made;
}

// device: "cpu" or "cuda". "cuda" never falls back to the CPU: without a GPU, be is null and
// skip says why.
inline BenchBackend& bench_backend(const std::string& device) {
  std::map<std::string, BenchBackend>& made = bench_backends();
  auto it = made.find(device);
  if (it != made.end()) return it->second;
  BenchBackend b;
  try {
    std::string note;
    BackendOptions bo;
    parse_device(device, bo);
    b.be = make_backend(bo, &note);
    if (device == "cuda" && b.be->device() != Device::CUDA) b.be.reset();
    if (b.be && b.be->device() == Device::CUDA) b.cache_bytes = cuda_peak(0).cache_bytes;
  } catch (const std::exception& e) {
    b.skip = e.what();
  }
  if (!b.be && b.skip.empty()) b.skip = "no " + device + " backend";
  return made.emplace(device, std::move(b)).first->second;
}

inline void release_bench_backends() { bench_backends().clear(); }

}  // namespace mg

// cuda_peak(): the FP32 peak and memory bandwidth of a CUDA device (engine/perf/roofline.h).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "engine/perf/roofline.h"
#include "kernels/cuda_check.h"

namespace mg {

namespace {

// FP32 lanes per SM by compute capability (CUDA C Programming Guide, "Arithmetic
// Instructions" throughput table: 32-bit floating-point add, multiply, multiply-add).
int fp32_lanes_per_sm(int major, int minor) {
  if (major == 6 && minor == 0) return 64;   // P100
  if (major == 7) return 64;                 // V100, T4
  if (major == 8 && minor == 0) return 64;   // A100
  return 128;                                // 5.x, 6.1, 8.6-8.9, 9.0 (H100/H200), 10.x, 12.x
}

struct Datasheet {
  const char* match;  // substring of cudaDeviceProp::name
  double tflops, tbytes;
  const char* source;
};

// Dense FP32 (no tensor cores) and HBM bandwidth from NVIDIA's datasheets. More specific names
// first: "H100 NVL" before "H100".
constexpr Datasheet kDatasheets[] = {
    {"H200 NVL", 60.0, 4.8, "NVIDIA H200 datasheet (H200 NVL: FP32 60 TFLOPS, HBM3e 4.8 TB/s)"},
    {"H200", 67.0, 4.8, "NVIDIA H200 datasheet (H200 SXM: FP32 67 TFLOPS, HBM3e 4.8 TB/s)"},
    {"H100 NVL", 60.0, 3.9, "NVIDIA H100 datasheet (H100 NVL: FP32 60 TFLOPS, HBM3 3.9 TB/s)"},
    {"H100 PCIe", 51.0, 2.0, "NVIDIA H100 datasheet (H100 PCIe: FP32 51 TFLOPS, HBM2e 2.0 TB/s)"},
    {"H100", 67.0, 3.35, "NVIDIA H100 datasheet (H100 SXM: FP32 67 TFLOPS, HBM3 3.35 TB/s)"},
};

int attribute(cudaDeviceAttr a, int device) {
  int v = 0;
  MG_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, device));
  return v;
}

}  // namespace

DevicePeak cuda_peak(int device) {
  cudaDeviceProp prop{};
  MG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const int sms = attribute(cudaDevAttrMultiProcessorCount, device);
  const double clock_hz = 1e3 * attribute(cudaDevAttrClockRate, device);
  const double mem_clock_hz = 1e3 * attribute(cudaDevAttrMemoryClockRate, device);
  const int bus_bits = attribute(cudaDevAttrGlobalMemoryBusWidth, device);
  const int lanes = fp32_lanes_per_sm(prop.major, prop.minor);

  DevicePeak p;
  p.device = std::string(prop.name) + " (" + std::to_string(sms) + " SMs, sm " + std::to_string(prop.major) + "." +
             std::to_string(prop.minor) + ")";
  p.cache_bytes = attribute(cudaDevAttrL2CacheSize, device);
  const std::string name = prop.name;
  for (const Datasheet& ds : kDatasheets) {
    if (name.find(ds.match) == std::string::npos) continue;
    p.flops_per_s = ds.tflops * 1e12;
    p.bytes_per_s = ds.tbytes * 1e12;
    p.source = ds.source;
    return p;
  }
  // Double data rate: two transfers per memory clock.
  p.flops_per_s = 2.0 * sms * lanes * clock_hz;
  p.bytes_per_s = 2.0 * mem_clock_hz * bus_bits / 8.0;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "device properties: %d SMs x %d FP32 lanes x 2 x %.0f MHz; 2 x %.0f MHz x %d-bit bus", sms, lanes,
                clock_hz / 1e6, mem_clock_hz / 1e6, bus_bits);
  p.source = buf;
  return p;
}

}  // namespace mg

// A tensor is a named view into memory owned elsewhere (a ParamBuffer, an activation arena,
// or a caller's buffer): shape + float32 data + the device that memory lives on.
// Views never own; the owner's lifetime bounds every view carved from it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mg {

enum class Device { CPU, CUDA };

inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  float* data = nullptr;
  Device device = Device::CPU;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  std::string shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

}  // namespace mg

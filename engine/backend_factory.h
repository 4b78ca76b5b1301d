// Picks the backend for --device auto|cpu|cuda|cuda:N. auto = CUDA when this build has the CUDA
// backend and a device is present, else the CPU; the returned note says which was chosen and
// why (one line, for the program to print).
#pragma once
#include <memory>
#include <string>

#include "engine/backend.h"

namespace mg {

enum class DeviceChoice { Auto, Cpu, Cuda };

struct BackendOptions {
  DeviceChoice device = DeviceChoice::Auto;
  int threads = 0;             // CPU threads (0: all cores)
  int cuda_device = -1;        // the GPU's index (cuda:N); -1: not chosen (GPU 0, or a rank's own)
  bool deterministic = false;  // CUDA: deterministic algorithms only
  bool tf32 = false;           // CUDA: allow TF32 math
};

// Parses --device into o.device and o.cuda_device: "auto", "cpu", "cuda" or "cuda:N" (GPU N
// of those the process sees, as CUDA_VISIBLE_DEVICES leaves them); throws
// std::invalid_argument naming the flag otherwise.
void parse_device(const std::string& s, BackendOptions& o);

// The words --device takes, for help texts.
inline constexpr const char* kDeviceHelp = "auto (CUDA when a GPU is present), cpu, cuda or cuda:N (GPU N)";

// --device cuda without a usable device throws std::invalid_argument with the reason, and so
// does cuda:N beyond the devices there are (the request, not the run, is wrong: commands
// report it as a usage error); auto falls back to the CPU and says so in *note.
std::unique_ptr<Backend> make_backend(const BackendOptions& o, std::string* note);

// Whether this binary was built with the CUDA backend.
bool cuda_backend_built();

}  // namespace mg

// Picks the backend for --device auto|cpu|cuda. auto = CUDA when this build has the CUDA
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
  int cuda_device = 0;
  bool deterministic = false;  // CUDA: deterministic algorithms only
  bool tf32 = false;           // CUDA: allow TF32 math
};

// Parses "auto", "cpu", "cuda"; throws std::invalid_argument naming the flag otherwise.
DeviceChoice parse_device_choice(const std::string& s);

// --device cuda without a usable device throws with the reason; auto falls back to the CPU
// and says so in *note.
std::unique_ptr<Backend> make_backend(const BackendOptions& o, std::string* note);

// Whether this binary was built with the CUDA backend.
bool cuda_backend_built();

}  // namespace mg

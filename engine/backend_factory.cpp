#include "engine/backend_factory.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#if defined(MELGRAPH_HAVE_CUDA)
#include "engine/cuda_backend.h"
#endif

namespace mg {

void parse_device(const std::string& s, BackendOptions& o) {
  o.cuda_device = -1;
  if (s == "auto") {
    o.device = DeviceChoice::Auto;
  } else if (s == "cpu") {
    o.device = DeviceChoice::Cpu;
  } else if (s == "cuda") {
    o.device = DeviceChoice::Cuda;
  } else if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 8 &&
             s.find_first_not_of("0123456789", 5) == std::string::npos) {
    o.device = DeviceChoice::Cuda;
    o.cuda_device = std::stoi(s.substr(5));
  } else {
    throw std::invalid_argument("--device must be auto, cpu, cuda or cuda:N with N a GPU's index (got '" + s + "')");
  }
}

bool cuda_backend_built() {
#if defined(MELGRAPH_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const BackendOptions& o, std::string* note) {
  std::string why;
  if (o.device == DeviceChoice::Cpu) {
    if (note) *note = "device: cpu (as asked)";
    return make_cpu_backend(o.threads);
  }
#if defined(MELGRAPH_HAVE_CUDA)
  if (const int count = cuda_device_count(&why); count > 0) {
    if (o.cuda_device >= count)
      throw std::invalid_argument("--device cuda:" + std::to_string(o.cuda_device) + ": this machine has " +
                                  std::to_string(count) + " CUDA device" + (count == 1 ? "" : "s") + " (cuda:0" +
                                  (count > 1 ? " to cuda:" + std::to_string(count - 1) : std::string()) +
                                  "; CUDA_VISIBLE_DEVICES decides which and how many a process sees)");
    auto be = make_cuda_backend(CudaOptions{std::max(0, o.cuda_device), o.deterministic, o.tf32});
    if (note) *note = "device: " + be->describe();
    return be;
  }
#else
  why = "this melgraph was built without the CUDA backend";
#endif
  if (o.device == DeviceChoice::Cuda)
    throw std::invalid_argument("--device cuda" +
                                (o.cuda_device >= 0 ? ":" + std::to_string(o.cuda_device) : std::string()) +
                                ": no CUDA device can be used: " + why);
  auto be = make_cpu_backend(o.threads);
  if (note) *note = "device: cpu (no CUDA device: " + why + ")";
  return be;
}

}  // namespace mg

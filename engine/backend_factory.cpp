#include "engine/backend_factory.h"

#include <stdexcept>

#if defined(MELGRAPH_HAVE_CUDA)
#include "engine/cuda_backend.h"
#endif

namespace mg {

DeviceChoice parse_device_choice(const std::string& s) {
  if (s == "auto") return DeviceChoice::Auto;
  if (s == "cpu") return DeviceChoice::Cpu;
  if (s == "cuda") return DeviceChoice::Cuda;
  throw std::invalid_argument("--device must be auto, cpu or cuda (got '" + s + "')");
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
  if (cuda_device_count(&why) > 0) {
    auto be = make_cuda_backend(CudaOptions{o.cuda_device, o.deterministic, o.tf32});
    if (note) *note = "device: " + be->describe();
    return be;
  }
#else
  why = "this melgraph was built without the CUDA backend";
#endif
  if (o.device == DeviceChoice::Cuda)
    throw std::runtime_error("--device cuda: no CUDA device can be used: " + why);
  auto be = make_cpu_backend(o.threads);
  if (note) *note = "device: cpu (no CUDA device: " + why + ")";
  return be;
}

}  // namespace mg

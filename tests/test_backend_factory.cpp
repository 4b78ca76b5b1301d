// --device auto|cpu|cuda: the choice, the fallback and its one-line explanation.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "engine/backend_factory.h"
#if defined(MELGRAPH_HAVE_CUDA)
#include "engine/cuda_backend.h"
#endif

namespace mg {
namespace {

bool have_cuda_device() {
#if defined(MELGRAPH_HAVE_CUDA)
  std::string why;
  return cuda_device_count(&why) > 0;
#else
  return false;
#endif
}

TEST(BackendFactory, ParsesTheDeviceFlag) {
  EXPECT_EQ(parse_device_choice("auto"), DeviceChoice::Auto);
  EXPECT_EQ(parse_device_choice("cpu"), DeviceChoice::Cpu);
  EXPECT_EQ(parse_device_choice("cuda"), DeviceChoice::Cuda);
  try {
    parse_device_choice("gpu");
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--device must be auto, cpu or cuda (got 'gpu')"), std::string::npos);
  }
}

TEST(BackendFactory, CpuIsAlwaysAvailable) {
  std::string note;
  auto be = make_backend(BackendOptions{DeviceChoice::Cpu, 1}, &note);
  EXPECT_EQ(be->device(), Device::CPU);
  EXPECT_EQ(note, "device: cpu (as asked)");
}

TEST(BackendFactory, AutoFallsBackToTheCpuAndSaysWhy) {
  if (have_cuda_device()) GTEST_SKIP() << "a CUDA device is present: auto picks it (covered by test_backend_ops)";
  std::string note;
  auto be = make_backend(BackendOptions{}, &note);
  EXPECT_EQ(be->device(), Device::CPU);
  EXPECT_EQ(note.rfind("device: cpu (no CUDA device: ", 0), 0u) << note;
}

TEST(BackendFactory, CudaWithoutADeviceIsAnErrorWithTheReason) {
  if (have_cuda_device()) GTEST_SKIP() << "a CUDA device is present";
  try {
    make_backend(BackendOptions{DeviceChoice::Cuda}, nullptr);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda: no CUDA device can be used: "), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mg

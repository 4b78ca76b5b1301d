// --device auto|cpu|cuda|cuda:N: the choice, the fallback and its one-line explanation.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>

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
  auto parsed = [](const std::string& s) {
    BackendOptions o;
    o.cuda_device = 5;  // overwritten by every parse
    parse_device(s, o);
    return std::make_pair(o.device, o.cuda_device);
  };
  EXPECT_EQ(parsed("auto"), std::make_pair(DeviceChoice::Auto, -1));
  EXPECT_EQ(parsed("cpu"), std::make_pair(DeviceChoice::Cpu, -1));
  EXPECT_EQ(parsed("cuda"), std::make_pair(DeviceChoice::Cuda, -1));
  EXPECT_EQ(parsed("cuda:0"), std::make_pair(DeviceChoice::Cuda, 0));
  EXPECT_EQ(parsed("cuda:13"), std::make_pair(DeviceChoice::Cuda, 13));
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda:1234", "cpu:0", "CUDA"}) {
    try {
      parsed(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()),
                "--device must be auto, cpu, cuda or cuda:N with N a GPU's index (got '" + std::string(bad) + "')");
    }
  }
}

// cuda:N is checked against the devices there are: beyond them, or without any, an error names
// the flag (on a machine without a GPU, the second).
TEST(BackendFactory, ACudaIndexMustNameADevice) {
  BackendOptions o;
  parse_device("cuda:999", o);
  try {
    make_backend(o, nullptr);
    FAIL() << "cuda:999 accepted";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("--device cuda:999: ", 0), 0u) << msg;
    EXPECT_TRUE(msg.find("no CUDA device can be used") != std::string::npos ||
                msg.find("CUDA device") != std::string::npos)
        << msg;
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

// A bad request for this machine, like cuda:N beyond its devices: std::invalid_argument, which
// the commands report as a usage error (exit code 2).
TEST(BackendFactory, CudaWithoutADeviceIsAnErrorWithTheReason) {
  if (have_cuda_device()) GTEST_SKIP() << "a CUDA device is present";
  try {
    make_backend(BackendOptions{DeviceChoice::Cuda}, nullptr);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda: no CUDA device can be used: "), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mg

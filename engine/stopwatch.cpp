// Backend::stopwatch()'s default: the host clock around synchronize(), right for backends
// whose ops finish before they return (the CPU) and correct, if coarser, for any other.
#include <chrono>

#include "engine/backend.h"

namespace mg {

namespace {

class HostStopwatch final : public Backend::Stopwatch {
 public:
  explicit HostStopwatch(Backend& be) : be_(be) {}
  void start() override {
    be_.synchronize();
    t0_ = std::chrono::steady_clock::now();
  }
  void stop() override {
    be_.synchronize();
    t1_ = std::chrono::steady_clock::now();
  }
  double seconds() override { return std::chrono::duration<double>(t1_ - t0_).count(); }

 private:
  Backend& be_;
  std::chrono::steady_clock::time_point t0_{}, t1_{};
};

}  // namespace

std::unique_ptr<Backend::Stopwatch> Backend::stopwatch() { return std::make_unique<HostStopwatch>(*this); }

}  // namespace mg

// A thread that calls `check` every `period` until it is destroyed: the communicators'
// watchdogs (a collective stuck too long, an asynchronous NCCL error). Destruction wakes the
// thread at once and joins it, so the owner can tear down what `check` reads right after.
#pragma once
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace mg::dist {

class PeriodicThread {
 public:
  PeriodicThread(std::chrono::milliseconds period, std::function<void()> check)
      : thread_([this, period, check = std::move(check)] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, period, [this] { return closing_; })) check();
        }) {}
  ~PeriodicThread() {
    {
      const std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace mg::dist

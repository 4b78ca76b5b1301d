#include "engine/io/stop_signals.h"

#include <unistd.h>

#include <cstring>

namespace mg {

namespace {

std::atomic<bool> g_stop{false};
const char* g_notice = "";

extern "C" void on_stop_signal(int sig) {
  if (g_stop.load()) {  // the second signal: the default action (terminate) right away
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop.store(true);
  const ssize_t ignored = write(2, g_notice, std::strlen(g_notice));  // async-signal-safe
  (void)ignored;
}

}  // namespace

StopSignals::StopSignals(const char* notice) {
  g_notice = notice;
  g_stop.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

const std::atomic<bool>* StopSignals::flag() const { return &g_stop; }

}  // namespace mg

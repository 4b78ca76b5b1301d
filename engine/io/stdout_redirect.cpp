#include "engine/io/stdout_redirect.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mg {

StdoutToStderr::StdoutToStderr(bool active) {
  if (!active) return;
  std::fflush(stdout);
  saved_ = ::dup(STDOUT_FILENO);
  if (saved_ < 0)
    throw std::runtime_error(std::string("cannot set standard output aside: dup: ") + std::strerror(errno));
  if (::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    const int e = errno;
    ::close(saved_);
    saved_ = -1;
    throw std::runtime_error(std::string("cannot set standard output aside: dup2: ") + std::strerror(e));
  }
}

StdoutToStderr::~StdoutToStderr() { restore(); }

void StdoutToStderr::restore() {
  if (saved_ < 0) return;
  std::fflush(stdout);
  // Nothing sensible is left to do if this fails: stdout then stays on stderr, which still
  // shows the summary to the person at the terminal.
  (void)::dup2(saved_, STDOUT_FILENO);
  ::close(saved_);
  saved_ = -1;
}

}  // namespace mg

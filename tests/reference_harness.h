// Helpers for tests that compare against PyTorch/torchaudio or networkx through the Python
// scripts in tests/reference/. The scripts run under Debian's interpreter (/usr/bin/python3
// unless MELGRAPH_PYTHON says otherwise), which has python3-torch, python3-torchaudio and
// python3-networkx.
//
// Without those libraries the tests skip with the reason; with MELGRAPH_REQUIRE_REFERENCE=1
// (CI sets it) a missing library is a failure instead, so CI can never pass by skipping them.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace mg::test {

inline std::string python_exe() {
  const char* p = std::getenv("MELGRAPH_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

// The compile-time directories name this checkout; the environment variables of the same
// names override them, for test binaries run elsewhere (scripts/gpu-check's bundle).
inline std::string env_or(const char* var, const char* fallback) {
  const char* v = std::getenv(var);
  return v && *v ? v : fallback;
}
inline std::string reference_dir() { return env_or("MELGRAPH_REFERENCE_DIR", MELGRAPH_REFERENCE_DIR); }
inline std::string shared_data_dir() { return env_or("MELGRAPH_SHARED_DATA_DIR", MELGRAPH_SHARED_DATA_DIR); }

inline std::string reference_script(const std::string& name) { return reference_dir() + "/" + name; }

// Runs a command, returns its exit status; its combined output goes to *out.
inline int run_command(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Empty string when torch + torchaudio + soundfile import; otherwise the reason.
// Empty when `python -c "import <modules>"` works; otherwise the reason, naming the Debian
// packages that provide them.
inline std::string python_import_problem(const std::string& modules, const std::string& packages) {
  std::string out;
  const int rc = run_command(python_exe() + " -c 'import " + modules + "'", &out);
  if (rc == 0) return std::string();
  return python_exe() + " cannot import " + modules + " (install " + packages + "; scripts/setup does): " +
         out.substr(0, 300);
}

inline std::string torch_unavailable_reason() {
  static const std::string reason = python_import_problem(
      "torch, torchaudio, soundfile, numpy", "python3-torch python3-torchaudio python3-soundfile python3-numpy");
  return reason;
}

inline std::string networkx_unavailable_reason() {
  static const std::string reason = python_import_problem("networkx", "python3-networkx");
  return reason;
}

inline bool reference_required() {
  const char* r = std::getenv("MELGRAPH_REQUIRE_REFERENCE");
  return r && std::string(r) == "1";
}

// Skips the test with `why` (a reference library is missing), or fails it when
// MELGRAPH_REQUIRE_REFERENCE=1; does nothing when `why` is empty.
#define MG_REQUIRE_REFERENCE_LIBS(why_expr)                                                     \
  do {                                                                                          \
    const std::string why_ = (why_expr);                                                        \
    if (!why_.empty()) {                                                                        \
      if (::mg::test::reference_required()) FAIL() << "MELGRAPH_REQUIRE_REFERENCE=1: " << why_; \
      GTEST_SKIP() << why_;                                                                     \
    }                                                                                           \
  } while (0)

#define MG_REQUIRE_TORCH() MG_REQUIRE_REFERENCE_LIBS(::mg::test::torch_unavailable_reason())
#define MG_REQUIRE_NETWORKX() MG_REQUIRE_REFERENCE_LIBS(::mg::test::networkx_unavailable_reason())

// Runs tests/reference/<script> with args; fails the test with the script's output when it
// exits non-zero.
inline void run_reference(const std::string& script, const std::string& args) {
  std::string out;
  const std::string cmd = python_exe() + " " + reference_script(script) + " " + args;
  const int rc = run_command(cmd, &out);
  ASSERT_EQ(rc, 0) << "reference script failed: " << cmd << "\n" << out;
}

// Norm-wise relative error max|got - want| / max|want|: meaningful for outputs that cross
// zero, unlike a per-element ratio.
template <class A, class B>
double rel_error(const A* got, const B* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
    den = std::max(den, std::abs(static_cast<double>(want[i])));
  }
  return den > 0 ? num / den : num;
}

}  // namespace mg::test

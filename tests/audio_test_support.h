// Helpers for the audio decoder tests: the ffmpeg command line (to make files in every
// format from one WAV), test signals, and the measures the tests compare with (max error,
// SNR after the best alignment, a fitted sine).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "tests/reference_harness.h"

namespace mg::test {

// The ffmpeg executable CMake found (MELGRAPH_FFMPEG_EXE, "" if none); MELGRAPH_FFMPEG overrides.
inline std::string ffmpeg_exe() { return env_or("MELGRAPH_FFMPEG", MELGRAPH_FFMPEG_EXE); }

#define MG_SKIP_WITHOUT_FFMPEG()                                                                  \
  do {                                                                                            \
    if (::mg::test::ffmpeg_exe().empty())                                                         \
      GTEST_SKIP() << "the ffmpeg command line was not found when configuring (install the "     \
                      "Debian package ffmpeg; scripts/setup does), and this test makes its "     \
                      "files with it";                                                            \
  } while (0)

// ffmpeg -i in <args> out; "" on success, else the command and its output.
inline std::string ffmpeg_convert(const std::string& in, const std::string& out, const std::string& args) {
  const std::string cmd = ffmpeg_exe() + " -nostdin -hide_banner -loglevel error -y -i '" + in + "' " + args +
                          " '" + out + "'";
  std::string output;
  if (run_command(cmd, &output) == 0) return std::string();
  return cmd + ": " + output;
}

// `frames` frames of `channels` interleaved channels: per channel a chord of three random
// partials (110 Hz - 3 kHz, random phases) plus white noise at -34 dB. Peak < 0.55.
inline std::vector<float> chord_signal(int64_t frames, int channels, int rate, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> freq(110.0, 3000.0), phase(0.0, 2 * std::numbers::pi), noise(-1.0, 1.0);
  const double amp[3] = {0.25, 0.15, 0.1};
  std::vector<float> x(static_cast<size_t>(frames * channels));
  for (int c = 0; c < channels; ++c) {
    double f[3], p[3];
    for (int k = 0; k < 3; ++k) f[k] = freq(rng), p[k] = phase(rng);
    for (int64_t i = 0; i < frames; ++i) {
      const double t = static_cast<double>(i) / rate;
      double v = 0.02 * noise(rng);
      for (int k = 0; k < 3; ++k) v += amp[k] * std::sin(2 * std::numbers::pi * f[k] * t + p[k]);
      x[static_cast<size_t>(i * channels + c)] = static_cast<float>(v);
    }
  }
  return x;
}

// The mean over channels of interleaved [frames, channels] samples, in double.
inline std::vector<double> channel_mean(const std::vector<float>& x, int channels) {
  std::vector<double> m(x.size() / static_cast<size_t>(channels));
  for (size_t i = 0; i < m.size(); ++i) {
    double s = 0;
    for (int c = 0; c < channels; ++c) s += x[i * static_cast<size_t>(channels) + static_cast<size_t>(c)];
    m[i] = s / channels;
  }
  return m;
}

template <class A, class B>
double max_abs_diff(const A& a, const B& b, size_t from, size_t n) {
  double m = 0;
  for (size_t i = from; i < from + n; ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

// SNR in dB of `test` against `ref` (test[i + lag] ~ ref[i]) over ref[from, to).
template <class R, class T>
double snr_db(const R& ref, const T& test, int64_t lag, int64_t from, int64_t to) {
  double sig = 0, err = 0;
  for (int64_t i = from; i < to; ++i) {
    const double r = ref[static_cast<size_t>(i)];
    const double e = static_cast<double>(test[static_cast<size_t>(i + lag)]) - r;
    sig += r * r;
    err += e * e;
  }
  return 10 * std::log10(sig / std::max(err, 1e-300));
}

// The lag (|lag| <= max_lag) at which `test` matches `ref` best over a 1 s stretch in the
// middle (largest cross-correlation), and the SNR at that lag over all of ref but `edge`
// samples at either end.
struct Alignment {
  int64_t lag = 0;
  double snr_db = 0;
};
template <class R, class T>
Alignment best_alignment(const R& ref, const T& test, int64_t max_lag, int64_t edge, int rate) {
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(ref.size()), static_cast<int64_t>(test.size()));
  const int64_t from = n / 2 - rate / 2, to = from + rate;
  Alignment best;
  double best_corr = -1e300;
  for (int64_t lag = -max_lag; lag <= max_lag; ++lag) {
    if (from + lag < 0 || to + lag > static_cast<int64_t>(test.size())) continue;
    double c = 0;
    for (int64_t i = from; i < to; ++i)
      c += static_cast<double>(ref[static_cast<size_t>(i)]) * static_cast<double>(test[static_cast<size_t>(i + lag)]);
    if (c > best_corr) best_corr = c, best.lag = lag;
  }
  const int64_t lo = std::max<int64_t>(edge, edge - best.lag);
  const int64_t hi = std::min<int64_t>(static_cast<int64_t>(ref.size()) - edge, static_cast<int64_t>(test.size()) - best.lag - edge);
  best.snr_db = snr_db(ref, test, best.lag, lo, hi);
  return best;
}

// A least-squares fit of a*sin(2 pi f t) + b*cos(2 pi f t) + dc to x[from, to) at rate
// `rate`, for the f near f0 that fits best (golden-section search on the residual over
// f0 +- 1 Hz). phase is that of sin(2 pi f t + phase) at t = 0.
struct SineFit {
  double freq = 0, amplitude = 0, phase = 0, snr_db = 0;
};
inline SineFit fit_sine_at(const std::vector<float>& x, int rate, double f, int64_t from, int64_t to) {
  // Normal equations for [sin, cos, 1].
  double A[3][3] = {}, y[3] = {}, ss = 0;
  for (int64_t i = from; i < to; ++i) {
    const double w = 2 * std::numbers::pi * f * static_cast<double>(i) / rate;
    const double b[3] = {std::sin(w), std::cos(w), 1.0};
    const double v = x[static_cast<size_t>(i)];
    for (int r = 0; r < 3; ++r) {
      y[r] += b[r] * v;
      for (int c = 0; c < 3; ++c) A[r][c] += b[r] * b[c];
    }
    ss += v * v;
  }
  // Cramer's rule: a 3x3 system, well conditioned over many periods.
  auto det = [](const double m[3][3]) {
    return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
           m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  };
  const double d = det(A);
  double coef[3];
  for (int k = 0; k < 3; ++k) {
    double M[3][3];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) M[r][c] = c == k ? y[r] : A[r][c];
    coef[k] = det(M) / d;
  }
  double fitted = 0;  // energy of the fit: sum (model)^2 = coef . y
  for (int k = 0; k < 3; ++k) fitted += coef[k] * y[k];
  SineFit s;
  s.freq = f;
  s.amplitude = std::hypot(coef[0], coef[1]);
  s.phase = std::atan2(coef[1], coef[0]);
  const double residual = std::max(ss - fitted, 1e-300);
  s.snr_db = 10 * std::log10(fitted / residual);
  return s;
}
inline SineFit fit_sine(const std::vector<float>& x, int rate, double f0, int64_t from, int64_t to) {
  const double g = (std::sqrt(5.0) - 1) / 2;
  double lo = f0 - 1, hi = f0 + 1;
  for (int it = 0; it < 40; ++it) {  // the bracket shrinks to 2 Hz * 0.618^40 ~ 1e-8 Hz
    const double a = hi - g * (hi - lo), b = lo + g * (hi - lo);
    if (fit_sine_at(x, rate, a, from, to).snr_db > fit_sine_at(x, rate, b, from, to).snr_db) hi = b;
    else lo = a;
  }
  return fit_sine_at(x, rate, (lo + hi) / 2, from, to);
}

}  // namespace mg::test

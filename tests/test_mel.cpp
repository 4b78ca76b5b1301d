// Unit tests of the CPU log-mel front end (kernels/mel_cpu.h): mel scales, the filterbank,
// framing and the forward pass against an independent double-precision DFT. The comparison
// with torchaudio itself lives in test_reference_mel.cpp.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/mel_cpu.h"

namespace mg {
namespace {

std::vector<float> random_audio(size_t n, uint32_t seed, float amp = 0.5f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-amp, amp);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

MelParams small_params() {
  MelParams p;
  p.sample_rate = 16000;
  p.n_fft = 512;
  p.hop = 157;
  p.n_mels = 40;
  return p;
}

// Straightforward reference of the whole front end in double: reflect pad, periodic Hann,
// O(n^2) DFT, |X|^power, dense filterbank, log. Shares only mel_filterbank_dense with the code
// under test (the filterbank has its own tests below).
std::vector<double> reference_forward(const MelParams& p, const std::vector<float>& audio, int B, int S) {
  const int n = p.n_fft, nf = p.n_freqs(), nm = p.n_mels, pad = n / 2;
  const int F = mel_frames(S, p.hop);
  const std::vector<double> fb = mel_filterbank_dense(p);
  std::vector<double> out(static_cast<size_t>(B) * nm * F);
  std::vector<double> frame(static_cast<size_t>(n)), pw(static_cast<size_t>(nf));
  // exp(-2 pi i r / n) for r = k * i mod n, each from its own angle.
  std::vector<double> cs(static_cast<size_t>(n)), sn(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    cs[static_cast<size_t>(r)] = std::cos(2.0 * std::numbers::pi * r / n);
    sn[static_cast<size_t>(r)] = -std::sin(2.0 * std::numbers::pi * r / n);
  }
  for (int b = 0; b < B; ++b) {
    for (int f = 0; f < F; ++f) {
      for (int i = 0; i < n; ++i) {
        int k = f * p.hop + i - pad;
        if (k < 0) k = -k;
        if (k >= S) k = 2 * (S - 1) - k;
        const double w = 0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * i / n);
        frame[static_cast<size_t>(i)] = w * audio[static_cast<size_t>(b) * S + static_cast<size_t>(k)];
      }
      for (int k = 0; k < nf; ++k) {
        double re = 0, im = 0;
        for (int i = 0; i < n; ++i) {
          const size_t r = static_cast<size_t>((static_cast<int64_t>(k) * i) % n);
          re += frame[static_cast<size_t>(i)] * cs[r];
          im += frame[static_cast<size_t>(i)] * sn[r];
        }
        pw[static_cast<size_t>(k)] = std::pow(std::sqrt(re * re + im * im), p.power);
      }
      for (int m = 0; m < nm; ++m) {
        double acc = 0;
        for (int k = 0; k < nf; ++k) acc += pw[static_cast<size_t>(k)] * fb[static_cast<size_t>(k) * nm + m];
        out[(static_cast<size_t>(b) * nm + m) * F + f] = std::log(acc + p.log_eps);
      }
    }
  }
  return out;
}

double max_abs_diff(const std::vector<float>& got, const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < got.size(); ++i) e = std::max(e, std::abs(static_cast<double>(got[i]) - want[i]));
  return e;
}

TEST(MelScale, KnownValues) {
  // HTK: 2595 log10(1 + f/700) is ~1000 mel at 1 kHz by construction.
  EXPECT_NEAR(hz_to_mel(1000.0, MelScale::HTK), 2595.0 * std::log10(1.0 + 1000.0 / 700.0), 1e-12);
  EXPECT_NEAR(hz_to_mel(1000.0, MelScale::HTK), 999.98553, 1e-4);
  EXPECT_NEAR(hz_to_mel(0.0, MelScale::HTK), 0.0, 1e-15);
  // Slaney: 200/3 Hz per mel below 1 kHz (so 1 kHz = 15 mel), then 27 mel per factor 6.4.
  EXPECT_NEAR(hz_to_mel(1000.0, MelScale::Slaney), 15.0, 1e-12);
  EXPECT_NEAR(hz_to_mel(500.0, MelScale::Slaney), 7.5, 1e-12);
  EXPECT_NEAR(hz_to_mel(6400.0, MelScale::Slaney), 42.0, 1e-10);
  EXPECT_NEAR(mel_to_hz(42.0, MelScale::Slaney), 6400.0, 1e-8);
  EXPECT_NEAR(mel_to_hz(7.5, MelScale::Slaney), 500.0, 1e-12);
}

TEST(MelScale, RoundTripAndMonotone) {
  for (MelScale s : {MelScale::HTK, MelScale::Slaney}) {
    double prev = -1;
    for (double hz = 0.0; hz <= 24000.0; hz += 37.3) {
      const double m = hz_to_mel(hz, s);
      EXPECT_GT(m, prev) << "hz=" << hz;
      prev = m;
      EXPECT_NEAR(mel_to_hz(m, s), hz, 1e-9 * std::max(1.0, hz)) << "hz=" << hz;
    }
  }
}

TEST(MelWindow, PeriodicHann) {
  const std::vector<float> w = hann_window_periodic(8);
  const double want[8] = {0.0, 0.14644660940672624, 0.5, 0.8535533905932737,
                          1.0, 0.8535533905932737,  0.5, 0.14644660940672624};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(w[static_cast<size_t>(i)], want[i], 1e-7) << i;
}

std::vector<MelParams> filterbank_cases() {
  std::vector<MelParams> v;
  for (MelScale s : {MelScale::HTK, MelScale::Slaney}) {
    for (MelNorm nrm : {MelNorm::None, MelNorm::Slaney}) {
      MelParams p;
      p.scale = s;
      p.norm = nrm;
      v.push_back(p);  // defaults: 22050 Hz, n_fft 1024, 128 mels
      MelParams q = small_params();
      q.scale = s;
      q.norm = nrm;
      q.f_min = 55.0;
      q.f_max = 7100.0;
      v.push_back(q);
      MelParams r;
      r.sample_rate = 44100;
      r.n_fft = 2048;
      r.n_mels = 96;
      r.f_min = 20.0;
      r.scale = s;
      r.norm = nrm;
      v.push_back(r);
    }
  }
  return v;
}

TEST(MelFilterbank, SparseMatchesDenseAndIsWellFormed) {
  for (const MelParams& p : filterbank_cases()) {
    SCOPED_TRACE("sr=" + std::to_string(p.sample_rate) + " n_fft=" + std::to_string(p.n_fft) +
                 " n_mels=" + std::to_string(p.n_mels) + " scale=" + std::to_string(int(p.scale)) +
                 " norm=" + std::to_string(int(p.norm)));
    const std::vector<double> dense = mel_filterbank_dense(p);
    const MelFilterbank fb = make_mel_filterbank(p);
    const int nf = p.n_freqs(), nm = p.n_mels;
    ASSERT_EQ(fb.n_freqs, nf);
    ASSERT_EQ(fb.n_mels, nm);
    ASSERT_EQ(dense.size(), static_cast<size_t>(nf) * nm);

    // Rebuild a dense matrix from the sparse form; it must equal the double one up to the
    // float rounding of the stored weights (relative 2^-24).
    std::vector<double> rebuilt(dense.size(), 0.0);
    size_t total = 0;
    for (int m = 0; m < nm; ++m) {
      EXPECT_EQ(fb.offset[static_cast<size_t>(m)], static_cast<int32_t>(total));
      for (int i = 0; i < fb.count[static_cast<size_t>(m)]; ++i) {
        const int k = fb.start[static_cast<size_t>(m)] + i;
        ASSERT_LT(k, nf);
        const float w = fb.weights[static_cast<size_t>(fb.offset[static_cast<size_t>(m)] + i)];
        EXPECT_GT(w, 0.0f) << "stored zero weight, band " << m << " bin " << k;
        rebuilt[static_cast<size_t>(k) * nm + m] = w;
      }
      total += static_cast<size_t>(fb.count[static_cast<size_t>(m)]);
    }
    EXPECT_EQ(fb.weights.size(), total);
    std::vector<int> bands_per_bin(static_cast<size_t>(nf), 0);
    for (int k = 0; k < nf; ++k) {
      for (int m = 0; m < nm; ++m) {
        const double d = dense[static_cast<size_t>(k) * nm + m];
        EXPECT_GE(d, 0.0);
        EXPECT_NEAR(rebuilt[static_cast<size_t>(k) * nm + m], d, 1e-7 * d) << "bin " << k << " band " << m;
        if (d != 0.0) ++bands_per_bin[static_cast<size_t>(k)];
      }
      EXPECT_LE(bands_per_bin[static_cast<size_t>(k)], 2) << "bin " << k;
    }
    EXPECT_LE(total, static_cast<size_t>(2 * nf));

    // Triangles from independently computed edges: band m lives strictly inside
    // (f_pts[m], f_pts[m+2]) with f_pts equally spaced in mel; without normalisation the
    // overlapping triangles sum to 1 between the first and last centre.
    const double m0 = hz_to_mel(p.f_min, p.scale), m1 = hz_to_mel(p.f_max_resolved(), p.scale);
    std::vector<double> f_pts(static_cast<size_t>(nm) + 2);
    for (int i = 0; i < nm + 2; ++i) f_pts[static_cast<size_t>(i)] = mel_to_hz(m0 + (m1 - m0) * i / (nm + 1), p.scale);
    const double bin_hz = static_cast<double>(p.sample_rate / 2) / (nf - 1);
    for (int m = 0; m < nm; ++m) {
      for (int k = 0; k < nf; ++k) {
        const double f = k * bin_hz;
        const double d = dense[static_cast<size_t>(k) * nm + m];
        if (f <= f_pts[static_cast<size_t>(m)] - 1e-6 || f >= f_pts[static_cast<size_t>(m) + 2] + 1e-6) {
          EXPECT_EQ(d, 0.0) << "band " << m << " bin " << k;
        }
        if (p.norm == MelNorm::None) {
          EXPECT_LE(d, 1.0 + 1e-12);
        }
      }
    }
    if (p.norm == MelNorm::None) {
      for (int k = 0; k < nf; ++k) {
        const double f = k * bin_hz;
        if (f < f_pts[1] + 1e-6 || f > f_pts[static_cast<size_t>(nm)] - 1e-6) continue;
        double s = 0;
        for (int m = 0; m < nm; ++m) s += dense[static_cast<size_t>(k) * nm + m];
        EXPECT_NEAR(s, 1.0, 1e-9) << "bin " << k;
      }
    } else {
      // Slaney normalisation divides each triangle by half its Hz width (unit area).
      MelParams q = p;
      q.norm = MelNorm::None;
      const std::vector<double> plain = mel_filterbank_dense(q);
      for (int m = 0; m < nm; ++m) {
        const double scale = 2.0 / (f_pts[static_cast<size_t>(m) + 2] - f_pts[static_cast<size_t>(m)]);
        for (int k = 0; k < nf; ++k) {
          const size_t i = static_cast<size_t>(k) * nm + m;
          EXPECT_NEAR(dense[i], plain[i] * scale, 1e-9 * scale) << "band " << m << " bin " << k;
        }
      }
    }
  }
}

TEST(MelFilterbank, TooManyMelsLeavesEmptyBandsAtLogEps) {
  // 129 bins cannot feed 128 HTK bands: the narrow low bands fall between bins. torchaudio
  // only warns about this; the band stays legal and reads log(log_eps).
  MelParams p;
  p.n_fft = 256;
  p.hop = 101;
  p.n_mels = 128;
  const MelFilterbank fb = make_mel_filterbank(p);
  int empty = -1;
  for (int m = 0; m < p.n_mels; ++m)
    if (fb.count[static_cast<size_t>(m)] == 0) { empty = m; break; }
  ASSERT_GE(empty, 0) << "expected at least one band without bins";
  MelCpu mel(p);
  const int S = 1234;
  const std::vector<float> a = random_audio(S, 7);
  std::vector<float> out(static_cast<size_t>(p.n_mels) * mel_frames(S, p.hop));
  mel.forward(a.data(), out.data(), 1, S);
  const int F = mel_frames(S, p.hop);
  for (int f = 0; f < F; ++f)
    EXPECT_FLOAT_EQ(out[static_cast<size_t>(empty) * F + f], std::log(static_cast<float>(p.log_eps)));
}

TEST(MelForward, FrameCount) {
  EXPECT_EQ(mel_frames(22050, 512), 44);  // 1 + 43
  EXPECT_EQ(mel_frames(1024, 512), 3);
  EXPECT_EQ(mel_frames(1023, 512), 2);
  EXPECT_EQ(mel_frames(220500, 512), 431);
}

// Small enough to check by hand-sized reference: n_fft 8, hop 3, 3 mels, both reflect edges
// and an interior frame; every power/scale/norm path.
TEST(MelForward, TinyCaseMatchesDoubleDft) {
  const int B = 2, S = 11;
  const std::vector<float> audio = random_audio(static_cast<size_t>(B) * S, 11, 1.0f);
  for (double power : {2.0, 1.0, 1.5}) {
    for (MelScale s : {MelScale::HTK, MelScale::Slaney}) {
      for (MelNorm nrm : {MelNorm::None, MelNorm::Slaney}) {
        MelParams p;
        p.sample_rate = 16000;
        p.n_fft = 8;
        p.hop = 3;
        p.n_mels = 3;
        p.power = power;
        p.scale = s;
        p.norm = nrm;
        SCOPED_TRACE("power=" + std::to_string(power) + " scale=" + std::to_string(int(s)) +
                     " norm=" + std::to_string(int(nrm)));
        MelCpu mel(p);
        const int F = mel_frames(S, p.hop);
        ASSERT_EQ(F, 4);
        std::vector<float> out(static_cast<size_t>(B) * p.n_mels * F, -999.0f);
        mel.forward(audio.data(), out.data(), B, S);
        const std::vector<double> want = reference_forward(p, audio, B, S);
        // An 8-point float FFT is accurate to a few ulp of the frame's energy; the bands here
        // hold O(0.1..10) so the log is off by about that relative amount: 1e-5 leaves margin.
        EXPECT_LT(max_abs_diff(out, want), 1e-5);
      }
    }
  }
}

// Every FFT path against the double DFT: power-of-two sizes go through the batched radix-4
// transform (with a final radix-2 pass when log2(n_fft / 2) is odd: 16, 1024), others through
// kissfft (400, 12). Amplitudes over five decades exercise the log across its range.
TEST(MelForward, FftPathsMatchDoubleDft) {
  struct Cfg {
    int n_fft, hop, n_mels, S;
  };
  double worst = 0;
  const Cfg cfgs[] = {{512, 157, 40, 3001}, {1024, 200, 64, 3001}, {400, 160, 40, 2345},
                      {16, 5, 4, 203},      {12, 5, 3, 101},       {4, 3, 1, 23}};
  for (const Cfg& cfg : cfgs) {
    for (float amp : {0.5f, 1e-2f, 200.0f}) {
      MelParams p = small_params();
      p.n_fft = cfg.n_fft;
      p.hop = cfg.hop;
      p.n_mels = cfg.n_mels;
      p.f_min = cfg.n_fft >= 400 ? 30.0 : 0.0;
      SCOPED_TRACE("n_fft=" + std::to_string(cfg.n_fft) + " amp=" + std::to_string(amp));
      const int B = 2;
      const std::vector<float> audio = random_audio(static_cast<size_t>(B) * cfg.S, 12, amp);
      MelCpu mel(p);
      const int F = mel_frames(cfg.S, p.hop);
      std::vector<float> out(static_cast<size_t>(B) * p.n_mels * F);
      mel.forward(audio.data(), out.data(), B, cfg.S);
      const std::vector<double> want = reference_forward(p, audio, B, cfg.S);
      // float32 FFT: ~log2(n_fft) * 6e-8 relative error in power. Noise fills every band far
      // above log_eps here, so the log's absolute error is about that relative error (plus
      // float rounding of logs up to ~18 in size); 2e-5 is a few times the expected error.
      const double err = max_abs_diff(out, want);
      EXPECT_LT(err, 2e-5);
      worst = std::max(worst, err);
    }
  }
  RecordProperty("max_abs_error", std::to_string(worst));
  std::printf("  worst |log-mel error| over all paths: %.3g\n", worst);
}

TEST(MelForward, SilenceGivesLogEps) {
  for (int n_fft : {512, 400}) {
    MelParams p = small_params();
    p.n_fft = n_fft;
    p.log_eps = 1e-5;
    const MelCpu mel(p);
    const int S = 1000;
    const std::vector<float> a(static_cast<size_t>(2) * S, 0.0f);
    std::vector<float> out(static_cast<size_t>(2) * p.n_mels * mel_frames(S, p.hop), 1.0f);
    mel.forward(a.data(), out.data(), 2, S);
    for (float v : out) ASSERT_FLOAT_EQ(v, std::log(1e-5f)) << "n_fft " << n_fft;
  }
}

TEST(MelForward, NonFiniteInputStaysLocal) {
  // A NaN sample poisons the frames that contain it and nothing else: not other frames, not
  // other clips (the log must not turn it into a finite value either).
  MelParams p = small_params();
  const MelCpu mel(p);
  const int B = 2, S = 4000;
  std::vector<float> a = random_audio(static_cast<size_t>(B) * S, 21);
  const int bad = 2000;
  a[bad] = std::nanf("");
  const int F = mel_frames(S, p.hop);
  std::vector<float> out(static_cast<size_t>(B) * p.n_mels * F);
  mel.forward(a.data(), out.data(), B, S);
  for (int b = 0; b < B; ++b) {
    for (int f = 0; f < F; ++f) {
      // Frame f covers original samples [f*hop - n_fft/2, f*hop + n_fft/2).
      const bool hit = b == 0 && bad >= f * p.hop - p.n_fft / 2 && bad < f * p.hop + p.n_fft / 2;
      for (int m = 0; m < p.n_mels; ++m) {
        const float v = out[(static_cast<size_t>(b) * p.n_mels + m) * F + f];
        if (hit) {
          EXPECT_TRUE(std::isnan(v)) << "clip " << b << " frame " << f << " band " << m;
        } else {
          EXPECT_TRUE(std::isfinite(v)) << "clip " << b << " frame " << f << " band " << m;
        }
      }
    }
  }
}

TEST(MelForward, SinePeaksInItsBand) {
  MelParams p = small_params();
  p.n_fft = 1024;
  p.hop = 256;
  const MelCpu mel(p);
  const std::vector<double> fb = mel_filterbank_dense(p);
  const double m0 = hz_to_mel(p.f_min, p.scale), m1 = hz_to_mel(p.f_max_resolved(), p.scale);
  const int S = 8000;
  const int F = mel_frames(S, p.hop);
  for (int band : {5, 17, 30}) {
    // A sine at the band's centre frequency (not on a bin).
    const double f0 = mel_to_hz(m0 + (m1 - m0) * (band + 1) / (p.n_mels + 1), p.scale);
    std::vector<float> a(S);
    for (int i = 0; i < S; ++i)
      a[static_cast<size_t>(i)] =
          static_cast<float>(0.7 * std::sin(2.0 * std::numbers::pi * f0 * i / p.sample_rate + 0.3));
    std::vector<float> out(static_cast<size_t>(p.n_mels) * F);
    mel.forward(a.data(), out.data(), 1, S);
    const int f = F / 2;
    int best = 0;
    for (int m = 1; m < p.n_mels; ++m)
      if (out[static_cast<size_t>(m) * F + f] > out[static_cast<size_t>(best) * F + f]) best = m;
    EXPECT_EQ(best, band) << "f0=" << f0;
    // Bands far from the tone only see Hann sidelobes: at least 60 dB (ln 1e6 ~ 13.8) lower.
    for (int m = 0; m < p.n_mels; ++m) {
      if (std::abs(m - band) < 4) continue;
      EXPECT_LT(out[static_cast<size_t>(m) * F + f], out[static_cast<size_t>(band) * F + f] - 13.8) << "band " << m;
    }
  }
}

TEST(MelForward, SameResultForAnyThreadCount) {
  MelParams p;
  p.hop = 333;
  p.power = 1.0;
  const MelCpu mel(p);
  const int B = 3, S = 9001;
  const std::vector<float> audio = random_audio(static_cast<size_t>(B) * S, 13);
  const size_t n = static_cast<size_t>(B) * p.n_mels * mel_frames(S, p.hop);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> outs;
  for (int t : {1, 2, 3}) {
    omp_set_num_threads(t);  // the third exceeds the slots allocated at construction on 2 cores
    std::vector<float> out(n);
    mel.forward(audio.data(), out.data(), B, S);
    outs.push_back(std::move(out));
  }
  omp_set_num_threads(saved);
  for (size_t i = 1; i < outs.size(); ++i)
    for (size_t j = 0; j < n; ++j) ASSERT_EQ(outs[i][j], outs[0][j]) << "threads config " << i << " elem " << j;
}

TEST(MelForward, ClipsAreIndependent) {
  // Clip b of a batch equals the same clip run alone: no cross-clip reads at the edges.
  MelParams p = small_params();
  const MelCpu mel(p);
  // S = 10 * hop + n_fft/2 - 1: frame 10 ends exactly one sample past the clip, so it needs
  // the reflected sample, and reading x[S] instead would pick up the next clip.
  const int B = 3, S = 10 * 157 + 256 - 1;
  const std::vector<float> audio = random_audio(static_cast<size_t>(B) * S, 14);
  const int F = mel_frames(S, p.hop);
  const size_t per = static_cast<size_t>(p.n_mels) * F;
  std::vector<float> all(B * per), one(per);
  mel.forward(audio.data(), all.data(), B, S);
  for (int b = 0; b < B; ++b) {
    // Alone, in its own buffer with a loud sample just past its end.
    std::vector<float> clip(audio.begin() + static_cast<ptrdiff_t>(b) * S,
                            audio.begin() + static_cast<ptrdiff_t>(b + 1) * S);
    clip.push_back(1000.0f);
    mel.forward(clip.data(), one.data(), 1, S);
    for (size_t i = 0; i < per; ++i) ASSERT_EQ(all[b * per + i], one[i]) << "clip " << b;
  }
}

void expect_invalid(const MelParams& p, const std::string& field) {
  try {
    validate_mel_params(p);
    ADD_FAILURE() << "expected std::invalid_argument naming " << field;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
  EXPECT_THROW(MelCpu{p}, std::invalid_argument);
}

TEST(MelParamsValidation, EachFieldIsChecked) {
  EXPECT_NO_THROW(validate_mel_params(MelParams{}));
  MelParams p;
  p = {}; p.sample_rate = 0; expect_invalid(p, "mel.sample_rate");
  p = {}; p.n_fft = 1023; expect_invalid(p, "mel.n_fft");
  p = {}; p.n_fft = 2; expect_invalid(p, "mel.n_fft");
  p = {}; p.hop = 0; expect_invalid(p, "mel.hop");
  p = {}; p.n_mels = 0; expect_invalid(p, "mel.n_mels");
  p = {}; p.f_min = -1.0; expect_invalid(p, "mel.f_min");
  p = {}; p.f_min = std::nan(""); expect_invalid(p, "mel.f_min");
  p = {}; p.f_min = 11025.0; expect_invalid(p, "mel.f_min");
  p = {}; p.f_min = 5000.0; p.f_max = 4000.0; expect_invalid(p, "mel.f_min");
  p = {}; p.f_max = 11026.0; expect_invalid(p, "mel.f_max");
  p = {}; p.f_max = std::nan(""); expect_invalid(p, "mel.f_max");
  p = {}; p.power = 0.0; expect_invalid(p, "mel.power");
  p = {}; p.power = -2.0; expect_invalid(p, "mel.power");
  p = {}; p.log_eps = 0.0; expect_invalid(p, "mel.log_eps");
  p = {}; p.log_eps = std::nan(""); expect_invalid(p, "mel.log_eps");
  p = {}; p.log_eps = 1e-40; expect_invalid(p, "mel.log_eps");  // 0 or subnormal in float32
}

TEST(MelForward, ShortClipIsRejected) {
  MelParams p = small_params();
  const MelCpu mel(p);
  std::vector<float> a(256, 0.1f), out(static_cast<size_t>(p.n_mels) * 4);
  try {
    mel.forward(a.data(), out.data(), 1, 256);  // n_fft/2 = 256 samples: reflect pad impossible
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("n_fft/2"), std::string::npos) << e.what();
  }
  a.resize(257, 0.2f);
  EXPECT_NO_THROW(mel.forward(a.data(), out.data(), 0, 257));  // empty batch is a no-op
  out.resize(static_cast<size_t>(p.n_mels) * mel_frames(257, p.hop));
  EXPECT_NO_THROW(mel.forward(a.data(), out.data(), 1, 257));
}

}  // namespace
}  // namespace mg

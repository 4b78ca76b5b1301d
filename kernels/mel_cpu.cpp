#include "kernels/mel_cpu.h"

#include "kernels/fft_cpu.h"

#include <kiss_fftr.h>
#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>

namespace mg {

namespace {

// Frames transformed together, one per SIMD lane (LaneFft, kernels/fft_cpu.h); also the
// frames per work item, so each band's output is written as a contiguous run of kLanes frames.
constexpr int kLanes = kFftLanes;

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw std::invalid_argument("mel." + field + ": " + what);
}

// torch.linspace in double: the first half counts up from start, the second half down from
// end. Mirrored so that filterbank edges land on the same side of zero as torchaudio's.
std::vector<double> torch_linspace(double start, double end, int steps) {
  std::vector<double> v(static_cast<size_t>(steps));
  if (steps == 1) {
    v[0] = start;
    return v;
  }
  const double step = (end - start) / static_cast<double>(steps - 1);
  const int half = steps / 2;
  for (int i = 0; i < steps; ++i) {
    v[static_cast<size_t>(i)] = i < half ? start + step * static_cast<double>(i)
                                         : end - step * static_cast<double>(steps - i - 1);
  }
  return v;
}

// Slaney constants (torchaudio/librosa): 200/3 Hz per mel up to 1 kHz, then log spacing
// with 27 steps per factor 6.4.
constexpr double kSlaneyFsp = 200.0 / 3.0;
constexpr double kSlaneyMinLogHz = 1000.0;
constexpr double kSlaneyMinLogMel = kSlaneyMinLogHz / kSlaneyFsp;  // 15
const double kSlaneyLogStep = std::log(6.4) / 27.0;

}  // namespace

void validate_mel_params(const MelParams& p) {
  // Negated comparisons so that NaN fails every check.
  if (!(p.sample_rate > 0)) bad("sample_rate", "must be > 0 Hz, got " + std::to_string(p.sample_rate));
  if (p.n_fft < 4 || p.n_fft % 2 != 0)
    bad("n_fft", "must be even and >= 4 (real FFT), got " + std::to_string(p.n_fft));
  if (p.hop < 1) bad("hop", "must be >= 1 sample, got " + std::to_string(p.hop));
  if (p.n_mels < 1) bad("n_mels", "must be >= 1, got " + std::to_string(p.n_mels));
  const double nyquist = static_cast<double>(p.sample_rate) / 2.0;
  if (!(p.f_min >= 0.0)) bad("f_min", "must be >= 0 Hz, got " + num(p.f_min));
  if (!std::isfinite(p.f_max) && !std::isnan(p.f_max))
    bad("f_max", "must be finite (or <= 0 for sample_rate / 2), got " + num(p.f_max));
  if (std::isnan(p.f_max)) bad("f_max", "is NaN; use <= 0 for sample_rate / 2");
  const double fmax = p.f_max_resolved();
  if (!(fmax <= nyquist))
    bad("f_max", "must be <= sample_rate / 2 = " + num(nyquist) + " Hz, got " + num(fmax));
  if (!(p.f_min < fmax))
    bad("f_min", "must be < f_max (" + num(fmax) + " Hz), got " + num(p.f_min));
  if (!(p.power > 0.0) || !std::isfinite(p.power))
    bad("power", "must be finite and > 0 (1 = magnitude, 2 = power), got " + num(p.power));
  // The output is float32: an eps that is zero or subnormal there would not keep log finite.
  if (!(p.log_eps >= static_cast<double>(std::numeric_limits<float>::min())) || !std::isfinite(p.log_eps))
    bad("log_eps", "must be finite and >= 1.2e-38 (a normal float32; it keeps log() of silent bands "
                   "finite), got " + num(p.log_eps));
}

double hz_to_mel(double hz, MelScale scale) {
  if (scale == MelScale::HTK) return 2595.0 * std::log10(1.0 + hz / 700.0);
  if (hz >= kSlaneyMinLogHz) return kSlaneyMinLogMel + std::log(hz / kSlaneyMinLogHz) / kSlaneyLogStep;
  return hz / kSlaneyFsp;
}

double mel_to_hz(double mel, MelScale scale) {
  if (scale == MelScale::HTK) return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0);
  if (mel >= kSlaneyMinLogMel) return kSlaneyMinLogHz * std::exp(kSlaneyLogStep * (mel - kSlaneyMinLogMel));
  return kSlaneyFsp * mel;
}

// torchaudio 0.13 melscale_fbanks + _create_triangular_filterbank, evaluated in double with
// the same expression order. A band may come out all zero when n_mels is large for n_fft
// (torchaudio only warns); that stays legal and the band's output is log(log_eps).
std::vector<double> mel_filterbank_dense(const MelParams& p) {
  validate_mel_params(p);
  const int nf = p.n_freqs();
  const int nm = p.n_mels;
  // Integer division, as torchaudio: for an odd sample rate the top bin sits at floor(sr/2).
  const std::vector<double> all_freqs = torch_linspace(0.0, static_cast<double>(p.sample_rate / 2), nf);
  const std::vector<double> m_pts =
      torch_linspace(hz_to_mel(p.f_min, p.scale), hz_to_mel(p.f_max_resolved(), p.scale), nm + 2);
  std::vector<double> f_pts(m_pts.size());
  for (size_t i = 0; i < m_pts.size(); ++i) f_pts[i] = mel_to_hz(m_pts[i], p.scale);
  std::vector<double> f_diff(f_pts.size() - 1);
  for (size_t i = 0; i + 1 < f_pts.size(); ++i) f_diff[i] = f_pts[i + 1] - f_pts[i];

  std::vector<double> fb(static_cast<size_t>(nf) * static_cast<size_t>(nm));
  for (int k = 0; k < nf; ++k) {
    for (int m = 0; m < nm; ++m) {
      const size_t mi = static_cast<size_t>(m);
      const double down = (-1.0 * (f_pts[mi] - all_freqs[static_cast<size_t>(k)])) / f_diff[mi];
      const double up = (f_pts[mi + 2] - all_freqs[static_cast<size_t>(k)]) / f_diff[mi + 1];
      double w = std::max(0.0, std::min(down, up));
      if (p.norm == MelNorm::Slaney) w *= 2.0 / (f_pts[mi + 2] - f_pts[mi]);
      fb[static_cast<size_t>(k) * static_cast<size_t>(nm) + mi] = w;
    }
  }
  return fb;
}

MelFilterbank make_mel_filterbank(const MelParams& p) {
  const std::vector<double> dense = mel_filterbank_dense(p);
  MelFilterbank fb;
  fb.n_freqs = p.n_freqs();
  fb.n_mels = p.n_mels;
  const size_t nm = static_cast<size_t>(p.n_mels);
  fb.start.assign(nm, 0);
  fb.count.assign(nm, 0);
  fb.offset.assign(nm, 0);
  for (int m = 0; m < p.n_mels; ++m) {
    int first = -1, last = -1;
    for (int k = 0; k < fb.n_freqs; ++k) {
      if (dense[static_cast<size_t>(k) * nm + static_cast<size_t>(m)] != 0.0) {
        if (first < 0) first = k;
        last = k;
      }
    }
    const size_t mi = static_cast<size_t>(m);
    fb.offset[mi] = static_cast<int32_t>(fb.weights.size());
    if (first < 0) continue;  // empty band: count 0
    fb.start[mi] = first;
    fb.count[mi] = last - first + 1;
    for (int k = first; k <= last; ++k) {
      const double w = dense[static_cast<size_t>(k) * nm + mi];
      // A triangle is positive on one open interval of frequency, so its support is one run.
      if (w == 0.0) throw std::logic_error("make_mel_filterbank: band " + std::to_string(m) + " is not contiguous");
      fb.weights.push_back(static_cast<float>(w));
    }
  }
  return fb;
}

std::vector<float> hann_window_periodic(int n) {
  std::vector<float> w(static_cast<size_t>(std::max(n, 0)));
  for (int i = 0; i < n; ++i) {
    w[static_cast<size_t>(i)] = static_cast<float>(
        0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * static_cast<double>(i) / static_cast<double>(n)));
  }
  return w;
}

namespace {

bool is_pow2(int n) { return n > 0 && (n & (n - 1)) == 0; }

// |X[k]|^2 of the real transform of length n = 2 half from the complex transform Z of length
// half of z[j] = x[2j] + i x[2j+1]: with E = DFT(even samples) and O = DFT(odd samples),
// Z[k] = E[k] + i O[k] and conj(Z[half-k]) = E[k] - i O[k], so X[k] = E[k] + exp(-2 pi i k/n) O[k].
MG_SIMD_CLONES void split_power(int half, const float* __restrict Zr, const float* __restrict Zi,
                                const float* post_c, const float* post_s, float* __restrict pw) {
  for (int k = 0; k <= half; ++k) {
    const float* ar = Zr + static_cast<size_t>(k % half) * kLanes;
    const float* ai = Zi + static_cast<size_t>(k % half) * kLanes;
    const float* br = Zr + static_cast<size_t>((half - k) % half) * kLanes;
    const float* bi = Zi + static_cast<size_t>((half - k) % half) * kLanes;
    const float c = post_c[k], sn = post_s[k];
    float* o = pw + static_cast<size_t>(k) * kLanes;
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const float er = 0.5f * (ar[l] + br[l]), ei = 0.5f * (ai[l] - bi[l]);
      const float odr = 0.5f * (ai[l] + bi[l]), odi = -0.5f * (ar[l] - br[l]);  // (Z - conj Z') / 2i
      const float xr = er + c * odr - sn * odi;
      const float xi = ei + c * odi + sn * odr;
      o[l] = xr * xr + xi * xi;
    }
  }
}

// Natural log of a positive normal float, within 2 ulp (checked across the float range), written so it
// vectorises (glibc's logf does not in an `omp simd` loop without -ffast-math). x = 2^e m with
// m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, whose odd
// series to s^11 is exact to float precision.
inline float log_normal(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t off = 0x3f3504f3u;  // bits of sqrt(1/2)
  const int32_t e = static_cast<int32_t>(bits - off) >> 23;
  const float m = std::bit_cast<float>(bits - (static_cast<uint32_t>(e) << 23));
  const float f = m - 1.0f;  // exact (Sterbenz)
  const float s = f / (2.0f + f);
  const float z = s * s;
  const float poly = z * (2.0f / 3 + z * (2.0f / 5 + z * (2.0f / 7 + z * (2.0f / 9 + z * (2.0f / 11)))));
  const float log1pf = 2.0f * s + s * poly;
  // ln 2 split so that e * ln2_hi is exact for every float exponent.
  const float ln2_hi = 0.693145751953125f, ln2_lo = 1.42860676533018704e-06f;
  const float ef = static_cast<float>(e);
  return ef * ln2_hi + (log1pf + ef * ln2_lo);
}

// Windowed frames into the lane layout: lane l gets z[j] = (x_l[2j] w[2j], x_l[2j+1] w[2j+1]).
// This is a transpose; with SSE (baseline on x86-64) it runs in 4 x 4 register blocks so that
// every load and store is a full vector instead of a strided scalar.
void gather_lanes(const float* const* src, const float* __restrict w, int half, float* __restrict zr,
                  float* __restrict zi) {
  int j0 = 0;
#if defined(__SSE2__)
  static_assert(kLanes % 4 == 0);
  for (; j0 + 4 <= half; j0 += 4) {
    const __m128 w0 = _mm_loadu_ps(w + 2 * j0), w1 = _mm_loadu_ps(w + 2 * j0 + 4);
    for (int g = 0; g < kLanes; g += 4) {
      __m128 re[4], im[4];
      for (int r = 0; r < 4; ++r) {
        const float* x = src[g + r] + 2 * j0;
        const __m128 a = _mm_mul_ps(_mm_loadu_ps(x), w0);      // re0 im0 re1 im1
        const __m128 b = _mm_mul_ps(_mm_loadu_ps(x + 4), w1);  // re2 im2 re3 im3
        re[r] = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        im[r] = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
      }
      // Rows are lanes g..g+3, columns points j0..j0+3; transposed, rows are points.
      _MM_TRANSPOSE4_PS(re[0], re[1], re[2], re[3]);
      _MM_TRANSPOSE4_PS(im[0], im[1], im[2], im[3]);
      for (int c = 0; c < 4; ++c) {
        _mm_storeu_ps(zr + static_cast<size_t>(j0 + c) * kLanes + g, re[c]);
        _mm_storeu_ps(zi + static_cast<size_t>(j0 + c) * kLanes + g, im[c]);
      }
    }
  }
#endif
  for (; j0 < half; ++j0) {
    for (int l = 0; l < kLanes; ++l) {
      zr[static_cast<size_t>(j0) * kLanes + l] = src[l][2 * j0] * w[2 * j0];
      zi[static_cast<size_t>(j0) * kLanes + l] = src[l][2 * j0 + 1] * w[2 * j0 + 1];
    }
  }
}

// Sparse filterbank and log for kLanes frames: band m is a short dot product over its
// contiguous bins, done for all lanes at once, into mel [n_mels][kLanes]; the logs then run as
// one long vector loop, and each band's nb valid frames are one contiguous run of the output
// row out[m * F ...].
MG_SIMD_CLONES void band_logs(const MelFilterbank& fb, const float* __restrict pw, float eps, int nb,
                             float* __restrict mel, float* __restrict out, int64_t F) {
  const int nm = fb.n_mels;
  for (int m = 0; m < nm; ++m) {
    const float* w = fb.weights.data() + fb.offset[static_cast<size_t>(m)];
    const float* p0 = pw + static_cast<size_t>(fb.start[static_cast<size_t>(m)]) * kLanes;
    const int cnt = fb.count[static_cast<size_t>(m)];
    float acc[kLanes] = {};
    for (int i = 0; i < cnt; ++i) {
      const float wi = w[i];
      const float* pr = p0 + static_cast<size_t>(i) * kLanes;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) acc[l] += wi * pr[l];
    }
    float* o = mel + static_cast<size_t>(m) * kLanes;
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) o[l] = acc[l] + eps;
  }
  const size_t n = static_cast<size_t>(nm) * kLanes;
  bool all_normal = true;
#pragma omp simd reduction(&& : all_normal)
  for (size_t i = 0; i < n; ++i)
    all_normal = all_normal && mel[i] >= std::numeric_limits<float>::min() &&
                 mel[i] <= std::numeric_limits<float>::max();
  if (all_normal) {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) mel[i] = log_normal(mel[i]);
  } else {  // inf or NaN somewhere (non-finite input; log_eps >= FLT_MIN keeps the rest normal)
    for (size_t i = 0; i < n; ++i) mel[i] = std::log(mel[i]);
  }
  for (int m = 0; m < nm; ++m) {
    const float* src = mel + static_cast<size_t>(m) * kLanes;
    float* o = out + static_cast<int64_t>(m) * F;
    if (nb == kLanes) {  // a fixed-length copy is a vector store, not a memcpy call
      for (int l = 0; l < kLanes; ++l) o[l] = src[l];
    } else {
      for (int l = 0; l < nb; ++l) o[l] = src[l];
    }
  }
}

}  // namespace

struct MelCpu::Impl {
  // Per-thread scratch. A kiss_fftr_cfg carries its own work buffer, so a plan, like every
  // buffer here, may only be used by one thread at a time: each OpenMP thread owns a slot,
  // indexed by omp_get_thread_num().
  struct Slot {
    kiss_fftr_cfg cfg = nullptr;        // fallback path only
    std::vector<kiss_fft_cpx> spec;     // [n_freqs], fallback path only
    std::vector<float> frame;           // [kLanes][n_fft] reflect-padded copies of edge frames
    std::vector<float> zr, zi, yr, yi;  // [n_fft / 2][kLanes] FFT buffers
    std::vector<float> power;           // [n_freqs][kLanes]
    std::vector<float> mel;             // [n_mels][kLanes]
  };
  int n_fft = 0;
  int n_mels = 0;
  bool fast = false;
  std::unique_ptr<LaneFft> fft;
  std::vector<float> post_c, post_s;  // cos and -sin(2 pi k / n_fft), k <= n_fft / 2
  std::vector<float> zeros;           // [n_fft], the source of unused lanes
  std::vector<Slot> slots;

  Impl(int nfft, int nmels)
      : n_fft(nfft), n_mels(nmels), fast(is_pow2(nfft)), zeros(static_cast<size_t>(nfft), 0.0f) {
    const int half = nfft / 2;
    if (fast) {
      fft = std::make_unique<LaneFft>(half);
      for (int k = 0; k <= half; ++k) {
        const double a = 2.0 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(nfft);
        post_c.push_back(static_cast<float>(std::cos(a)));
        post_s.push_back(static_cast<float>(-std::sin(a)));
      }
    }
    grow(omp_get_max_threads());
  }
  ~Impl() {
    for (Slot& s : slots) kiss_fftr_free(s.cfg);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Called outside parallel regions only: a caller may raise the OpenMP thread count after
  // construction.
  void grow(int n_threads) {
    const size_t nf = static_cast<size_t>(n_fft / 2 + 1);
    const size_t lanes = static_cast<size_t>(n_fft / 2) * kLanes;
    while (slots.size() < static_cast<size_t>(std::max(n_threads, 1))) {
      slots.emplace_back();
      Slot& s = slots.back();
      if (!fast) {
        s.cfg = kiss_fftr_alloc(n_fft, 0, nullptr, nullptr);
        if (!s.cfg) throw std::runtime_error("MelCpu: kiss_fftr_alloc failed for n_fft=" + std::to_string(n_fft));
        s.spec.resize(nf);
      } else {
        s.zr.resize(lanes);
        s.zi.resize(lanes);
        s.yr.resize(lanes);
        s.yi.resize(lanes);
      }
      s.frame.resize(static_cast<size_t>(n_fft) * kLanes);
      s.power.resize(nf * kLanes);
      s.mel.resize(static_cast<size_t>(n_mels) * kLanes);
    }
  }
};

MelCpu::MelCpu(const MelParams& p) : p_(p) {
  validate_mel_params(p_);
  fb_ = make_mel_filterbank(p_);
  window_ = hann_window_periodic(p_.n_fft);
  impl_ = std::make_unique<Impl>(p_.n_fft, p_.n_mels);
}

MelCpu::~MelCpu() = default;

void MelCpu::forward(const float* audio, float* out, int B, int64_t S) const {
  const int n_fft = p_.n_fft;
  const int64_t pad = n_fft / 2;
  if (B < 0) throw std::invalid_argument("MelCpu::forward: batch size B=" + std::to_string(B) + " must be >= 0");
  if (S <= pad)
    throw std::invalid_argument("MelCpu::forward: clip length S=" + std::to_string(S) + " must exceed n_fft/2=" +
                                std::to_string(pad) +
                                " (reflect padding mirrors n_fft/2 samples at each end); use longer clips "
                                "or a smaller mel.n_fft");
  if (B == 0) return;

  const int F = mel_frames(S, p_.hop);
  const int half = n_fft / 2;
  const int nf = p_.n_freqs();
  const int nm = p_.n_mels;
  // A work item is kLanes consecutive frames of one clip. The split depends on the data only,
  // and every lane runs the same instructions, so results do not depend on the thread count.
  const int n_blocks = (F + kLanes - 1) / kLanes;
  const int64_t n_items = static_cast<int64_t>(B) * n_blocks;
  const int hop = p_.hop;
  const float eps = static_cast<float>(p_.log_eps);
  const float half_power = static_cast<float>(p_.power / 2.0);
  const int pmode = p_.power == 2.0 ? 2 : p_.power == 1.0 ? 1 : 0;
  const float* win = window_.data();
  const MelFilterbank& fb = fb_;

  impl_->grow(omp_get_max_threads());
  const Impl& impl = *impl_;

#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < n_items; ++item) {
    Impl::Slot& slot = impl_->slots[static_cast<size_t>(omp_get_thread_num())];
    const int b = static_cast<int>(item / n_blocks);
    const int f0 = static_cast<int>(item % n_blocks) * kLanes;
    const int nb = std::min(kLanes, F - f0);
    const float* x = audio + static_cast<int64_t>(b) * S;
    float* pw = slot.power.data();  // [nf][kLanes]

    // Samples of frame f0 + l: straight from the clip for interior frames, through a
    // reflect-padded copy for a frame that overhangs either end, zeros for unused lanes.
    auto frame_source = [&](int l) -> const float* {
      if (l >= nb) return impl.zeros.data();
      // Sample n of frame f is padded index f*hop + n, i.e. original index f*hop + n - pad.
      const int64_t s0 = static_cast<int64_t>(f0 + l) * hop - pad;
      if (s0 >= 0 && s0 + n_fft <= S) return x + s0;
      float* fr = slot.frame.data() + static_cast<size_t>(l) * n_fft;
      for (int n = 0; n < n_fft; ++n) {
        int64_t k = s0 + n;
        if (k < 0) k = -k;  // reflect: x[-1] = x[1], the edge sample is not repeated
        else if (k >= S) k = 2 * (S - 1) - k;
        fr[n] = x[k];
      }
      return fr;
    };

    if (impl.fast) {
      // Real FFT of length n through a complex FFT of length n/2 on z[j] = x[2j] + i x[2j+1].
      float* zr = slot.zr.data();
      float* zi = slot.zi.data();
      const float* src[kLanes];
      for (int l = 0; l < kLanes; ++l) src[l] = frame_source(l);
      gather_lanes(src, win, half, zr, zi);
      const bool in_y = impl.fft->run(zr, zi, slot.yr.data(), slot.yi.data());
      split_power(half, in_y ? slot.yr.data() : zr, in_y ? slot.yi.data() : zi, impl.post_c.data(),
                  impl.post_s.data(), pw);
    } else {
      for (int l = 0; l < kLanes; ++l) {
        const float* src = frame_source(l);
        float* fr = slot.frame.data() + static_cast<size_t>(l) * n_fft;
        for (int n = 0; n < n_fft; ++n) fr[n] = src[n] * win[n];  // src may be fr: same index
        kiss_fftr(slot.cfg, fr, slot.spec.data());
        const kiss_fft_cpx* c = slot.spec.data();
        for (int k = 0; k < nf; ++k) pw[static_cast<size_t>(k) * kLanes + l] = c[k].r * c[k].r + c[k].i * c[k].i;
      }
    }
    // pw holds |X|^2; torchaudio raises |X| to the power.
    const size_t n_pw = static_cast<size_t>(nf) * kLanes;
    if (pmode == 1) {
#pragma omp simd
      for (size_t i = 0; i < n_pw; ++i) pw[i] = std::sqrt(pw[i]);
    } else if (pmode == 0) {
      for (size_t i = 0; i < n_pw; ++i) pw[i] = std::pow(pw[i], half_power);
    }

    band_logs(fb, pw, eps, nb, slot.mel.data(), out + static_cast<int64_t>(b) * nm * F + f0, F);
  }
}

}  // namespace mg

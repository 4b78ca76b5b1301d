// Log-mel spectrogram front end, CPU implementation (the oracle for kernels/mel_cuda.cu).
//
//   audio [B, S] --reflect pad n_fft/2 both sides, frame (hop), periodic Hann-->
//   frames [B, F, n_fft] --rFFT--> |X|^power [B, F, n_fft/2+1]
//   --sparse mel filterbank--> mel [B, n_mels, F] --log(mel + log_eps)--> out [B, n_mels, F]
//
// Semantics are torchaudio.transforms.MelSpectrogram's (center=True, pad_mode="reflect",
// onesided, win_length = n_fft, normalized=False) followed by log(x + eps), with
// F = 1 + S / hop frames. The front end has no parameters and its input is data, so it has
// no backward pass; it is checked against torchaudio instead of by finite differences.
// The rFFT is a batched (8 frames per SIMD pass) radix-4 transform for power-of-two n_fft and
// kissfft for other sizes; both in float32.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mg {

enum class MelScale { HTK, Slaney };
enum class MelNorm { None, Slaney };

struct MelParams {
  int sample_rate = 22050;
  int n_fft = 1024;   // also the window length; must be even (real FFT)
  int hop = 512;
  int n_mels = 128;
  double f_min = 0.0;
  double f_max = 0.0;  // <= 0 means sample_rate / 2 (integer division, as torchaudio)
  MelScale scale = MelScale::HTK;
  MelNorm norm = MelNorm::None;
  double power = 2.0;  // 1 = magnitude, 2 = power
  double log_eps = 1e-6;

  int n_freqs() const { return n_fft / 2 + 1; }
  double f_max_resolved() const { return f_max > 0 ? f_max : static_cast<double>(sample_rate / 2); }
};

// Frames produced for S samples with centered framing.
inline int mel_frames(int64_t n_samples, int hop) { return 1 + static_cast<int>(n_samples / hop); }

// Throws std::invalid_argument naming the field when the parameters cannot work.
void validate_mel_params(const MelParams& p);

// Hz <-> mel, torchaudio's formulas (HTK: 2595 log10(1 + f/700); Slaney: linear below
// 1 kHz, logarithmic above).
double hz_to_mel(double hz, MelScale scale);
double mel_to_hz(double mel, MelScale scale);

// The triangular filterbank, stored band-major and sparse: band m covers FFT bins
// [start[m], start[m] + count[m]) with weights weights[offset[m] + i]. Every FFT bin feeds
// at most two bands, so this holds ~2 * n_freqs weights instead of n_freqs * n_mels.
struct MelFilterbank {
  int n_freqs = 0;
  int n_mels = 0;
  std::vector<int32_t> start, count, offset;  // [n_mels]
  std::vector<float> weights;                 // [sum(count)]
};

MelFilterbank make_mel_filterbank(const MelParams& p);

// The same filterbank as a dense [n_freqs, n_mels] matrix in double (torchaudio's layout of
// melscale_fbanks), for tests and for the alternative dense-product path.
std::vector<double> mel_filterbank_dense(const MelParams& p);

// Periodic Hann window of length n: 0.5 - 0.5 cos(2 pi i / n).
std::vector<float> hann_window_periodic(int n);

// Owns the FFT plan, the window, the filterbank and per-thread scratch. forward() is
// thread-safe for distinct outputs only when called from one thread at a time; it
// parallelises internally over (clip, frame).
class MelCpu {
 public:
  explicit MelCpu(const MelParams& p);
  ~MelCpu();
  MelCpu(const MelCpu&) = delete;
  MelCpu& operator=(const MelCpu&) = delete;

  const MelParams& params() const { return p_; }
  const MelFilterbank& filterbank() const { return fb_; }

  // audio [B, S] float32 -> out [B, n_mels, F], F = mel_frames(S, hop).
  // Requires S > n_fft / 2 (reflect padding needs that many samples).
  void forward(const float* audio, float* out, int B, int64_t S) const;

 private:
  MelParams p_;
  MelFilterbank fb_;
  std::vector<float> window_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mg

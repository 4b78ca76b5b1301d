// `melgraph mel`: the log-mel spectrogram of one audio file, as the model sees it, written as
// NumPy .npy for inspection and interop.
//
// The file is decoded at the config's sample rate (mono, from its start) for --seconds, or
// up to audio.excerpt_seconds, then run through the backend's mel_forward with the config's
// [mel] section. Output: float32 [n_mels, frames], frames = 1 + samples / hop (centred
// frames, torchaudio's convention), values log(mel + log_eps). --samples-out writes the
// decoded samples, float32 [samples], so another tool can recompute the same spectrogram.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "engine/audio/decode.h"
#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/config.h"
#include "engine/io/npy.h"

namespace mg::cli {

namespace {

struct MelCliOptions {
  std::string audio, config_path, out, samples_out;
  std::string device = "auto";
  double seconds = 0;  // 0: audio.excerpt_seconds
  int threads = 0;
};

void run_mel(const MelCliOptions& o) {
  const Config c = o.config_path.empty() ? default_config() : load_config(o.config_path);
  const int sr = c.audio.sample_rate;
  const double seconds = o.seconds > 0 ? o.seconds : c.audio.excerpt_seconds;
  audio::DecodeRequest req;
  req.sample_rate = sr;
  req.excerpt = Excerpt::Start;
  req.max_samples = std::llround(seconds * sr);
  const audio::DecodedAudio a = audio::decode_audio(o.audio, req);
  if (!a.warning.empty()) std::fprintf(stderr, "melgraph: warning: %s: %s\n", o.audio.c_str(), a.warning.c_str());

  const auto S = static_cast<int64_t>(a.samples.size());  // audio [1, S]
  if (S <= c.mel.n_fft / 2)
    throw std::runtime_error(o.audio + ": " + std::to_string(S) + " samples at " + std::to_string(sr) +
                             " Hz, but the mel front end needs more than n_fft / 2 = " +
                             std::to_string(c.mel.n_fft / 2) + " (reflect padding)");
  BackendOptions bo;
  parse_device(o.device, bo);
  bo.threads = o.threads;
  std::string note;
  auto be = make_backend(bo, &note);
  std::fprintf(stderr, "%s\n", note.c_str());

  const int n_mels = c.mel.n_mels, F = mel_frames(S, c.mel.hop);
  const int64_t n_out = static_cast<int64_t>(n_mels) * F;  // mel [1, n_mels, F]
  float* d_audio = be->alloc<float>(S);
  float* d_mel = be->alloc<float>(n_out);
  std::vector<float> mel(static_cast<size_t>(n_out));
  be->to_device(d_audio, a.samples.data(), a.samples.size() * sizeof(float));
  be->mel_forward(d_audio, d_mel, 1, S, c.mel);
  be->to_host(mel.data(), d_mel, mel.size() * sizeof(float));
  be->free_bytes(d_mel);
  be->free_bytes(d_audio);

  write_npy(o.out, mel.data(), {n_mels, F});
  if (!o.samples_out.empty()) write_npy(o.samples_out, a.samples.data(), {S});
  std::printf("%s: %s, %d Hz, %d channel%s -> %lld samples at %d Hz (%.2f s from the start)\n", o.audio.c_str(),
              a.codec.c_str(), a.source_rate, a.source_channels, a.source_channels == 1 ? "" : "s",
              static_cast<long long>(S), sr, static_cast<double>(S) / sr);
  std::printf("log-mel [%d, %d] (n_mels, frames; n_fft %d, hop %d): %s\n", n_mels, F, c.mel.n_fft, c.mel.hop,
              o.out.c_str());
  if (!o.samples_out.empty()) std::printf("samples [%lld]: %s\n", static_cast<long long>(S), o.samples_out.c_str());
}

}  // namespace

void register_mel(CLI::App& app) {
  auto opts = std::make_shared<MelCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "mel", "Write the log-mel spectrogram of one audio file as .npy: float32 [n_mels, 1 + samples / hop]");
  cmd->add_option("--audio", opts->audio, "Audio file (any format FFmpeg reads)")->required();
  cmd->add_option("--config", opts->config_path, "Run config (TOML): [audio] sample_rate and [mel]; default: built-in");
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seconds", opts->seconds,
                  "Seconds to decode from the start (default: the whole file up to audio.excerpt_seconds)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--out", opts->out, "Output .npy: float32 [n_mels, frames]")->required();
  cmd->add_option("--samples-out", opts->samples_out, "Also write the decoded mono samples: float32 [samples]");
  cmd->callback([opts] { run_mel(*opts); });
}

}  // namespace mg::cli

// `melgraph mel` against torchaudio 0.13 on the real music of ../shared/data/music: for each
// file and two mel configurations, the melgraph binary (CPU) decodes the file and writes its
// log-mel and the decoded samples (--samples-out); tests/reference/ref_audio_mel.py runs
// torchaudio's MelSpectrogram in float64 on those same samples. This is the whole user path
// (decode, config, backend, .npy writer) checked against the reference on identical input.
//
// Tolerance: tests/mel_tolerance.h, the rule of test_reference_mel (1e-4 norm-wise over the
// bands within 60 dB of the clip's peak; elsewhere at most twice torchaudio's own float32
// error, or 1e-4).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/io/npy.h"
#include "engine/io/safetensors.h"
#include "tests/mel_tolerance.h"
#include "tests/reference_harness.h"

namespace mg {
namespace {

namespace fs = std::filesystem;

struct MelConfig {
  std::string name;
  std::string toml;  // empty: melgraph's built-in defaults (no --config)
};

// The default front end, and one with every other choice (Slaney scale and norm, magnitude,
// band limits, another FFT size and hop).
const std::vector<MelConfig>& mel_configs() {
  static const std::vector<MelConfig> configs = {
      {"default", ""},
      {"slaney_mag", "[mel]\nn_fft = 2048\nhop = 300\nn_mels = 96\nf_min = 30.0\nf_max = 10000.0\n"
                     "mel_scale = \"slaney\"\nnorm = \"slaney\"\npower = 1.0\n"},
  };
  return configs;
}

fs::path music_dir() { return fs::path(test::shared_data_dir()) / "music"; }

std::vector<std::string> music_files() {
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(music_dir(), ec))
    for (const auto& e : fs::directory_iterator(music_dir(), ec))
      if (e.path().extension() == ".ogg") files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  return files;
}

struct Case {
  std::string name, mel_npy, samples_npy;
  Config config;
};

// melgraph runs once per file and config, the reference script once for all of them.
class ReferenceAudioMel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::torch_unavailable_reason().empty() || music_files().empty()) return;  // the tests say why
    dir_ = std::make_unique<test::TempDir>();
    nlohmann::json cases = nlohmann::json::array();
    for (const MelConfig& mc : mel_configs()) {
      std::string config_arg;
      Config config = default_config();
      if (!mc.toml.empty()) {
        const std::string path = dir_->file(mc.name + ".toml");
        std::ofstream(path) << mc.toml;
        config = load_config(path);
        config_arg = " --config " + path;
      }
      for (const std::string& file : music_files()) {
        Case c;
        c.name = mc.name + "/" + fs::path(file).stem().string();
        c.config = config;
        const std::string stem = mc.name + "-" + fs::path(file).stem().string();
        c.mel_npy = dir_->file(stem + ".mel.npy");
        c.samples_npy = dir_->file(stem + ".samples.npy");
        const std::string cmd = std::string(MELGRAPH_EXE) + " mel --device cpu --audio " +
                                (music_dir() / file).string() + config_arg + " --out " + c.mel_npy +
                                " --samples-out " + c.samples_npy;
        std::string log;
        if (test::run_command(cmd, &log) != 0) {
          setup_error_ = "melgraph failed: " + cmd + "\n" + log;
          return;
        }
        const MelParams& p = config.mel;
        cases.push_back({{"name", c.name}, {"samples", c.samples_npy}, {"source", (music_dir() / file).string()},
                         {"sample_rate", p.sample_rate},
                         {"n_fft", p.n_fft}, {"hop", p.hop}, {"n_mels", p.n_mels}, {"f_min", p.f_min},
                         {"f_max", p.f_max}, {"scale", p.scale == MelScale::HTK ? "htk" : "slaney"},
                         {"norm", p.norm == MelNorm::None ? "none" : "slaney"}, {"power", p.power},
                         {"log_eps", p.log_eps}});
        cases_.push_back(c);
      }
    }
    const std::string cases_json = dir_->file("cases.json"), out = dir_->file("ref.safetensors");
    std::ofstream(cases_json) << cases.dump(1);
    std::string log;
    const std::string cmd = test::python_exe() + " " + test::reference_script("ref_audio_mel.py") + " " +
                            cases_json + " " + out;
    if (test::run_command(cmd, &log) != 0) {
      setup_error_ = "reference script failed: " + cmd + "\n" + log;
      return;
    }
    ref_ = std::make_unique<StFile>(read_safetensors(out));
  }
  static void TearDownTestSuite() {
    ref_.reset();
    cases_.clear();
    dir_.reset();
  }

  static inline std::unique_ptr<test::TempDir> dir_;
  static inline std::vector<Case> cases_;
  static inline std::unique_ptr<StFile> ref_;
  static inline std::string setup_error_;
};

TEST_F(ReferenceAudioMel, MelCommandMatchesTorchaudioOnRealMusic) {
  MG_REQUIRE_TORCH();
  if (music_files().empty())
    GTEST_SKIP() << "no *.ogg under " << music_dir().string() << " (the shared data folder is absent)";
  ASSERT_TRUE(ref_) << setup_error_;
  ASSERT_EQ(cases_.size(), music_files().size() * mel_configs().size());
  for (const Case& c : cases_) {
    SCOPED_TRACE("case " + c.name);
    const MelParams& p = c.config.mel;
    const NpyArray mel = read_npy(c.mel_npy);          // [n_mels, F]
    const NpyArray samples = read_npy(c.samples_npy);  // [S]
    ASSERT_EQ(samples.shape.size(), 1u);
    const int64_t S = samples.shape[0];
    // The files are 22050 Hz, the model's rate: melgraph decodes the whole file up to
    // excerpt_seconds (30 s), every sample of it.
    const std::vector<int32_t> frames = ref_->at(c.name + ".source_frames").to_i32();
    ASSERT_EQ(p.sample_rate, 22050);
    EXPECT_EQ(S, std::min<int64_t>(frames.at(0), c.config.audio.excerpt_samples()));
    const int F = mel_frames(S, p.hop);
    ASSERT_EQ(mel.shape, (std::vector<int64_t>{p.n_mels, F}));
    const StTensor& te = ref_->at(c.name + ".expected");
    const StTensor& tt = ref_->at(c.name + ".torch_f32");
    ASSERT_EQ(te.shape, mel.shape);
    ASSERT_EQ(tt.shape, mel.shape);
    const std::vector<double> want = te.to_f64(), torch_f32 = tt.to_f64();
    const test::LogMelErrors e =
        test::log_mel_errors(mel.data.data(), want.data(), torch_f32.data(), 1, want.size(), p.power, p.log_eps);
    std::printf("  %-60s S=%7lld F=%5d  rel_err=%.2e  torchaudio_f32=%.2e  strong=%.2e\n", c.name.c_str(),
                static_cast<long long>(S), F, e.all, e.torch_f32, e.strong);
    test::expect_log_mel_within_bounds(e);
  }
}

}  // namespace
}  // namespace mg

// MelCpu against torchaudio 0.13 (tests/reference/ref_mel.py): MelSpectrogram in float64 on
// the same float32 samples, then log(mel + log_eps). The script generates or decodes the audio
// and writes it next to the expected output, so both sides see bit-identical input. One script
// run serves all tests (see the fixture).
//
// Tolerance: tests/mel_tolerance.h (1e-4 norm-wise over the bands within 60 dB of each clip's
// peak; elsewhere at most twice torchaudio's own float32 error, or 1e-4).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "kernels/mel_cpu.h"
#include "tests/mel_tolerance.h"
#include "tests/reference_harness.h"

namespace mg {
namespace {

struct Case {
  std::string name;
  MelParams p;
  // Audio: seeded random [B, S], or excerpts of `files` (one clip each) starting at start_s.
  int B = 1;
  int64_t S = 0;
  int seed = 0;
  std::vector<std::string> files;
  double start_s = 0.0;
};

std::string jnum(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

void write_cases(const std::string& path, const std::vector<Case>& cases) {
  std::ostringstream o;
  o << "[\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const MelParams& p = c.p;
    o << "{\"name\":" << jstr(c.name) << ",\"sample_rate\":" << p.sample_rate << ",\"n_fft\":" << p.n_fft
      << ",\"hop\":" << p.hop << ",\"n_mels\":" << p.n_mels << ",\"f_min\":" << jnum(p.f_min)
      << ",\"f_max\":" << jnum(p.f_max) << ",\"scale\":" << (p.scale == MelScale::HTK ? "\"htk\"" : "\"slaney\"")
      << ",\"norm\":" << (p.norm == MelNorm::None ? "\"none\"" : "\"slaney\"") << ",\"power\":" << jnum(p.power)
      << ",\"log_eps\":" << jnum(p.log_eps) << ",\"S\":" << c.S;
    if (c.files.empty()) {
      o << ",\"source\":\"random\",\"B\":" << c.B << ",\"seed\":" << c.seed;
    } else {
      o << ",\"source\":\"music\",\"start_s\":" << jnum(c.start_s) << ",\"files\":[";
      for (size_t f = 0; f < c.files.size(); ++f) o << (f ? "," : "") << jstr(c.files[f]);
      o << "]";
    }
    o << "}" << (i + 1 < cases.size() ? ",\n" : "\n");
  }
  o << "]\n";
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  const std::string s = o.str();
  std::fwrite(s.data(), 1, s.size(), f);
  std::fclose(f);
}

// MelCpu on each case's audio against the script's output.
void check_cases(const StFile& ref, const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE("case " + c.name);
    const StTensor& ta = ref.at(c.name + ".audio");
    const StTensor& te = ref.at(c.name + ".expected");
    ASSERT_EQ(ta.shape.size(), 2u);
    const int B = static_cast<int>(ta.shape[0]);
    ASSERT_EQ(ta.shape[1], c.S);
    const int F = mel_frames(c.S, c.p.hop);
    ASSERT_EQ(te.shape, (std::vector<int64_t>{B, c.p.n_mels, F}));
    const StTensor& tt = ref.at(c.name + ".torch_f32");
    ASSERT_EQ(tt.shape, te.shape);
    const std::vector<float> audio = ta.to_f32();
    const std::vector<double> want = te.to_f64(), torch_f32 = tt.to_f64();
    MelCpu mel(c.p);
    std::vector<float> got(want.size(), std::nanf(""));
    mel.forward(audio.data(), got.data(), B, c.S);

    const size_t per = want.size() / static_cast<size_t>(B);
    const test::LogMelErrors e =
        test::log_mel_errors(got.data(), want.data(), torch_f32.data(), B, per, c.p.power, c.p.log_eps);
    std::printf("  %-30s B=%d F=%4d  rel_err=%.2e  torchaudio_f32=%.2e  strong=%.2e\n", c.name.c_str(), B, F,
                e.all, e.torch_f32, e.strong);
    test::expect_log_mel_within_bounds(e);
  }
}

MelParams params(int sr, int n_fft, int hop, int n_mels, double f_min, double f_max, double power) {
  MelParams p;
  p.sample_rate = sr;
  p.n_fft = n_fft;
  p.hop = hop;
  p.n_mels = n_mels;
  p.f_min = f_min;
  p.f_max = f_max;
  p.power = power;
  return p;
}

const char* tag(MelScale s, MelNorm n) {
  if (s == MelScale::HTK) return n == MelNorm::None ? "htk_none" : "htk_slaney";
  return n == MelNorm::None ? "slaney_none" : "slaney_slaney";
}

std::vector<Case> random_cases() {
  struct Shape {
    const char* name;
    MelParams p;
    int B;
    int64_t S;
  };
  // Sample rates 11025 (odd: torchaudio's bins stop at sr // 2), 16000, 22050, 44100, 48000;
  // hops that are odd or do not divide S; clips down to just over n_fft / 2 samples; n_fft
  // 512/1024/2048 (batched FFT, with and without its radix-2 pass) and 400/600 (kissfft).
  std::vector<Shape> shapes = {
      {"sr16k_512", params(16000, 512, 161, 40, 0.0, 0.0, 2.0), 2, 16077},
      {"sr22k_default", MelParams{}, 2, 2 * 22050 + 123},
      {"sr44k_2048_mag", params(44100, 2048, 441, 96, 30.0, 16000.0, 1.0), 1, 44100 + 999},
      {"sr48k_1024_mag", params(48000, 1024, 333, 64, 50.0, 20000.0, 1.0), 2, 30011},
      {"sr11k_odd", params(11025, 512, 97, 48, 0.0, 0.0, 2.0), 1, 7001},
      {"sr22k_2048_p1.5", params(22050, 2048, 255, 80, 20.0, 8000.0, 1.5), 1, 20001},
      {"sr16k_400", params(16000, 400, 160, 40, 0.0, 0.0, 2.0), 2, 16013},
      {"sr48k_600_mag", params(48000, 600, 241, 80, 0.0, 18000.0, 1.0), 1, 24001},
      {"sr16k_short", params(16000, 512, 128, 40, 0.0, 0.0, 2.0), 3, 300},
  };
  shapes.back().p.log_eps = 1e-3;
  std::vector<Case> cases;
  int seed = 100;
  for (const Shape& sh : shapes) {
    for (MelScale s : {MelScale::HTK, MelScale::Slaney}) {
      for (MelNorm n : {MelNorm::None, MelNorm::Slaney}) {
        Case c;
        c.name = std::string(sh.name) + "_" + tag(s, n);
        c.p = sh.p;
        c.p.scale = s;
        c.p.norm = n;
        c.B = sh.B;
        c.S = sh.S;
        c.seed = seed++;
        cases.push_back(c);
      }
    }
  }
  return cases;
}

std::filesystem::path music_dir() { return std::filesystem::path(test::shared_data_dir()) / "music"; }

// Every *.ogg of the shared music folder, sorted; empty when the folder is absent.
std::vector<std::string> music_files() {
  std::vector<std::string> files;
  std::error_code ec;
  if (std::filesystem::is_directory(music_dir(), ec)) {
    for (const auto& e : std::filesystem::directory_iterator(music_dir(), ec))
      if (e.path().extension() == ".ogg") files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Case> music_cases(const std::vector<std::string>& files) {
  // The files are 22050 Hz; 4 s excerpts (plus a remainder so S is no multiple of the hop),
  // one clip per file.
  const int64_t S = 4 * 22050 + 37;
  std::vector<Case> cases;
  auto add = [&](const std::string& name, MelParams p, MelScale s, MelNorm n) {
    Case c;
    c.name = name;
    c.p = p;
    c.p.scale = s;
    c.p.norm = n;
    c.S = S;
    c.files = files;
    c.start_s = 1.0;
    cases.push_back(c);
  };
  add("music_default", MelParams{}, MelScale::HTK, MelNorm::None);
  add("music_2048_slaney", params(22050, 2048, 512, 128, 0.0, 0.0, 2.0), MelScale::Slaney, MelNorm::Slaney);
  add("music_512_mag", params(22050, 512, 160, 64, 30.0, 8000.0, 1.0), MelScale::HTK, MelNorm::Slaney);
  add("music_1024_mag", params(22050, 1024, 257, 96, 0.0, 0.0, 1.0), MelScale::Slaney, MelNorm::None);
  return cases;
}

// Importing torch costs seconds, so the script runs once, for every case of every test here.
class ReferenceMel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::torch_unavailable_reason().empty()) return;  // each test reports it
    const std::vector<std::string> files = music_files();
    std::vector<Case> all = random_cases();
    std::string args;
    if (!files.empty()) {
      const std::vector<Case> music = music_cases(files);
      all.insert(all.end(), music.begin(), music.end());
      args = " --music-dir " + music_dir().string();
    }
    dir_ = std::make_unique<test::TempDir>();
    const std::string cases_json = dir_->file("cases.json"), out = dir_->file("ref.safetensors");
    write_cases(cases_json, all);
    std::string log;
    const std::string cmd =
        test::python_exe() + " " + test::reference_script("ref_mel.py") + " " + cases_json + " " + out + args;
    if (test::run_command(cmd, &log) != 0) {
      setup_error_ = "reference script failed: " + cmd + "\n" + log;
      return;
    }
    ref_ = std::make_unique<StFile>(read_safetensors(out));
  }
  static void TearDownTestSuite() {
    ref_.reset();
    dir_.reset();
  }

  static inline std::unique_ptr<test::TempDir> dir_;
  static inline std::unique_ptr<StFile> ref_;
  static inline std::string setup_error_;
};

TEST_F(ReferenceMel, RandomSignalsMatchTorchaudio) {
  MG_REQUIRE_TORCH();
  ASSERT_TRUE(ref_) << setup_error_;
  check_cases(*ref_, random_cases());
}

TEST_F(ReferenceMel, RealMusicMatchesTorchaudio) {
  MG_REQUIRE_TORCH();
  const std::vector<std::string> files = music_files();
  if (files.empty()) GTEST_SKIP() << "no *.ogg under " << music_dir().string() << " (the shared data folder is absent)";
  ASSERT_TRUE(ref_) << setup_error_;
  check_cases(*ref_, music_cases(files));
}

}  // namespace
}  // namespace mg

// melgraph's decoder against the reference decoders on every Ogg, Opus and MP3 file of
// ../shared/data (music/, edge-cases/, realset/audio/): libsndfile through python-soundfile
// (tests/reference/ref_decode.py), which decodes Vorbis with libvorbis, Opus with libopus and
// MP3 with libmpg123 (melgraph decodes plain MP3 files with libmpg123 too). Each whole track, downmixed to mono as melgraph does (the channel mean), is
// compared
//  - at the source rate: the same sample count, max |melgraph - reference| <= 1e-4;
//  - at 22050 Hz, after the same resampling: melgraph's decode against the reference samples
//    passed through melgraph's own Resampler; the same count and bound;
// and melgraph's Middle excerpt (5 s at 22050 Hz) must be the slice of its whole decode at the
// excerpt's offset (1e-6: float rounding in the resampler, as in test_audio_decode).
//
// Tolerance: 1e-4 is far above what two IEEE float implementations of one codec differ by
// (measured: <= 3.6e-7 for Vorbis; MP3, decoded by the same libmpg123, is identical), and far
// below a misplaced or missing sample of music (a one-sample shift differs by ~1e-2). It holds
// for every file, the realset's MPEG-2 MP3s with intensity stereo included (FFmpeg's MP3
// decoder, which melgraph used before, differs from libmpg123 on those by up to 1.6e-2).
//
// Files soundfile cannot read (edge-cases/bach.ogg: FLAC in Ogg, which libsndfile rejects) are
// skipped one by one with the reason; the test fails if no file was compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/audio/decode.h"
#include "engine/audio/resampler.h"
#include "tests/audio_test_support.h"
#include "tests/reference_harness.h"

namespace mg::audio {
namespace {

namespace fs = std::filesystem;

constexpr double kMaxDiff = 1e-4;
constexpr double kMiddleMaxDiff = 1e-6;
constexpr int kResampledRate = 22050;

std::vector<std::string> reference_files() {
  const fs::path root = test::shared_data_dir();
  std::vector<std::string> files;
  for (const char* dir : {"music", "edge-cases", "realset/audio"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root / dir, ec)) {
      std::string ext = e.path().extension().string();
      for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (ext == ".ogg" || ext == ".oga" || ext == ".opus" || ext == ".mp3") files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// ref_decode.py's output, read as it comes: a JSON line per file, then its samples.
class ReferenceStream {
 public:
  explicit ReferenceStream(const std::vector<std::string>& files, const std::string& stderr_file) {
    std::string cmd = test::python_exe() + " " + test::reference_script("ref_decode.py");
    for (const std::string& f : files) cmd += " '" + f + "'";
    pipe_ = ::popen((cmd + " 2>'" + stderr_file + "'").c_str(), "r");
  }
  ~ReferenceStream() { close(); }
  bool open() const { return pipe_ != nullptr; }
  int close() {
    const int st = pipe_ ? ::pclose(pipe_) : -1;
    pipe_ = nullptr;
    return st;
  }
  // The next file's header; a null json at the end of the output.
  nlohmann::json next_header() {
    std::string line;
    for (int c; (c = std::fgetc(pipe_)) != EOF && c != '\n';) line += static_cast<char>(c);
    return line.empty() ? nlohmann::json() : nlohmann::json::parse(line);
  }
  bool read_samples(std::vector<float>& x, size_t n) {
    x.resize(n);
    return std::fread(x.data(), sizeof(float), n, pipe_) == n;
  }

 private:
  FILE* pipe_ = nullptr;
};

DecodedAudio decode_whole(const std::string& path, int rate) {
  DecodeRequest r;
  r.sample_rate = rate;
  r.max_samples = -1;
  return decode_audio(path, r);
}

// The reference's mono samples through melgraph's Resampler, as decode_audio feeds it.
std::vector<float> resample(const std::vector<float>& x, int in_rate, int out_rate) {
  FramePtr f(av_frame_alloc());
  f->format = AV_SAMPLE_FMT_FLT;
  f->sample_rate = in_rate;
  f->nb_samples = static_cast<int>(x.size());
  av_channel_layout_default(&f->ch_layout, 1);
  if (av_frame_get_buffer(f.get(), 0) < 0) throw std::bad_alloc();
  std::memcpy(f->data[0], x.data(), x.size() * sizeof(float));
  Resampler rs(out_rate);
  const std::span<const float> head = rs.push(*f);
  std::vector<float> y(head.begin(), head.end());
  const std::span<const float> tail = rs.flush();
  y.insert(y.end(), tail.begin(), tail.end());
  return y;
}

struct Comparison {
  double max_diff = 1e30, snr_db = 0;  // of melgraph's samples against the reference
};

// melgraph's whole decode of `path` at `rate` against `want`: the same count, then the samples.
Comparison compare(const std::string& path, int rate, const std::vector<float>& want, DecodedAudio* decoded) {
  *decoded = decode_whole(path, rate);
  const std::vector<float>& got = decoded->samples;
  EXPECT_EQ(got.size(), want.size()) << "sample count at " << rate << " Hz";
  Comparison c;
  if (got.size() != want.size() || want.empty()) return c;
  c.max_diff = test::max_abs_diff(got, want, 0, want.size());
  c.snr_db = c.max_diff == 0 ? INFINITY : test::snr_db(want, got, 0, 0, static_cast<int64_t>(want.size()));
  return c;
}

// The Middle excerpt's largest difference from the whole decode at its offset.
double middle_error(const std::string& path, const std::vector<float>& whole) {
  DecodeRequest req;
  req.sample_rate = kResampledRate;
  req.excerpt = Excerpt::Middle;
  req.max_samples = 5 * kResampledRate;
  const DecodedAudio m = decode_audio(path, req);
  const int64_t offset = std::llround(m.offset_seconds * kResampledRate);
  const auto n = static_cast<int64_t>(m.samples.size());
  if (offset < 0 || offset + n > static_cast<int64_t>(whole.size())) return 1e30;
  const std::vector<float> slice(whole.begin() + offset, whole.begin() + offset + n);
  return test::max_abs_diff(m.samples, slice, 0, slice.size());
}

struct FileResult {
  std::string codec;       // melgraph's name for it
  double max_diff = 1e30;  // the larger of the two rates'
};

// One file: counts and samples at the source rate and at 22050 Hz, and its Middle excerpt.
FileResult check_file(const std::string& path, const nlohmann::json& head, const std::vector<float>& ref) {
  const int rate = head.at("rate").get<int>();
  DecodedAudio at_source, resampled;
  const Comparison s = compare(path, rate, ref, &at_source);
  const Comparison r = compare(path, kResampledRate, resample(ref, rate, kResampledRate), &resampled);
  const double middle_err = middle_error(path, resampled.samples);
  EXPECT_LE(middle_err, kMiddleMaxDiff) << "the Middle excerpt vs the whole decode";

  std::printf("  %-58s %-6s %6d Hz %d ch %8zu samples: max |diff| %.2e (SNR %5.1f dB), at %d Hz %.2e; middle %.1e\n",
              fs::relative(path, test::shared_data_dir()).string().c_str(), at_source.codec.c_str(), rate,
              head.at("channels").get<int>(), ref.size(), s.max_diff, s.snr_db, kResampledRate, r.max_diff, middle_err);
  EXPECT_LE(s.max_diff, kMaxDiff) << "at the source rate";
  EXPECT_LE(r.max_diff, kMaxDiff) << "at " << kResampledRate << " Hz";
  return {at_source.codec, std::max(s.max_diff, r.max_diff)};
}

TEST(ReferenceAudioDecode, EveryOggAndMp3FileMatchesLibsndfile) {
  MG_REQUIRE_REFERENCE_LIBS(test::python_import_problem("soundfile, numpy", "python3-soundfile python3-numpy"));
  const std::vector<std::string> files = reference_files();
  if (files.empty())
    GTEST_SKIP() << "no .ogg/.opus/.mp3 under " << test::shared_data_dir()
                 << "/{music,edge-cases,realset/audio} (the shared data folder is absent)";
  test::TempDir dir;
  const std::string err_file = dir.file("ref_decode.stderr");
  ReferenceStream ref(files, err_file);
  ASSERT_TRUE(ref.open()) << "cannot run " << test::python_exe();

  int compared = 0;
  std::map<std::string, std::pair<int, double>> by_codec;  // codec -> files, largest max diff
  std::vector<std::string> skipped;
  std::vector<float> samples;
  for (nlohmann::json head = ref.next_header(); !head.is_null(); head = ref.next_header()) {
    const std::string path = head.at("path").get<std::string>();
    SCOPED_TRACE(path);
    if (!head.at("ok").get<bool>()) {
      skipped.push_back(path + ": " + head.at("reason").get<std::string>());
      continue;
    }
    ASSERT_TRUE(ref.read_samples(samples, head.at("frames").get<size_t>())) << "ref_decode.py's output ends early";
    const FileResult fr = check_file(path, head, samples);
    ++compared;
    auto& [count, worst] = by_codec[fr.codec];
    ++count;
    worst = std::max(worst, fr.max_diff);
  }
  const int status = ref.close();
  std::string log;
  test::run_command("cat '" + err_file + "'", &log);
  ASSERT_EQ(status, 0) << "tests/reference/ref_decode.py failed:\n" << log;
  for (const std::string& s : skipped) std::printf("  skipped (soundfile cannot read it): %s\n", s.c_str());
  std::printf("[measured] %d files compared (%zu skipped), of %zu, each held to max |diff| %.0e:\n", compared,
              skipped.size(), files.size(), kMaxDiff);
  for (const auto& [codec, result] : by_codec)
    std::printf("[measured]   %-8s %4d files, max |diff| %.2e\n", codec.c_str(), result.first, result.second);
  EXPECT_EQ(static_cast<size_t>(compared) + skipped.size(), files.size()) << "ref_decode.py answered for fewer files";
  EXPECT_GT(compared, 0) << "no file could be compared: every one was skipped";
}

}  // namespace
}  // namespace mg::audio

// The audio decoder on real and broken files: ../shared/data/edge-cases gives its documented
// results, every kind of bad file is one AudioError line naming the file (and FFmpeg prints
// nothing), truncated files keep what decoded and say so, decodes in parallel threads match
// sequential ones, and the real music decodes as Python's soundfile (libsndfile) reads it.
#include <gtest/gtest.h>

#include <limits>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/audio/decode.h"
#include "engine/audio/wav_writer.h"
#include "tests/audio_test_support.h"
#include "tests/test_support.h"

namespace mg::audio {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

DecodeRequest whole(int rate) {
  DecodeRequest r;
  r.sample_rate = rate;
  r.max_samples = -1;
  return r;
}

std::string shared_dir(const std::string& sub) { return test::shared_data_dir() + "/" + sub; }

#define MG_SKIP_WITHOUT_SHARED_DATA(sub)                                                            \
  do {                                                                                              \
    if (!fs::is_directory(shared_dir(sub)))                                                         \
      GTEST_SKIP() << shared_dir(sub) << " is absent (real test audio: CI has it, a clone does not; " \
                   << "set MELGRAPH_SHARED_DATA_DIR to use another copy)";                          \
  } while (0)

// The reason decode_audio gives for `path`, checking that the message is one line that names
// the file; "" (and a test failure) if it decodes.
std::string failure_reason(const std::string& path, const DecodeRequest& req = whole(22050)) {
  try {
    const DecodedAudio d = decode_audio(path, req);
    ADD_FAILURE() << path << " decoded " << d.samples.size() << " samples; an AudioError was expected";
  } catch (const AudioError& e) {
    EXPECT_EQ(e.path, path);
    EXPECT_EQ(std::string(e.what()), path + ": " + e.reason);
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    return e.reason;
  }
  return std::string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
// The first `fraction` of a file's bytes, as a damaged download or copy leaves it.
void write_truncated(const std::string& from, const std::string& to, double fraction) {
  const std::string b = test::read_bytes(from);
  write_bytes(to, b.substr(0, static_cast<size_t>(static_cast<double>(b.size()) * fraction)));
}

// ---- ../shared/data/edge-cases -----------------------------------------------------------

struct EdgeCase {
  const char* file;
  const char* container;  // prefix of libavformat's name
  const char* codec;
  int rate, channels;
  double seconds;  // decoded length, to 0.05 s
};

// As the folder's README documents them (lengths as decoded).
const EdgeCase kEdgeCases[] = {
    {"bach.ogg", "ogg", "flac", 44100, 1, 3.03},               // Ogg holding FLAC
    {"party.mp3", "mp3", "mp3", 44100, 1, 6.58},               // ID3v2.4 tag, 64 kbps
    {"test1-8bit.wav", "wav", "pcm_u8", 32000, 2, 10.01},      // 8-bit unsigned, stereo
    {"test-dc_offset.wav", "wav", "pcm_s16le", 22050, 2, 10.0},
    {"test4.wav", "wav", "pcm_s16le", 48000, 1, 8.0},
    {"wrong_extension.aac", "mov,mp4", "aac", 44100, 1, 9.66},  // an M4A named .aac
};

TEST(AudioInputs, EdgeCaseFilesDecodeAsDocumented) {
  MG_SKIP_WITHOUT_SHARED_DATA("edge-cases");
  for (const EdgeCase& ec : kEdgeCases) {
    SCOPED_TRACE(ec.file);
    const DecodedAudio d = decode_audio(shared_dir("edge-cases/") + ec.file, whole(22050));
    EXPECT_EQ(d.container.rfind(ec.container, 0), 0u) << d.container;
    EXPECT_EQ(d.codec, ec.codec);
    EXPECT_EQ(d.source_rate, ec.rate);
    EXPECT_EQ(d.source_channels, ec.channels);
    EXPECT_NEAR(static_cast<double>(d.samples.size()) / 22050, ec.seconds, 0.05);
    EXPECT_NEAR(d.source_seconds, ec.seconds, 0.05);
    EXPECT_FALSE(d.truncated) << d.warning;
  }
  EXPECT_EQ(failure_reason(shared_dir("edge-cases/test1_empty.wav")), "no audio samples (the file holds only a header)");
}

// The 16-bit samples of a canonical PCM WAV, read here without FFmpeg.
std::vector<int16_t> wav_pcm16(const std::string& path) {
  const std::string b = test::read_bytes(path);
  size_t pos = 12;  // after "RIFF", size, "WAVE"
  while (pos + 8 <= b.size()) {
    const std::string tag = b.substr(pos, 4);
    uint32_t size = 0;
    for (int i = 3; i >= 0; --i) size = size << 8 | static_cast<unsigned char>(b[pos + 4 + static_cast<size_t>(i)]);
    if (tag == "data") {
      std::vector<int16_t> s(size / 2);
      for (size_t i = 0; i < s.size(); ++i)
        s[i] = static_cast<int16_t>(static_cast<unsigned char>(b[pos + 8 + 2 * i]) |
                                    static_cast<unsigned char>(b[pos + 9 + 2 * i]) << 8);
      return s;
    }
    pos += 8 + size + (size & 1);
  }
  return {};
}

// The DC offset survives: at the file's own rate the samples are exactly (L + R) / 2 / 32768,
// and resampled to 16 kHz the mean is unchanged (within 1e-4; the resampler passes 0 Hz).
TEST(AudioInputs, DcOffsetIsKept) {
  MG_SKIP_WITHOUT_SHARED_DATA("edge-cases");
  const std::string path = shared_dir("edge-cases/test-dc_offset.wav");
  const std::vector<int16_t> pcm = wav_pcm16(path);  // [frames, 2]
  ASSERT_EQ(pcm.size(), 2u * 220500);
  std::vector<double> want(pcm.size() / 2);
  double mean = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    want[i] = (pcm[2 * i] + pcm[2 * i + 1]) / 2.0 / 32768.0;
    mean += want[i] / static_cast<double>(want.size());
  }
  const DecodedAudio d = decode_audio(path, whole(22050));
  ASSERT_EQ(d.samples.size(), want.size());
  EXPECT_LE(test::max_abs_diff(d.samples, want, 0, want.size()), 1e-7);
  EXPECT_GT(std::abs(mean), 0.01) << "the file is documented to have a DC offset";

  const DecodedAudio r = decode_audio(path, whole(16000));
  double rmean = 0;
  for (float v : r.samples) rmean += v / static_cast<double>(r.samples.size());
  EXPECT_NEAR(rmean, mean, 1e-4);
}

// ---- files that are not audio ------------------------------------------------------------

TEST(AudioInputs, BadFilesAreOneLineErrors) {
  TempDir dir;
  std::mt19937 rng(5);
  std::string noise(64 * 1024, '\0');
  for (char& c : noise) c = static_cast<char>(rng() & 0xff);
  write_bytes(dir.file("noise.mp3"), noise);
  write_bytes(dir.file("notes.wav"), "These are notes about a song, not the song.\n" + std::string(2000, 'x'));
  write_bytes(dir.file("zero.flac"), "");
  fs::create_directory(dir.file("folder.mp3"));
  write_wav(dir.file("header_only.wav"), {}, 2, 44100, WavEncoding::Pcm16);
  // A WAV whose format tag (bytes 20-21) names a codec nobody knows.
  std::vector<float> x(4410, 0.25f);
  write_wav(dir.file("unknown_codec.wav"), x, 1, 44100, WavEncoding::Pcm16);
  std::string b = test::read_bytes(dir.file("unknown_codec.wav"));
  b[20] = 0x34, b[21] = 0x12;
  write_bytes(dir.file("unknown_codec.wav"), b);

  ::testing::internal::CaptureStderr();
  EXPECT_EQ(failure_reason(dir.file("missing.ogg")), "no such file");
  EXPECT_EQ(failure_reason(dir.file("zero.flac")), "zero-length file (0 bytes)");
  EXPECT_EQ(failure_reason(dir.file("folder.mp3")), "is a directory, not an audio file");
  EXPECT_EQ(failure_reason(dir.file("header_only.wav")), "no audio samples (the file holds only a header)");
  EXPECT_EQ(failure_reason(dir.file("notes.wav")).rfind("not an audio format FFmpeg recognises", 0), 0u);
  EXPECT_EQ(failure_reason(dir.file("noise.mp3")).rfind("not an audio format FFmpeg recognises", 0), 0u);
  EXPECT_EQ(failure_reason(dir.file("unknown_codec.wav")), "no decoder for codec tag 0x1234 (a codec unknown to FFmpeg)");
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed, "") << "FFmpeg must not log to stderr";
}

// Found by tests/fuzz/fuzz_audio_decode: a 13 KB WAV whose header claims 2 Hz resampled to 38
// million samples and took a minute. A rate outside the audio range is a damaged header: refused
// before decoding. (The header's sample rate is bytes 24-27, its byte rate 28-31.)
TEST(AudioInputs, SampleRateOutsideAudioIsRefused) {
  TempDir dir;
  std::vector<float> x(3000, 0.25f);
  write_wav(dir.file("rate.wav"), x, 1, 8000, WavEncoding::Pcm16);
  const std::string good = test::read_bytes(dir.file("rate.wav"));
  for (const uint32_t rate : {2u, 999u, 3000001u}) {
    std::string b = good;
    for (size_t k = 0; k < 4; ++k) b[24 + k] = static_cast<char>((rate >> (8 * k)) & 0xff);
    for (size_t k = 0; k < 4; ++k) b[28 + k] = static_cast<char>(((rate * 2) >> (8 * k)) & 0xff);
    write_bytes(dir.file("rate.wav"), b);
    EXPECT_EQ(failure_reason(dir.file("rate.wav")),
              "sample rate " + std::to_string(rate) +
                  " Hz, outside the 1000 to 3000000 Hz of audio: a damaged header, or not audio");
  }
}

TEST(AudioInputs, NonFiniteSamplesAreRefused) {
  // A float WAV can carry NaN and infinity; they must never reach the cache.
  TempDir dir;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(8000, 0.1f);
    x[4000] = bad;
    write_wav(dir.file("bad.wav"), x, 1, 8000, WavEncoding::Float32);
    EXPECT_EQ(failure_reason(dir.file("bad.wav")).rfind("non-finite sample (NaN or infinity) at 0.5", 0), 0u)
        << failure_reason(dir.file("bad.wav"));
  }
}

TEST(AudioInputs, UnreadableFileNamesThePermission) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root, which reads any file: permissions cannot be tested";
  TempDir dir;
  std::vector<float> x(4410, 0.25f);
  write_wav(dir.file("locked.wav"), x, 1, 44100, WavEncoding::Pcm16);
  fs::permissions(dir.file("locked.wav"), fs::perms::none);
  EXPECT_NE(failure_reason(dir.file("locked.wav")).find("Permission denied"), std::string::npos);
}

// Files made by ffmpeg: video only, and AAC encrypted with Common Encryption (as DRM'd stores
// deliver it, minus the licence server).
TEST(AudioInputs, VideoOnlyAndEncryptedFilesAreRefused) {
  MG_SKIP_WITHOUT_FFMPEG();
  TempDir dir;
  std::string out;
  const std::string ff = test::ffmpeg_exe() + " -nostdin -hide_banner -loglevel error -y ";
  ASSERT_EQ(test::run_command(ff + "-f lavfi -i testsrc=duration=1:size=64x64:rate=5 -c:v mpeg4 '" + dir.file("video.mp4") + "'", &out), 0) << out;
  ASSERT_EQ(test::run_command(ff + "-f lavfi -i sine=frequency=440:duration=2 -c:a aac -encryption_scheme cenc-aes-ctr "
                                   "-encryption_key 76a6c65c5ea762046bd749a2e632ccbb "
                                   "-encryption_kid a7e61c373e219033c21091fa607bf3b8 '" + dir.file("drm.m4a") + "'", &out), 0)
      << out;
  EXPECT_EQ(failure_reason(dir.file("video.mp4")), "no audio stream (the mov,mp4,m4a,3gp,3g2,mj2 container holds 1 video stream)");
  EXPECT_EQ(failure_reason(dir.file("drm.m4a")), "encrypted (DRM) audio: it cannot be decoded without the key");
}

// ---- damaged files -----------------------------------------------------------------------

// `cut` holds the first part of `full`'s samples (but the last 4096, where the decoder may end
// a stream differently when it is cut) and says it is truncated.
void expect_truncated_prefix(const DecodedAudio& cut, const DecodedAudio& full, double min_fraction, double max_fraction) {
  EXPECT_TRUE(cut.truncated);
  EXPECT_NE(cut.warning.find("truncated"), std::string::npos) << cut.warning;
  const double fraction = static_cast<double>(cut.samples.size()) / static_cast<double>(full.samples.size());
  EXPECT_GE(fraction, min_fraction);
  EXPECT_LE(fraction, max_fraction);
  const size_t n = cut.samples.size() > 4096 ? cut.samples.size() - 4096 : 0;
  EXPECT_EQ(test::max_abs_diff(cut.samples, full.samples, 0, n), 0.0);
}

TEST(AudioInputs, TruncatedMusicDecodesWhatIsThere) {
  MG_SKIP_WITHOUT_SHARED_DATA("music");
  TempDir dir;
  const std::string src = shared_dir("music/Kevin_MacLeod_-_Vibe_Ace.ogg");
  write_truncated(src, dir.file("cut.ogg"), 0.4);
  const DecodedAudio full = decode_audio(src, whole(22050));
  const DecodedAudio cut = decode_audio(dir.file("cut.ogg"), whole(22050));
  EXPECT_FALSE(full.truncated) << full.warning;
  // Variable bitrate: 40% of the bytes hold 23% of the seconds (measured); what matters is that
  // every whole page decodes as in the full file.
  expect_truncated_prefix(cut, full, 0.1, 0.5);
  // The default cache request (Middle window) says so too.
  DecodeRequest middle = whole(22050);
  middle.excerpt = Excerpt::Middle;
  middle.max_samples = 5 * 22050;
  const DecodedAudio m = decode_audio(dir.file("cut.ogg"), middle);
  EXPECT_EQ(static_cast<int64_t>(m.samples.size()), middle.max_samples);
  EXPECT_TRUE(m.truncated);
}

TEST(AudioInputs, TruncatedWavDecodesWhatIsThere) {
  TempDir dir;
  const std::vector<float> x = test::chord_signal(3 * 44100, 2, 44100, 3u);
  write_wav(dir.file("full.wav"), x, 2, 44100, WavEncoding::Pcm16);
  write_truncated(dir.file("full.wav"), dir.file("cut.wav"), 0.6);
  const DecodedAudio full = decode_audio(dir.file("full.wav"), whole(22050));
  const DecodedAudio cut = decode_audio(dir.file("cut.wav"), whole(22050));
  expect_truncated_prefix(cut, full, 0.59, 0.61);
}

// FLAC declares its length in the header: a cut file is found out by that, and a Middle
// window, aimed by the declared length past the end, falls back to counting what is there.
TEST(AudioInputs, TruncatedFlacMiddleUsesTheDecodedLength) {
  MG_SKIP_WITHOUT_FFMPEG();
  TempDir dir;
  const std::vector<float> x = test::chord_signal(20 * 44100, 2, 44100, 4u);
  write_wav(dir.file("master.wav"), x, 2, 44100, WavEncoding::Float32);
  ASSERT_EQ(test::ffmpeg_convert(dir.file("master.wav"), dir.file("full.flac"), "-c:a flac -sample_fmt s16"), "");
  write_truncated(dir.file("full.flac"), dir.file("cut.flac"), 0.4);
  const DecodedAudio full = decode_audio(dir.file("full.flac"), whole(22050));
  const DecodedAudio cut = decode_audio(dir.file("cut.flac"), whole(22050));
  expect_truncated_prefix(cut, full, 0.35, 0.45);
  EXPECT_NE(cut.warning.find("of 20.0 s declared"), std::string::npos) << cut.warning;

  DecodeRequest middle = whole(22050);
  middle.excerpt = Excerpt::Middle;
  middle.max_samples = 4 * 22050;
  const DecodedAudio m = decode_audio(dir.file("cut.flac"), middle);
  ASSERT_EQ(static_cast<int64_t>(m.samples.size()), middle.max_samples);
  const int64_t offset = std::llround(m.offset_seconds * 22050);
  const int64_t centre = (static_cast<int64_t>(cut.samples.size()) - middle.max_samples) / 2;
  EXPECT_LE(std::abs(offset - centre), 1);
  EXPECT_LE(test::max_abs_diff(m.samples, std::vector<float>(cut.samples.begin() + offset, cut.samples.end()), 0,
                               m.samples.size()),
            1e-6);
  EXPECT_TRUE(m.truncated);
  EXPECT_NEAR(m.source_seconds, static_cast<double>(cut.samples.size()) / 22050, 0.01);
}

// An M4A whose index (moov) is at the end, as ffmpeg writes by default: cut, nothing can be read.
TEST(AudioInputs, TruncatedM4aWithoutItsIndexIsAnError) {
  MG_SKIP_WITHOUT_FFMPEG();
  TempDir dir;
  const std::vector<float> x = test::chord_signal(3 * 44100, 1, 44100, 6u);
  write_wav(dir.file("master.wav"), x, 1, 44100, WavEncoding::Float32);
  ASSERT_EQ(test::ffmpeg_convert(dir.file("master.wav"), dir.file("full.m4a"), "-c:a aac"), "");
  write_truncated(dir.file("full.m4a"), dir.file("cut.m4a"), 0.5);
  EXPECT_NE(failure_reason(dir.file("cut.m4a")).find("moov atom not found"), std::string::npos);
}

// ---- threads -----------------------------------------------------------------------------

// Four threads decode the same good and bad files in different orders: every result is the
// sequential one, bit for bit, and every error names its own file and reason.
TEST(AudioInputs, ParallelDecodesMatchSequential) {
  TempDir dir;
  std::vector<std::string> files;
  for (int k = 0; k < 4; ++k) {
    const int rate = k % 2 ? 44100 : 48000;
    const std::vector<float> x = test::chord_signal(4 * rate, 1 + k % 2, rate, 40u + static_cast<unsigned>(k));
    files.push_back(dir.file("good" + std::to_string(k) + ".wav"));
    write_wav(files.back(), x, 1 + k % 2, rate, k < 2 ? WavEncoding::Pcm16 : WavEncoding::Float32);
  }
  write_wav(dir.file("header_only.wav"), {}, 1, 8000, WavEncoding::Pcm16);
  write_bytes(dir.file("text.mp3"), std::string(3000, 'a'));
  files.push_back(dir.file("header_only.wav"));
  files.push_back(dir.file("text.mp3"));
  files.push_back(dir.file("missing.flac"));

  DecodeRequest req;
  req.sample_rate = 16000;
  req.excerpt = Excerpt::Middle;
  req.max_samples = 2 * 16000;
  auto run = [&](const std::string& f) {
    try {
      return decode_audio(f, req).samples;
    } catch (const AudioError& e) {
      const std::string what = e.what();
      return std::vector<float>(what.begin(), what.end());  // the message, to compare alike
    }
  };
  std::vector<std::vector<float>> want;
  for (const std::string& f : files) want.push_back(run(f));

  const size_t T = 4;
  std::vector<std::vector<std::vector<float>>> got(T, std::vector<std::vector<float>>(files.size()));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < T; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < files.size(); ++i) {
          const size_t k = (i + t) % files.size();  // each thread in its own order
          got[t][k] = run(files[k]);
        }
    });
  for (std::thread& th : threads) th.join();
  for (size_t t = 0; t < T; ++t)
    for (size_t k = 0; k < files.size(); ++k) EXPECT_EQ(got[t][k], want[k]) << files[k] << ", thread " << t;
}

// ---- against libsndfile ------------------------------------------------------------------

// The real music (Ogg Vorbis, 22050 Hz mono) as Debian's python3-soundfile (libsndfile,
// libvorbis) reads it: the same length, and samples within 1e-6 (measured <= 3e-7: two
// Vorbis decoders, float rounding apart).
TEST(AudioInputs, MusicMatchesSoundfile) {
  MG_SKIP_WITHOUT_SHARED_DATA("music");
  MG_REQUIRE_REFERENCE_LIBS(test::python_import_problem("soundfile, numpy", "python3-soundfile python3-numpy"));
  TempDir dir;
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(shared_dir("music"))) {
    if (entry.path().extension() != ".ogg") continue;
    SCOPED_TRACE(entry.path().filename().string());
    const std::string raw = dir.file("ref.f32");
    std::string out;
    const std::string cmd = test::python_exe() +
                            " -c 'import sys, soundfile as sf; d, sr = sf.read(sys.argv[1], dtype=\"float32\"); "
                            "assert d.ndim == 1 and sr == 22050, (d.shape, sr); d.tofile(sys.argv[2])' '" +
                            entry.path().string() + "' '" + raw + "'";
    ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
    const std::string bytes = test::read_bytes(raw);
    std::vector<float> want(bytes.size() / sizeof(float));
    std::memcpy(want.data(), bytes.data(), want.size() * sizeof(float));
    const DecodedAudio d = decode_audio(entry.path().string(), whole(22050));
    ASSERT_EQ(d.samples.size(), want.size());
    const double err = test::max_abs_diff(d.samples, want, 0, want.size());
    std::printf("[measured] %s: %zu samples, max |ours - soundfile| %.3g\n", entry.path().filename().c_str(),
                want.size(), err);
    EXPECT_LE(err, 1e-6);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace mg::audio

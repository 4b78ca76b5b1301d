// The audio decoder on files made here: one signal in every format decodes to the same mono
// samples (within each codec's tolerance), the downmix is a plain mean, resampling keeps a
// sine's frequency and purity from 8 to 192 kHz, and excerpts (Start, Middle, whole) are the
// right slice of the full decode. Ogg Vorbis streams are trimmed as libvorbis trims them
// (vorbis_trim.h): the rules on numbers, and a stream cut without re-encoding. MP3 files decode
// with libmpg123 to python-soundfile's count and samples, and damaged ones say what happened.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numbers>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/audio/audio_source.h"
#include "engine/audio/decode.h"
#include "engine/audio/decode_window.h"
#include "engine/audio/ogg_pages.h"
#include "engine/audio/resampler.h"
#include "engine/audio/vorbis_trim.h"
#include "engine/audio/wav_writer.h"
#include "tests/audio_test_support.h"
#include "tests/test_support.h"

namespace mg::audio {
namespace {

using test::TempDir;

constexpr int kRate = 44100;

DecodeRequest whole(int rate) {
  DecodeRequest r;
  r.sample_rate = rate;
  r.max_samples = -1;
  return r;
}

// ---- one signal, every format ------------------------------------------------------------

struct FormatCase {
  const char* name;
  const char* file;    // the extension is what the file is called, not always what it is
  const char* args;    // ffmpeg encoding arguments
  const char* codec;   // what the decoder must report
  int rate;            // the encoded file's rate
  double max_err;      // lossless: bound on |decoded - mean of channels|
  double min_snr_db;   // lossy: SNR bound after the best alignment
  int64_t max_len_diff;  // |decoded length - source length| in samples
};

// Lossless bounds: a step of the stored format (u8 1/128, s16 1/32768; measured: half of
// that, as rounding gives), float32 rounding for 24/32-bit. A stereo file passing them also
// shows that the downmix is the plain mean (a -3 dB pan law would be off by ~0.15).
// Lossy bounds: SNR >= 20 dB after the best alignment within 3000 samples; measured
// 26-45 dB at lag 0 (what the codecs drop is mostly the white noise, at -34 dB). Lengths are
// exact but for AAC, whose last frame's padding (up to 1024 samples) is kept: measured +820.
const FormatCase kFormats[] = {
    {"wav_u8", "x.wav", "-c:a pcm_u8", "pcm_u8", kRate, 1.0 / 128, 0, 0},
    {"wav_s16", "x.wav", "-c:a pcm_s16le", "pcm_s16le", kRate, 1.0 / 32768, 0, 0},
    {"wav_s24", "x.wav", "-c:a pcm_s24le", "pcm_s24le", kRate, 3e-7, 0, 0},
    {"wav_s32", "x.wav", "-c:a pcm_s32le", "pcm_s32le", kRate, 2e-7, 0, 0},
    {"wav_f32", "x.wav", "-c:a pcm_f32le", "pcm_f32le", kRate, 2e-7, 0, 0},
    {"flac", "x.flac", "-c:a flac -sample_fmt s16", "flac", kRate, 1.0 / 32768, 0, 0},
    {"ogg_flac", "x.oga", "-c:a flac -sample_fmt s16 -f ogg", "flac", kRate, 1.0 / 32768, 0, 0},
    {"alac_m4a", "x.m4a", "-c:a alac -sample_fmt s16p", "alac", kRate, 1.0 / 32768, 0, 0},
    {"flac_named_mp3", "x.mp3", "-c:a flac -sample_fmt s16 -f flac", "flac", kRate, 1.0 / 32768, 0, 0},
    {"ogg_vorbis", "x.ogg", "-c:a libvorbis -q:a 6", "vorbis", kRate, 0, 20, 0},
    {"opus", "x.opus", "-c:a libopus -b:a 128k", "opus", 48000, 0, 20, 0},
    {"mp3", "x.mp3", "-c:a libmp3lame -b:a 192k", "mp3", kRate, 0, 20, 0},
    {"aac_m4a", "x.m4a", "-c:a aac -b:a 192k", "aac", kRate, 0, 20, 1024},
    {"mp3_named_wav", "x.wav", "-c:a libmp3lame -b:a 192k -f mp3", "mp3", kRate, 0, 20, 0},
};

class Formats : public ::testing::TestWithParam<std::tuple<FormatCase, int>> {};

TEST_P(Formats, DecodeToTheSameSignal) {
  MG_SKIP_WITHOUT_FFMPEG();
  const auto& [fc, channels] = GetParam();
  TempDir dir;
  const int64_t frames = 3 * kRate;
  const std::vector<float> x = test::chord_signal(frames, channels, kRate, 1234u + static_cast<unsigned>(channels));
  write_wav(dir.file("master.wav"), x, channels, kRate, WavEncoding::Float32);
  const std::string file = dir.file(std::string(fc.name) + "_" + fc.file);
  ASSERT_EQ(test::ffmpeg_convert(dir.file("master.wav"), file, fc.args), "");

  const DecodedAudio d = decode_audio(file, whole(kRate));
  const std::vector<double> want = test::channel_mean(x, channels);  // [frames]
  EXPECT_EQ(d.codec, fc.codec);
  EXPECT_EQ(d.source_rate, fc.rate);
  EXPECT_EQ(d.source_channels, channels);
  EXPECT_FALSE(d.truncated) << d.warning;
  const int64_t len_diff = static_cast<int64_t>(d.samples.size()) - frames;
  EXPECT_LE(std::abs(len_diff), fc.max_len_diff) << "decoded " << d.samples.size() << " of " << frames;
  if (fc.max_err > 0) {
    ASSERT_EQ(d.samples.size(), want.size());
    const double err = test::max_abs_diff(d.samples, want, 0, want.size());
    std::printf("[measured] %s, %d ch: max |error| %.3g (bound %.3g)\n", fc.name, channels, err, fc.max_err);
    EXPECT_LE(err, fc.max_err);
  } else {
    const test::Alignment a = test::best_alignment(want, d.samples, 3000, kRate / 10, kRate);
    std::printf("[measured] %s, %d ch: SNR %.1f dB at lag %lld, length %+lld\n", fc.name, channels, a.snr_db,
                static_cast<long long>(a.lag), static_cast<long long>(len_diff));
    EXPECT_GE(a.snr_db, fc.min_snr_db);
  }
}

INSTANTIATE_TEST_SUITE_P(AudioDecode, Formats, ::testing::Combine(::testing::ValuesIn(kFormats), ::testing::Values(1, 2)),
                         [](const auto& p) {
                           return std::string(std::get<0>(p.param).name) +
                                  (std::get<1>(p.param) == 1 ? "_mono" : "_stereo");
                         });

// Our 16-bit writer and FFmpeg's reader agree on the scale (x * 32768): a round trip is
// within half a step, and a stereo pair comes back as its mean.
TEST(AudioDecode, Pcm16WavRoundTrip) {
  TempDir dir;
  const std::vector<float> x = test::chord_signal(kRate, 2, kRate, 99u);  // [44100, 2]
  write_wav(dir.file("x.wav"), x, 2, kRate, WavEncoding::Pcm16);
  const DecodedAudio d = decode_audio(dir.file("x.wav"), whole(kRate));
  const std::vector<double> want = test::channel_mean(x, 2);
  ASSERT_EQ(d.samples.size(), want.size());
  EXPECT_EQ(d.codec, "pcm_s16le");
  EXPECT_LE(test::max_abs_diff(d.samples, want, 0, want.size()), 0.5 / 32768 + 1e-7);
}

// Any channel count: 5.1 (and a plain 6-channel WAV without a layout) is the mean of all six.
TEST(AudioDecode, SixChannelsAreAveraged) {
  TempDir dir;
  const std::vector<float> x = test::chord_signal(kRate / 2, 6, kRate, 66u);  // [22050, 6]
  write_wav(dir.file("six.wav"), x, 6, kRate, WavEncoding::Float32);
  const DecodedAudio d = decode_audio(dir.file("six.wav"), whole(kRate));
  const std::vector<double> want = test::channel_mean(x, 6);
  EXPECT_EQ(d.source_channels, 6);
  ASSERT_EQ(d.samples.size(), want.size());
  EXPECT_LE(test::max_abs_diff(d.samples, want, 0, want.size()), 2e-7);
}

// ---- resampling ------------------------------------------------------------------------

const int kInputRates[] = {8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000};

// A 2 s sine (997 Hz, and one at 0.37 x the lower rate, near the top of the passband) written
// as float WAV at each input rate, decoded to 22050 and 16000 Hz. Away from the first and
// last 0.1 s: the fitted frequency is the sine's (within 1e-6 relative; measured < 1e-10),
// the amplitude is kept (within 1e-3 relative, 0.009 dB; measured up to 1.5e-4 near the band
// edge, 1e-9 at 997 Hz), the phase shows no delay (within 1e-4 rad; measured < 1e-11), and
// the residual is >= 100 dB below the sine (measured 128-140 dB with soxr).
class Resampling : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(Resampling, KeepsASinesFrequencyAndPurity) {
  const auto [in_rate, out_rate] = GetParam();
  TempDir dir;
  const int64_t frames = 2 * static_cast<int64_t>(in_rate);
  for (const double f : {997.0, 0.37 * std::min(in_rate, out_rate)}) {
    std::vector<float> x(static_cast<size_t>(frames));  // [frames], mono
    for (int64_t i = 0; i < frames; ++i)
      x[static_cast<size_t>(i)] = static_cast<float>(0.5 * std::sin(2 * std::numbers::pi * f * static_cast<double>(i) / in_rate));
    write_wav(dir.file("sine.wav"), x, 1, in_rate, WavEncoding::Float32);
    const DecodedAudio d = decode_audio(dir.file("sine.wav"), whole(out_rate));
    const auto n = static_cast<int64_t>(d.samples.size());
    EXPECT_NEAR(static_cast<double>(n), static_cast<double>(frames) * out_rate / in_rate, 1.0);
    const int64_t edge = out_rate / 10;
    const test::SineFit best = test::fit_sine(d.samples, out_rate, f, edge, n - edge);
    const test::SineFit at_f = test::fit_sine_at(d.samples, out_rate, f, edge, n - edge);
    std::printf("[measured] %6d -> %5d Hz, %7.1f Hz: frequency %+.2e, amplitude %+.2e, phase %+.2e rad, SNR %.1f dB\n",
                in_rate, out_rate, f, best.freq / f - 1, at_f.amplitude / 0.5 - 1, at_f.phase, at_f.snr_db);
    EXPECT_NEAR(best.freq, f, 1e-6 * f);
    EXPECT_NEAR(at_f.amplitude, 0.5, 0.5e-3);
    EXPECT_NEAR(at_f.phase, 0.0, 1e-4);
    EXPECT_GE(at_f.snr_db, 100.0);
  }
}

INSTANTIATE_TEST_SUITE_P(AudioDecode, Resampling,
                         ::testing::Combine(::testing::ValuesIn(kInputRates), ::testing::Values(22050, 16000)),
                         [](const auto& p) {
                           return std::to_string(std::get<0>(p.param)) + "_to_" + std::to_string(std::get<1>(p.param));
                         });

// Where FFmpeg has no soxr, swr's own resampler (128-tap filter) takes over: the same sine
// test through that engine, with its own bound (measured: see the [measured] line).
TEST(AudioDecode, SwrFallbackResamplerIsClean) {
  TempDir dir;
  const int in_rate = 48000, out_rate = 22050;
  const double f = 997.0;
  std::vector<float> x(2 * static_cast<size_t>(in_rate));  // [96000], mono
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(0.5 * std::sin(2 * std::numbers::pi * f * static_cast<double>(i) / in_rate));
  write_wav(dir.file("sine.wav"), x, 1, in_rate, WavEncoding::Float32);
  AudioSource src(dir.file("sine.wav"));
  Resampler rs(out_rate, ResampleEngine::Swr);
  std::vector<float> y;
  decode_window(src, rs, {0, -1}, Position::Counted, false, y);
  EXPECT_EQ(rs.engine(), ResampleEngine::Swr);
  const auto n = static_cast<int64_t>(y.size());
  EXPECT_NEAR(static_cast<double>(n), 2.0 * out_rate, 1.0);
  const test::SineFit fit = test::fit_sine_at(y, out_rate, f, out_rate / 10, n - out_rate / 10);
  std::printf("[measured] swr engine 48000 -> 22050 Hz, 997 Hz: amplitude %+.2e, phase %+.2e rad, SNR %.1f dB\n",
              fit.amplitude / 0.5 - 1, fit.phase, fit.snr_db);
  EXPECT_NEAR(fit.amplitude, 0.5, 0.5e-3);
  EXPECT_NEAR(fit.phase, 0.0, 1e-3);
  EXPECT_GE(fit.snr_db, 100.0);
}

// ---- excerpts ----------------------------------------------------------------------------

struct ExcerptCase {
  const char* name;
  const char* file;
  const char* args;  // ffmpeg arguments; nullptr: our float WAV itself
};

// The Middle window is centred on the duration the container declares, which can exceed the
// decoded length by codec padding (Opus pre-skip, AAC's last frame): the window may sit up to
// 20 ms from the decoded centre (measured: 0 for WAV, FLAC, Vorbis and MP3, whose length is
// its Info header's or, without one, its frames counted; 3 ms Opus, 8 ms AAC). Its samples
// are those of the full decode at its offset to float rounding (bound 1e-6; measured <= 6e-8):
// the seek lands exactly.
// FFmpeg's AAC encoder is told not to use noise substitution here, because the decoder fills
// those bands with fresh random noise, which differs between two decodes of the same frames.
const ExcerptCase kExcerpts[] = {
    {"wav", "x.wav", nullptr},
    {"flac", "x.flac", "-c:a flac -sample_fmt s16"},
    {"ogg_vorbis", "x.ogg", "-c:a libvorbis -q:a 6"},
    {"opus", "x.opus", "-c:a libopus -b:a 128k"},
    {"mp3", "x.mp3", "-c:a libmp3lame -b:a 192k"},
    {"mp3_mpeg2", "x.mp3", "-c:a libmp3lame -ar 22050 -b:a 64k"},
    {"mp3_no_info_header", "x.mp3", "-c:a libmp3lame -b:a 192k -write_xing 0"},
    {"aac_m4a", "x.m4a", "-c:a aac -aac_pns 0 -b:a 192k"},
};

class Excerpts : public ::testing::TestWithParam<ExcerptCase> {};

TEST_P(Excerpts, AreSlicesOfTheFullDecode) {
  const ExcerptCase& ec = GetParam();
  if (ec.args) {
    MG_SKIP_WITHOUT_FFMPEG();
  }
  TempDir dir;
  const int out_rate = 22050;
  const std::vector<float> x = test::chord_signal(20 * kRate, 2, kRate, 7u);  // [20 s, 2]
  write_wav(dir.file("master.wav"), x, 2, kRate, WavEncoding::Float32);
  const std::string file = ec.args ? dir.file(ec.file) : dir.file("master.wav");
  if (ec.args) {
    ASSERT_EQ(test::ffmpeg_convert(dir.file("master.wav"), file, ec.args), "");
  }

  const DecodedAudio full = decode_audio(file, whole(out_rate));
  const auto n = static_cast<int64_t>(full.samples.size());
  const int64_t max = 5 * out_rate;
  ASSERT_GT(n, 3 * max);

  DecodeRequest start = whole(out_rate);
  start.max_samples = max;
  const DecodedAudio s = decode_audio(file, start);
  ASSERT_EQ(static_cast<int64_t>(s.samples.size()), max);
  EXPECT_EQ(s.offset_seconds, 0.0);
  EXPECT_EQ(test::max_abs_diff(s.samples, full.samples, 0, static_cast<size_t>(max)), 0.0);

  DecodeRequest middle = start;
  middle.excerpt = Excerpt::Middle;
  const DecodedAudio m = decode_audio(file, middle);
  ASSERT_EQ(static_cast<int64_t>(m.samples.size()), max);
  const int64_t offset = std::llround(m.offset_seconds * out_rate);
  const int64_t declared = std::llround(m.source_seconds * out_rate);
  const int64_t centre = (n - max) / 2;
  EXPECT_EQ(offset, (declared - max) / 2);
  double err = 1e30;
  if (offset >= 0 && offset + max <= n)
    err = test::max_abs_diff(m.samples, std::vector<float>(full.samples.begin() + offset, full.samples.end()), 0,
                             static_cast<size_t>(max));
  std::printf("[measured] %s: Middle offset %lld, decoded centre %lld; max |window - full decode| %.3g\n", ec.name,
              static_cast<long long>(offset), static_cast<long long>(centre), err);
  EXPECT_LE(std::abs(offset - centre), out_rate / 50);
  EXPECT_LE(err, 1e-6);
  EXPECT_FALSE(m.truncated) << m.warning;

  // A window longer than the track gives the whole track, from its start.
  middle.max_samples = n + 1000;
  const DecodedAudio all = decode_audio(file, middle);
  EXPECT_EQ(all.offset_seconds, 0.0);
  EXPECT_EQ(all.samples, full.samples);
  // No limit: the whole track, whichever excerpt is asked for.
  middle.max_samples = -1;
  EXPECT_EQ(decode_audio(file, middle).samples, full.samples);
}

INSTANTIATE_TEST_SUITE_P(AudioDecode, Excerpts, ::testing::ValuesIn(kExcerpts),
                         [](const auto& p) { return std::string(p.param.name); });

// ---- MP3 through libmpg123 (mp3_source.h) ------------------------------------------------

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// `seconds` of our stereo chord at 44.1 kHz, encoded by ffmpeg with `args` into dir/name.
std::string make_mp3(const TempDir& dir, const std::string& name, const std::string& args, double seconds = 4) {
  const std::vector<float> x = test::chord_signal(static_cast<int64_t>(seconds * kRate), 2, kRate, 31u);
  write_wav(dir.file("master.wav"), x, 2, kRate, WavEncoding::Float32);
  EXPECT_EQ(test::ffmpeg_convert(dir.file("master.wav"), dir.file(name), args), "");
  return dir.file(name);
}

// python-soundfile's decode of `path` (libsndfile, which decodes MP3 with libmpg123), as the
// mean of its channels; empty (and a test failure) if it cannot read it.
std::vector<float> soundfile_mono(const TempDir& dir, const std::string& path) {
  const std::string raw = dir.file("soundfile.f32");
  const std::string cmd = test::python_exe() +
                          " -c 'import sys, soundfile as sf; x, _ = sf.read(sys.argv[1], always_2d=True); "
                          "x.mean(axis=1).astype(\"<f4\").tofile(sys.argv[2])' '" + path + "' '" + raw + "'";
  std::string out;
  EXPECT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
  const std::string bytes = test::read_bytes(raw);
  std::vector<float> x(bytes.size() / sizeof(float));
  std::memcpy(x.data(), bytes.data(), x.size() * sizeof(float));
  return x;
}

struct Mp3Case {
  const char* name;
  const char* args;  // ffmpeg arguments
  int rate;          // the MP3's rate
};

// MPEG-1, MPEG-2 and MPEG-2.5 (the rates say which), mono and stereo, with the Info header
// ffmpeg writes by default (encoder delay and padding: a gapless decode is the master's length)
// and without one (-write_xing 0: every frame's samples).
const Mp3Case kMp3Cases[] = {
    {"mpeg1", "-c:a libmp3lame -b:a 128k", 44100},
    {"mpeg1_no_info_header", "-c:a libmp3lame -b:a 128k -write_xing 0", 44100},
    {"mpeg2", "-c:a libmp3lame -ar 22050 -b:a 64k", 22050},
    {"mpeg2_no_info_header", "-c:a libmp3lame -ar 22050 -b:a 64k -write_xing 0", 22050},
    {"mpeg2_5_mono", "-c:a libmp3lame -ar 11025 -ac 1 -b:a 32k", 11025},
    {"mpeg2_mono_vbr", "-c:a libmp3lame -ar 24000 -ac 1 -q:a 4", 24000},
};

class Mp3 : public ::testing::TestWithParam<Mp3Case> {};

// The whole decode at the MP3's own rate is soundfile's: the same count, samples within the
// reference test's 1e-4 (measured: identical, the same decoder).
TEST_P(Mp3, DecodesToSoundfilesCountAndSamples) {
  MG_SKIP_WITHOUT_FFMPEG();
  MG_REQUIRE_REFERENCE_LIBS(test::python_import_problem("soundfile, numpy", "python3-soundfile python3-numpy"));
  const Mp3Case& mc = GetParam();
  TempDir dir;
  const std::string file = make_mp3(dir, "x.mp3", mc.args);
  const std::vector<float> want = soundfile_mono(dir, file);
  const DecodedAudio d = decode_audio(file, whole(mc.rate));
  EXPECT_EQ(d.codec, "mp3");
  EXPECT_EQ(d.source_rate, mc.rate);
  EXPECT_FALSE(d.truncated) << d.warning;
  ASSERT_EQ(d.samples.size(), want.size());
  const double err = test::max_abs_diff(d.samples, want, 0, want.size());
  std::printf("[measured] %s: %zu samples, soundfile's count; max |ours - soundfile| %.3g\n", mc.name, want.size(), err);
  EXPECT_LE(err, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(AudioDecode, Mp3, ::testing::ValuesIn(kMp3Cases),
                         [](const auto& p) { return std::string(p.param.name); });

// libsndfile reads no more than libmpg123's length on opening, which without an Info header is
// a guess from the file size and the first frame's bitrate: a VBR file that starts loud can be
// guessed far short (measured: 2.0 s of 6 s). melgraph decodes every frame, as FFmpeg does; the
// samples soundfile does give are the same. melgraph counts the frames instead of guessing, so
// the Middle window is centred on the whole track.
TEST(AudioDecode, VbrMp3WithoutInfoHeaderDecodesEveryFrame) {
  MG_SKIP_WITHOUT_FFMPEG();
  MG_REQUIRE_REFERENCE_LIBS(test::python_import_problem("soundfile, numpy", "python3-soundfile python3-numpy"));
  TempDir dir;
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> noise(-0.3f, 0.3f);
  std::vector<float> x = test::chord_signal(6 * kRate, 1, kRate, 9u);  // [6 s], mono
  for (size_t i = 0; i < x.size(); ++i) x[i] = i < kRate ? noise(rng) : 0.05f * x[i];
  write_wav(dir.file("master.wav"), x, 1, kRate, WavEncoding::Float32);
  const std::string file = dir.file("vbr.mp3");
  ASSERT_EQ(test::ffmpeg_convert(dir.file("master.wav"), file, "-c:a libmp3lame -q:a 2 -write_xing 0"), "");
  ASSERT_EQ(test::ffmpeg_convert(file, dir.file("by_ffmpeg.wav"), "-c:a pcm_f32le"), "");

  const DecodedAudio d = decode_audio(file, whole(kRate));
  const DecodedAudio by_ffmpeg = decode_audio(dir.file("by_ffmpeg.wav"), whole(kRate));
  const std::vector<float> sf = soundfile_mono(dir, file);
  std::printf("[measured] VBR MP3 without an Info header: %zu samples, FFmpeg %zu, soundfile %zu\n", d.samples.size(),
              by_ffmpeg.samples.size(), sf.size());
  EXPECT_EQ(d.samples.size(), by_ffmpeg.samples.size());
  EXPECT_FALSE(d.truncated) << d.warning;
  ASSERT_LE(sf.size(), d.samples.size());
  EXPECT_LE(test::max_abs_diff(d.samples, sf, 0, sf.size()), 1e-4);

  DecodeRequest middle = whole(kRate);
  middle.excerpt = Excerpt::Middle;
  middle.max_samples = 2 * kRate;
  const DecodedAudio m = decode_audio(file, middle);
  const int64_t offset = std::llround(m.offset_seconds * kRate);
  EXPECT_EQ(offset, (static_cast<int64_t>(d.samples.size()) - middle.max_samples) / 2);
  ASSERT_EQ(static_cast<int64_t>(m.samples.size()), middle.max_samples);
  ASSERT_LE(offset + middle.max_samples, static_cast<int64_t>(d.samples.size()));
  EXPECT_LE(test::max_abs_diff(m.samples, std::vector<float>(d.samples.begin() + offset, d.samples.end()), 0,
                               m.samples.size()),
            1e-6);
}

// A cut MP3 keeps what decoded, the same samples as the whole file's, and says it is truncated:
// by the frame the file ends inside, and with an Info header also by the length it declares.
TEST(AudioDecode, TruncatedMp3SaysSo) {
  MG_SKIP_WITHOUT_FFMPEG();
  for (const bool info_header : {true, false}) {
    SCOPED_TRACE(info_header ? "with an Info header" : "without an Info header");
    TempDir dir;
    const std::string full_file =
        make_mp3(dir, "full.mp3", std::string("-c:a libmp3lame -b:a 128k") + (info_header ? "" : " -write_xing 0"), 3);
    const std::string b = test::read_bytes(full_file);
    write_bytes(dir.file("cut.mp3"), b.substr(0, b.size() * 6 / 10));
    const DecodedAudio full = decode_audio(full_file, whole(22050));
    const DecodedAudio cut = decode_audio(dir.file("cut.mp3"), whole(22050));
    EXPECT_FALSE(full.truncated) << full.warning;
    EXPECT_TRUE(cut.truncated);
    EXPECT_NE(cut.warning.find("truncated: 1 packet is incomplete (the file is cut short)"), std::string::npos)
        << cut.warning;
    EXPECT_EQ(cut.warning.find("of 3.0 s declared") != std::string::npos, info_header) << cut.warning;
    const double fraction = static_cast<double>(cut.samples.size()) / static_cast<double>(full.samples.size());
    EXPECT_NEAR(fraction, 0.6, 0.05);
    ASSERT_GT(cut.samples.size(), 4096u);
    EXPECT_EQ(test::max_abs_diff(cut.samples, full.samples, 0, cut.samples.size() - 4096), 0.0);
  }
}

// Bytes that are no MPEG frame in the middle of the stream are skipped (libmpg123 resyncs) and
// reported as damage; tags at the end (ID3v1, APEv2) are not damage; a second file glued on is
// not decoded past the first one's declared length (as libsndfile does) but reported. libmpg123
// prints nothing.
TEST(AudioDecode, DamagedMp3IsDecodedAroundTheDamage) {
  MG_SKIP_WITHOUT_FFMPEG();
  TempDir dir;
  const std::string file = make_mp3(dir, "x.mp3", "-c:a libmp3lame -b:a 128k -write_id3v1 1 -metadata title=Song", 3);
  std::string b = test::read_bytes(file);
  std::mt19937 rng(12);
  for (size_t i = b.size() / 2; i < b.size() / 2 + 600; ++i) b[i] = static_cast<char>(rng() & 0xff);
  write_bytes(dir.file("damaged.mp3"), b);
  // An APEv2 tag, as MP3Gain appends: one item, then the 32-byte footer.
  const std::string item = std::string("\x03\0\0\0\0\0\0\0", 8) + "Title" + std::string(1, '\0') + "abc";
  std::string footer = "APETAGEX" + std::string(24, '\0');
  footer[8] = static_cast<char>(0xd0), footer[9] = 0x07;  // version 2000
  footer[12] = static_cast<char>(item.size() + 32), footer[16] = 1;  // tag size, item count
  write_bytes(dir.file("ape.mp3"), test::read_bytes(file) + item + footer);
  write_bytes(dir.file("glued.mp3"), test::read_bytes(file) + test::read_bytes(file));

  ::testing::internal::CaptureStderr();
  const DecodedAudio good = decode_audio(file, whole(22050));
  const DecodedAudio damaged = decode_audio(dir.file("damaged.mp3"), whole(22050));
  const DecodedAudio ape = decode_audio(dir.file("ape.mp3"), whole(22050));
  const DecodedAudio glued = decode_audio(dir.file("glued.mp3"), whole(22050));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "libmpg123 must not print";
  EXPECT_FALSE(good.truncated) << good.warning;
  EXPECT_FALSE(ape.truncated) << ape.warning;
  EXPECT_EQ(ape.samples, good.samples);
  EXPECT_EQ(glued.samples, good.samples);
  EXPECT_NE(glued.warning.find("hold more MPEG audio"), std::string::npos) << glued.warning;
  EXPECT_TRUE(damaged.truncated);
  EXPECT_EQ(damaged.warning.rfind("1 damaged packet (first: ", 0), 0u) << damaged.warning;
  EXPECT_NE(damaged.warning.find("libmpg123 skipped them"), std::string::npos) << damaged.warning;
  std::printf("[measured] damaged MP3: %zu of %zu samples; %s\n", damaged.samples.size(), good.samples.size(),
              damaged.warning.c_str());
  EXPECT_GE(damaged.samples.size(), good.samples.size() * 9 / 10);
  EXPECT_LT(damaged.samples.size(), good.samples.size());
}

// Each source has its own libmpg123 handle and nothing global is set up: threads decoding MP3
// files at once (whole, and Middle excerpts, which seek) get the sequential results.
TEST(AudioDecode, Mp3DecodesInParallelThreads) {
  MG_SKIP_WITHOUT_FFMPEG();
  TempDir dir;
  const std::vector<std::string> files = {make_mp3(dir, "a.mp3", "-c:a libmp3lame -b:a 128k", 8),
                                          make_mp3(dir, "b.mp3", "-c:a libmp3lame -ar 22050 -b:a 64k", 8)};
  DecodeRequest middle = whole(16000);
  middle.excerpt = Excerpt::Middle;
  middle.max_samples = 2 * 16000;
  std::vector<std::vector<float>> want;
  for (const std::string& f : files)
    for (const DecodeRequest& r : {whole(16000), middle}) want.push_back(decode_audio(f, r).samples);

  std::vector<std::vector<std::vector<float>>> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (const std::string& f : files)
          for (const DecodeRequest& r : {whole(16000), middle}) got[t].push_back(decode_audio(f, r).samples);
    });
  for (std::thread& th : threads) th.join();
  for (size_t t = 0; t < got.size(); ++t)
    for (size_t k = 0; k < got[t].size(); ++k) EXPECT_EQ(got[t][k], want[k % want.size()]) << "thread " << t << ", decode " << k;
}

// ---- Ogg Vorbis trimming (vorbis_trim.h) -------------------------------------------------

// A first page of 44 long-block packets: 43 x 1024 = 44032 decoded samples (D), the last
// packet's 1024 held by libvorbis at the granule (L).
std::vector<int64_t> long_blocks(int packets) { return std::vector<int64_t>(static_cast<size_t>(packets - 1), 1024); }

// Numbers of the realset excerpts (realset/audio/<name>.ogg) that libsndfile reads as given.
TEST(VorbisTrim, SurplusAtMostOnePacketIsDroppedWhereLibvorbisDropsIt) {
  // 128 samples more than the granule (issue 15's track): the first 128 of the page's last
  // packet go; the stream is the last granule long.
  const VorbisTrim t(44032 - 128, long_blocks(44), false, 100000);
  EXPECT_EQ(t.length(), 100000);
  const FrameCut before = t.cut(41984, 1024), at = t.cut(43008, 1024), after = t.cut(44032, 1024);
  EXPECT_EQ(before.erase_count, 0);
  EXPECT_EQ(before.keep, 1024);
  EXPECT_EQ(at.erase_from, 0);
  EXPECT_EQ(at.erase_count, 128);
  EXPECT_EQ(at.keep, 896);
  EXPECT_EQ(at.output_position, 43008);
  EXPECT_EQ(after.output_position, 44032 - 128);
}

TEST(VorbisTrim, LargerSurplusKeepsItsRestAndTheLengthIsTheLastGranule) {
  // Constructive_0: granule 39352, surplus 4680: libvorbis drops 1024 (the packet it holds),
  // libsndfile reads 441784 samples, the last granule, so the last 3656 decoded go.
  const VorbisTrim t(39352, long_blocks(44), false, 441784);
  EXPECT_EQ(t.length(), 441784);
  EXPECT_EQ(t.cut(43008, 1024).keep, 0);
  // FFmpeg decodes 441784 + 4680 = 446464; decoded positions from 441784 + 1024 on go.
  const FrameCut last = t.cut(442368, 1024);
  EXPECT_EQ(last.keep, 440);
  EXPECT_EQ(last.output_position + last.keep, 441784);
  EXPECT_EQ(t.cut(442808, 1024).keep, 0);
}

TEST(VorbisTrim, NegativeFirstGranuleAndLateStart) {
  // music010_2: granule -3973 (FFmpeg's stream copy wrote it). libsndfile reads granules as
  // unsigned, so its count is the whole decode; libvorbis drops its 1024.
  EXPECT_EQ(VorbisTrim(-3973, long_blocks(44), false, 441467).length(), 441467 + 3973 + 44032 - 1024);
  // Intro2_1: the first page holds fewer samples than its granule (the stream starts at 199).
  const VorbisTrim late(44103, long_blocks(44) /* 44032 */, false, 441415);
  EXPECT_EQ(late.length(), 441415 - (44103 - 44032));
  EXPECT_EQ(late.cut(43008, 1024).keep, 1024);
}

TEST(VorbisTrim, SinglePageStreamIsCutAtTheEnd) {
  // One audio page that also ends the stream: 13 x 1024 decoded, granule 13230.
  const VorbisTrim t(13230, long_blocks(14), true, 13230);
  EXPECT_EQ(t.length(), 13230);
  const FrameCut c = t.cut(12288, 1024);
  EXPECT_EQ(c.erase_count, 0);
  EXPECT_EQ(c.keep, 13230 - 12288);
  // Without the last page (an unreadable tail) the end is not known.
  EXPECT_FALSE(VorbisTrim(39352, long_blocks(44), false, std::nullopt).length());
}

// A Vorbis stream cut out of a longer one without re-encoding (as realset's excerpts were):
// its first page holds more samples than its granule. FFmpeg alone keeps them all; melgraph
// gives what libsndfile gives, the last granule's count, and its Start and Middle excerpts are
// slices of the whole decode (the Middle one reached by counting packets, not by FFmpeg's
// timestamps, which are off at block-size changes).
TEST(AudioDecode, CutOggVorbisIsTrimmedAndItsExcerptsAreSlices) {
  MG_SKIP_WITHOUT_FFMPEG();
  TempDir dir;
  const std::vector<float> x = test::chord_signal(20 * kRate, 2, kRate, 21u);  // [20 s, 2]
  write_wav(dir.file("master.wav"), x, 2, kRate, WavEncoding::Float32);
  ASSERT_EQ(test::ffmpeg_convert(dir.file("master.wav"), dir.file("long.ogg"), "-c:a libvorbis -q:a 6"), "");
  // -ss before -i, as tools/make_realset.py cuts: the cut starts at the page before 3.3 s.
  const std::string cut = dir.file("cut.ogg");
  std::string log;
  const std::string cmd = test::ffmpeg_exe() + " -nostdin -loglevel error -y -ss 3.3 -t 12 -i '" +
                          dir.file("long.ogg") + "' -c copy '" + cut + "'";
  ASSERT_EQ(test::run_command(cmd, &log), 0) << cmd << ": " << log;
  ASSERT_EQ(test::ffmpeg_convert(cut, dir.file("ffmpeg.wav"), "-c:a pcm_f32le"), "");

  const OggTail tail = read_ogg_tail(cut);
  ASSERT_FALSE(tail.pages.empty());
  const DecodedAudio whole_src = decode_audio(cut, whole(kRate));
  const DecodedAudio by_ffmpeg = decode_audio(dir.file("ffmpeg.wav"), whole(kRate));
  const auto n = static_cast<int64_t>(whole_src.samples.size());
  std::printf("[measured] cut Vorbis: %lld samples, FFmpeg alone %zu, last granule %lld\n", static_cast<long long>(n),
              by_ffmpeg.samples.size(), static_cast<long long>(tail.pages.back().granule));
  EXPECT_EQ(n, tail.pages.back().granule);
  EXPECT_LT(n, static_cast<int64_t>(by_ffmpeg.samples.size()));
  EXPECT_EQ(std::llround(whole_src.source_seconds * kRate), n);

  for (const int rate : {kRate, 22050}) {
    SCOPED_TRACE(rate);
    const DecodedAudio full = decode_audio(cut, whole(rate));
    DecodeRequest req = whole(rate);
    req.max_samples = 4 * rate;
    const DecodedAudio s = decode_audio(cut, req);
    ASSERT_EQ(static_cast<int64_t>(s.samples.size()), req.max_samples);
    EXPECT_EQ(test::max_abs_diff(s.samples, full.samples, 0, s.samples.size()), 0.0);
    req.excerpt = Excerpt::Middle;
    const DecodedAudio m = decode_audio(cut, req);
    ASSERT_EQ(static_cast<int64_t>(m.samples.size()), req.max_samples);
    const int64_t offset = std::llround(m.offset_seconds * rate);
    EXPECT_EQ(offset, (static_cast<int64_t>(full.samples.size()) - req.max_samples) / 2);
    ASSERT_LE(offset + req.max_samples, static_cast<int64_t>(full.samples.size()));
    const double err = test::max_abs_diff(
        m.samples, std::vector<float>(full.samples.begin() + offset, full.samples.end()), 0, m.samples.size());
    std::printf("[measured] cut Vorbis at %d Hz: Middle offset %lld, max |window - full decode| %.3g\n", rate,
                static_cast<long long>(offset), err);
    EXPECT_LE(err, 1e-6);
  }
}

}  // namespace
}  // namespace mg::audio

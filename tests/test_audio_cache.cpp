// The audio cache and `prepare`: round trip against the decoder, incremental reruns, changed
// and bad files, an interrupted run (the melgraph binary killed by its test hook), settings
// mismatches, clip padding, checksums, compaction and the float16 conversion.
//
// Inputs are WAV files written here (engine/audio/wav_writer.h) at the model rate, so each
// decode is quick; what the cache holds is compared with decode_audio's output for the same
// file, within the storage format's quantisation:
//   int16:   |cache - decoded| <= 0.5 / 32768 (round to nearest of x * 32768)
//   float16: |cache - decoded| <= 2^-11 |decoded| (round to nearest, 11-bit significand),
//            + 2^-25 for the subnormal range.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/audio/cache_schema.h"
#include "engine/audio/cache_writer.h"
#include "engine/audio/decode.h"
#include "engine/audio/half.h"
#include "engine/audio/prepare.h"
#include "engine/sqlite/sqlite_db.h"
#include "engine/audio/wav_writer.h"
#include "graph/catalog.h"
#include "tests/test_support.h"

namespace mg::audio {
namespace {

namespace fs = std::filesystem;

constexpr int kRate = 8000;

AudioConfig test_audio(CacheDtype dtype = CacheDtype::Int16) {
  AudioConfig a;
  a.sample_rate = kRate;
  a.clip_seconds = 0.5;
  a.excerpt = Excerpt::Start;
  a.excerpt_seconds = 2.0;  // 16000 samples: longer files are cut there
  a.short_clip = ShortClip::Repeat;
  a.cache_dtype = dtype;
  return a;
}

// A folder of WAV files and a catalog listing them (paths relative to the catalog).
struct Collection {
  test::TempDir dir;
  std::vector<std::string> ids;

  // seconds: the file's length; stereo files check the downmix path too.
  void add_wav(const std::string& id, double seconds, unsigned seed, int channels = 1) {
    const auto frames = static_cast<int64_t>(seconds * kRate);
    const std::vector<float> x = test::random_audio(channels, frames, seed, kRate);  // [channels, frames]
    std::vector<float> inter(x.size());  // [frames, channels]
    for (int64_t f = 0; f < frames; ++f)
      for (int c = 0; c < channels; ++c)
        inter[static_cast<size_t>(f * channels + c)] = 0.45f * x[static_cast<size_t>(c * frames + f)];
    write_wav(path(id), inter, channels, kRate, WavEncoding::Float32);
    ids.push_back(id);
  }
  void add_text(const std::string& id) {
    std::ofstream(path(id)) << "this is not audio, just a text file\n";
    ids.push_back(id);
  }
  void add_missing(const std::string& id) { ids.push_back(id); }
  std::string path(const std::string& id) const { return dir.file(id + (id.rfind("txt", 0) == 0 ? ".txt" : ".wav")); }
  std::string cache() const { return dir.file("cache"); }

  std::vector<PrepareItem> items() const {
    std::ofstream f(dir.file("catalog.csv"));
    f << "id,path,title\n";
    for (const std::string& id : ids) f << id << "," << fs::path(path(id)).filename().string() << ",t-" << id << "\n";
    f.close();
    const graph::Catalog cat = graph::load_catalog(dir.file("catalog.csv"));
    std::vector<PrepareItem> out;
    for (const auto& it : cat.items) out.push_back({it.id, it.path});
    return out;
  }
  PrepareSummary prepare(const AudioConfig& a, PrepareOptions o = {}) const {
    if (o.threads == 0) o.threads = 2;
    return prepare_cache(items(), a, cache(), o);
  }
};

double quantum_bound(CacheDtype dtype, float x) {
  return dtype == CacheDtype::Int16 ? 0.5 / 32768.0 + 1e-9 : std::ldexp(std::abs(x), -11) + std::ldexp(1.0, -25);
}

// Every item of `cache` equals the decoder's output for its file, and its checksum holds.
void expect_matches_decoder(const AudioCache& cache, const AudioConfig& a) {
  for (int64_t i = 0; i < cache.size(); ++i) {
    const CacheEntry& e = cache.entry(i);
    SCOPED_TRACE("item " + e.id);
    const DecodedAudio d = decode_audio(e.path, decode_request(a));
    ASSERT_EQ(e.length, static_cast<int64_t>(d.samples.size()));
    std::vector<float> got(static_cast<size_t>(e.length), std::nanf(""));
    cache.read_clip(i, 0, e.length, ShortClip::Zero, got.data());
    double worst = 0;
    for (size_t k = 0; k < got.size(); ++k) {
      const double err = std::abs(static_cast<double>(got[k]) - d.samples[k]);
      ASSERT_LE(err, quantum_bound(a.cache_dtype, d.samples[k])) << "sample " << k;
      worst = std::max(worst, err);
    }
    EXPECT_GT(worst, 0.0) << "float32 noise cannot be stored exactly in 16 bits: is the cache storing float?";
    EXPECT_TRUE(cache.verify(i));
    EXPECT_EQ(e.source_size, static_cast<int64_t>(fs::file_size(e.path)));
    EXPECT_FALSE(e.codec.empty());
  }
}

class CacheRoundTrip : public ::testing::TestWithParam<CacheDtype> {};

TEST_P(CacheRoundTrip, CacheHoldsTheDecodedSamples) {
  const AudioConfig a = test_audio(GetParam());
  Collection c;
  c.add_wav("a", 1.5, 1);
  c.add_wav("b", 0.3, 2, 2);   // stereo, shorter than a clip
  c.add_wav("c", 3.0, 3);      // longer than the 2 s excerpt
  c.add_wav("d", 1.0, 4);
  const PrepareSummary s = c.prepare(a);
  EXPECT_EQ(s.decoded, 4);
  EXPECT_EQ(s.failed_total(), 0);
  EXPECT_EQ(s.usable, 4);
  EXPECT_NEAR(s.decoded_seconds, 1.5 + 0.3 + 2.0 + 1.0, 1e-3);

  const AudioCache cache = AudioCache::open(c.cache());
  ASSERT_EQ(cache.size(), 4);
  EXPECT_EQ(cache.settings().dtype, GetParam());
  EXPECT_EQ(cache.settings().sample_rate, kRate);
  EXPECT_EQ(cache.entry(cache.find("c")).length, 2 * kRate) << "cut at excerpt_seconds";
  EXPECT_EQ(cache.entry(cache.find("b")).length, static_cast<int64_t>(0.3 * kRate));
  EXPECT_EQ(cache.find("nope"), -1);
  EXPECT_EQ(cache.pcm_bytes(), cache.total_samples() * 2);
  expect_matches_decoder(cache, a);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CacheRoundTrip, ::testing::Values(CacheDtype::Int16, CacheDtype::Float16),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });

TEST(AudioCache, RerunDecodesNothingAndChangedFileOnlyIt) {
  const AudioConfig a = test_audio();
  Collection c;
  for (int i = 0; i < 4; ++i) c.add_wav(std::string("w") + std::to_string(i), 1.0, 10u + static_cast<unsigned>(i));
  ASSERT_EQ(c.prepare(a).decoded, 4);
  const int64_t bytes = static_cast<int64_t>(fs::file_size(fs::path(c.cache()) / "pcm.bin"));

  const PrepareSummary again = c.prepare(a);
  EXPECT_EQ(again.decoded, 0);
  EXPECT_EQ(again.unchanged, 4);
  EXPECT_EQ(again.usable, 4);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(fs::path(c.cache()) / "pcm.bin")), bytes);

  // Rewrite w2 with other content and length; move its mtime on so even a coarse clock sees it.
  const std::string w2 = c.path("w2");
  c.ids.pop_back();
  c.ids.pop_back();
  c.add_wav("w2", 1.25, 99);
  c.ids.push_back("w3");
  fs::last_write_time(w2, fs::last_write_time(w2) + std::chrono::seconds(2));
  const PrepareSummary changed = c.prepare(a);
  EXPECT_EQ(changed.decoded, 1);
  EXPECT_EQ(changed.unchanged, 3);
  EXPECT_EQ(changed.dead_bytes, kRate * 2) << "w2's old 1 s of int16 stays as dead space";
  EXPECT_EQ(changed.compacted_bytes, 0) << "below half: no automatic compaction";
  {
    const AudioCache cache = AudioCache::open(c.cache());
    ASSERT_EQ(cache.size(), 4);
    EXPECT_EQ(cache.entry(cache.find("w2")).length, static_cast<int64_t>(1.25 * kRate));
    expect_matches_decoder(cache, a);
  }

  // --compact: pcm.bin holds the live items only, and they still read back.
  PrepareOptions o;
  o.compact = true;
  const PrepareSummary compacted = c.prepare(a, o);
  EXPECT_EQ(compacted.decoded, 0);
  EXPECT_EQ(compacted.compacted_bytes, kRate * 2);
  EXPECT_EQ(compacted.dead_bytes, 0);
  EXPECT_FALSE(fs::exists(fs::path(c.cache()) / "pcm.bin.compact"));
  const AudioCache cache = AudioCache::open(c.cache());
  EXPECT_EQ(cache.pcm_bytes(), cache.total_samples() * 2);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(fs::path(c.cache()) / "pcm.bin")), cache.pcm_bytes());
  expect_matches_decoder(cache, a);
}

// A cache written before decoder revision 2 (schema version 1, no decoder column) is read as it
// is, and the next prepare migrates it and re-decodes exactly the items whose codec the newer
// decoder decodes differently (here a row marked as Ogg Vorbis), no others.
TEST(AudioCache, OlderDecoderRowsOfChangedCodecsAreDecodedAgain) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("w0", 1.0, 21);
  c.add_wav("w1", 1.0, 22);
  ASSERT_EQ(c.prepare(a).decoded, 2);
  const std::string index = (fs::path(c.cache()) / schema::kIndexFile).string();
  {  // as a version-1 cache that had decoded w0 as Vorbis would be
    SqliteDb db(index, SQLITE_OPEN_READWRITE);
    db.exec("ALTER TABLE items DROP COLUMN decoder; UPDATE items SET codec = 'vorbis' WHERE id = 'w0';"
            "UPDATE meta SET value = '1' WHERE key = 'format_version'; PRAGMA user_version = 1;");
  }
  {
    const AudioCache old = AudioCache::open(c.cache());
    ASSERT_EQ(old.size(), 2);
    for (int64_t i = 0; i < old.size(); ++i) EXPECT_EQ(old.entry(i).decoder, 1) << old.entry(i).id;
  }
  const PrepareSummary again = c.prepare(a);
  EXPECT_EQ(again.decoded, 1) << "w0 (an older Vorbis decode) only";
  EXPECT_EQ(again.unchanged, 1);
  const AudioCache cache = AudioCache::open(c.cache());
  EXPECT_EQ(cache.entry(cache.find("w0")).decoder, schema::kDecoderRevision);
  EXPECT_EQ(cache.entry(cache.find("w1")).decoder, 1) << "a WAV decode is the same in every revision";
  EXPECT_EQ(cache.entry(cache.find("w0")).codec, cache.entry(cache.find("w1")).codec);
  expect_matches_decoder(cache, a);
  SqliteDb db(index, SQLITE_OPEN_READONLY);
  EXPECT_EQ(schema::get_meta(db, "format_version", ""), std::to_string(schema::kVersion));
  EXPECT_EQ(c.prepare(a).decoded, 0) << "migrated once, then current";
}

TEST(AudioCache, BadFilesAreRecordedAndTheRunGoesOn) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("good1", 1.0, 21);
  c.add_text("txt_notes");
  c.add_wav("good2", 0.5, 22);
  c.add_missing("gone");
  write_wav(c.dir.file("empty.wav"), {}, 1, kRate, WavEncoding::Pcm16);  // a header, no samples
  c.ids.push_back("empty");
  const PrepareSummary s = c.prepare(a);
  EXPECT_EQ(s.decoded, 2);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.usable, 2);
  EXPECT_NEAR(s.failure_ratio(), 3.0 / 5.0, 1e-12);
  ASSERT_EQ(s.failures.size(), 3u);
  // Catalog order, each with the decoder's reason.
  EXPECT_EQ(s.failures[0].id, "txt_notes");
  EXPECT_EQ(s.failures[1].id, "gone");
  EXPECT_EQ(s.failures[2].id, "empty");
  for (const PrepareIssue& f : s.failures) EXPECT_FALSE(f.message.empty()) << f.id;
  const std::string text = format_summary(s);
  EXPECT_NE(text.find("failed: 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  gone  " + c.path("gone") + ": "), std::string::npos) << text;

  const AudioCache cache = AudioCache::open(c.cache());
  EXPECT_EQ(cache.size(), 2);
  EXPECT_EQ(cache.failures().size(), 3u);
  expect_matches_decoder(cache, a);

  // Unchanged failures are not retried; their reasons come back from the index.
  const PrepareSummary again = c.prepare(a);
  EXPECT_EQ(again.decoded, 0);
  EXPECT_EQ(again.failed, 0);
  EXPECT_EQ(again.failed_earlier, 3);
  ASSERT_EQ(again.failures.size(), 3u);
  EXPECT_TRUE(again.failures[0].earlier);
  EXPECT_EQ(again.failures[0].message, s.failures[0].message);

  // A failed file that becomes good is decoded and leaves the failures table.
  c.ids.erase(c.ids.begin() + 3);  // "gone"
  c.add_wav("gone", 0.75, 23);
  const PrepareSummary fixed = c.prepare(a);
  EXPECT_EQ(fixed.decoded, 1);
  EXPECT_EQ(fixed.failed_earlier, 2);
  EXPECT_EQ(AudioCache::open(c.cache()).failures().size(), 2u);
}

TEST(AudioCache, ItemsLeftOutOfTheCatalogStayAndAreCounted) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("x", 0.5, 31);
  c.add_wav("y", 0.5, 32);
  c.prepare(a);
  c.ids.pop_back();
  const PrepareSummary s = c.prepare(a);
  EXPECT_EQ(s.not_in_catalog, 1);
  EXPECT_EQ(s.usable, 1);
  EXPECT_NE(format_summary(s).find("not in the catalog: 1"), std::string::npos);
  EXPECT_EQ(AudioCache::open(c.cache()).size(), 2);
}

// The melgraph binary, killed by its test hook right after 3 items were committed (and with
// a 4th appended but not committed), leaves a cache that reads those 3 back; a rerun cuts the
// uncommitted tail and completes the rest.
TEST(AudioCache, InterruptedRunLeavesUsableCacheAndRerunCompletesIt) {
  const AudioConfig a = test_audio();
  Collection c;
  for (int i = 0; i < 8; ++i) c.add_wav(std::string("k") + std::to_string(i), 0.5 + 0.1 * i, 40u + static_cast<unsigned>(i));
  c.items();  // writes catalog.csv
  std::ofstream(c.dir.file("config.toml")) << "[audio]\nsample_rate = 8000\nclip_seconds = 0.5\nexcerpt = \"start\"\n"
                                              "excerpt_seconds = 2.0\n";
  const std::string cmd = "MELGRAPH_PREPARE_CRASH_AFTER=3 " + std::string(MELGRAPH_EXE) + " prepare --catalog " +
                          c.dir.file("catalog.csv") + " --config " + c.dir.file("config.toml") + " --out " +
                          c.cache() + " --threads 2 > " + c.dir.file("log.txt") + " 2>&1";
  const int st = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 137) << "the crash hook did not fire: " << cmd;

  int64_t committed = 0;
  {
    const AudioCache cache = AudioCache::open(c.cache());
    committed = cache.size();
    EXPECT_GE(committed, 3);
    EXPECT_LT(committed, 8);
    expect_matches_decoder(cache, a);
    EXPECT_GE(static_cast<int64_t>(fs::file_size(fs::path(c.cache()) / "pcm.bin")), cache.pcm_bytes());
  }
  const PrepareSummary s = c.prepare(a);
  EXPECT_EQ(s.decoded, 8 - committed);
  EXPECT_EQ(s.unchanged, committed);
  EXPECT_EQ(s.dead_bytes, 0) << "the uncommitted tail was cut, not left as dead space";
  const AudioCache cache = AudioCache::open(c.cache());
  EXPECT_EQ(cache.size(), 8);
  expect_matches_decoder(cache, a);
}

TEST(AudioCache, WriterCutsBytesPastTheLastCommit) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("p", 0.5, 51);
  c.prepare(a);
  const fs::path pcm = fs::path(c.cache()) / "pcm.bin";
  const auto committed = static_cast<int64_t>(fs::file_size(pcm));
  std::ofstream(pcm, std::ios::app | std::ios::binary) << std::string(1234, '\x7f');
  EXPECT_EQ(AudioCache::open(c.cache()).pcm_bytes(), committed) << "readers ignore the tail";
  {
    CacheWriter w(c.cache(), cache_settings(a), false);
    EXPECT_EQ(w.truncated_on_open(), 1234);
  }
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(pcm)), committed);
  expect_matches_decoder(AudioCache::open(c.cache()), a);
}

// A compaction stopped between committing its offsets and renaming pcm.bin.compact over
// pcm.bin (cache_writer.cpp, steps 2-3): readers map the new file, the next writer finishes
// the rename. One stopped before its commit leaves a stray copy that the writer deletes.
TEST(AudioCache, InterruptedCompactionIsFinishedOrUndone) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("m", 0.5, 101);
  c.add_wav("n", 0.5, 102);
  c.prepare(a);
  const fs::path dir = c.cache(), pcm = dir / "pcm.bin", copy = dir / "pcm.bin.compact";

  std::ofstream(copy, std::ios::binary) << "a copy that was never committed";
  {
    const AudioCache cache = AudioCache::open(c.cache());
    expect_matches_decoder(cache, a);
  }
  { CacheWriter w(c.cache(), cache_settings(a), false); }
  EXPECT_FALSE(fs::exists(copy));
  expect_matches_decoder(AudioCache::open(c.cache()), a);

  // Committed but not renamed: the data is in pcm.bin.compact, pcm.bin is the old file.
  fs::rename(pcm, copy);
  std::ofstream(pcm, std::ios::binary) << std::string(static_cast<size_t>(fs::file_size(copy)), '\x11');
  {
    SqliteDb db((dir / "index.sqlite").string(), SQLITE_OPEN_READWRITE);
    schema::set_meta(db, "compact_pending", "1");
  }
  expect_matches_decoder(AudioCache::open(c.cache()), a);
  { CacheWriter w(c.cache(), cache_settings(a), false); }
  EXPECT_FALSE(fs::exists(copy));
  {
    SqliteDb db((dir / "index.sqlite").string(), SQLITE_OPEN_READWRITE);
    EXPECT_EQ(schema::get_meta(db, "compact_pending", "none"), "none");
  }
  expect_matches_decoder(AudioCache::open(c.cache()), a);
}

TEST(AudioCache, CacheForOtherSettingsIsRefused) {
  Collection c;
  c.add_wav("s", 0.5, 61);
  c.prepare(test_audio());
  AudioConfig other = test_audio();
  other.sample_rate = 16000;
  try {
    c.prepare(other);
    FAIL() << "a cache made at 8000 Hz was extended at 16000 Hz";
  } catch (const CacheMismatchError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("audio.sample_rate = 8000"), std::string::npos) << m;
    EXPECT_NE(m.find("16000"), std::string::npos) << m;
    EXPECT_NE(m.find("another --out or --rebuild"), std::string::npos) << m;
  }
  AudioConfig half = test_audio(CacheDtype::Float16);
  EXPECT_THROW(c.prepare(half), CacheMismatchError);
  AudioConfig middle = test_audio();
  middle.excerpt = Excerpt::Middle;
  EXPECT_THROW(c.prepare(middle), CacheMismatchError);

  PrepareOptions rebuild;
  rebuild.rebuild = true;
  const PrepareSummary s = c.prepare(other, rebuild);
  EXPECT_EQ(s.decoded, 1);
  EXPECT_EQ(AudioCache::open(c.cache()).settings().sample_rate, 16000);
}

TEST(AudioCache, OpenWithoutCacheSaysHowToMakeOne) {
  test::TempDir d;
  try {
    AudioCache::open(d.path.string());
    FAIL();
  } catch (const CacheError& e) {
    EXPECT_NE(std::string(e.what()).find("melgraph prepare"), std::string::npos) << e.what();
  }
}

TEST(AudioCache, ReadClipPadsShortItems) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("short", 0.125, 71);  // 1000 samples
  c.prepare(a);
  const AudioCache cache = AudioCache::open(c.cache());
  const int64_t L = cache.entry(0).length;
  ASSERT_EQ(L, 1000);
  std::vector<float> item(static_cast<size_t>(L));
  cache.read_clip(0, 0, L, ShortClip::Zero, item.data());

  std::vector<float> rep(2500, std::nanf("")), zero(2500, std::nanf(""));
  cache.read_clip(0, 300, 2500, ShortClip::Repeat, rep.data());
  cache.read_clip(0, 300, 2500, ShortClip::Zero, zero.data());
  for (int64_t k = 0; k < 2500; ++k) {
    ASSERT_EQ(rep[static_cast<size_t>(k)], item[static_cast<size_t>((300 + k) % L)]) << k;
    ASSERT_EQ(zero[static_cast<size_t>(k)], 300 + k < L ? item[static_cast<size_t>(300 + k)] : 0.0f) << k;
  }
  // A start past the end: Repeat wraps, Zero is silent.
  std::vector<float> far(10);
  cache.read_clip(0, 2 * L + 5, 10, ShortClip::Repeat, far.data());
  for (int k = 0; k < 10; ++k) EXPECT_EQ(far[static_cast<size_t>(k)], item[static_cast<size_t>(5 + k)]);
  cache.read_clip(0, 2 * L + 5, 10, ShortClip::Zero, far.data());
  for (float v : far) EXPECT_EQ(v, 0.0f);

  EXPECT_THROW(cache.read_clip(1, 0, 1, ShortClip::Zero, far.data()), std::out_of_range);
  EXPECT_THROW(cache.read_clip(0, -1, 1, ShortClip::Zero, far.data()), std::out_of_range);
}

TEST(AudioCache, ManyThreadsReadAtOnce) {
  const AudioConfig a = test_audio();
  Collection c;
  for (int i = 0; i < 3; ++i) c.add_wav(std::string("t") + std::to_string(i), 1.0, 80u + static_cast<unsigned>(i));
  c.prepare(a);
  const AudioCache cache = AudioCache::open(c.cache());
  std::vector<std::vector<float>> want(3, std::vector<float>(4000));
  for (int i = 0; i < 3; ++i) cache.read_clip(i, 1234, 4000, ShortClip::Repeat, want[static_cast<size_t>(i)].data());
  std::vector<int> mismatches(8, 0);
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t)
    readers.emplace_back([&, t] {
      std::vector<float> got(4000);
      for (int rep = 0; rep < 50; ++rep) {
        const int i = (t + rep) % 3;
        cache.read_clip(i, 1234, 4000, ShortClip::Repeat, got.data());
        if (got != want[static_cast<size_t>(i)] || !cache.verify(i)) ++mismatches[static_cast<size_t>(t)];
      }
    });
  for (std::thread& r : readers) r.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// Issue 17 D6: trainings and exports that start together on one warm cache each "prepare" it
// first. They only read it, so none may take the writer's exclusive lock and shut the others
// out (it did: one of them failed at random with a message about another prepare).
TEST(AudioCache, WarmCacheIsPreparedByManyAtOnce) {
  const AudioConfig a = test_audio();
  Collection c;
  for (int i = 0; i < 3; ++i) c.add_wav(std::string("m") + std::to_string(i), 0.5, 110u + static_cast<unsigned>(i));
  ASSERT_EQ(c.prepare(a).decoded, 3);
  const std::vector<PrepareItem> items = c.items();
  std::vector<std::string> errors(4);
  std::vector<int64_t> unchanged(4, 0);
  for (int round = 0; round < 10; ++round) {
    std::vector<std::thread> runs;
    for (size_t t = 0; t < 4; ++t)
      runs.emplace_back([&, t] {
        try {
          PrepareOptions o;
          o.threads = 1;
          const PrepareSummary s = prepare_cache(items, a, c.cache(), o);
          unchanged[t] = s.unchanged + 10 * s.decoded;  // 3 when nothing was decoded
        } catch (const std::exception& e) {
          errors[t] = e.what();
        }
      });
    for (std::thread& r : runs) r.join();
    for (size_t t = 0; t < 4; ++t) {
      ASSERT_EQ(errors[t], "") << "round " << round << ", run " << t;
      ASSERT_EQ(unchanged[t], 3) << "round " << round << ", run " << t;
    }
  }
}

// While a writer holds the cache, a second writer and a reader wait for it (and say so), then
// go on; while a reader holds its shared lock, a warm prepare does not wait at all.
TEST(AudioCache, WritersAndReadersWaitForTheWriter) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("first", 0.5, 120);
  ASSERT_EQ(c.prepare(a).decoded, 1);
  const std::string lock = (fs::path(c.cache()) / schema::kLockFile).string();
  {
    const FileLock reader(lock, LockMode::kShared, {});
    auto warm = std::async(std::launch::async, [&] { return c.prepare(a).unchanged; });
    ASSERT_EQ(warm.wait_for(std::chrono::seconds(60)), std::future_status::ready)
        << "a warm prepare waited for a reader's shared lock";
    EXPECT_EQ(warm.get(), 1);
  }

  c.add_wav("second", 0.5, 121);
  const std::string notes = c.dir.file("progress.txt");
  FILE* progress = std::fopen(notes.c_str(), "w");
  ASSERT_NE(progress, nullptr);
  auto holder = std::make_unique<CacheWriter>(c.cache(), cache_settings(a), false);
  auto writer = std::async(std::launch::async, [&] {
    PrepareOptions o;
    o.progress = progress;
    return c.prepare(a, o).decoded;
  });
  auto reader = std::async(std::launch::async, [&] {
    return AudioCache::open(c.cache(), [&](const std::string& who) { std::ofstream(c.dir.file("reader.txt")) << who; })
        .size();
  });
  const std::string said = "is in use by process " + std::to_string(::getpid()) + ": waiting for it";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (test::read_bytes(notes).find(said) == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  while (!fs::exists(c.dir.file("reader.txt")) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_NE(test::read_bytes(notes).find(said), std::string::npos) << test::read_bytes(notes);
  EXPECT_EQ(test::read_bytes(c.dir.file("reader.txt")), "process " + std::to_string(::getpid()));
  EXPECT_EQ(writer.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout) << "it did not wait";
  holder.reset();  // the first writer is done: both go on
  EXPECT_EQ(writer.get(), 1);
  EXPECT_GE(reader.get(), 1);
  std::fclose(progress);
}

TEST(AudioCache, VerifyCatchesACorruptByte) {
  const AudioConfig a = test_audio();
  Collection c;
  c.add_wav("u", 0.5, 91);
  c.add_wav("v", 0.5, 92);
  c.prepare(a);
  int64_t v_offset = 0;
  {
    const AudioCache cache = AudioCache::open(c.cache());
    v_offset = cache.entry(cache.find("v")).offset;
  }
  {
    std::fstream f(fs::path(c.cache()) / "pcm.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(v_offset * 2 + 100);
    f.put('\x55');
    f.put('\x55');
  }
  const AudioCache cache = AudioCache::open(c.cache());
  EXPECT_TRUE(cache.verify(cache.find("u")));
  EXPECT_FALSE(cache.verify(cache.find("v")));
}

TEST(Half, KnownValuesDecodeExactly) {
  EXPECT_EQ(half_to_float(0x3C00), 1.0f);
  EXPECT_EQ(half_to_float(0xC000), -2.0f);
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));         // smallest normal
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));         // smallest subnormal
  EXPECT_EQ(half_to_float(0x03FF), std::ldexp(1023.0f, -24));      // largest subnormal
  EXPECT_EQ(half_to_float(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(half_to_float(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(half_to_float(0x8000)));
  EXPECT_EQ(half_to_float(0x7C00), INFINITY);
  EXPECT_EQ(half_to_float(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
  EXPECT_TRUE(std::isnan(half_to_float(0xFC01)));
}

TEST(Half, EncodeRoundsToNearestEven) {
  // Every finite half survives float and back; NaNs stay NaN.
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto u = static_cast<uint16_t>(h);
    const float f = half_to_float(u);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << std::hex << h;
    } else {
      ASSERT_EQ(float_to_half(f), u) << std::hex << h;
    }
  }
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);       // tie -> even (down)
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);   // tie -> even (up)
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  EXPECT_EQ(float_to_half(65519.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(65520.0f), 0x7C00);                          // rounds to infinity
  EXPECT_EQ(float_to_half(-1e9f), 0xFC00);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);              // tie -> even (0)
  EXPECT_EQ(float_to_half(3 * std::ldexp(1.0f, -25)), 0x0002);          // tie -> even (2)
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400);            // subnormal rounds up to normal
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(INFINITY), 0x7C00);
}

}  // namespace
}  // namespace mg::audio

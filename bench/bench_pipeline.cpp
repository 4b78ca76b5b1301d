// The training input pipeline, from the audio cache to the device: how many clips per second
// it can feed, so that a user can tell whether a step is waiting for its data.
//
//   pipeline/<family>/read_clip/<dtype>            one thread: random crops out of the memory-
//                                                  mapped cache, converted to float (the
//                                                  loader's inner loop)
//   pipeline/<family>/loader/<dtype>/threads:T/augment:A/mining:M
//                                                  the trainer's BatchLoader (engine/train):
//                                                  triplets drawn from the graph tables, crops,
//                                                  augmentation, into alloc_host buffers, T
//                                                  threads; a batch per iteration
//   pipeline/<family>/upload/cuda                  one batch from pinned host memory to the
//                                                  device (Backend::upload_async), CUDA events
//   pipeline/<family>/feed/cuda/threads:T          loader + upload, as the trainer consumes it
//
// Families: ref = the reference configuration's input (22050 Hz, 10 s crops of 12 s cached
// excerpts, 64 triplets = 192 clips per batch); small = 8 kHz, 1 s crops, 4 triplets (for CI).
// Each family's data are made on first use in a temporary directory (removed at exit): a
// generated collection (engine/demo/demo_collection.h), its audio cache in both sample formats
// (engine/audio/prepare.h), and the graph tables (engine/train/training_data.h).
//
// Timing: wall clock for the loader (its work runs on its own threads; the figure is what the
// trainer would see if the step took no time), after the loader's first round of batches;
// CUDA events for the upload. Counters: clips/s, bytes_per_second (float audio delivered),
// x_realtime (seconds of audio delivered per second), and for the loader thread_ms_per_batch
// (one thread's busy time per batch: the cost without the parallelism).
//
//   bench_pipeline --benchmark_filter=pipeline/ref          # the reference input
//   bench_pipeline --benchmark_format=json > pipeline.json
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/demo/demo_collection.h"
#include "engine/train/batch_loader.h"
#include "engine/train/training_data.h"
#include "bench/bench_backends.h"
#include "engine/audio/audio_cache.h"
#include "engine/audio/prepare.h"
#include "engine/backend_factory.h"
#include "engine/config.h"

namespace mg {
namespace {

namespace fs = std::filesystem;

struct FamilySpec {
  int sample_rate;
  double clip_seconds, excerpt_seconds;
  int batch_triplets;
  int clips;  // in the generated collection
};

FamilySpec family_spec(const std::string& family) {
  if (family == "ref") return {22050, 10.0, 12.0, 64, 128};
  if (family == "small") return {8000, 1.0, 2.0, 4, 24};
  throw std::invalid_argument("bench_pipeline: no family " + family);
}

// The scratch directory for every family's data, removed when the program ends.
class Scratch {
 public:
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "melgraph-bench-pipeline-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("bench_pipeline: cannot create a directory in " + tmpl);
    path_ = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

Scratch& scratch() {
  static Scratch s;
  return s;
}

// A family's collection, caches and graph tables.
struct Family {
  Config cfg;  // the family's settings; benchmarks copy and adjust it
  std::unique_ptr<train::TrainingData> data;
  std::map<CacheDtype, std::unique_ptr<audio::AudioCache>> caches;
  std::map<CacheDtype, std::vector<int64_t>> train_cache;  // per training item: its cache entry
};

Family make_family(const std::string& name) {
  const FamilySpec spec = family_spec(name);
  const std::string dir = scratch().file(name);
  demo::DemoCollectionOptions d;
  d.clips = spec.clips;
  d.styles = 4;
  d.clip_seconds = spec.excerpt_seconds;
  d.sample_rate = spec.sample_rate;
  d.seed = 11;
  demo::make_demo_collection(dir, d);

  Family f;
  Config& c = f.cfg;
  c = default_config();
  c.audio.sample_rate = spec.sample_rate;
  c.audio.clip_seconds = spec.clip_seconds;
  c.audio.excerpt_seconds = spec.excerpt_seconds;
  c.audio.excerpt = Excerpt::Start;
  c.mel.sample_rate = spec.sample_rate;
  if (name == "small") {  // a model that fits 1 s at 8 kHz (the loader itself never runs it)
    c.mel.n_fft = 256;
    c.mel.hop = 64;
    c.mel.n_mels = 16;
  }
  c.train.batch_triplets = spec.batch_triplets;
  c.data.edges = dir + "/edges.csv";
  c.data.catalog = dir + "/catalog.csv";
  c.data.val_items = 0;
  c.data.val_edges = 0;
  validate_config(c);

  f.data = std::make_unique<train::TrainingData>(train::build_training_data(c, 0, {}));
  std::vector<audio::PrepareItem> items;
  for (const auto& it : f.data->items) items.push_back({it.id, it.path});
  for (const CacheDtype dt : {CacheDtype::Int16, CacheDtype::Float16}) {
    AudioConfig a = c.audio;
    a.cache_dtype = dt;
    const std::string cache_dir = dir + "/cache-" + audio::dtype_name(dt);
    audio::PrepareOptions po;
    const audio::PrepareSummary s = audio::prepare_cache(items, a, cache_dir, po);
    if (s.failed_total() != 0) throw std::runtime_error("bench_pipeline: the generated audio failed to decode");
    auto cache = std::make_unique<audio::AudioCache>(audio::AudioCache::open(cache_dir));
    std::vector<int64_t> idx;
    for (const int32_t t : f.data->train_items) idx.push_back(cache->find(f.data->items[static_cast<size_t>(t)].id));
    f.caches[dt] = std::move(cache);
    f.train_cache[dt] = std::move(idx);
  }
  return f;
}

Family& family(const std::string& name) {
  scratch();  // made first, so its directory outlives the caches mapped from it
  static std::map<std::string, Family> made;
  auto it = made.find(name);
  if (it == made.end()) it = made.emplace(name, make_family(name)).first;
  return it->second;
}

void audio_counters(benchmark::State& st, const Config& cfg, int clips_per_iteration) {
  const double it = static_cast<double>(st.iterations()) * clips_per_iteration;
  st.counters["clips/s"] = benchmark::Counter(it, benchmark::Counter::kIsRate);
  st.counters["x_realtime"] = benchmark::Counter(it * cfg.audio.clip_seconds, benchmark::Counter::kIsRate);
  st.SetBytesProcessed(static_cast<int64_t>(it * static_cast<double>(cfg.audio.clip_samples()) * sizeof(float)));
}

// ---- benchmarks -----------------------------------------------------------------------------

void BM_ReadClip(benchmark::State& st, const std::string& fam, CacheDtype dt) {
  Family& f = family(fam);
  const audio::AudioCache& cache = *f.caches.at(dt);
  const int64_t S = f.cfg.audio.clip_samples();
  std::vector<float> out(static_cast<size_t>(S));
  std::mt19937_64 rng(3);
  for (auto _ : st) {
    const int64_t i = static_cast<int64_t>(rng() % static_cast<uint64_t>(cache.size()));
    const int64_t room = std::max<int64_t>(cache.entry(i).length - S, 0);
    cache.read_clip(i, static_cast<int64_t>(rng() % static_cast<uint64_t>(room + 1)), S, ShortClip::Repeat, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  audio_counters(st, f.cfg, 1);
}

Config loader_config(const Family& f, CacheDtype dt, int threads, bool augment, bool mining) {
  Config c = f.cfg;
  c.audio.cache_dtype = dt;
  c.train.loader_threads = threads;
  c.train.mining = mining ? Mining::BatchHard : Mining::Offline;
  if (augment) {  // every augmentation on, at settings a run might use
    c.augment.gain_db = 6.0;
    c.augment.noise_snr_db = 30.0;
    c.augment.shift_seconds = 1.0;
  }
  return c;
}

// Steps far beyond any run of the benchmark: the loader is never the one to stop.
constexpr int64_t kLastStep = int64_t{1} << 40;

// After the loader's first round (its slots filled while it was being set up), so the timed
// batches are built while they are waited for.
void drain_first_round(train::BatchLoader& loader, int threads) {
  for (int i = 0; i < threads + 2; ++i) {
    loader.next();
    loader.release();
  }
}

void BM_Loader(benchmark::State& st, const std::string& fam, CacheDtype dt) {
  Family& f = family(fam);
  const int threads = static_cast<int>(st.range(0));
  const Config c = loader_config(f, dt, threads, st.range(1) != 0, st.range(2) != 0);
  train::BatchLoader loader(*f.data, *f.caches.at(dt), f.train_cache.at(dt), c, *bench_backend("cpu").be, 1, kLastStep);
  drain_first_round(loader, threads);
  const train::LoaderStats before = loader.stats();
  for (auto _ : st) {
    benchmark::DoNotOptimize(loader.next().audio);
    loader.release();
  }
  const train::LoaderStats after = loader.stats();
  audio_counters(st, c, loader.rows_per_batch());
  const double batches = static_cast<double>(after.batches - before.batches);
  if (batches > 0) st.counters["thread_ms_per_batch"] = 1e3 * (after.busy_seconds - before.busy_seconds) / batches;
}

void BM_Upload(benchmark::State& st, const std::string& fam) {
  BenchBackend& cuda = bench_backend("cuda");
  if (!cuda.be) return st.SkipWithError(cuda.skip.c_str());
  Backend* be = cuda.be.get();
  Family& f = family(fam);
  const int rows = 3 * f.cfg.train.batch_triplets;
  const size_t bytes = static_cast<size_t>(rows) * static_cast<size_t>(f.cfg.audio.clip_samples()) * sizeof(float);
  void* host = be->alloc_host(bytes);
  void* dev = be->alloc_bytes(bytes);
  std::memset(host, 0x3c, bytes);  // 0x3c3c3c3c: about 0.0115f, a finite value
  be->upload_async(dev, host, bytes);
  be->synchronize();
  // The stopwatch's events are on the compute stream and the copy on the copy stream:
  // wait_uploads() makes the stop event wait for the copy, so the interval is the copy plus
  // two cross-stream waits (a few microseconds: most of the small family's figure, nothing at
  // the reference size).
  auto sw = be->stopwatch();
  for (auto _ : st) {
    sw->start();
    be->upload_async(dev, host, bytes);
    be->wait_uploads();
    sw->stop();
    st.SetIterationTime(sw->seconds());
  }
  audio_counters(st, f.cfg, rows);
  be->free_bytes(dev);
  be->free_host(host);
}

// What the trainer's loop does with its input: the next batch from the loader (pinned host
// buffers), uploaded into one of two device buffers, the loader's slot released once the copy
// is done.
void BM_Feed(benchmark::State& st, const std::string& fam) {
  BenchBackend& cuda = bench_backend("cuda");
  if (!cuda.be) return st.SkipWithError(cuda.skip.c_str());
  Backend* be = cuda.be.get();
  Family& f = family(fam);
  const int threads = static_cast<int>(st.range(0));
  const Config c = loader_config(f, CacheDtype::Int16, threads, false, false);
  train::BatchLoader loader(*f.data, *f.caches.at(CacheDtype::Int16), f.train_cache.at(CacheDtype::Int16), c, *be, 1,
                            kLastStep);
  const size_t bytes =
      static_cast<size_t>(loader.rows_per_batch()) * static_cast<size_t>(c.audio.clip_samples()) * sizeof(float);
  void* dev[2] = {be->alloc_bytes(bytes), be->alloc_bytes(bytes)};
  drain_first_round(loader, threads);
  int64_t i = 0;
  for (auto _ : st) {
    be->upload_async(dev[i++ % 2], loader.next().audio, bytes);
    be->synchronize();
    loader.release();
  }
  audio_counters(st, c, loader.rows_per_batch());
  be->free_bytes(dev[0]);
  be->free_bytes(dev[1]);
}

// ---- registration ---------------------------------------------------------------------------

using Fn = std::function<void(benchmark::State&)>;

benchmark::internal::Benchmark* add(const std::string& name, Fn fn) {
  return benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& st) { fn(st); })
      ->Unit(benchmark::kMillisecond);
}

void register_family(const std::string& fam) {
  const std::string p = "pipeline/" + fam + "/";
  for (const CacheDtype dt : {CacheDtype::Int16, CacheDtype::Float16}) {
    const std::string d = audio::dtype_name(dt);
    add(p + "read_clip/" + d, [fam, dt](auto& st) { BM_ReadClip(st, fam, dt); })->UseRealTime();
    auto* l = add(p + "loader/" + d, [fam, dt](auto& st) { BM_Loader(st, fam, dt); })
                  ->ArgNames({"threads", "augment", "mining"})
                  ->UseRealTime();
    if (dt == CacheDtype::Int16) {
      for (const int64_t t : {1, 2, 4, 8}) l->Args({t, 0, 0});  // thread scaling
      l->Args({2, 1, 0});                                       // augmentation's cost
      l->Args({2, 0, 1});                                       // in-batch mining: 2B clips + hop table
    } else {
      l->Args({2, 0, 0});
    }
  }
  add(p + "upload/cuda", [fam](auto& st) { BM_Upload(st, fam); })->UseManualTime();
  add(p + "feed/cuda", [fam](auto& st) { BM_Feed(st, fam); })->ArgNames({"threads"})->Arg(2)->Arg(8)->UseRealTime();
}

}  // namespace
}  // namespace mg

int main(int argc, char** argv) {
  mg::register_family("ref");
  mg::register_family("small");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int rc = 0;
  try {
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: %s\n", e.what());
    rc = 1;
  }
  benchmark::Shutdown();
  mg::release_bench_backends();
  return rc;
}

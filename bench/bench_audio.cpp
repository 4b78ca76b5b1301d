// Decode + downmix + resample throughput of melgraph_audio, one thread (prepare runs one file
// per thread, so this is the per-core rate). Issue 5's target: >= 100x realtime per core.
//
//   bench_audio                  # the real music of ../shared/data/music (Ogg Vorbis, 22050 Hz
//                                # mono) to 22050 Hz (decode only) and to 16000 Hz (plus soxr),
//                                # each file and all of them; a generated 60 s 44.1 kHz stereo
//                                # float WAV to both rates (downmix and resampling alone)
//
// Counters: x_realtime = seconds of source audio decoded per second of wall time (x_realtime_cpu:
// per second of CPU time, the same on an idle machine); audio_s =
// the source's length; files_per_s for the cache's default request (the middle 30 s at 22050 Hz).
// MELGRAPH_SHARED_DATA_DIR overrides where the music is; without it the music cases are skipped.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/audio/decode.h"
#include "engine/audio/wav_writer.h"
#include "kernels/philox.h"

namespace {

namespace fs = std::filesystem;
using mg::audio::decode_audio;
using mg::audio::DecodeRequest;

DecodeRequest whole(int rate) {
  DecodeRequest r;
  r.sample_rate = rate;
  r.max_samples = -1;
  return r;
}

// This process's CPU time: on a shared machine, audio seconds per CPU second is the per-core
// rate that wall time understates.
double cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Decodes every file once per iteration; x_realtime over their total length.
void BM_Decode(benchmark::State& st, std::vector<std::string> files, DecodeRequest req) {
  double seconds = 0;
  const double cpu0 = cpu_seconds();
  for (auto _ : st) {
    seconds = 0;
    for (const std::string& f : files) {
      const mg::audio::DecodedAudio d = decode_audio(f, req);
      benchmark::DoNotOptimize(d.samples.data());
      seconds += req.max_samples < 0 ? d.source_seconds : static_cast<double>(d.samples.size()) / req.sample_rate;
    }
  }
  const double cpu = cpu_seconds() - cpu0;
  st.counters["x_realtime"] = benchmark::Counter(seconds, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["x_realtime_cpu"] = seconds * static_cast<double>(st.iterations()) / cpu;
  st.counters["audio_s"] = seconds;
  if (req.max_samples > 0)
    st.counters["files_per_s"] = benchmark::Counter(static_cast<double>(files.size()), benchmark::Counter::kIsIterationInvariantRate);
}

void add(const std::string& name, const std::vector<std::string>& files, const DecodeRequest& req) {
  benchmark::RegisterBenchmark(name.c_str(), BM_Decode, files, req)->UseRealTime()->Unit(benchmark::kMillisecond);
}

// 60 s of 44.1 kHz stereo noise-plus-tones as float WAV, so the cost of reading is nil and
// the downmix and resampler are what is measured.
std::string make_wav(const fs::path& dir) {
  const int rate = 44100, frames = 60 * rate;
  std::vector<float> x(2 * static_cast<size_t>(frames));  // [frames, 2]
  for (size_t i = 0; i < x.size(); ++i) {
    const float u = mg::philox_uniform(7, 0, i);  // [0, 1)
    x[i] = 0.1f * (2 * u - 1) + 0.3f * std::sin(0.0627f * static_cast<float>(i / 2 % 100000));
  }
  const std::string path = (dir / "stereo44k.wav").string();
  mg::audio::write_wav(path, x, 2, rate, mg::audio::WavEncoding::Float32);
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const char* env = std::getenv("MELGRAPH_SHARED_DATA_DIR");
  const fs::path music = fs::path(env && *env ? env : MELGRAPH_SHARED_DATA_DIR) / "music";
  std::vector<std::string> files;
  if (fs::is_directory(music))
    for (const auto& e : fs::directory_iterator(music))
      if (e.path().extension() == ".ogg") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) std::fprintf(stderr, "bench_audio: no music in %s: only the generated WAV is measured\n", music.c_str());

  for (const int rate : {22050, 16000}) {
    for (const std::string& f : files) add("decode/" + fs::path(f).stem().string() + "/" + std::to_string(rate), {f}, whole(rate));
    if (!files.empty()) add("decode/all_music/" + std::to_string(rate), files, whole(rate));
  }
  const DecodeRequest cache = mg::audio::decode_request(mg::AudioConfig{});  // config.h's defaults
  if (!files.empty()) add("decode/all_music_middle_30s/22050", files, cache);

  const fs::path tmp = fs::temp_directory_path() / ("melgraph-bench-audio-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const std::string wav = make_wav(tmp);
  for (const int rate : {22050, 16000}) add("decode/wav_44k_stereo_60s/" + std::to_string(rate), {wav}, whole(rate));

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  fs::remove_all(tmp);
  return 0;
}

// The demo collection's files (see demo_collection.h): options, the preference graph, the
// catalog, and the parallel rendering of the clips (demo_synth.cpp) into WAV files.
#include "engine/demo/demo_collection.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "engine/demo/demo_draws.h"
#include "engine/audio/wav_writer.h"
#include "engine/timer.h"

namespace mg::demo {

namespace {

int resolved_graph_only(const DemoCollectionOptions& o) { return o.graph_only < 0 ? o.clips / 2 : o.graph_only; }

// Style s holds clips c with c % styles == s and graph-only items g with g % styles == s;
// items are numbered clips first, then graph-only items.
std::vector<std::vector<int32_t>> style_pools(const DemoCollectionOptions& o) {
  std::vector<std::vector<int32_t>> pools(static_cast<size_t>(o.styles));
  for (int c = 0; c < o.clips; ++c) pools[static_cast<size_t>(c % o.styles)].push_back(c);
  const int g = resolved_graph_only(o);
  for (int i = 0; i < g; ++i) pools[static_cast<size_t>(i % o.styles)].push_back(o.clips + i);
  return pools;
}

std::string number(int64_t n, int width) {
  std::string s = std::to_string(n);
  if (static_cast<int>(s.size()) < width) s.insert(0, static_cast<size_t>(width) - s.size(), '0');
  return s;
}

// "t0001" for clips, "g0001" for graph-only items; at least 4 digits, more when needed.
struct IdMaker {
  int clips, width;
  std::string operator()(int item) const {
    return item < clips ? std::string("t") + number(item + 1, width) : std::string("g") + number(item - clips + 1, width);
  }
};

IdMaker id_maker(const DemoCollectionOptions& o) {
  const int most = std::max(o.clips, resolved_graph_only(o));
  return IdMaker{o.clips, std::max<int>(4, static_cast<int>(std::to_string(most).size()))};
}

struct DemoGraph {
  std::vector<int32_t> src, dst;  // items, in the order written
  std::vector<int> weight;        // [edges] when options.weights
  std::vector<int32_t> hubs;      // style by style
  int64_t cross_style = 0;
};

DemoGraph build_graph(const DemoCollectionOptions& o, const std::vector<std::vector<int32_t>>& pools) {
  DemoGraph g;
  const auto styles = static_cast<size_t>(o.styles);
  // Hubs: hubs_per_style clips of each style, drawn without replacement.
  std::vector<std::vector<int32_t>> hubs(styles);
  Draws hd(o.seed, kGraphStream);
  for (size_t s = 0; s < styles; ++s) {
    std::vector<int32_t> clips;
    for (int32_t item : pools[s])
      if (item < o.clips) clips.push_back(item);
    for (int k = 0; k < o.hubs_per_style; ++k) {
      const int pick = k + hd.below(static_cast<int>(clips.size()) - k);
      std::swap(clips[static_cast<size_t>(k)], clips[static_cast<size_t>(pick)]);
      hubs[s].push_back(clips[static_cast<size_t>(k)]);
    }
    g.hubs.insert(g.hubs.end(), hubs[s].begin(), hubs[s].end());
  }

  const int items = o.clips + resolved_graph_only(o);
  auto style_of = [&](int32_t item) {
    return static_cast<size_t>((item < o.clips ? item : item - o.clips) % o.styles);
  };
  // Per clip, its taste_neighbours nearest clips of its style: those of its pulse first,
  // then by closeness in tempo (|log2 of the tempo ratio|), ties by index. The pulse, not the
  // key: a clip's mean spectrum (the mean-log-mel baseline) already shows its key, while the
  // pulse lives in how the level moves over time, which only a model that looks at time can
  // hear. A clip whose pulse is rare in its style still gets neighbours (of other pulses).
  std::vector<DemoClipTraits> traits(static_cast<size_t>(o.clips));
  for (int c = 0; c < o.clips; ++c) traits[static_cast<size_t>(c)] = demo_clip_traits(o, c);
  std::vector<std::vector<int32_t>> nearest(static_cast<size_t>(o.clips));
  for (int32_t c = 0; c < o.clips; ++c) {
    std::vector<std::tuple<bool, double, int32_t>> by_distance;  // (other pulse, tempo distance, clip)
    for (int32_t other : pools[style_of(c)]) {
      if (other == c || other >= o.clips) continue;
      const DemoClipTraits &a = traits[static_cast<size_t>(c)], &b = traits[static_cast<size_t>(other)];
      by_distance.emplace_back(a.pulse != b.pulse, std::abs(std::log2(a.bpm / b.bpm)), other);
    }
    std::sort(by_distance.begin(), by_distance.end());
    const size_t n = std::min(by_distance.size(), static_cast<size_t>(o.taste_neighbours));
    for (size_t j = 0; j < n; ++j) nearest[static_cast<size_t>(c)].push_back(std::get<2>(by_distance[j]));
  }
  std::vector<int32_t> chosen;
  for (int32_t u = 0; u < items; ++u) {
    const size_t s = style_of(u);
    Draws d(o.seed, kItemStream + static_cast<uint64_t>(u));
    chosen.clear();
    for (int k = 0; k < o.out_degree; ++k) {
      // The kind of edge is drawn once per edge, before the retries for a new target, so
      // that cross_style is the fraction of edges that cross (retries are more frequent
      // within a style, where the few hubs are soon taken).
      const bool cross = o.styles > 1 && d.uniform() < o.cross_style;
      int32_t v = -1;
      // validate_demo_options guarantees enough distinct targets; the bound only turns a
      // broken guarantee into an error instead of a hang.
      for (int attempt = 0; v < 0; ++attempt) {
        if (attempt > 100000)
          throw std::logic_error("demo collection: item " + std::to_string(u) + " found only " +
                                 std::to_string(chosen.size()) + " distinct recommendations");
        if (cross) {
          int other = d.below(o.styles - 1);
          if (other >= static_cast<int>(s)) ++other;
          const auto& pool = pools[static_cast<size_t>(other)];
          v = pool[static_cast<size_t>(d.below(static_cast<int>(pool.size())))];
        } else if (!hubs[s].empty() && d.uniform() < o.hub_share) {
          v = hubs[s][static_cast<size_t>(d.below(static_cast<int>(hubs[s].size())))];
        } else if (u < o.clips && !nearest[static_cast<size_t>(u)].empty() && d.uniform() < o.taste) {
          // (A clip alone in its style has no nearest clips: its picks are any of the style's.)
          const auto& near = nearest[static_cast<size_t>(u)];
          v = near[static_cast<size_t>(d.below(static_cast<int>(near.size())))];
        } else {
          v = pools[s][static_cast<size_t>(d.below(static_cast<int>(pools[s].size())))];
        }
        if (v == u || std::find(chosen.begin(), chosen.end(), v) != chosen.end()) v = -1;
      }
      chosen.push_back(v);
      g.src.push_back(u);
      g.dst.push_back(v);
      g.cross_style += cross;
      if (o.weights) g.weight.push_back(1 + d.below(9));
    }
  }
  return g;
}

// Synthetic titles and artists. Every word is letters only, so no CSV field needs quoting.
constexpr std::array<const char*, 32> kAdjectives = {
    "Amber",  "Broken", "Crimson", "Distant", "Electric", "Fading", "Golden",   "Hollow",
    "Silent", "Midnight", "Paper", "Quiet",   "Restless", "Silver", "Tender",   "Velvet",
    "Wandering", "Winter", "Northern", "Lonely", "Bright", "Hidden", "Neon",    "Slow",
    "Secret", "Frozen", "Endless", "Gentle",  "Wild",     "Falling", "Rising",  "Open"};
constexpr std::array<const char*, 32> kNouns = {
    "Harbor", "Garden", "River",  "Lights",  "Window",  "Echo",    "Mountain", "Signal",
    "Dream",  "Tide",   "Horizon", "Station", "Letter", "Mirror",  "Forest",   "Engine",
    "Summer", "Shadow", "Machine", "Heart",  "Ocean",   "Road",    "Circle",   "Skyline",
    "Rain",   "Fire",   "Island", "Voices",  "Morning", "Canyon",  "Satellite", "Lantern"};
constexpr std::array<const char*, 16> kBandFirst = {"The Paper", "Nova", "Lumen", "Static", "Kite", "Moss",
                                                    "Iron",      "Velvet", "Glass", "Cobalt", "Echo", "Pale",
                                                    "Saint",     "Blue", "Red", "Little"};
constexpr std::array<const char*, 16> kBandSecond = {"Birds",    "Collective", "Ensemble", "Trio",  "Machines",
                                                     "Orchestra", "Club",      "Project",  "Sisters", "Brothers",
                                                     "Society",  "Quartet",    "Kids",     "Union", "Lights",
                                                     "Parade"};
constexpr int kArtistsPerStyle = 4;

// Artist a = style * 4 + k: 32 distinct names for the 8 styles (a and a + 16 share the first
// word and differ in the second).
std::string artist_name(int a) {
  return std::string(kBandFirst[static_cast<size_t>(a % 16)]) + " " +
         kBandSecond[static_cast<size_t>((a / 16 + 5 * a + 3) % 16)];
}

// Writes `text` to `path` through a temporary name and a rename.
void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error(tmp + ": cannot create: " + std::strerror(errno));
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) {
      std::remove(tmp.c_str());
      throw std::runtime_error(tmp + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": rename from " + tmp + " failed: " + ec.message());
  }
}

std::string clip_path(const IdMaker& id, int clip) { return "audio/" + id(clip) + ".wav"; }

// Renders every clip and writes it, `threads` workers taking the next clip index in turn.
// The first failure stops the others and is rethrown.
void write_clips(const std::filesystem::path& dir, const DemoCollectionOptions& o, const IdMaker& id) {
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const int threads = std::min(o.clips, o.threads > 0 ? o.threads : static_cast<int>(hw));
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    try {
      for (int c = next++; c < o.clips && !failed; c = next++) {
        const std::vector<float> audio = render_demo_clip(o, c);  // [S]
        audio::write_wav((dir / clip_path(id, c)).string(), std::span<const float>(audio), 1, o.sample_rate,
                         audio::WavEncoding::Pcm16);
      }
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  {
    std::vector<std::jthread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

void validate_demo_options(const DemoCollectionOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("demo collection: " + what); };
  if (o.clips < 1) fail("clips must be >= 1 (got " + std::to_string(o.clips) + ")");
  if (o.styles < 1 || o.styles > kDemoStyleCount)
    fail("styles must be in [1, " + std::to_string(kDemoStyleCount) + "] (got " + std::to_string(o.styles) + ")");
  if (o.clips < o.styles)
    fail("clips " + std::to_string(o.clips) + " < styles " + std::to_string(o.styles) +
         ": every style needs a clip (add clips or lower styles)");
  if (o.sample_rate < 8000 || o.sample_rate > 96000)
    fail("sample_rate must be in [8000, 96000] Hz (got " + std::to_string(o.sample_rate) + ")");
  if (!(o.clip_seconds > 0) || o.clip_seconds > 600 || o.clip_seconds * o.sample_rate < 1)
    fail("clip_seconds must be in (0, 600] and hold a sample (got " + std::to_string(o.clip_seconds) + ")");
  if (o.graph_only < -1) fail("graph_only must be >= 0, or -1 for clips / 2 (got " + std::to_string(o.graph_only) + ")");
  if (o.out_degree < 1) fail("out_degree must be >= 1 (got " + std::to_string(o.out_degree) + ")");
  if (!(o.cross_style >= 0 && o.cross_style <= 1))
    fail("cross_style must be in [0, 1] (got " + std::to_string(o.cross_style) + ")");
  if (o.cross_style > 0 && o.styles < 2)
    fail("cross_style " + std::to_string(o.cross_style) + " needs at least 2 styles (set it to 0 or add styles)");
  if (!(o.hub_share >= 0 && o.hub_share <= 1)) fail("hub_share must be in [0, 1] (got " + std::to_string(o.hub_share) + ")");
  if (o.hubs_per_style < 0 || o.hubs_per_style > o.clips / o.styles)
    fail("hubs_per_style must be in [0, " + std::to_string(o.clips / o.styles) + "] (clips per style; got " +
         std::to_string(o.hubs_per_style) + ")");
  if (o.hub_share > 0 && o.hubs_per_style == 0) fail("hub_share > 0 needs hubs_per_style >= 1");
  if (!(o.taste >= 0 && o.taste <= 1)) fail("taste must be in [0, 1] (got " + std::to_string(o.taste) + ")");
  if (o.taste > 0 && o.taste_neighbours < 1)
    fail("taste_neighbours must be >= 1 when taste > 0 (got " + std::to_string(o.taste_neighbours) + ")");
  if (!(o.pulse_depth >= 0 && o.pulse_depth < 1))
    fail("pulse_depth must be in [0, 1) (got " + std::to_string(o.pulse_depth) + ")");
  if (o.threads < 0) fail("threads must be >= 0 (0: all cores; got " + std::to_string(o.threads) + ")");
  // Each item needs out_degree distinct targets other than itself within its style (all
  // of its picks may be same-style).
  size_t smallest = SIZE_MAX;
  for (const auto& pool : style_pools(o)) smallest = std::min(smallest, pool.size());
  if (static_cast<size_t>(o.out_degree) + 1 > smallest)
    fail("out_degree " + std::to_string(o.out_degree) + " needs styles of at least " +
         std::to_string(o.out_degree + 1) + " items, the smallest has " + std::to_string(smallest) +
         " (lower out_degree or styles, or add clips or graph-only items)");
}

std::string DemoCollectionSummary::describe() const {
  char head[512];
  std::snprintf(head, sizeof head,
                "demo collection: %lld clips of %.1f s at %d Hz (%.1f min of audio) in %zu styles, %lld graph-only "
                "items, %lld edges (%.1f%% across styles), %zu hubs; generated in %.1f s\n",
                static_cast<long long>(clips), clip_seconds, sample_rate, audio_seconds / 60.0, style_names.size(),
                static_cast<long long>(graph_only), static_cast<long long>(edges),
                edges > 0 ? 100.0 * static_cast<double>(cross_style_edges) / static_cast<double>(edges) : 0.0,
                hubs.size(), wall_seconds);
  std::string s = head;
  s += "  styles:";
  for (size_t i = 0; i < style_names.size(); ++i)
    s += (i ? ", " : " ") + style_names[i] + " " + std::to_string(clips_per_style[i]);
  s += "\n  catalog: " + catalog_path + "\n  edges:   " + edges_path + "\n";
  return s;
}

DemoCollectionSummary make_demo_collection(const std::string& dir, const DemoCollectionOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  validate_demo_options(o);
  const std::filesystem::path root(dir);
  std::error_code ec;
  std::filesystem::create_directories(root / "audio", ec);
  if (ec) throw std::runtime_error((root / "audio").string() + ": cannot create the directory: " + ec.message());

  const IdMaker id = id_maker(o);
  const auto pools = style_pools(o);
  const DemoGraph graph = build_graph(o, pools);
  // The clips first: the catalog, written next, then only names files that exist.
  write_clips(root, o, id);

  DemoCollectionSummary sum;
  sum.dir = dir;
  sum.catalog_path = (root / "catalog.csv").string();
  sum.edges_path = (root / "edges.csv").string();
  sum.clips = o.clips;
  sum.graph_only = resolved_graph_only(o);
  sum.sample_rate = o.sample_rate;
  sum.clip_seconds = o.clip_seconds;
  sum.audio_seconds = o.clips * o.clip_seconds;
  for (int s = 0; s < o.styles; ++s) {
    sum.style_names.emplace_back(demo_style_name(s));
    sum.clips_per_style.push_back((o.clips - s + o.styles - 1) / o.styles);
  }
  const int items = o.clips + resolved_graph_only(o);
  for (int i = 0; i < items; ++i) {
    sum.ids.push_back(id(i));
    sum.style_of.push_back((i < o.clips ? i : i - o.clips) % o.styles);
  }
  for (int32_t h : graph.hubs) sum.hubs.push_back(id(h));

  std::string catalog = "id,path,title,artist,style\n";
  for (int c = 0; c < o.clips; ++c) {
    const int style = demo_clip_style(o, c);
    Draws d(o.seed, kNamesStream + static_cast<uint64_t>(c));
    const char* adjective = kAdjectives[static_cast<size_t>(d.below(static_cast<int>(kAdjectives.size())))];
    const char* noun = kNouns[static_cast<size_t>(d.below(static_cast<int>(kNouns.size())))];
    const std::string artist = artist_name(style * kArtistsPerStyle + d.below(kArtistsPerStyle));
    catalog += id(c) + "," + clip_path(id, c) + "," + adjective + " " + noun + "," + artist + "," +
               demo_style_name(style) + "\n";
  }
  write_text_file(sum.catalog_path, catalog);

  std::string edges = o.weights ? "source,target,weight\n" : "source,target\n";
  for (size_t e = 0; e < graph.src.size(); ++e) {
    edges += id(graph.src[e]) + "," + id(graph.dst[e]);
    if (o.weights) {
      edges += ',';
      edges += std::to_string(graph.weight[e]);
    }
    edges += '\n';
  }
  write_text_file(sum.edges_path, edges);
  sum.edges = static_cast<int64_t>(graph.src.size());
  sum.cross_style_edges = graph.cross_style;
  sum.wall_seconds = seconds_since(t0);
  return sum;
}

}  // namespace mg::demo

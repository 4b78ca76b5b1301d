// The built-in demo's data: a synthetic music collection and the preference graph over it,
// generated so that `melgraph demo` runs anywhere without downloading anything.
//
// make_demo_collection(dir, options) writes
//   dir/audio/t0001.wav ...  one mono 16-bit PCM WAV per clip (clip_seconds at sample_rate)
//   dir/catalog.csv          id,path,title,artist,style   (paths relative to dir)
//   dir/edges.csv            source,target[,weight]       ("source recommends target")
// which graph/catalog.h (load_catalog) and graph/edge_list_io.h (load_edge_list) read as is.
//
// The music: each clip belongs to one of `styles` styles (clip i has style i % styles). A
// style fixes a tempo (which each clip plays at one of three feels: slower, as is, faster), a scale, a timbre (wavetable pluck / pad / square lead / saw bass /
// marimba / flute / organ, or an FM bell), a rhythm (melody grid, note density, an accent
// pattern for syncopation, swing) and a drum layer (synthesised kick, snare and hi-hat
// patterns, or none). Each clip draws its own tempo feel, key transposition, tempo jitter and melody
// (a random walk on the scale), gets a little white noise, and is normalised to the same RMS.
// So clips of one style sound alike and styles differ in pitch range, spectrum and rhythm:
// what an audio embedding can learn.
//
// The graph: every item (clips and graph-only items, which have a style but no audio)
// recommends `out_degree` distinct items: with probability cross_style an item of another
// style (noise), otherwise one of its own style, which is one of the style's hubs (popular
// clips) with probability hub_share. Hubs thus get several times the median in-degree, so a
// top-K selection by in-degree keeps them. Taste: a clip's other same-style recommendations
// go, with probability `taste`, to one of the `taste_neighbours` clips of its style closest in
// tempo (demo_clip_traits), else to any clip of the style. With 50 clips a style, the 12
// closest are nearly all of the clip's tempo feel. So the graph says more than "same style",
// and retrieving a clip's neighbours beyond style level takes hearing its tempo feel, which a
// clip's mean spectrum (the mean-log-mel baseline) does not show. (Tempo within a feel, a few
// percent, is not what the taste rests on: no model hears that in a 3 s crop.)
//
// Everything is a pure function of the options: the random numbers are Philox streams keyed
// by the seed and indexed by clip or item, so the bytes written do not depend on `threads`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mg::demo {

// The number of built-in style presets; DemoCollectionOptions::styles takes the first ones.
constexpr int kDemoStyleCount = 8;

// The preset's name ("chiptune", "ambient", ...), style in [0, kDemoStyleCount).
const char* demo_style_name(int style);

// A clip plays its style at one of kDemoTempoFeels tempo feels, the style's tempo times
// demo_feel_factor(feel): 0.8 (laid back), 1, 1.25 (driving), each within the style's jitter.
// The feels are far enough apart to be heard (a quarter more or fewer notes a second) but
// leave the mean spectrum nearly as it is.
constexpr int kDemoTempoFeels = 3;
double demo_feel_factor(int feel);

// What a clip's own draws made of its style: tempo feel, tempo and key (the tonic, as a MIDI
// note).
struct DemoClipTraits {
  int feel = 0;  // [0, kDemoTempoFeels)
  double bpm = 0;
  int key = 0;
};

struct DemoCollectionOptions {
  int clips = 300;             // items with audio (catalog rows, WAV files)
  int styles = 6;              // 1 .. kDemoStyleCount
  double clip_seconds = 10.0;  // duration of every clip
  int sample_rate = 22050;     // Hz, 8000 .. 96000
  int graph_only = -1;         // items in the graph without audio; -1: clips / 2
  int out_degree = 6;          // recommendations (out-edges) per item
  double cross_style = 0.1;    // fraction of recommendations that go to another style
  int hubs_per_style = 3;      // popular clips per style
  double hub_share = 0.15;     // fraction of same-style recommendations that go to a hub
  double taste = 0.8;          // fraction of the other same-style picks among the nearest in tempo
  int taste_neighbours = 12;   // how many clips of the style closest in tempo a taste pick draws from
  bool weights = false;        // write a third column: an integer weight 1..9 per edge
  uint64_t seed = 0;
  int threads = 0;             // worker threads for the audio; 0: all cores
};

// Throws std::invalid_argument naming the field, its value and what would work, e.g.
// "demo collection: out_degree 40 needs styles of at least 41 items, the smallest has 25
// (lower out_degree or styles, or add clips)".
void validate_demo_options(const DemoCollectionOptions& options);

struct DemoCollectionSummary {
  std::string dir, catalog_path, edges_path;  // catalog_path = dir/catalog.csv, edges_path = dir/edges.csv
  int64_t clips = 0;                  // items with audio
  int64_t graph_only = 0;             // items only in the graph
  int64_t edges = 0;
  int64_t cross_style_edges = 0;      // edges whose ends have different styles
  std::vector<std::string> style_names;   // [styles]
  std::vector<int64_t> clips_per_style;   // [styles]
  std::vector<std::string> hubs;          // the hub ids, style by style
  // The ground truth the graph was drawn from: every item's id (clips first, then the
  // graph-only items) and its style index. Evaluation may use it; training must not.
  std::vector<std::string> ids;
  std::vector<int> style_of;              // [ids.size()]
  int sample_rate = 0;
  double clip_seconds = 0;
  double audio_seconds = 0;           // clips * clip_seconds
  double wall_seconds = 0;            // time make_demo_collection took

  // A few lines for the terminal: counts, styles, paths, time.
  std::string describe() const;
};

// Creates `dir` (and dir/audio) when missing and writes the collection described above,
// every file atomically (temporary name, then rename), overwriting files of the same names
// and leaving other files alone. Throws std::invalid_argument for bad options and
// std::runtime_error naming the file when a file cannot be written.
DemoCollectionSummary make_demo_collection(const std::string& dir, const DemoCollectionOptions& options = {});

// The lower level, for tests and for callers that want samples in memory.
// The style of clip `clip` (clip % options.styles).
int demo_clip_style(const DemoCollectionOptions& options, int64_t clip);
// Clip `clip` as float samples [round(clip_seconds * sample_rate)] in [-1, 1]: what the WAV
// file holds before audio::write_wav rounds it to 16 bits (WavEncoding::Pcm16).
std::vector<float> render_demo_clip(const DemoCollectionOptions& options, int64_t clip);
// The tempo and key render_demo_clip draws for the clip (the same draws).
DemoClipTraits demo_clip_traits(const DemoCollectionOptions& options, int64_t clip);

}  // namespace mg::demo

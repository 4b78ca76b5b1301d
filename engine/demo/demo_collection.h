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
// style fixes a tempo, a scale, a timbre (wavetable pluck / pad / square lead / saw bass /
// marimba / flute / organ, or an FM bell), a rhythm (melody grid, note density, an accent
// pattern for syncopation, swing) and a drum layer (synthesised kick, snare and hi-hat
// patterns, or none). Each clip draws its own pulse, key transposition, tempo jitter and
// melody (a random walk on the scale), gets a little white noise, and is normalised to the
// same RMS. So clips of one style sound alike and styles differ in pitch range, spectrum and
// rhythm: what an audio embedding can learn.
//
// The pulse: the whole mix of a clip swells and fades at one of kDemoPulses rates (a tremolo,
// or the pumping of a side-chained mix), `pulse_depth` deep. A sinusoidal swell of a given
// depth has the same distribution of levels at any rate, so the pulse leaves a clip's mean
// spectrum, and so the mean-log-mel baseline, as they are; it lives in how the level moves
// over a few hundred milliseconds, which only a model that looks at time can hear.
//
// The graph: every item (clips and graph-only items, which have a style but no audio)
// recommends `out_degree` distinct items: with probability cross_style an item of another
// style (noise), otherwise one of its own style, which is one of the style's hubs (popular
// clips) with probability hub_share. Hubs thus get several times the median in-degree, so a
// top-K selection by in-degree keeps them. Taste: a clip's other same-style recommendations
// go, with probability `taste`, to one of its `taste_neighbours` nearest clips of its style
// (those of its pulse first, then by closeness in tempo), else to any clip of the style. With
// 50 clips a style (about 17 of each pulse), the 12 nearest nearly always share the clip's
// pulse. So the graph says more than "same style", and retrieving a clip's neighbours beyond
// style level takes hearing its pulse. (Tempo within a style, a few percent, orders the
// nearest but is not what the taste rests on: no model hears that in a 3 s crop.) With
// pulse_depth 0 the taste rests on nothing audible: the control that shows what training
// learns comes from the pulse.
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

// A clip's pulse rate is demo_pulse_hz(pulse), pulse in [0, kDemoPulses): 2, 3.3 or 5.5 Hz,
// each a factor of about 1.65 from the next, so that a few periods fit in a 3 s crop.
constexpr int kDemoPulses = 3;
double demo_pulse_hz(int pulse);

// What a clip's own draws made of its style: its pulse, tempo and key (the tonic, as a MIDI
// note).
struct DemoClipTraits {
  int pulse = 0;  // [0, kDemoPulses)
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
  double taste = 0.8;          // fraction of the other same-style picks among the clip's nearest
  int taste_neighbours = 12;   // how many nearest clips (same pulse first, then tempo) a taste pick draws from
  double pulse_depth = 0.8;    // how far the pulse dips the level, in [0, 1); 0: no pulse
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
// The pulse, tempo and key render_demo_clip draws for the clip (the same draws).
DemoClipTraits demo_clip_traits(const DemoCollectionOptions& options, int64_t clip);

}  // namespace mg::demo

// The demo collection's music (see demo_collection.h): the style presets, the voices
// (band-limited wavetables and an FM bell), the drums, the pulse, and the score of one clip.
//
// Cost: every note is added into the clip over its own span only, with a table lookup and an
// envelope update per sample; no per-sample trig or filtering. A 10 s clip at 22050 Hz takes
// a few milliseconds.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/demo/demo_collection.h"
#include "engine/demo/demo_draws.h"

namespace mg::demo {

namespace {

constexpr double kTwoPi = 6.283185307179586;

// ---- voices ------------------------------------------------------------------------------

enum class Voice { Square, Pad, Pluck, Bell, SawBass, Marimba, Flute, Organ };
constexpr int kVoices = 8;

// Envelope (attack ramp, exponential decay towards sustain, exponential release after the
// gate; times in seconds) and oscillator options of a voice.
struct VoiceShape {
  double attack, decay, sustain, release;
  double vibrato;  // depth as a fraction of the frequency, at 5.5 Hz; 0 = none
  double detune;   // a second oscillator at freq * (1 + detune); 0 = one oscillator
  double gain;
};

constexpr std::array<VoiceShape, kVoices> kShapes = {{
    {0.004, 0.25, 0.55, 0.03, 0.004, 0.0, 0.5},    // Square: chip lead
    {0.5, 1.5, 0.7, 0.6, 0.0, 0.004, 0.3},         // Pad: slow, chorused saw
    {0.002, 0.3, 0.0, 0.05, 0.0, 0.0, 0.8},        // Pluck
    {0.001, 0.9, 0.0, 0.3, 0.0, 0.0, 0.6},         // Bell (FM)
    {0.003, 0.12, 0.35, 0.02, 0.0, 0.003, 0.6},    // SawBass
    {0.001, 0.15, 0.0, 0.03, 0.0, 0.0, 0.9},       // Marimba
    {0.06, 0.6, 0.75, 0.08, 0.005, 0.0, 0.6},      // Flute
    {0.008, 1.0, 1.0, 0.02, 0.0, 0.0, 0.45},       // Organ
}};

// Amplitude of harmonic h >= 1 in the voice's waveform.
double harmonic(Voice v, int h) {
  const double dh = h;
  switch (v) {
    case Voice::Square: return h % 2 == 1 ? 1.0 / dh : 0.0;
    case Voice::Pad: return std::exp(-dh / 6.0) / dh;  // dark
    case Voice::Pluck: return std::abs(std::sin(kTwoPi * 0.5 * dh * 0.12)) / std::pow(dh, 0.8);  // plucked near the bridge: bright
    case Voice::Bell: return h == 1 ? 1.0 : 0.0;  // the bell is FM; its table is a sine
    case Voice::SawBass: return 1.0 / dh;
    case Voice::Marimba: return h == 1 ? 1.0 : h == 4 ? 0.35 : h == 10 ? 0.12 : 0.0;
    case Voice::Flute: return h == 1 ? 1.0 : h == 2 ? 0.3 : h == 3 ? 0.12 : h == 4 ? 0.04 : 0.0;
    case Voice::Organ: {
      constexpr double drawbars[9] = {0, 1.0, 0.8, 0.6, 0.5, 0, 0.35, 0, 0.4};
      return h <= 8 ? drawbars[h] : 0.0;
    }
  }
  return 0.0;
}

// Wavetables: per voice, kLevels band-limited versions holding harmonics 1 .. 2^level, so a
// note picks the richest table whose top harmonic stays below Nyquist. kTableSize samples
// per period plus one guard sample for interpolation; the phase is a uint32 fraction of a
// period, its top kTableBits bits index the table.
constexpr int kTableBits = 11;
constexpr int kTableSize = 1 << kTableBits;
constexpr int kLevels = 8;
constexpr int kStride = kTableSize + 1;

struct Tables {
  std::vector<float> sine;  // [kStride]
  std::vector<float> wave;  // [kVoices, kLevels, kStride]
  const float* table(Voice v, int level) const {
    return &wave[(static_cast<size_t>(v) * kLevels + static_cast<size_t>(level)) * kStride];
  }
};

const Tables& tables() {
  static const Tables t = [] {
    Tables r;
    // sin(2 pi h i / N) = s[(h i) mod N]: the harmonics need no trig beyond one period.
    std::vector<double> s(kTableSize);
    for (int i = 0; i < kTableSize; ++i) s[static_cast<size_t>(i)] = std::sin(kTwoPi * i / kTableSize);
    r.sine.resize(kStride);
    for (int i = 0; i <= kTableSize; ++i) r.sine[static_cast<size_t>(i)] = static_cast<float>(s[static_cast<size_t>(i % kTableSize)]);
    r.wave.resize(static_cast<size_t>(kVoices) * kLevels * kStride);
    std::vector<double> acc(kTableSize);
    for (int v = 0; v < kVoices; ++v)
      for (int level = 0; level < kLevels; ++level) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int h = 1; h <= (1 << level); ++h) {
          const double a = harmonic(static_cast<Voice>(v), h);
          if (a == 0.0) continue;
          for (int i = 0; i < kTableSize; ++i)
            acc[static_cast<size_t>(i)] += a * s[static_cast<size_t>((h * i) & (kTableSize - 1))];
        }
        double peak = 0;
        for (double x : acc) peak = std::max(peak, std::abs(x));
        float* dst = &r.wave[(static_cast<size_t>(v) * kLevels + static_cast<size_t>(level)) * kStride];
        for (int i = 0; i <= kTableSize; ++i)
          dst[i] = static_cast<float>(acc[static_cast<size_t>(i % kTableSize)] / peak);
      }
    return r;
  }();
  return t;
}

inline float lookup(const float* t, uint32_t phase) {
  const uint32_t i = phase >> (32 - kTableBits);
  const float frac = static_cast<float>(phase & ((1u << (32 - kTableBits)) - 1)) * (1.0f / (1u << (32 - kTableBits)));
  return t[i] + frac * (t[i + 1] - t[i]);
}

uint32_t phase_increment(double freq, int sample_rate) {
  return static_cast<uint32_t>(std::llround(freq / sample_rate * 4294967296.0) & 0xFFFFFFFFll);
}

// The richest table level whose harmonics all stay below 0.45 * sample_rate.
int table_level(double freq, int sample_rate) {
  const double top = 0.45 * sample_rate / freq;
  if (top < 2.0) return 0;
  return std::min(kLevels - 1, static_cast<int>(std::floor(std::log2(top))));
}

// xorshift64*: per-sample white noise in [-1, 1), seeded per clip from its Philox stream
// (a Philox block per sample would cost more than the rest of the clip).
struct WhiteNoise {
  uint64_t s;
  float next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<float>((s * 2685821657736338717ull) >> 40) * (2.0f / 16777216.0f) - 1.0f;
  }
};

// ---- styles ------------------------------------------------------------------------------

// 'x' at position i sets bit i: one bar of grid steps (melody accents) or of 16ths (drums).
constexpr uint32_t pattern(std::string_view p) {
  uint32_t m = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] == 'x') m |= 1u << i;
  return m;
}

struct Style {
  const char* name;
  Voice voice;
  double bpm, bpm_jitter;         // tempo centre and the +- fraction a clip may deviate
  std::array<double, 8> scale;    // semitones above the tonic (may be fractional)
  int scale_size;
  int root_midi, transpose;       // tonic of the centre key; a clip moves it by [-transpose, transpose]
  int octaves;                    // melody range above the tonic
  int steps_per_beat;             // melody grid: 1 quarters, 2 eighths, 4 sixteenths (4/4 bars)
  uint32_t accents;               // grid steps of a bar where notes are likely (syncopation)
  double density, off_density;    // chance of a note on an accented / other grid step
  double hold;                    // note length in grid steps
  double swing;                   // delay of every second grid step, in grid steps
  bool chords;                    // one 3-note chord per bar instead of a melody
  int bass_beats, bass_octaves;   // every bass_beats beats the voice plays the tonic, then the
                                  // fifth, bass_octaves below the key (a bass line, a gong); 0 = none
  uint32_t kick, snare, hat;      // drum patterns over the 16 sixteenths of a bar
  double drums;                   // drum level against the melody; 0 = no drums
};

constexpr std::array<double, 8> kMajor = {0, 2, 4, 5, 7, 9, 11};
constexpr std::array<double, 8> kLydian = {0, 2, 4, 6, 7, 9, 11};
constexpr std::array<double, 8> kPhrygian = {0, 1, 3, 5, 7, 8, 10};
constexpr std::array<double, 8> kDorian = {0, 2, 3, 5, 7, 9, 10};
constexpr std::array<double, 8> kMajorPenta = {0, 2, 4, 7, 9};
constexpr std::array<double, 8> kMinorPenta = {0, 3, 5, 7, 10};
constexpr std::array<double, 8> kSlendro = {0, 2.4, 4.8, 7.2, 9.6};  // 5 equal steps: off the 12-tone grid

// Ordered so that the first few (the default 6) differ the most.
const std::array<Style, kDemoStyleCount> kStyles = {{
    {"chiptune", Voice::Square, 150, 0.04, kMajorPenta, 5, 76, 3, 2, 4, pattern("x.x.x.xxx.x.x.xx"), 0.85, 0.35,
     0.9, 0.0, false, 0, 0, pattern("x.......x......."), pattern("....x.......x..."), pattern("x.x.x.x.x.x.x.x."), 0.35},
    {"ambient", Voice::Pad, 70, 0.05, kLydian, 7, 45, 4, 1, 1, pattern("xxxx"), 1.0, 1.0, 4.0, 0.0, true, 0, 0, 0, 0, 0,
     0.0},
    {"folk", Voice::Pluck, 100, 0.05, kMajor, 7, 64, 4, 2, 2, pattern("x.x.x.x."), 0.8, 0.45, 2.0, 0.0, false, 2, 1,
     0, 0, 0, 0.0},
    {"gamelan", Voice::Bell, 90, 0.05, kSlendro, 5, 67, 3, 2, 2, pattern("x..x..x."), 0.9, 0.3, 1.5, 0.0, false,
     4, 2, 0, 0, 0, 0.0},
    {"techno", Voice::SawBass, 128, 0.03, kPhrygian, 7, 33, 4, 1, 4, pattern("..x...x...x...x."), 0.95, 0.25, 0.6,
     0.0, false, 0, 0, pattern("x...x...x...x..."), pattern("....x.......x..."), pattern("..x...x...x...x."), 0.9},
    {"boom bap", Voice::Marimba, 88, 0.05, kMinorPenta, 5, 57, 5, 2, 4, pattern("x..x..x...x..x.."), 0.8, 0.15,
     1.5, 0.25, false, 0, 0, pattern("x......x..x....."), pattern("....x.......x..."), pattern("x.x.x.x.x.x.x.x."), 0.8},
    {"lullaby", Voice::Flute, 62, 0.05, kMajorPenta, 5, 64, 3, 1, 1, pattern("xxxx"), 0.9, 0.9, 1.0, 0.0, false,
     0, 0, 0, 0, 0, 0.0},
    {"jazz organ", Voice::Organ, 120, 0.05, kDorian, 7, 52, 4, 2, 2, pattern(".x..x..x"), 0.75, 0.35, 1.2, 0.33,
     false, 1, 1, pattern("x.......x......."), pattern("....x.......x..."), pattern("x...x.x.x...x.x."), 0.4},
}};

// ---- notes and drums ---------------------------------------------------------------------

struct Note {
  double freq;     // Hz
  int64_t start;   // sample
  int64_t gate;    // samples until the release
  float velocity;  // 0 .. 1
};

double midi_to_hz(double midi) { return 440.0 * std::pow(2.0, (midi - 69.0) / 12.0); }

// Adds the note into out [S] over its own span (attack .. release tail, clipped to the clip).
void add_note(Voice voice, const Note& nt, int sr, uint32_t phase0, float* out, int64_t S) {
  const VoiceShape& v = kShapes[static_cast<size_t>(voice)];
  const int64_t attack = std::max<int64_t>(1, std::llround(v.attack * sr));
  // A voice without sustain is silent 7 time constants after its attack, gate or not.
  const int64_t sounding =
      v.sustain > 0 ? nt.gate : std::min<int64_t>(nt.gate, attack + std::llround(7 * v.decay * sr));
  const int64_t end = std::min<int64_t>(S, nt.start + sounding + std::llround(6 * v.release * sr));
  if (nt.start >= end) return;
  const auto kd = static_cast<float>(std::exp(-1.0 / (v.decay * sr)));
  const auto kr = static_cast<float>(std::exp(-1.0 / (v.release * sr)));
  const auto sustain = static_cast<float>(v.sustain);
  const float level = nt.velocity * static_cast<float>(v.gain);
  const Tables& tb = tables();

  float dec = 1.0f, rel = 1.0f;
  auto envelope = [&](int64_t i) {
    if (i >= attack) dec *= kd;
    if (i >= nt.gate) rel *= kr;
    const float a = i < attack ? static_cast<float>(i) / static_cast<float>(attack) : 1.0f;
    return a * (sustain + (1.0f - sustain) * dec) * rel * level;
  };

  if (voice == Voice::Bell) {
    // Two-operator FM with an inharmonic ratio (1 : 1.4) and a decaying index: a bell. The
    // index is capped so the sidebands (about index + 1 of them) stay below Nyquist.
    constexpr double kRatio = 1.4;
    const double max_index = (0.45 * sr / nt.freq - 1.0) / kRatio - 1.0;
    auto index = static_cast<float>(std::clamp(max_index, 0.3, 4.0));
    const auto index_decay = static_cast<float>(std::exp(-1.0 / (0.5 * sr)));
    constexpr float kRadToPhase = 4294967296.0f / static_cast<float>(kTwoPi);
    const uint32_t ci = phase_increment(nt.freq, sr), mi = phase_increment(nt.freq * kRatio, sr);
    uint32_t cp = phase0, mp = 0;
    for (int64_t n = nt.start; n < end; ++n) {
      const float mod = index * lookup(tb.sine.data(), mp) * kRadToPhase;
      const uint32_t p = cp + static_cast<uint32_t>(static_cast<int64_t>(mod));
      out[n] += envelope(n - nt.start) * lookup(tb.sine.data(), p);
      cp += ci;
      mp += mi;
      index *= index_decay;
    }
    return;
  }

  const float* tab = tb.table(voice, table_level(nt.freq * (1 + v.detune), sr));
  const uint32_t inc = phase_increment(nt.freq, sr);
  const uint32_t inc2 = phase_increment(nt.freq * (1 + v.detune), sr);
  const uint32_t lfo_inc = phase_increment(5.5, sr);
  const auto depth = static_cast<float>(v.vibrato);
  uint32_t p = phase0, p2 = phase0 ^ 0x9E3779B9u, lfo = 0;
  for (int64_t n = nt.start; n < end; ++n) {
    float x = lookup(tab, p);
    if (v.detune != 0) {
      x = 0.5f * (x + lookup(tab, p2));
      p2 += inc2;
    }
    out[n] += envelope(n - nt.start) * x;
    if (depth != 0) {
      p += static_cast<uint32_t>(static_cast<float>(inc) * (1.0f + depth * lookup(tb.sine.data(), lfo)));
      lfo += lfo_inc;
    } else {
      p += inc;
    }
  }
}

enum class Drum { Kick, Snare, Hat };

void add_drum(Drum drum, int64_t start, float velocity, int sr, WhiteNoise& noise, float* out, int64_t S) {
  const Tables& tb = tables();
  const double seconds = drum == Drum::Kick ? 0.35 : drum == Drum::Snare ? 0.2 : 0.08;
  const int64_t end = std::min<int64_t>(S, start + std::llround(seconds * sr));
  const double tau = drum == Drum::Kick ? 0.2 : drum == Drum::Snare ? 0.07 : 0.018;
  const auto decay = static_cast<float>(std::exp(-1.0 / (tau * sr)));
  float amp = velocity;
  if (drum == Drum::Kick) {
    // A sine whose pitch falls from 155 Hz to 45 Hz within ~0.1 s.
    const auto sweep_decay = static_cast<float>(std::exp(-1.0 / (0.035 * sr)));
    float sweep = 110.0f;
    uint32_t p = 0;
    for (int64_t n = start; n < end; ++n) {
      out[n] += 0.9f * amp * lookup(tb.sine.data(), p);
      p += phase_increment(45.0 + sweep, sr);
      sweep *= sweep_decay;
      amp *= decay;
    }
  } else if (drum == Drum::Snare) {
    // Noise plus a short 190 Hz body.
    const uint32_t inc = phase_increment(190.0, sr);
    const auto body_decay = static_cast<float>(std::exp(-1.0 / (0.04 * sr)));
    float body = velocity;
    uint32_t p = 0;
    for (int64_t n = start; n < end; ++n) {
      out[n] += 0.5f * amp * noise.next() + 0.4f * body * lookup(tb.sine.data(), p);
      p += inc;
      amp *= decay;
      body *= body_decay;
    }
  } else {
    // The first difference of white noise: its energy sits in the top octaves.
    float prev = 0.0f;
    for (int64_t n = start; n < end; ++n) {
      const float x = noise.next();
      out[n] += 0.3f * amp * (x - prev);
      prev = x;
      amp *= decay;
    }
  }
}

}  // namespace

const char* demo_style_name(int style) {
  if (style < 0 || style >= kDemoStyleCount)
    throw std::out_of_range("demo style " + std::to_string(style) + " does not exist (there are " +
                            std::to_string(kDemoStyleCount) + ")");
  return kStyles[static_cast<size_t>(style)].name;
}

double demo_pulse_hz(int pulse) {
  static constexpr std::array<double, kDemoPulses> kHz = {2.0, 3.3, 5.5};
  if (pulse < 0 || pulse >= kDemoPulses)
    throw std::out_of_range("demo pulse " + std::to_string(pulse) + " is not in [0, " + std::to_string(kDemoPulses) +
                            ")");
  return kHz[static_cast<size_t>(pulse)];
}

int demo_clip_style(const DemoCollectionOptions& options, int64_t clip) {
  return static_cast<int>(clip % options.styles);
}

namespace {

// The first draws of a clip's stream: the noise seed, the pulse, the tempo, the key. Shared by
// render_demo_clip and demo_clip_traits so that the two can never disagree.
DemoClipTraits draw_traits(const Style& st, Draws& d, uint64_t* noise_seed) {
  *noise_seed = d.u64() | 1;
  DemoClipTraits t;
  t.pulse = d.below(kDemoPulses);
  t.bpm = st.bpm * (1.0 + st.bpm_jitter * (2.0 * d.uniform() - 1.0));
  t.key = st.root_midi + d.between(-st.transpose, st.transpose);
  return t;
}

}  // namespace

DemoClipTraits demo_clip_traits(const DemoCollectionOptions& o, int64_t clip) {
  validate_demo_options(o);
  if (clip < 0 || clip >= o.clips)
    throw std::out_of_range("demo clip " + std::to_string(clip) + " is not in [0, " + std::to_string(o.clips) + ")");
  Draws d(o.seed, kClipStream + static_cast<uint64_t>(clip));
  uint64_t noise_seed = 0;
  return draw_traits(kStyles[static_cast<size_t>(demo_clip_style(o, clip))], d, &noise_seed);
}

namespace {

// What the parts of one clip share while render_demo_clip draws them, in its order (the
// draws come from one stream, so the order is part of the output).
struct ClipCanvas {
  const Style& st;
  const DemoCollectionOptions& o;
  Draws& d;
  WhiteNoise& noise;
  float* out;  // [S]
  int64_t S;
  int sr;
  int key;  // MIDI note of the scale's root
  double bpm;
  double step_s;  // one melody grid step
  int64_t at(double seconds) const { return static_cast<int64_t>(std::llround(seconds * sr)); }
  double degree_midi(int deg) const {
    const int octave = deg / st.scale_size;  // whole octaves above the root
    return key + 12 * octave + st.scale[static_cast<size_t>(deg % st.scale_size)];
  }
};

// One chord per bar (I, IV, V or vi of the scale), held to the next.
void draw_chords(const ClipCanvas& c) {
  constexpr int kRoots[4] = {0, 3, 4, 5};
  const double bar_s = 4 * c.st.steps_per_beat * c.step_s;
  for (int b = 0; b * bar_s < c.o.clip_seconds; ++b) {
    const int root = kRoots[c.d.below(4)];
    for (int k = 0; k < 3; ++k)
      add_note(c.st.voice, Note{midi_to_hz(c.degree_midi(root + 2 * k)), c.at(b * bar_s), c.at(1.02 * bar_s), 0.7f},
               c.sr, c.d.u32(), c.out, c.S);
  }
}

// A random walk on the scale: mostly steps, some repeats, a few leaps; the first grid step
// always plays so that even a short clip has a note.
void draw_melody(const ClipCanvas& c) {
  const Style& st = c.st;
  Draws& d = c.d;
  const int bar_steps = 4 * st.steps_per_beat;
  const int top_degree = st.scale_size * st.octaves;
  int deg = d.below(st.scale_size);
  for (int k = 0; k * c.step_s < c.o.clip_seconds; ++k) {
    const bool accent = (st.accents >> (k % bar_steps) & 1u) != 0;
    if (k > 0 && d.uniform() >= (accent ? st.density : st.off_density)) continue;
    const double r = d.uniform();
    int move = 0;
    if (r < 0.1)
      move = d.between(3, 5);
    else if (r < 0.25)
      move = 0;
    else if (r < 0.85)
      move = 1;
    else
      move = 2;
    if (d.below(2) == 1) move = -move;
    deg += move;
    if (deg < 0) deg = -deg;
    if (deg > top_degree) deg = 2 * top_degree - deg;
    deg = std::clamp(deg, 0, top_degree);
    const double onset = (k + (k % 2 == 1 ? st.swing : 0.0)) * c.step_s;
    const double gate = st.hold * c.step_s * (0.85 + 0.3 * d.uniform());
    const auto velocity = static_cast<float>((accent ? 1.0 : 0.75) * (0.85 + 0.15 * d.uniform()));
    add_note(st.voice, Note{midi_to_hz(c.degree_midi(deg)), c.at(onset), std::max<int64_t>(1, c.at(gate)), velocity},
             c.sr, d.u32(), c.out, c.S);
  }
}

// Root and fifth an octave or more below, every bass_beats beats.
void draw_bass(const ClipCanvas& c) {
  const Style& st = c.st;
  const double every = st.bass_beats * st.steps_per_beat * c.step_s;
  const double fifth = st.scale[static_cast<size_t>(std::min(st.scale_size - 1, st.scale_size / 2 + 1))];
  for (int b = 0; b * every < c.o.clip_seconds; ++b) {
    const double midi = c.key - 12.0 * st.bass_octaves + (b % 2 == 1 ? fifth : 0.0);
    add_note(st.voice, Note{midi_to_hz(midi), c.at(b * every), c.at(0.9 * every), 0.8f}, c.sr, c.d.u32(), c.out, c.S);
  }
}

// The drum grid is 16ths; swing moves the 16ths that fall on odd melody grid steps.
void draw_drums(const ClipCanvas& c) {
  const Style& st = c.st;
  Draws& d = c.d;
  const double sixteenth = 60.0 / c.bpm / 4;
  const int per_step = 4 / st.steps_per_beat;  // 16ths per melody grid step
  for (int s = 0; s * sixteenth < c.o.clip_seconds; ++s) {
    const int pos = s % 16;
    const bool swung = s % per_step == 0 && (s / per_step) % 2 == 1;
    const int64_t start = c.at((s + (swung ? st.swing * per_step : 0.0)) * sixteenth);
    const auto level = static_cast<float>(st.drums);
    if (st.kick >> pos & 1u)
      add_drum(Drum::Kick, start, level * static_cast<float>(0.9 + 0.1 * d.uniform()), c.sr, c.noise, c.out, c.S);
    if (st.snare >> pos & 1u)
      add_drum(Drum::Snare, start, level * static_cast<float>(0.8 + 0.2 * d.uniform()), c.sr, c.noise, c.out, c.S);
    if ((st.hat >> pos & 1u) && d.uniform() >= 0.05)
      add_drum(Drum::Hat, start, level * static_cast<float>(0.5 + 0.3 * d.uniform()), c.sr, c.noise, c.out, c.S);
  }
}

// The whole mix swells and fades: gain 1 - depth (1 + sin) / 2 at the clip's pulse rate, from
// a random phase. The sine comes from the wavetable like the voices' (no per-sample trig).
void apply_pulse(const ClipCanvas& c, int pulse) {
  const float depth = static_cast<float>(c.o.pulse_depth);
  const uint32_t phase0 = c.d.u32();  // drawn even at depth 0, so the depth changes no other draw
  if (depth == 0.0f) return;
  const float* sine = tables().sine.data();
  const uint32_t inc = phase_increment(demo_pulse_hz(pulse), c.sr);
  uint32_t p = phase0;
  for (int64_t n = 0; n < c.S; ++n, p += inc) c.out[n] *= 1.0f - depth * (0.5f + 0.5f * lookup(sine, p));
}

// Same loudness for every clip (RMS 0.1, -20 dBFS), a noise floor at about -60 dBFS, and a
// peak limit that keeps the 16-bit conversion from clipping.
void master(float* out, int64_t S, WhiteNoise& noise) {
  double energy = 0;
  for (int64_t n = 0; n < S; ++n) energy += static_cast<double>(out[n]) * out[n];
  const double rms = std::sqrt(energy / static_cast<double>(std::max<int64_t>(1, S)));
  const auto gain = static_cast<float>(rms > 1e-9 ? 0.1 / rms : 0.0);
  float peak = 0;
  for (int64_t n = 0; n < S; ++n) {
    out[n] = out[n] * gain + 0.0017f * noise.next();
    peak = std::max(peak, std::abs(out[n]));
  }
  if (peak > 0.98f) {
    const float limit = 0.98f / peak;
    for (int64_t n = 0; n < S; ++n) out[n] *= limit;
  }
}

}  // namespace

std::vector<float> render_demo_clip(const DemoCollectionOptions& o, int64_t clip) {
  validate_demo_options(o);
  if (clip < 0 || clip >= o.clips)
    throw std::out_of_range("demo clip " + std::to_string(clip) + " is not in [0, " + std::to_string(o.clips) + ")");
  const Style& st = kStyles[static_cast<size_t>(demo_clip_style(o, clip))];
  const int64_t S = std::llround(o.clip_seconds * o.sample_rate);
  std::vector<float> audio(static_cast<size_t>(S), 0.0f);  // [S]
  Draws d(o.seed, kClipStream + static_cast<uint64_t>(clip));
  uint64_t noise_seed = 0;
  const DemoClipTraits traits = draw_traits(st, d, &noise_seed);
  WhiteNoise noise{noise_seed};
  const ClipCanvas c{
      st, o, d, noise, audio.data(), S, o.sample_rate, traits.key, traits.bpm, 60.0 / traits.bpm / st.steps_per_beat};
  if (st.chords)
    draw_chords(c);
  else
    draw_melody(c);
  if (st.bass_beats > 0) draw_bass(c);
  if (st.drums > 0) draw_drums(c);
  apply_pulse(c, traits.pulse);
  master(audio.data(), S, noise);
  return audio;
}

}  // namespace mg::demo

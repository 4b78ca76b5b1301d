#include "engine/audio/wav_writer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

namespace mg::audio {
namespace {

void put_u16(std::string& b, uint32_t v) {
  b += static_cast<char>(v & 0xff);
  b += static_cast<char>((v >> 8) & 0xff);
}
void put_u32(std::string& b, uint32_t v) {
  put_u16(b, v & 0xffff);
  put_u16(b, v >> 16);
}
void put_tag(std::string& b, const char* tag) { b.append(tag, 4); }

// A name no other writer (thread or process) uses at the same time.
std::string temp_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

}  // namespace

void write_wav(const std::string& path, std::span<const float> interleaved, int channels, int sample_rate,
               WavEncoding encoding) {
  if (channels < 1 || channels > 65535 || sample_rate < 1)
    throw WavError(path + ": cannot write a WAV with " + std::to_string(channels) + " channels at " +
                   std::to_string(sample_rate) + " Hz");
  if (interleaved.size() % static_cast<size_t>(channels) != 0)
    throw WavError(path + ": " + std::to_string(interleaved.size()) + " samples is not a whole number of " +
                   std::to_string(channels) + "-channel frames");
  const bool is_float = encoding == WavEncoding::Float32;
  const uint32_t bytes = is_float ? 4 : 2;
  const uint64_t data_bytes = interleaved.size() * bytes;
  if (data_bytes > 0xffffffffull - 64) throw WavError(path + ": more than 4 GiB of samples does not fit a WAV");
  const uint32_t frames = static_cast<uint32_t>(interleaved.size() / static_cast<size_t>(channels));
  const uint32_t ch = static_cast<uint32_t>(channels), rate = static_cast<uint32_t>(sample_rate);

  // Header: RIFF, fmt (16 bytes for PCM; 18 with cbSize = 0 for float), fact (float only), data.
  std::string h;
  const uint32_t fmt_size = is_float ? 18 : 16;
  const uint32_t header_size = 12 + 8 + fmt_size + (is_float ? 12 : 0) + 8;
  put_tag(h, "RIFF");
  put_u32(h, static_cast<uint32_t>(header_size - 8 + data_bytes));
  put_tag(h, "WAVE");
  put_tag(h, "fmt ");
  put_u32(h, fmt_size);
  put_u16(h, is_float ? 3 : 1);  // WAVE_FORMAT_IEEE_FLOAT or WAVE_FORMAT_PCM
  put_u16(h, ch);
  put_u32(h, rate);
  put_u32(h, rate * ch * bytes);  // bytes per second
  put_u16(h, ch * bytes);         // block align
  put_u16(h, bytes * 8);
  if (is_float) {
    put_u16(h, 0);  // cbSize
    put_tag(h, "fact");
    put_u32(h, 4);
    put_u32(h, frames);
  }
  put_tag(h, "data");
  put_u32(h, static_cast<uint32_t>(data_bytes));

  std::vector<char> body(static_cast<size_t>(data_bytes));
  if (is_float) {
    static_assert(std::endian::native == std::endian::little, "WAV floats are little-endian");
    std::memcpy(body.data(), interleaved.data(), body.size());
  } else {
    for (size_t i = 0; i < interleaved.size(); ++i) {
      const long q = std::clamp(std::lround(static_cast<double>(interleaved[i]) * 32768.0), -32768L, 32767L);
      const auto v = static_cast<uint16_t>(static_cast<int16_t>(q));
      body[2 * i] = static_cast<char>(v & 0xff);
      body[2 * i + 1] = static_cast<char>(v >> 8);
    }
  }

  const std::string tmp = temp_name(path);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw WavError(tmp + ": cannot create: " + std::strerror(errno));
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    f.write(body.data(), static_cast<std::streamsize>(body.size()));
    f.close();
    if (!f) {
      std::remove(tmp.c_str());
      throw WavError(tmp + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw WavError(path + ": rename from " + tmp + " failed: " + ec.message());
  }
}

}  // namespace mg::audio

// Damage met inside a stream that still decoded: what decoded is kept, and this says what was
// lost, for DecodedAudio::warning. Both decoders behind AudioSource (libavcodec's and
// libmpg123's) record into it, so a damaged file reads the same whichever decoded it.
#pragma once
#include <string>

namespace mg::audio {

struct StreamDamage {
  int corrupt_packets = 0;     // packets the decoder rejected, or stretches it skipped to resync
  std::string first_corruption;
  int incomplete_packets = 0;  // packets the file ends inside
  std::string read_error;      // why the rest of the file could not be read

  void note_corrupt(const std::string& what) {
    if (corrupt_packets++ == 0) first_corruption = what;
  }

  // "" when there was no damage.
  std::string text() const {
    std::string p;
    if (corrupt_packets > 0)
      p = std::to_string(corrupt_packets) + " damaged packet" + (corrupt_packets == 1 ? "" : "s") + " (first: " +
          first_corruption + ")";
    if (incomplete_packets > 0)
      p += (p.empty() ? "" : "; ") + std::string("truncated: ") + std::to_string(incomplete_packets) +
           (incomplete_packets == 1 ? " packet is" : " packets are") + " incomplete (the file is cut short)";
    if (!read_error.empty()) p += (p.empty() ? "" : "; ") + std::string("the rest of the file is unreadable: ") + read_error;
    return p;
  }
};

}  // namespace mg::audio

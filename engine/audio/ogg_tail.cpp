#include "engine/audio/ogg_tail.h"

#include "engine/audio/ogg_pages.h"

namespace mg::audio {

std::string ogg_tail_problem(const std::string& path) {
  const OggTail tail = read_ogg_tail(path);
  if (tail.pages.empty()) return std::string();
  if (tail.bytes_after_last > 0)
    return "truncated: the file ends inside an Ogg page (" + std::to_string(tail.bytes_after_last) +
           " bytes after the last whole page)";
  if (!tail.pages.back().ends_stream()) return "truncated: the last Ogg page has no end-of-stream mark";
  return std::string();
}

}  // namespace mg::audio

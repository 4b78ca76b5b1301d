// Whether an Ogg file ends cleanly. libavformat's Ogg demuxer stops without a word at a page
// that the end of the file cuts short, and takes the duration from the last whole page, so
// a truncated Ogg file would otherwise look complete. Reads only the file's last 128 KiB.
#pragma once
#include <string>

namespace mg::audio {

// "" when the file ends with a whole, CRC-valid page marked end-of-stream (or when no whole
// page can be found in the tail to judge by); otherwise what is wrong, for a warning.
std::string ogg_tail_problem(const std::string& path);

}  // namespace mg::audio

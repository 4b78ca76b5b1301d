#include "engine/audio/ffmpeg_util.h"

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <mutex>

extern "C" {
#include <libavutil/log.h>
}

namespace mg::audio {

std::string av_error_text(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  if (av_strerror(code, buf, sizeof buf) < 0) return "FFmpeg error " + std::to_string(code);
  return std::string(buf);
}

namespace {

thread_local ThreadLog t_log;

bool mentions_drm(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text.find("drm") != std::string::npos || text.find("encrypt") != std::string::npos;
}

void quiet_log(void* avcl, int level, const char* fmt, va_list vl) {
  if (level > AV_LOG_WARNING) return;
  char line[512] = {};
  int print_prefix = 0;  // the component is added below, without FFmpeg's "@ 0x..." address
  va_list copy;
  va_copy(copy, vl);
  av_log_format_line2(nullptr, level, fmt, copy, line, sizeof line, &print_prefix);
  va_end(copy);
  std::string text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.empty()) return;
  if (mentions_drm(text)) t_log.mentions_drm = true;
  if (level > AV_LOG_ERROR) return;
  const AVClass* cls = avcl ? *static_cast<const AVClass* const*>(avcl) : nullptr;
  const char* component = cls && cls->item_name ? cls->item_name(avcl) : nullptr;
  t_log.last_error = component ? std::string(component) + ": " + text : text;
  ++t_log.errors;
}

}  // namespace

void install_quiet_ffmpeg_log() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Messages above warning level are never formatted: the callback would drop them anyway.
    av_log_set_level(AV_LOG_WARNING);
    av_log_set_callback(quiet_log);
  });
}

void reset_thread_log() { t_log = ThreadLog{}; }
const ThreadLog& thread_log() { return t_log; }

}  // namespace mg::audio

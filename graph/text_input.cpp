#include "graph/text_input.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "engine/io/utf8.h"
#include "graph/edge_list.h"

namespace mg::graph::detail {

namespace {

// A line longer than this is not a text edge list (e.g. a binary file given by mistake);
// without a cap the buffer would grow to the file's size.
constexpr size_t kMaxLine = size_t{64} << 20;

class GzSource final : public ByteSource {
 public:
  GzSource(gzFile f, std::string path, std::string what) : f_(f), path_(std::move(path)), what_(std::move(what)) {}
  ~GzSource() override { gzclose(f_); }
  GzSource(const GzSource&) = delete;
  GzSource& operator=(const GzSource&) = delete;

  size_t read(char* buf, size_t n) override {
    const auto want = static_cast<unsigned>(std::min<size_t>(n, size_t{1} << 30));
    const int got = gzread(f_, buf, want);
    int err = Z_OK;
    const char* msg = gzerror(f_, &err);
    if (got < 0) {
      if (err == Z_ERRNO)
        throw GraphInputError(what_ + " " + path_ + ": read failed: " + std::strerror(errno));
      throw GraphInputError(what_ + " " + path_ + ": corrupt gzip data (zlib: " + (msg ? msg : "?") +
                            "); re-create the file or pass it uncompressed");
    }
    // zlib reports a stream that ends mid-way only as Z_BUF_ERROR once the input is exhausted.
    if (got == 0 && err == Z_BUF_ERROR)
      throw GraphInputError(what_ + " " + path_ +
                            ": truncated gzip data (the compressed stream ends early); re-create or "
                            "re-copy the file");
    return static_cast<size_t>(got);
  }

 private:
  gzFile f_;
  std::string path_, what_;
};

class StreamSource final : public ByteSource {
 public:
  StreamSource(std::istream& in, std::string source) : in_(in), source_(std::move(source)) {}
  size_t read(char* buf, size_t n) override {
    in_.read(buf, static_cast<std::streamsize>(n));
    if (in_.bad()) throw GraphInputError(source_ + ": read failed");
    return static_cast<size_t>(in_.gcount());
  }

 private:
  std::istream& in_;
  std::string source_;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

}  // namespace

std::unique_ptr<ByteSource> open_file(const std::string& path, const std::string& what, bool* is_gzip) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st))
    throw GraphInputError(what + " " + path + ": no such file; check the path");
  if (std::filesystem::is_directory(st))
    throw GraphInputError(what + " " + path + ": is a directory, expected a file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr)
    throw GraphInputError(what + " " + path + ": cannot open: " + std::strerror(errno));
  // A larger input buffer than zlib's 8 KiB default: fewer read syscalls on 100+ MB files.
  gzbuffer(f, 1u << 18);
  // gzdirect peeks at the first bytes: 1 means no gzip magic, the bytes pass through as is.
  const bool gz = gzdirect(f) == 0;
  if (is_gzip) *is_gzip = gz;
  return std::make_unique<GzSource>(f, path, what);
}

std::unique_ptr<ByteSource> wrap_stream(std::istream& in, const std::string& source) {
  return std::make_unique<StreamSource>(in, source);
}

LineReader::LineReader(std::unique_ptr<ByteSource> src, std::string source, size_t chunk)
    : src_(std::move(src)),
      source_(std::move(source)),
      buf_(std::make_unique_for_overwrite<char[]>(std::max<size_t>(chunk, 16))),
      size_(std::max<size_t>(chunk, 16)) {}

bool LineReader::next(std::string_view& line) {
  for (;;) {
    const char* base = buf_.get();
    if (begin_ < end_) {
      const void* nl = std::memchr(base + begin_, '\n', end_ - begin_);
      if (nl != nullptr) {
        const size_t pos = static_cast<size_t>(static_cast<const char*>(nl) - base);
        line = std::string_view(base + begin_, pos - begin_);
        begin_ = pos + 1;
        break;
      }
    }
    if (eof_) {
      if (begin_ == end_) return false;
      line = std::string_view(base + begin_, end_ - begin_);  // last line, no final newline
      begin_ = end_;
      break;
    }
    if (begin_ > 0) {
      std::memmove(buf_.get(), base + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == size_) {
      if (size_ >= kMaxLine)
        throw GraphInputError(source_ + ":" + std::to_string(line_no_ + 1) + ": line longer than " +
                              std::to_string(kMaxLine >> 20) + " MiB: not a text file?");
      auto bigger = std::make_unique_for_overwrite<char[]>(size_ * 2);
      std::memcpy(bigger.get(), buf_.get(), end_);
      buf_ = std::move(bigger);
      size_ *= 2;
    }
    const size_t got = src_->read(buf_.get() + end_, size_ - end_);
    if (got == 0) eof_ = true;
    end_ += got;
  }
  ++line_no_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (first_) {
    first_ = false;
    if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
  }
  return true;
}

std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

bool is_comment(std::string_view line) {
  const auto t = trim(line);
  return !t.empty() && t.front() == '#';
}

bool is_blank(std::string_view line) { return trim(line).empty(); }

const char* const kUnterminatedQuote = "unterminated quoted field";

int split_fields(std::string_view line, char delim, std::string_view* fields, int max_fields,
                 std::vector<std::string>& scratch, const char** error) {
  if (scratch.size() < static_cast<size_t>(max_fields)) scratch.resize(static_cast<size_t>(max_fields));
  const size_t len = line.size();
  size_t i = 0;
  int n = 0;
  for (;;) {
    if (n == max_fields) return max_fields + 1;
    // Leading whitespace, but never the delimiter itself (a tab in TSV).
    size_t j = i;
    while (j < len && line[j] != delim && is_space(line[j])) ++j;
    size_t k;  // the delimiter ending this field, or len
    if (j < len && line[j] == '"') {
      std::string& out = scratch[static_cast<size_t>(n)];
      out.clear();
      k = j + 1;
      bool closed = false;
      while (k < len) {
        if (line[k] == '"') {
          if (k + 1 < len && line[k + 1] == '"') {
            out.push_back('"');
            k += 2;
            continue;
          }
          closed = true;
          ++k;
          break;
        }
        out.push_back(line[k++]);
      }
      if (!closed) {
        *error = kUnterminatedQuote;
        return -1;
      }
      while (k < len && line[k] != delim && is_space(line[k])) ++k;
      if (k < len && line[k] != delim) {
        *error = "text after a closing quote";
        return -1;
      }
      fields[n++] = out;  // the quotes delimit the value: no trimming inside
    } else {
      k = line.find(delim, j);
      if (k == std::string_view::npos) k = len;
      fields[n++] = trim(line.substr(j, k - j));
    }
    if (k >= len) return n;
    i = k + 1;
  }
}

std::string printable(std::string_view text, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  while (i < text.size() && out.size() < max_bytes) {
    const auto c = static_cast<unsigned char>(text[i]);
    // Control bytes are shown as escapes though they are valid UTF-8.
    const size_t n = c < 0x20 || c == 0x7f ? 0 : utf8_sequence_length(text, i);
    if (n > 0) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    if (c == '\t') {  // a TSV's delimiter: shown as it is
      out += '\t';
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    }
    ++i;
  }
  if (i < text.size()) out += "...";
  return out;
}

std::string bad_line_message(const std::string& source, int64_t line_no, std::string_view what,
                             std::string_view text) {
  return source + ":" + std::to_string(line_no) + ": " + std::string(what) + ": " + printable(text) +
         " (use --skip-bad-lines to skip such lines)";
}

std::string utf8_problem(std::string_view text, std::string_view what) {
  const size_t bad = first_invalid_utf8(text);
  if (bad == std::string_view::npos) return std::string();
  return "is not UTF-8 (byte " + hex_byte(text, bad) + " at offset " + std::to_string(bad) + "); " + std::string(what) +
         " is read as UTF-8: convert it, e.g. with iconv -f latin1 -t utf-8";
}

bool parse_finite_float(std::string_view s, float& out) {
  if (!s.empty() && s.front() == '+') {  // from_chars rejects a leading '+'; "+-1" stays invalid
    s.remove_prefix(1);
    if (!s.empty() && s.front() == '-') return false;
  }
  if (s.empty()) return false;
  float v = 0.0f;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return false;
  out = v;
  return true;
}

}  // namespace mg::graph::detail

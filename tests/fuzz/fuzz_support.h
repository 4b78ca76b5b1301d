// What the fuzz targets share: most parsers under test take a path, so each input is written to
// one temporary file per process, rewritten for every input. A file of its own per process lets
// libFuzzer's -jobs/-workers run side by side.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace mg::fuzz {

// The file's name, removed at a normal exit (after a crash libFuzzer has saved the input itself).
struct TempFile {
  explicit TempFile(const char* name) {
    const char* dir = std::getenv("TMPDIR");
    path = std::string((dir && *dir) ? dir : "/tmp") + "/melgraph-fuzz-" + std::to_string(getpid()) + "-" + name;
  }
  ~TempFile() { std::remove(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path;
};

// Writes the input to <TMPDIR>/melgraph-fuzz-<pid>-<name> and returns its path; `name` keeps
// the extension, as a user's file would have one. Aborts when the file cannot be written: a run
// that silently tested nothing would report a clean result.
inline const std::string& input_file(const uint8_t* data, size_t size, const char* name) {
  static const TempFile file(name);
  FILE* f = std::fopen(file.path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(file.path.c_str());
    std::abort();
  }
  return file.path;
}

}  // namespace mg::fuzz

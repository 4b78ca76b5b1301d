// Writing a file so that a crash or a full disk leaves the previous file or the new one, never
// half of one: the pieces go to "<path>.tmp-<pid>", which is fsync'ed and renamed over `path`,
// and then the directory is fsync'ed so the rename itself is durable. On failure the temporary
// file is removed and the target is untouched.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>

namespace mg {

struct AtomicWriteError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct FilePiece {
  const void* data;
  size_t bytes;
};

// Throws AtomicWriteError naming the file and the call that failed (create, write, fsync,
// close, rename).
void write_file_atomic(const std::string& path, std::span<const FilePiece> pieces);
inline void write_file_atomic(const std::string& path, std::initializer_list<FilePiece> pieces) {
  write_file_atomic(path, std::span<const FilePiece>(pieces.begin(), pieces.size()));
}
inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, {FilePiece{text.data(), text.size()}});
}

}  // namespace mg

// Writing a file so that a crash or a full disk leaves the previous file or the new one, never
// half of one: the pieces go to a temporary name of this writer's own (temp_path_for), which is
// fsync'ed and renamed over `path`, and then the directory is fsync'ed so the rename itself is
// durable. On failure the temporary file is removed and the target is untouched; temporary
// files that killed writers left beside `path` are removed first (remove_stale_temps).
#pragma once
#include <cstddef>
#include <functional>
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

// "<path>.tmp-<pid>-<n>": unique among the writers of this process and of any other, so two
// concurrent writers of one target never share a temporary file.
std::string temp_path_for(const std::string& path);

// Removes the temporary files "<path>.tmp-<pid>..." (and an SQLite "-journal" beside them) whose
// process no longer exists: what a writer killed mid-write leaves. Those of live processes stay.
void remove_stale_temps(const std::string& path);

// Throws AtomicWriteError naming the file and the call that failed (create, write, fsync,
// close, rename).
void write_file_atomic(const std::string& path, std::span<const FilePiece> pieces);
inline void write_file_atomic(const std::string& path, std::initializer_list<FilePiece> pieces) {
  write_file_atomic(path, std::span<const FilePiece>(pieces.begin(), pieces.size()));
}
inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, {FilePiece{text.data(), text.size()}});
}

// The same for content too large to hold twice in memory (a FAISS index): `produce` is called
// once with a function that appends bytes to the temporary file, and the file is made `path`
// when it returns. An exception from `produce` leaves `path` untouched and is rethrown.
using AppendBytes = std::function<void(const void* data, size_t bytes)>;
void write_file_atomic_streamed(const std::string& path, const std::function<void(const AppendBytes&)>& produce);

}  // namespace mg

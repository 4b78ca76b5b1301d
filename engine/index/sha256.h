// SHA-256 (FIPS 180-4), for the checkpoint hash an index records: a query by audio refuses a
// checkpoint whose hash differs from the one the index was exported with. Self-contained (our
// dependencies have no SHA-256 we link); checked against the FIPS 180-4 test vectors.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mg::index {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t bytes);
  // The digest of everything updated so far. The object is spent afterwards.
  std::array<uint8_t, 32> finish();

 private:
  void block(const uint8_t* p);  // p [64]
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buffered_ = 0;
  uint64_t total_ = 0;  // bytes
};

// Lower-case hex of a digest.
std::string to_hex(const std::array<uint8_t, 32>& digest);
std::string sha256_hex(const void* data, size_t bytes);
// Streams the file; throws std::runtime_error naming it when it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace mg::index

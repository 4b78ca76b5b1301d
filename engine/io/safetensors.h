// Reading and writing the safetensors format (an 8-byte little-endian header length, a JSON
// header mapping names to {dtype, shape, data_offsets}, then the raw little-endian data).
// Used for checkpoints and for the reference data exchanged with the PyTorch test scripts.
#pragma once
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace mg {

struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DType { F32, F64, I32, I64 };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

struct StTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian, row-major

  int64_t numel() const;
  // Copies converted to the requested type (F32/F64/I32/I64 sources). to_i32 throws
  // SafetensorsError for a value int32 cannot hold (NaN, out of range: a damaged file).
  std::vector<float> to_f32() const;
  std::vector<double> to_f64() const;
  std::vector<int32_t> to_i32() const;
};

struct StFile {
  std::map<std::string, StTensor> tensors;
  std::map<std::string, std::string> metadata;

  // Lookup with an error that names the file and the missing tensor.
  const StTensor& at(const std::string& name) const;
  bool has(const std::string& name) const { return tensors.count(name) != 0; }

  void put_f32(const std::string& name, std::vector<int64_t> shape, const float* data);
  void put_f64(const std::string& name, std::vector<int64_t> shape, const double* data);
  void put_i32(const std::string& name, std::vector<int64_t> shape, const int32_t* data);

  std::string source;  // path it was read from, for error messages
};

// Throws SafetensorsError naming the path and what is wrong.
StFile read_safetensors(const std::string& path);

// Writes to "<path>.tmp-<pid>", fsyncs it, renames it over path and fsyncs the directory:
// a reader sees either the old file or the complete new one, never a partial write.
void write_safetensors(const std::string& path, const StFile& file);

}  // namespace mg

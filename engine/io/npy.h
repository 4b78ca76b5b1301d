// NumPy .npy files of float32, for inspection and interop (`melgraph mel --out`, tests).
//
// Written as format version 1.0: the magic "\x93NUMPY", version bytes 1 0, a little-endian
// uint16 header length, the header dict {'descr': '<f4', 'fortran_order': False, 'shape': (..)}
// padded with spaces to a 64-byte boundary and ended by '\n', then the data, little-endian,
// C order. numpy.load reads it as is.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mg {

struct NpyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NpyArray {
  std::vector<int64_t> shape;  // C order; empty = a scalar
  std::vector<float> data;     // prod(shape) values
};

// Writes data [prod(shape)] as float32 .npy of that shape, atomically: to a temporary name
// beside `path`, fsync, then rename, so a reader sees the old file or the whole new one.
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

// Reads a float32 .npy (any format version, '<f4' data, C order). Other dtypes, Fortran order,
// and short or damaged files throw NpyError naming the file and what is wrong.
NpyArray read_npy(const std::string& path);

}  // namespace mg

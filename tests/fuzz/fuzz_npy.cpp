// The .npy reader (engine/io/npy.h) on arbitrary bytes: magic, version, header length, the
// header dict (descr, fortran_order, shape) and the data size. A file that is not a float32
// C-order array, or is damaged, must end in NpyError naming the file; anything else (a crash, a
// huge allocation from a shape the file cannot back, another exception) is a finding.
#include <cstddef>
#include <cstdint>

#include "engine/io/npy.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mg::fuzz::input_file(data, size, "array.npy");
  try {
    const mg::NpyArray a = mg::read_npy(path);
    // The promise of NpyArray: data holds prod(shape) values.
    size_t n = 1;
    for (int64_t d : a.shape) {
      if (d < 0) __builtin_trap();
      n *= static_cast<size_t>(d);
    }
    if (a.data.size() != n) __builtin_trap();
  } catch (const mg::NpyError&) {
  }
  return 0;
}

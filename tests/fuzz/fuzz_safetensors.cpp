// The safetensors reader (engine/io/safetensors.h) on arbitrary bytes: the header length, the
// JSON header, dtypes, shapes and data offsets. Checkpoints and reference data come through it,
// so a damaged file must end in SafetensorsError naming the file; any other exception
// (nlohmann's parse errors included: the reader promises its own), a crash, a huge allocation
// or a sanitizer report is a finding.
#include <cstddef>
#include <cstdint>

#include "engine/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mg::fuzz::input_file(data, size, "model.safetensors");
  try {
    const mg::StFile file = mg::read_safetensors(path);
    // A tensor that loads is used at once by checkpoint loading: its byte count must match
    // its shape, and the conversions must read within it.
    for (const auto& [name, t] : file.tensors) {
      if (t.bytes.size() != static_cast<size_t>(t.numel()) * mg::dtype_size(t.dtype)) __builtin_trap();
      (void)t.to_f32();
      (void)t.to_f64();
      (void)t.to_i32();
    }
  } catch (const mg::SafetensorsError&) {
  }
  return 0;
}

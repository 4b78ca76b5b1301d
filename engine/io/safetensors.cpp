#include "engine/io/safetensors.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>

#include "engine/io/atomic_file.h"

namespace mg {

using json = nlohmann::json;

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

size_t dtype_size(DType d) { return (d == DType::F32 || d == DType::I32) ? 4 : 8; }

static bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::F32;
  else if (s == "F64") *out = DType::F64;
  else if (s == "I32") *out = DType::I32;
  else if (s == "I64") *out = DType::I64;
  else return false;
  return true;
}

namespace {

// The product of the dimensions, or false when a dimension is negative or the product does
// not fit int64 (a crafted header, not a tensor anyone could hold).
bool checked_numel(const std::vector<int64_t>& shape, int64_t* n) {
  int64_t p = 1;
  for (int64_t s : shape)
    if (s < 0 || __builtin_mul_overflow(p, s, &p)) return false;
  *n = p;
  return true;
}

}  // namespace

int64_t StTensor::numel() const {
  int64_t n = 0;
  if (!checked_numel(shape, &n))
    throw SafetensorsError("a tensor shape with a negative dimension or more than 2^63 elements");
  return n;
}

// v as Out. An integer Out must hold the value: a float out of its range (or NaN) would be
// undefined behaviour, a wider integer would wrap silently; both come only from a damaged or
// foreign file, so they throw.
template <class Out, class In>
static Out convert_value(In v, const StTensor& t) {
  if constexpr (std::is_integral_v<Out>) {
    static_assert(std::is_same_v<Out, int32_t>, "the message below names int32");
    constexpr double lo = static_cast<double>(std::numeric_limits<Out>::min());
    constexpr double hi = -lo;  // 2^31 for int32: exact, and one above the largest value
    if (!(static_cast<double>(v) >= lo && static_cast<double>(v) < hi))
      throw SafetensorsError(std::string("a ") + dtype_name(t.dtype) + " tensor value " + std::to_string(v) +
                             " does not fit int32");
  }
  return static_cast<Out>(v);
}

template <class Out>
static std::vector<Out> convert(const StTensor& t) {
  const int64_t n = t.numel();
  std::vector<Out> out(static_cast<size_t>(n));
  const uint8_t* p = t.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::F32: {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = convert_value<Out>(v, t);
        break;
      }
      case DType::F64: {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = convert_value<Out>(v, t);
        break;
      }
      case DType::I32: {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = convert_value<Out>(v, t);
        break;
      }
      case DType::I64: {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = convert_value<Out>(v, t);
        break;
      }
    }
  }
  return out;
}

std::vector<float> StTensor::to_f32() const { return convert<float>(*this); }
std::vector<double> StTensor::to_f64() const { return convert<double>(*this); }
std::vector<int32_t> StTensor::to_i32() const { return convert<int32_t>(*this); }

const StTensor& StFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end())
    throw SafetensorsError((source.empty() ? std::string("safetensors") : source) +
                           ": no tensor named '" + name + "'");
  return it->second;
}

static void put(StFile& f, const std::string& name, DType dt, std::vector<int64_t> shape,
                const void* data) {
  StTensor t;
  t.dtype = dt;
  t.shape = std::move(shape);
  const size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(dt);
  t.bytes.resize(nbytes);
  if (nbytes) std::memcpy(t.bytes.data(), data, nbytes);
  f.tensors[name] = std::move(t);
}

void StFile::put_f32(const std::string& n, std::vector<int64_t> s, const float* d) { put(*this, n, DType::F32, std::move(s), d); }
void StFile::put_f64(const std::string& n, std::vector<int64_t> s, const double* d) { put(*this, n, DType::F64, std::move(s), d); }
void StFile::put_i32(const std::string& n, std::vector<int64_t> s, const int32_t* d) { put(*this, n, DType::I32, std::move(s), d); }

// A header array of JSON integers. nlohmann's get<> would convert a float element (2.5, 1e21)
// with a cast that is undefined beyond the target's range (fuzz_safetensors found it) and wrap a
// negative integer into an unsigned one; here both are refused: std::nullopt.
template <class Int>
std::optional<std::vector<Int>> integer_array(const json& v) {
  if (!v.is_array()) return std::nullopt;
  std::vector<Int> out;
  out.reserve(v.size());
  for (const json& e : v) {
    if (!e.is_number_integer()) return std::nullopt;  // floats, strings, ...
    if constexpr (std::is_unsigned_v<Int>) {
      if (!e.is_number_unsigned()) return std::nullopt;  // negative
    } else {
      if (e.is_number_unsigned() && e.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<Int>::max()))
        return std::nullopt;
    }
    out.push_back(e.get<Int>());
  }
  return out;
}

StFile read_safetensors(const std::string& path) {
  auto fail = [&](const std::string& what) -> SafetensorsError {
    return SafetensorsError(path + ": " + what);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw fail(std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  uint8_t len_bytes[8];
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(len_bytes), 8))
    throw fail("too short to be a safetensors file (no 8-byte header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > file_size - 8 || header_len > (100u << 20))
    throw fail("header length " + std::to_string(header_len) + " exceeds the file size " +
               std::to_string(file_size) + ": not a safetensors file, or truncated");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_len))) throw fail("truncated header");
  json j;
  try {
    j = json::parse(header);
  } catch (const std::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw fail("header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;

  StFile f;
  f.source = path;
  for (auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto& [k, s] : v.items()) {
        if (!s.is_string()) throw fail("__metadata__." + k + " is not a string");
        f.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    StTensor t;
    try {
      const std::string dt = v.at("dtype").get<std::string>();
      if (!parse_dtype(dt, &t.dtype))
        throw fail("tensor '" + name + "' has dtype " + dt + " (melgraph reads F32, F64, I32, I64)");
      std::optional<std::vector<int64_t>> shape = integer_array<int64_t>(v.at("shape"));
      if (!shape) throw fail("tensor '" + name + "' has a shape that is not an array of integers");
      t.shape = std::move(*shape);
      const std::optional<std::vector<uint64_t>> offsets = integer_array<uint64_t>(v.at("data_offsets"));
      if (!offsets) throw fail("tensor '" + name + "' has data_offsets that are not two non-negative integers");
      const std::vector<uint64_t>& offs = *offsets;
      if (offs.size() != 2 || offs[0] > offs[1] || offs[1] > data_size)
        throw fail("tensor '" + name + "' has data_offsets outside the data section (truncated file?)");
      int64_t n = 0;
      uint64_t expect = 0;
      if (!checked_numel(t.shape, &n) ||
          __builtin_mul_overflow(static_cast<uint64_t>(n), static_cast<uint64_t>(dtype_size(t.dtype)), &expect))
        throw fail("tensor '" + name + "' has a shape with a negative dimension or too many elements to address");
      if (offs[1] - offs[0] != expect)
        throw fail("tensor '" + name + "': " + std::to_string(offs[1] - offs[0]) +
                   " bytes for shape needing " + std::to_string(expect));
      t.bytes.resize(expect);
      in.seekg(static_cast<std::streamoff>(data_start + offs[0]));
      if (expect && !in.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(expect)))
        throw fail("tensor '" + name + "': read failed (truncated file?)");
    } catch (const json::exception& e) {
      throw fail("tensor '" + name + "' has a malformed header entry: " + e.what());
    }
    f.tensors.emplace(name, std::move(t));
  }
  return f;
}

void write_safetensors(const std::string& path, const StFile& file) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {  // std::map: sorted, so the layout is stable
    if (t.bytes.size() != static_cast<size_t>(t.numel()) * dtype_size(t.dtype))
      throw SafetensorsError(path + ": tensor '" + name + "' holds " + std::to_string(t.bytes.size()) +
                             " bytes, its shape and dtype need " +
                             std::to_string(static_cast<size_t>(t.numel()) * dtype_size(t.dtype)));
    header[name] = {{"dtype", dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // data section 8-byte aligned
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));

  std::vector<FilePiece> pieces{{len_bytes, 8}, {h.data(), h.size()}};
  for (const auto& [name, t] : file.tensors) pieces.push_back({t.bytes.data(), t.bytes.size()});
  try {
    write_file_atomic(path, pieces);  // a crash mid-write leaves the previous file
  } catch (const AtomicWriteError& e) {
    throw SafetensorsError(e.what());
  }
}

}  // namespace mg

#include "engine/io/npy.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "engine/io/atomic_file.h"

namespace mg {

static_assert(std::endian::native == std::endian::little, ".npy data is written as the host's floats: '<f4'");

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes + the terminating NUL, which is not written
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // numpy aligns the data to 64 bytes since 1.14

std::string shape_tuple(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";  // a 1-tuple in Python needs its comma
  return s + ")";
}

// prod(shape), refused when its float32 bytes would not fit int64: a damaged header's product
// would overflow (undefined) or wrap to a size the data happens to match.
int64_t element_count(const std::vector<int64_t>& shape, const std::string& path) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw NpyError(path + ": negative dimension " + std::to_string(d) + " in the shape");
    if (__builtin_mul_overflow(n, d, &n) || n > std::numeric_limits<int64_t>::max() / int64_t{sizeof(float)})
      throw NpyError(path + ": shape " + shape_tuple(shape) + " has too many elements");
  }
  return n;
}

// The value text after `'key':` in the header dict, up to the next top-level ',' or '}'.
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::string quoted[2] = {"'" + key + "'", "\"" + key + "\""};
  size_t pos = std::string::npos;
  for (const std::string& q : quoted)
    if ((pos = header.find(q)) != std::string::npos) {
      pos += q.size();
      break;
    }
  if (pos == std::string::npos) throw NpyError(path + ": the .npy header has no '" + key + "': " + header);
  pos = header.find(':', pos);
  if (pos == std::string::npos) throw NpyError(path + ": bad .npy header: " + header);
  ++pos;
  int depth = 0;
  size_t end = pos;
  for (; end < header.size(); ++end) {
    const char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  std::string v = header.substr(pos, end - pos);
  const size_t a = v.find_first_not_of(" \t"), b = v.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : v.substr(a, b - a + 1);
}

std::vector<int64_t> parse_shape(const std::string& v, const std::string& path) {
  if (v.size() < 2 || v.front() != '(' || v.back() != ')')
    throw NpyError(path + ": .npy shape is not a tuple: " + v);
  std::vector<int64_t> shape;
  size_t i = 1;
  while (i + 1 < v.size()) {
    while (i + 1 < v.size() && (v[i] == ' ' || v[i] == ',')) ++i;
    if (i + 1 >= v.size()) break;
    size_t used = 0;
    try {
      shape.push_back(std::stoll(v.substr(i), &used));
    } catch (const std::exception&) {
      throw NpyError(path + ": bad .npy shape " + v);
    }
    if (shape.back() < 0) throw NpyError(path + ": negative dimension in .npy shape " + v);
    i += used;
  }
  return shape;
}

}  // namespace

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  const int64_t n = element_count(shape, path);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_tuple(shape) + ", }";
  const size_t prefix = kMagicLen + 2 + 2;  // magic, version, header length
  const size_t total = (prefix + header.size() + 1 + kAlign - 1) / kAlign * kAlign;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  if (header.size() > 0xFFFF) throw NpyError(path + ": shape " + shape_tuple(shape) + " is too long for .npy 1.0");
  const unsigned char version_and_len[4] = {1, 0, static_cast<unsigned char>(header.size() & 0xFF),
                                            static_cast<unsigned char>(header.size() >> 8)};

  try {
    write_file_atomic(path, {FilePiece{kMagic, kMagicLen}, FilePiece{version_and_len, sizeof version_and_len},
                             FilePiece{header.data(), header.size()},
                             FilePiece{data, static_cast<size_t>(n) * sizeof(float)}});
  } catch (const AtomicWriteError& e) {
    throw NpyError(e.what());
  }
}

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw NpyError(path + ": cannot open: " + std::strerror(errno));
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < kMagicLen + 4 || bytes.compare(0, kMagicLen, kMagic, kMagicLen) != 0)
    throw NpyError(path + ": not a .npy file (no \\x93NUMPY magic)");
  const auto byte = [&](size_t i) { return static_cast<size_t>(static_cast<unsigned char>(bytes[i])); };
  const size_t major = byte(kMagicLen);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = byte(8) | byte(9) << 8;
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw NpyError(path + ": truncated .npy header");
    header_len = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
    header_start = 12;
  } else {
    throw NpyError(path + ": unsupported .npy format version " + std::to_string(major));
  }
  if (bytes.size() < header_start + header_len) throw NpyError(path + ": truncated .npy header");
  const std::string header = bytes.substr(header_start, header_len);

  const std::string descr = dict_value(header, "descr", path);
  if (descr != "'<f4'" && descr != "\"<f4\"")
    throw NpyError(path + ": dtype " + descr + " is not float32 little-endian ('<f4')");
  if (dict_value(header, "fortran_order", path) != "False")
    throw NpyError(path + ": Fortran-order arrays are not supported (save with C order)");
  NpyArray a;
  a.shape = parse_shape(dict_value(header, "shape", path), path);
  const int64_t n = element_count(a.shape, path);
  const size_t data_start = header_start + header_len, want = static_cast<size_t>(n) * sizeof(float);
  if (bytes.size() - data_start != want)
    throw NpyError(path + ": " + std::to_string(bytes.size() - data_start) + " data bytes, shape " +
                   shape_tuple(a.shape) + " needs " + std::to_string(want));
  a.data.resize(static_cast<size_t>(n));
  if (want > 0) std::memcpy(a.data.data(), bytes.data() + data_start, want);  // an empty vector's data() may be null
  return a;
}

}  // namespace mg

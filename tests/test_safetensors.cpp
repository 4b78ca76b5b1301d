#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "tests/test_support.h"

namespace mg {
namespace {

namespace fs = std::filesystem;

template <class T>
std::vector<T> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<T> v(n);
  if constexpr (std::is_floating_point_v<T>) {
    std::normal_distribution<T> dist(0, 3);
    for (auto& x : v) x = dist(rng);
  } else {
    std::uniform_int_distribution<T> dist(std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
    for (auto& x : v) x = dist(rng);
  }
  return v;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A hand-made file: little-endian header length, the header text, then `data`.
std::string raw_file(const std::string& header, uint64_t header_len, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((header_len >> (8 * i)) & 0xff);
  return s + header + data;
}
std::string raw_file(const std::string& header, const std::string& data) {
  return raw_file(header, header.size(), data);
}

// Reading `path` throws a SafetensorsError whose message names the path (and `part`).
void expect_read_error(const std::string& path, const std::string& part = "") {
  try {
    read_safetensors(path);
    FAIL() << "read " << path << " without error";
  } catch (const SafetensorsError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
}

std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(e.path().string());
  return out;
}

StFile sample_file() {
  StFile f;
  const auto a = random_values<float>(3 * 7, 1);
  const auto b = random_values<double>(5, 2);
  const auto c = random_values<int32_t>(2 * 3 * 2, 3);
  const float scalar = -1.75f;
  f.put_f32("conv.0.weight", {3, 7}, a.data());
  f.put_f64("reference", {5}, b.data());
  f.put_i32("triplets", {2, 3, 2}, c.data());
  f.put_f32("scalar", {}, &scalar);
  f.put_f32("empty", {0, 4}, nullptr);
  f.metadata["format"] = "melgraph-test";
  f.metadata["config"] = "[model]\nkernel = 4\nname = \"quoted \\\\ text\"\n";
  return f;
}

TEST(Safetensors, RoundTripsF32F64I32AndMetadata) {
  test::TempDir dir;
  const std::string path = dir.file("sample.safetensors");
  const StFile f = sample_file();
  write_safetensors(path, f);
  const StFile g = read_safetensors(path);

  EXPECT_EQ(g.source, path);
  EXPECT_EQ(g.metadata, f.metadata);
  ASSERT_EQ(g.tensors.size(), f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(g.has(name));
    const StTensor& u = g.at(name);
    EXPECT_EQ(u.dtype, t.dtype);
    EXPECT_EQ(u.shape, t.shape);
    EXPECT_EQ(u.bytes, t.bytes);  // bit-exact
  }
  EXPECT_EQ(g.at("scalar").numel(), 1);
  EXPECT_EQ(g.at("scalar").to_f32(), std::vector<float>{-1.75f});
  EXPECT_EQ(g.at("empty").numel(), 0);
  EXPECT_EQ(g.at("reference").to_f64(), random_values<double>(5, 2));
  EXPECT_EQ(g.at("triplets").to_i32(), random_values<int32_t>(12, 3));
  // Conversions between types go through the value, not the bytes.
  const auto a = random_values<float>(21, 1);
  const auto a64 = g.at("conv.0.weight").to_f64();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a64[i], static_cast<double>(a[i]));

  // The data section starts 8-byte aligned, so it can be mapped and read in place.
  const std::string bytes = test::read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  EXPECT_EQ((8 + header_len) % 8, 0u);
  EXPECT_TRUE(temp_files(dir.path).empty());
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  test::TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_safetensors(path, sample_file());
  const StFile g = read_safetensors(path);
  try {
    g.at("conv.9.weight");
    FAIL() << "missing tensor found";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("conv.9.weight"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, TruncatedFilesAreErrors) {
  test::TempDir dir;
  const std::string path = dir.file("t.safetensors");
  write_safetensors(path, sample_file());
  const std::string full = test::read_bytes(path);
  // Cut in the data section, in the header, in the length prefix, and to nothing.
  for (size_t keep : {full.size() - 3, full.size() / 2, size_t{40}, size_t{5}, size_t{0}}) {
    SCOPED_TRACE("kept " + std::to_string(keep) + " of " + std::to_string(full.size()) + " bytes");
    write_bytes(path, full.substr(0, keep));
    expect_read_error(path);
  }
}

TEST(Safetensors, GarbageFilesAreErrors) {
  test::TempDir dir;
  const std::string text = dir.file("text.safetensors");
  write_bytes(text, "this is a text file, not a safetensors file\n");
  expect_read_error(text);

  const std::string noise = dir.file("noise.safetensors");
  const auto r = random_values<int32_t>(97, 7);
  write_bytes(noise, std::string(reinterpret_cast<const char*>(r.data()), r.size() * sizeof(int32_t)));
  expect_read_error(noise);

  const std::string not_json = dir.file("notjson.safetensors");
  write_bytes(not_json, raw_file("{\"a\": [1, 2", "12345678"));
  expect_read_error(not_json, "JSON");

  const std::string missing = dir.file("missing.safetensors");
  expect_read_error(missing);
}

TEST(Safetensors, HeaderLongerThanTheFileIsAnError) {
  test::TempDir dir;
  const std::string path = dir.file("h.safetensors");
  write_bytes(path, raw_file("{}", 1000, ""));
  expect_read_error(path, "1000");
}

TEST(Safetensors, WrongDataOffsetsAreErrors) {
  test::TempDir dir;
  const std::string path = dir.file("o.safetensors");
  const std::string data(12, '\x01');  // room for exactly one F32 [3]
  const char* bad_offsets[] = {
      "[0, 8]",    // fewer bytes than the shape needs
      "[0, 16]",   // past the end of the data section
      "[8, 4]",    // reversed
      "[0]",       // not a pair
      "[4, 16]",   // right size, but runs past the end
  };
  for (const char* offs : bad_offsets) {
    SCOPED_TRACE(offs);
    write_bytes(path, raw_file(std::string("{\"x\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": ") +
                                   offs + "}}",
                               data));
    expect_read_error(path, "'x'");
  }
  // The same file with correct offsets reads, so the failures above are about the offsets.
  write_bytes(path, raw_file("{\"x\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]}}", data));
  EXPECT_EQ(read_safetensors(path).at("x").numel(), 3);
}

// Issue 17, D9: a shape whose element count overflows int64 (or whose byte count overflows
// uint64) is refused with the tensor's name, not multiplied into a small wrong size.
TEST(Safetensors, ShapesThatOverflowAreErrors) {
  test::TempDir dir;
  const std::string path = dir.file("big.safetensors");
  for (const char* shape : {"[4294967296, 4294967296]", "[-1, 3]", "[3037000500, 3037000500]",
                            "[1, 2305843009213693952]"}) {  // the last: 2^61 elements, 2^63 bytes
    SCOPED_TRACE(shape);
    write_bytes(
        path,
        raw_file(std::string("{\"x\": {\"dtype\": \"F64\", \"shape\": ") + shape + ", \"data_offsets\": [0, 0]}}", ""));
    expect_read_error(path, "tensor 'x' has a shape with a negative dimension or too many elements");
  }
  StTensor t;
  t.shape = {int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_THROW(t.numel(), SafetensorsError);
}

// Found by fuzzing (tests/fuzz/fuzz_safetensors): a shape or data_offsets element that is a float
// too large for the integer it was read into (data_offsets [48, 1.8e21]) was converted by a cast
// that is undefined behaviour (UBSan stopped in nlohmann's get<>); a negative offset wrapped. Both
// are refused with the tensor's name.
TEST(Safetensors, HeaderNumbersThatAreNotIntegersAreErrors) {
  test::TempDir dir;
  const std::string path = dir.file("n.safetensors");
  const std::string data(12, '\x01');
  const std::pair<const char*, const char*> bad[] = {
      {"[3]", "[0, 1844674407370955161572]"},
      {"[3]", "[0, 12.5]"},
      {"[3]", "[-4, 12]"},
      {"[3]", "\"0, 12\""},
      {"[1e30]", "[0, 12]"},
      {"[3.0]", "[0, 12]"},
      {"[9223372036854775808]", "[0, 12]"},
  };
  for (const auto& [shape, offsets] : bad) {
    SCOPED_TRACE(std::string(shape) + " " + offsets);
    write_bytes(path, raw_file(std::string("{\"x\": {\"dtype\": \"F32\", \"shape\": ") + shape +
                                   ", \"data_offsets\": " + offsets + "}}",
                               data));
    expect_read_error(path, "tensor 'x' has ");
  }
}

// Found by fuzzing (tests/fuzz/fuzz_safetensors): to_i32 of an F32 tensor holding 7e31 cast the
// float to int32, undefined behaviour (UBSan stopped there); an I64 value beyond int32 wrapped
// silently. A value int32 cannot hold is a damaged file: SafetensorsError, saying the value.
TEST(Safetensors, ToI32RefusesValuesInt32CannotHold) {
  const float huge_f = 7.22982e31f, nan_f = std::numeric_limits<float>::quiet_NaN(), ok_f[] = {-2147483648.0f, 3.9f};
  const double big_d = 2147483648.0;  // 2^31: one past int32's largest
  const int64_t wide[] = {int64_t{1} << 40};
  StFile f;
  f.put_f32("huge", {1}, &huge_f);
  f.put_f32("nan", {1}, &nan_f);
  f.put_f32("ok", {2}, ok_f);
  f.put_f64("big", {1}, &big_d);
  StTensor t;
  t.dtype = DType::I64;
  t.shape = {1};
  t.bytes.resize(8);
  std::memcpy(t.bytes.data(), wide, 8);
  f.tensors["wide"] = t;
  for (const char* name : {"huge", "nan", "big", "wide"}) {
    SCOPED_TRACE(name);
    try {
      f.at(name).to_i32();
      ADD_FAILURE() << "converted without error";
    } catch (const SafetensorsError& e) {
      EXPECT_NE(std::string(e.what()).find("does not fit int32"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(f.at("ok").to_i32(), (std::vector<int32_t>{std::numeric_limits<int32_t>::min(), 3}));
  EXPECT_EQ(f.at("big").to_f32(), std::vector<float>{2147483648.0f});
}

TEST(Safetensors, FailedWriteIntoMissingDirectoryLeavesNothing) {
  test::TempDir dir;
  const std::string path = (dir.path / "no-such-dir" / "x.safetensors").string();
  EXPECT_THROW(write_safetensors(path, sample_file()), SafetensorsError);
  EXPECT_TRUE(fs::is_empty(dir.path));
}

TEST(Safetensors, FailedWriteLeavesExistingTargetUntouched) {
  test::TempDir dir;
  const std::string path = dir.file("keep.safetensors");
  StFile old_file;
  const auto v = random_values<float>(11, 5);
  old_file.put_f32("old", {11}, v.data());
  write_safetensors(path, old_file);
  const std::string before = test::read_bytes(path);

  // The writer's temp file cannot be created: its name is taken by a directory. Names are
  // "<path>.tmp-<pid>-<n>" with n counting up in this process: the next write takes n + 1.
  const std::string probe = temp_path_for(path);
  const size_t dash = probe.rfind('-');
  const std::string blocker = probe.substr(0, dash + 1) + std::to_string(std::stoull(probe.substr(dash + 1)) + 1);
  fs::create_directory(blocker);
  try {
    write_safetensors(path, sample_file());
    FAIL() << "write succeeded although its temp file could not be created";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::read_bytes(path), before);
  fs::remove(blocker);

  // The rename fails (the target is a non-empty directory): the temp file is removed again.
  const std::string dir_target = dir.file("target-is-a-dir");
  fs::create_directory(dir_target);
  write_bytes(dir_target + "/inside", "x");
  EXPECT_THROW(write_safetensors(dir_target, sample_file()), SafetensorsError);
  EXPECT_TRUE(temp_files(dir.path).empty());
  EXPECT_EQ(test::read_bytes(dir_target + "/inside"), "x");
  EXPECT_EQ(test::read_bytes(path), before);
}

TEST(Safetensors, WriteReplacesAnExistingFile) {
  test::TempDir dir;
  const std::string path = dir.file("r.safetensors");
  write_safetensors(path, sample_file());  // larger: leftovers would show in the size

  StFile small;
  const auto v = random_values<double>(3, 9);
  small.put_f64("only", {3}, v.data());
  small.metadata["step"] = "17";
  write_safetensors(path, small);

  const StFile g = read_safetensors(path);
  ASSERT_EQ(g.tensors.size(), 1u);
  EXPECT_EQ(g.at("only").to_f64(), v);
  EXPECT_EQ(g.metadata, small.metadata);
  EXPECT_TRUE(temp_files(dir.path).empty());

  const std::string again = dir.file("again.safetensors");
  write_safetensors(again, small);
  EXPECT_EQ(test::read_bytes(path), test::read_bytes(again));  // no trace of the older, larger file
}

// The streamed form (the ANN file's: a FAISS index written as FAISS produces it) writes the
// appended bytes in order, and a producer that throws half way leaves the old file as it was
// and no temporary file.
TEST(AtomicFile, StreamedWriteIsWholeOrNothing) {
  test::TempDir dir;
  const std::string path = dir.file("streamed.bin");
  write_file_atomic(path, std::string("old"));
  const std::string part(100001, 'x');
  write_file_atomic_streamed(path, [&](const AppendBytes& append) {
    append("head", 4);
    for (int i = 0; i < 3; ++i) append(part.data(), part.size());
    append("", 0);
  });
  EXPECT_EQ(test::read_bytes(path), "head" + part + part + part);
  const std::string before = test::read_bytes(path);
  EXPECT_THROW(write_file_atomic_streamed(path,
                                          [&](const AppendBytes& append) {
                                            append(part.data(), part.size());
                                            throw std::runtime_error("the producer failed");
                                          }),
               std::runtime_error);
  EXPECT_EQ(test::read_bytes(path), before);
  EXPECT_TRUE(temp_files(dir.path).empty());
}

TEST(Safetensors, WriteRejectsATensorWhoseBytesDoNotMatchItsShape) {
  test::TempDir dir;
  StFile f = sample_file();
  StTensor bad;
  bad.dtype = DType::F32;
  bad.shape = {4};
  bad.bytes.resize(12);  // 3 floats for a shape of 4
  f.tensors["bad"] = bad;
  try {
    write_safetensors(dir.file("bad.safetensors"), f);
    FAIL() << "expected SafetensorsError";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("'bad' holds 12 bytes"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir.path));
}

}  // namespace
}  // namespace mg

// NumPy .npy float32 files (engine/io/npy.h): round trips of every rank, the exact 1.0 header,
// numpy's own files read back and ours read by numpy, and every damaged-file error.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/io/npy.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"

namespace mg {
namespace {

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Npy, RoundTripsEveryRank) {
  test::TempDir d;
  const std::vector<std::vector<int64_t>> shapes = {{}, {7}, {3, 5}, {2, 3, 4}, {0, 4}, {1, 1, 1, 9}};
  unsigned seed = 1;
  for (const auto& shape : shapes) {
    size_t n = 1;
    for (int64_t s : shape) n *= static_cast<size_t>(s);
    const std::vector<float> v = random_values(n, seed++);
    const std::string path = d.file("a.npy");
    write_npy(path, v.data(), shape);
    const NpyArray a = read_npy(path);
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.data, v);  // bit-exact: no conversion on either side
  }
}

TEST(Npy, WritesTheVersion1HeaderAligned) {
  test::TempDir d;
  const std::vector<float> v = {1.5f, -2.0f, 0.25f, 8.0f, 0.0f, -0.5f};
  write_npy(d.file("h.npy"), v.data(), {2, 3});
  const std::string bytes = test::read_bytes(d.file("h.npy"));
  ASSERT_GT(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<unsigned char>(bytes[8]) | static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8;
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u) << header;
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(bytes.size(), 10 + header_len + v.size() * sizeof(float));
  // 1-D shapes need the tuple's trailing comma.
  write_npy(d.file("v.npy"), v.data(), {6});
  EXPECT_NE(test::read_bytes(d.file("v.npy")).find("'shape': (6,), }"), std::string::npos);
}

TEST(Npy, NumpyReadsOursAndWeReadNumpys) {
  MG_REQUIRE_REFERENCE_LIBS(test::python_import_problem("numpy", "python3-numpy"));
  test::TempDir d;
  const std::vector<float> v = random_values(24, 7);
  write_npy(d.file("ours.npy"), v.data(), {2, 3, 4});
  // numpy checks our file against the values (printed to 9 digits: exact for float32), then
  // writes a file of its own for us to read.
  std::string expected = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v[i]));
    if (i) expected += ',';
    expected += buf;
  }
  expected += "]";
  const std::string script =
      "import numpy as np; a = np.load('" + d.file("ours.npy") + "'); "
      "assert a.dtype == np.float32 and a.shape == (2, 3, 4), (a.dtype, a.shape); "
      "assert (a.ravel() == np.array(" + expected + ", dtype=np.float32)).all(); "
      "np.save('" + d.file("theirs.npy") + "', (np.arange(30, dtype=np.float32) * 0.5 - 3).reshape(5, 6))";
  std::string out;
  ASSERT_EQ(test::run_command(test::python_exe() + " -c \"" + script + "\"", &out), 0) << out;
  const NpyArray a = read_npy(d.file("theirs.npy"));
  ASSERT_EQ(a.shape, (std::vector<int64_t>{5, 6}));
  for (size_t i = 0; i < a.data.size(); ++i) EXPECT_EQ(a.data[i], static_cast<float>(i) * 0.5f - 3.0f);
}

TEST(Npy, DamagedFilesNameTheProblem) {
  test::TempDir d;
  const auto expect_error = [&](const std::string& name, const std::string& content, const std::string& what) {
    std::ofstream(d.file(name), std::ios::binary) << content;
    try {
      read_npy(d.file(name));
      ADD_FAILURE() << name << " was accepted";
    } catch (const NpyError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(d.file(name)), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  };
  auto file = [](const std::string& header, size_t data_bytes) {
    std::string h = header;
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    std::string s("\x93NUMPY\x01\x00", 8);
    s += static_cast<char>(h.size() & 0xFF);
    s += static_cast<char>(h.size() >> 8);
    return s + h + std::string(data_bytes, '\0');
  };
  expect_error("magic.npy", "PK\x03\x04 not numpy", "not a .npy file");
  expect_error("f64.npy", file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16), "'<f8'");
  expect_error("fortran.npy", file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "Fortran");
  expect_error("short.npy", file("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 20),
               "20 data bytes, shape (3, 2) needs 24");
  expect_error("noshape.npy", file("{'descr': '<f4', 'fortran_order': False, }", 0), "'shape'");
  // Found by fuzzing (tests/fuzz/fuzz_npy): the element count of a huge shape overflowed int64
  // (undefined behaviour), and 2^62 floats wrapped to 0 bytes, matching an empty data section.
  expect_error("overflow.npy",
               file("{'descr': '<f4', 'fortran_order': False, 'shape': (184, 467440737095512615, 3), }", 0),
               "shape (184, 467440737095512615, 3) has too many elements");
  expect_error("wraps.npy", file("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }", 0),
               "has too many elements");
  EXPECT_THROW(read_npy(d.file("absent.npy")), NpyError);
}

}  // namespace
}  // namespace mg

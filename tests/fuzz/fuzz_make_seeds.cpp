// fuzz_make_seeds <dir>: writes the seed files whose formats only melgraph's own writers get
// right, so that each fuzz target starts from inputs its parser accepts and the mutations reach
// the checks behind the header: <dir>/safetensors/, <dir>/npy/, <dir>/index/. Small on purpose
// (libFuzzer mutates better, and runs faster, on small inputs).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/index/index_format.h"
#include "engine/io/npy.h"
#include "engine/io/safetensors.h"

namespace {

std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>(i) - 1.0f;
  return v;
}

void safetensors_seeds(const std::filesystem::path& dir) {
  const std::vector<float> w = ramp(12);
  const std::vector<double> d = {0.5, -2.0, 1e-300};
  const std::vector<int32_t> t = {0, 1, 2, 3, 4, 5};
  mg::StFile f;
  f.put_f32("conv.0.weight", {3, 4}, w.data());
  f.put_f64("norm.mean", {3}, d.data());
  f.put_i32("triplets", {2, 3}, t.data());
  f.put_f32("scalar", {}, w.data());
  f.put_f32("empty", {0, 4}, nullptr);
  f.metadata["format"] = "melgraph-checkpoint";
  f.metadata["config"] = "[model]\nkernel = 4\n";
  mg::write_safetensors((dir / "tensors.safetensors").string(), f);
  mg::StFile one;
  one.put_f32("x", {2}, w.data());
  mg::write_safetensors((dir / "one.safetensors").string(), one);
}

void npy_seeds(const std::filesystem::path& dir) {
  const std::vector<float> v = ramp(24);
  mg::write_npy((dir / "matrix.npy").string(), v.data(), {4, 6});
  mg::write_npy((dir / "cube.npy").string(), v.data(), {2, 3, 4});
  mg::write_npy((dir / "vector.npy").string(), v.data(), {5});
  mg::write_npy((dir / "scalar.npy").string(), v.data(), {});
  mg::write_npy((dir / "empty.npy").string(), nullptr, {0, 3});
}

void index_seeds(const std::filesystem::path& dir) {
  for (int variant = 0; variant < 2; ++variant) {
    mg::index::Index index;
    index.dim = variant == 0 ? 2 : 4;
    const int n = variant == 0 ? 3 : 2;
    for (int i = 0; i < n; ++i) {
      mg::index::IndexItem item;
      item.id = "t" + std::to_string(i);
      item.path = "audio/" + item.id + ".ogg";
      if (variant == 0) {
        item.title = "Title " + std::to_string(i);
        item.in_degree = i;
        item.extra = R"({"album":"a"})";
      }
      index.items.push_back(item);
      // Unit rows: write_index checks them, and so does read_index.
      const double angle = 0.7 * i;
      std::vector<float> row(static_cast<size_t>(index.dim), 0.0f);
      row[0] = static_cast<float>(std::cos(angle));
      row[1] = static_cast<float>(std::sin(angle));
      index.vectors.insert(index.vectors.end(), row.begin(), row.end());
    }
    if (variant == 0) index.failures.push_back({"x", "audio/x.ogg", "no audio samples"});
    index.meta["checkpoint"] = "ckpt.safetensors";
    index.meta["config"] = "[model]\nembedding = 2\n";
    index.rebuild_lookup();
    mg::index::write_index((dir / (variant == 0 ? "small.mgindex" : "plain.mgindex")).string(), index);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  for (const char* sub : {"safetensors", "npy", "index"}) std::filesystem::create_directories(root / sub);
  safetensors_seeds(root / "safetensors");
  npy_seeds(root / "npy");
  index_seeds(root / "index");
  return 0;
}

// Checkpoints: round trip of parameters, optimizer state and position; atomic replacement;
// every mismatch named on load.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/train_step.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"

namespace mg {
namespace {

using test::small_config;
using test::TempDir;

std::vector<float> host(Backend& be, const TensorBuffer& b) {
  std::vector<float> h(static_cast<size_t>(b.size()));
  be.to_host(h.data(), b.data(), h.size() * sizeof(float));
  return h;
}

struct Trained {
  std::unique_ptr<Backend> be = make_cpu_backend();
  Config c = small_config();
  Model model{c, *be, 6};
  Optimizer opt{*be, model.params().layout(), c.optim};
  Trained() {
    model.init_params(4);
    TrainStep step(model);
    step.set_triplets(TrainStep::offline_triplets(2));
    const auto audio = test::random_audio(6, c.audio.clip_samples(), 3);
    for (int i = 0; i < 2; ++i) step.step(audio.data(), 6, c.loss, opt, 1e-3);
  }
};

TEST(Checkpoint, RoundTripsParametersOptimizerAndPosition) {
  TempDir dir;
  Trained t;
  const std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(path, t.model, &t.opt, TrainState{2, 1, 4, ""});

  const Config c2 = read_checkpoint_config(path);
  EXPECT_EQ(to_toml(c2), to_toml(t.c));
  Model m2(c2, *t.be, 6);
  Optimizer o2(*t.be, m2.params().layout(), c2.optim);
  const TrainState st = load_checkpoint(path, m2, &o2);
  EXPECT_EQ(st.step, 2);
  EXPECT_EQ(st.epoch, 1);
  EXPECT_EQ(st.seed, 4u);
  EXPECT_EQ(o2.step_count(), 2);
  EXPECT_EQ(host(*t.be, m2.params()), host(*t.be, t.model.params()));
  EXPECT_EQ(host(*t.be, o2.m()), host(*t.be, t.opt.m()));
  EXPECT_EQ(host(*t.be, o2.v()), host(*t.be, t.opt.v()));
  // Documented tensor names, readable by any safetensors reader.
  const StFile f = read_safetensors(path);
  EXPECT_TRUE(f.has("conv.0.weight"));
  EXPECT_TRUE(f.has("linear.bias"));
  EXPECT_TRUE(f.has("optim.m.conv.2.weight"));
  EXPECT_EQ(f.metadata.at("format"), "melgraph-checkpoint");
}

// A checkpoint of format version 1 was written before model.input_norm, head_norm,
// embedding_from and loss.name existed: its config must read as the seed model it was (no
// state tensors, the projection as the embedding), not as today's defaults, and it must load.
TEST(Checkpoint, Version1ConfigsReadAsTheSeedModelTheyWere) {
  TempDir dir;
  Trained t;  // the seed's head and loss (small_config)
  const std::string path = dir.file("v1.safetensors");
  save_checkpoint(path, t.model, &t.opt, TrainState{2, 1, 4, ""});
  StFile f = read_safetensors(path);
  EXPECT_EQ(f.metadata.at("format_version"), "2");
  // What version 1 wrote: the same TOML without the fields it did not have.
  std::istringstream in(f.metadata.at("config"));
  std::string line, old_toml, section;
  int dropped = 0;
  while (std::getline(in, line)) {
    if (line.rfind('[', 0) == 0) section = line;
    const bool added_later = line.rfind("input_norm", 0) == 0 || line.rfind("head_norm", 0) == 0 ||
                             line.rfind("embedding_from", 0) == 0 || line.rfind("temperature", 0) == 0 ||
                             (section == "[loss]" && line.rfind("name", 0) == 0);
    dropped += added_later;
    if (!added_later) old_toml += line + "\n";
  }
  ASSERT_EQ(dropped, 5) << f.metadata.at("config");
  f.metadata["config"] = old_toml;
  f.metadata["format_version"] = "1";
  write_safetensors(path, f);

  const Config c1 = read_checkpoint_config(path);
  EXPECT_EQ(c1.model.input_norm, InputNorm::None);
  EXPECT_EQ(c1.model.head_norm, HeadNorm::None);
  EXPECT_EQ(c1.model.embedding_from, EmbeddingFrom::Linear);
  EXPECT_EQ(c1.loss.name, LossKind::Triplet);
  EXPECT_EQ(to_toml(c1), to_toml(t.c));
  Model m1(c1, *t.be, 6);
  Optimizer o1(*t.be, m1.params().layout(), c1.optim);
  EXPECT_EQ(load_checkpoint(path, m1, &o1).step, 2);
  EXPECT_EQ(host(*t.be, m1.params()), host(*t.be, t.model.params()));

  // The same text under version 2 means today's defaults: a model the tensors do not fit.
  f.metadata["format_version"] = "2";
  write_safetensors(path, f);
  const Config c2 = read_checkpoint_config(path);
  EXPECT_EQ(c2.model.input_norm, default_config().model.input_norm);
  Model m2(c2, *t.be, 6);
  EXPECT_THROW(load_checkpoint(path, m2, nullptr), CheckpointError);
  // An unknown version is refused, naming the versions that are read.
  f.metadata["format_version"] = "9";
  write_safetensors(path, f);
  try {
    read_checkpoint_config(path);
    FAIL() << "version 9 was read";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("reads versions 1 and 2"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, ResumeWithoutOptimizerStateIsRefused) {
  TempDir dir;
  Trained t;
  const std::string path = dir.file("weights-only.safetensors");
  save_checkpoint(path, t.model, nullptr, TrainState{});
  Model m2(t.c, *t.be, 6);
  EXPECT_NO_THROW(load_checkpoint(path, m2, nullptr));
  Optimizer o2(*t.be, m2.params().layout(), t.c.optim);
  try {
    load_checkpoint(path, m2, &o2);
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("no optimizer state"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, MismatchListsEveryDifferenceAndLeavesTheModelUntouched) {
  TempDir dir;
  Trained t;
  const std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(path, t.model, nullptr, TrainState{});
  Config other = t.c;
  other.model.channels = {8, 12, 8};  // conv.1 and conv.2 change shape
  Model m2(other, *t.be, 6);
  m2.init_params(99);
  const auto before = host(*t.be, m2.params());
  try {
    load_checkpoint(path, m2, nullptr);
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv.1.weight: shape [8, 8, 4] in the file, the model has [12, 8, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("conv.1.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("conv.2.weight"), std::string::npos) << msg;
  }
  EXPECT_EQ(host(*t.be, m2.params()), before);

  Config deeper = t.c;
  deeper.model.channels = {8, 8, 8, 8};
  deeper.audio.clip_seconds = 4.0;
  Model m3(deeper, *t.be, 2);
  try {
    load_checkpoint(path, m3, nullptr);
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor conv.3.weight"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, ForeignAndTruncatedFilesGiveClearErrors) {
  TempDir dir;
  Trained t;
  const std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(path, t.model, &t.opt, TrainState{});

  StFile foreign;
  const float x = 1;
  foreign.put_f32("w", {1}, &x);
  write_safetensors(dir.file("foreign.safetensors"), foreign);
  EXPECT_THROW(read_checkpoint_config(dir.file("foreign.safetensors")), CheckpointError);

  const auto size = std::filesystem::file_size(path);
  std::filesystem::copy_file(path, dir.file("cut.safetensors"));
  std::filesystem::resize_file(dir.file("cut.safetensors"), size / 2);
  Model m2(t.c, *t.be, 6);
  try {
    load_checkpoint(dir.file("cut.safetensors"), m2, nullptr);
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_checkpoint(dir.file("missing.safetensors"), m2, nullptr), CheckpointError);
}

TEST(Checkpoint, SavingReplacesAtomicallyAndLeavesNoTempFiles) {
  TempDir dir;
  Trained t;
  const std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(path, t.model, &t.opt, TrainState{1, 0, 0, ""});
  save_checkpoint(path, t.model, &t.opt, TrainState{2, 0, 0, ""});
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1) << "temp files left behind";
  Model m2(t.c, *t.be, 6);
  EXPECT_EQ(load_checkpoint(path, m2, nullptr).step, 2);
  // A save that cannot complete leaves the previous checkpoint intact.
  EXPECT_THROW(save_checkpoint(dir.file("no/such/dir/ckpt.safetensors"), t.model, &t.opt, TrainState{}),
               CheckpointError);
  EXPECT_EQ(load_checkpoint(path, m2, nullptr).step, 2);
}

}  // namespace
}  // namespace mg

#include "engine/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <unordered_set>

#include "engine/audio/audio_cache.h"
#include "engine/audio/prepare.h"
#include "engine/checkpoint.h"
#include "engine/dist/nccl_comm.h"
#include "engine/embed/embedder.h"
#include "engine/io/atomic_file.h"
#include "engine/io/file_lock.h"
#include "engine/io/json_text.h"
#include "engine/io/progress_line.h"
#include "engine/io/stop_point.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/timer.h"
#include "engine/train/batch_loader.h"
#include "engine/train/lr_schedule.h"
#include "engine/train/run_db.h"
#include "engine/train/training_data.h"
#include "engine/train/validation.h"
#include "engine/train_step.h"

namespace mg::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// The cache entry of every selected item; -1 when the cache has no audio for it.
std::vector<int64_t> cache_indices(const TrainingData& d, const audio::AudioCache& cache) {
  std::vector<int64_t> idx;
  for (const auto& it : d.items) idx.push_back(cache.find(it.id));
  return idx;
}

// The held-out items' ids, one per line (melgraph eval --queries reads it back), so that the
// index of a run can be scored on exactly the items the run never trained on.
void write_held_out_items(const TrainingData& d, const std::string& path) {
  std::string text;
  for (const int32_t i : d.val_items) text += d.items[static_cast<size_t>(i)].id + "\n";
  write_file_atomic(path, text);
}

// The trainer's own part of a checkpoint (TrainState::trainer).
struct TrainerState {
  int64_t run_id = 0;
  double best_recall = -1;
  int64_t best_step = 0;
  int stale_validations = 0;  // validations since the best one (early stopping)
  int64_t skipped_steps = 0;  // non-finite steps skipped

  std::string to_json() const {
    return Json{{"run_id", run_id},
                {"best_recall", best_recall},
                {"best_step", best_step},
                {"stale_validations", stale_validations},
                {"skipped_steps", skipped_steps}}
        .dump();
  }
  static TrainerState from_json(const std::string& s, const std::string& source) {
    TrainerState t;
    try {
      const Json j = Json::parse(s);
      t.run_id = j.at("run_id").get<int64_t>();
      t.best_recall = j.at("best_recall").get<double>();
      t.best_step = j.at("best_step").get<int64_t>();
      t.stale_validations = j.at("stale_validations").get<int>();
      t.skipped_steps = j.at("skipped_steps").get<int64_t>();
    } catch (const std::exception& e) {
      throw CheckpointError(source + ": the trainer state in the checkpoint is unreadable (" + e.what() + ")");
    }
    return t;
  }
};

// Names the first value of `buf` (parameters or their gradients) that is a NaN, an infinity or
// larger than `bound` in magnitude: "<what> of <tensor> [<i>] (<value>)"; "" when none is.
std::string first_bad_value(Backend& be, const TensorBuffer& buf, const char* what,
                            float bound = std::numeric_limits<float>::infinity()) {
  std::vector<float> host;
  for (const TensorSpec& s : buf.layout().specs()) {
    host.resize(static_cast<size_t>(s.numel()));
    be.to_host(host.data(), buf.data() + s.offset, host.size() * sizeof(float));
    for (size_t i = 0; i < host.size(); ++i)
      if (!std::isfinite(host[i]) || std::fabs(host[i]) > bound) {
        char value[32];
        std::snprintf(value, sizeof value, "%g", static_cast<double>(host[i]));
        return std::string(what) + " of " + s.name + " [" + std::to_string(i) + "] (" + value + ")";
      }
  }
  return "";
}

// Trained parameters of this model stay near their initial scale (|x| ~ 0.1 to a few; batch
// norm's running variance tracks features of that scale). Beyond this magnitude they can only
// come from a diverged optimizer, usually a learning rate far too large; they are finite, so the
// non-finite guard does not see them, yet every later step and every checkpoint would carry them.
constexpr float kExplodedParameter = 1e6f;

// Decodes the selected items into the cache; returns the ids that gave no audio.
std::unordered_set<std::string> prepare(const TrainingData& d, const Config& cfg, const std::string& dir,
                                        const TrainOptions& o) {
  std::vector<audio::PrepareItem> items;
  for (const auto& it : d.items) items.push_back({it.id, it.path});
  audio::PrepareOptions po;
  po.threads = o.prepare_threads;
  po.progress = o.quiet ? nullptr : stderr;
  const audio::PrepareSummary s = audio::prepare_cache(items, cfg.audio, dir, po);
  std::printf("audio cache %s: %lld decoded, %lld unchanged, %lld failed (%.2f h cached)\n", dir.c_str(),
              static_cast<long long>(s.decoded), static_cast<long long>(s.unchanged),
              static_cast<long long>(s.failed_total()), s.cache_seconds / 3600.0);
  std::unordered_set<std::string> failed;
  for (const auto& f : s.failures) {
    failed.insert(f.id);
    if (failed.size() <= 5) std::printf("  no audio for %s: %s\n", f.id.c_str(), f.message.c_str());
  }
  if (failed.size() > 5) std::printf("  ... and %zu more without audio\n", failed.size() - 5);
  return failed;
}

// The step count and schedule of a selection, checked before its audio is decoded: with
// train.epochs, a warm-up longer than the run is known only once the selection is.
int64_t steps_per_epoch_of(const Config& cfg, const TrainingData& data) {
  const int64_t B = cfg.train.batch_triplets;
  return std::max<int64_t>(1, (static_cast<int64_t>(data.anchors.size()) + B - 1) / B);
}
int64_t total_steps_of(const Config& cfg, const TrainingData& data) {
  return cfg.train.epochs > 0 ? cfg.train.epochs * steps_per_epoch_of(cfg, data) : cfg.train.steps;
}
void check_schedule_of(const Config& cfg, const TrainingData& data) {
  (void)make_lr_schedule(cfg, total_steps_of(cfg, data));  // throws ConfigError
}

// Selects the items and decodes them into the cache. Items that fail to decode are left out of
// the selection; with data.top_k the next ranks with audio take their places, and those are
// decoded in turn (prepare_cache skips what is already cached), until every selected item has
// audio. Each round leaves out at least one more item, so the rounds end. `check` sees the first
// selection before anything is decoded (and may throw).
TrainingData select_and_prepare(const Config& cfg, int threads, const std::string& cache_dir, const TrainOptions& o,
                                const std::function<void(const TrainingData&)>& check) {
  std::unordered_set<std::string> no_audio, with_audio;
  TrainingData data = build_training_data(cfg, threads, no_audio);
  check(data);
  for (;;) {
    const std::unordered_set<std::string> failed = prepare(data, cfg, cache_dir, o);
    if (failed.empty()) return data;
    for (const auto& it : data.items)
      if (!failed.count(it.id)) with_audio.insert(it.id);
    no_audio.insert(failed.begin(), failed.end());
    data = build_training_data(cfg, threads, no_audio);
    const auto fresh = std::count_if(data.items.begin(), data.items.end(),
                                     [&](const TrainingData::Item& it) { return !with_audio.count(it.id); });
    if (fresh == 0) return data;  // without data.top_k: the same items, less the failed ones
    std::printf("replacements selected for the items without audio: %lld\n", static_cast<long long>(fresh));
  }
}

// The batches of the loop, one step ahead: the next step's batch is uploaded while the current
// step computes (CUDA: a copy stream into the other of two device buffers); on the CPU the
// loader's host buffer is the input itself. An upload waits for the device work enqueued
// before it (Backend::upload_async), so the next batch's copy is enqueued before the step it
// should overlap, and wait_uploads() puts each step after its own batch's copy.
// MELGRAPH_TRAIN_POISON_STEP=S writes a NaN into step S's batch before its upload (the tests'
// hook for the non-finite paths).
class BatchFeed {
 public:
  BatchFeed(BatchLoader& loader, Backend& be, size_t batch_bytes, int64_t first_step, int64_t last_step)
      : loader_(loader),
        be_(be),
        bytes_(batch_bytes),
        last_step_(last_step),
        on_device_(be.device() != Device::CPU),
        audio_a_(be, on_device_ ? static_cast<int64_t>(batch_bytes / sizeof(float)) : 0),
        audio_b_(be, on_device_ ? static_cast<int64_t>(batch_bytes / sizeof(float)) : 0) {
    const char* poison_env = std::getenv("MELGRAPH_TRAIN_POISON_STEP");
    poison_step_ = poison_env ? std::atoll(poison_env) : -1;
    cur_ = take(first_step);
  }

  // Step s's batch, its audio in *audio [rows, S] (device memory), with step s + 1's upload
  // enqueued behind it.
  const Batch& begin_step(int64_t s, const float** audio) {
    *audio = on_device_ ? device_audio(s) : cur_->audio;
    if (on_device_) be_.wait_uploads();
    nxt_ = s < last_step_ ? take(s + 1) : nullptr;
    return *cur_;
  }
  // After the step's statistics were read (which synchronises): the device is done with it.
  void end_step() {
    loader_.release();
    cur_ = nxt_;
  }
  LoaderStats stats() const { return loader_.stats(); }

 private:
  const Batch* take(int64_t s) {
    const Batch* b = &loader_.next();
    if (b->step == poison_step_) b->audio[0] = std::numeric_limits<float>::quiet_NaN();
    if (on_device_) be_.upload_async(device_audio(s), b->audio, bytes_);
    return b;
  }
  float* device_audio(int64_t s) const { return s % 2 == 0 ? audio_a_.p : audio_b_.p; }

  BatchLoader& loader_;
  Backend& be_;
  size_t bytes_;
  int64_t last_step_;
  bool on_device_;
  DeviceArray<float> audio_a_, audio_b_;  // [rows, S] each; empty on the CPU
  int64_t poison_step_ = -1;
  const Batch* cur_ = nullptr;  // the computing step's batch
  const Batch* nxt_ = nullptr;  // the next step's, uploading
};

// A training run, as the phases run_training lists. The members are what the phases share,
// in the order they come to exist.
class TrainingRun {
 public:
  TrainingRun(const Config& cfg, const TrainOptions& o)
      : cfg_(cfg),
        o_(o),
        own_comm_(o.comm ? nullptr : dist::single_process()),
        comm_(o.comm ? *o.comm : *own_comm_),
        leader_(comm_.leader()) {
    check_run_dir();
  }

  // ---- the phases -------------------------------------------------------------------------
  void open_backend();     // the device, before any decoding: a wrong --device fails in a moment
  void prepare_data();     // the graph, the selection, the audio cache; held_out_items.txt
  void build_model();      // backend, model, optimizer, train step; the step count and schedule
  void start_or_resume();  // a new run (init, input statistics, a runs.sqlite row) or the checkpoint's
  TrainResult train();     // the untrained validation, the loop, the ending

 private:
  void check_run_dir();
  void close_abandoned_runs();
  StepStats compute_gradients(const Batch& batch, const float* audio, int64_t s);
  bool skip_nonfinite(int64_t s, const StepStats& st);  // false: the run stops (train.nonfinite = "stop")
  bool parameters_sane(int64_t s);                      // false: exploded; the run ended as diverged
  std::string last_good_checkpoint() const;
  bool stopped_early() const;
  TrainResult nothing_to_do();
  std::string early_stop_message(int64_t s) const;
  void log_step(int64_t s, const StepStats& st, double lr, int64_t clips_done, double loss_ema, bool force);
  bool validate_and_keep_best(int64_t s, const BatchFeed& feed);  // true: stop early
  ValidationReport run_validation(int64_t s, bool baseline);
  TrainState train_state(int64_t s) const;
  void save_last(int64_t s);
  std::string finished_message(const std::string& how) const;
  TrainResult end(TrainStatus status, RunStatus db_status, int64_t steps, std::string message);
  // runs.sqlite is the leader's (rank 0's); on the other ranks these do nothing.
  void log_metric(int64_t s, const std::string& name, double value) {
    if (db_) db_->log(ts_.run_id, s, name, value);
  }
  void flush_metrics() {
    if (db_) db_->flush();
  }
  void share_model_state();
  dist::Comm& step_comm() { return device_comm_ ? *device_comm_ : comm_; }
  std::unique_ptr<Optimizer> gather_moments();
  TrainState load_with_optimizer();

  Config cfg_;
  const TrainOptions& o_;
  // The ranks of a data-parallel run (one process: a single_process() of our own). Every rank
  // runs every phase alike; the leader (rank 0) alone writes the run directory's files.
  std::unique_ptr<dist::Comm> own_comm_;
  dist::Comm& comm_;
  bool leader_ = true;
  std::optional<FileLock> run_lock_;  // run_dir/train.lock: one training process per run directory
  fs::path run_dir_, last_path_, best_path_;
  std::string cache_dir_;

  TrainingData data_;
  std::optional<audio::AudioCache> cache_;
  std::vector<int64_t> item_cache_;   // the cache entry of every selected item
  std::vector<int64_t> train_cache_;  // ... of every training item

  std::unique_ptr<Backend> be_;
  std::unique_ptr<dist::Comm> device_comm_;  // NCCL over comm_'s ranks, for a CUDA backend
  int B_ = 0, rows_ = 0;                     // the global batch: anchors and clips
  int local_rows_ = 0;                       // this rank's clips: rows_ / ranks
  bool mining_ = false, contrastive_ = false;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> opt_;
  bool zero_ = false;  // ZeRO-1: opt_ holds this rank's slice of the moments
  std::unique_ptr<TrainStep> step_;
  int64_t steps_per_epoch_ = 1, total_ = 0;
  LrSchedulePlan schedule_;

  std::unique_ptr<RunDb> db_;  // the leader's; null on the other ranks
  TrainerState ts_;
  int64_t done_ = 0;        // steps taken before this invocation
  int64_t last_saved_ = 0;  // the step of last.safetensors
  TrainResult result_;
  std::optional<ProgressLine> progress_;  // stderr, or nothing with --quiet
  WallClock::time_point t_loop_{};
};

void TrainingRun::check_run_dir() {
  const int B = cfg_.train.batch_triplets, ranks = comm_.size();
  if (B % ranks != 0)
    throw std::invalid_argument("train.batch_triplets " + std::to_string(B) +
                                " is the global batch and does not split "
                                "evenly over " +
                                std::to_string(ranks) + " ranks; use a multiple of " + std::to_string(ranks) +
                                " (e.g. " + std::to_string((B / ranks + 1) * ranks) + ")");
  if (cfg_.data.edges.empty())
    throw std::invalid_argument("data.edges is not set: the training run needs the preference graph's edge list");
  if (cfg_.data.catalog.empty())
    throw std::invalid_argument("data.catalog is not set: the training run needs the audio catalog (id, path)");
  run_dir_ = fs::path(cfg_.data.run_dir);
  fs::create_directories(run_dir_);
  try {  // the leader's: the other ranks of the run are its own
    if (leader_)
      run_lock_.emplace((run_dir_ / "train.lock").string(),
                        "another melgraph train is using " + run_dir_.string() +
                            "; wait for it to end, or choose another data.run_dir (--set data.run_dir=...)");
  } catch (const FileLockBusy& e) {
    throw std::invalid_argument(e.what());
  }
  cache_dir_ = cfg_.data.cache.empty() ? (run_dir_ / "cache").string() : cfg_.data.cache;
  last_path_ = run_dir_ / kLastCheckpointFile;
  best_path_ = run_dir_ / kBestCheckpointFile;
  if (!o_.resume && fs::exists(last_path_))
    throw std::invalid_argument(last_path_.string() +
                                " exists: this run directory holds a run. Continue it with --resume, or choose "
                                "another data.run_dir (--set data.run_dir=...)");
  if (o_.resume && !fs::exists(last_path_))
    throw std::invalid_argument("--resume: no checkpoint " + last_path_.string() + " to resume from");
  if (o_.resume) {
    // The run continues under the config it started with; a changed config would make the
    // resumed run a different one.
    Config stored;
    try {  // the whole checkpoint, now: a damaged one must not fail only after decoding the audio
      stored = verify_checkpoint(last_path_.string(), true);
    } catch (const CheckpointError& e) {
      throw std::invalid_argument(std::string("--resume: ") + e.what() +
                                  " (the run directory's last checkpoint cannot be resumed from)");
    }
    if (to_toml(stored) != to_toml(cfg_))
      throw std::invalid_argument("--resume: the config differs from the one " + last_path_.string() +
                                  " was trained with; resume with the same config (see " +
                                  (run_dir_ / kRunConfigFile).string() + ")");
  }
  if (leader_) write_file_atomic((run_dir_ / kRunConfigFile).string(), to_toml(cfg_));
}

void TrainingRun::open_backend() {
  std::string note;
  be_ = make_backend(o_.backend, &note);
  std::printf("%s\n", note.c_str());
}

void TrainingRun::prepare_data() {
  const auto t0 = WallClock::now();
  data_ = select_and_prepare(cfg_, o_.backend.threads, cache_dir_, o_,
                             [&](const TrainingData& d) { check_schedule_of(cfg_, d); });
  cache_.emplace(audio::AudioCache::open(cache_dir_));
  item_cache_ = cache_indices(data_, *cache_);
  for (const int32_t i : data_.train_items) train_cache_.push_back(item_cache_[static_cast<size_t>(i)]);
  for (size_t i = 0; i < item_cache_.size(); ++i)
    if (item_cache_[i] < 0) throw std::logic_error("item " + data_.items[i].id + " is missing from the cache");
  std::printf("%s\n(graph and audio ready in %.1f s)\n", data_.summary().c_str(), seconds_since(t0));
  if (leader_) write_held_out_items(data_, (run_dir_ / kHeldOutItemsFile).string());
}

void TrainingRun::build_model() {
  B_ = cfg_.train.batch_triplets;
  mining_ = mines_in_batch(cfg_);
  contrastive_ = cfg_.loss.name == LossKind::Contrastive;
  if (contrastive_ && cfg_.train.mining != Mining::Offline)
    std::printf("note: train.mining applies to the triplet loss only; the contrastive loss takes every other row of "
                "the batch as a negative\n");
  rows_ = static_cast<int>(batch_rows(cfg_));
  const int ranks = comm_.size();
  local_rows_ = rows_ / ranks;
  // ZeRO-1 splits the flat buffers into one equal slice per rank (one process: nothing to split).
  zero_ = cfg_.train.zero == 1 && ranks > 1;
  model_ = std::make_unique<Model>(cfg_, *be_, local_rows_, rows_, zero_ ? 64 * int64_t{ranks} : 1);
  if (ranks > 1 && be_->device() == Device::CUDA)
    device_comm_ = dist::nccl_comm(comm_, be_->native_stream(), std::max(0, o_.backend.cuda_device));
  opt_ = std::make_unique<Optimizer>(*be_, model_->params().layout(), cfg_.optim,
                                     zero_ ? TrainStep::zero_shard(*model_, step_comm()) : OptimizerShard{});
  step_ = std::make_unique<TrainStep>(*model_);
  step_->set_capture(o_.capture);
  if (ranks > 1) {
    // On a GPU the step's collectives are NCCL's, ordered with the backend's stream; the control
    // ones stay with the host communicator.
    step_->set_data_parallel(step_comm());
    if (zero_) step_->set_zero(*opt_);
    std::printf("data-parallel: %s, %d of the %d clips of every step on each%s\n", step_comm().describe().c_str(),
                local_rows_, rows_, zero_ ? "; ZeRO-1: Adam's moments sharded over the ranks" : "");
  }
  if (!in_batch_layout(cfg_)) step_->set_triplets(TrainStep::offline_triplets(B_));

  steps_per_epoch_ = steps_per_epoch_of(cfg_, data_);
  total_ = total_steps_of(cfg_, data_);
  schedule_ = make_lr_schedule(cfg_, total_);
}

void TrainingRun::start_or_resume() {
  if (leader_) {
    db_ = std::make_unique<RunDb>((run_dir_ / kRunsDbFile).string());
    db_->mirror_to_jsonl((run_dir_ / kMetricsJsonlFile).string());
  }
  if (o_.resume) {
    const TrainState st = load_with_optimizer();
    done_ = st.step;
    ts_ = TrainerState::from_json(st.trainer, last_path_.string());
    // A finished run resumed with nothing left to do keeps its row (status and final message).
    if (db_) {
      const RunStatus was = done_ >= total_ || stopped_early() ? db_->run(ts_.run_id).value_or(RunRecord{}).status
                                                               : db_->resume_run(ts_.run_id, done_);
      std::printf("resuming run %lld at step %lld of %lld (it was %s)\n", static_cast<long long>(ts_.run_id),
                  static_cast<long long>(done_), static_cast<long long>(total_), to_string(was));
    }
  } else {
    model_->init_params(cfg_.train.seed);
    if (cfg_.model.input_norm == InputNorm::Band) {
      // Measured once, before step 0, on the training items only (held-out audio never shapes
      // the model); stored in every checkpoint from here on.
      const embed::BandStats bs = embed::band_statistics(*model_, *cache_, train_cache_, embed::kDefaultCrops);
      model_->set_input_stats(bs.mean, bs.std);
      std::printf("input statistics: log-mel mean and std per band over %lld frames of %zu training items\n",
                  static_cast<long long>(bs.frames), train_cache_.size());
    }
    RunInfo info;
    info.name = run_dir_.filename().string();
    info.config = to_toml(cfg_);
    info.seed = cfg_.train.seed;
    info.device = be_->describe() + (comm_.size() > 1 ? "; " + comm_.describe() : std::string());
    if (db_) ts_.run_id = db_->begin_run(info);
    std::printf("run %lld in %s: %lld steps of %d %s (%d clips), %lld steps per epoch%s\n",
                static_cast<long long>(ts_.run_id), run_dir_.string().c_str(), static_cast<long long>(total_), B_,
                batch_unit(cfg_), rows_, static_cast<long long>(steps_per_epoch_),
                cfg_.train.precision == Precision::BF16 ? ", bf16 conv and linear (float32 master weights)" : "");
  }
  share_model_state();
  last_saved_ = done_;
  result_.run_id = ts_.run_id;
  result_.held_out_groups = data_.held_out_groups;
  if (db_) close_abandoned_runs();
}

// Every rank starts from rank 0's parameters and state (initialised or loaded alike, but a
// machine's own BLAS may round the input statistics differently): from here on the ranks take
// the same steps from the same model.
void TrainingRun::share_model_state() {
  if (comm_.size() == 1) return;
  for (TensorBuffer* buf : {&model_->params(), &model_->state()}) {
    if (buf->size() == 0) continue;  // a model without state (no input or head norm)
    std::vector<float> host(static_cast<size_t>(buf->size()));
    be_->to_host(host.data(), buf->data(), host.size() * sizeof(float));
    comm_.broadcast(host.data(), host.size() * sizeof(float));
    be_->to_device(buf->data(), host.data(), host.size() * sizeof(float));
  }
}

// ZeRO-1's moments, whole, for a checkpoint: each rank's slice in place in a full-size
// optimizer (allocated for the checkpoint only), then the slices all-gathered. Null when the
// optimizer is not sharded.
std::unique_ptr<Optimizer> TrainingRun::gather_moments() {
  if (!zero_) return nullptr;
  auto full = std::make_unique<Optimizer>(*be_, model_->params().layout(), cfg_.optim);
  const OptimizerShard& sh = opt_->shard();
  for (auto [from, to] : {std::pair{&opt_->m(), &full->m()}, std::pair{&opt_->v(), &full->v()}}) {
    be_->copy(to->data() + sh.first, from->data(), static_cast<size_t>(sh.count) * sizeof(float));
    step_comm().allgather_slices(to->data(), sh.count);
  }
  full->set_step_count(opt_->step_count());
  be_->synchronize();
  return full;
}

// A checkpoint's moments are whole: a ZeRO-1 rank loads them into a full-size optimizer and
// keeps its slice, so a run resumes with any number of ranks, sharded or not.
TrainState TrainingRun::load_with_optimizer() {
  if (!zero_) return load_checkpoint(last_path_.string(), *model_, opt_.get());
  Optimizer full(*be_, model_->params().layout(), cfg_.optim);
  TrainState st = load_checkpoint(last_path_.string(), *model_, &full);
  const OptimizerShard& sh = opt_->shard();
  be_->copy(opt_->m().data(), full.m().data() + sh.first, static_cast<size_t>(sh.count) * sizeof(float));
  be_->copy(opt_->v().data(), full.v().data() + sh.first, static_cast<size_t>(sh.count) * sizeof(float));
  opt_->set_step_count(full.step_count());
  be_->synchronize();
  return st;
}

// This process holds the run directory's lock, so no other one is training here: a run still
// marked running was ended by a kill or a crash before it could say so.
void TrainingRun::close_abandoned_runs() {
  for (const RunRecord& r : db_->runs())
    if (r.status == RunStatus::Running && r.id != ts_.run_id)
      db_->end_run(
          r.id, RunStatus::Failed,
          "the process ended without closing this run (killed or crashed); found by run " + std::to_string(ts_.run_id));
}

TrainResult TrainingRun::train() {
  // An exception from here on (a failed cache read, a full disk) must not leave the run marked
  // running: it ends as failed, and the error itself propagates to the caller.
  struct FailedRunGuard {
    RunDb* db;
    int64_t id;
    const int64_t& saved;
    ~FailedRunGuard() {
      if (std::uncaught_exceptions() == 0 || !db) return;
      try {
        db->end_run(id, RunStatus::Failed,
                    "stopped by an error (see the program's output); last checkpoint at step " + std::to_string(saved));
      } catch (...) {  // already ended, or the database itself is what failed
      }
    }
  } failed_run_guard{db_.get(), ts_.run_id, last_saved_};

  progress_.emplace(o_.quiet ? nullptr : stderr);
  if (done_ == 0) {
    const ValidationReport r0 = run_validation(0, true);
    result_.initial = r0;
    std::printf("step 0 (untrained model), validation in %.1f s:\n%s", r0.seconds, format_report(r0, true).c_str());
    std::fflush(stdout);
  }
  if (done_ >= total_ || stopped_early()) return nothing_to_do();

  BatchLoader loader(data_, *cache_, train_cache_, cfg_, *be_, done_ + 1, total_, Shard{comm_.rank(), comm_.size()});
  const size_t batch_bytes =
      static_cast<size_t>(local_rows_) * static_cast<size_t>(cfg_.audio.clip_samples()) * sizeof(float);
  BatchFeed feed(loader, *be_, batch_bytes, done_ + 1, total_);
  t_loop_ = WallClock::now();
  int64_t clips_done = 0;
  double loss_ema = -1;
  for (int64_t s = done_ + 1; s <= total_; ++s) {
    const float* audio = nullptr;
    const Batch& batch = feed.begin_step(s, &audio);
    const StepStats st = compute_gradients(batch, audio, s);
    feed.end_step();
    const bool finite = std::isfinite(st.loss) && std::isfinite(st.grad_norm);
    if (!finite && !skip_nonfinite(s, st)) return result_;
    const bool validate_now = s % cfg_.train.validate_every == 0 || s == total_;
    if (finite) {  // a skipped step changes nothing, but its validation, checkpoint and stop still happen
      const double lr = lr_at(schedule_, opt_->step_count() + 1);
      step_->update(*opt_, lr);
      clips_done += rows_;
      loss_ema = loss_ema < 0 ? st.loss : 0.9 * loss_ema + 0.1 * st.loss;
      log_step(s, st, lr, clips_done, loss_ema, validate_now);
    }
    stop_point("train.step");  // kill tests (engine/io/stop_point.h): the step's metrics buffered, not stored
    // A signal may reach the ranks at different steps: they stop together, at the first step
    // any of them saw it.
    const bool stop = comm_.any(o_.stop && o_.stop->load()) || (o_.stop_after > 0 && s >= o_.stop_after && s < total_);
    const bool checkpoint_due = s % cfg_.train.checkpoint_every == 0 || s == total_ || stop;
    if ((validate_now || checkpoint_due) && !parameters_sane(s)) return result_;
    const bool early = validate_now && validate_and_keep_best(s, feed);
    if (checkpoint_due || early) save_last(s);
    if (stop)
      return end(TrainStatus::Interrupted, RunStatus::Interrupted, s,
                 "stopped at step " + std::to_string(s) + "; checkpoint " + last_path_.string() +
                     ". Resume with: melgraph train --config " + o_.config_path + " --resume");
    if (early) return end(TrainStatus::EarlyStopped, RunStatus::Finished, s, early_stop_message(s));
  }
  return end(TrainStatus::Finished, RunStatus::Finished, total_,
             finished_message(" in " + format_duration(seconds_since(t_loop_))));
}

// Early stopping had ended the run whose checkpoint this is (its saved patience is spent):
// resuming it must not train on past where it stopped.
bool TrainingRun::stopped_early() const {
  return cfg_.train.early_stopping > 0 && ts_.stale_validations >= cfg_.train.early_stopping;
}

std::string TrainingRun::early_stop_message(int64_t s) const {
  return "early stopping at step " + std::to_string(s) + ": no better validation recall in " +
         std::to_string(ts_.stale_validations) + " validations (best " + std::to_string(ts_.best_recall) + " at step " +
         std::to_string(ts_.best_step) + ")";
}

// A resumed run that had already ended, by taking every step or by early stopping. Its runs row
// keeps the ending it has (start_or_resume left it alone), unless it has none: the process that
// wrote the final checkpoint was killed before it closed the run, which would stay "running" for
// good (close_abandoned_runs spares this one).
TrainResult TrainingRun::nothing_to_do() {
  const bool early = stopped_early();
  std::string nothing =
      early ? "nothing to do: early stopping ended this run at step " + std::to_string(done_)
            : "nothing to do: the checkpoint is at step " + std::to_string(done_) + " of " + std::to_string(total_);
  if (db_ && db_->run(ts_.run_id).value_or(RunRecord{}).status == RunStatus::Running) {
    const std::string closed =
        " (closed by a resume: the process that wrote the final checkpoint ended before "
        "closing the run)";
    end(early ? TrainStatus::EarlyStopped : TrainStatus::Finished, RunStatus::Finished, done_,
        early ? early_stop_message(done_) + closed : finished_message(closed));
    nothing += "; the run, left open by the process that wrote it, is closed as finished";
  }
  result_.status = early ? TrainStatus::EarlyStopped : TrainStatus::Finished;
  result_.steps = done_;
  result_.message = nothing;
  return result_;
}

// The ending of a run that took all its steps; `how` follows "finished N steps".
std::string TrainingRun::finished_message(const std::string& how) const {
  std::string message = "finished " + std::to_string(total_) + " steps" + how + "; best recall@" +
                        std::to_string(cfg_.data.recall_k) + " " + std::to_string(ts_.best_recall) + " at step " +
                        std::to_string(ts_.best_step) +
                        (fs::exists(best_path_) ? " (" + best_path_.string() + ")" : " (no best checkpoint written)");
  if (ts_.skipped_steps > 0) message += "; " + std::to_string(ts_.skipped_steps) + " non-finite steps skipped";
  return message;
}

// Forward and backward of step s, its statistics read back (which synchronises).
StepStats TrainingRun::compute_gradients(const Batch& batch, const float* audio, int64_t s) {
  const NegativeMining rule =
      cfg_.train.mining == Mining::SemiHard ? NegativeMining::SemiHard : NegativeMining::BatchHard;
  if (mining_) step_->set_mining(batch.hops, B_, rule, cfg_.train.neg_hops);
  if (contrastive_) step_->set_contrastive(batch.hops, B_, cfg_.train.pos_hops, cfg_.train.neg_hops);
  model_->set_dropout_step(cfg_.train.seed, static_cast<uint64_t>(s));
  step_->gradients(audio, local_rows_, cfg_.loss, *opt_);
  return step_->read_stats(opt_.get());
}

bool TrainingRun::skip_nonfinite(int64_t s, const StepStats& st) {
  std::string bad = !std::isfinite(st.loss) ? "the loss (" + std::to_string(st.loss) + ")" : std::string();
  if (bad.empty()) bad = first_bad_value(*be_, model_->grads(), "the gradient");
  if (bad.empty()) bad = "the gradient norm (" + std::to_string(st.grad_norm) + ")";
  progress_->finish();
  if (cfg_.train.nonfinite == NonFinite::Skip) {
    ++ts_.skipped_steps;
    std::printf("step %lld: %s is not finite; step skipped (train.nonfinite = \"skip\"), parameters unchanged\n",
                static_cast<long long>(s), bad.c_str());
    log_metric(s, "train.skipped_nonfinite", 1.0);
    // The step is not taken: the optimizer's count and the schedule stay where they are.
    return true;
  }
  log_metric(s, "train.nonfinite", 1.0);
  end(TrainStatus::Diverged, RunStatus::Diverged, s - 1,
      "step " + std::to_string(s) + ": " + bad +
          " is not finite; stopped before updating the parameters (train.nonfinite = \"stop\"). " +
          last_good_checkpoint());
  return false;
}

// Before anything saves or judges the parameters (validation, checkpoints): exploded ones end
// the run as diverged whatever train.nonfinite says (there is no step to skip: they were made
// by updates already taken), and last.safetensors and best.safetensors keep their good state.
bool TrainingRun::parameters_sane(int64_t s) {
  const std::string bad = first_bad_value(*be_, model_->params(), "the parameter", kExplodedParameter);
  if (bad.empty()) return true;
  char lr[32];
  std::snprintf(lr, sizeof lr, "%g", cfg_.optim.adam.lr);
  log_metric(s, "train.exploded", 1.0);
  end(TrainStatus::Diverged, RunStatus::Diverged, s,
      "step " + std::to_string(s) + ": " + bad + " has exploded (beyond " + std::to_string(kExplodedParameter) +
          " in magnitude, though finite): the optimizer diverged; lower optim.lr (" + lr +
          ") or set optim.clip_norm. Not saved as a checkpoint. " + last_good_checkpoint());
  return false;
}

std::string TrainingRun::last_good_checkpoint() const {
  return last_saved_ > 0
             ? "The last good checkpoint is " + last_path_.string() + " (step " + std::to_string(last_saved_) + ")"
             : std::string("No checkpoint was written before it");
}

// The step's metrics in runs.sqlite and the progress line.
void TrainingRun::log_step(int64_t s, const StepStats& st, double lr, int64_t clips_done, double loss_ema,
                           bool force) {
  log_metric(s, "train.loss", st.loss);
  log_metric(s, "train.active", st.active);
  // Of the triplets (mined ones with mining) or contrastive rows the loss could learn from.
  const int valid = mining_ ? static_cast<int>(st.mined) : contrastive_ ? rows_ : B_;
  log_metric(s, "train.active_share", valid > 0 ? static_cast<double>(st.active) / static_cast<double>(valid) : 0.0);
  log_metric(s, "train.grad_norm", st.grad_norm);
  log_metric(s, "train.lr", lr);
  if (mining_) log_metric(s, "train.mined", st.mined);
  const double elapsed = seconds_since(t_loop_);
  const double clips_per_s = static_cast<double>(clips_done) / std::max(elapsed, 1e-9);
  log_metric(s, "train.clips_per_second", clips_per_s);
  const double eta = elapsed / static_cast<double>(s - done_) * static_cast<double>(total_ - s);
  char line[256];
  std::snprintf(line, sizeof line, "step %lld/%lld  epoch %lld  loss %.4f (avg %.4f)  active %d/%d  lr %.2e  %.0f clips/s  ETA %s",
                static_cast<long long>(s), static_cast<long long>(total_),
                static_cast<long long>((s - 1) / steps_per_epoch_ + 1), st.loss, loss_ema,
                static_cast<int>(st.active), valid, lr, clips_per_s, format_duration(eta).c_str());
  progress_->update(line, force);
}

// Validation at step s: the report, the loader's figures, best.safetensors when the recall is
// the best yet; true when early stopping says stop.
bool TrainingRun::validate_and_keep_best(int64_t s, const BatchFeed& feed) {
  progress_->finish();
  const ValidationReport r = run_validation(s, false);
  result_.last = r;
  const double recall = r.selection_recall();
  const LoaderStats ls = feed.stats();
  const double per_thread = ls.busy_seconds > 0 ? static_cast<double>(ls.clips) / ls.busy_seconds : 0.0;
  std::printf("step %lld validation (%.1f s; loader %.0f clips/s per thread, trainer waited %.1f s):\n%s",
              static_cast<long long>(s), r.seconds, per_thread, ls.wait_seconds, format_report(r, false).c_str());
  log_metric(s, "loader.clips_per_thread_second", per_thread);
  const double loop_seconds = seconds_since(t_loop_);
  log_metric(s, "loader.wait_fraction", loop_seconds > 0 ? ls.wait_seconds / loop_seconds : 0.0);
  const std::string advice = input_bound_advice(ls, loop_seconds, cfg_);
  if (!advice.empty()) std::printf("  %s\n", advice.c_str());
  bool early = false;
  if (recall > ts_.best_recall) {
    ts_.best_recall = recall;
    ts_.best_step = s;
    ts_.stale_validations = 0;
    if (leader_) save_checkpoint(best_path_.string(), *model_, nullptr, train_state(s));
    std::printf("  new best recall@%d %.4f: %s\n", cfg_.data.recall_k, recall, best_path_.string().c_str());
  } else {
    ++ts_.stale_validations;
    early = cfg_.train.early_stopping > 0 && ts_.stale_validations >= cfg_.train.early_stopping;
  }
  std::fflush(stdout);
  // Every rank validated the same model on the same items; the leader's word decides.
  return comm_.any(leader_ && early);
}

ValidationReport TrainingRun::run_validation(int64_t s, bool baseline) {
  ValidationReport r = validate(*model_, *cache_, item_cache_, data_, cfg_.data.recall_k, baseline);
  for (const auto& [name, value] : r.metrics(baseline)) log_metric(s, name, value);
  flush_metrics();
  return r;
}

// What a checkpoint at step s records besides the tensors.
TrainState TrainingRun::train_state(int64_t s) const {
  TrainState st;
  st.step = s;
  st.epoch = (s - 1) / steps_per_epoch_;
  st.seed = cfg_.train.seed;
  st.trainer = ts_.to_json();
  return st;
}

// Metrics first: once last.safetensors says step s, every metric up to s must be stored. A
// kill between the two leaves metrics past the checkpoint, which the resume deletes and logs
// again (RunDb::resume_run); the other order lost the rows up to s for good.
// Test hooks: MELGRAPH_TRAIN_CRASH_IN_CHECKPOINT=S ends the process with _exit(137) between
// the two writes of step S's checkpoint, as a kill -9 would; the kill tests stop the process
// there (train.checkpoint), after the temporary file (rename:last.safetensors) and after the
// rename (train.checkpointed) to kill it (engine/io/stop_point.h).
void TrainingRun::save_last(int64_t s) {
  // ZeRO-1: every rank sends its slice of the moments (a collective), the leader writes them.
  const std::unique_ptr<Optimizer> gathered = gather_moments();
  if (!leader_) {  // the checkpoint is the leader's alone: no rank writes half of one
    last_saved_ = s;
    return;
  }
  flush_metrics();
  if (const char* crash = std::getenv("MELGRAPH_TRAIN_CRASH_IN_CHECKPOINT"); crash && std::atoll(crash) == s)
    _exit(137);
  stop_point("train.checkpoint");
  save_checkpoint(last_path_.string(), *model_, gathered ? gathered.get() : opt_.get(), train_state(s));
  last_saved_ = s;
  stop_point("train.checkpointed");
}

TrainResult TrainingRun::end(TrainStatus status, RunStatus db_status, int64_t steps, std::string message) {
  if (progress_) progress_->finish();
  result_.status = status;
  result_.steps = steps;
  result_.best_recall = ts_.best_recall;
  result_.best_step = ts_.best_step;
  result_.skipped_steps = ts_.skipped_steps;
  result_.message = std::move(message);
  if (db_) db_->end_run(ts_.run_id, db_status, result_.message);
  return result_;
}

}  // namespace

const char* to_string(TrainStatus s) {
  switch (s) {
    case TrainStatus::Finished: return "finished";
    case TrainStatus::Interrupted: return "interrupted";
    case TrainStatus::EarlyStopped: return "early_stopped";
    case TrainStatus::Diverged: return "diverged";
  }
  return "unknown";
}

std::string train_result_json(const TrainResult& r, const std::string& run_dir) {
  const fs::path d(run_dir);
  auto metrics_of = [](const std::optional<ValidationReport>& v, bool baseline) {
    nlohmann::json m = nlohmann::json::object();
    if (v)
      for (const auto& [name, value] : v->metrics(baseline))
        m[name] = std::isfinite(value) ? nlohmann::json(value) : nullptr;
    return m;
  };
  const nlohmann::json j{{"status", to_string(r.status)},
                         {"steps", r.steps},
                         {"skipped_steps", r.skipped_steps},
                         {"run_id", r.run_id},
                         {"best_recall", r.best_recall},
                         {"best_step", r.best_step},
                         {"recall_k", r.last      ? r.last->k
                                      : r.initial ? r.initial->k
                                                  : 0},
                         {"message", r.message},
                         {"held_out_groups", r.held_out_groups},
                         {"run_dir", run_dir},
                         {"best_checkpoint", (d / kBestCheckpointFile).string()},
                         {"last_checkpoint", (d / kLastCheckpointFile).string()},
                         {"runs_db", (d / kRunsDbFile).string()},
                         {"metrics_jsonl", (d / kMetricsJsonlFile).string()},
                         {"initial", metrics_of(r.initial, true)},
                         {"last", metrics_of(r.last, false)}};
  return json_text(j);
}

TrainResult run_training(const Config& cfg, const TrainOptions& o) {
  TrainingRun run(cfg, o);  // checks the run directory and the config, writes config.toml
  run.open_backend();
  run.prepare_data();
  run.build_model();
  run.start_or_resume();
  return run.train();
}

}  // namespace mg::train

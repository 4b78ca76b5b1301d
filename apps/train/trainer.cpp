#include "apps/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <limits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_set>

#include "apps/train/batch_loader.h"
#include "apps/train/embedder.h"
#include "apps/train/training_data.h"
#include "apps/train/validation.h"
#include "engine/atomic_file.h"
#include "engine/audio/audio_cache.h"
#include "engine/audio/prepare.h"
#include "engine/checkpoint.h"
#include "engine/lr_schedule.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/run_db.h"
#include "engine/train_step.h"
#include "engine/timer.h"

namespace mg::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

std::string format_duration(double s) {
  char buf[32];
  const auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, t / 60 % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", t);
  return buf;
}

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

// Names the first parameter gradient (or parameter) that holds a NaN or an infinity.
std::string first_nonfinite(Backend& be, const TensorBuffer& buf, const char* what) {
  std::vector<float> host;
  for (const TensorSpec& s : buf.layout().specs()) {
    host.resize(static_cast<size_t>(s.numel()));
    be.to_host(host.data(), buf.data() + s.offset, host.size() * sizeof(float));
    for (size_t i = 0; i < host.size(); ++i)
      if (!std::isfinite(host[i])) return std::string(what) + " of " + s.name + " [" + std::to_string(i) + "]";
  }
  return "";
}

// One line, redrawn in place on a terminal; on a pipe, a line every few seconds.
class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), tty_(isatty(fileno(stderr)) != 0) {}
  void update(const std::string& line, bool force) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      open_ = true;
    } else if (force || seconds(now) >= 5.0) {
      std::fprintf(stderr, "%s\n", line.c_str());
      last_ = now;
    }
    std::fflush(stderr);
  }
  // Ends the redrawn line before other output.
  void break_line() {
    if (open_) std::fprintf(stderr, "\n");
    open_ = false;
  }

 private:
  double seconds(std::chrono::steady_clock::time_point now) const {
    return std::chrono::duration<double>(now - last_).count();
  }
  bool quiet_, tty_;
  bool open_ = false;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

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

// Selects the items and decodes them into the cache. Items that fail to decode are left out of
// the selection; with data.top_k the next ranks with audio take their places, and those are
// decoded in turn (prepare_cache skips what is already cached), until every selected item has
// audio. Each round leaves out at least one more item, so the rounds end.
TrainingData select_and_prepare(const Config& cfg, int threads, const std::string& cache_dir, const TrainOptions& o) {
  std::unordered_set<std::string> no_audio, with_audio;
  TrainingData data = build_training_data(cfg, threads, no_audio);
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

}  // namespace

TrainResult run_training(const Config& cfg_in, const TrainOptions& o) {
  Config cfg = cfg_in;
  if (cfg.data.edges.empty())
    throw std::invalid_argument("data.edges is not set: the training run needs the preference graph's edge list");
  if (cfg.data.catalog.empty())
    throw std::invalid_argument("data.catalog is not set: the training run needs the audio catalog (id, path)");
  const fs::path run_dir(cfg.data.run_dir);
  fs::create_directories(run_dir);
  const std::string cache_dir = cfg.data.cache.empty() ? (run_dir / "cache").string() : cfg.data.cache;
  const fs::path last_path = run_dir / "last.safetensors", best_path = run_dir / "best.safetensors";
  if (!o.resume && fs::exists(last_path))
    throw std::invalid_argument(last_path.string() +
                                " exists: this run directory holds a run. Continue it with --resume, or choose "
                                "another data.run_dir (--set data.run_dir=...)");
  if (o.resume && !fs::exists(last_path))
    throw std::invalid_argument("--resume: no checkpoint " + last_path.string() + " to resume from");
  if (o.resume) {
    // The run continues under the config it started with; a changed config would make the
    // resumed run a different one.
    const Config stored = read_checkpoint_config(last_path.string());
    if (to_toml(stored) != to_toml(cfg))
      throw std::invalid_argument("--resume: the config differs from the one " + last_path.string() +
                                  " was trained with; resume with the same config (see " +
                                  (run_dir / "config.toml").string() + ")");
  }
  write_file_atomic((run_dir / "config.toml").string(), to_toml(cfg));
  const int threads = o.backend.threads;

  // ---- graph and audio ------------------------------------------------------------------
  auto t0 = std::chrono::steady_clock::now();
  const TrainingData data = select_and_prepare(cfg, threads, cache_dir, o);
  const audio::AudioCache cache = audio::AudioCache::open(cache_dir);
  const std::vector<int64_t> item_cache = cache_indices(data, cache);
  std::vector<int64_t> train_cache;
  for (const int32_t i : data.train_items) train_cache.push_back(item_cache[static_cast<size_t>(i)]);
  for (size_t i = 0; i < item_cache.size(); ++i)
    if (item_cache[i] < 0) throw std::logic_error("item " + data.items[i].id + " is missing from the cache");
  std::printf("%s\n(graph and audio ready in %.1f s)\n", data.summary().c_str(), seconds_since(t0));
  write_held_out_items(data, (run_dir / kHeldOutItemsFile).string());

  // ---- model, optimizer, step ---------------------------------------------------------------
  std::string note;
  std::unique_ptr<Backend> be = make_backend(o.backend, &note);
  std::printf("%s\n", note.c_str());
  const int B = cfg.train.batch_triplets;
  const bool mining = mines_in_batch(cfg);
  const bool contrastive = cfg.loss.name == LossKind::Contrastive;
  if (contrastive && cfg.train.mining != Mining::Offline)
    std::printf("note: train.mining applies to the triplet loss only; the contrastive loss takes every other row of "
                "the batch as a negative\n");
  const int rows = static_cast<int>(batch_rows(cfg));
  Model model(cfg, *be, rows);
  Optimizer opt(*be, Model::param_layout(cfg), cfg.optim);
  TrainStep step(model);
  step.set_capture(o.capture);

  const int64_t steps_per_epoch = std::max<int64_t>(1, (static_cast<int64_t>(data.anchors.size()) + B - 1) / B);
  const int64_t total = cfg.train.epochs > 0 ? cfg.train.epochs * steps_per_epoch : cfg.train.steps;
  const LrSchedulePlan schedule = make_lr_schedule(cfg, total);

  TrainerState ts;
  int64_t done = 0;  // steps already taken
  RunDb db((run_dir / "runs.sqlite").string());
  if (o.resume) {
    const TrainState st = load_checkpoint(last_path.string(), model, &opt);
    done = st.step;
    ts = TrainerState::from_json(st.trainer, last_path.string());
    const RunStatus was = db.resume_run(ts.run_id, done);
    std::printf("resuming run %lld at step %lld of %lld (it was %s)\n", static_cast<long long>(ts.run_id),
                static_cast<long long>(done), static_cast<long long>(total), to_string(was));
  } else {
    model.init_params(cfg.train.seed);
    if (cfg.model.input_norm == InputNorm::Band) {
      // Measured once, before step 0, on the training items only (held-out audio never shapes
      // the model); stored in every checkpoint from here on.
      const BandStats bs = band_statistics(model, cache, train_cache, kDefaultCrops);
      model.set_input_stats(bs.mean, bs.std);
      std::printf("input statistics: log-mel mean and std per band over %lld frames of %zu training items\n",
                  static_cast<long long>(bs.frames), train_cache.size());
    }
    RunInfo info;
    info.name = run_dir.filename().string();
    info.config = to_toml(cfg);
    info.seed = cfg.train.seed;
    info.device = be->describe();
    ts.run_id = db.begin_run(info);
    std::printf("run %lld in %s: %lld steps of %d %s (%d clips), %lld steps per epoch\n",
                static_cast<long long>(ts.run_id), run_dir.string().c_str(), static_cast<long long>(total), B,
                batch_unit(cfg), rows, static_cast<long long>(steps_per_epoch));
  }
  TrainResult result;
  result.run_id = ts.run_id;
  result.held_out_groups = data.held_out_groups;
  int64_t last_saved = done;
  // An exception from here on (a failed cache read, a full disk) must not leave the run marked
  // running: it ends as failed, and the error itself propagates to the caller.
  struct FailedRunGuard {
    RunDb& db;
    int64_t id;
    const int64_t& saved;
    ~FailedRunGuard() {
      if (std::uncaught_exceptions() == 0) return;
      try {
        db.end_run(id, RunStatus::Failed,
                   "stopped by an error (see the program's output); last checkpoint at step " + std::to_string(saved));
      } catch (...) {  // already ended, or the database itself is what failed
      }
    }
  } failed_run_guard{db, ts.run_id, last_saved};

  auto save_last = [&](int64_t s) {
    TrainState st;
    st.step = s;
    st.epoch = (s - 1) / steps_per_epoch;
    st.seed = cfg.train.seed;
    st.trainer = ts.to_json();
    save_checkpoint(last_path.string(), model, &opt, st);
    last_saved = s;
    db.flush();
  };
  auto run_validation = [&](int64_t s, bool baseline) {
    const ValidationReport r = validate(model, cache, item_cache, data, cfg.data.recall_k, baseline);
    for (const auto& [name, value] : r.metrics(baseline)) db.log(ts.run_id, s, name, value);
    db.flush();
    return r;
  };

  Progress progress(o.quiet);
  if (done == 0) {
    const ValidationReport r0 = run_validation(0, true);
    result.initial = r0;
    std::printf("step 0 (untrained model), validation in %.1f s:\n%s", r0.seconds, format_report(r0, true).c_str());
    std::fflush(stdout);
  }
  if (done >= total) {
    result.steps = done;
    result.message = "nothing to do: the checkpoint is at step " + std::to_string(done) + " of " + std::to_string(total);
    db.end_run(ts.run_id, RunStatus::Finished, result.message);
    return result;
  }

  // ---- the loop -----------------------------------------------------------------------
  BatchLoader loader(data, cache, train_cache, cfg, *be, done + 1, total);
  const bool on_device = be->device() != Device::CPU;
  const size_t batch_bytes = static_cast<size_t>(rows) * static_cast<size_t>(cfg.audio.clip_samples()) * sizeof(float);
  // device [rows, S] x 2: upload one, compute the other (on the CPU: unused, and empty)
  const int64_t batch_floats = on_device ? static_cast<int64_t>(batch_bytes / sizeof(float)) : 0;
  DeviceArray<float> audio_a(*be, batch_floats), audio_b(*be, batch_floats);
  float* dev_audio[2] = {audio_a.p, audio_b.p};

  const NegativeMining rule = cfg.train.mining == Mining::SemiHard ? NegativeMining::SemiHard : NegativeMining::BatchHard;
  if (!in_batch_layout(cfg)) step.set_triplets(TrainStep::offline_triplets(B));
  const char* poison_env = std::getenv("MELGRAPH_TRAIN_POISON_STEP");
  const int64_t poison_step = poison_env ? std::atoll(poison_env) : -1;
  const auto t_loop = std::chrono::steady_clock::now();
  int64_t clips_done = 0;
  double loss_ema = -1;
  // The next step's batch is uploaded while the current step computes (CUDA: a copy stream
  // into the other device buffer); on the CPU the loader's host buffer is the input itself.
  // An upload waits for the device work enqueued before it (Backend::upload_async), so the
  // next batch's copy is enqueued before the step it should overlap, and wait_uploads() puts
  // each step after its own batch's copy. The poison hook writes into the loader's buffer
  // before the batch is uploaded.
  auto poison = [&](const Batch* b) {
    if (b->step == poison_step) b->audio[0] = std::numeric_limits<float>::quiet_NaN();
  };
  const Batch* cur = &loader.next();
  poison(cur);
  if (on_device) be->upload_async(dev_audio[(done + 1) % 2], cur->audio, batch_bytes);
  for (int64_t s = done + 1; s <= total; ++s) {
    const float* audio = on_device ? dev_audio[s % 2] : cur->audio;
    if (on_device) be->wait_uploads();  // step s reads the batch uploaded last
    const Batch* nxt = nullptr;
    if (s < total) {
      nxt = &loader.next();
      poison(nxt);
      if (on_device) be->upload_async(dev_audio[(s + 1) % 2], nxt->audio, batch_bytes);
    }
    if (mining) step.set_mining(cur->hops, B, rule, cfg.train.neg_hops);
    if (contrastive) step.set_contrastive(cur->hops, B, cfg.train.pos_hops, cfg.train.neg_hops);
    model.set_dropout_step(cfg.train.seed, static_cast<uint64_t>(s));
    step.gradients(audio, rows, cfg.loss, opt);
    const StepStats st = step.read_stats(&opt);  // synchronises: the device is done with `cur`
    loader.release();
    cur = nxt;

    if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm)) {
      std::string bad = !std::isfinite(st.loss) ? "the loss (" + std::to_string(st.loss) + ")" : std::string();
      if (bad.empty()) bad = first_nonfinite(*be, model.grads(), "the gradient");
      if (bad.empty()) bad = "the gradient norm (" + std::to_string(st.grad_norm) + ")";
      progress.break_line();
      if (cfg.train.nonfinite == NonFinite::Skip) {
        ++ts.skipped_steps;
        std::printf("step %lld: %s is not finite; step skipped (train.nonfinite = \"skip\"), parameters unchanged\n",
                    static_cast<long long>(s), bad.c_str());
        db.log(ts.run_id, s, "train.skipped_nonfinite", 1.0);
        // The step is not taken: the optimizer's count and the schedule stay where they are.
        continue;
      }
      result.status = TrainStatus::Diverged;
      result.steps = s - 1;
      result.message = "step " + std::to_string(s) + ": " + bad +
                       " is not finite; stopped before updating the parameters (train.nonfinite = \"stop\"). The last good "
                       "checkpoint is " + last_path.string() + " (step " + std::to_string(last_saved) + ")";
      db.log(ts.run_id, s, "train.nonfinite", 1.0);
      db.end_run(ts.run_id, RunStatus::Diverged, result.message);
      return result;
    }
    const double lr = lr_at(schedule, opt.step_count() + 1);
    step.update(opt, lr);
    clips_done += rows;

    db.log(ts.run_id, s, "train.loss", st.loss);
    db.log(ts.run_id, s, "train.active", st.active);
    db.log(ts.run_id, s, "train.grad_norm", st.grad_norm);
    db.log(ts.run_id, s, "train.lr", lr);
    if (mining) db.log(ts.run_id, s, "train.mined", st.mined);
    loss_ema = loss_ema < 0 ? st.loss : 0.9 * loss_ema + 0.1 * st.loss;

    const double elapsed = seconds_since(t_loop);
    const double clips_per_s = static_cast<double>(clips_done) / std::max(elapsed, 1e-9);
    const double eta = elapsed / static_cast<double>(s - done) * static_cast<double>(total - s);
    char line[256];
    const int valid = mining ? static_cast<int>(st.mined) : contrastive ? rows : B;
    std::snprintf(line, sizeof line, "step %lld/%lld  epoch %lld  loss %.4f (avg %.4f)  active %d/%d  lr %.2e  %.0f clips/s  ETA %s",
                  static_cast<long long>(s), static_cast<long long>(total),
                  static_cast<long long>((s - 1) / steps_per_epoch + 1), st.loss, loss_ema,
                  static_cast<int>(st.active), valid, lr, clips_per_s, format_duration(eta).c_str());
    const bool validate_now = s % cfg.train.validate_every == 0 || s == total;
    progress.update(line, validate_now);

    const bool stop = (o.stop && o.stop->load()) || (o.stop_after > 0 && s >= o.stop_after && s < total);
    bool early = false;
    if (validate_now) {
      progress.break_line();
      const ValidationReport r = run_validation(s, false);
      result.last = r;
      const double recall = r.selection_recall();
      const LoaderStats ls = loader.stats();
      const double per_thread = ls.busy_seconds > 0 ? static_cast<double>(ls.clips) / ls.busy_seconds : 0.0;
      std::printf("step %lld validation (%.1f s; loader %.0f clips/s per thread, trainer waited %.1f s):\n%s",
                  static_cast<long long>(s), r.seconds, per_thread, ls.wait_seconds, format_report(r, false).c_str());
      db.log(ts.run_id, s, "loader.clips_per_thread_second", per_thread);
      const double loop_seconds = seconds_since(t_loop);
      db.log(ts.run_id, s, "loader.wait_fraction", loop_seconds > 0 ? ls.wait_seconds / loop_seconds : 0.0);
      const std::string advice = input_bound_advice(ls, loop_seconds, cfg);
      if (!advice.empty()) std::printf("  %s\n", advice.c_str());
      if (recall > ts.best_recall) {
        ts.best_recall = recall;
        ts.best_step = s;
        ts.stale_validations = 0;
        TrainState bst;
        bst.step = s;
        bst.epoch = (s - 1) / steps_per_epoch;
        bst.seed = cfg.train.seed;
        bst.trainer = ts.to_json();
        save_checkpoint(best_path.string(), model, nullptr, bst);
        std::printf("  new best recall@%d %.4f: %s\n", cfg.data.recall_k, recall, best_path.string().c_str());
      } else {
        ++ts.stale_validations;
        if (cfg.train.early_stopping > 0 && ts.stale_validations >= cfg.train.early_stopping) early = true;
      }
      std::fflush(stdout);
    }
    if (s % cfg.train.checkpoint_every == 0 || s == total || stop || early) save_last(s);
    if (stop || early) {
      progress.break_line();
      result.steps = s;
      result.status = stop ? TrainStatus::Interrupted : TrainStatus::EarlyStopped;
      result.message =
          stop ? "stopped at step " + std::to_string(s) + "; checkpoint " + last_path.string() +
                     ". Resume with: melgraph train --config " + o.config_path + " --resume"
               : "early stopping at step " + std::to_string(s) + ": no better validation recall in " +
                     std::to_string(ts.stale_validations) + " validations (best " + std::to_string(ts.best_recall) +
                     " at step " + std::to_string(ts.best_step) + ")";
      db.end_run(ts.run_id, stop ? RunStatus::Interrupted : RunStatus::Finished, result.message);
      result.best_recall = ts.best_recall;
      result.best_step = ts.best_step;
      result.skipped_steps = ts.skipped_steps;
      return result;
    }
  }
  progress.break_line();
  result.steps = total;
  result.best_recall = ts.best_recall;
  result.best_step = ts.best_step;
  result.message = "finished " + std::to_string(total) + " steps in " + format_duration(seconds_since(t_loop)) +
                   "; best recall@" + std::to_string(cfg.data.recall_k) + " " + std::to_string(ts.best_recall) +
                   " at step " + std::to_string(ts.best_step) + " (" + best_path.string() + ")";
  result.skipped_steps = ts.skipped_steps;
  if (ts.skipped_steps > 0) result.message += "; " + std::to_string(ts.skipped_steps) + " non-finite steps skipped";
  db.end_run(ts.run_id, RunStatus::Finished, result.message);
  return result;
}

}  // namespace mg::train

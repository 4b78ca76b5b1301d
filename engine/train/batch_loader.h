// The training input pipeline: background threads build each step's batch (triplets drawn
// from the graph tables, random crops from the audio cache, augmentation) into host buffers
// the device can copy from asynchronously, ahead of the step that needs them.
//
// Every batch is a pure function of (train.seed, step): which anchors, positives, negatives,
// crop positions and augmentation draws it holds never depend on the thread count or on
// timing, so a resumed run sees exactly the batches an uninterrupted one would.
//
// Layout of a batch of B = train.batch_triplets:
//   offline mining:   rows [0, B) anchors, [B, 2B) positives, [2B, 3B) negatives;
//                     triplets [B, 3] = (i, B + i, 2B + i)
//   in-batch mining or the contrastive loss (engine/config.h in_batch_layout):
//                     rows [0, B) anchors, [B, 2B) positives; hops [2B, 2B] = the graph
//                     distance between the rows' items (capped at neg_hops), for the miner
//                     or the loss
// Anchors: epoch e visits every anchor once in a Philox-shuffled order (stream kEpochStream + e);
// step s (1-based) of the run takes anchors [(s - 1) B, s B) of that sequence, epochs chained.
//
// A rank of a data-parallel run of R ranks (engine/train_step.h) loads its share of the same
// global batch: rows [r B/R, (r+1) B/R) of every block (anchors, positives, negatives), in that
// order, with the crops and augmentation draws of their global rows; the triplet table or hops
// describe the global batch. So the batches, and the run, do not depend on R.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/train/training_data.h"
#include "engine/audio/audio_cache.h"
#include "engine/backend.h"
#include "engine/config.h"

namespace mg::train {

struct Batch {
  int64_t step = 0;
  int rows = 0;                     // clips in this rank's share of the batch
  float* audio = nullptr;           // host [rows, S] (Backend::alloc_host)
  std::vector<int32_t> triplets;    // offline: [B, 3] row indices of the global batch
  std::vector<uint8_t> hops;        // in-batch: [global rows, global rows]
  std::vector<int32_t> items;       // per row of audio: index into TrainingData::items
};

// Which share of every batch a loader builds: rank `rank` of `ranks`.
struct Shard {
  int rank = 0;
  int ranks = 1;
};

struct LoaderStats {
  int64_t batches = 0, clips = 0;
  double busy_seconds = 0;          // summed over the loader threads
  double wait_seconds = 0;          // the trainer's time blocked in next()
};

// One line of advice when the step waited for its input (the trainer prints it with each
// validation): empty while the wait is under 10% of the loop's wall time `loop_seconds`; else
// what share it was and what to raise or turn off (loader threads, noise augmentation, the
// cache's float16 format), from the config the loader runs.
std::string input_bound_advice(const LoaderStats& stats, double loop_seconds, const Config& cfg);

class BatchLoader {
 public:
  // Batches for steps first_step..last_step (1-based, inclusive). cache_index[t] is the cache
  // entry of training item t (TrainingData::train_items order).
  BatchLoader(const TrainingData& data, const audio::AudioCache& cache, std::vector<int64_t> cache_index,
              const Config& cfg, Backend& be, int64_t first_step, int64_t last_step, Shard shard = {});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The batch of the next step; blocks until it is built. Valid until its release(). The
  // trainer may hold two batches (the one computing and the one uploading).
  // Rethrows a loader thread's exception (e.g. a cache read failure).
  const Batch& next();
  // The trainer is done with the oldest batch it holds (and the device no longer reads it).
  void release();

  int rows_per_batch() const { return local_rows_; }  // this rank's
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  LoaderStats stats() const;

  static constexpr uint64_t kEpochStream = 0x65706f6300000000ull;  // "epoc" << 32
  static constexpr uint64_t kPairStream = 0x70616972ull;           // "pair"
  static constexpr uint64_t kCropStream = 0x63726f70ull;           // "crop"

 private:
  struct Slot {
    Batch batch;
    bool ready = false;   // built, not yet handed out
    bool in_use = false;  // handed out, not yet released
  };
  void worker(int w);
  void build(int64_t step, Batch& b, std::vector<int32_t>& perm, int64_t& perm_epoch);
  int32_t anchor_at(int64_t position, std::vector<int32_t>& perm, int64_t& perm_epoch) const;

  const TrainingData& data_;
  const audio::AudioCache& cache_;
  std::vector<int64_t> cache_index_;
  Config cfg_;
  Backend& be_;
  int64_t first_, last_;
  int rows_ = 0;  // the global batch's
  Shard shard_;
  int local_rows_ = 0;  // this rank's: rows_ / shard_.ranks
  int64_t clip_samples_ = 0;
  int64_t steps_per_epoch_ = 1;

  std::vector<Slot> slots_;
  int threads_ = 1;
  std::vector<std::thread> workers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_step_;     // the step next() hands out
  int64_t release_step_;  // the oldest step handed out and not released
  bool stop_ = false;
  std::exception_ptr error_;
  LoaderStats stats_;
};

}  // namespace mg::train

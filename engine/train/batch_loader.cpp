#include "engine/train/batch_loader.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "engine/train/augment.h"
#include "kernels/philox.h"
#include "engine/timer.h"

namespace mg::train {

namespace {

// Uniform integer in [0, n) from one 32-bit draw ((u * n) >> 32: bias below n / 2^32).
int64_t pick(uint32_t u, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(u) * static_cast<uint64_t>(n)) >> 32);
}

}  // namespace

BatchLoader::BatchLoader(const TrainingData& data, const audio::AudioCache& cache, std::vector<int64_t> cache_index,
                         const Config& cfg, Backend& be, int64_t first_step, int64_t last_step, Shard shard)
    : data_(data),
      cache_(cache),
      cache_index_(std::move(cache_index)),
      cfg_(cfg),
      be_(be),
      first_(first_step),
      last_(last_step),
      shard_(shard),
      next_step_(first_step),
      release_step_(first_step) {
  const int B = cfg.train.batch_triplets;
  rows_ = in_batch_layout(cfg) ? 2 * B : 3 * B;
  if (shard_.ranks < 1 || shard_.rank < 0 || shard_.rank >= shard_.ranks || B % shard_.ranks != 0)
    throw std::invalid_argument("BatchLoader: rank " + std::to_string(shard_.rank) + " of " +
                                std::to_string(shard_.ranks) + " cannot take an even share of " + std::to_string(B) +
                                " anchors");
  local_rows_ = rows_ / shard_.ranks;
  clip_samples_ = cfg.audio.clip_samples();
  const auto n_anchors = static_cast<int64_t>(data.anchors.size());
  steps_per_epoch_ = std::max<int64_t>(1, (n_anchors + B - 1) / B);
  if (cache_index_.size() != data.train_items.size())
    throw std::invalid_argument("BatchLoader: one cache index per training item is needed");
  threads_ = std::max(1, cfg.train.loader_threads);
  // One slot per thread plus the two the trainer holds: every thread can work ahead.
  slots_.resize(static_cast<size_t>(threads_) + 2);
  const size_t bytes = static_cast<size_t>(local_rows_) * static_cast<size_t>(clip_samples_) * sizeof(float);
  try {
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].batch.audio = static_cast<float*>(be_.alloc_host(bytes));
      slots_[i].batch.step = first_ + static_cast<int64_t>(i);  // the step this slot serves next
    }
  } catch (...) {
    for (Slot& s : slots_) be_.free_host(s.batch.audio);
    throw;
  }
  for (int w = 0; w < threads_; ++w) workers_.emplace_back([this, w] { worker(w); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  for (Slot& s : slots_) be_.free_host(s.batch.audio);
}

int32_t BatchLoader::anchor_at(int64_t position, std::vector<int32_t>& perm, int64_t& perm_epoch) const {
  const auto n = static_cast<int64_t>(data_.anchors.size());
  const int64_t epoch = position / n;
  if (epoch != perm_epoch) {  // Fisher-Yates driven by Philox: the same order on every machine
    perm = data_.anchors;
    const uint64_t stream = kEpochStream + static_cast<uint64_t>(epoch);
    for (int64_t i = n - 1; i > 0; --i) {
      const int64_t j = pick(philox_u32(cfg_.train.seed, stream, static_cast<uint64_t>(i)), i + 1);
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
    }
    perm_epoch = epoch;
  }
  return perm[static_cast<size_t>(position % n)];
}

void BatchLoader::build(int64_t step, Batch& b, std::vector<int32_t>& perm, int64_t& perm_epoch) {
  const int B = cfg_.train.batch_triplets;
  const uint64_t seed = cfg_.train.seed;
  b.rows = local_rows_;  // b.step is already `step` (the slot was waiting for it)
  std::vector<int32_t> table_item(static_cast<size_t>(rows_));  // per row: index into train_items
  for (int i = 0; i < B; ++i) {
    const int64_t position = (step - 1) * B + i;
    const int32_t a = anchor_at(position, perm, perm_epoch);
    const auto [p, n] = data_.tables.sample(a, seed ^ kPairStream, static_cast<uint64_t>(position));
    table_item[static_cast<size_t>(i)] = a;
    table_item[static_cast<size_t>(B + i)] = p;
    if (rows_ == 3 * B) table_item[static_cast<size_t>(2 * B + i)] = n;
  }
  if (rows_ == 3 * B) {
    b.triplets.resize(3 * static_cast<size_t>(B));
    for (int i = 0; i < B; ++i) {
      b.triplets[3 * static_cast<size_t>(i) + 0] = i;
      b.triplets[3 * static_cast<size_t>(i) + 1] = B + i;
      b.triplets[3 * static_cast<size_t>(i) + 2] = 2 * B + i;
    }
    b.hops.clear();
  } else {
    const std::vector<int32_t> d = data_.tables.batch_distance_matrix(table_item);
    b.hops.resize(d.size());
    for (size_t i = 0; i < d.size(); ++i) b.hops[i] = static_cast<uint8_t>(std::min(d[i], 255));
    b.triplets.clear();
  }
  b.items.resize(static_cast<size_t>(local_rows_));
  const int64_t S = clip_samples_;
  const int per = B / shard_.ranks;  // this rank's rows of each block
  for (int l = 0; l < local_rows_; ++l) {
    const int r = (l / per) * B + shard_.rank * per + l % per;  // the global row
    const int32_t t = table_item[static_cast<size_t>(r)];
    b.items[static_cast<size_t>(l)] = data_.train_items[static_cast<size_t>(t)];
    const int64_t ci = cache_index_[static_cast<size_t>(t)];
    const int64_t len = cache_.entry(ci).length;
    const uint64_t draw = static_cast<uint64_t>(step) * static_cast<uint64_t>(rows_) + static_cast<uint64_t>(r);
    const int64_t start = len > S ? pick(philox_u32(seed, kCropStream, draw), len - S + 1) : 0;
    float* clip = b.audio + static_cast<size_t>(l) * static_cast<size_t>(S);
    cache_.read_clip(ci, start, S, cfg_.audio.short_clip, clip);
    augment_clip(clip, S, cfg_.augment, cfg_.audio.sample_rate, seed, static_cast<uint64_t>(step),
                 static_cast<uint64_t>(r));
  }
}

void BatchLoader::worker(int w) {
  std::vector<int32_t> perm;  // this thread's copy of the current epoch's anchor order
  int64_t perm_epoch = -1;
  for (int64_t step = first_ + w; step <= last_; step += threads_) {
    Slot& slot = slots_[static_cast<size_t>((step - first_) % static_cast<int64_t>(slots_.size()))];
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || (slot.batch.step == step && !slot.ready && !slot.in_use); });
      if (stop_) return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    try {
      build(step, slot.batch, perm, perm_epoch);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    const double busy = seconds_since(t0);
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot.ready = true;
      stats_.batches += 1;
      stats_.clips += local_rows_;
      stats_.busy_seconds += busy;
    }
    cv_.notify_all();
  }
}

const Batch& BatchLoader::next() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  if (next_step_ > last_) throw std::logic_error("BatchLoader: no batch after step " + std::to_string(last_));
  Slot& slot = slots_[static_cast<size_t>((next_step_ - first_) % static_cast<int64_t>(slots_.size()))];
  cv_.wait(lock, [&] { return error_ || (slot.ready && slot.batch.step == next_step_); });
  if (error_) std::rethrow_exception(error_);
  slot.ready = false;
  slot.in_use = true;
  ++next_step_;
  stats_.wait_seconds += seconds_since(t0);
  return slot.batch;
}

void BatchLoader::release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Slot& slot = slots_[static_cast<size_t>((release_step_ - first_) % static_cast<int64_t>(slots_.size()))];
    if (!slot.in_use) throw std::logic_error("BatchLoader::release() without next()");
    slot.in_use = false;
    slot.batch.step = release_step_ + static_cast<int64_t>(slots_.size());  // the step it serves next
    ++release_step_;
  }
  cv_.notify_all();
}

std::string input_bound_advice(const LoaderStats& stats, double loop_seconds, const Config& cfg) {
  if (!(loop_seconds > 0) || stats.wait_seconds < 0.1 * loop_seconds) return "";
  const auto percent = static_cast<int>(100.0 * stats.wait_seconds / loop_seconds + 0.5);
  std::string advice = "input-bound: the step waited for its batches " + std::to_string(percent) +
                       "% of the time; raise train.loader_threads (now " + std::to_string(cfg.train.loader_threads) +
                       ")";
  if (cfg.augment.noise_snr_db > 0) advice += ", or turn off augment.noise_snr_db (the loader's costliest work)";
  if (cfg.audio.cache_dtype == CacheDtype::Float16)
    advice += "; an int16 cache reads twice as fast as float16";
  return advice;
}

LoaderStats BatchLoader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace mg::train

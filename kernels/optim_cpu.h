// Optimizer math over flat buffers: Adam / AdamW (torch.optim semantics, bias-corrected) and
// clipping by global norm (torch.nn.utils.clip_grad_norm_).
#pragma once
#include <cstdint>

namespace mg {

struct AdamParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;  // false: Adam (L2 added to the gradient); true: AdamW
};

// One step; `step` is the 1-based step count after this update (for bias correction).
// m and v are the first and second moment buffers, same length as p and g.
template <class T>
void adam_step_cpu(T* p, const T* g, T* m, T* v, int64_t n, const AdamParams& a, int64_t step);

// sqrt(sum g^2), accumulated in double with a fixed blocking (thread-count independent).
template <class T>
double global_norm_cpu(const T* g, int64_t n);

template <class T>
void scale_cpu(T* g, int64_t n, double s);

// clip_grad_norm_: if norm > max_norm, g *= max_norm / (norm + 1e-6). Returns the norm
// before clipping.
template <class T>
double clip_grad_norm_cpu(T* g, int64_t n, double max_norm);

}  // namespace mg

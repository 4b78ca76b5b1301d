// One allocation carved into named tensors (llm.c's pattern). The model's parameters live in
// one TensorBuffer, their gradients in a second with the same layout, Adam's moments in two
// more, and the activations (and their gradients) in an arena planned from the config the same
// way; zeroing, clipping and the optimizer then work on a flat buffer in one call.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/tensor.h"

namespace mg {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats from the start of the buffer
  int64_t numel() const;
};

class TensorLayout {
 public:
  // Each tensor starts on a 64-float (256-byte) boundary so device kernels can vectorise.
  void add(const std::string& name, std::vector<int64_t> shape);
  const std::vector<TensorSpec>& specs() const { return specs_; }
  int64_t total() const { return total_; }           // floats, padding included
  // Zero padding at the end up to a multiple of `multiple` floats (ZeRO-1's equal slices).
  void pad_total_to(int64_t multiple);
  int64_t param_count() const;                       // floats, padding excluded
  const TensorSpec& find(const std::string& name) const;  // throws naming the tensor

 private:
  std::vector<TensorSpec> specs_;
  int64_t total_ = 0;
};

// Owns one device allocation of layout.total() floats; hands out Tensor views.
class TensorBuffer {
 public:
  TensorBuffer(Backend& be, const TensorLayout& layout);
  ~TensorBuffer();
  TensorBuffer(const TensorBuffer&) = delete;
  TensorBuffer& operator=(const TensorBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return layout_.total(); }
  const TensorLayout& layout() const { return layout_; }
  Tensor tensor(const std::string& name) const;
  float* ptr(const std::string& name) const { return data_ + layout_.find(name).offset; }
  void zero();  // padding included, so flat-buffer reductions see zeros there

 private:
  Backend& be_;
  TensorLayout layout_;
  float* data_ = nullptr;
};

}  // namespace mg

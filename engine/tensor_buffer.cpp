#include "engine/tensor_buffer.h"

#include <stdexcept>
#include <string>

namespace mg {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

void TensorLayout::add(const std::string& name, std::vector<int64_t> shape) {
  for (const auto& s : specs_)
    if (s.name == name) throw std::logic_error("TensorLayout: duplicate tensor name " + name);
  TensorSpec t{name, std::move(shape), total_};
  total_ += (t.numel() + 63) / 64 * 64;
  specs_.push_back(std::move(t));
}

void TensorLayout::pad_total_to(int64_t multiple) {
  if (multiple < 1) throw std::invalid_argument("TensorLayout::pad_total_to: multiple " + std::to_string(multiple));
  total_ = (total_ + multiple - 1) / multiple * multiple;
}

int64_t TensorLayout::param_count() const {
  int64_t n = 0;
  for (const auto& s : specs_) n += s.numel();
  return n;
}

const TensorSpec& TensorLayout::find(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return s;
  throw std::out_of_range("no tensor named '" + name + "'");
}

TensorBuffer::TensorBuffer(Backend& be, const TensorLayout& layout) : be_(be), layout_(layout) {
  data_ = be_.alloc<float>(layout_.total());
  zero();
}

TensorBuffer::~TensorBuffer() { be_.free_bytes(data_); }

Tensor TensorBuffer::tensor(const std::string& name) const {
  const TensorSpec& s = layout_.find(name);
  return Tensor{s.name, s.shape, data_ + s.offset, be_.device()};
}

void TensorBuffer::zero() { be_.fill(data_, layout_.total(), 0.0f); }

}  // namespace mg

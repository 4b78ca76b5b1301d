// Per-band standardisation of a spectrogram: x, y [B, C, T] (C mel bands over T frames),
//   y[b, c, t] = (x[b, c, t] - mean[c]) / std[c]
// with mean and std [C] measured once on the training set (engine/model.h, input statistics),
// so every band reaches the first conv on the same scale: raw log-mel values differ by tens
// between the bass and the top bands, which the first layer would otherwise spend its
// capacity on. The division is by the stored std as it is (the statistics' producer floors
// it). Elementwise in float: y may alias x; both backends compute bit-identical values.
// No backward: it sits on the mel front end, whose output needs no gradient.
#pragma once
#include <cstdint>

namespace mg {

template <class T>
void band_norm_forward_cpu(const T* x, const T* mean, const T* std, T* y, int64_t B, int C, int64_t Tn);

}  // namespace mg

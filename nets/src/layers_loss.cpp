// Softmax cross-entropy per node: loss_n = -(1/B) sum_b log softmax(z_nb)[y_nb], computed with
// the max-shifted log-sum-exp; dlogits = (softmax - onehot) / B; correct counts use the arg-max
// (lowest index among equal maxima).
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "spush/nets/layers.h"

namespace spush::nets {

double LossStats::mean_loss() const {
  if (loss.empty()) return 0.0;
  return std::accumulate(loss.begin(), loss.end(), 0.0) / static_cast<double>(loss.size());
}

double LossStats::accuracy() const {
  const int64_t total = static_cast<int64_t>(correct.size()) * batch;
  if (total == 0) return 0.0;
  return static_cast<double>(std::accumulate(correct.begin(), correct.end(), int64_t{0})) /
         static_cast<double>(total);
}

LossStats SoftmaxCrossEntropy::forward_backward(const Tensor& logits, const int32_t* labels,
                                                Tensor* dlogits) const {
  const int64_t k = logits.sample_stride(), batch = logits.batch, nodes = logits.nodes;
  if (k <= 0 || batch <= 0 || nodes <= 0)
    throw std::invalid_argument("SoftmaxCrossEntropy: empty logits " + logits.shape_str());
  if (!labels) throw std::invalid_argument("SoftmaxCrossEntropy: labels pointer is null");
  for (int64_t i = 0; i < nodes * batch; ++i)
    if (labels[i] < 0 || labels[i] >= k)
      throw std::invalid_argument("SoftmaxCrossEntropy: label " + std::to_string(labels[i]) +
                                  " at index " + std::to_string(i) + " is outside [0, " +
                                  std::to_string(k) + ")");
  LossStats st;
  st.batch = batch;
  st.loss.assign(static_cast<size_t>(nodes), 0.0);
  st.correct.assign(static_cast<size_t>(nodes), 0);
  if (dlogits) dlogits->resize_like(logits);
  const float inv_b = 1.0f / static_cast<float>(batch);
#pragma omp parallel for schedule(static) if (nodes > 1 && nodes * batch * k > (1 << 16))
  for (int64_t n = 0; n < nodes; ++n) {
    double loss = 0.0;
    int64_t correct = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const float* z = logits.sample(n, b);
      const int32_t y = labels[n * batch + b];
      int64_t arg = 0;
      for (int64_t j = 1; j < k; ++j)
        if (z[j] > z[arg]) arg = j;
      correct += arg == y;
      const float zmax = z[arg];
      double se = 0.0;
      for (int64_t j = 0; j < k; ++j) se += std::exp(static_cast<double>(z[j] - zmax));
      const double lse = std::log(se) + zmax;
      loss += lse - z[y];
      if (dlogits) {
        float* dz = dlogits->sample(n, b);
        for (int64_t j = 0; j < k; ++j)
          dz[j] = static_cast<float>(std::exp(static_cast<double>(z[j]) - lse)) * inv_b;
        dz[y] -= inv_b;
      }
    }
    st.loss[n] = loss / static_cast<double>(batch);
    st.correct[n] = correct;
  }
  return st;
}

std::vector<int32_t> SoftmaxCrossEntropy::argmax(const Tensor& logits) {
  const int64_t k = logits.sample_stride(), count = logits.nodes * logits.batch;
  std::vector<int32_t> out(static_cast<size_t>(count), 0);
  if (k <= 0) return out;
  for (int64_t s = 0; s < count; ++s) {
    const float* z = logits.data.data() + s * k;
    int64_t arg = 0;
    for (int64_t j = 1; j < k; ++j)
      if (z[j] > z[arg]) arg = j;
    out[s] = static_cast<int32_t>(arg);
  }
  return out;
}

}  // namespace spush::nets

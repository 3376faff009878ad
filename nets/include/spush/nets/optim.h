// Local optimizers over the rows of a node matrix (docs/ALGORITHMS.md §6).
//
// step():   SGD with heavy-ball or Nesterov momentum and weight decay (PyTorch's rule):
//             g += wd * x;  b = mu * b + g;  d = nesterov ? g + mu * b : b;  x -= lr * d
//           Quasi-Global Momentum (qgm = true), buffer m (init 0):
//             g += wd * x;  b = beta * m + g;  d = nesterov ? g + beta * b : b;  x -= lr * d
//           and x^t (before the step) is remembered for after_mix().
// after_mix(): QGM only, after gossip produced x^{t+1}:
//             m = mu * m + (1 - mu) * (x^t - x^{t+1}) / lr
#pragma once
#include <cstdint>
#include <vector>

#include "spush/nets/layout.h"

namespace spush::nets {

struct OptimizerSpec {
  double momentum = 0.9;  // mu (and beta for QGM); 0 disables momentum
  bool nesterov = false;
  double weight_decay = 1e-4;
  bool qgm = false;  // Quasi-Global Momentum instead of local momentum
};

class Optimizer {
 public:
  Optimizer(const OptimizerSpec& spec, int64_t rows, int64_t d);
  // x, g: node matrices of rows x d. Updates x in place with learning rate lr.
  void step(NodeMatrix& x, const NodeMatrix& g, float lr);
  // Same for a subset of rows [row_begin, row_end).
  void step_rows(NodeMatrix& x, const NodeMatrix& g, float lr, int64_t row_begin, int64_t row_end);
  // QGM momentum update after mixing; a no-op for plain momentum.
  void after_mix(const NodeMatrix& x_new, float lr);
  const OptimizerSpec& spec() const { return spec_; }
  // Momentum buffers (checkpointing).
  NodeMatrix& momentum() { return buf_; }
  NodeMatrix& previous() { return prev_; }

 private:
  OptimizerSpec spec_;
  NodeMatrix buf_;   // b (heavy ball / Nesterov) or m (QGM)
  NodeMatrix prev_;  // x^t, QGM only
};

}  // namespace spush::nets

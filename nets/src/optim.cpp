// SGD with momentum / Nesterov / weight decay, and Quasi-Global Momentum.
#include "spush/nets/optim.h"

#include <stdexcept>

namespace spush::nets {

Optimizer::Optimizer(const OptimizerSpec& spec, int64_t rows, int64_t d)
    : spec_(spec), buf_(rows, d), prev_(spec.qgm ? rows : 0, spec.qgm ? d : 0) {
  if (spec.momentum < 0 || spec.momentum >= 1)
    throw std::invalid_argument("optimizer: momentum must be in [0, 1)");
  if (spec.weight_decay < 0) throw std::invalid_argument("optimizer: weight decay must be >= 0");
}

void Optimizer::step(NodeMatrix& x, const NodeMatrix& g, float lr) {
  step_rows(x, g, lr, 0, x.rows());
}

void Optimizer::step_rows(NodeMatrix& x, const NodeMatrix& g, float lr, int64_t row_begin,
                          int64_t row_end) {
  if (x.rows() != buf_.rows() || x.cols() != buf_.cols() || g.rows() != x.rows() ||
      g.cols() != x.cols())
    throw std::invalid_argument("optimizer: shape mismatch");
  const float mu = static_cast<float>(spec_.momentum);
  const float wd = static_cast<float>(spec_.weight_decay);
  const int64_t d = x.cols();
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* xr = x.row(r);
    const float* gr = g.row(r);
    float* br = buf_.row(r);
    if (spec_.qgm) std::copy(xr, xr + d, prev_.row(r));
#pragma omp parallel for simd schedule(static) if (d > (1 << 16))
    for (int64_t k = 0; k < d; ++k) {
      const float gk = gr[k] + wd * xr[k];
      float step = gk;
      if (mu > 0) {
        const float b = mu * br[k] + gk;
        if (!spec_.qgm) br[k] = b;
        step = spec_.nesterov ? gk + mu * b : b;
      }
      xr[k] -= lr * step;
    }
  }
}

void Optimizer::after_mix(const NodeMatrix& x_new, float lr) {
  if (!spec_.qgm) return;
  const float mu = static_cast<float>(spec_.momentum);
  const float inv_lr = 1.0f / lr;
  const int64_t d = x_new.cols();
  for (int64_t r = 0; r < x_new.rows(); ++r) {
    const float* xn = x_new.row(r);
    const float* xp = prev_.row(r);
    float* m = buf_.row(r);
#pragma omp parallel for simd schedule(static) if (d > (1 << 16))
    for (int64_t k = 0; k < d; ++k) m[k] = mu * m[k] + (1 - mu) * (xp[k] - xn[k]) * inv_lr;
  }
}

}  // namespace spush::nets

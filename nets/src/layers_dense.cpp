// Linear (kernels::sgemm, oneDNN's sgemm, per (node, sample range)), ReLU and Flatten on the CPU.
//   Linear forward:  Y[nb, out] = X[nb, in] W^T + b,  W = [out, in]
//          backward: dW += dY^T X,  db += column sums of dY,  dX = dY W

#include <cmath>
#include <cstring>

#include "layers_internal.h"
#include "spush/kernels/sgemm.h"
#include "spush/nets/layers.h"

namespace spush::nets {

Linear::Linear(int64_t in, int64_t out, bool bias) : in_(in), out_(out), bias_(bias) {
  if (in <= 0 || out <= 0)
    throw std::invalid_argument("Linear: in and out features must be > 0, got in=" +
                                std::to_string(in) + " out=" + std::to_string(out));
  detail::blas_single_thread();
}

std::string Linear::describe() const {
  return "Linear(" + std::to_string(in_) + "->" + std::to_string(out_) + (bias_ ? ", bias" : "") +
         ")";
}

void Linear::declare(Layout& layout, const std::string& name) {
  name_ = name;
  w_off_ = layout.segment(layout.add(name + ".weight", {out_, in_})).offset;
  if (bias_) b_off_ = layout.segment(layout.add(name + ".bias", {out_})).offset;
  if (bias_ && b_off_ != w_off_ + out_ * in_)
    throw std::logic_error(detail::who(*this) + ": weight and bias segments are not adjacent");
}

Shape3 Linear::output_shape(Shape3 in) const {
  if (in.numel() != in_)
    throw std::invalid_argument(detail::who(*this) + ": input " + in.str() + " has " +
                                std::to_string(in.numel()) + " features, expected " +
                                std::to_string(in_));
  return {out_, 1, 1};
}

void Linear::init(float* row, std::mt19937_64& rng) const {
  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  const float bound = 1.0f / std::sqrt(static_cast<float>(in_));
  detail::fill_uniform(row + w_off_, out_ * in_, bound, rng);
  if (bias_) detail::fill_uniform(row + b_off_, out_, bound, rng);
}

void Linear::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, w_off_, params);
  out.resize(in.nodes, in.batch, out_, 1, 1);
  const detail::NodeSplit split = detail::split_nodes(in.nodes, in.batch);
#pragma omp parallel for schedule(static) if (split.tasks() > 1 && in.numel() * out_ > (1 << 22))
  for (int64_t task = 0; task < split.tasks(); ++task) {
    const int64_t n = split.node(task);
    const auto [b0, b1] = split.range(task);
    const float* w = params.row(n) + w_off_;
    float* y = out.sample(n, b0);
    const int64_t nb = b1 - b0;
    if (bias_) {
      const float* b = params.row(n) + b_off_;
      for (int64_t i = 0; i < nb; ++i) std::memcpy(y + i * out_, b, sizeof(float) * out_);
    }
    kernels::sgemm(false, true, nb, out_, in_, 1.0f, in.sample(n, b0), in_, w, in_,
                   bias_ ? 1.0f : 0.0f, y, out_);
  }
}

void Linear::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                      const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  const detail::NodeSplit split = detail::split_nodes(in.nodes, in.batch);
  if (dinp) dinp->resize_like(in);
  detail::GradPartials partials;
  partials.prepare(split, num_params());
#pragma omp parallel for schedule(static) if (split.tasks() > 1 && in.numel() * out_ > (1 << 22))
  for (int64_t task = 0; task < split.tasks(); ++task) {
    const int64_t n = split.node(task);
    const auto [b0, b1] = split.range(task);
    const int64_t nb = b1 - b0;
    const float* dy = dout.sample(n, b0);
    const float* x = in.sample(n, b0);
    float* dw = partials.target(task, dparams, w_off_);
    kernels::sgemm(true, false, out_, in_, nb, 1.0f, dy, out_, x, in_, 1.0f, dw, in_);
    if (bias_) {
      float* db = dw + out_ * in_;
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t o = 0; o < out_; ++o) db[o] += dy[i * out_ + o];
    }
    if (dinp) {
      kernels::sgemm(false, false, nb, in_, out_, 1.0f, dy, out_, params.row(n) + w_off_, in_, 0.0f,
                     dinp->sample(n, b0), in_);
    }
  }
  partials.reduce(dparams, w_off_);
}

void ReLU::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  out.resize_like(in);
  const int64_t total = in.numel();
  const float* x = in.data.data();
  float* y = out.data.data();
#pragma omp parallel for schedule(static) if (total > (1 << 18))
  for (int64_t i = 0; i < total; ++i) y[i] = std::max(x[i], 0.0f);
}

void ReLU::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                    const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dinp) return;
  if (!dout.same_shape(in))
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the input " + in.shape_str());
  dinp->resize_like(in);
  const int64_t total = in.numel();
  const float* x = in.data.data();
  const float* dy = dout.data.data();
  float* dx = dinp->data.data();
#pragma omp parallel for schedule(static) if (total > (1 << 18))
  for (int64_t i = 0; i < total; ++i) {
    const float g = dy[i];  // unconditional loads let the compiler vectorize with a blend
    dx[i] = x[i] > 0.0f ? g : 0.0f;
  }
}

void Flatten::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  out.resize(in.nodes, in.batch, in.sample_stride(), 1, 1);
  std::copy(in.data.begin(), in.data.begin() + in.numel(), out.data.begin());
}

void Flatten::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                       const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dinp) return;
  if (dout.numel() != in.numel())
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the input " + in.shape_str());
  dinp->resize_like(in);
  std::copy(dout.data.begin(), dout.data.begin() + dout.numel(), dinp->data.begin());
}

}  // namespace spush::nets

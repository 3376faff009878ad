// QConv2d and QLinear: 8-bit forward and backward-data, fp32 backward-weights (layers_quant.h).
// Each node is processed in turn; the integer kernels parallelize inside (oneDNN, OpenMP).
#include "spush/nets/layers_quant.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "layers_internal.h"
#include "spush/kernels/conv_int8.h"
#include "spush/kernels/quantize.h"

namespace spush::nets {
namespace {

namespace k = spush::kernels;

constexpr float kRangeMomentum = 0.1f;

// What a stochastic rounding stream is for, mixed into its key with the layer's name.
enum class Role : uint64_t { kActivation = 1, kGradient = 2 };

uint64_t mix64(uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t name_hash(const std::string& s) {  // FNV-1a
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

k::StochasticKey stream_key(const QuantContext& ctx, const std::string& layer, Role role,
                            int64_t node) {
  return k::StochasticKey{mix64(ctx.seed ^ mix64(name_hash(layer) + static_cast<uint64_t>(role))),
                          static_cast<uint32_t>(ctx.first_node + node), ctx.iteration, 0};
}

// The activation range of node n: the batch mean of per-sample min/max in training (folded into
// the running range), the running range in evaluation (the batch's until the first training
// step has set it).
k::QParams activation_params(const float* x, int64_t batch, int64_t per_sample, bool train,
                             float* running) {
  float lo, hi;
  const bool have_running = !(running[0] == 0.0f && running[1] == 0.0f);
  if (train || !have_running) {
    const k::Range r = k::minmax_batch_mean(x, batch, per_sample);
    lo = r.lo;
    hi = r.hi;
    if (train) {
      if (have_running) {
        running[0] += kRangeMomentum * (lo - running[0]);
        running[1] += kRangeMomentum * (hi - running[1]);
      } else {
        running[0] = lo;
        running[1] = hi;
      }
    }
  } else {
    lo = running[0];
    hi = running[1];
  }
  return k::qparams(lo, hi);
}

k::QParams tensor_params(const float* x, int64_t n) {
  const k::Range r = k::minmax(x, n);
  return k::qparams(r.lo, r.hi);
}

// Quantizes n floats nearest-even into q and writes their dequantized values to xhat; returns
// the parameters.
k::QParams quantize_nearest(const float* x, int64_t n, uint8_t* q, float* xhat) {
  const k::QParams p = tensor_params(x, n);
  k::quantize_u8(x, n, p, k::Rounding::kNearestEven, k::StochasticKey{}, q);
  k::dequantize_u8(q, n, p, xhat);
  return p;
}

// The parameters of a tensor's range; false when an element is not finite (a diverged run: the
// layer then outputs NaN, which the trainer reports as divergence).
bool finite_params(const float* x, int64_t n, k::QParams& p) {
  try {
    p = tensor_params(x, n);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

// Quantizes a node's weights (nearest-even, into qw and their dequantized values into wq) and
// finds its activation parameters; false when the weights or the activations are not finite.
bool node_params(const float* w, int64_t wsize, uint8_t* qw, float* wq, const float* x,
                 int64_t batch, int64_t per_sample, bool train, float* running, k::QParams& pw,
                 k::QParams& px) {
  try {
    pw = quantize_nearest(w, wsize, qw, wq);
    px = activation_params(x, batch, per_sample, train, running);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

// bq = the dequantized nearest-even 8-bit bias (its own per-tensor range); false if not finite.
bool quantize_bias(const float* b, int64_t n, float* bq) {
  uint8_t q[256];
  std::vector<uint8_t> big;
  uint8_t* qb = q;
  if (n > 256) {
    big.resize(static_cast<size_t>(n));
    qb = big.data();
  }
  try {
    quantize_nearest(b, n, qb, bq);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

void poison(float* y, int64_t ny, float* xq, int64_t nx) {
  std::fill(y, y + ny, std::numeric_limits<float>::quiet_NaN());
  if (xq) std::fill(xq, xq + nx, std::numeric_limits<float>::quiet_NaN());
}

void check_context(const Layer& l, const std::shared_ptr<const QuantContext>& ctx) {
  if (!ctx) throw std::invalid_argument(detail::who(l) + ": needs a QuantContext");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// QConv2d

QConv2d::QConv2d(const Conv2dSpec& spec, std::shared_ptr<const QuantContext> ctx)
    : fp32_(spec), ctx_(std::move(ctx)) {
  check_context(*this, ctx_);
}

QConv2d::~QConv2d() = default;

std::string QConv2d::describe() const {
  std::string d = fp32_.describe();
  return "Q" + d;
}

void QConv2d::declare(Layout& layout, const std::string& name) {
  name_ = name;
  fp32_.declare(layout, name);
}

void QConv2d::set_nodes(int64_t nodes) {
  nodes_ = nodes;
  act_range_.assign(static_cast<size_t>(2 * nodes), 0.0f);
}

std::vector<BufferRef> QConv2d::buffers() { return {{name_ + ".act_range", &act_range_, 2}}; }

void QConv2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, fp32_.weight_offset(), params);
  if (nodes_ != in.nodes) set_nodes(in.nodes);
  const Conv2dSpec& s = fp32_.spec();
  const Shape3 os = output_shape(in.shape3());
  out.resize(in.nodes, in.batch, os);
  const k::ConvShape shape{in.batch, in.c,       in.h,       in.w,    s.out,  s.kh,
                           s.kw,     s.stride_h, s.stride_w, s.pad_h, s.pad_w};
  if (!plan_ || !(plan_->shape() == shape)) plan_ = std::make_unique<k::ConvInt8Plan>(shape);
  const int64_t wsize = shape.w_size(), per_node = in.node_stride();
  xq_.resize_like(in);
  pq_ = NodeMatrix(in.nodes, num_params());
  qx_.resize(static_cast<size_t>(per_node));
  qw_.resize(static_cast<size_t>(in.nodes * wsize));
  wq_params_.resize(static_cast<size_t>(2 * in.nodes));
  const bool stochastic = ctx_->stochastic_activations;
  for (int64_t n = 0; n < in.nodes; ++n) {
    const float* w = params.row(n) + fp32_.weight_offset();
    uint8_t* qw = qw_.data() + n * wsize;
    k::QParams pw, px;
    if (!node_params(w, wsize, qw, pq_.row(n), in.node(n), in.batch, in.sample_stride(), train,
                     act_range_.data() + 2 * n, pw, px)) {
      poison(out.node(n), out.node_stride(), xq_.node(n), per_node);  // diverged: NaN out
      continue;
    }
    wq_params_[2 * n] = pw.lo;
    wq_params_[2 * n + 1] = pw.scale;
    k::quantize_u8(in.node(n), per_node, px,
                   stochastic ? k::Rounding::kStochastic : k::Rounding::kNearestEven,
                   stream_key(*ctx_, name_, Role::kActivation, n), qx_.data());
    k::dequantize_u8(qx_.data(), per_node, px, xq_.node(n));
    float* y = out.node(n);
    plan_->forward(qx_.data(), px, qw, pw, y);
    if (s.bias) {
      const float* b = params.row(n) + fp32_.bias_offset();
      float* bq = pq_.row(n) + wsize;
      if (!quantize_bias(b, s.out, bq)) {
        poison(out.node(n), out.node_stride(), nullptr, 0);
        continue;
      }
      const int64_t P = os.h * os.w;
      for (int64_t i = 0; i < in.batch; ++i)
        for (int64_t co = 0; co < s.out; ++co) {
          float* d = y + (i * s.out + co) * P;
          for (int64_t p = 0; p < P; ++p) d[p] += bq[co];
        }
    }
  }
}

void QConv2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                       const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (!xq_.same_shape(in) || !plan_)
    throw std::logic_error(detail::who(*this) + ": backward without a matching forward");
  // fp32 branch: dw += dy (x) x_hat, db += sum dy (no input gradient from the fp32 layer).
  fp32_.backward(xq_, out, dout, nullptr, params, dparams);
  if (!dinp) return;
  // 8-bit branch: dx = conv^T(Q8_stochastic(dy), w_hat).
  dinp->resize_like(in);
  const int64_t wsize = plan_->shape().w_size(), per_node = dout.node_stride();
  qg_.resize(static_cast<size_t>(per_node));
  for (int64_t n = 0; n < in.nodes; ++n) {
    const float* g = dout.node(n);
    k::QParams pg;
    if (!finite_params(g, per_node, pg)) {
      poison(dinp->node(n), dinp->node_stride(), nullptr, 0);
      continue;
    }
    k::quantize_u8(g, per_node, pg, k::Rounding::kStochastic,
                   stream_key(*ctx_, name_, Role::kGradient, n), qg_.data());
    const k::QParams pw{wq_params_[2 * n], wq_params_[2 * n + 1]};
    plan_->backward_data(qg_.data(), pg, qw_.data() + n * wsize, pw, dinp->node(n));
  }
}

// ---------------------------------------------------------------------------------------------
// QLinear

QLinear::QLinear(int64_t in, int64_t out, bool bias, std::shared_ptr<const QuantContext> ctx)
    : fp32_(in, out, bias), in_(in), out_(out), bias_(bias), ctx_(std::move(ctx)) {
  check_context(*this, ctx_);
}

std::string QLinear::describe() const { return "Q" + fp32_.describe(); }

void QLinear::declare(Layout& layout, const std::string& name) {
  name_ = name;
  fp32_.declare(layout, name);
}

void QLinear::set_nodes(int64_t nodes) {
  nodes_ = nodes;
  act_range_.assign(static_cast<size_t>(2 * nodes), 0.0f);
}

std::vector<BufferRef> QLinear::buffers() { return {{name_ + ".act_range", &act_range_, 2}}; }

void QLinear::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, fp32_.weight_offset(), params);
  if (nodes_ != in.nodes) set_nodes(in.nodes);
  out.resize(in.nodes, in.batch, out_, 1, 1);
  const int64_t wsize = in_ * out_, per_node = in.node_stride();
  xq_.resize_like(in);
  pq_ = NodeMatrix(in.nodes, num_params());
  qx_.resize(static_cast<size_t>(per_node));
  qw_.resize(static_cast<size_t>(in.nodes * wsize));
  wq_params_.resize(static_cast<size_t>(2 * in.nodes));
  const bool stochastic = ctx_->stochastic_activations;
  for (int64_t n = 0; n < in.nodes; ++n) {
    const float* w = params.row(n) + fp32_.weight_offset();
    uint8_t* qw = qw_.data() + n * wsize;
    k::QParams pw, px;
    if (!node_params(w, wsize, qw, pq_.row(n), in.node(n), in.batch, in_, train,
                     act_range_.data() + 2 * n, pw, px)) {
      poison(out.node(n), out.node_stride(), xq_.node(n), per_node);
      continue;
    }
    wq_params_[2 * n] = pw.lo;
    wq_params_[2 * n + 1] = pw.scale;
    k::quantize_u8(in.node(n), per_node, px,
                   stochastic ? k::Rounding::kStochastic : k::Rounding::kNearestEven,
                   stream_key(*ctx_, name_, Role::kActivation, n), qx_.data());
    k::dequantize_u8(qx_.data(), per_node, px, xq_.node(n));
    float* y = out.node(n);
    k::linear_u8_forward(in.batch, in_, out_, qx_.data(), px, qw, pw, y);
    if (bias_) {
      const float* b = params.row(n) + fp32_.weight_offset() + wsize;
      float* bq = pq_.row(n) + wsize;
      if (!quantize_bias(b, out_, bq)) {
        poison(out.node(n), out.node_stride(), nullptr, 0);
        continue;
      }
      for (int64_t i = 0; i < in.batch; ++i)
        for (int64_t o = 0; o < out_; ++o) y[i * out_ + o] += bq[o];
    }
  }
}

void QLinear::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                       const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (!xq_.same_shape(in))
    throw std::logic_error(detail::who(*this) + ": backward without a matching forward");
  fp32_.backward(xq_, out, dout, nullptr, params, dparams);
  if (!dinp) return;
  dinp->resize_like(in);
  const int64_t wsize = in_ * out_, per_node = dout.node_stride();
  qg_.resize(static_cast<size_t>(per_node));
  for (int64_t n = 0; n < in.nodes; ++n) {
    const float* g = dout.node(n);
    k::QParams pg;
    if (!finite_params(g, per_node, pg)) {
      poison(dinp->node(n), dinp->node_stride(), nullptr, 0);
      continue;
    }
    k::quantize_u8(g, per_node, pg, k::Rounding::kStochastic,
                   stream_key(*ctx_, name_, Role::kGradient, n), qg_.data());
    const k::QParams pw{wq_params_[2 * n], wq_params_[2 * n + 1]};
    k::linear_u8_backward_data(in.batch, in_, out_, qg_.data(), pg, qw_.data() + n * wsize, pw,
                               dinp->node(n));
  }
}

}  // namespace spush::nets

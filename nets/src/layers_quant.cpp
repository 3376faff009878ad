// QConv2d and QLinear: 8-bit forward and backward-data, fp32 backward-weights (layers_quant.h).
// With several nodes and OpenMP threads the nodes run in parallel, one per thread, each node's
// kernels (quantizers, oneDNN's int8 primitives, epilogue) on that thread alone: these small
// ops scale better across nodes than inside one. With one node, or one thread, the nodes run in
// turn and the kernels parallelize inside. The results are the same bits either way.
#include "spush/nets/layers_quant.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <stdexcept>

#include "layers_internal.h"
#include "spush/kernels/conv_int8.h"
#include "spush/kernels/quantize.h"
#include "spush/kernels/threads.h"

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

// How a layer call runs its nodes (see the file comment).
struct NodeTasks {
  bool parallel = false;
  int slots = 1;    // concurrent tasks
  int threads = 1;  // OpenMP threads of each task's kernels
};

NodeTasks node_tasks(int64_t nodes) {
  const int t = omp_get_max_threads();
  if (nodes > 1 && t > 1 && !omp_in_parallel())
    return {true, static_cast<int>(std::min<int64_t>(t, nodes)), 1};
  return {false, 1, t};
}

// Runs body(slot, n) for every node n as `tasks` says; rethrows the first exception after all
// tasks finish.
template <typename Body>
void for_each_node(const NodeTasks& tasks, int64_t nodes, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(tasks.slots) if (tasks.parallel)
  for (int64_t n = 0; n < nodes; ++n) {
    try {
      const kernels::OneThread one(tasks.parallel);
      body(tasks.parallel ? omp_get_thread_num() : 0, n);
    } catch (...) {
#pragma omp critical(spush_quant_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// QuantizedLayer

QuantizedLayer::QuantizedLayer(std::shared_ptr<const QuantContext> ctx) : ctx_(std::move(ctx)) {
  if (!ctx_) throw std::invalid_argument("quantized layer: needs a QuantContext");
}

void QuantizedLayer::declare(Layout& layout, const std::string& name) {
  name_ = name;
  fp32().declare(layout, name);
}

void QuantizedLayer::set_nodes(int64_t nodes) {
  nodes_ = nodes;
  act_range_.assign(static_cast<size_t>(2 * nodes), 0.0f);
}

std::vector<BufferRef> QuantizedLayer::buffers() {
  return {{name_ + ".act_range", &act_range_, 2}};
}

void QuantizedLayer::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, weight_offset(), params);
  if (nodes_ != in.nodes) set_nodes(in.nodes);
  out.resize(in.nodes, in.batch, output_shape(in.shape3()));
  const NodeTasks tasks = node_tasks(in.nodes);
  prepare(in, tasks.slots, tasks.threads);
  const int64_t wsize = weight_size(), bsize = bias_size(), per_node = in.node_stride();
  const int64_t positions = bsize > 0 ? out.sample_stride() / bsize : 0;  // per bias value
  xq_.resize_like(in);
  if (pq_.rows() != in.nodes || pq_.cols() != num_params())
    pq_ = NodeMatrix(in.nodes, num_params());
  qx_.resize(static_cast<size_t>(tasks.slots * per_node));
  qw_.resize(static_cast<size_t>(in.nodes * wsize));
  pw_.resize(static_cast<size_t>(in.nodes));
  const k::Rounding act_rounding =
      ctx_->stochastic_activations ? k::Rounding::kStochastic : k::Rounding::kNearestEven;
  for_each_node(tasks, in.nodes, [&](int slot, int64_t n) {
    const float* w = params.row(n) + weight_offset();
    uint8_t* qw = qw_.data() + n * wsize;
    float* bq = pq_.row(n) + wsize;
    k::QParams px;
    if (!node_params(w, wsize, qw, pq_.row(n), in.node(n), in.batch, in.sample_stride(), train,
                     act_range_.data() + 2 * n, pw_[n], px) ||
        (bsize > 0 && !quantize_bias(w + wsize, bsize, bq))) {
      poison(out.node(n), out.node_stride(), xq_.node(n), per_node);  // diverged: NaN out
      return;
    }
    uint8_t* qx = qx_.data() + slot * per_node;
    k::quantize_u8(in.node(n), per_node, px, act_rounding,
                   stream_key(*ctx_, name_, Role::kActivation, n), qx);
    k::dequantize_u8(qx, per_node, px, xq_.node(n));
    float* y = out.node(n);
    int8_forward(slot, in, qx, px, qw, pw_[n], y);
    for (int64_t i = 0; i < in.batch && bsize > 0; ++i)
      for (int64_t c = 0; c < bsize; ++c) {
        float* d = y + (i * bsize + c) * positions;
        for (int64_t p = 0; p < positions; ++p) d[p] += bq[c];
      }
  });
}

void QuantizedLayer::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                              const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (!xq_.same_shape(in) || pw_.size() != static_cast<size_t>(in.nodes))
    throw std::logic_error(detail::who(*this) + ": backward without a matching forward");
  // fp32 branch: dw += dy (x) x_hat, db += sum dy (no input gradient from the fp32 layer).
  fp32().backward(xq_, out, dout, nullptr, params, dparams);
  if (!dinp) return;
  // 8-bit branch: dx = op^T(Q8_stochastic(dy), w_hat).
  dinp->resize_like(in);
  const int64_t wsize = weight_size(), per_node = dout.node_stride();
  const NodeTasks tasks = node_tasks(in.nodes);
  prepare(in, tasks.slots, tasks.threads);
  qg_.resize(static_cast<size_t>(tasks.slots * per_node));
  for_each_node(tasks, in.nodes, [&](int slot, int64_t n) {
    const float* g = dout.node(n);
    k::QParams pg;
    if (!finite_params(g, per_node, pg)) {
      poison(dinp->node(n), dinp->node_stride(), nullptr, 0);
      return;
    }
    uint8_t* qg = qg_.data() + slot * per_node;
    k::quantize_u8(g, per_node, pg, k::Rounding::kStochastic,
                   stream_key(*ctx_, name_, Role::kGradient, n), qg);
    int8_backward_data(slot, in, qg, pg, qw_.data() + n * wsize, pw_[n], dinp->node(n));
  });
}

// ---------------------------------------------------------------------------------------------
// QConv2d: kernels::ConvInt8Plan, one per input shape.

QConv2d::QConv2d(const Conv2dSpec& spec, std::shared_ptr<const QuantContext> ctx)
    : QuantizedLayer(std::move(ctx)), fp32_(spec) {}

QConv2d::~QConv2d() = default;

int64_t QConv2d::weight_size() const {
  const Conv2dSpec& s = fp32_.spec();
  return s.out * s.in * s.kh * s.kw;
}

void QConv2d::prepare(const Tensor& in, int slots, int threads) {
  const Conv2dSpec& s = fp32_.spec();
  const k::ConvShape shape{in.batch, in.c,       in.h,       in.w,    s.out,  s.kh,
                           s.kw,     s.stride_h, s.stride_w, s.pad_h, s.pad_w};
  // oneDNN sizes a primitive's work split when the plan builds it (on first use, on the thread
  // and with the thread count of the task that uses it): rebuild when that count changes.
  if (threads != plan_threads_) plans_.clear();
  plan_threads_ = threads;
  if (plans_.size() < static_cast<size_t>(slots)) plans_.resize(static_cast<size_t>(slots));
  for (int i = 0; i < slots; ++i)
    if (!plans_[i] || !(plans_[i]->shape() == shape))
      plans_[i] = std::make_unique<k::ConvInt8Plan>(shape);
}

void QConv2d::int8_forward(int slot, const Tensor&, const uint8_t* qx, k::QParams px,
                           const uint8_t* qw, k::QParams pw, float* y) {
  plans_[slot]->forward(qx, px, qw, pw, y);
}

void QConv2d::int8_backward_data(int slot, const Tensor&, const uint8_t* qg, k::QParams pg,
                                 const uint8_t* qw, k::QParams pw, float* dx) {
  plans_[slot]->backward_data(qg, pg, qw, pw, dx);
}

// ---------------------------------------------------------------------------------------------
// QLinear: kernels::linear_u8_forward / linear_u8_backward_data (the int8 GEMM).

QLinear::QLinear(int64_t in, int64_t out, bool bias, std::shared_ptr<const QuantContext> ctx)
    : QuantizedLayer(std::move(ctx)), fp32_(in, out, bias), in_(in), out_(out), bias_(bias) {}

void QLinear::int8_forward(int, const Tensor& in, const uint8_t* qx, k::QParams px,
                           const uint8_t* qw, k::QParams pw, float* y) {
  k::linear_u8_forward(in.batch, in_, out_, qx, px, qw, pw, y);
}

void QLinear::int8_backward_data(int, const Tensor& in, const uint8_t* qg, k::QParams pg,
                                 const uint8_t* qw, k::QParams pw, float* dx) {
  k::linear_u8_backward_data(in.batch, in_, out_, qg, pg, qw, pw, dx);
}

}  // namespace spush::nets

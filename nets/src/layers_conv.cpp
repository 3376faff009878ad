// Conv2d on the CPU: one kernels::Conv2dPlan per (input shape, sample-range size, ConvImpl),
// run per (node, sample range) task on the OpenMP threads (layers_internal.h): oneDNN's
// convolution primitives, or the im2col + sgemm reference with
// kernels::set_conv_impl(ConvImpl::kReference) or SPUSH_CONV_IMPL=reference. Each plan runs on
// its calling thread alone, so a node's outputs and weight gradient depend on the batch split
// only, never on the thread count.
#include <cmath>
#include <cstring>

#include "layers_internal.h"
#include "spush/kernels/conv.h"
#include "spush/nets/layers.h"

namespace spush::nets {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 22;  // multiply-adds below which one thread runs
constexpr size_t kMaxPlans = 16;  // plans kept per layer (train and eval batch shapes, ...)

}  // namespace

Conv2d::Conv2d(const Conv2dSpec& spec) : spec_(spec) {
  const auto& s = spec_;
  if (s.in <= 0 || s.out <= 0 || s.kh <= 0 || s.kw <= 0 || s.stride_h <= 0 || s.stride_w <= 0 ||
      s.pad_h < 0 || s.pad_w < 0)
    throw std::invalid_argument(
        "Conv2d: need in, out, kernel, stride > 0 and padding >= 0; got in=" +
        std::to_string(s.in) + " out=" + std::to_string(s.out) + " kernel=" + std::to_string(s.kh) +
        "x" + std::to_string(s.kw) + " stride=" + std::to_string(s.stride_h) + "x" +
        std::to_string(s.stride_w) + " pad=" + std::to_string(s.pad_h) + "x" +
        std::to_string(s.pad_w));
  detail::blas_single_thread();
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias)
    : Conv2d(Conv2dSpec{in, out, k, k, stride, stride, pad, pad, bias}) {}

std::string Conv2d::describe() const {
  const auto& s = spec_;
  return "Conv2d(" + std::to_string(s.in) + "->" + std::to_string(s.out) +
         ", k=" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
         ", s=" + std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) +
         ", p=" + std::to_string(s.pad_h) + "x" + std::to_string(s.pad_w) +
         (s.bias ? ", bias" : "") + ")";
}

void Conv2d::declare(Layout& layout, const std::string& name) {
  name_ = name;
  w_off_ = layout.segment(layout.add(name + ".weight", {spec_.out, spec_.in, spec_.kh, spec_.kw}))
               .offset;
  if (spec_.bias) b_off_ = layout.segment(layout.add(name + ".bias", {spec_.out})).offset;
  // backward() treats weight and bias as one contiguous range.
  if (spec_.bias && b_off_ != w_off_ + spec_.out * spec_.in * spec_.kh * spec_.kw)
    throw std::logic_error(detail::who(*this) + ": weight and bias segments are not adjacent");
}

int64_t Conv2d::num_params() const {
  return spec_.out * spec_.in * spec_.kh * spec_.kw + (spec_.bias ? spec_.out : 0);
}

Shape3 Conv2d::output_shape(Shape3 in) const {
  const auto& s = spec_;
  if (in.c != s.in)
    throw std::invalid_argument(detail::who(*this) + ": input " + in.str() + " has " +
                                std::to_string(in.c) + " channels, expected " +
                                std::to_string(s.in));
  const int64_t oh = (in.h + 2 * s.pad_h - s.kh) / s.stride_h + 1;
  const int64_t ow = (in.w + 2 * s.pad_w - s.kw) / s.stride_w + 1;
  if (in.h + 2 * s.pad_h < s.kh || in.w + 2 * s.pad_w < s.kw || oh <= 0 || ow <= 0)
    throw std::invalid_argument(detail::who(*this) + ": input " + in.str() +
                                " is smaller than the kernel " + std::to_string(s.kh) + "x" +
                                std::to_string(s.kw) + " with padding " + std::to_string(s.pad_h) +
                                "x" + std::to_string(s.pad_w));
  return {s.out, oh, ow};
}

void Conv2d::init(float* row, std::mt19937_64& rng) const {
  // He-normal, fan_out mode (the CIFAR ResNet reference code: N(0, 2 / (kh*kw*out))).
  const int64_t fan_out = spec_.kh * spec_.kw * spec_.out;
  detail::fill_normal(row + w_off_, spec_.out * spec_.in * spec_.kh * spec_.kw,
                      std::sqrt(2.0f / static_cast<float>(fan_out)), rng);
  if (spec_.bias) std::fill(row + b_off_, row + b_off_ + spec_.out, 0.0f);
}

const kernels::Conv2dPlan& Conv2d::plan(int64_t samples, Shape3 in) {
  kernels::ConvShape cs;
  cs.batch = samples;
  cs.cin = in.c;
  cs.h = in.h;
  cs.w = in.w;
  cs.cout = spec_.out;
  cs.kh = spec_.kh;
  cs.kw = spec_.kw;
  cs.sh = spec_.stride_h;
  cs.sw = spec_.stride_w;
  cs.ph = spec_.pad_h;
  cs.pw = spec_.pad_w;
  const kernels::ConvImpl impl = kernels::conv_impl();
  for (const auto& p : plans_)
    if (p->shape() == cs && p->impl() == impl) return *p;
  if (plans_.size() >= kMaxPlans) plans_.erase(plans_.begin());
  plans_.push_back(std::make_shared<const kernels::Conv2dPlan>(cs, spec_.bias, impl));
  return *plans_.back();
}

std::vector<const kernels::Conv2dPlan*> Conv2d::task_plans(const detail::NodeSplit& split,
                                                           Shape3 in) {
  // Built before the parallel region: one per group (the sample ranges of group g have the
  // same size in every node).
  std::vector<const kernels::Conv2dPlan*> plans(static_cast<size_t>(split.groups));
  for (int64_t g = 0; g < split.groups; ++g) {
    const auto [b0, b1] = split.range(g);
    plans[g] = &plan(b1 - b0, in);
  }
  return plans;
}

void Conv2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, w_off_, params);
  const Shape3 os = output_shape(in.shape3());
  out.resize(in.nodes, in.batch, os);
  const int64_t K = spec_.in * spec_.kh * spec_.kw;
  const detail::NodeSplit split = detail::split_nodes(in.nodes, in.batch);
  const std::vector<const kernels::Conv2dPlan*> plans = task_plans(split, in.shape3());
  const bool has_bias = spec_.bias;
  const bool parallel = split.tasks() > 1 && out.numel() * K > kParallelWork;

#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t task = 0; task < split.tasks(); ++task) {
    const int64_t n = split.node(task);
    const int64_t b0 = split.range(task).first;
    const float* wt = params.row(n) + w_off_;
    const float* bias = has_bias ? params.row(n) + b_off_ : nullptr;
    plans[task % split.groups]->forward(in.sample(n, b0), wt, bias, out.sample(n, b0));
  }
}

void Conv2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                      const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  const int64_t K = spec_.in * spec_.kh * spec_.kw;
  const detail::NodeSplit split = detail::split_nodes(in.nodes, in.batch);
  const std::vector<const kernels::Conv2dPlan*> plans = task_plans(split, in.shape3());
  if (dinp) dinp->resize_like(in);
  // Weight then bias are adjacent in the layout (declared one after the other).
  detail::GradPartials partials;
  partials.prepare(split, num_params());
  const bool has_bias = spec_.bias;
  const int64_t wsize = spec_.out * K;
  const bool parallel = split.tasks() > 1 && out.numel() * K > kParallelWork;

#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t task = 0; task < split.tasks(); ++task) {
    const int64_t n = split.node(task);
    const int64_t b0 = split.range(task).first;
    const kernels::Conv2dPlan& p = *plans[task % split.groups];
    float* dw = partials.target(task, dparams, w_off_);
    p.backward(in.sample(n, b0), dout.sample(n, b0), params.row(n) + w_off_,
               dinp ? dinp->sample(n, b0) : nullptr, dw, has_bias ? dw + wsize : nullptr);
  }
  partials.reduce(dparams, w_off_);
}

}  // namespace spush::nets

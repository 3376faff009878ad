// CPU layers over node-batched tensors [nodes, batch, c, h, w] (see layer.h for the contract).
//
//   Conv2d           kernels::Conv2dPlan per (node, sample range): oneDNN, or the im2col + sgemm
//                    reference (kernels::set_conv_impl, kernels/include/spush/kernels/conv.h);
//                    weight [out, in, kh, kw], optional bias [out]; He-normal init (fan_out),
//                    bias 0.
//   Linear           y = x W^T + b over [nodes, batch, in, 1, 1]; weight [out, in], bias [out].
//   ReLU, Flatten, MaxPool2d, AvgPool2d (count_include_pad), GlobalAvgPool.
//   ZeroPadShortcut  ResNet option A: x[:, :, ::s, ::s] with channels zero-padded to `out`
//                    (pad split evenly before/after, as in the CIFAR ResNet reference code).
//   BatchNorm2d      per-node batch statistics (train) or running statistics (eval);
//                    momentum 0.1, eps 1e-5, running_var updated with the unbiased variance.
//   GroupNorm        per-sample statistics over groups of adjacent channels.
//   EvoNormS0        y = x * sigmoid(v x) / sqrt(Var_group(x) + eps) * gamma + beta
//                    (docs/ALGORITHMS.md §8; biased variance, eps 1e-5, no running statistics).
//   RangeBatchNorm2d BatchNorm with a range-based scale instead of the standard deviation
//                    (Banner et al. 2018, 8-bit training): y = (x - mu) / (s + eps) * gamma + beta,
//                    s = kRangeScale / sqrt(2 ln m) * mean over K chunks of (max - min);
//                    running mean and running scale (momentum 0.1) for eval.
//   RangeEvoNorm     y = x * hsig(v x) / (s + eps) * gamma + beta, s the same chunked range scale
//                    over the sample's group, hsig(z) = clamp(z/6 + 1/2, 0, 1).
//   SoftmaxCrossEntropy  mean loss per node, correct counts, dlogits.
// Threading: OpenMP over (node, sample range) tasks with single-threaded BLAS inside; the first
// Conv2d/Linear constructed calls openblas_set_num_threads(1) for the process.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spush/nets/layer.h"

namespace spush::kernels {
class Conv2dPlan;
}

namespace spush::nets {
namespace detail {
struct NodeSplit;
}

struct Conv2dSpec {
  int64_t in = 0, out = 0;  // channels
  int64_t kh = 3, kw = 3;   // kernel
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // zero padding
  bool bias = true;
};

class Conv2d final : public Layer {
 public:
  explicit Conv2d(const Conv2dSpec& spec);
  // Square kernel, same stride and padding in both dimensions.
  Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0, bool bias = true);
  std::string type() const override { return "Conv2d"; }
  std::string describe() const override;
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override;
  Shape3 output_shape(Shape3 in) const override;
  void init(float* row, std::mt19937_64& rng) const override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  const Conv2dSpec& spec() const { return spec_; }
  int64_t weight_offset() const { return w_off_; }
  int64_t bias_offset() const { return b_off_; }

 private:
  Conv2dSpec spec_;
  // The plan for `samples` samples of input shape `in` with the current kernels::conv_impl()
  // (built on first use; the layer keeps the last few).
  const kernels::Conv2dPlan& plan(int64_t samples, Shape3 in);
  std::vector<const kernels::Conv2dPlan*> task_plans(const detail::NodeSplit& split, Shape3 in);

  int64_t w_off_ = -1, b_off_ = -1;
  std::vector<std::shared_ptr<const kernels::Conv2dPlan>> plans_;
};

class Linear final : public Layer {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  std::string type() const override { return "Linear"; }
  std::string describe() const override;
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override { return in_ * out_ + (bias_ ? out_ : 0); }
  Shape3 output_shape(Shape3 in) const override;
  void init(float* row, std::mt19937_64& rng) const override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  int64_t weight_offset() const { return w_off_; }

 private:
  int64_t in_, out_;
  bool bias_;
  int64_t w_off_ = -1, b_off_ = -1;
};

class ReLU final : public Layer {
 public:
  std::string type() const override { return "ReLU"; }
  Shape3 output_shape(Shape3 in) const override { return in; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
};

// [c, h, w] -> [c*h*w, 1, 1] (a copy: the data order is unchanged).
class Flatten final : public Layer {
 public:
  std::string type() const override { return "Flatten"; }
  Shape3 output_shape(Shape3 in) const override { return {in.numel(), 1, 1}; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
};

// Max over k x k windows; padding counts as -inf. Gradient goes to the first maximum.
class MaxPool2d final : public Layer {
 public:
  explicit MaxPool2d(int64_t k, int64_t stride = -1, int64_t pad = 0);  // stride -1: = k
  std::string type() const override { return "MaxPool2d"; }
  std::string describe() const override;
  Shape3 output_shape(Shape3 in) const override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;

 private:
  int64_t k_, stride_, pad_;
  std::vector<int32_t> argmax_;  // per output element: input index within its (n, b, c) plane
};

// Mean over k x k windows, divisor k*k (padding counts as zeros, PyTorch's default).
class AvgPool2d final : public Layer {
 public:
  explicit AvgPool2d(int64_t k, int64_t stride = -1, int64_t pad = 0);
  std::string type() const override { return "AvgPool2d"; }
  std::string describe() const override;
  Shape3 output_shape(Shape3 in) const override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;

 private:
  int64_t k_, stride_, pad_;
};

// [c, h, w] -> [c, 1, 1]: mean over the spatial positions.
class GlobalAvgPool final : public Layer {
 public:
  std::string type() const override { return "GlobalAvgPool"; }
  Shape3 output_shape(Shape3 in) const override { return {in.c, 1, 1}; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
};

// ResNet option-A shortcut: out[c', i, j] = in[c' - pad_before, i*stride, j*stride] for
// c' - pad_before in [0, in_c), else 0, with pad_before = (out_c - in_c) / 2.
class ZeroPadShortcut final : public Layer {
 public:
  ZeroPadShortcut(int64_t in_c, int64_t out_c, int64_t stride);
  std::string type() const override { return "ZeroPadShortcut"; }
  std::string describe() const override;
  Shape3 output_shape(Shape3 in) const override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;

 private:
  int64_t in_c_, out_c_, stride_;
};

// ---- normalization layers ------------------------------------------------------------------
//
// The parameter bookkeeping the normalization layers share: `channels` and `eps`, gamma
// ("<name>.weight", init 1) and beta ("<name>.bias", init 0) of `channels` floats each, and
// output_shape (the input, checked to have `channels` channels).
class AffineNorm : public Layer {
 public:
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override { return 2 * c_; }
  Shape3 output_shape(Shape3 in) const override;
  void init(float* row, std::mt19937_64& rng) const override;  // gamma = 1, beta = 0

 protected:
  AffineNorm(int64_t channels, float eps) : c_(channels), eps_(eps) {}
  int64_t c_;
  float eps_;
  int64_t g_off_ = -1, b_off_ = -1;
};

// BatchNorm2d and RangeBatchNorm2d: per (node, channel) running statistics, a mean
// ("<name>.running_mean", init 0) and a scale statistic ("<name>.<stat>", init 1), updated with
// `momentum`; describe() "<type>(<channels>)".
class RunningNorm : public AffineNorm {
 public:
  std::string describe() const override;
  void set_nodes(int64_t nodes) override;  // running_mean = 0, the scale statistic = 1
  std::vector<BufferRef> buffers() override;
  // [nodes * channels] running mean.
  std::vector<float>& running_mean() { return run_mean_; }

 protected:
  // Throws std::invalid_argument "<type>: need channels > 0, momentum in [0, 1], eps > 0; ...".
  RunningNorm(const char* type, const char* stat, int64_t channels, float momentum, float eps);
  // Throws std::invalid_argument unless `in` has the nodes that set_nodes() was called with.
  void check_nodes(const Tensor& in) const;
  const char* stat_;
  float momentum_;
  int64_t nodes_ = 0;
  std::vector<float> run_mean_, run_stat_;
  bool train_ = true;  // mode of the last forward
};

// GroupNorm, EvoNormS0 and RangeEvoNorm: statistics per (node, sample, group of channels /
// groups adjacent channels); describe() "<type>(<channels>, groups=<groups>)".
class GroupedNorm : public AffineNorm {
 public:
  std::string describe() const override;

 protected:
  // Throws std::invalid_argument unless channels is a positive multiple of groups and eps > 0.
  GroupedNorm(const char* type, int64_t groups, int64_t channels, float eps);
  int64_t g_;
};

// EvoNormS0 and RangeEvoNorm: GroupedNorm's gamma and beta and then v ("<name>.v", init 1).
class EvoNormBase : public GroupedNorm {
 public:
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override { return 3 * c_; }
  void init(float* row, std::mt19937_64& rng) const override;  // gamma = v = 1, beta = 0

 protected:
  using GroupedNorm::GroupedNorm;
  int64_t v_off_ = -1;
};

class BatchNorm2d final : public RunningNorm {
 public:
  explicit BatchNorm2d(int64_t channels, float momentum = 0.1f, float eps = 1e-5f);
  std::string type() const override { return "BatchNorm2d"; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  // [nodes * channels] running variance (buffer "<name>.running_var").
  std::vector<float>& running_var() { return run_stat_; }

 private:
  // Saved by forward: per (node, channel) mean and 1/sqrt(var + eps) that were used.
  std::vector<float> mean_, rstd_;
};

class GroupNorm final : public GroupedNorm {
 public:
  GroupNorm(int64_t groups, int64_t channels, float eps = 1e-5f);
  std::string type() const override { return "GroupNorm"; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;

 private:
  std::vector<float> mean_, rstd_;  // per (node, sample, group)
};

class EvoNormS0 final : public EvoNormBase {
 public:
  EvoNormS0(int64_t groups, int64_t channels, float eps = 1e-5f);
  std::string type() const override { return "EvoNormS0"; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;

 private:
  std::vector<float> mean_, rstd_;  // per (node, sample, group)
  std::vector<float> sig_;          // sigmoid(v x) of the last forward, like the input
};

// ---- range normalization (8-bit friendly: max/min instead of sums of squares) --------------
//
// The scale of a set of n elements (a channel over the node's batch and positions for
// RangeBatchNorm2d; a sample's group of channels for RangeEvoNorm), the code form of Banner et
// al. 2018 ("Scalable methods for 8-bit training of neural networks", RangeBN):
//   K = clamp(floor(n / 2), 1, 16) chunks, so that every chunk holds at least 2 elements (fewer
//       than 16 chunks when n < 32); chunk k holds the elements [floor(k n / K),
//       floor((k + 1) n / K)) in memory order ((batch, h, w) for a channel, (channel, h, w) for
//       a group), so chunk sizes differ by at most one when K does not divide n;
//   s = kRangeScale / sqrt(2 ln m) * (1/K) sum_k (max_k - min_k), m = n / K (mean chunk size),
//       kRangeScale = 0.175 (1 + sqrt(pi ln 4)) = 0.540208 (the reference code's constant:
//       for Gaussian data s is 0.85-0.97 sigma for chunk sizes m = 32..8192, 0.52 sigma at
//       m = 2); s = 0 when n == 1.
// Outputs divide by (s + eps), eps = 1e-5, which guards a zero range (constant input).
// Gradients are exact: d s / d x goes to the first arg-max (+) and first arg-min (-) of each
// chunk, each with weight kRangeScale / (sqrt(2 ln m) K).
inline constexpr double kRangeScale = 0.540208362487903;  // 0.175 * (1 + sqrt(pi * ln 4))
inline constexpr int64_t kRangeChunks = 16;
// Number of chunks for n elements, and the factor kRangeScale / sqrt(2 ln(n / K)) (0 if n < 2).
int64_t range_chunks(int64_t n);
double range_scale_factor(int64_t n);

// Range BatchNorm: per (node, channel) over (batch, h, w), mu the batch mean and s the range
// scale above; train updates running_mean and running_scale (r = (1 - m) r + m stat, momentum
// 0.1), eval normalizes with them: y = (x - running_mean) / (running_scale + eps) * gamma + beta.
// Buffers "<name>.running_mean" (init 0) and "<name>.running_scale" (init 1).
class RangeBatchNorm2d final : public RunningNorm {
 public:
  explicit RangeBatchNorm2d(int64_t channels, float momentum = 0.1f, float eps = 1e-5f);
  std::string type() const override { return "RangeBatchNorm2d"; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  // [nodes * channels] running scale (buffer "<name>.running_scale").
  std::vector<float>& running_scale() { return run_stat_; }

 private:
  // Saved by forward: per (node, channel) mean and 1/(s + eps) used; in train mode the
  // per-chunk arg-max / arg-min element indices (kRangeChunks slots per (node, channel)).
  std::vector<float> mean_, inv_;
  std::vector<int64_t> amax_, amin_;
};

// Range EvoNorm (EvoNorm-S0 with the range scale and a hard sigmoid), per sample and group of
// C/G adjacent channels: y = x * hsig(v x) / (s + eps) * gamma + beta, hsig(z) = clamp(z/6 +
// 1/2, 0, 1) (gradient 1/6 for -3 < z < 3, else 0). gamma = v = 1, beta = 0 at init; no running
// statistics (train and eval compute the same thing).
class RangeEvoNorm final : public EvoNormBase {
 public:
  RangeEvoNorm(int64_t groups, int64_t channels, float eps = 1e-5f);
  std::string type() const override { return "RangeEvoNorm"; }
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;

 private:
  std::vector<float> inv_;            // per (node, sample, group): 1 / (s + eps)
  std::vector<int64_t> amax_, amin_;  // per (node, sample, group): kRangeChunks slots
};

// Softmax cross-entropy over logits [nodes, batch, classes, 1, 1] and int32 labels
// [nodes * batch] in [0, classes). Per node: loss = mean over the batch of -log softmax(label),
// correct = number of samples whose arg-max (lowest index on ties) equals the label.
struct LossStats {
  std::vector<double> loss;      // per node
  std::vector<int64_t> correct;  // per node
  int64_t batch = 0;             // samples per node
  double mean_loss() const;
  double accuracy() const;  // sum(correct) / (nodes * batch)
};

class SoftmaxCrossEntropy {
 public:
  // Loss statistics; if dlogits is not null, also writes dL/dlogits (per node: mean over the
  // batch, so dlogits = (softmax - onehot) / batch). Throws on an out-of-range label.
  LossStats forward_backward(const Tensor& logits, const int32_t* labels, Tensor* dlogits) const;
  // Arg-max class per sample, [nodes * batch].
  static std::vector<int32_t> argmax(const Tensor& logits);
};

}  // namespace spush::nets

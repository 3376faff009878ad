// 8-bit (GEMMLOWP-style) convolution and linear layers: the same parameters as Conv2d and Linear
// (same layout, same initialization, same checkpoints), computed in integer arithmetic
// (docs/ALGORITHMS.md, "8-bit training"):
//
//   forward          x_hat = Q8(x) (stochastic or nearest-even, per-tensor activation range),
//                    w_hat = Q8(w), b_hat = Q8(b) (nearest-even, per-tensor min/max),
//                    y = conv(x_hat, w_hat) + b_hat with u8 x u8 products summed exactly in int32
//                    (kernels/conv_int8.h) and the offset correction in the fp32 epilogue.
//   backward-data    dx = conv^T(Q8_stochastic(dy), w_hat) in integer arithmetic: the 8-bit branch
//                    of the gradient bifurcation; straight-through: dL/dx = dL/dx_hat.
//   backward-weights dw += dy (fp32) (x) x_hat, db += sum dy: the fp32 branch, through the fp32
//                    Conv2d / Linear backward on the dequantized activations.
//
// The activation range of a node is the batch mean of the per-sample minimum and maximum in
// training (and an exponential moving average of it, momentum 0.1, a per-node buffer
// "<name>.act_range" used in evaluation); values outside it clamp. Gradient ranges are the
// per-node tensor min/max. Every stochastic rounding draws from the Philox stream keyed by
// (QuantContext::seed mixed with the layer's name and the tensor's role, global node id,
// QuantContext::iteration, element), so a node's results do not depend on the thread count or
// on the number of processes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spush/kernels/quantize.h"
#include "spush/nets/layer.h"
#include "spush/nets/layers.h"

namespace spush::kernels {
class ConvInt8Plan;
}

namespace spush::nets {

// Shared by the quantized layers of one model: set before each training step.
struct QuantContext {
  uint64_t seed = 1;                   // run seed
  uint64_t iteration = 0;              // global step (keys the stochastic rounding)
  int64_t first_node = 0;              // global id of node row 0 (MPI ranks hold a block of nodes)
  bool stochastic_activations = true;  // false: nearest-even for activations too
};

// What QConv2d and QLinear share: the per-node quantization of weights, bias, input and output
// gradient, the activation ranges, the bias, the fp32 backward-weights and the NaN propagation.
// A subclass supplies the fp32 layer it mirrors and the two integer ops.
class QuantizedLayer : public Layer {
 public:
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override { return fp32().num_params(); }
  Shape3 output_shape(Shape3 in) const override { return fp32().output_shape(in); }
  void init(float* row, std::mt19937_64& rng) const override { fp32().init(row, rng); }
  void set_nodes(int64_t nodes) override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  std::vector<BufferRef> buffers() override;

  // What the last forward computed with (tests): the dequantized input [nodes, batch, c, h, w]
  // and the dequantized parameters (rows laid out like `params`, this layer's segments only).
  const Tensor& dequantized_input() const { return xq_; }
  const NodeMatrix& dequantized_params() const { return pq_; }

 protected:
  explicit QuantizedLayer(std::shared_ptr<const QuantContext> ctx);
  virtual const Layer& fp32() const = 0;
  virtual Layer& fp32() = 0;
  virtual int64_t weight_offset() const = 0;
  virtual int64_t weight_size() const = 0;
  virtual int64_t bias_size() const = 0;  // 0: no bias (the bias follows the weight)
  // Sizes whatever the integer ops need for an input like `in` (called before each forward):
  // `slots` concurrent tasks (one per thread), each running its kernels on `threads` OpenMP
  // threads.
  virtual void prepare(const Tensor& in, int slots, int threads) {}
  // y = op(x_hat, w_hat) of one node (overwrites y); dx = op^T(g_hat, w_hat) (overwrites dx);
  // `slot` is the calling task's, < prepare's `slots`: tasks of different slots run at once.
  virtual void int8_forward(int slot, const Tensor& in, const uint8_t* qx, kernels::QParams px,
                            const uint8_t* qw, kernels::QParams pw, float* y) = 0;
  virtual void int8_backward_data(int slot, const Tensor& in, const uint8_t* qg,
                                  kernels::QParams pg, const uint8_t* qw, kernels::QParams pw,
                                  float* dx) = 0;

 private:
  std::shared_ptr<const QuantContext> ctx_;
  int64_t nodes_ = 0;
  std::vector<float> act_range_;      // [nodes, 2]: running (lo, hi); (0, 0) until the first step
  Tensor xq_;                         // dequantized input of the last forward
  NodeMatrix pq_;                     // dequantized weight and bias of the last forward
  std::vector<uint8_t> qx_, qg_;      // per slot: one node's input / output-gradient codes
  std::vector<uint8_t> qw_;           // per node: the weight codes
  std::vector<kernels::QParams> pw_;  // per node: the weights' parameters
};

class QConv2d final : public QuantizedLayer {
 public:
  QConv2d(const Conv2dSpec& spec, std::shared_ptr<const QuantContext> ctx);
  ~QConv2d() override;
  std::string type() const override { return "QConv2d"; }
  std::string describe() const override { return "Q" + fp32_.describe(); }

 private:
  const Layer& fp32() const override { return fp32_; }
  Layer& fp32() override { return fp32_; }
  int64_t weight_offset() const override { return fp32_.weight_offset(); }
  int64_t weight_size() const override;
  int64_t bias_size() const override { return fp32_.spec().bias ? fp32_.spec().out : 0; }
  void prepare(const Tensor& in, int slots, int threads) override;
  void int8_forward(int slot, const Tensor& in, const uint8_t* qx, kernels::QParams px,
                    const uint8_t* qw, kernels::QParams pw, float* y) override;
  void int8_backward_data(int slot, const Tensor& in, const uint8_t* qg, kernels::QParams pg,
                          const uint8_t* qw, kernels::QParams pw, float* dx) override;

  Conv2d fp32_;
  // One plan per slot (a plan is not thread-safe), built for plan_threads_ OpenMP threads.
  std::vector<std::unique_ptr<kernels::ConvInt8Plan>> plans_;
  int plan_threads_ = 0;
};

class QLinear final : public QuantizedLayer {
 public:
  QLinear(int64_t in, int64_t out, bool bias, std::shared_ptr<const QuantContext> ctx);
  std::string type() const override { return "QLinear"; }
  std::string describe() const override { return "Q" + fp32_.describe(); }

 private:
  const Layer& fp32() const override { return fp32_; }
  Layer& fp32() override { return fp32_; }
  int64_t weight_offset() const override { return fp32_.weight_offset(); }
  int64_t weight_size() const override { return in_ * out_; }
  int64_t bias_size() const override { return bias_ ? out_ : 0; }
  void int8_forward(int slot, const Tensor& in, const uint8_t* qx, kernels::QParams px,
                    const uint8_t* qw, kernels::QParams pw, float* y) override;
  void int8_backward_data(int slot, const Tensor& in, const uint8_t* qg, kernels::QParams pg,
                          const uint8_t* qw, kernels::QParams pw, float* dx) override;

  Linear fp32_;
  int64_t in_, out_;
  bool bias_;
};

}  // namespace spush::nets

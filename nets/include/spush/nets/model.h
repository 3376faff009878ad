// Models: a Sequential stack of layers (with ResNet BasicBlocks as composite layers), its
// parameter Layout, and the training helpers. All nodes share one Model object; node n's
// parameters are row n of a NodeMatrix with layout().size() columns.
//
//   auto model = make_model({.name = "resnet20", .norm = "group", .in_c = 3, .in_h = 32,
//                            .in_w = 32});
//   NodeMatrix x(nodes, model->layout().size()), g(nodes, model->layout().size());
//   model->init(x, /*seed=*/1);                       // identical rows, buffers reset
//   LossStats st = model->loss_and_grad(images, labels.data(), x, g);   // g zeroed first
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spush/nets/layer.h"
#include "spush/nets/layers.h"
#include "spush/nets/layers_quant.h"

namespace spush::nets {

// Layers applied in order. Keeps every intermediate activation for backward.
class Sequential final : public Layer {
 public:
  // Appends a layer; `name` is its name relative to the Sequential ("conv1", "fc", ...).
  Sequential& add(const std::string& name, std::unique_ptr<Layer> layer);
  std::string type() const override { return "Sequential"; }
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override;
  Shape3 output_shape(Shape3 in) const override;
  void init(float* row, std::mt19937_64& rng) const override;
  void set_nodes(int64_t nodes) override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  std::vector<BufferRef> buffers() override;
  std::vector<const Layer*> children() const override;
  int64_t size() const { return static_cast<int64_t>(layers_.size()); }
  Layer& layer(int64_t i) { return *layers_.at(i); }
  const std::string& child_name(int64_t i) const { return names_.at(i); }

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::string> names_;
  std::vector<Tensor> acts_;  // acts_[i] = output of layer i (i < size - 1)
  Tensor grad_[2];            // ping-pong input gradients
};

// ResNet basic block: out = act(main(x) + shortcut(x)), main = conv3x3(s)-norm-relu-conv3x3-norm
// (EvoNorm-S0 and Range EvoNorm replace norm+relu, and then `act` is the identity as well),
// shortcut = identity, ZeroPadShortcut (option A) or conv1x1(s)-norm (option B).
class BasicBlock final : public Layer {
 public:
  BasicBlock(std::unique_ptr<Sequential> main, std::unique_ptr<Sequential> shortcut, bool relu_out);
  std::string type() const override { return "BasicBlock"; }
  std::string describe() const override {
    return relu_out_ ? "BasicBlock(add, relu)" : "BasicBlock(add)";
  }
  void declare(Layout& layout, const std::string& name) override;
  int64_t num_params() const override;
  Shape3 output_shape(Shape3 in) const override;
  void init(float* row, std::mt19937_64& rng) const override;
  void set_nodes(int64_t nodes) override;
  void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                const NodeMatrix& params, NodeMatrix& dparams) override;
  std::vector<BufferRef> buffers() override;
  std::vector<const Layer*> children() const override;

 private:
  std::unique_ptr<Sequential> main_, shortcut_;  // shortcut_ empty: identity
  bool relu_out_;
  Tensor main_out_, short_out_, dsum_, dshort_;
};

struct ModelSpec {
  // "lenet5", "resnet20|32|44|56|110", "resnet<6n+2>", "vgg11", "mlp".
  std::string name = "lenet5";
  // "batch", "group", "evonorm", "rangebn" (RangeBatchNorm2d), "rangeevo" (RangeEvoNorm),
  // "none"; empty: the model's default (batch for ResNet, none otherwise). LeNet-5 and VGG-11
  // put the norm after every convolution; MLP takes none.
  std::string norm;
  // Group count for GroupNorm/EvoNorm/RangeEvoNorm: at most one of these may be set (> 0).
  // Defaults: GroupNorm group size 2 for ResNet/VGG (Sparse-Push Fig. 6), EvoNorm and
  // RangeEvoNorm 8 groups; LeNet-5 (6 and 16 channels) 2 groups for all three.
  int64_t groups = 0;
  int64_t group_size = 0;
  int64_t in_c = 1, in_h = 28, in_w = 28;
  int64_t num_classes = 10;
  std::string shortcut = "zeropad";  // ResNet: "zeropad" (option A) or "conv1x1" (option B)
  std::vector<int64_t> mlp_hidden = {256, 128};
  // "fp32", or "int8": every convolution and linear layer (first and last included) becomes its
  // 8-bit counterpart (QConv2d, QLinear: layers_quant.h) with the same parameters.
  std::string precision = "fp32";
  // int8: stochastic rounding of activations (true) or nearest-even (false).
  bool stochastic_activations = true;
};

class Model {
 public:
  // Declares the network's parameters into the model's own Layout (names like
  // "layer2.0.conv1.weight") and sizes its buffers for one node.
  Model(std::string name, Shape3 input, int64_t num_classes, std::unique_ptr<Sequential> net,
        std::shared_ptr<QuantContext> quant = nullptr);

  const std::string& name() const { return name_; }
  const Layout& layout() const { return layout_; }
  int64_t num_params() const { return layout_.size(); }
  Shape3 input_shape() const { return input_; }
  int64_t num_classes() const { return classes_; }

  // Sizes and resets the per-node buffers (BatchNorm running statistics) for `nodes` nodes.
  void set_nodes(int64_t nodes);
  int64_t nodes() const { return nodes_; }
  // Initializes row 0 from `seed` and copies it to every row (identical models); calls
  // set_nodes(params.rows()).
  void init(NodeMatrix& params, uint64_t seed);

  // Logits [nodes, batch, classes, 1, 1] for input [nodes, batch, c, h, w]; valid until the
  // next forward. `train` selects batch statistics (and running-statistic updates). The input
  // is referenced, not copied: keep it alive and unchanged until backward().
  const Tensor& forward(const Tensor& input, const NodeMatrix& params, bool train);
  // Backpropagates dlogits through the last forward; grads is zeroed first, then filled.
  void backward(const Tensor& dlogits, const NodeMatrix& params, NodeMatrix& grads);
  // forward(train) + softmax cross-entropy (labels: [nodes * batch]) + backward.
  LossStats loss_and_grad(const Tensor& input, const int32_t* labels, const NodeMatrix& params,
                          NodeMatrix& grads);
  // Eval-mode loss and correct counts; no gradients.
  LossStats evaluate(const Tensor& input, const int32_t* labels, const NodeMatrix& params);
  // Eval-mode arg-max classes, [nodes * batch].
  std::vector<int32_t> predict(const Tensor& input, const NodeMatrix& params);

  // Every layer's per-node buffers, named (e.g. "bn1.running_mean"), for checkpoints.
  std::vector<BufferRef> buffers() { return net_->buffers(); }
  // Multi-line table: layer, type/hyper-parameters, output shape, parameters; then the total.
  std::string summary() const;

  // The 8-bit layers' shared settings (null for an fp32 model). The trainer sets the seed and
  // the first node once and the iteration before every step.
  QuantContext* quant() { return quant_.get(); }

 private:
  void check_params(const NodeMatrix& params, const char* what) const;

  std::string name_;
  Shape3 input_;
  int64_t classes_;
  std::unique_ptr<Sequential> net_;
  Layout layout_;
  int64_t nodes_ = 0;
  Tensor logits_, dlogits_;
  const Tensor* last_input_ = nullptr;
  SoftmaxCrossEntropy loss_;
  std::shared_ptr<QuantContext> quant_;
};

// Builds a model from a spec. Throws std::invalid_argument naming the bad value and the
// accepted ones (unknown name/norm/shortcut, depth not 6n+2, groups not dividing the channels,
// input too small for the network, num_classes < 1).
std::unique_ptr<Model> make_model(const ModelSpec& spec);

}  // namespace spush::nets

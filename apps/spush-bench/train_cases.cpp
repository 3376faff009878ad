// Whole training iterations of spush-bench (CPU): forward, loss and backward of every node's
// model (nets::Model::loss_and_grad) for ResNet-20 on 3x32x32 inputs, nodes x batch 32:
//   impl "spush"   fp32, the convolutions on oneDNN (kernels/conv.h)
//   impl "im2col"  fp32, the convolutions on the im2col + sgemm reference
//   impl "int8"    --precision int8 (nets/layers_quant.h)
// ops counts the convolutions' multiply-adds twice (forward, backward-data except the first
// layer's, backward-weights), so GOP/s is the convolution throughput the iteration reaches.
// And one layer against the library: maxpool, the forward and backward of LeNet-5's 2x2 max
// pooling layers over nodes x batch 32, impl "spush" (nets::MaxPool2d, its own loops) and
// "onednn" (oneDNN's pooling primitives on the same plain layout, onednn_pool.h).
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "onednn_pool.h"
#include "spush/kernels/conv.h"
#include "spush/nets/layers.h"
#include "spush/nets/model.h"

namespace spush::bench {
namespace {

class TrainIteration : public Instance {
 public:
  TrainIteration(const std::string& impl, const std::string& norm, int nodes, int batch)
      : impl_(impl) {
    nets::ModelSpec s;
    s.name = "resnet20";
    s.norm = norm;
    s.in_c = 3;
    s.in_h = s.in_w = 32;
    s.precision = impl == "int8" ? "int8" : "fp32";
    model_ = nets::make_model(s);
    params_ = nets::NodeMatrix(nodes, model_->num_params());
    grads_ = nets::NodeMatrix(nodes, model_->num_params());
    model_->init(params_, 1);
    input_.resize(nodes, batch, 3, 32, 32);
    std::mt19937_64 rng(5);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& v : input_.data) v = d(rng);
    labels_.resize(static_cast<size_t>(nodes) * batch);
    for (size_t i = 0; i < labels_.size(); ++i) labels_[i] = static_cast<int32_t>(i % 10);
  }
  void run(int) override {
    // The reference convolutions for "im2col" only; the process-wide choice is restored after.
    const kernels::ConvImpl before = kernels::conv_impl();
    kernels::set_conv_impl(impl_ == "im2col" ? kernels::ConvImpl::kReference
                                             : kernels::ConvImpl::kFast);
    if (nets::QuantContext* q = model_->quant()) q->iteration = iteration_++;
    const nets::LossStats st = model_->loss_and_grad(input_, labels_.data(), params_, grads_);
    kernels::set_conv_impl(before);
    loss_ = st.mean_loss();
  }
  std::string check() override {
    run(0);
    return std::isfinite(loss_) && loss_ > 0 ? "ok" : "FAIL: loss " + std::to_string(loss_);
  }

 private:
  std::string impl_;
  std::unique_ptr<nets::Model> model_;
  nets::NodeMatrix params_, grads_;
  nets::Tensor input_;
  std::vector<int32_t> labels_;
  uint64_t iteration_ = 0;
  double loss_ = 0;
};

// Forward and backward of a 2x2 max pooling over nodes x batch planes of c x h x w: the layer
// (impl "spush") or oneDNN's primitives (impl "onednn"). check() runs both on the same input
// and output gradient and compares y and dx exactly (N(0, 1) data: no ties).
class MaxPoolCase : public Instance {
 public:
  MaxPoolCase(const std::string& impl, int64_t nodes, int64_t batch, int64_t c, int64_t h,
              int64_t w)
      : pool_(2), none_(nodes, 0) {
    x_.resize(nodes, batch, c, h, w);
    dy_.resize(nodes, batch, pool_.output_shape(x_.shape3()));
    std::mt19937_64 rng(9);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& v : x_.data) v = d(rng);
    for (auto& v : dy_.data) v = d(rng);
    y_.resize_like(dy_);
    dx_.resize_like(x_);
    if (impl == "onednn")
      lib_ = std::make_unique<OnednnMaxPool>(nodes * batch, c, h, w, int64_t{2});
  }
  void run(int) override {
    if (lib_) {
      lib_->forward(x_.data.data(), y_.data.data());
      lib_->backward(dy_.data.data(), dx_.data.data());
      return;
    }
    pool_.forward(x_, y_, none_, true);
    pool_.backward(x_, y_, dy_, &dx_, none_, none_);
  }
  std::string check() override {
    if (!lib_) return "-";
    run(0);
    nets::Tensor y, dx;
    pool_.forward(x_, y, none_, true);
    pool_.backward(x_, y, dy_, &dx, none_, none_);
    if (y.data != y_.data) return "FAIL: y differs from nets::MaxPool2d";
    return dx.data == dx_.data ? "ok" : "FAIL: dx differs from nets::MaxPool2d";
  }

 private:
  nets::MaxPool2d pool_;
  nets::NodeMatrix none_;  // pooling has no parameters
  nets::Tensor x_, y_, dy_, dx_;
  std::unique_ptr<OnednnMaxPool> lib_;
};

}  // namespace

std::vector<Case> train_cases(const Options& opt) {
  std::vector<Case> cases;
  const int batch = 32;
  // Convolution operations of one ResNet-20 iteration per node (2 per multiply-add).
  double ops_per_node = 0;
  for (const ConvCase& c : resnet20_conv_shapes(batch)) {
    const double macs = static_cast<double>(c.shape.macs());
    // The first convolution computes no input gradient.
    const double passes = 3.0 * c.count - (c.name == "r20_conv1_c3" ? 1.0 : 0.0);
    ops_per_node += 2.0 * macs * passes;
  }
  for (int nodes : opt.quick ? std::vector<int>{4} : std::vector<int>{4, 16}) {
    for (const char* norm : {"group", "rangeevo"}) {
      std::vector<std::string> impls{"spush", "int8"};
      if (nodes == 4 && std::string(norm) == "group") impls.push_back("im2col");
      for (const std::string& impl : impls) {
        CaseInfo i;
        i.op = "train_iter";
        i.impl = impl;
        i.n = batch;
        i.rows = nodes;
        i.param = std::string("resnet20-") + norm;
        i.dist = "normal";
        i.ops = ops_per_node * nodes;
        i.iterations = impl == "im2col" ? 3 : 5;
        i.gpu = false;
        cases.push_back({i, [impl, norm = std::string(norm), nodes, batch](void*) {
                           return std::make_unique<TrainIteration>(impl, norm, nodes, batch);
                         }});
      }
    }
  }
  // LeNet-5's pooling layers (after conv1: 6 x 28 x 28, after conv2: 16 x 10 x 10).
  struct PoolShape {
    int64_t c, h;
    const char* name;
  };
  for (int nodes : opt.quick ? std::vector<int>{4} : std::vector<int>{4, 16}) {
    for (const PoolShape& p :
         {PoolShape{6, 28, "lenet_pool1_6x28"}, PoolShape{16, 10, "lenet_pool2_16x10"}}) {
      std::vector<std::string> impls{"spush"};
      if (onednn_pool_available()) impls.push_back("onednn");
      for (const std::string& impl : impls) {
        CaseInfo i;
        i.op = "maxpool";
        i.impl = impl;
        i.n = batch;
        i.rows = nodes;
        i.param = p.name;
        i.dist = "normal";
        // x and dy read, y and dx written (4 bytes each; the arg-max store not counted).
        const double x = static_cast<double>(nodes) * batch * p.c * p.h * p.h;
        i.bytes = 4.0 * 2.0 * (x + x / 4.0);
        i.iterations = 20;
        i.gpu = false;
        cases.push_back({i, [impl, nodes, batch, p](void*) {
                           return std::make_unique<MaxPoolCase>(impl, nodes, batch, p.c, p.h, p.h);
                         }});
      }
    }
  }
  return cases;
}

}  // namespace spush::bench

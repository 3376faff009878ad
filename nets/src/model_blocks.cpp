// Composite layers: Sequential (a chain that keeps its intermediate activations) and the ResNet
// BasicBlock (main path + shortcut, summed, optional ReLU). Their backward follows the layer
// contract: parameter gradients accumulate, the input gradient is overwritten.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "layers_internal.h"
#include "spush/nets/model.h"

namespace spush::nets {

// ---- Sequential -------------------------------------------------------------------------------

Sequential& Sequential::add(const std::string& name, std::unique_ptr<Layer> layer) {
  if (!layer) throw std::invalid_argument("Sequential::add: null layer '" + name + "'");
  if (name.empty()) throw std::invalid_argument("Sequential::add: empty layer name");
  layers_.push_back(std::move(layer));
  names_.push_back(name);
  return *this;
}

void Sequential::declare(Layout& layout, const std::string& name) {
  name_ = name;
  for (size_t i = 0; i < layers_.size(); ++i)
    layers_[i]->declare(layout, name.empty() ? names_[i] : name + "." + names_[i]);
}

int64_t Sequential::num_params() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l->num_params();
  return n;
}

Shape3 Sequential::output_shape(Shape3 in) const {
  for (size_t i = 0; i < layers_.size(); ++i) {
    try {
      in = layers_[i]->output_shape(in);
    } catch (const std::invalid_argument& e) {
      if (!layers_[i]->name().empty()) throw;  // declared layers name themselves
      throw std::invalid_argument("layer '" + names_[i] + "': " + e.what());
    }
  }
  return in;
}

void Sequential::init(float* row, std::mt19937_64& rng) const {
  for (const auto& l : layers_) l->init(row, rng);
}

void Sequential::set_nodes(int64_t nodes) {
  for (auto& l : layers_) l->set_nodes(nodes);
}

void Sequential::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  const size_t count = layers_.size();
  if (count == 0) {
    out.resize_like(in);
    std::copy(in.data.begin(), in.data.begin() + in.numel(), out.data.begin());
    return;
  }
  acts_.resize(count - 1);
  const Tensor* cur = &in;
  for (size_t i = 0; i < count; ++i) {
    Tensor& dst = i + 1 == count ? out : acts_[i];
    layers_[i]->forward(*cur, dst, params, train);
    cur = &dst;
  }
}

void Sequential::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                          const NodeMatrix& params, NodeMatrix& dparams) {
  const size_t count = layers_.size();
  if (count == 0) {
    if (dinp) {
      dinp->resize_like(dout);
      std::copy(dout.data.begin(), dout.data.begin() + dout.numel(), dinp->data.begin());
    }
    return;
  }
  if (acts_.size() + 1 != count)
    throw std::logic_error(detail::who(*this) + ": backward() before forward()");
  const Tensor* g = &dout;
  for (size_t i = count; i-- > 0;) {
    const Tensor& x = i == 0 ? in : acts_[i - 1];
    const Tensor& y = i + 1 == count ? out : acts_[i];
    Tensor* d = i == 0 ? dinp : &grad_[i % 2];
    layers_[i]->backward(x, y, *g, d, params, dparams);
    g = d;
  }
}

std::vector<BufferRef> Sequential::buffers() {
  std::vector<BufferRef> all;
  for (auto& l : layers_) {
    auto b = l->buffers();
    all.insert(all.end(), b.begin(), b.end());
  }
  return all;
}

std::vector<const Layer*> Sequential::children() const {
  std::vector<const Layer*> c;
  for (const auto& l : layers_) c.push_back(l.get());
  return c;
}

// ---- BasicBlock -------------------------------------------------------------------------------

BasicBlock::BasicBlock(std::unique_ptr<Sequential> main, std::unique_ptr<Sequential> shortcut,
                       bool relu_out)
    : main_(std::move(main)), shortcut_(std::move(shortcut)), relu_out_(relu_out) {
  if (!main_) throw std::invalid_argument("BasicBlock: null main path");
  if (!shortcut_) shortcut_ = std::make_unique<Sequential>();
}

void BasicBlock::declare(Layout& layout, const std::string& name) {
  name_ = name;
  main_->declare(layout, name);
  shortcut_->declare(layout, name + ".shortcut");
}

int64_t BasicBlock::num_params() const { return main_->num_params() + shortcut_->num_params(); }

Shape3 BasicBlock::output_shape(Shape3 in) const {
  const Shape3 a = main_->output_shape(in);
  const Shape3 b = shortcut_->output_shape(in);
  if (!(a == b))
    throw std::invalid_argument(detail::who(*this) + ": main path gives " + a.str() +
                                " but the shortcut gives " + b.str() + " for input " + in.str());
  return a;
}

void BasicBlock::init(float* row, std::mt19937_64& rng) const {
  main_->init(row, rng);
  shortcut_->init(row, rng);
}

void BasicBlock::set_nodes(int64_t nodes) {
  main_->set_nodes(nodes);
  shortcut_->set_nodes(nodes);
}

void BasicBlock::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  output_shape(in.shape3());
  main_->forward(in, main_out_, params, train);
  const Tensor* sc = &in;
  if (shortcut_->size() > 0) {
    shortcut_->forward(in, short_out_, params, train);
    sc = &short_out_;
  }
  out.resize_like(main_out_);
  const int64_t total = out.numel();
  const float* a = main_out_.data.data();
  const float* b = sc->data.data();
  float* y = out.data.data();
  if (relu_out_) {
#pragma omp parallel for schedule(static) if (total > (1 << 18))
    for (int64_t i = 0; i < total; ++i) y[i] = std::max(a[i] + b[i], 0.0f);
  } else {
#pragma omp parallel for schedule(static) if (total > (1 << 18))
    for (int64_t i = 0; i < total; ++i) y[i] = a[i] + b[i];
  }
}

void BasicBlock::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                          const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dout.same_shape(out))
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the forward output " + out.shape_str());
  const Tensor* dsum = &dout;
  if (relu_out_) {
    // out = relu(sum): the mask out > 0 equals sum > 0.
    dsum_.resize_like(dout);
    const int64_t total = dout.numel();
    const float* y = out.data.data();
    const float* dy = dout.data.data();
    float* ds = dsum_.data.data();
#pragma omp parallel for schedule(static) if (total > (1 << 18))
    for (int64_t i = 0; i < total; ++i) {
      const float g = dy[i];
      ds[i] = y[i] > 0.0f ? g : 0.0f;
    }
    dsum = &dsum_;
  }
  main_->backward(in, main_out_, *dsum, dinp, params, dparams);
  const Tensor* dshort = dsum;  // identity shortcut
  if (shortcut_->size() > 0) {
    shortcut_->backward(in, short_out_, *dsum, dinp ? &dshort_ : nullptr, params, dparams);
    dshort = &dshort_;
  }
  if (!dinp) return;
  const int64_t total = dinp->numel();
  float* dx = dinp->data.data();
  const float* ds = dshort->data.data();
#pragma omp parallel for schedule(static) if (total > (1 << 18))
  for (int64_t i = 0; i < total; ++i) dx[i] += ds[i];
}

std::vector<BufferRef> BasicBlock::buffers() {
  auto a = main_->buffers();
  auto b = shortcut_->buffers();
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<const Layer*> BasicBlock::children() const { return {main_.get(), shortcut_.get()}; }

}  // namespace spush::nets

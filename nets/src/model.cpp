// Model: a Sequential network with its own parameter Layout, node-identical initialization,
// forward/backward over all nodes, softmax cross-entropy helpers and a printable summary.
#include "spush/nets/model.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace spush::nets {

Model::Model(std::string name, Shape3 input, int64_t num_classes, std::unique_ptr<Sequential> net,
             std::shared_ptr<QuantContext> quant)
    : name_(std::move(name)),
      input_(input),
      classes_(num_classes),
      net_(std::move(net)),
      quant_(std::move(quant)) {
  if (!net_) throw std::invalid_argument("Model '" + name_ + "': null network");
  const Shape3 out = net_->output_shape(input_);
  if (!(out == Shape3{classes_, 1, 1}))
    throw std::invalid_argument("Model '" + name_ + "': network output " + out.str() +
                                " for input " + input_.str() + " is not " +
                                std::to_string(classes_) + "x1x1 logits");
  net_->declare(layout_, "");
  set_nodes(1);
}

void Model::set_nodes(int64_t nodes) {
  if (nodes < 1)
    throw std::invalid_argument("Model '" + name_ + "': node count must be >= 1, got " +
                                std::to_string(nodes));
  nodes_ = nodes;
  net_->set_nodes(nodes);
}

void Model::check_params(const NodeMatrix& params, const char* what) const {
  if (params.cols() != layout_.size() || params.rows() < 1)
    throw std::invalid_argument(
        "Model '" + name_ + "': " + what + " matrix is " + std::to_string(params.rows()) + "x" +
        std::to_string(params.cols()) + ", expected nodes x " + std::to_string(layout_.size()));
}

void Model::init(NodeMatrix& params, uint64_t seed) {
  check_params(params, "parameter");
  std::mt19937_64 rng(seed);
  std::fill(params.row(0), params.row(0) + params.cols(), 0.0f);
  net_->init(params.row(0), rng);
  for (int64_t r = 1; r < params.rows(); ++r)
    std::memcpy(params.row(r), params.row(0), sizeof(float) * params.cols());
  set_nodes(params.rows());
}

const Tensor& Model::forward(const Tensor& input, const NodeMatrix& params, bool train) {
  check_params(params, "parameter");
  if (!(input.shape3() == input_))
    throw std::invalid_argument("Model '" + name_ + "': input " + input.shape_str() +
                                " does not have the per-sample shape " + input_.str());
  if (input.nodes != params.rows())
    throw std::invalid_argument("Model '" + name_ + "': input has " + std::to_string(input.nodes) +
                                " nodes, parameters have " + std::to_string(params.rows()) +
                                " rows");
  net_->forward(input, logits_, params, train);
  last_input_ = &input;
  return logits_;
}

void Model::backward(const Tensor& dlogits, const NodeMatrix& params, NodeMatrix& grads) {
  check_params(params, "parameter");
  check_params(grads, "gradient");
  if (!last_input_) throw std::logic_error("Model '" + name_ + "': backward() before forward()");
  if (!dlogits.same_shape(logits_) || grads.rows() != params.rows())
    throw std::invalid_argument("Model '" + name_ + "': dlogits " + dlogits.shape_str() +
                                " or gradient rows do not match the last forward " +
                                logits_.shape_str());
  grads.fill(0.0f);
  net_->backward(*last_input_, logits_, dlogits, nullptr, params, grads);
}

LossStats Model::loss_and_grad(const Tensor& input, const int32_t* labels, const NodeMatrix& params,
                               NodeMatrix& grads) {
  forward(input, params, true);
  LossStats st = loss_.forward_backward(logits_, labels, &dlogits_);
  backward(dlogits_, params, grads);
  return st;
}

LossStats Model::evaluate(const Tensor& input, const int32_t* labels, const NodeMatrix& params) {
  forward(input, params, false);
  return loss_.forward_backward(logits_, labels, nullptr);
}

std::vector<int32_t> Model::predict(const Tensor& input, const NodeMatrix& params) {
  forward(input, params, false);
  return SoftmaxCrossEntropy::argmax(logits_);
}

namespace {

void summarize(const Layer& l, Shape3 in, int depth, std::ostringstream& os);

// The children of a Sequential, each with the shape its predecessor produced.
void summarize_chain(const Layer& seq, Shape3 in, int depth, std::ostringstream& os) {
  for (const Layer* k : seq.children()) {
    summarize(*k, in, depth, os);
    in = k->output_shape(in);
  }
}

void summarize(const Layer& l, Shape3 in, int depth, std::ostringstream& os) {
  if (l.type() == "Sequential") {
    summarize_chain(l, in, depth, os);
    return;
  }
  const Shape3 out = l.output_shape(in);
  std::string label = std::string(2 * depth, ' ') + (l.name().empty() ? "-" : l.name());
  if (label.size() < 28) label.resize(28, ' ');
  std::string what = l.describe();
  if (what.size() < 44) what.resize(44, ' ');
  const std::string shape = out.str();
  os << label << " " << what << " " << shape
     << std::string(std::max<int>(1, 14 - static_cast<int>(shape.size())), ' ') << l.num_params()
     << "\n";
  // Composite layers (BasicBlock): every child path starts from the block's input.
  for (const Layer* k : l.children()) summarize(*k, in, depth + 1, os);
}

}  // namespace

std::string Model::summary() const {
  std::ostringstream os;
  os << "model " << name_ << ", input " << input_.str() << ", " << classes_ << " classes\n";
  summarize_chain(*net_, input_, 0, os);
  os << "total parameters: " << num_params() << "\n";
  return os.str();
}

}  // namespace spush::nets

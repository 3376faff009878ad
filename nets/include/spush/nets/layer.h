// The layer interface: explicit forward/backward over node-batched tensors (no autograd).
// A layer's parameters are views into the rows of a NodeMatrix (one row per node) at the
// offsets of the segments it declared in the Layout; its weight gradients go to the same
// offsets of a gradient NodeMatrix. The CPU path loops over nodes (OpenMP over nodes and
// samples); a GPU path batches them (grouped convolution, batched GEMM) behind the same calls.
//
// Life cycle: declare(layout, name) once -> set_nodes(n) -> init(row, rng) for each fresh row
// -> forward(in, out, params, train) -> backward(in, out, dout, dinp, params, dparams).
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "spush/nets/layout.h"
#include "spush/nets/tensor.h"

namespace spush::nets {

// A named per-node state buffer (e.g. BatchNorm running statistics): `data` holds
// nodes * per_node floats, node-major. Checkpoints save and restore the vector's contents.
struct BufferRef {
  std::string name;
  std::vector<float>* data;
  int64_t per_node;
};

class Layer {
 public:
  virtual ~Layer() = default;
  // Short type name ("Conv2d", "BatchNorm2d", ...).
  virtual std::string type() const = 0;
  // One-line description of the hyper-parameters, for model summaries.
  virtual std::string describe() const { return type(); }

  // Registers the layer's parameter segments as "<name>.<tensor>" (called once). Remembers the
  // offsets. Parameter-free layers only remember the name.
  virtual void declare(Layout& layout, const std::string& name) { name_ = name; }
  const std::string& name() const { return name_; }
  // Number of parameters (floats) this layer declares.
  virtual int64_t num_params() const { return 0; }

  // Output per-sample shape for an input shape; throws std::invalid_argument when the input
  // does not fit (wrong channel count, spatial size too small).
  virtual Shape3 output_shape(Shape3 in) const = 0;

  // Writes the layer's initial parameters into one parameter row (the layer's usual scheme:
  // He-normal for convolutions, PyTorch's uniform for linear layers, 1/0 for norm affines).
  virtual void init(float* row, std::mt19937_64& rng) const {}

  // Sizes the per-node state buffers for `nodes` nodes and resets them to their initial value.
  virtual void set_nodes(int64_t nodes) {}

  // out = f(in) for every node n with the parameters in params.row(n). Sizes `out`. Saves what
  // backward needs (so one layer object serves one forward/backward pair at a time). `train`
  // selects batch statistics and updates running statistics (BatchNorm).
  virtual void forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) = 0;

  // Given dout = dL/dout for the in/out of the last forward: ACCUMULATES (+=) dL/dparams into
  // the layer's segments of dparams, and OVERWRITES *dinp with dL/din (sized by the layer).
  // dinp == nullptr skips the input gradient (first layer of a model).
  virtual void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                        const NodeMatrix& params, NodeMatrix& dparams) = 0;

  // Per-node non-parameter state, named "<name>.<buffer>" (checkpointing, evaluation).
  virtual std::vector<BufferRef> buffers() { return {}; }

  // Layers nested inside a composite layer, for summaries (empty for plain layers).
  virtual std::vector<const Layer*> children() const { return {}; }

 protected:
  std::string name_;
};

}  // namespace spush::nets

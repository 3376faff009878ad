// Helpers shared by the CPU layer implementations (private to spush_nets): argument checks,
// the (node, sample-group) task split used for OpenMP, and per-task weight-gradient partials.
//
// Threading: layers parallelize with OpenMP over tasks = nodes x groups, where each node's
// batch is split into groups = ceil(threads / nodes) contiguous sample ranges, and call
// single-threaded OpenBLAS inside the tasks (the first Conv2d/Linear sets OpenBLAS to one thread:
// nested BLAS threads would oversubscribe the cores). With groups == 1 weight gradients
// accumulate straight into the gradient row; otherwise each task fills a partial that is summed
// in task order afterwards, so results depend on the thread count only when nodes < threads.
// Loops with little work (< ~4M multiply-adds for GEMM layers, < 256K elements elsewhere) run on
// one thread: a parallel region costs more than it saves there, most of all on a busy machine.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spush/nets/layer.h"

namespace spush::nets::detail {

// Sets OpenBLAS to one thread (once per process).
void blas_single_thread();

inline int max_threads() { return std::max(1, omp_get_max_threads()); }

// "<Type> '<name>'" (or "<Type>" before declare()) for error messages.
inline std::string who(const Layer& l) {
  return l.name().empty() ? l.type() : l.type() + " '" + l.name() + "'";
}

// Input is [nodes, batch, c, h, w] with output_shape() accepting it, nodes == params.rows().
void check_input(const Layer& l, const Tensor& in, const NodeMatrix& params);
// Layer was declared (offset >= 0) and the parameter matrix holds its segments.
void check_declared(const Layer& l, int64_t offset, const NodeMatrix& params);
// dout has the shape of out, out is what `in` produces, dparams has the shape of params.
void check_backward(const Layer& l, const Tensor& in, const Tensor& out, const Tensor& dout,
                    const NodeMatrix& params, const NodeMatrix& dparams);

// Work items of a node-batched layer: each node's minibatch cut into `groups` sample ranges.
// The cut depends on the batch size alone (one range per kSplitSamples samples), never on the
// thread count or on how many nodes share the process: a node's weight gradient (summed over
// its ranges in a fixed order) is then the same bits in a single process and under mpirun with
// any number of ranks and threads.
inline constexpr int64_t kSplitSamples = 64;

struct NodeSplit {
  int64_t nodes = 0, batch = 0, groups = 1;
  int64_t tasks() const { return nodes * groups; }
  int64_t node(int64_t task) const { return task / groups; }
  // Sample range [first, second) of a task.
  std::pair<int64_t, int64_t> range(int64_t task) const {
    const int64_t g = task % groups;
    return {batch * g / groups, batch * (g + 1) / groups};
  }
};

inline NodeSplit split_nodes(int64_t nodes, int64_t batch) {
  NodeSplit s{nodes, batch, 1};
  if (nodes > 0 && batch > 0) s.groups = (batch + kSplitSamples - 1) / kSplitSamples;
  return s;
}

// Weight-gradient targets for the tasks of a NodeSplit over one layer's contiguous parameter
// range [offset, offset + size) of each row.
class GradPartials {
 public:
  void prepare(const NodeSplit& split, int64_t size) {
    split_ = split;
    size_ = size;
    if (split.groups > 1) buf_.assign(static_cast<size_t>(split.tasks() * size), 0.0f);
  }
  float* target(int64_t task, NodeMatrix& dparams, int64_t offset) {
    if (split_.groups == 1) return dparams.row(split_.node(task)) + offset;
    return buf_.data() + task * size_;
  }
  // Adds the partials to dparams (no-op when the tasks wrote to dparams directly).
  void reduce(NodeMatrix& dparams, int64_t offset) {
    if (split_.groups == 1) return;
    for (int64_t n = 0; n < split_.nodes; ++n) {
      float* dst = dparams.row(n) + offset;
      for (int64_t g = 0; g < split_.groups; ++g) {
        const float* src = buf_.data() + (n * split_.groups + g) * size_;
        for (int64_t i = 0; i < size_; ++i) dst[i] += src[i];
      }
    }
  }

 private:
  NodeSplit split_;
  int64_t size_ = 0;
  std::vector<float> buf_;
};

// Fills n floats from N(0, std^2) / U(-bound, bound).
void fill_normal(float* x, int64_t n, float std, std::mt19937_64& rng);
void fill_uniform(float* x, int64_t n, float bound, std::mt19937_64& rng);

}  // namespace spush::nets::detail

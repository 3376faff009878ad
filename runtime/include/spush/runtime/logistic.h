// A convex test problem for the gossip algorithms: L2-regularized BINARY logistic regression
// on generated data, split across nodes (IID or label-skewed, docs/ALGORITHMS.md §7).
//
// Data (seeded): features a_j ~ feature_scale * N(0, I_d), a planted separator w ~ N(0, I_d),
// label y_j = sign(w.a_j) in {-1, +1} (class 0 <-> -1, class 1 <-> +1), flipped with
// probability `label_noise`. No bias term.
// Objective over the N samples the partition assigns to nodes (S_i: node i's samples):
//   f(x)   = (1/N) sum_j log(1 + exp(-y_j a_j.x)) + lambda/2 ||x||^2
//   f_i(x) = (n/N) sum_{j in S_i} log(1 + exp(-y_j a_j.x)) + lambda/2 ||x||^2,
// so (1/n) sum_i f_i = f exactly (f_i is node i's local mean loss when all |S_i| are equal).
// x* and f* = f(x*) are found in double by Newton-CG until ||grad f(x*)|| < 1e-10.
// Relative objective gap of the averaged model x_bar = (1/n) sum_i z_i from the common start
// x0:  gap = (f(x_bar) - f*) / (f(x0) - f*).
//
//   LogisticProblem prob({.nodes = 4, .dim = 256, .segments = 4, .skew = 0.8});
//   prob.gradient(i, z.row(i), g.row(i));                // float, full batch of node i
//   double gap = prob.relative_gap(average_rows(z).data(), x0.data());
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "spush/nets/layout.h"

namespace spush::runtime {

struct LogisticSpec {
  int nodes = 4;
  int64_t dim = 256;               // d, number of weights
  int segments = 4;                // layout segments ("layers") the weights are cut into
  int64_t samples_per_node = 512;  // N_total = nodes * samples_per_node are generated
  double skew = 0;                 // label skew s in [0, 1] (0: IID), partition_skew
  double lambda = 1e-2;            // L2 regularization
  double label_noise = 0.05;       // probability of flipping a label, in [0, 0.5)
  double feature_scale = 1.0;      // standard deviation of a feature (sets the curvature)
  uint64_t seed = 1;               // data, separator and partition
};

// Throws std::invalid_argument naming the field and the accepted range.
void validate(const LogisticSpec& spec);

class LogisticProblem {
 public:
  // Generates the data, partitions it and solves for x* (Newton-CG in double).
  explicit LogisticProblem(const LogisticSpec& spec);

  const LogisticSpec& spec() const { return spec_; }
  int nodes() const { return spec_.nodes; }
  int64_t dim() const { return spec_.dim; }
  // `segments` near-equal segments "seg0", "seg1", ... (the first d % segments one longer).
  const nets::Layout& layout() const { return layout_; }
  int64_t total_samples() const { return static_cast<int64_t>(labels_.size()); }
  // Global sample ids (rows of features()) of node i, as the partition assigned them.
  const std::vector<int64_t>& node_samples(int node) const { return node_samples_.at(node); }
  // Fraction of node i's samples with label +1.
  double positive_fraction(int node) const;
  // Assigned samples' features [N x d] row-major and labels (+-1), in the order of node 0's
  // samples, then node 1's, ...
  const std::vector<float>& features() const { return features_; }
  const std::vector<float>& labels() const { return labels_; }

  // Full-batch gradient of f_i at x (float, [d]) into g ([d]).
  void gradient(int node, const float* x, float* g) const;
  // Unbiased minibatch estimate of grad f_i: (n/N) |S_i| / |B| sum_{j in B} grad l_j + lambda x,
  // batch: positions in [0, |S_i|) into node_samples(node) (repeats allowed).
  void minibatch_gradient(int node, const float* x, float* g, std::span<const int64_t> batch) const;
  // Row r of g = gradient of f_{first_node + r} at row r of z (all rows of z).
  void gradients(const nets::NodeMatrix& z, nets::NodeMatrix& g, int first_node = 0) const;

  // f and grad f in double.
  double objective(const double* x) const;
  double objective(const float* x) const;
  void full_gradient(const double* x, double* g) const;
  // Local objective f_i in double.
  double local_objective(int node, const double* x) const;

  const std::vector<double>& optimum() const { return x_star_; }
  double optimum_value() const { return f_star_; }
  double optimum_gradient_norm() const { return x_star_grad_norm_; }
  int newton_iterations() const { return newton_iterations_; }
  // (f(x) - f*) / (f(x0) - f*); x, x0: [d]. Throws if f(x0) - f* <= 0 (x0 is optimal).
  double relative_gap(const float* x, const float* x0) const;

 private:
  void solve_optimum();
  // Hessian-vector product of f at the logits' curvature weights w_j = s_j (1 - s_j).
  void hessian_vector(const std::vector<double>& curv, const double* v, double* hv) const;

  LogisticSpec spec_;
  nets::Layout layout_;
  std::vector<float> features_;  // [N x d]
  std::vector<float> labels_;    // [N], +-1
  std::vector<std::vector<int64_t>> node_samples_;
  std::vector<double> x_star_;
  double f_star_ = 0;
  double x_star_grad_norm_ = 0;
  int newton_iterations_ = 0;
};

// Draws minibatches for one node: epochs of a seeded permutation of [0, count), consumed
// `batch` positions at a time (an epoch's tail is joined with the next epoch's head).
class MinibatchSampler {
 public:
  MinibatchSampler(int64_t count, int64_t batch, uint64_t seed);
  // The next `batch` positions in [0, count).
  std::span<const int64_t> next();

 private:
  void reshuffle();
  int64_t count_, batch_;
  uint64_t seed_, epoch_ = 0;
  int64_t cursor_ = 0;
  std::vector<int64_t> perm_, out_;
};

// `segments` near-equal segments "seg0", "seg1", ... of a d-vector (the first d % segments one
// longer). Throws std::invalid_argument unless 1 <= segments <= d.
nets::Layout make_segment_layout(int64_t d, int segments);

// Mean of the rows of z: [d].
std::vector<float> average_rows(const nets::NodeMatrix& z);
// Consensus distance (1/n) sum_i ||z_i - z_bar||^2 (docs/ALGORITHMS.md §9), in double.
double consensus_distance(const nets::NodeMatrix& z);

}  // namespace spush::runtime

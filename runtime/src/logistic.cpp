// L2-regularized binary logistic regression on generated, partitioned data: float gradients
// per node for the gossip algorithms, and the centralized optimum in double (Newton-CG with an
// Armijo line search) for the relative objective gap. See logistic.h for the definitions.
// Random numbers come from Philox (kernels/philox.h) so the data are identical on every
// platform; Gaussians by Box-Muller.
#include "spush/runtime/logistic.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <stdexcept>

#include "spush/kernels/philox.h"
#include "spush/nets/partition.h"

namespace spush::runtime {
namespace {

// Philox streams (the `node` word of the counter) of the generator.
constexpr uint32_t kStreamFeatures = 1;
constexpr uint32_t kStreamSeparator = 2;
constexpr uint32_t kStreamNoise = 3;

double gaussian(uint64_t seed, uint32_t stream, uint64_t index) {
  const double u1 = 1.0 - kernels::philox_uniform(seed, stream, 0, 2 * index);  // (0, 1]
  const double u2 = kernels::philox_uniform(seed, stream, 0, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// sigma(t) = 1 / (1 + exp(-t)), without overflow.
template <typename T>
T sigmoid(T t) {
  if (t >= 0) return T(1) / (T(1) + std::exp(-t));
  const T e = std::exp(t);
  return e / (T(1) + e);
}

// log(1 + exp(-m)), without overflow.
double logistic_loss(double m) { return std::max(-m, 0.0) + std::log1p(std::exp(-std::abs(m))); }

double dot(const float* a, const double* x, int64_t d) {
  double s = 0;
  for (int64_t k = 0; k < d; ++k) s += static_cast<double>(a[k]) * x[k];
  return s;
}

double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double a : v) s += a * a;
  return std::sqrt(s);
}

}  // namespace

void validate(const LogisticSpec& s) {
  auto bad = [](const std::string& what) {
    return std::invalid_argument("logistic problem: " + what);
  };
  if (s.nodes < 1) throw bad(fmt::format("nodes must be >= 1, got {}", s.nodes));
  if (s.dim < 1) throw bad(fmt::format("dim must be >= 1, got {}", s.dim));
  if (s.segments < 1 || s.segments > s.dim)
    throw bad(fmt::format("segments must be in [1, dim = {}], got {}", s.dim, s.segments));
  if (s.samples_per_node < 1)
    throw bad(fmt::format("samples per node must be >= 1, got {}", s.samples_per_node));
  if (!(s.skew >= 0 && s.skew <= 1))
    throw bad(fmt::format("skew must be in [0, 1], got {}", s.skew));
  if (!(s.lambda > 0 && std::isfinite(s.lambda)))
    throw bad(fmt::format("lambda must be > 0 (strong convexity), got {}", s.lambda));
  if (!(s.label_noise >= 0 && s.label_noise < 0.5))
    throw bad(fmt::format("label noise must be in [0, 0.5), got {}", s.label_noise));
  if (!(s.feature_scale > 0 && std::isfinite(s.feature_scale)))
    throw bad(fmt::format("feature scale must be > 0, got {}", s.feature_scale));
}

LogisticProblem::LogisticProblem(const LogisticSpec& spec) : spec_(spec) {
  validate(spec_);
  const int64_t d = spec_.dim;
  layout_ = make_segment_layout(d, spec_.segments);

  // Planted separator and the generated samples.
  const int64_t n_gen = static_cast<int64_t>(spec_.nodes) * spec_.samples_per_node;
  std::vector<double> w(d);
  for (int64_t k = 0; k < d; ++k) w[k] = gaussian(spec_.seed, kStreamSeparator, k);
  std::vector<float> gen_features(n_gen * d);
  std::vector<int32_t> gen_class(n_gen);
  for (int64_t j = 0; j < n_gen; ++j) {
    float* a = gen_features.data() + j * d;
    for (int64_t k = 0; k < d; ++k)
      a[k] = static_cast<float>(spec_.feature_scale *
                                gaussian(spec_.seed, kStreamFeatures, j * d + k));
    int cls = dot(a, w.data(), d) >= 0 ? 1 : 0;
    if (kernels::philox_uniform(spec_.seed, kStreamNoise, 0, j) < spec_.label_noise) cls = 1 - cls;
    gen_class[j] = cls;
  }

  // Partition (skew 0 is IID), then store the assigned samples node by node.
  const auto parts = nets::partition_skew(gen_class, 2, spec_.nodes, spec_.skew, spec_.seed);
  if (static_cast<int>(parts.size()) != spec_.nodes)
    throw std::logic_error(fmt::format("logistic problem: partition returned {} parts for {} nodes",
                                       parts.size(), spec_.nodes));
  node_samples_.resize(spec_.nodes);
  for (int i = 0; i < spec_.nodes; ++i) {
    if (parts[i].empty())
      throw std::invalid_argument(fmt::format(
          "logistic problem: node {} received no samples (samples per node {} too small for {} "
          "nodes at skew {})",
          i, spec_.samples_per_node, spec_.nodes, spec_.skew));
    for (const auto id : parts[i]) {
      const int64_t src = static_cast<int64_t>(id);
      node_samples_[i].push_back(static_cast<int64_t>(labels_.size()));
      features_.insert(features_.end(), gen_features.begin() + src * d,
                       gen_features.begin() + (src + 1) * d);
      labels_.push_back(gen_class[src] == 1 ? 1.0f : -1.0f);
    }
  }
  solve_optimum();
}

double LogisticProblem::positive_fraction(int node) const {
  const auto& ids = node_samples_.at(node);
  int64_t pos = 0;
  for (int64_t j : ids) pos += labels_[j] > 0;
  return static_cast<double>(pos) / static_cast<double>(ids.size());
}

void LogisticProblem::gradient(int node, const float* x, float* g) const {
  const auto& ids = node_samples_.at(node);
  const int64_t d = spec_.dim;
  const float scale =
      static_cast<float>(static_cast<double>(spec_.nodes) / static_cast<double>(total_samples()));
  const float lambda = static_cast<float>(spec_.lambda);
  for (int64_t k = 0; k < d; ++k) g[k] = lambda * x[k];
  for (int64_t j : ids) {
    const float* a = features_.data() + j * d;
    float logit = 0;
#pragma omp simd reduction(+ : logit)
    for (int64_t k = 0; k < d; ++k) logit += a[k] * x[k];
    const float y = labels_[j];
    const float c = -y * sigmoid(-y * logit) * scale;
#pragma omp simd
    for (int64_t k = 0; k < d; ++k) g[k] += c * a[k];
  }
}

void LogisticProblem::minibatch_gradient(int node, const float* x, float* g,
                                         std::span<const int64_t> batch) const {
  const auto& ids = node_samples_.at(node);
  if (batch.empty()) throw std::invalid_argument("logistic minibatch gradient: empty batch");
  const int64_t d = spec_.dim;
  const double local = static_cast<double>(ids.size());
  const float scale = static_cast<float>(static_cast<double>(spec_.nodes) * local /
                                         (static_cast<double>(total_samples()) * batch.size()));
  const float lambda = static_cast<float>(spec_.lambda);
  for (int64_t k = 0; k < d; ++k) g[k] = lambda * x[k];
  for (int64_t pos : batch) {
    if (pos < 0 || pos >= static_cast<int64_t>(ids.size()))
      throw std::out_of_range(
          fmt::format("logistic minibatch gradient: position {} outside [0, {}) for node {}", pos,
                      ids.size(), node));
    const float* a = features_.data() + ids[pos] * d;
    float logit = 0;
#pragma omp simd reduction(+ : logit)
    for (int64_t k = 0; k < d; ++k) logit += a[k] * x[k];
    const float y = labels_[ids[pos]];
    const float c = -y * sigmoid(-y * logit) * scale;
#pragma omp simd
    for (int64_t k = 0; k < d; ++k) g[k] += c * a[k];
  }
}

void LogisticProblem::gradients(const nets::NodeMatrix& z, nets::NodeMatrix& g,
                                int first_node) const {
  if (z.cols() != spec_.dim || g.cols() != spec_.dim || g.rows() != z.rows())
    throw std::invalid_argument(
        fmt::format("logistic gradients: z is {}x{}, g is {}x{}, expected both rows x {}", z.rows(),
                    z.cols(), g.rows(), g.cols(), spec_.dim));
  if (first_node < 0 || first_node + z.rows() > spec_.nodes)
    throw std::invalid_argument(fmt::format("logistic gradients: rows {}..{} outside the {} nodes",
                                            first_node, first_node + z.rows() - 1, spec_.nodes));
  const int64_t rows = z.rows();
  // Threads only for large problems: a parallel region per iteration costs more than it saves
  // below ~16M multiply-adds, and badly so on a loaded machine.
#pragma omp parallel for schedule(static) if (rows > 1 && total_samples() * spec_.dim >= (1 << 24))
  for (int64_t r = 0; r < rows; ++r) gradient(static_cast<int>(first_node + r), z.row(r), g.row(r));
}

double LogisticProblem::objective(const double* x) const {
  const int64_t d = spec_.dim, n = total_samples();
  double loss = 0;
  for (int64_t j = 0; j < n; ++j) loss += logistic_loss(labels_[j] * dot(&features_[j * d], x, d));
  double sq = 0;
  for (int64_t k = 0; k < d; ++k) sq += x[k] * x[k];
  return loss / static_cast<double>(n) + 0.5 * spec_.lambda * sq;
}

double LogisticProblem::objective(const float* x) const {
  const std::vector<double> xd(x, x + spec_.dim);
  return objective(xd.data());
}

double LogisticProblem::local_objective(int node, const double* x) const {
  const int64_t d = spec_.dim;
  double loss = 0;
  for (int64_t j : node_samples_.at(node))
    loss += logistic_loss(labels_[j] * dot(&features_[j * d], x, d));
  double sq = 0;
  for (int64_t k = 0; k < d; ++k) sq += x[k] * x[k];
  return loss * spec_.nodes / static_cast<double>(total_samples()) + 0.5 * spec_.lambda * sq;
}

void LogisticProblem::full_gradient(const double* x, double* g) const {
  const int64_t d = spec_.dim, n = total_samples();
  for (int64_t k = 0; k < d; ++k) g[k] = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float* a = &features_[j * d];
    const double y = labels_[j];
    const double c = -y * sigmoid(-y * dot(a, x, d));
    for (int64_t k = 0; k < d; ++k) g[k] += c * a[k];
  }
  for (int64_t k = 0; k < d; ++k) g[k] = g[k] / static_cast<double>(n) + spec_.lambda * x[k];
}

void LogisticProblem::hessian_vector(const std::vector<double>& curv, const double* v,
                                     double* hv) const {
  const int64_t d = spec_.dim, n = total_samples();
  for (int64_t k = 0; k < d; ++k) hv[k] = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float* a = &features_[j * d];
    const double c = curv[j] * dot(a, v, d);
    for (int64_t k = 0; k < d; ++k) hv[k] += c * a[k];
  }
  for (int64_t k = 0; k < d; ++k) hv[k] = hv[k] / static_cast<double>(n) + spec_.lambda * v[k];
}

void LogisticProblem::solve_optimum() {
  constexpr double kTolerance = 1e-10;
  constexpr int kMaxNewton = 100;
  const int64_t d = spec_.dim, n = total_samples();
  std::vector<double> x(d, 0.0), g(d), p(d), r(d), q(d), hq(d), xt(d), curv(n);
  double f = objective(x.data());
  full_gradient(x.data(), g.data());
  double gnorm = norm2(g);
  int it = 0;
  for (; it < kMaxNewton && gnorm >= kTolerance; ++it) {
    // Curvature weights s (1 - s) of the logistic losses at x.
    for (int64_t j = 0; j < n; ++j) {
      const double s = sigmoid(labels_[j] * dot(&features_[j * d], x.data(), d));
      curv[j] = s * (1 - s);
    }
    // CG on H p = -g, relative tolerance min(0.5, sqrt(|g|)) (superlinear Newton-CG) but
    // never looser than needed for the final 1e-10.
    const double forcing = std::min(0.5, std::sqrt(gnorm));
    const double cg_tol = std::max(forcing * gnorm, 1e-3 * kTolerance);
    std::fill(p.begin(), p.end(), 0.0);
    for (int64_t k = 0; k < d; ++k) r[k] = -g[k];
    q = r;
    double rr = 0;
    for (double a : r) rr += a * a;
    for (int64_t cg = 0; cg < 4 * d + 50 && std::sqrt(rr) > cg_tol; ++cg) {
      hessian_vector(curv, q.data(), hq.data());
      double qhq = 0;
      for (int64_t k = 0; k < d; ++k) qhq += q[k] * hq[k];
      if (qhq <= 0) break;
      const double alpha = rr / qhq;
      double rr_new = 0;
      for (int64_t k = 0; k < d; ++k) {
        p[k] += alpha * q[k];
        r[k] -= alpha * hq[k];
        rr_new += r[k] * r[k];
      }
      const double beta = rr_new / rr;
      rr = rr_new;
      for (int64_t k = 0; k < d; ++k) q[k] = r[k] + beta * q[k];
    }
    // Armijo backtracking on f along p (a descent direction: p = CG iterate from 0), with a
    // strict decrease. Once the predicted decrease is below the rounding of f (|slope| <
    // 1e-12 |f|), f cannot rank the points: take the full Newton step if it lowers the
    // gradient norm (quadratic convergence near x*), else stop.
    double slope = 0;
    for (int64_t k = 0; k < d; ++k) slope += g[k] * p[k];
    if (!(slope < 0)) break;  // no descent possible at this precision
    bool accepted = false;
    double ft = f;
    if (-slope > 1e-12 * std::abs(f)) {
      double step = 1.0;
      for (int ls = 0; ls < 60 && !accepted; ++ls, step *= 0.5) {
        for (int64_t k = 0; k < d; ++k) xt[k] = x[k] + step * p[k];
        ft = objective(xt.data());
        accepted = ft < f && ft <= f + 1e-4 * step * slope;
      }
    }
    if (!accepted) {
      for (int64_t k = 0; k < d; ++k) xt[k] = x[k] + p[k];
      std::vector<double> gt(d);
      full_gradient(xt.data(), gt.data());
      if (norm2(gt) >= gnorm) break;
      ft = objective(xt.data());
    }
    x.swap(xt);
    f = ft;
    full_gradient(x.data(), g.data());
    gnorm = norm2(g);
  }
  if (!(gnorm < kTolerance))
    throw std::runtime_error(fmt::format(
        "logistic problem: Newton-CG stopped after {} iterations at gradient norm {:.3e} "
        "(expected < {:.0e}); d = {}, N = {}, lambda = {}",
        it, gnorm, kTolerance, d, n, spec_.lambda));
  x_star_ = std::move(x);
  f_star_ = f;
  x_star_grad_norm_ = gnorm;
  newton_iterations_ = it;
}

double LogisticProblem::relative_gap(const float* x, const float* x0) const {
  const double f0 = objective(x0) - f_star_;
  if (!(f0 > 0))
    throw std::invalid_argument(fmt::format(
        "logistic relative gap: the start x0 is already optimal (f(x0) - f* = {:.3e}); the gap "
        "is undefined",
        f0));
  return (objective(x) - f_star_) / f0;
}

MinibatchSampler::MinibatchSampler(int64_t count, int64_t batch, uint64_t seed)
    : count_(count), batch_(batch), seed_(seed) {
  if (count < 1) throw std::invalid_argument(fmt::format("minibatch sampler: count {} < 1", count));
  if (batch < 1) throw std::invalid_argument(fmt::format("minibatch sampler: batch {} < 1", batch));
  perm_.resize(count);
  out_.resize(batch);
  reshuffle();
}

void MinibatchSampler::reshuffle() {
  std::mt19937_64 rng(nets::mix_seed({seed_, epoch_}));
  for (int64_t i = 0; i < count_; ++i) perm_[i] = i;
  nets::fisher_yates(perm_, rng);
  ++epoch_;
  cursor_ = 0;
}

std::span<const int64_t> MinibatchSampler::next() {
  for (int64_t b = 0; b < batch_; ++b) {
    if (cursor_ == count_) reshuffle();
    out_[b] = perm_[cursor_++];
  }
  return out_;
}

nets::Layout make_segment_layout(int64_t d, int segments) {
  if (d < 1 || segments < 1 || segments > d)
    throw std::invalid_argument(fmt::format(
        "segment layout: segments must be in [1, d = {}] with d >= 1, got {}", d, segments));
  nets::Layout layout;
  for (int s = 0; s < segments; ++s) {
    const int64_t len = d / segments + (s < d % segments ? 1 : 0);
    layout.add(fmt::format("seg{}", s), {len});
  }
  return layout;
}

std::vector<float> average_rows(const nets::NodeMatrix& z) {
  const int64_t d = z.cols();
  std::vector<double> acc(d, 0.0);
  for (int64_t r = 0; r < z.rows(); ++r)
    for (int64_t k = 0; k < d; ++k) acc[k] += z.row(r)[k];
  std::vector<float> out(d);
  for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>(acc[k] / z.rows());
  return out;
}

double consensus_distance(const nets::NodeMatrix& z) {
  const int64_t d = z.cols();
  std::vector<double> mean(d, 0.0);
  for (int64_t r = 0; r < z.rows(); ++r)
    for (int64_t k = 0; k < d; ++k) mean[k] += z.row(r)[k];
  for (double& m : mean) m /= static_cast<double>(z.rows());
  double s = 0;
  for (int64_t r = 0; r < z.rows(); ++r)
    for (int64_t k = 0; k < d; ++k) {
      const double e = z.row(r)[k] - mean[k];
      s += e * e;
    }
  return s / static_cast<double>(z.rows());
}

}  // namespace spush::runtime

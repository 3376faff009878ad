// Normalization layers on the CPU (statistics accumulated in double):
//   BatchNorm2d: per (node, channel) over (batch, h, w); train uses batch statistics and updates
//                running_mean/var (momentum m: r = (1-m) r + m stat, unbiased variance), eval
//                uses the running statistics.
//   GroupNorm:   per (node, sample, group of C/G adjacent channels), affine per channel.
//   EvoNormS0:   y = x * sigmoid(v x) * rstd_group * gamma + beta, rstd = 1/sqrt(Var + eps);
//                forward keeps sigmoid(v x) (one activation-sized buffer) for backward.
// Backward (xhat = (x - mean) * rstd over M elements sharing the statistics):
//   normalized: dx = rstd/M * (M*g - sum(g) - xhat * sum(g*xhat)), g = dy*gamma
//   EvoNorm:    dx = dy*gamma*rstd*(s + v x s (1-s)) + dvar * 2 (x - mean)/M,
//               dvar = -rstd^3/2 * sum(dy*gamma*x*s)
//   RangeBatchNorm2d / RangeEvoNorm (inv = 1/(s + eps), s the chunked range scale, layers.h):
//     dL/ds = -inv^2 * sum(dy * d y/d inv-part): RangeBN -gamma*inv*sum(dy*xhat), RangeEvo
//     -inv^2 * sum(dy*gamma*x*hsig); ds/dx = f/K at each chunk's first arg-max, -f/K at its
//     first arg-min (f = range_scale_factor(n)); RangeBN adds gamma*inv*(dy - mean(dy)),
//     RangeEvo dy*gamma*inv*(hsig + v x hsig').
#include <algorithm>
#include <cmath>

#include "layers_internal.h"
#include "spush/nets/layers.h"

namespace spush::nets {
namespace {

void check_channels(const Layer& l, Shape3 in, int64_t c) {
  if (in.c != c)
    throw std::invalid_argument(detail::who(l) + ": input " + in.str() + " has " +
                                std::to_string(in.c) + " channels, expected " + std::to_string(c));
}

void check_groups(const char* type, int64_t groups, int64_t channels) {
  if (channels <= 0 || groups <= 0 || channels % groups != 0)
    throw std::invalid_argument(std::string(type) + ": channels (" + std::to_string(channels) +
                                ") must be a positive multiple of groups (" +
                                std::to_string(groups) + ")");
}

// sum of term(i) for i < n in double, over kSumLanes independent accumulators (term i into lane
// i % kSumLanes, in increasing i) added in a fixed order at the end: one result whatever the
// thread count. The terms are computed block by block into a buffer first, an elementwise loop
// the compiler vectorizes (with its branches if-converted), then added lane by lane (a single
// accumulator would be a chain of dependent additions, bound by their latency).
constexpr int kSumLanes = 8;

template <typename Term>
__attribute__((always_inline)) inline double lane_sum(int64_t n, Term term) {
  constexpr int64_t kBlock = 256;  // a multiple of kSumLanes: term i still goes to lane i % 8
  double acc[kSumLanes] = {};
  double t[kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    for (int64_t j = 0; j < len; ++j) t[j] = term(b + j);
    const int64_t nb = len / kSumLanes * kSumLanes;
    for (int64_t j = 0; j < nb; j += kSumLanes)
      for (int l = 0; l < kSumLanes; ++l) acc[l] += t[j + l];
    for (int64_t j = nb; j < len; ++j) acc[j - nb] += t[j];
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Mean and biased variance of n floats.
__attribute__((always_inline)) inline void moments(const float* x, int64_t n, double& mean,
                                                   double& var) {
  mean = lane_sum(n, [x](int64_t i) { return static_cast<double>(x[i]); }) / static_cast<double>(n);
  const double mu = mean;
  var = lane_sum(n,
                 [x, mu](int64_t i) {
                   const double d = x[i] - mu;
                   return d * d;
                 }) /
        static_cast<double>(n);
}

inline float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// Hard sigmoid and its derivative (1/6 on the open linear part -3 < z < 3, else 0).
// (Written with selects rather than std::clamp and && so that loops over them vectorize.)
inline float hsig(float z) {
  const float t = z * (1.0f / 6.0f) + 0.5f;
  const float lo = t < 0.0f ? 0.0f : t;
  return lo > 1.0f ? 1.0f : lo;
}
inline float hsig_grad(float z) { return (z > -3.0f) & (z < 3.0f) ? 1.0f / 6.0f : 0.0f; }

// The n = rows * len elements base[r * stride + i] (r < rows, i < len), in the order e = r * len
// + i, cut into k chunks [floor(j n / k), floor((j + 1) n / k)): writes each chunk's first
// arg-max and arg-min (as e) and returns the mean over chunks of (max - min), in double.
double chunk_ranges(const float* base, int64_t rows, int64_t stride, int64_t len, int64_t k,
                    int64_t* amax, int64_t* amin) {
  const int64_t n = rows * len;
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t lo = j * n / k, hi = (j + 1) * n / k;
    int64_t r = lo / len, i = lo % len;
    float mx = base[r * stride + i], mn = mx;
    int64_t imx = lo, imn = lo;
    for (int64_t e = lo; e < hi; ++e) {
      const float v = base[r * stride + i];
      if (v > mx) {
        mx = v;
        imx = e;
      }
      if (v < mn) {
        mn = v;
        imn = e;
      }
      if (++i == len) {
        i = 0;
        ++r;
      }
    }
    amax[j] = imx;
    amin[j] = imn;
    sum += static_cast<double>(mx) - static_cast<double>(mn);
  }
  return sum / static_cast<double>(k);
}

// dx[e] += c at each chunk's arg-max, -= c at its arg-min (element e as in chunk_ranges).
void scatter_range_grad(float* base, int64_t stride, int64_t len, int64_t k, const int64_t* amax,
                        const int64_t* amin, float c) {
  for (int64_t j = 0; j < k; ++j) {
    base[amax[j] / len * stride + amax[j] % len] += c;
    base[amin[j] / len * stride + amin[j] % len] -= c;
  }
}

// Over the (batch, h, w) elements of node n's channel c: sdy = sum(dy) and sdyx = sum(dy * (x -
// mu) * r), the beta and gamma gradients of the batch-norm family.
void channel_sums(const Tensor& in, const Tensor& dout, int64_t n, int64_t c, float mu, float r,
                  double& sdy, double& sdyx) {
  const int64_t hw = in.h * in.w;
  sdy = 0.0;
  sdyx = 0.0;
  for (int64_t b = 0; b < in.batch; ++b) {
    const float* x = in.sample(n, b) + c * hw;
    const float* dy = dout.sample(n, b) + c * hw;
    sdy += lane_sum(hw, [dy](int64_t i) { return static_cast<double>(dy[i]); });
    sdyx += lane_sum(hw, [=](int64_t i) { return static_cast<double>(dy[i] * ((x[i] - mu) * r)); });
  }
}

// GroupNorm's loops over one unit (a sample's group of cg channels of hw values, contiguous) or
// one channel, compiled for AVX-512 too (the clone is picked at load time). The clones give the
// same bits: the same IEEE operations in the same order (no FMA: avx512f does not enable it).
#define SPUSH_NORM_CLONES __attribute__((target_clones("avx512f", "default")))

// y = gamma (x - mean) rstd + beta over the unit (as a x + b per channel); returns mean, rstd.
SPUSH_NORM_CLONES void group_norm_unit_forward(const float* x, float* y, int64_t cg, int64_t hw,
                                               const float* gamma, const float* beta, float eps,
                                               float& mu, float& r) {
  double mean, var;
  moments(x, cg * hw, mean, var);
  mu = static_cast<float>(mean);
  r = static_cast<float>(1.0 / std::sqrt(var + eps));
  for (int64_t c = 0; c < cg; ++c) {
    const float a = gamma[c] * r, b = beta[c] - mu * gamma[c] * r;
    for (int64_t i = 0; i < hw; ++i) y[c * hw + i] = a * x[c * hw + i] + b;
  }
}

// sdy += sum(dy), sdyx += sum(dy (x - mu) r) over one channel's hw values.
SPUSH_NORM_CLONES void group_norm_channel_sums(const float* x, const float* dy, int64_t hw,
                                               float mu, float r, double& sdy, double& sdyx) {
  sdy += lane_sum(hw, [dy](int64_t i) { return static_cast<double>(dy[i]); });
  sdyx += lane_sum(hw, [=](int64_t i) { return static_cast<double>(dy[i] * ((x[i] - mu) * r)); });
}

// dx over the unit: r (g - mean(g) - xhat mean(g xhat)), g = dy gamma, xhat = (x - mu) r.
SPUSH_NORM_CLONES void group_norm_unit_backward(const float* x, const float* dy, float* dx,
                                                int64_t cg, int64_t hw, const float* gamma,
                                                float mu, float r) {
  const int64_t m = cg * hw;
  double sg = 0.0, sgx = 0.0;
  for (int64_t c = 0; c < cg; ++c) {
    const float gc = gamma[c];
    const float* xc = x + c * hw;
    const float* dyc = dy + c * hw;
    sg += lane_sum(hw, [=](int64_t i) { return static_cast<double>(dyc[i] * gc); });
    sgx += lane_sum(
        hw, [=](int64_t i) { return static_cast<double>((dyc[i] * gc) * ((xc[i] - mu) * r)); });
  }
  const float a = static_cast<float>(sg / m), bq = static_cast<float>(sgx / m);
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t i = 0; i < hw; ++i) {
      const int64_t k = c * hw + i;
      dx[k] = r * (dy[k] * gamma[c] - a - (x[k] - mu) * r * bq);
    }
}

// RangeEvoNorm's loops (y = x hsig(v x) gamma inv + beta), cloned like GroupNorm's.
SPUSH_NORM_CLONES void range_evo_unit_forward(const float* x, float* y, int64_t cg, int64_t hw,
                                              const float* gamma, const float* beta, const float* v,
                                              float r) {
  for (int64_t c = 0; c < cg; ++c) {
    const float a = gamma[c] * r, vc = v[c], b = beta[c];
    for (int64_t i = 0; i < hw; ++i) {
      const float xv = x[c * hw + i];
      y[c * hw + i] = xv * hsig(vc * xv) * a + b;
    }
  }
}

// Over one channel's hw values: sg = sum(dy x hsig(v x)), sv = sum(dy x^2 hsig'(v x)),
// sdy = sum(dy).
SPUSH_NORM_CLONES void range_evo_channel_sums(const float* x, const float* dy, int64_t hw, float vc,
                                              double& sg, double& sv, double& sdy) {
  sg = lane_sum(hw, [=](int64_t i) { return static_cast<double>(dy[i] * x[i] * hsig(vc * x[i])); });
  sv = lane_sum(hw, [=](int64_t i) {
    return static_cast<double>(dy[i] * x[i] * x[i] * hsig_grad(vc * x[i]));
  });
  sdy = lane_sum(hw, [dy](int64_t i) { return static_cast<double>(dy[i]); });
}

// dx = dy gamma inv (hsig(z) + z hsig'(z)), z = v x, over the unit (without the range term);
// returns sum(dy gamma x hsig(z)), from which the caller forms dL/ds.
SPUSH_NORM_CLONES double range_evo_unit_backward(const float* x, const float* dy, float* dx,
                                                 int64_t cg, int64_t hw, const float* gamma,
                                                 const float* v, float r) {
  double sq = 0.0;
  for (int64_t c = 0; c < cg; ++c) {
    const float a = gamma[c] * r, vc = v[c], gc = gamma[c];
    const int64_t o = c * hw;
    sq += lane_sum(hw, [=](int64_t i) {
      return static_cast<double>(dy[o + i] * gc * x[o + i] * hsig(vc * x[o + i]));
    });
    for (int64_t i = 0; i < hw; ++i) {
      const int64_t j = o + i;
      const float z = vc * x[j], h = hsig(z);
      dx[j] = dy[j] * a * (h + z * hsig_grad(z));
    }
  }
  return sq;
}

}  // namespace

// ---- shared bookkeeping -----------------------------------------------------------------------

void AffineNorm::declare(Layout& layout, const std::string& name) {
  name_ = name;
  g_off_ = layout.segment(layout.add(name + ".weight", {c_})).offset;
  b_off_ = layout.segment(layout.add(name + ".bias", {c_})).offset;
}

Shape3 AffineNorm::output_shape(Shape3 in) const {
  check_channels(*this, in, c_);
  return in;
}

void AffineNorm::init(float* row, std::mt19937_64& rng) const {
  std::fill(row + g_off_, row + g_off_ + c_, 1.0f);
  std::fill(row + b_off_, row + b_off_ + c_, 0.0f);
}

RunningNorm::RunningNorm(const char* type, const char* stat, int64_t channels, float momentum,
                         float eps)
    : AffineNorm(channels, eps), stat_(stat), momentum_(momentum) {
  if (channels <= 0 || !(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f))
    throw std::invalid_argument(
        std::string(type) + ": need channels > 0, momentum in [0, 1], eps > 0; got " +
        std::to_string(channels) + ", " + std::to_string(momentum) + ", " + std::to_string(eps));
}

std::string RunningNorm::describe() const { return type() + "(" + std::to_string(c_) + ")"; }

void RunningNorm::set_nodes(int64_t nodes) {
  nodes_ = nodes;
  run_mean_.assign(static_cast<size_t>(nodes * c_), 0.0f);
  run_stat_.assign(static_cast<size_t>(nodes * c_), 1.0f);
}

std::vector<BufferRef> RunningNorm::buffers() {
  return {{name_ + ".running_mean", &run_mean_, c_}, {name_ + "." + stat_, &run_stat_, c_}};
}

void RunningNorm::check_nodes(const Tensor& in) const {
  if (in.nodes != nodes_ || run_mean_.size() != static_cast<size_t>(nodes_ * c_))
    throw std::invalid_argument(detail::who(*this) + ": input has " + std::to_string(in.nodes) +
                                " nodes but the running statistics hold " + std::to_string(nodes_) +
                                " (call set_nodes / Model::init)");
}

GroupedNorm::GroupedNorm(const char* type, int64_t groups, int64_t channels, float eps)
    : AffineNorm(channels, eps), g_(groups) {
  check_groups(type, groups, channels);
  if (!(eps > 0.0f)) throw std::invalid_argument(std::string(type) + ": eps must be > 0");
}

std::string GroupedNorm::describe() const {
  return type() + "(" + std::to_string(c_) + ", groups=" + std::to_string(g_) + ")";
}

void EvoNormBase::declare(Layout& layout, const std::string& name) {
  GroupedNorm::declare(layout, name);
  v_off_ = layout.segment(layout.add(name + ".v", {c_})).offset;
}

void EvoNormBase::init(float* row, std::mt19937_64& rng) const {
  GroupedNorm::init(row, rng);
  std::fill(row + v_off_, row + v_off_ + c_, 1.0f);
}

// ---- BatchNorm2d ------------------------------------------------------------------------------

BatchNorm2d::BatchNorm2d(int64_t channels, float momentum, float eps)
    : RunningNorm("BatchNorm2d", "running_var", channels, momentum, eps) {}

void BatchNorm2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, g_off_, params);
  check_nodes(in);
  out.resize_like(in);
  train_ = train;
  mean_.resize(static_cast<size_t>(in.nodes * c_));
  rstd_.resize(mean_.size());
  const int64_t hw = in.h * in.w, batch = in.batch, m = batch * hw;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    double mean, var;
    if (train) {
      double s = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        const float* x = in.sample(n, b) + c * hw;
        s += lane_sum(hw, [x](int64_t i) { return static_cast<double>(x[i]); });
      }
      mean = s / static_cast<double>(m);
      double q = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        const float* x = in.sample(n, b) + c * hw;
        q += lane_sum(hw, [x, mean](int64_t i) { return (x[i] - mean) * (x[i] - mean); });
      }
      var = q / static_cast<double>(m);
      const double unbiased = m > 1 ? var * static_cast<double>(m) / (m - 1) : var;
      run_mean_[nc] = static_cast<float>((1.0 - momentum_) * run_mean_[nc] + momentum_ * mean);
      run_stat_[nc] = static_cast<float>((1.0 - momentum_) * run_stat_[nc] + momentum_ * unbiased);
    } else {
      mean = run_mean_[nc];
      var = run_stat_[nc];
    }
    const float mu = static_cast<float>(mean);
    const float r = static_cast<float>(1.0 / std::sqrt(var + eps_));
    mean_[nc] = mu;
    rstd_[nc] = r;
    const float gamma = params.row(n)[g_off_ + c], beta = params.row(n)[b_off_ + c];
    const float a = gamma * r, bb = beta - mu * gamma * r;
    for (int64_t b = 0; b < batch; ++b) {
      const float* x = in.sample(n, b) + c * hw;
      float* y = out.sample(n, b) + c * hw;
      for (int64_t i = 0; i < hw; ++i) y[i] = a * x[i] + bb;
    }
  }
}

void BatchNorm2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                           const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (mean_.size() != static_cast<size_t>(in.nodes * c_))
    throw std::logic_error(detail::who(*this) + ": backward() without a matching forward()");
  if (dinp) dinp->resize_like(in);
  const int64_t hw = in.h * in.w, batch = in.batch, m = batch * hw;
  const bool train = train_;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    const float mu = mean_[nc], r = rstd_[nc];
    double sdy, sdyx;
    channel_sums(in, dout, n, c, mu, r, sdy, sdyx);
    dparams.row(n)[g_off_ + c] += static_cast<float>(sdyx);
    dparams.row(n)[b_off_ + c] += static_cast<float>(sdy);
    if (!dinp) continue;
    const float gamma = params.row(n)[g_off_ + c];
    const float k = gamma * r;
    const float a = train ? static_cast<float>(sdy / m) : 0.0f;
    const float bq = train ? static_cast<float>(sdyx / m) : 0.0f;
    for (int64_t b = 0; b < batch; ++b) {
      const float* x = in.sample(n, b) + c * hw;
      const float* dy = dout.sample(n, b) + c * hw;
      float* dx = dinp->sample(n, b) + c * hw;
      for (int64_t i = 0; i < hw; ++i) dx[i] = k * (dy[i] - a - (x[i] - mu) * r * bq);
    }
  }
}

// ---- GroupNorm --------------------------------------------------------------------------------

GroupNorm::GroupNorm(int64_t groups, int64_t channels, float eps)
    : GroupedNorm("GroupNorm", groups, channels, eps) {}

void GroupNorm::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, g_off_, params);
  out.resize_like(in);
  const int64_t hw = in.h * in.w, cg = c_ / g_, m = cg * hw;
  const int64_t units = in.nodes * in.batch * g_;
  mean_.resize(static_cast<size_t>(units));
  rstd_.resize(static_cast<size_t>(units));
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / (in.batch * g_), grp = u % g_;
    // The group's channels are contiguous.
    group_norm_unit_forward(in.data.data() + u * m, out.data.data() + u * m, cg, hw,
                            params.row(n) + g_off_ + grp * cg, params.row(n) + b_off_ + grp * cg,
                            eps_, mean_[u], rstd_[u]);
  }
}

void GroupNorm::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                         const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (mean_.size() != static_cast<size_t>(in.nodes * in.batch * g_))
    throw std::logic_error(detail::who(*this) + ": backward() without a matching forward()");
  const int64_t hw = in.h * in.w, cg = c_ / g_, m = cg * hw, batch = in.batch;
  // Parameter gradients: per (node, channel), summed over samples.
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    double sdy = 0.0, sdyx = 0.0;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t u = (n * batch + b) * g_ + c / cg;
      group_norm_channel_sums(in.sample(n, b) + c * hw, dout.sample(n, b) + c * hw, hw, mean_[u],
                              rstd_[u], sdy, sdyx);
    }
    dparams.row(n)[g_off_ + c] += static_cast<float>(sdyx);
    dparams.row(n)[b_off_ + c] += static_cast<float>(sdy);
  }
  if (!dinp) return;
  dinp->resize_like(in);
  const int64_t units = in.nodes * batch * g_;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / (batch * g_), grp = u % g_;
    group_norm_unit_backward(in.data.data() + u * m, dout.data.data() + u * m,
                             dinp->data.data() + u * m, cg, hw, params.row(n) + g_off_ + grp * cg,
                             mean_[u], rstd_[u]);
  }
}

// ---- EvoNormS0 --------------------------------------------------------------------------------

EvoNormS0::EvoNormS0(int64_t groups, int64_t channels, float eps)
    : EvoNormBase("EvoNormS0", groups, channels, eps) {}

void EvoNormS0::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, g_off_, params);
  out.resize_like(in);
  const int64_t hw = in.h * in.w, cg = c_ / g_, m = cg * hw;
  const int64_t units = in.nodes * in.batch * g_;
  mean_.resize(static_cast<size_t>(units));
  rstd_.resize(static_cast<size_t>(units));
  sig_.resize(static_cast<size_t>(in.numel()));
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / (in.batch * g_), grp = u % g_;
    const float* x = in.data.data() + u * m;
    float* y = out.data.data() + u * m;
    double mean, var;
    moments(x, m, mean, var);
    const float r = static_cast<float>(1.0 / std::sqrt(var + eps_));
    mean_[u] = static_cast<float>(mean);
    rstd_[u] = r;
    const float* gamma = params.row(n) + g_off_ + grp * cg;
    const float* beta = params.row(n) + b_off_ + grp * cg;
    const float* v = params.row(n) + v_off_ + grp * cg;
    float* sg = sig_.data() + u * m;
    for (int64_t c = 0; c < cg; ++c) {
      const float a = gamma[c] * r, vc = v[c], b = beta[c];
      for (int64_t i = 0; i < hw; ++i) {
        const float xv = x[c * hw + i];
        const float sv = sigmoid(vc * xv);
        sg[c * hw + i] = sv;
        y[c * hw + i] = xv * sv * a + b;
      }
    }
  }
}

void EvoNormS0::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                         const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (mean_.size() != static_cast<size_t>(in.nodes * in.batch * g_) ||
      sig_.size() != static_cast<size_t>(in.numel()))
    throw std::logic_error(detail::who(*this) + ": backward() without a matching forward()");
  const int64_t hw = in.h * in.w, cg = c_ / g_, m = cg * hw, batch = in.batch;
  // Parameter gradients per (node, channel).
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    const float gamma = params.row(n)[g_off_ + c];
    double dg = 0.0, db = 0.0, dv = 0.0;
    for (int64_t b = 0; b < batch; ++b) {
      const float r = rstd_[(n * batch + b) * g_ + c / cg];
      const float* x = in.sample(n, b) + c * hw;
      const float* dy = dout.sample(n, b) + c * hw;
      const float* sgm = sig_.data() + (n * batch + b) * in.sample_stride() + c * hw;
      const double sg =
          lane_sum(hw, [=](int64_t i) { return static_cast<double>(dy[i] * x[i] * sgm[i]); });
      const double sv = lane_sum(hw, [=](int64_t i) {
        const float s = sgm[i];
        return static_cast<double>(dy[i] * x[i] * x[i] * s * (1.0f - s));
      });
      db += lane_sum(hw, [dy](int64_t i) { return static_cast<double>(dy[i]); });
      dg += sg * r;
      dv += sv * gamma * r;
    }
    dparams.row(n)[g_off_ + c] += static_cast<float>(dg);
    dparams.row(n)[b_off_ + c] += static_cast<float>(db);
    dparams.row(n)[v_off_ + c] += static_cast<float>(dv);
  }
  if (!dinp) return;
  dinp->resize_like(in);
  const int64_t units = in.nodes * batch * g_;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / (batch * g_), grp = u % g_;
    const float* x = in.data.data() + u * m;
    const float* dy = dout.data.data() + u * m;
    float* dx = dinp->data.data() + u * m;
    const float mu = mean_[u], r = rstd_[u];
    const float* gamma = params.row(n) + g_off_ + grp * cg;
    const float* v = params.row(n) + v_off_ + grp * cg;
    const float* sgm = sig_.data() + u * m;
    double dr = 0.0;  // dL/d rstd
    for (int64_t c = 0; c < cg; ++c) {
      const float gc = gamma[c];
      const int64_t o = c * hw;
      dr += lane_sum(hw, [=](int64_t i) {
        return static_cast<double>(dy[o + i] * gc * x[o + i] * sgm[o + i]);
      });
    }
    // rstd = (var + eps)^(-1/2): dL/dvar = -rstd^3 / 2 * dr; dvar/dx = 2 (x - mean) / M.
    const float kv = static_cast<float>(-dr * r * r * r / m);
    for (int64_t c = 0; c < cg; ++c) {
      const float a = gamma[c] * r, vc = v[c];
      for (int64_t i = 0; i < hw; ++i) {
        const int64_t k = c * hw + i;
        const float s = sgm[k];
        dx[k] = dy[k] * a * (s + vc * x[k] * s * (1.0f - s)) + kv * (x[k] - mu);
      }
    }
  }
}

// ---- range normalization ----------------------------------------------------------------------

int64_t range_chunks(int64_t n) { return std::clamp<int64_t>(n / 2, 1, kRangeChunks); }

double range_scale_factor(int64_t n) {
  if (n < 2) return 0.0;
  const double m = static_cast<double>(n) / static_cast<double>(range_chunks(n));
  return kRangeScale / std::sqrt(2.0 * std::log(m));
}

// ---- RangeBatchNorm2d -------------------------------------------------------------------------

RangeBatchNorm2d::RangeBatchNorm2d(int64_t channels, float momentum, float eps)
    : RunningNorm("RangeBatchNorm2d", "running_scale", channels, momentum, eps) {}

void RangeBatchNorm2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params,
                               bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, g_off_, params);
  check_nodes(in);
  out.resize_like(in);
  train_ = train;
  const int64_t hw = in.h * in.w, batch = in.batch, m = batch * hw;
  const int64_t k = range_chunks(m);
  const double f = range_scale_factor(m);
  mean_.resize(static_cast<size_t>(in.nodes * c_));
  inv_.resize(mean_.size());
  amax_.resize(mean_.size() * kRangeChunks);
  amin_.resize(amax_.size());
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    const float* base = in.sample(n, 0) + c * hw;
    const int64_t stride = in.sample_stride();
    double mean, scale;
    if (train) {
      double s = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        const float* x = base + b * stride;
        s += lane_sum(hw, [x](int64_t i) { return static_cast<double>(x[i]); });
      }
      mean = s / static_cast<double>(m);
      scale = f * chunk_ranges(base, batch, stride, hw, k, amax_.data() + nc * kRangeChunks,
                               amin_.data() + nc * kRangeChunks);
      run_mean_[nc] = static_cast<float>((1.0 - momentum_) * run_mean_[nc] + momentum_ * mean);
      run_stat_[nc] = static_cast<float>((1.0 - momentum_) * run_stat_[nc] + momentum_ * scale);
    } else {
      mean = run_mean_[nc];
      scale = run_stat_[nc];
    }
    const float mu = static_cast<float>(mean);
    const float r = static_cast<float>(1.0 / (scale + eps_));
    mean_[nc] = mu;
    inv_[nc] = r;
    const float gamma = params.row(n)[g_off_ + c], beta = params.row(n)[b_off_ + c];
    const float a = gamma * r;
    for (int64_t b = 0; b < batch; ++b) {
      const float* x = base + b * stride;
      float* y = out.sample(n, b) + c * hw;
      for (int64_t i = 0; i < hw; ++i) y[i] = a * (x[i] - mu) + beta;
    }
  }
}

void RangeBatchNorm2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout,
                                Tensor* dinp, const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (mean_.size() != static_cast<size_t>(in.nodes * c_))
    throw std::logic_error(detail::who(*this) + ": backward() without a matching forward()");
  if (dinp) dinp->resize_like(in);
  const int64_t hw = in.h * in.w, batch = in.batch, m = batch * hw;
  const int64_t k = range_chunks(m);
  const double f = range_scale_factor(m);
  const bool train = train_;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    const float mu = mean_[nc], r = inv_[nc];
    double sdy, sdyx;
    channel_sums(in, dout, n, c, mu, r, sdy, sdyx);
    dparams.row(n)[g_off_ + c] += static_cast<float>(sdyx);
    dparams.row(n)[b_off_ + c] += static_cast<float>(sdy);
    if (!dinp) continue;
    const float gamma = params.row(n)[g_off_ + c];
    const float a = gamma * r;
    const float mdy = train ? static_cast<float>(sdy / m) : 0.0f;
    for (int64_t b = 0; b < batch; ++b) {
      const float* dy = dout.sample(n, b) + c * hw;
      float* dx = dinp->sample(n, b) + c * hw;
      for (int64_t i = 0; i < hw; ++i) dx[i] = a * (dy[i] - mdy);
    }
    if (train) {
      // dL/ds = -gamma * inv * sum(dy * xhat); ds/dx = +-f/K at the chunks' arg-max/arg-min.
      const double ds = -static_cast<double>(gamma) * r * sdyx;
      scatter_range_grad(dinp->sample(n, 0) + c * hw, in.sample_stride(), hw, k,
                         amax_.data() + nc * kRangeChunks, amin_.data() + nc * kRangeChunks,
                         static_cast<float>(ds * f / static_cast<double>(k)));
    }
  }
}

// ---- RangeEvoNorm -----------------------------------------------------------------------------

RangeEvoNorm::RangeEvoNorm(int64_t groups, int64_t channels, float eps)
    : EvoNormBase("RangeEvoNorm", groups, channels, eps) {}

void RangeEvoNorm::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, g_off_, params);
  out.resize_like(in);
  const int64_t hw = in.h * in.w, cg = c_ / g_, m = cg * hw;
  const int64_t k = range_chunks(m);
  const double f = range_scale_factor(m);
  const int64_t units = in.nodes * in.batch * g_;
  inv_.resize(static_cast<size_t>(units));
  amax_.resize(static_cast<size_t>(units * kRangeChunks));
  amin_.resize(amax_.size());
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / (in.batch * g_), grp = u % g_;
    const float* x = in.data.data() + u * m;  // the group's channels are contiguous
    float* y = out.data.data() + u * m;
    const double scale = f * chunk_ranges(x, 1, m, m, k, amax_.data() + u * kRangeChunks,
                                          amin_.data() + u * kRangeChunks);
    const float r = static_cast<float>(1.0 / (scale + eps_));
    inv_[u] = r;
    range_evo_unit_forward(x, y, cg, hw, params.row(n) + g_off_ + grp * cg,
                           params.row(n) + b_off_ + grp * cg, params.row(n) + v_off_ + grp * cg, r);
  }
}

void RangeEvoNorm::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                            const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  if (inv_.size() != static_cast<size_t>(in.nodes * in.batch * g_))
    throw std::logic_error(detail::who(*this) + ": backward() without a matching forward()");
  const int64_t hw = in.h * in.w, cg = c_ / g_, m = cg * hw, batch = in.batch;
  const int64_t k = range_chunks(m);
  const double f = range_scale_factor(m);
  // Parameter gradients per (node, channel).
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t nc = 0; nc < in.nodes * c_; ++nc) {
    const int64_t n = nc / c_, c = nc % c_;
    const float gamma = params.row(n)[g_off_ + c], vc = params.row(n)[v_off_ + c];
    double dg = 0.0, db = 0.0, dv = 0.0;
    for (int64_t b = 0; b < batch; ++b) {
      const float r = inv_[(n * batch + b) * g_ + c / cg];
      const float* x = in.sample(n, b) + c * hw;
      const float* dy = dout.sample(n, b) + c * hw;
      double sg, sv, sdy;
      range_evo_channel_sums(x, dy, hw, vc, sg, sv, sdy);
      db += sdy;
      dg += sg * r;
      dv += sv * gamma * r;
    }
    dparams.row(n)[g_off_ + c] += static_cast<float>(dg);
    dparams.row(n)[b_off_ + c] += static_cast<float>(db);
    dparams.row(n)[v_off_ + c] += static_cast<float>(dv);
  }
  if (!dinp) return;
  dinp->resize_like(in);
  const int64_t units = in.nodes * batch * g_;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / (batch * g_), grp = u % g_;
    const float* x = in.data.data() + u * m;
    const float* dy = dout.data.data() + u * m;
    float* dx = dinp->data.data() + u * m;
    const float r = inv_[u];
    // sum(dy * gamma * x * hsig): dL/ds = -inv^2 * sq
    const double sq = range_evo_unit_backward(x, dy, dx, cg, hw, params.row(n) + g_off_ + grp * cg,
                                              params.row(n) + v_off_ + grp * cg, r);
    const double ds = -sq * r * r;
    scatter_range_grad(dx, m, m, k, amax_.data() + u * kRangeChunks,
                       amin_.data() + u * kRangeChunks,
                       static_cast<float>(ds * f / static_cast<double>(k)));
  }
}

}  // namespace spush::nets

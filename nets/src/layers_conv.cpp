// Conv2d on the CPU: im2col + cblas_sgemm per (node, chunk of samples).
//   forward:   col[K, S*P] = im2col(x[s0..s0+S)),  Y[Cout, S*P] = W[Cout, K] col,  K = Cin*kh*kw,
//              P = Ho*Wo, then Y is scattered to out[s, Cout, P] with the bias added.
//   backward:  dW[Cout, K] += dY col^T,  db += row sums of dY,  dcol = W^T dY,  dx = col2im(dcol).
// im2col is recomputed in backward instead of being stored (memory O(threads), not O(nodes)).
#include <cblas.h>

#include <cmath>
#include <cstring>

#include "layers_internal.h"
#include "spush/nets/layers.h"

namespace spush::nets {
namespace {

constexpr int64_t kColBudget = int64_t{1} << 17;     // floats of im2col per chunk (512 KiB)
constexpr int64_t kParallelWork = int64_t{1} << 22;  // multiply-adds below which one thread runs

struct Geometry {
  int64_t c, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
};

// First and one-past-last output column whose input column ow*s - p + k lies in [0, n).
inline void valid_range(int64_t n, int64_t out, int64_t s, int64_t p, int64_t k, int64_t& lo,
                        int64_t& hi) {
  const int64_t a = p - k;  // need ow*s >= a
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  const int64_t b = n - 1 + p - k;  // need ow*s <= b
  hi = b < 0 ? 0 : b / s + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// Sum of n floats with 8 independent accumulators (vectorizes without -ffast-math).
float row_sum(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  float s = 0.0f;
  for (; i < n; ++i) s += x[i];
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

// col rows (c, ki, kj), columns oh*OW + ow at stride ldc.
void im2col(const float* __restrict x, const Geometry& g, float* __restrict col, int64_t ldc) {
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        float* dst = col + ((c * g.kh + ki) * g.kw + kj) * ldc;
        int64_t lo, hi;
        valid_range(g.w, g.ow, g.sw, g.pw, kj, lo, hi);
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          float* __restrict d = dst + oh * g.ow;
          const int64_t ih = oh * g.sh - g.ph + ki;
          if (ih < 0 || ih >= g.h) {
            std::memset(d, 0, sizeof(float) * g.ow);
            continue;
          }
          const float* __restrict src =
              x + (c * g.h + ih) * g.w + (kj - g.pw);  // [ow * sw] = x[iw]
          for (int64_t ow = 0; ow < lo; ++ow) d[ow] = 0.0f;
          if (g.sw == 1) {
            // Rows are short (tens of floats): an inline loop beats a memcpy call.
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * g.sw];
          }
          for (int64_t ow = hi; ow < g.ow; ++ow) d[ow] = 0.0f;
        }
      }
    }
  }
}

// dx += col2im(col); the adjoint of im2col.
void col2im(const float* __restrict col, int64_t ldc, const Geometry& g, float* __restrict dx) {
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* src = col + ((c * g.kh + ki) * g.kw + kj) * ldc;
        int64_t lo, hi;
        valid_range(g.w, g.ow, g.sw, g.pw, kj, lo, hi);
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + ki;
          if (ih < 0 || ih >= g.h) continue;
          const float* __restrict s = src + oh * g.ow;
          float* __restrict d = dx + (c * g.h + ih) * g.w + (kj - g.pw);
          if (g.sw == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] += s[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) d[ow * g.sw] += s[ow];
          }
        }
      }
    }
  }
}

}  // namespace

Conv2d::Conv2d(const Conv2dSpec& spec) : spec_(spec) {
  const auto& s = spec_;
  if (s.in <= 0 || s.out <= 0 || s.kh <= 0 || s.kw <= 0 || s.stride_h <= 0 || s.stride_w <= 0 ||
      s.pad_h < 0 || s.pad_w < 0)
    throw std::invalid_argument(
        "Conv2d: need in, out, kernel, stride > 0 and padding >= 0; got in=" +
        std::to_string(s.in) + " out=" + std::to_string(s.out) + " kernel=" + std::to_string(s.kh) +
        "x" + std::to_string(s.kw) + " stride=" + std::to_string(s.stride_h) + "x" +
        std::to_string(s.stride_w) + " pad=" + std::to_string(s.pad_h) + "x" +
        std::to_string(s.pad_w));
  detail::blas_single_thread();
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias)
    : Conv2d(Conv2dSpec{in, out, k, k, stride, stride, pad, pad, bias}) {}

std::string Conv2d::describe() const {
  const auto& s = spec_;
  return "Conv2d(" + std::to_string(s.in) + "->" + std::to_string(s.out) +
         ", k=" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
         ", s=" + std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) +
         ", p=" + std::to_string(s.pad_h) + "x" + std::to_string(s.pad_w) +
         (s.bias ? ", bias" : "") + ")";
}

void Conv2d::declare(Layout& layout, const std::string& name) {
  name_ = name;
  w_off_ = layout.segment(layout.add(name + ".weight", {spec_.out, spec_.in, spec_.kh, spec_.kw}))
               .offset;
  if (spec_.bias) b_off_ = layout.segment(layout.add(name + ".bias", {spec_.out})).offset;
  // backward() treats weight and bias as one contiguous range.
  if (spec_.bias && b_off_ != w_off_ + spec_.out * spec_.in * spec_.kh * spec_.kw)
    throw std::logic_error(detail::who(*this) + ": weight and bias segments are not adjacent");
}

int64_t Conv2d::num_params() const {
  return spec_.out * spec_.in * spec_.kh * spec_.kw + (spec_.bias ? spec_.out : 0);
}

Shape3 Conv2d::output_shape(Shape3 in) const {
  const auto& s = spec_;
  if (in.c != s.in)
    throw std::invalid_argument(detail::who(*this) + ": input " + in.str() + " has " +
                                std::to_string(in.c) + " channels, expected " +
                                std::to_string(s.in));
  const int64_t oh = (in.h + 2 * s.pad_h - s.kh) / s.stride_h + 1;
  const int64_t ow = (in.w + 2 * s.pad_w - s.kw) / s.stride_w + 1;
  if (in.h + 2 * s.pad_h < s.kh || in.w + 2 * s.pad_w < s.kw || oh <= 0 || ow <= 0)
    throw std::invalid_argument(detail::who(*this) + ": input " + in.str() +
                                " is smaller than the kernel " + std::to_string(s.kh) + "x" +
                                std::to_string(s.kw) + " with padding " + std::to_string(s.pad_h) +
                                "x" + std::to_string(s.pad_w));
  return {s.out, oh, ow};
}

void Conv2d::init(float* row, std::mt19937_64& rng) const {
  // He-normal, fan_out mode (the CIFAR ResNet reference code: N(0, 2 / (kh*kw*out))).
  const int64_t fan_out = spec_.kh * spec_.kw * spec_.out;
  detail::fill_normal(row + w_off_, spec_.out * spec_.in * spec_.kh * spec_.kw,
                      std::sqrt(2.0f / static_cast<float>(fan_out)), rng);
  if (spec_.bias) std::fill(row + b_off_, row + b_off_ + spec_.out, 0.0f);
}

void Conv2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  detail::check_input(*this, in, params);
  detail::check_declared(*this, w_off_, params);
  const Shape3 os = output_shape(in.shape3());
  out.resize(in.nodes, in.batch, os);
  const Geometry g{in.c,     in.h,           in.w,           os.h,        os.w,       spec_.kh,
                   spec_.kw, spec_.stride_h, spec_.stride_w, spec_.pad_h, spec_.pad_w};
  const int64_t K = spec_.in * spec_.kh * spec_.kw, P = os.h * os.w, cout = spec_.out;
  const int64_t chunk = std::max<int64_t>(1, kColBudget / (K * P));
  const detail::NodeSplit split = detail::split_nodes(in.nodes, in.batch);
  scratch_.resize(detail::max_threads());
  const bool has_bias = spec_.bias;
  const bool parallel = split.tasks() > 1 && out.numel() * K > kParallelWork;

#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t task = 0; task < split.tasks(); ++task) {
    const int64_t n = split.node(task);
    const auto [b0, b1] = split.range(task);
    std::vector<float>& ws = scratch_[omp_get_thread_num()];
    const int64_t cap = std::min(chunk, b1 - b0) * P;
    if (static_cast<int64_t>(ws.size()) < (K + cout) * cap) ws.resize((K + cout) * cap);
    float* col = ws.data();
    float* tmp = col + K * cap;
    const float* wt = params.row(n) + w_off_;
    const float* bias = has_bias ? params.row(n) + b_off_ : nullptr;
    for (int64_t s0 = b0; s0 < b1; s0 += chunk) {
      const int64_t ns = std::min(chunk, b1 - s0), N = ns * P;
      for (int64_t j = 0; j < ns; ++j) im2col(in.sample(n, s0 + j), g, col + j * P, N);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(cout),
                  static_cast<int>(N), static_cast<int>(K), 1.0f, wt, static_cast<int>(K), col,
                  static_cast<int>(N), 0.0f, tmp, static_cast<int>(N));
      for (int64_t j = 0; j < ns; ++j) {
        float* dst = out.sample(n, s0 + j);
        for (int64_t co = 0; co < cout; ++co) {
          const float* src = tmp + co * N + j * P;
          const float b = bias ? bias[co] : 0.0f;
          float* d = dst + co * P;
          for (int64_t p = 0; p < P; ++p) d[p] = src[p] + b;
        }
      }
    }
  }
}

void Conv2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                      const NodeMatrix& params, NodeMatrix& dparams) {
  detail::check_backward(*this, in, out, dout, params, dparams);
  const Geometry g{in.c,     in.h,           in.w,           out.h,       out.w,      spec_.kh,
                   spec_.kw, spec_.stride_h, spec_.stride_w, spec_.pad_h, spec_.pad_w};
  const int64_t K = spec_.in * spec_.kh * spec_.kw, P = out.h * out.w, cout = spec_.out;
  const int64_t chunk = std::max<int64_t>(1, kColBudget / (K * P));
  const detail::NodeSplit split = detail::split_nodes(in.nodes, in.batch);
  scratch_.resize(detail::max_threads());
  if (dinp) dinp->resize_like(in);
  // Weight then bias are adjacent in the layout (declared one after the other).
  detail::GradPartials partials;
  partials.prepare(split, num_params());
  const bool has_bias = spec_.bias;
  const int64_t wsize = cout * K;
  const bool parallel = split.tasks() > 1 && out.numel() * K > kParallelWork;

#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t task = 0; task < split.tasks(); ++task) {
    const int64_t n = split.node(task);
    const auto [b0, b1] = split.range(task);
    std::vector<float>& ws = scratch_[omp_get_thread_num()];
    const int64_t cap = std::min(chunk, b1 - b0) * P;
    if (static_cast<int64_t>(ws.size()) < (K + cout) * cap) ws.resize((K + cout) * cap);
    float* col = ws.data();
    float* dyc = col + K * cap;
    const float* wt = params.row(n) + w_off_;
    float* dw = partials.target(task, dparams, w_off_);
    float* db = has_bias ? dw + wsize : nullptr;
    for (int64_t s0 = b0; s0 < b1; s0 += chunk) {
      const int64_t ns = std::min(chunk, b1 - s0), N = ns * P;
      // Gather dY[Cout, ns*P] from dout[s, Cout, P].
      for (int64_t j = 0; j < ns; ++j) {
        const float* src = dout.sample(n, s0 + j);
        for (int64_t co = 0; co < cout; ++co)
          std::memcpy(dyc + co * N + j * P, src + co * P, sizeof(float) * P);
      }
      if (db)
        for (int64_t co = 0; co < cout; ++co) db[co] += row_sum(dyc + co * N, N);
      for (int64_t j = 0; j < ns; ++j) im2col(in.sample(n, s0 + j), g, col + j * P, N);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(cout),
                  static_cast<int>(K), static_cast<int>(N), 1.0f, dyc, static_cast<int>(N), col,
                  static_cast<int>(N), 1.0f, dw, static_cast<int>(K));
      if (dinp) {
        // dcol = W^T dY, reusing the im2col buffer.
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(K),
                    static_cast<int>(N), static_cast<int>(cout), 1.0f, wt, static_cast<int>(K), dyc,
                    static_cast<int>(N), 0.0f, col, static_cast<int>(N));
        for (int64_t j = 0; j < ns; ++j) {
          float* dx = dinp->sample(n, s0 + j);
          std::memset(dx, 0, sizeof(float) * in.sample_stride());
          col2im(col + j * P, N, g, dx);
        }
      }
    }
  }
  partials.reduce(dparams, w_off_);
}

}  // namespace spush::nets

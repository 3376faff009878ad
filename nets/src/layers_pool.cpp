// Pooling and shape-changing layers on the CPU, parallel over (node, sample, channel) planes:
// MaxPool2d (saves the arg-max per output), AvgPool2d (divisor k*k), GlobalAvgPool, and the
// ResNet option-A shortcut (strided subsampling + zero-padded channels).
#include <cstring>
#include <limits>

#include "layers_internal.h"
#include "spush/nets/layers.h"

namespace spush::nets {
namespace {

Shape3 pool_shape(const Layer& l, Shape3 in, int64_t k, int64_t s, int64_t p) {
  if (in.h + 2 * p < k || in.w + 2 * p < k)
    throw std::invalid_argument(detail::who(l) + ": input " + in.str() +
                                " is smaller than the window " + std::to_string(k) +
                                " with padding " + std::to_string(p));
  return {in.c, (in.h + 2 * p - k) / s + 1, (in.w + 2 * p - k) / s + 1};
}

void check_pool_args(const char* type, int64_t k, int64_t s, int64_t p) {
  if (k <= 0 || s <= 0 || p < 0 || 2 * p > k)
    throw std::invalid_argument(
        std::string(type) + ": need kernel > 0, stride > 0, 0 <= padding <= kernel/2; got k=" +
        std::to_string(k) + " stride=" + std::to_string(s) + " pad=" + std::to_string(p));
}

std::string pool_describe(const char* type, int64_t k, int64_t s, int64_t p) {
  return std::string(type) + "(k=" + std::to_string(k) + ", s=" + std::to_string(s) +
         ", p=" + std::to_string(p) + ")";
}

}  // namespace

// ---- MaxPool2d --------------------------------------------------------------------------------

MaxPool2d::MaxPool2d(int64_t k, int64_t stride, int64_t pad)
    : k_(k), stride_(stride < 0 ? k : stride), pad_(pad) {
  check_pool_args("MaxPool2d", k_, stride_, pad_);
}

std::string MaxPool2d::describe() const { return pool_describe("MaxPool2d", k_, stride_, pad_); }

Shape3 MaxPool2d::output_shape(Shape3 in) const { return pool_shape(*this, in, k_, stride_, pad_); }

void MaxPool2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  const Shape3 os = output_shape(in.shape3());
  out.resize(in.nodes, in.batch, os);
  argmax_.resize(static_cast<size_t>(out.numel()));
  const int64_t planes = in.nodes * in.batch * in.c, ih = in.h, iw = in.w;
  const int64_t oh = os.h, ow = os.w;
#pragma omp parallel for schedule(static) if (out.numel() > (1 << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* x = in.data.data() + pl * ih * iw;
    float* y = out.data.data() + pl * oh * ow;
    int32_t* am = argmax_.data() + pl * oh * ow;
    if (k_ == 2 && stride_ == 2 && pad_ == 0) {
      // The common 2x2 window: four candidates, first maximum wins; selects instead of branches
      // (random data mispredicts them half the time).
      for (int64_t i = 0; i < oh; ++i) {
        const float* r0 = x + 2 * i * iw;
        const float* r1 = r0 + iw;
        for (int64_t j = 0; j < ow; ++j) {
          const int32_t a = static_cast<int32_t>(2 * i * iw + 2 * j);
          float best = r0[2 * j];
          int32_t arg = a;
          const float v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
          arg = v1 > best ? a + 1 : arg;
          best = v1 > best ? v1 : best;
          arg = v2 > best ? a + static_cast<int32_t>(iw) : arg;
          best = v2 > best ? v2 : best;
          arg = v3 > best ? a + static_cast<int32_t>(iw) + 1 : arg;
          best = v3 > best ? v3 : best;
          y[i * ow + j] = best;
          am[i * ow + j] = arg;
        }
      }
      continue;
    }
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t h0 = std::max<int64_t>(0, i * stride_ - pad_);
      const int64_t h1 = std::min(ih, i * stride_ - pad_ + k_);
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t w0 = std::max<int64_t>(0, j * stride_ - pad_);
        const int64_t w1 = std::min(iw, j * stride_ - pad_ + k_);
        float best = -std::numeric_limits<float>::infinity();
        int64_t arg = h0 * iw + w0;
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b)
            if (x[a * iw + b] > best) {
              best = x[a * iw + b];
              arg = a * iw + b;
            }
        y[i * ow + j] = best;
        am[i * ow + j] = static_cast<int32_t>(arg);
      }
    }
  }
}

void MaxPool2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                         const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dinp) return;
  if (!dout.same_shape(out) || argmax_.size() != static_cast<size_t>(out.numel()))
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the last forward output " + out.shape_str());
  dinp->resize_like(in);
  const int64_t planes = in.nodes * in.batch * in.c, isz = in.h * in.w, osz = out.h * out.w;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dx = dinp->data.data() + pl * isz;
    std::memset(dx, 0, sizeof(float) * isz);
    const float* dy = dout.data.data() + pl * osz;
    const int32_t* am = argmax_.data() + pl * osz;
    for (int64_t i = 0; i < osz; ++i) dx[am[i]] += dy[i];
  }
}

// ---- AvgPool2d --------------------------------------------------------------------------------

AvgPool2d::AvgPool2d(int64_t k, int64_t stride, int64_t pad)
    : k_(k), stride_(stride < 0 ? k : stride), pad_(pad) {
  check_pool_args("AvgPool2d", k_, stride_, pad_);
}

std::string AvgPool2d::describe() const { return pool_describe("AvgPool2d", k_, stride_, pad_); }

Shape3 AvgPool2d::output_shape(Shape3 in) const { return pool_shape(*this, in, k_, stride_, pad_); }

void AvgPool2d::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  const Shape3 os = output_shape(in.shape3());
  out.resize(in.nodes, in.batch, os);
  const int64_t planes = in.nodes * in.batch * in.c, ih = in.h, iw = in.w;
  const float inv = 1.0f / static_cast<float>(k_ * k_);
#pragma omp parallel for schedule(static) if (out.numel() > (1 << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* x = in.data.data() + pl * ih * iw;
    float* y = out.data.data() + pl * os.h * os.w;
    for (int64_t i = 0; i < os.h; ++i) {
      const int64_t h0 = std::max<int64_t>(0, i * stride_ - pad_);
      const int64_t h1 = std::min(ih, i * stride_ - pad_ + k_);
      for (int64_t j = 0; j < os.w; ++j) {
        const int64_t w0 = std::max<int64_t>(0, j * stride_ - pad_);
        const int64_t w1 = std::min(iw, j * stride_ - pad_ + k_);
        float acc = 0.0f;
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) acc += x[a * iw + b];
        y[i * os.w + j] = acc * inv;
      }
    }
  }
}

void AvgPool2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                         const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dinp) return;
  if (!dout.same_shape(out))
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the forward output " + out.shape_str());
  dinp->resize_like(in);
  const int64_t planes = in.nodes * in.batch * in.c, ih = in.h, iw = in.w;
  const float inv = 1.0f / static_cast<float>(k_ * k_);
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dx = dinp->data.data() + pl * ih * iw;
    std::memset(dx, 0, sizeof(float) * ih * iw);
    const float* dy = dout.data.data() + pl * out.h * out.w;
    for (int64_t i = 0; i < out.h; ++i) {
      const int64_t h0 = std::max<int64_t>(0, i * stride_ - pad_);
      const int64_t h1 = std::min(ih, i * stride_ - pad_ + k_);
      for (int64_t j = 0; j < out.w; ++j) {
        const int64_t w0 = std::max<int64_t>(0, j * stride_ - pad_);
        const int64_t w1 = std::min(iw, j * stride_ - pad_ + k_);
        const float g = dy[i * out.w + j] * inv;
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) dx[a * iw + b] += g;
      }
    }
  }
}

// ---- GlobalAvgPool ----------------------------------------------------------------------------

void GlobalAvgPool::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  out.resize(in.nodes, in.batch, in.c, 1, 1);
  const int64_t planes = in.nodes * in.batch * in.c, hw = in.h * in.w;
  const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* x = in.data.data() + pl * hw;
    float acc = 0.0f;
    for (int64_t i = 0; i < hw; ++i) acc += x[i];
    out.data[pl] = acc * inv;
  }
}

void GlobalAvgPool::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* dinp,
                             const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dinp) return;
  if (!dout.same_shape(out))
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the forward output " + out.shape_str());
  dinp->resize_like(in);
  const int64_t planes = in.nodes * in.batch * in.c, hw = in.h * in.w;
  const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float g = dout.data[pl] * inv;
    float* dx = dinp->data.data() + pl * hw;
    for (int64_t i = 0; i < hw; ++i) dx[i] = g;
  }
}

// ---- ZeroPadShortcut --------------------------------------------------------------------------

ZeroPadShortcut::ZeroPadShortcut(int64_t in_c, int64_t out_c, int64_t stride)
    : in_c_(in_c), out_c_(out_c), stride_(stride) {
  if (in_c <= 0 || out_c < in_c || stride <= 0)
    throw std::invalid_argument(
        "ZeroPadShortcut: need 0 < in_c <= out_c and stride > 0; got in_c=" + std::to_string(in_c) +
        " out_c=" + std::to_string(out_c) + " stride=" + std::to_string(stride));
}

std::string ZeroPadShortcut::describe() const {
  return "ZeroPadShortcut(" + std::to_string(in_c_) + "->" + std::to_string(out_c_) +
         ", s=" + std::to_string(stride_) + ")";
}

Shape3 ZeroPadShortcut::output_shape(Shape3 in) const {
  if (in.c != in_c_)
    throw std::invalid_argument(detail::who(*this) + ": input " + in.str() + " has " +
                                std::to_string(in.c) + " channels, expected " +
                                std::to_string(in_c_));
  return {out_c_, (in.h + stride_ - 1) / stride_, (in.w + stride_ - 1) / stride_};
}

void ZeroPadShortcut::forward(const Tensor& in, Tensor& out, const NodeMatrix& params, bool train) {
  const Shape3 os = output_shape(in.shape3());
  out.resize(in.nodes, in.batch, os);
  const int64_t before = (out_c_ - in_c_) / 2;
  const int64_t samples = in.nodes * in.batch, ohw = os.h * os.w;
#pragma omp parallel for schedule(static) if (out.numel() > (1 << 18))
  for (int64_t s = 0; s < samples; ++s) {
    const float* x = in.data.data() + s * in.sample_stride();
    float* y = out.data.data() + s * out.sample_stride();
    std::memset(y, 0, sizeof(float) * before * ohw);
    for (int64_t c = 0; c < in_c_; ++c) {
      float* yc = y + (before + c) * ohw;
      const float* xc = x + c * in.h * in.w;
      for (int64_t i = 0; i < os.h; ++i)
        for (int64_t j = 0; j < os.w; ++j) yc[i * os.w + j] = xc[i * stride_ * in.w + j * stride_];
    }
    std::memset(y + (before + in_c_) * ohw, 0, sizeof(float) * (out_c_ - in_c_ - before) * ohw);
  }
}

void ZeroPadShortcut::backward(const Tensor& in, const Tensor& out, const Tensor& dout,
                               Tensor* dinp, const NodeMatrix& params, NodeMatrix& dparams) {
  if (!dinp) return;
  if (!dout.same_shape(out))
    throw std::invalid_argument(detail::who(*this) + ": dout " + dout.shape_str() +
                                " does not match the forward output " + out.shape_str());
  dinp->resize_like(in);
  const int64_t before = (out_c_ - in_c_) / 2;
  const int64_t samples = in.nodes * in.batch, ohw = out.h * out.w;
#pragma omp parallel for schedule(static) if (in.numel() > (1 << 18))
  for (int64_t s = 0; s < samples; ++s) {
    float* dx = dinp->data.data() + s * in.sample_stride();
    const float* dy = dout.data.data() + s * out.sample_stride();
    if (stride_ != 1) std::memset(dx, 0, sizeof(float) * in.sample_stride());
    for (int64_t c = 0; c < in_c_; ++c) {
      const float* dyc = dy + (before + c) * ohw;
      float* dxc = dx + c * in.h * in.w;
      for (int64_t i = 0; i < out.h; ++i)
        for (int64_t j = 0; j < out.w; ++j)
          dxc[i * stride_ * in.w + j * stride_] = dyc[i * out.w + j];
    }
  }
}

}  // namespace spush::nets

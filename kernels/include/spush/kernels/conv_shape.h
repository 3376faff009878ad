// The geometry of a 2-D convolution over one node's minibatch, shared by the fp32 (conv.h) and
// the 8-bit (conv_int8.h) convolution ops. Tensors are plain row-major:
//   x  [batch, cin, h, w]      input (activations)
//   w  [cout, cin, kh, kw]     weights
//   y  [batch, cout, oh, ow]   output, oh = (h + 2 ph - kh) / sh + 1 (ow likewise)
// Padding is zeros in real (dequantized) values; cross-correlation, as in every framework.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace spush::kernels {

struct ConvShape {
  int64_t batch = 0, cin = 0, h = 0, w = 0;  // input
  int64_t cout = 0, kh = 0, kw = 0;          // weights
  int64_t sh = 1, sw = 1, ph = 0, pw = 0;    // stride, zero padding

  int64_t oh() const { return (h + 2 * ph - kh) / sh + 1; }
  int64_t ow() const { return (w + 2 * pw - kw) / sw + 1; }
  int64_t k() const { return cin * kh * kw; }  // reduction length of the forward pass
  int64_t x_size() const { return batch * cin * h * w; }
  int64_t w_size() const { return cout * cin * kh * kw; }
  int64_t y_size() const { return batch * cout * oh() * ow(); }
  // Multiply-adds of the forward pass (the same for backward-data and backward-weights).
  int64_t macs() const { return batch * cout * oh() * ow() * k(); }

  // Spelled out: the nvcc of some CUDA toolkits does not accept a defaulted comparison.
  bool operator==(const ConvShape& o) const {
    return batch == o.batch && cin == o.cin && h == o.h && w == o.w && cout == o.cout &&
           kh == o.kh && kw == o.kw && sh == o.sh && sw == o.sw && ph == o.ph && pw == o.pw;
  }

  std::string str() const {
    return "b" + std::to_string(batch) + " " + std::to_string(cin) + "x" + std::to_string(h) + "x" +
           std::to_string(w) + " -> " + std::to_string(cout) + " k" + std::to_string(kh) + "x" +
           std::to_string(kw) + " s" + std::to_string(sh) + "x" + std::to_string(sw) + " p" +
           std::to_string(ph) + "x" + std::to_string(pw);
  }

  // Throws std::invalid_argument naming the shape when a size is not positive, padding is
  // negative or the padded input is smaller than the kernel.
  void check(const char* who) const {
    if (batch <= 0 || cin <= 0 || h <= 0 || w <= 0 || cout <= 0 || kh <= 0 || kw <= 0 || sh <= 0 ||
        sw <= 0 || ph < 0 || pw < 0 || h + 2 * ph < kh || w + 2 * pw < kw)
      throw std::invalid_argument(std::string(who) + ": invalid convolution shape " + str());
  }
};

}  // namespace spush::kernels

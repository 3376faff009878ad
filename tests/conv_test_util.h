// Helpers shared by the convolution tests: ConvShape builders.
#pragma once
#include <cstdint>

#include "spush/kernels/conv_shape.h"

namespace spush::test {

// Input batch x cin x h x w, cout kernels kh x kw, stride sh x sw, zero padding ph x pw.
inline kernels::ConvShape conv_shape(int64_t batch, int64_t cin, int64_t h, int64_t w, int64_t cout,
                                     int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                     int64_t pw) {
  return {batch, cin, h, w, cout, kh, kw, sh, sw, ph, pw};
}

// Square input, kernel, stride and padding.
inline kernels::ConvShape square_conv(int64_t batch, int64_t cin, int64_t hw, int64_t cout,
                                      int64_t k, int64_t stride, int64_t pad) {
  return conv_shape(batch, cin, hw, hw, cout, k, k, stride, stride, pad, pad);
}

}  // namespace spush::test

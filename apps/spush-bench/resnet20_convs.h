// The convolution shapes of CIFAR ResNet-20 (3 stages of 3 basic blocks, 16 / 32 / 64 channels,
// identity shortcuts with zero-padded channels, so no 1x1 convolutions: the 269,722-parameter
// net of resnet20_layer_offsets in bench.h), for the convolution cases of spush-bench. One
// table for every convolution case (fp32 and 8-bit) so that they time the same layers.
#pragma once
#include <cstdint>
#include <vector>

#include "spush/kernels/conv_shape.h"

namespace spush::bench {

struct Resnet20Conv {
  const char* name;  // e.g. "16x32x32-32s2": input channels x h x w, output channels, stride
  kernels::ConvShape shape;  // batch as passed to resnet20_convs
  int count;                 // how many of ResNet-20's 19 convolutions have this shape
};

inline std::vector<Resnet20Conv> resnet20_convs(int64_t batch) {
  auto conv = [batch](int64_t cin, int64_t hw, int64_t cout, int64_t stride) {
    kernels::ConvShape s;
    s.batch = batch;
    s.cin = cin;
    s.h = s.w = hw;
    s.cout = cout;
    s.kh = s.kw = 3;
    s.sh = s.sw = stride;
    s.ph = s.pw = 1;
    return s;
  };
  return {{"3x32x32-16", conv(3, 32, 16, 1), 1},     {"16x32x32-16", conv(16, 32, 16, 1), 6},
          {"16x32x32-32s2", conv(16, 32, 32, 2), 1}, {"32x16x16-32", conv(32, 16, 32, 1), 5},
          {"32x16x16-64s2", conv(32, 16, 64, 2), 1}, {"64x8x8-64", conv(64, 8, 64, 1), 5}};
}

}  // namespace spush::bench

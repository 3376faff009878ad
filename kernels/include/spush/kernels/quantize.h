// Affine 8-bit quantization of fp32 tensors, the quantizer of 8-bit training
// (docs/ALGORITHMS.md §12):
//
//   QParams p = qparams(lo, hi):  p.scale = (hi - lo) / 255          (fp32, one rounding)
//   quantize:     t = (x - lo) / scale                               (fp32: a subtraction and a
//                                                                      division, each rounded)
//                 t is clamped to [0, 255] first: tc = t > 0 ? t : 0; tc = tc < 255 ? tc : 255
//                 (so NaN x gives 0 and +-inf give 0 / 255), then
//     kNearestEven:  q = the integer nearest tc, ties to even
//     kStochastic:   f = floor(tc), q = f + (u < tc - f ? 1 : 0)     (tc - f is exact)
//                    with u = stochastic_uniform(key, i) below, so that E[q] = tc up to the
//                    2^-24 resolution of u
//   dequantize:   x_hat = fl(fl(scale * q) + lo)                     (two roundings, no FMA)
//
// Degenerate and invalid ranges: qparams throws std::invalid_argument, naming the values, when
// lo or hi is not finite, when lo > hi, or when (hi - lo) overflows fp32. hi == lo (and a
// width so small that (hi - lo) / 255 underflows to 0) gives scale == 0: every x quantizes to
// q = 0 and dequantizes to lo.
//
// The stochastic stream: element e = key.offset + i (i the index in the call) draws
//   c = philox4x32_10({g, g >> 32, iteration, node}, seed ^ (iteration >> 32), seed >> 32)
//   u = (c.v[e % 4] >> 8) * 2^-24           with g = e / 4,
// i.e. one Philox call serves four consecutive elements (its four 32-bit outputs, in order),
// keyed like the compressors' philox_uniform (kernels/philox.h) but counting groups of four;
// a GPU thread per element or per group reproduces it bit for bit. Callers keep streams
// apart with distinct seeds (or offsets) per tensor; a split of one tensor into several calls
// with offsets gives the same bits as one call.
#pragma once
#include <cstdint>

#include "spush/kernels/philox.h"

namespace spush::kernels {

struct QParams {
  float lo = 0.0f;
  float scale = 0.0f;  // x_hat = scale * q + lo
};

// 8-bit parameters of the range [lo, hi]; see the file comment for the checks.
QParams qparams(float lo, float hi);

struct Range {
  float lo = 0.0f;
  float hi = 0.0f;
};

// Smallest and largest of x[0, n). Throws std::invalid_argument when n <= 0 or when an element
// is NaN or +-inf (naming its index and value).
Range minmax(const float* x, int64_t n);

// The activation range rule: the per-sample min and max of x[batch, per_sample], each
// averaged over the batch (the sum in fp64, divided by batch and rounded once to fp32).
// Throws like minmax.
Range minmax_batch_mean(const float* x, int64_t batch, int64_t per_sample);

enum class Rounding { kNearestEven, kStochastic };

struct StochasticKey {
  uint64_t seed = 0;
  uint32_t node = 0;
  uint64_t iteration = 0;
  uint64_t offset = 0;  // element index of x[0] in the stream
};

// The uniform of stream element e (see the file comment); host and device.
SPUSH_HD float stochastic_uniform(uint64_t seed, uint32_t node, uint64_t iteration, uint64_t e) {
  const uint64_t g = e >> 2;
  const Philox4 c{{static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32),
                   static_cast<uint32_t>(iteration), node}};
  const Philox4 r =
      philox4x32_10(c, static_cast<uint32_t>(seed) ^ static_cast<uint32_t>(iteration >> 32),
                    static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(r.v[e & 3] >> 8) * (1.0f / 16777216.0f);
}

// q[i] = Q(x[i]) for i < n (key is used only by kStochastic). OpenMP over large n; the result
// does not depend on the thread count.
void quantize_u8(const float* x, int64_t n, QParams p, Rounding r, StochasticKey key, uint8_t* q);

// x[i] = fl(fl(p.scale * q[i]) + p.lo).
void dequantize_u8(const uint8_t* q, int64_t n, QParams p, float* x);

}  // namespace spush::kernels

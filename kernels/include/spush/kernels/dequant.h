// Dequantization formulas shared by the compressors (compress_ef_cpu and its CUDA twin) and
// the wire decoder (codec.h): the receiver must rebuild bit for bit the values the sender
// mixed in and subtracted from its error buffer, so every kind evaluates its formula here,
// in fp32, in the order written. Device code uses the _rn intrinsics so nvcc does not fuse
// a multiply and an add into an FMA (host builds target baseline x86-64, which has none).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define SPUSH_DEQUANT_HD __host__ __device__ __forceinline__
#else
#define SPUSH_DEQUANT_HD inline
#endif

namespace spush::kernels {

namespace dequant_detail {
SPUSH_DEQUANT_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SPUSH_DEQUANT_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
SPUSH_DEQUANT_HD float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
SPUSH_DEQUANT_HD float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
// +1.0f for code >= 0, -1.0f for code < 0 (a zero code dequantizes to +0).
SPUSH_DEQUANT_HD float sign_of(int32_t code) { return code < 0 ? -1.0f : 1.0f; }
}  // namespace dequant_detail

// kQsgd with b bits: s = 2^b - 1 levels.
SPUSH_DEQUANT_HD int32_t qsgd_levels(int bits) { return (int32_t{1} << bits) - 1; }
// kFractional with q bits: L = 2^(q-1) geometric intervals per bucket.
SPUSH_DEQUANT_HD int32_t fractional_intervals(int bits) { return int32_t{1} << (bits - 1); }

// kQsgd: code = sign * level, level in [0, s]; c = sign * (norm * (float)level / (float)s).
// Level 0 gives +0.0f whatever the sign of the input was (the code cannot carry it).
SPUSH_DEQUANT_HD float dequant_qsgd(float norm, int32_t code, int32_t s) {
  const int32_t level = code < 0 ? -code : code;
  const float mag = dequant_detail::div(dequant_detail::mul(norm, static_cast<float>(level)),
                                        static_cast<float>(s));
  return dequant_detail::mul(dequant_detail::sign_of(code), mag);
}

// kSign: code = +-1; c = sign * scale with scale = ||v_bucket||_1 / len.
SPUSH_DEQUANT_HD float dequant_sign(float scale, int32_t code) {
  return dequant_detail::mul(dequant_detail::sign_of(code), scale);
}

// kMinMax8: scale = (hi - lo) / 255.0f; code in [0, 255]; c = lo + scale * (float)code.
SPUSH_DEQUANT_HD float minmax8_scale(float lo, float hi) {
  return dequant_detail::div(dequant_detail::sub(hi, lo), 255.0f);
}
SPUSH_DEQUANT_HD float dequant_minmax8(float lo, float scale, int32_t code) {
  return dequant_detail::add(lo, dequant_detail::mul(scale, static_cast<float>(code)));
}

// kFractional: code = sign * (interval + 1), interval in [0, L); means: the L interval means
// of the value's bucket; c = sign * means[interval].
SPUSH_DEQUANT_HD float dequant_fractional(const float* means, int32_t code) {
  const int32_t interval = (code < 0 ? -code : code) - 1;
  return dequant_detail::mul(dequant_detail::sign_of(code), means[interval]);
}

}  // namespace spush::kernels

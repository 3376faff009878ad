// Philox-4x32-10 counter-based RNG (Salmon et al., SC'11), usable on host and device.
// Stochastic rounding draws one uniform per element keyed by
// (seed, node, iteration, element), so CPU and GPU produce identical streams.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define SPUSH_HD __host__ __device__ __forceinline__
#else
#define SPUSH_HD inline
#endif

namespace spush::kernels {

struct Philox4 {
  uint32_t v[4];
};

SPUSH_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Ten rounds of Philox-4x32 on counter c with key k.
SPUSH_HD Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(kM0, c.v[0], &hi0);
    const uint32_t lo1 = philox_mulhilo(kM1, c.v[2], &hi1);
    c = Philox4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// Uniform in [0, 1) with 24 random bits, exactly representable in fp32.
SPUSH_HD float philox_uniform(uint64_t seed, uint32_t node, uint64_t iteration, uint64_t element) {
  Philox4 c{{static_cast<uint32_t>(element), static_cast<uint32_t>(element >> 32),
             static_cast<uint32_t>(iteration), node}};
  const Philox4 r =
      philox4x32_10(c, static_cast<uint32_t>(seed) ^ static_cast<uint32_t>(iteration >> 32),
                    static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(r.v[0] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace spush::kernels

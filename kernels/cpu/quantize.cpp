// Affine 8-bit quantization (kernels/include/spush/kernels/quantize.h). Built with
// -ffp-contract=off (kernels/CMakeLists.txt): every fp32 operation is rounded on its own, as the
// header specifies, whatever the target ISA.
#include "spush/kernels/quantize.h"

#include <fmt/format.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "quantize_internal.h"

namespace spush::kernels {
namespace {

constexpr int64_t kParallelMin = int64_t{1} << 17;  // elements below which one thread runs
constexpr int kLanes = 16;                          // minmax: independent accumulators
// Stochastic rounding: stream elements per block of uniforms.
constexpr int kChunk = static_cast<int>(quantize_internal::kStreamChunk);

// The clamp of the header: NaN -> 0, then [0, 255].
inline float clamp_t(float t) {
  const float a = t > 0.0f ? t : 0.0f;
  return a < 255.0f ? a : 255.0f;
}

// Round to nearest, ties to even, for 0 <= t <= 255: adding 2^23 leaves no fraction bits, so
// the addition rounds (in the default rounding mode, which spush never changes) to the nearest
// integer with ties to even, and the subtraction is exact.
inline float round_even(float t) {
  constexpr float kMagic = 8388608.0f;
  return (t + kMagic) - kMagic;
}

[[noreturn]] void throw_nonfinite(const char* fn, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw std::invalid_argument(fmt::format("{}: element {} is {}", fn, i, x[i]));
  throw std::logic_error(fmt::format("{}: no non-finite element found", fn));
}

// minmax of x[0, n) (n >= 1) with a finiteness flag, in kLanes independent lanes so that the
// compiler can vectorize it. NaN fails the `ok` test; +-inf fail `fabs <= max`.
Range minmax_unchecked(const char* fn, const float* x, int64_t n) {
  float lo[kLanes], hi[kLanes];
  int ok[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    lo[l] = x[0];
    hi[l] = x[0];
    ok[l] = 1;
  }
  const int64_t nb = n / kLanes * kLanes;
  for (int64_t i = 0; i < nb; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float v = x[i + l];
      lo[l] = v < lo[l] ? v : lo[l];
      hi[l] = v > hi[l] ? v : hi[l];
      ok[l] &= std::fabs(v) <= std::numeric_limits<float>::max() ? 1 : 0;
    }
  }
  for (int64_t i = nb; i < n; ++i) {
    const float v = x[i];
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
    ok[0] &= std::fabs(v) <= std::numeric_limits<float>::max() ? 1 : 0;
  }
  Range r{lo[0], hi[0]};
  int all = ok[0];
  for (int l = 1; l < kLanes; ++l) {
    r.lo = std::min(r.lo, lo[l]);
    r.hi = std::max(r.hi, hi[l]);
    all &= ok[l];
  }
  if (!all || !std::isfinite(x[0])) throw_nonfinite(fn, x, n);
  return r;
}

// The uniforms of stream elements 4 g0 .. 4 g0 + kChunk - 1: philox4x32_10 of the counters
// {g, g >> 32, it, node} for g = g0 .. g0 + kChunk / 4 - 1, written lane by lane so that the
// compiler can vectorize across groups (the same arithmetic as philox.h).
inline void philox_chunk(uint64_t g0, uint32_t it, uint32_t node, uint32_t k0, uint32_t k1,
                         float* u) {
  constexpr int kG = kChunk / 4;
  uint32_t v0[kG], v1[kG], v2[kG], v3[kG];
  for (int l = 0; l < kG; ++l) {
    const uint64_t g = g0 + static_cast<uint64_t>(l);
    v0[l] = static_cast<uint32_t>(g);
    v1[l] = static_cast<uint32_t>(g >> 32);
    v2[l] = it;
    v3[l] = node;
  }
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t a = k0, b = k1;
  for (int r = 0; r < 10; ++r) {
    for (int l = 0; l < kG; ++l) {
      const uint64_t p0 = static_cast<uint64_t>(kM0) * v0[l];
      const uint64_t p1 = static_cast<uint64_t>(kM1) * v2[l];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ v1[l] ^ a;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ v3[l] ^ b;
      v1[l] = static_cast<uint32_t>(p1);
      v3[l] = static_cast<uint32_t>(p0);
      v0[l] = n0;
      v2[l] = n2;
    }
    a += kW0;
    b += kW1;
  }
  constexpr float kTwoM24 = 1.0f / 16777216.0f;
  for (int l = 0; l < kG; ++l) {
    u[4 * l + 0] = static_cast<float>(v0[l] >> 8) * kTwoM24;
    u[4 * l + 1] = static_cast<float>(v1[l] >> 8) * kTwoM24;
    u[4 * l + 2] = static_cast<float>(v2[l] >> 8) * kTwoM24;
    u[4 * l + 3] = static_cast<float>(v3[l] >> 8) * kTwoM24;
  }
}

// The loops of quantize_u8, compiled for AVX-512 too (the clone is picked at load time). The
// clones give the same bits: the same IEEE operations in the same order, no FMA.
__attribute__((target_clones("avx512f", "default"))) void nearest_block(const float* x, int64_t n,
                                                                        float lo, float scale,
                                                                        uint8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const float t = clamp_t((x[i] - lo) / scale);
    q[i] = static_cast<uint8_t>(static_cast<int32_t>(round_even(t)));
  }
}

// Chunk c of the stream: elements c kChunk + first .. + first + len - 1 of it, x and q pointing
// at the first of them. The portable path: CPUs with AVX-512 run stochastic_chunk_avx512.
void stochastic_chunk(uint64_t c, int64_t first, int64_t len, const float* x, float lo, float scale,
                      uint32_t it, uint32_t node, uint32_t k0, uint32_t k1, uint8_t* q) {
  float u[kChunk];
  philox_chunk(c * (kChunk / 4), it, node, k0, k1, u);
  const float* uc = u + first;
  for (int64_t i = 0; i < len; ++i) {
    const float t = clamp_t((x[i] - lo) / scale);
    const int32_t fi = static_cast<int32_t>(t);  // floor: t >= 0
    const float f = static_cast<float>(fi);
    q[i] = static_cast<uint8_t>(fi + (uc[i] < t - f ? 1 : 0));
  }
}

// stochastic_chunk with AVX-512 intrinsics: 16 Philox counters per vector (the 32 x 32 -> 64
// products of the even and odd lanes by two vpmuludq), the four outputs of each counter
// transposed into stream order, then 16 roundings per vector with the same IEEE operations as
// the scalar loop (vsubps, vdivps; vmaxps / vminps give the clamp's NaN -> 0). Integer Philox
// is exact and the float operations are the same, so the bits equal stochastic_chunk's
// (tests/kernels/quantize_test.cpp compares with the scalar formulas).
__attribute__((target("avx512f"))) inline __m512i mulhi_lo(__m512i x, __m512i m, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(x, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  return _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

__attribute__((target("avx512f"))) void stochastic_chunk_avx512(uint64_t c, int64_t first,
                                                                int64_t len, const float* x,
                                                                float lo, float scale, uint32_t it,
                                                                uint32_t node, uint32_t k0,
                                                                uint32_t k1, uint8_t* q) {
  alignas(64) uint32_t bits[kChunk];
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const uint64_t g0 = c * (kChunk / 4);
  // First and one-past-last group of counters the elements [first, first + len) need.
  const int64_t gb = first / 4, ge = (first + len + 3) / 4;
  for (int64_t l0 = gb / 16 * 16; l0 < ge; l0 += 16) {
    // g0 is a multiple of 64, so g0 + l0 + lane never carries out of its low 32 bits here.
    const uint64_t g = g0 + static_cast<uint64_t>(l0);
    __m512i v0 =
        _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(g))), lane);
    __m512i v1 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(g >> 32)));
    __m512i v2 = _mm512_set1_epi32(static_cast<int>(it));
    __m512i v3 = _mm512_set1_epi32(static_cast<int>(node));
    uint32_t a = k0, b = k1;
    for (int r = 0; r < 10; ++r) {
      __m512i lo0, lo1;
      const __m512i hi0 = mulhi_lo(v0, m0, lo0);
      const __m512i hi1 = mulhi_lo(v2, m1, lo1);
      v0 = _mm512_xor_si512(_mm512_xor_si512(hi1, v1), _mm512_set1_epi32(static_cast<int>(a)));
      v2 = _mm512_xor_si512(_mm512_xor_si512(hi0, v3), _mm512_set1_epi32(static_cast<int>(b)));
      v1 = lo1;
      v3 = lo0;
      a += 0x9E3779B9u;
      b += 0xBB67AE85u;
    }
    // Lane l of v0..v3 is counter l's output 0..3; stream order is counter by counter.
    const __m512i t0 = _mm512_unpacklo_epi32(v0, v1), t1 = _mm512_unpackhi_epi32(v0, v1);
    const __m512i t2 = _mm512_unpacklo_epi32(v2, v3), t3 = _mm512_unpackhi_epi32(v2, v3);
    const __m512i r0 = _mm512_unpacklo_epi64(t0, t2), r1 = _mm512_unpackhi_epi64(t0, t2);
    const __m512i r2 = _mm512_unpacklo_epi64(t1, t3), r3 = _mm512_unpackhi_epi64(t1, t3);
    const __m512i s0 = _mm512_shuffle_i32x4(r0, r1, 0x44), s1 = _mm512_shuffle_i32x4(r2, r3, 0x44);
    const __m512i s2 = _mm512_shuffle_i32x4(r0, r1, 0xEE), s3 = _mm512_shuffle_i32x4(r2, r3, 0xEE);
    uint32_t* out = bits + 4 * l0;
    _mm512_store_si512(out, _mm512_shuffle_i32x4(s0, s1, 0x88));
    _mm512_store_si512(out + 16, _mm512_shuffle_i32x4(s0, s1, 0xDD));
    _mm512_store_si512(out + 32, _mm512_shuffle_i32x4(s2, s3, 0x88));
    _mm512_store_si512(out + 48, _mm512_shuffle_i32x4(s2, s3, 0xDD));
  }
  const __m512 vlo = _mm512_set1_ps(lo), vscale = _mm512_set1_ps(scale);
  const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.0f);
  const __m512 two_m24 = _mm512_set1_ps(1.0f / 16777216.0f);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t i = 0; i < len; i += 16) {
    const __mmask16 m =
        len - i >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (len - i)) - 1u);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 t = _mm512_div_ps(_mm512_sub_ps(xv, vlo), vscale);
    const __m512 tc = _mm512_min_ps(_mm512_max_ps(t, zero), top);  // NaN -> 0, then <= 255
    const __m512i fi = _mm512_cvttps_epi32(tc);
    const __m512 frac = _mm512_sub_ps(tc, _mm512_cvtepi32_ps(fi));
    const __m512i ub = _mm512_maskz_loadu_epi32(m, bits + first + i);
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(ub, 8)), two_m24);
    const __m512i qi = _mm512_mask_add_epi32(fi, _mm512_cmp_ps_mask(u, frac, _CMP_LT_OQ), fi, one);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, qi);
  }
}

bool have_avx512() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}

}  // namespace

QParams qparams(float lo, float hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi))
    throw std::invalid_argument(fmt::format("qparams: the range [{}, {}] is not finite", lo, hi));
  if (lo > hi)
    throw std::invalid_argument(fmt::format("qparams: lo = {} is above hi = {}", lo, hi));
  const float width = hi - lo;
  if (!std::isfinite(width))
    throw std::invalid_argument(
        fmt::format("qparams: the width of [{}, {}] overflows fp32", lo, hi));
  return QParams{lo, width / 255.0f};
}

Range minmax(const float* x, int64_t n) {
  if (n <= 0 || x == nullptr)
    throw std::invalid_argument(fmt::format("minmax: empty or null input (n = {})", n));
  if (n <= kParallelMin) return minmax_unchecked("minmax", x, n);
  const int64_t chunk = kParallelMin;
  const int64_t nchunks = (n + chunk - 1) / chunk;
  std::vector<Range> part(static_cast<size_t>(nchunks));
  std::vector<int64_t> bad(static_cast<size_t>(nchunks), -1);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b = c * chunk, len = std::min(chunk, n - b);
    try {
      part[c] = minmax_unchecked("minmax", x + b, len);
    } catch (const std::invalid_argument&) {
      bad[c] = b;
    }
  }
  for (int64_t c = 0; c < nchunks; ++c)
    if (bad[c] >= 0) throw_nonfinite("minmax", x, n);
  Range r = part[0];
  for (const Range& p : part) {
    r.lo = std::min(r.lo, p.lo);
    r.hi = std::max(r.hi, p.hi);
  }
  return r;
}

Range minmax_batch_mean(const float* x, int64_t batch, int64_t per_sample) {
  if (batch <= 0 || per_sample <= 0 || x == nullptr)
    throw std::invalid_argument(fmt::format(
        "minmax_batch_mean: empty or null input (batch = {}, per_sample = {})", batch, per_sample));
  std::vector<Range> r(static_cast<size_t>(batch));
  std::vector<int64_t> bad(static_cast<size_t>(batch), 0);
#pragma omp parallel for schedule(static) if (batch * per_sample > kParallelMin)
  for (int64_t b = 0; b < batch; ++b) {
    try {
      r[b] = minmax_unchecked("minmax_batch_mean", x + b * per_sample, per_sample);
    } catch (const std::invalid_argument&) {
      bad[b] = 1;
    }
  }
  for (int64_t b = 0; b < batch; ++b)
    if (bad[b]) throw_nonfinite("minmax_batch_mean", x, batch * per_sample);
  double lo = 0.0, hi = 0.0;
  for (const Range& s : r) {
    lo += s.lo;
    hi += s.hi;
  }
  return Range{static_cast<float>(lo / static_cast<double>(batch)),
               static_cast<float>(hi / static_cast<double>(batch))};
}

namespace quantize_internal {

void check_params(const char* who, QParams p) {
  if (!(p.scale >= 0.0f) || !std::isfinite(p.scale) || !std::isfinite(p.lo))
    throw std::invalid_argument(
        fmt::format("{}: invalid parameters lo = {}, scale = {}", who, p.lo, p.scale));
}

void quantize_span(const float* x, int64_t n, QParams p, Rounding r, const StochasticKey& key,
                   uint8_t* q) {
  if (n <= 0) return;
  const float lo = p.lo, scale = p.scale;
  if (r == Rounding::kNearestEven) {
    nearest_block(x, n, lo, scale, q);
    return;
  }
  // Stochastic: stream elements in chunks of kChunk (aligned in the stream, so the first and
  // last chunk of a span may be partial); per chunk the kChunk / 4 Philox calls run lane by lane
  // (vectorizable), then the rounding loop.
  const uint64_t e0 = key.offset, e1 = key.offset + static_cast<uint64_t>(n);
  const uint64_t c0 = e0 / kChunk, c1 = (e1 - 1) / kChunk + 1;
  const uint32_t k0 = static_cast<uint32_t>(key.seed) ^ static_cast<uint32_t>(key.iteration >> 32);
  const uint32_t k1 = static_cast<uint32_t>(key.seed >> 32);
  const uint32_t it = static_cast<uint32_t>(key.iteration);
  for (uint64_t c = c0; c < c1; ++c) {
    const uint64_t cb = c * kChunk;
    const uint64_t b = std::max(cb, e0), e = std::min(cb + kChunk, e1);
    (have_avx512() ? stochastic_chunk_avx512 : stochastic_chunk)(
        c, static_cast<int64_t>(b - cb), static_cast<int64_t>(e - b), x + (b - e0), lo, scale, it,
        key.node, k0, k1, q + (b - e0));
  }
}

}  // namespace quantize_internal

void quantize_u8(const float* x, int64_t n, QParams p, Rounding r, StochasticKey key, uint8_t* q) {
  if (n < 0) throw std::invalid_argument(fmt::format("quantize_u8: n = {} is negative", n));
  if (n == 0) return;
  if (x == nullptr || q == nullptr) throw std::invalid_argument("quantize_u8: null buffer");
  quantize_internal::check_params("quantize_u8", p);
  if (p.scale == 0.0f) {  // degenerate range: everything is lo
    std::memset(q, 0, static_cast<size_t>(n));
    return;
  }
  if (n <= kParallelMin) {
    quantize_internal::quantize_span(x, n, p, r, key, q);
    return;
  }
  // One span per thread, cut where the stream crosses a chunk boundary (each chunk's uniforms
  // are drawn once). Every q depends on its x and its stream element only, so the cut changes
  // no bit.
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    auto cut = [&](int64_t k) -> int64_t {
      if (k == 0) return 0;
      const uint64_t s = key.offset + static_cast<uint64_t>(n * k / nt);
      const uint64_t up = (s + kChunk - 1) / kChunk * kChunk;
      return std::min(n, static_cast<int64_t>(up - key.offset));
    };
    const int64_t b = cut(t), e = cut(t + 1);
    StochasticKey k = key;
    k.offset = key.offset + static_cast<uint64_t>(b);
    quantize_internal::quantize_span(x + b, e - b, p, r, k, q + b);
  }
}

void dequantize_u8(const uint8_t* q, int64_t n, QParams p, float* x) {
  if (n < 0) throw std::invalid_argument(fmt::format("dequantize_u8: n = {} is negative", n));
  if (n == 0) return;
  if (x == nullptr || q == nullptr) throw std::invalid_argument("dequantize_u8: null buffer");
  const float lo = p.lo, scale = p.scale;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = scale * static_cast<float>(q[i]) + lo;
}

}  // namespace spush::kernels

// Reproducible per-bucket sums for the dense compressors (compress.h): the sum of v^2 (qsgd
// norm) and of |v| (scaled sign) in double, in a fixed blocked order that a GPU can follow with
// full parallelism (kernels/cuda/compress_dense.cu) and a CPU with three nested loops:
//   tile   = 256 consecutive elements, summed sequentially from 0.0 in ascending order;
//   group  = 256 consecutive tiles (65,536 elements): its tile sums summed the same way;
//   bucket = its group sums summed the same way.
// A bucket of at most 256 elements gets exactly the plain sequential sum.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace spush::kernels {

inline constexpr int64_t kSumTile = 256;
inline constexpr int64_t kSumGroupTiles = 256;
inline constexpr int64_t kSumGroup = kSumTile * kSumGroupTiles;

// term(v[i]) summed over v[0..len) in the blocked order above.
// Example: double ss = blocked_sum(v, n, [](float a) { return double(a) * double(a); });
template <typename Term>
double blocked_sum(const float* v, int64_t len, Term term) {
  double bucket = 0.0;
  for (int64_t g = 0; g < len; g += kSumGroup) {
    const int64_t gend = std::min(len, g + kSumGroup);
    double group = 0.0;
    for (int64_t t = g; t < gend; t += kSumTile) {
      const int64_t tend = std::min(gend, t + kSumTile);
      double tile = 0.0;
      for (int64_t i = t; i < tend; ++i) tile += term(v[i]);
      group += tile;
    }
    bucket += group;
  }
  return bucket;
}

// sum (double)v[i]^2 (each square is exact in double), blocked order.
inline double sum_squares_blocked(const float* v, int64_t len) {
  return blocked_sum(v, len,
                     [](float a) { return static_cast<double>(a) * static_cast<double>(a); });
}

// sum |(double)v[i]|, blocked order.
inline double sum_abs_blocked(const float* v, int64_t len) {
  return blocked_sum(v, len, [](float a) { return std::fabs(static_cast<double>(a)); });
}

}  // namespace spush::kernels

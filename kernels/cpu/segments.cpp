// Per-segment top-K counts: K = max(1, ceil(density * len)) clamped to len (docs/ALGORITHMS.md
// §2.2), and the prefix sums that place each segment's K entries in a flat output row.
// These run on the host only; device code receives the finished k_offsets table.
#include "spush/kernels/segments.h"

#include <cmath>
#include <cstdio>
#include <string>

namespace spush::kernels {
namespace {

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

int64_t topk_count(int64_t len, double density) {
  if (!(density > 0.0 && density <= 1.0)) {
    throw std::invalid_argument("topk_count: density " + format_double(density) +
                                " is outside the accepted range (0, 1]");
  }
  if (len < 0) {
    throw std::invalid_argument("topk_count: segment length " + std::to_string(len) +
                                " is negative, expected >= 0");
  }
  if (len == 0) return 0;
  // density * len carries the rounding error of the decimal density (0.07 * 100 evaluates to
  // 7.000000000000001): a product within 1e-9 (relative) of an integer counts as that integer,
  // so the ceiling means the real product, not its rounding noise.
  const double t = density * static_cast<double>(len);
  const double nearest = std::round(t);
  const double c = std::fabs(t - nearest) <= 1e-9 * t ? nearest : std::ceil(t);
  const int64_t k = static_cast<int64_t>(c);
  return k < 1 ? 1 : (k > len ? len : k);
}

std::vector<int64_t> topk_offsets(SegmentView segs, double density) {
  if (segs.count < 0 || (segs.count > 0 && segs.offsets == nullptr)) {
    throw std::invalid_argument("topk_offsets: segment table with count " +
                                std::to_string(segs.count) +
                                " is invalid, expected count >= 0 and non-null offsets");
  }
  std::vector<int64_t> k_offsets(static_cast<size_t>(segs.count) + 1, 0);
  for (int s = 0; s < segs.count; ++s) {
    const int64_t len = segs.length(s);
    if (len < 0) {
      throw std::invalid_argument("topk_offsets: segment " + std::to_string(s) +
                                  " has negative length " + std::to_string(len) +
                                  ", expected non-decreasing offsets");
    }
    k_offsets[s + 1] = k_offsets[s] + topk_count(len, density);
  }
  return k_offsets;
}

}  // namespace spush::kernels

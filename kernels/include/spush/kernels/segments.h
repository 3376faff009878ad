// A segment table over a flat parameter row: segment s covers [offsets[s], offsets[s+1]).
// The kernels see only offsets; names and shapes live in the runtime's layout.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace spush::kernels {

struct SegmentView {
  const int64_t* offsets = nullptr;  // [count + 1], offsets[0] == 0, non-decreasing
  int count = 0;
  int64_t length(int s) const { return offsets[s + 1] - offsets[s]; }
  int64_t total() const { return count ? offsets[count] : 0; }
};

// Number of values top-K keeps from a segment of length len at density rho:
// max(1, ceil(rho * len)), clamped to len; 0 for an empty segment. A product rho * len
// within 1e-9 (relative) of an integer counts as that integer (0.07 * 100 keeps 7, not 8).
// Throws std::invalid_argument for rho outside (0, 1] or len < 0.
int64_t topk_count(int64_t len, double density);

// k_offsets[s+1] - k_offsets[s] = topk_count(length(s), density); returns k_offsets (count + 1).
std::vector<int64_t> topk_offsets(SegmentView segs, double density);

}  // namespace spush::kernels

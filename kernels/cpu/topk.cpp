// Top-K by magnitude over fp32 rows (CPU reference, spec in spush/kernels/topk.h).
// Selection is a most-significant-digit radix select over the IEEE bit pattern of |x|
// (sign bit cleared: for non-NaN floats the unsigned order of those bits is the order of |x|),
// four 8-bit digits, O(len) per segment and no scratch memory. Ties at the K-th magnitude go
// to the lower index; the output is written by one ascending scan, so it is in index order.
#include "spush/kernels/topk.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace spush::kernels {
namespace {

// |x| as an order-preserving unsigned key: +0.0 and -0.0 both map to 0, +-inf to 0x7F800000.
inline uint32_t magnitude_key(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits & 0x7FFFFFFFu;
}

// Threshold of a selection: every key > `key` is kept, plus the first `ties` entries (lowest
// indices) whose key equals `key`.
struct Threshold {
  uint32_t key = 0;
  int64_t ties = 0;
};

// The K-th largest key of x[0..len) and how many of its ties are kept (1 <= k <= len).
// Pass p fixes digit p (bits 31-8p .. 24-8p) of the K-th largest key: histogram the digits of
// the keys that share the digits fixed so far, then walk down from digit 255 until the
// remaining count `need` falls inside one bucket.
Threshold radix_select_threshold(const float* x, int64_t len, int64_t k) {
  uint32_t prefix = 0, mask = 0;
  int64_t need = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    int64_t hist[256] = {};
    for (int64_t i = 0; i < len; ++i) {
      const uint32_t key = magnitude_key(x[i]);
      if ((key & mask) == prefix) ++hist[(key >> shift) & 0xFFu];
    }
    int digit = 255;
    while (hist[digit] < need) need -= hist[digit--];
    prefix |= static_cast<uint32_t>(digit) << shift;
    mask |= 0xFFu << shift;
  }
  return Threshold{prefix, need};
}

// Keeps the k entries of largest |x| of x[0..len), writes them in ascending index order.
// idx gets `base + i` (row-local index). Assumes no NaN in x.
void select_segment(const float* x, int64_t len, int64_t k, int64_t base, int32_t* idx,
                    float* val) {
  if (k == 0) return;
  int64_t out = 0;
  if (k == len) {
    for (int64_t i = 0; i < len; ++i, ++out) {
      idx[out] = static_cast<int32_t>(base + i);
      val[out] = x[i];
    }
    return;
  }
  Threshold t = radix_select_threshold(x, len, k);
  for (int64_t i = 0; i < len && out < k; ++i) {
    const uint32_t key = magnitude_key(x[i]);
    if (key > t.key || (key == t.key && t.ties-- > 0)) {
      idx[out] = static_cast<int32_t>(base + i);
      val[out] = x[i];
      ++out;
    }
  }
}

// Index of the first NaN in x[0..len), or -1.
int64_t first_nan(const float* x, int64_t len) {
  for (int64_t i = 0; i < len; ++i) {
    if (std::isnan(x[i])) return i;
  }
  return -1;
}

void check_tables(const char* fn, int64_t rows, int64_t ld, SegmentView segs,
                  const int64_t* k_offsets) {
  const std::string f = fn;
  if (rows < 0) throw std::invalid_argument(f + ": rows = " + std::to_string(rows) + " < 0");
  if (segs.count < 0) {
    throw std::invalid_argument(f + ": segment count " + std::to_string(segs.count) + " < 0");
  }
  if (segs.count == 0) return;
  if (segs.offsets == nullptr || k_offsets == nullptr) {
    throw std::invalid_argument(f + ": segment offsets and k_offsets must be non-null");
  }
  if (segs.offsets[0] != 0 || k_offsets[0] != 0) {
    throw std::invalid_argument(f + ": offsets[0] and k_offsets[0] must be 0");
  }
  for (int s = 0; s < segs.count; ++s) {
    const int64_t len = segs.length(s);
    const int64_t k = k_offsets[s + 1] - k_offsets[s];
    if (len < 0) {
      throw std::invalid_argument(f + ": segment " + std::to_string(s) + " has length " +
                                  std::to_string(len) + ", expected non-decreasing offsets");
    }
    if (k < 0 || k > len) {
      throw std::invalid_argument(f + ": segment " + std::to_string(s) + " keeps " +
                                  std::to_string(k) + " entries, expected 0 <= k <= length " +
                                  std::to_string(len));
    }
    if (k == 0 && len > 0) {
      throw std::invalid_argument(f + ": segment " + std::to_string(s) + " of length " +
                                  std::to_string(len) +
                                  " keeps K = 0 entries; a non-empty segment keeps K >= 1 "
                                  "(topk_offsets gives max(1, ceil(density * length)))");
    }
  }
  const int64_t d = segs.total();
  if (d > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(f + ": row length " + std::to_string(d) +
                                " does not fit the int32 output indices");
  }
  if (rows > 1 && ld < d) {
    throw std::invalid_argument(f + ": leading dimension " + std::to_string(ld) +
                                " is smaller than the row length " + std::to_string(d));
  }
}

}  // namespace

void topk_cpu(const float* x, int64_t n, int64_t k, int32_t* idx, float* val) {
  if (n < 0 || k < 0 || k > n || (k == 0 && n > 0)) {
    throw std::invalid_argument("topk_cpu: k = " + std::to_string(k) +
                                " and n = " + std::to_string(n) +
                                ", expected 1 <= k <= n (k = 0 only for n = 0)");
  }
  const int64_t offsets[2] = {0, n};
  const int64_t k_offsets[2] = {0, k};
  topk_batched_cpu(x, 1, n, SegmentView{offsets, 1}, k_offsets, idx, val);
}

void topk_batched_cpu(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                      const int64_t* k_offsets, int32_t* idx, float* val) {
  check_tables("topk_batched_cpu", rows, ld, segs, k_offsets);
  if (rows == 0 || segs.count == 0) return;
  const int64_t nseg = segs.count;
  const int64_t k_row = k_offsets[nseg];
  const int64_t tasks = rows * nseg;
  // nan_at[t]: first NaN of task t (row-local index), or -1. Exceptions may not leave an
  // OpenMP region, so tasks record and the first NaN in (row, index) order is reported after.
  std::vector<int64_t> nan_at(static_cast<size_t>(tasks), -1);
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1 && rows * segs.total() > (1 << 15))
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t r = t / nseg;
    const int s = static_cast<int>(t % nseg);
    const int64_t begin = segs.offsets[s];
    const int64_t len = segs.length(s);
    const float* xs = x + r * ld + begin;
    const int64_t bad = first_nan(xs, len);
    if (bad >= 0) {
      nan_at[t] = begin + bad;
      continue;
    }
    const int64_t out = r * k_row + k_offsets[s];
    select_segment(xs, len, k_offsets[s + 1] - k_offsets[s], begin, idx + out, val + out);
  }
  for (int64_t t = 0; t < tasks; ++t) {
    if (nan_at[t] >= 0) {
      throw std::invalid_argument("topk_batched_cpu: NaN in the input at row " +
                                  std::to_string(t / nseg) + ", index " +
                                  std::to_string(nan_at[t]) + "; top-K needs NaN-free values");
    }
  }
}

#ifndef SPUSH_HAVE_CUDA
size_t topk_batched_workspace_size(int64_t, int64_t, int, int64_t) {
  throw std::runtime_error("topk_batched_workspace_size: this build has no CUDA support");
}

void topk_batched_cuda(const float*, int64_t, int64_t, SegmentView, const int64_t*, int32_t*,
                       float*, void*, size_t, int*, Stream) {
  throw std::runtime_error("topk_batched_cuda: this build has no CUDA support");
}
#endif

}  // namespace spush::kernels

// Compression operators with error feedback (CPU reference; spec in spush/kernels/compress.h,
// math in docs/ALGORITHMS.md §2). One row v = x + e is compressed bucket by bucket into
// `Compressed` (wire form + dequantized values) and e becomes v - c.
// Every rounding step is pinned down so that a CUDA port matches this file bit for bit, and
// the dequantized values come from spush/kernels/dequant.h, the formulas the wire decoder uses,
// so receivers rebuild exactly the c the sender mixed in. All float expressions are separately
// rounded fp32 operations (no FMA: CUDA spells them __fmul_rn / __fdiv_rn / __fadd_rn).
//
// Per-bucket statistics accumulate in double and round to float once:
//   qsgd norm = (float)sqrt(sum (double)v^2);  sign scale = (float)(sum |(double)v| / len),
//   both summed in the blocked order of spush/kernels/bucket_sum.h (the GPU's order);
//   fractional interval means = (float)(sum |(double)v| / count), kept values in index order;
//   minmax8 lo/hi = min/max v.
// Per element (u = philox_uniform(seed, node, iteration, i), i the row-local index):
//   qsgd     l = (|v| / norm) * (float)s;  level = min(s, (int)floorf(l) + (u < l - floorf(l)));
//            code = v < 0 ? -level : level;  c = dequant_qsgd(norm, code, s)
//   sign     code = v < 0 ? -1 : +1;  c = dequant_sign(scale, code)
//   minmax8  step = minmax8_scale(lo, hi);  code = clamp(rint_half_even((v - lo) / step), 0, 255)
//            (0 when step == 0);  c = dequant_minmax8(lo, step, code)
//   randomk  c = v * (float)((double)len / (double)K) with randomk_scale, else c = v
//   topk     c = v
//   e = v - c (one float subtraction), and e = v where nothing is sent.
#include "spush/kernels/compress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include "spush/kernels/bucket_sum.h"
#include "spush/kernels/dequant.h"
#include "spush/kernels/philox.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this many elements, stay single-threaded

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

void check_segments(const char* fn, SegmentView segs) {
  const std::string f = fn;
  if (segs.count < 0 || (segs.count > 0 && segs.offsets == nullptr)) {
    throw std::invalid_argument(f + ": segment table with count " + std::to_string(segs.count) +
                                " is invalid, expected count >= 0 and non-null offsets");
  }
  if (segs.count > 0 && segs.offsets[0] != 0) {
    throw std::invalid_argument(f + ": offsets[0] = " + std::to_string(segs.offsets[0]) +
                                ", expected 0");
  }
  for (int s = 0; s < segs.count; ++s) {
    if (segs.length(s) < 0) {
      throw std::invalid_argument(f + ": segment " + std::to_string(s) + " has length " +
                                  std::to_string(segs.length(s)) +
                                  ", expected non-decreasing offsets");
    }
  }
}

// v = x + e (float add), or v = x without error feedback. Throws before anything is written
// if some v is not finite, naming the first such index.
void form_v(SegmentView segs, const float* x, const float* e, std::vector<float>& v) {
  const int64_t d = segs.total();
  v.resize(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) v[i] = e ? x[i] + e[i] : x[i];
  for (int64_t i = 0; i < d; ++i) {
    if (!std::isfinite(v[i])) {
      const int s = static_cast<int>(
          std::upper_bound(segs.offsets, segs.offsets + segs.count + 1, i) - segs.offsets - 1);
      throw std::invalid_argument(
          "compress_ef_cpu: v = x + e is " + std::string(std::isnan(v[i]) ? "NaN" : "infinite") +
          " at index " + std::to_string(i) + " (bucket " + std::to_string(s) +
          ", x = " + format_double(x[i]) + (e ? ", e = " + format_double(e[i]) : "") +
          "); compression needs finite values");
    }
  }
}

// Top-K per bucket of v into out.idx / out.val (c = v on the kept entries).
void compress_topk(SegmentView segs, const std::vector<float>& v,
                   const std::vector<int64_t>& k_offsets, Compressed& out) {
  const int64_t k = k_offsets.back();
  out.idx.resize(static_cast<size_t>(k));
  out.val.resize(static_cast<size_t>(k));
  topk_batched_cpu(v.data(), 1, segs.total(), segs, k_offsets.data(), out.idx.data(),
                   out.val.data());
}

// Random-K: per bucket the K entries with the smallest keys u_i = philox_uniform(.., i), ties
// to the lower index. That is top-K of w_i = 1 - u_i, exact in float (u has 24 bits) and > 0.
void compress_randomk(const CompressorSpec& spec, SegmentView segs, const std::vector<float>& v,
                      const std::vector<int64_t>& k_offsets, uint32_t node, uint64_t iteration,
                      Compressed& out) {
  const int64_t d = segs.total();
  std::vector<float> w(static_cast<size_t>(d));
#pragma omp parallel for schedule(static) if (d > kParallelMin)
  for (int64_t i = 0; i < d; ++i) {
    w[i] = 1.0f - philox_uniform(spec.seed, node, iteration, static_cast<uint64_t>(i));
  }
  const int64_t k = k_offsets.back();
  out.idx.resize(static_cast<size_t>(k));
  out.val.resize(static_cast<size_t>(k));
  topk_batched_cpu(w.data(), 1, d, segs, k_offsets.data(), out.idx.data(), out.val.data());
  for (int s = 0; s < segs.count; ++s) {
    const int64_t kb = k_offsets[s + 1] - k_offsets[s];
    const float scale =
        kb > 0 && spec.randomk_scale
            ? static_cast<float>(static_cast<double>(segs.length(s)) / static_cast<double>(kb))
            : 1.0f;
    for (int64_t j = k_offsets[s]; j < k_offsets[s + 1]; ++j) {
      out.val[j] = spec.randomk_scale ? v[out.idx[j]] * scale : v[out.idx[j]];
      if (std::isinf(out.val[j])) {
        throw std::invalid_argument("compress_ef_cpu: randomk scaling of v[" +
                                    std::to_string(out.idx[j]) +
                                    "] = " + format_double(v[out.idx[j]]) +
                                    " by len/K = " + format_double(scale) + " overflows fp32");
      }
    }
  }
}

// Fractional quantizer (docs/ALGORITHMS.md §2.2, after [MV, Sec. 4.3.2]) on the top-K entries
// already in out.idx / out.val.
// Per bucket, with vmax = max kept |v| and vmin = min NONZERO kept |v|, L = 2^(bits-1):
// boundaries B_0 = vmax > B_1 > ... > B_L = vmin, B_j = vmax / a^j, a = (vmax/vmin)^(1/L),
// computed without pow as geometric midpoints in double, B_mid = sqrt(B_lo * B_hi) (L is a
// power of two, so bisection reaches every B_j; sqrt and * are correctly rounded everywhere).
// Interval j (the paper's I_{j+1}) of a kept value: j = #{t in 1..L-1 : |v| < B_t}, so
// I_0 = [B_1, B_0] holds vmax and a value on a boundary goes to the upper interval. Kept zeros
// (a bucket with fewer than K nonzeros) fall into I_{L-1}; a bucket of kept zeros is all I_0.
// Sent: sign and j per value (code = +-(j+1)), and the L means of |v| per interval (0 if empty).
void quantize_fractional(const CompressorSpec& spec, SegmentView segs,
                         const std::vector<int64_t>& k_offsets, Compressed& out) {
  const int levels = fractional_intervals(spec.bits);
  out.scale.assign(static_cast<size_t>(segs.count) * levels, 0.0f);
  out.code.resize(out.val.size());
#pragma omp parallel for schedule(dynamic, 1) if (k_offsets.back() > kParallelMin)
  for (int s = 0; s < segs.count; ++s) {
    const int64_t begin = k_offsets[s], end = k_offsets[s + 1];
    if (begin == end) continue;
    float vmax = 0.0f, vmin = std::numeric_limits<float>::infinity();
    for (int64_t j = begin; j < end; ++j) {
      const float a = std::fabs(out.val[j]);
      vmax = std::max(vmax, a);
      if (a > 0.0f) vmin = std::min(vmin, a);
    }
    if (vmax == 0.0f) vmin = 0.0f;
    std::vector<double> bound(static_cast<size_t>(levels) + 1);
    bound[0] = vmax;
    bound[levels] = vmin;
    for (int step = levels / 2; step >= 1; step /= 2) {
      for (int t = step; t < levels; t += 2 * step) {
        bound[t] = std::sqrt(bound[t - step] * bound[t + step]);
      }
    }
    std::vector<double> sum(levels, 0.0);
    std::vector<int64_t> count(levels, 0);
    for (int64_t j = begin; j < end; ++j) {
      const double a = std::fabs(out.val[j]);
      // bound is non-increasing, so the t with a < B_t form a prefix of 1..L-1.
      const int interval =
          static_cast<int>(std::partition_point(bound.begin() + 1, bound.begin() + levels,
                                                [a](double b) { return a < b; }) -
                           (bound.begin() + 1));
      out.code[j] = static_cast<int16_t>(out.val[j] < 0.0f ? -(interval + 1) : interval + 1);
      sum[interval] += a;
      ++count[interval];
    }
    float* mean = out.scale.data() + static_cast<size_t>(s) * levels;
    for (int t = 0; t < levels; ++t) {
      mean[t] = count[t] ? static_cast<float>(sum[t] / static_cast<double>(count[t])) : 0.0f;
    }
    for (int64_t j = begin; j < end; ++j) out.val[j] = dequant_fractional(mean, out.code[j]);
  }
}

// QSGD, scaled sign and min-max 8-bit: dense, one parameter pass then one element pass per
// bucket. out.val gets c, out.code the per-element code, out.scale the bucket parameters.
void compress_dense(const CompressorSpec& spec, SegmentView segs, const std::vector<float>& v,
                    uint32_t node, uint64_t iteration, Compressed& out) {
  const int64_t d = segs.total();
  const int nseg = segs.count;
  const int per_bucket = spec.kind == CompressorKind::kMinMax8 ? 2 : 1;
  out.scale.assign(static_cast<size_t>(nseg) * per_bucket, 0.0f);
  out.val.resize(static_cast<size_t>(d));
  out.code.resize(static_cast<size_t>(d));

  // Pass 1: bucket parameters, each a double accumulation rounded once.
#pragma omp parallel for schedule(dynamic, 1) if (d > kParallelMin)
  for (int s = 0; s < nseg; ++s) {
    const float* vb = v.data() + segs.offsets[s];
    const int64_t len = segs.length(s);
    if (len == 0) continue;
    if (spec.kind == CompressorKind::kQsgd) {
      out.scale[s] = static_cast<float>(std::sqrt(sum_squares_blocked(vb, len)));
    } else if (spec.kind == CompressorKind::kSign) {
      out.scale[s] = static_cast<float>(sum_abs_blocked(vb, len) / static_cast<double>(len));
    } else {
      float lo = vb[0], hi = vb[0];
      for (int64_t i = 1; i < len; ++i) {
        lo = std::min(lo, vb[i]);
        hi = std::max(hi, vb[i]);
      }
      out.scale[2 * s] = lo;
      out.scale[2 * s + 1] = hi;
    }
  }
  // Parameters whose dequantization would overflow fp32 (only for |v| near 1e36 and beyond).
  const int levels = qsgd_levels(spec.bits);
  for (int s = 0; s < nseg; ++s) {
    if (segs.length(s) == 0) continue;
    if (spec.kind == CompressorKind::kQsgd &&
        std::isinf(out.scale[s] * static_cast<float>(levels))) {
      throw std::invalid_argument("compress_ef_cpu: qsgd bucket " + std::to_string(s) +
                                  " has L2 norm " + format_double(out.scale[s]) +
                                  "; norm * s must stay below 3.4e38 in fp32");
    }
    if (spec.kind == CompressorKind::kMinMax8 &&
        std::isinf(minmax8_scale(out.scale[2 * s], out.scale[2 * s + 1]))) {
      throw std::invalid_argument("compress_ef_cpu: minmax8 bucket " + std::to_string(s) +
                                  " has range [" + format_double(out.scale[2 * s]) + ", " +
                                  format_double(out.scale[2 * s + 1]) +
                                  "] whose width overflows fp32");
    }
  }

  // Pass 2: per element, parallel inside each bucket (one uniform per element, keyed by i).
#pragma omp parallel if (d > kParallelMin)
  for (int s = 0; s < nseg; ++s) {
    const int64_t begin = segs.offsets[s], end = segs.offsets[s + 1];
    if (spec.kind == CompressorKind::kQsgd) {
      const float norm = out.scale[s];
      const float sf = static_cast<float>(levels);
#pragma omp for schedule(static)
      for (int64_t i = begin; i < end; ++i) {
        int level = 0;
        if (norm > 0.0f) {
          const float l = (std::fabs(v[i]) / norm) * sf;
          const float fl = std::floor(l);
          const float u = philox_uniform(spec.seed, node, iteration, static_cast<uint64_t>(i));
          level = std::min(levels, static_cast<int>(fl) + (u < l - fl ? 1 : 0));
        }
        const int code = v[i] < 0.0f ? -level : level;
        out.code[i] = static_cast<int16_t>(code);
        out.val[i] = dequant_qsgd(norm, code, levels);
      }
    } else if (spec.kind == CompressorKind::kSign) {
      const float scale = out.scale[s];
#pragma omp for schedule(static)
      for (int64_t i = begin; i < end; ++i) {
        const int code = v[i] < 0.0f ? -1 : 1;  // sign(0) = sign(-0) = +1
        out.code[i] = static_cast<int16_t>(code);
        out.val[i] = dequant_sign(scale, code);
      }
    } else {
      const float lo = out.scale[2 * s];
      const float step = minmax8_scale(lo, out.scale[2 * s + 1]);
#pragma omp for schedule(static)
      for (int64_t i = begin; i < end; ++i) {
        int code = 0;
        if (step > 0.0f) {
          // nearbyint rounds half to even in the default rounding mode.
          const float q = std::nearbyint((v[i] - lo) / step);
          code = static_cast<int>(std::clamp(q, 0.0f, 255.0f));
        }
        out.code[i] = static_cast<int16_t>(code);
        out.val[i] = dequant_minmax8(lo, step, code);
      }
    }
  }
}

}  // namespace

const char* to_string(CompressorKind kind) {
  switch (kind) {
    case CompressorKind::kIdentity:
      return "identity";
    case CompressorKind::kTopK:
      return "topk";
    case CompressorKind::kRandomK:
      return "randomk";
    case CompressorKind::kQsgd:
      return "qsgd";
    case CompressorKind::kSign:
      return "sign";
    case CompressorKind::kFractional:
      return "fractional";
    case CompressorKind::kMinMax8:
      return "minmax8";
  }
  return "unknown";
}

const char* to_string(IndexCodec codec) {
  switch (codec) {
    case IndexCodec::kRaw32:
      return "raw32";
    case IndexCodec::kLocal16:
      return "local16";
    case IndexCodec::kBlockPosition:
      return "block";
  }
  return "unknown";
}

CompressorKind compressor_kind_from_string(std::string_view name) {
  if (name == "identity" || name == "none") return CompressorKind::kIdentity;
  if (name == "topk") return CompressorKind::kTopK;
  if (name == "randomk") return CompressorKind::kRandomK;
  if (name == "qsgd") return CompressorKind::kQsgd;
  if (name == "sign") return CompressorKind::kSign;
  if (name == "fractional") return CompressorKind::kFractional;
  if (name == "minmax8") return CompressorKind::kMinMax8;
  throw std::invalid_argument("unknown compressor kind '" + std::string(name) +
                              "'; accepted: identity (or none), topk, randomk, qsgd, sign, "
                              "fractional, minmax8");
}

IndexCodec index_codec_from_string(std::string_view name) {
  if (name == "raw32") return IndexCodec::kRaw32;
  if (name == "local16") return IndexCodec::kLocal16;
  if (name == "block") return IndexCodec::kBlockPosition;
  throw std::invalid_argument("unknown index codec '" + std::string(name) +
                              "'; accepted: raw32, local16, block");
}

bool is_sparse(CompressorKind kind) {
  return kind == CompressorKind::kTopK || kind == CompressorKind::kRandomK ||
         kind == CompressorKind::kFractional;
}

void validate(const CompressorSpec& spec) {
  const int kind = static_cast<int>(spec.kind);
  if (kind < static_cast<int>(CompressorKind::kIdentity) ||
      kind > static_cast<int>(CompressorKind::kMinMax8)) {
    throw std::invalid_argument("CompressorSpec.kind = " + std::to_string(kind) +
                                " is not a CompressorKind (accepted: identity, topk, randomk, "
                                "qsgd, sign, fractional, minmax8)");
  }
  const int codec = static_cast<int>(spec.index_codec);
  if (codec < static_cast<int>(IndexCodec::kRaw32) ||
      codec > static_cast<int>(IndexCodec::kBlockPosition)) {
    throw std::invalid_argument("CompressorSpec.index_codec = " + std::to_string(codec) +
                                " is not an IndexCodec (accepted: raw32, local16, block)");
  }
  if (is_sparse(spec.kind) && !(spec.density > 0.0 && spec.density <= 1.0)) {
    throw std::invalid_argument("CompressorSpec.density = " + format_double(spec.density) +
                                " for " + to_string(spec.kind) + ", expected a fraction in (0, 1]");
  }
  if (spec.kind == CompressorKind::kQsgd && spec.bits != 1 && spec.bits != 2 && spec.bits != 4 &&
      spec.bits != 8) {
    throw std::invalid_argument("CompressorSpec.bits = " + std::to_string(spec.bits) +
                                " for qsgd, expected 1, 2, 4 or 8");
  }
  if (spec.kind == CompressorKind::kFractional && (spec.bits < 2 || spec.bits > 9)) {
    throw std::invalid_argument("CompressorSpec.bits = " + std::to_string(spec.bits) +
                                " for fractional, expected 2..9");
  }
}

void compress_ef_cpu(const CompressorSpec& spec, SegmentView segs, const float* x, float* e,
                     Compressed& out, uint32_t node, uint64_t iteration) {
  validate(spec);
  check_segments("compress_ef_cpu", segs);
  const int64_t d = segs.total();
  if (is_sparse(spec.kind) && d > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("compress_ef_cpu: row length " + std::to_string(d) +
                                " does not fit the int32 indices of " + to_string(spec.kind));
  }
  std::vector<float> v;
  form_v(segs, x, e, v);

  out.kind = spec.kind;
  out.idx.clear();
  out.val.clear();
  out.scale.clear();
  out.code.clear();
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      out.val = v;
      break;
    case CompressorKind::kTopK:
      compress_topk(segs, v, topk_offsets(segs, spec.density), out);
      break;
    case CompressorKind::kRandomK:
      compress_randomk(spec, segs, v, topk_offsets(segs, spec.density), node, iteration, out);
      break;
    case CompressorKind::kFractional: {
      const std::vector<int64_t> k_offsets = topk_offsets(segs, spec.density);
      compress_topk(segs, v, k_offsets, out);
      quantize_fractional(spec, segs, k_offsets, out);
      break;
    }
    case CompressorKind::kQsgd:
    case CompressorKind::kSign:
    case CompressorKind::kMinMax8:
      compress_dense(spec, segs, v, node, iteration, out);
      break;
  }

  if (e == nullptr) return;
  if (is_sparse(spec.kind)) {
    // c is zero off the kept entries, so e = v there; on them e = v - c (exactly 0 for top-K
    // and unscaled random-K, whose c is v itself).
    std::copy(v.begin(), v.end(), e);
    for (size_t j = 0; j < out.idx.size(); ++j) e[out.idx[j]] = v[out.idx[j]] - out.val[j];
  } else {
#pragma omp parallel for schedule(static) if (d > kParallelMin)
    for (int64_t i = 0; i < d; ++i) e[i] = v[i] - out.val[i];
  }
}

void axpy_compressed_cpu(float w, const Compressed& c, SegmentView segs, float* y) {
  check_segments("axpy_compressed_cpu", segs);
  const int64_t d = segs.total();
  if (is_sparse(c.kind)) {
    if (c.idx.size() != c.val.size()) {
      throw std::invalid_argument("axpy_compressed_cpu: " + std::to_string(c.idx.size()) +
                                  " indices but " + std::to_string(c.val.size()) +
                                  " values, expected equal counts for a sparse message");
    }
    for (size_t j = 0; j < c.idx.size(); ++j) {
      const int32_t lower = j == 0 ? 0 : c.idx[j - 1] + 1;
      if (c.idx[j] < lower || c.idx[j] >= d) {
        throw std::invalid_argument("axpy_compressed_cpu: index " + std::to_string(c.idx[j]) +
                                    " at position " + std::to_string(j) +
                                    " is out of order or outside the row [0, " + std::to_string(d) +
                                    "), expected ascending indices");
      }
    }
    const int64_t k = static_cast<int64_t>(c.idx.size());
    // Indices are distinct (ascending), so the scattered updates never collide.
#pragma omp parallel for schedule(static) if (k > kParallelMin)
    for (int64_t j = 0; j < k; ++j) y[c.idx[j]] += w * c.val[j];
  } else {
    if (static_cast<int64_t>(c.val.size()) != d) {
      throw std::invalid_argument("axpy_compressed_cpu: dense message of " +
                                  std::to_string(c.val.size()) + " values for a row of " +
                                  std::to_string(d) + ", expected equal lengths");
    }
#pragma omp parallel for schedule(static) if (d > kParallelMin)
    for (int64_t i = 0; i < d; ++i) y[i] += w * c.val[i];
  }
}

}  // namespace spush::kernels

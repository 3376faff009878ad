// 8-bit convolution and linear ops (kernels/include/spush/kernels/conv_int8.h): the reference
// loops, the fp32 and requantizing epilogues, the tap sums of the fast paths, and the oneDNN
// convolution / deconvolution plans.
// Built with -ffp-contract=off (kernels/CMakeLists.txt): the epilogue rounds each operation.
#include "spush/kernels/conv_int8.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifdef SPUSH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "quantize_internal.h"

namespace spush::kernels {
namespace {

// Work (elements or multiply-adds) below which a loop runs on one thread: an OpenMP region costs
// microseconds, and far more on a machine whose cores are busy with other jobs.
constexpr int64_t kParallelMin = int64_t{1} << 16;

void check_forward(const ConvShape& s, const char* who) {
  s.check(who);
  if (s.k() > kMaxInt8GemmK)
    throw std::invalid_argument(fmt::format(
        "{}: reduction length cin kh kw = {} above {}: the int32 sums could overflow ({})", who,
        s.k(), kMaxInt8GemmK, s.str()));
}

void check_backward(const ConvShape& s, const char* who) {
  s.check(who);
  if (s.cout * s.kh * s.kw > kMaxInt8GemmK)
    throw std::invalid_argument(fmt::format(
        "{}: reduction length cout kh kw = {} above {}: the int32 sums could overflow ({})", who,
        s.cout * s.kh * s.kw, kMaxInt8GemmK, s.str()));
}

void check_ptrs(const char* who, const void* a, const void* b, const void* c) {
  if (a == nullptr || b == nullptr || c == nullptr)
    throw std::invalid_argument(fmt::format("{}: null buffer", who));
}

// Forward: the kernel rows r in [lo, hi) that read a real input row for output row i.
struct TapRange {
  int64_t lo, hi;
  int64_t count() const { return hi > lo ? hi - lo : 0; }
};
TapRange forward_taps(int64_t i, int64_t stride, int64_t pad, int64_t k, int64_t in) {
  const int64_t base = i * stride - pad;
  return TapRange{std::max<int64_t>(0, -base), std::min<int64_t>(k, in - base)};
}

// Backward-data: the (kernel row r, output row i) pairs with i stride - pad + r = row.
std::vector<std::vector<std::pair<int64_t, int64_t>>> backward_taps(int64_t in, int64_t out,
                                                                    int64_t stride, int64_t pad,
                                                                    int64_t k) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> t(static_cast<size_t>(in));
  for (int64_t row = 0; row < in; ++row)
    for (int64_t r = 0; r < k; ++r) {
      const int64_t num = row + pad - r;
      if (num < 0 || num % stride != 0) continue;
      const int64_t i = num / stride;
      if (i < out) t[row].emplace_back(r, i);
    }
  return t;
}

// The output columns j in [lo, hi) whose kernel column q reads a real input column:
// 0 <= j sw - pw + q < w, 0 <= j < ow.
struct ColumnRange {
  int64_t lo, hi;
};
ColumnRange tap_columns(int64_t q, int64_t sw, int64_t pw, int64_t w, int64_t ow) {
  const int64_t lo_num = pw - q, hi_num = w - 1 + pw - q;
  return ColumnRange{lo_num <= 0 ? 0 : (lo_num + sw - 1) / sw,
                     hi_num < 0 ? 0 : std::min(ow, hi_num / sw + 1)};
}

// --- Tap sums of the oneDNN fast paths (the reference computes them in its own loops) ------

// sum_a[b, p] and sum_w[c, p], n[p] of the forward pass, through channel sums and box sums.
[[maybe_unused]] void forward_side_sums(const ConvShape& s, const uint8_t* qx, const uint8_t* qw,
                                        Int8Parts& out) {
  const int64_t oh = s.oh(), ow = s.ow(), hw = s.h * s.w, khw = s.kh * s.kw;
  std::vector<int32_t> cs(static_cast<size_t>(s.batch * hw), 0);
#pragma omp parallel for schedule(static) if (s.x_size() > kParallelMin)
  for (int64_t b = 0; b < s.batch; ++b) {
    int32_t* c = cs.data() + b * hw;
    for (int64_t ci = 0; ci < s.cin; ++ci) {
      const uint8_t* x = qx + (b * s.cin + ci) * hw;
      for (int64_t p = 0; p < hw; ++p) c[p] += x[p];
    }
    // Box sums, tap by tap over whole output rows (contiguous for stride 1).
    int32_t* sa = out.sum_a.data() + b * oh * ow;
    std::fill(sa, sa + oh * ow, 0);
    for (int64_t i = 0; i < oh; ++i) {
      const TapRange rr = forward_taps(i, s.sh, s.ph, s.kh, s.h);
      int32_t* srow = sa + i * ow;
      for (int64_t r = rr.lo; r < rr.hi; ++r) {
        const int32_t* crow = c + (i * s.sh - s.ph + r) * s.w;
        for (int64_t q = 0; q < s.kw; ++q) {
          const ColumnRange cr = tap_columns(q, s.sw, s.pw, s.w, ow);
          const int64_t off = q - s.pw;
          if (s.sw == 1) {
            for (int64_t j = cr.lo; j < cr.hi; ++j) srow[j] += crow[j + off];
          } else {
            for (int64_t j = cr.lo; j < cr.hi; ++j) srow[j] += crow[j * s.sw + off];
          }
        }
      }
    }
  }
  std::vector<int32_t> ws(static_cast<size_t>(s.cout * khw), 0);
  for (int64_t co = 0; co < s.cout; ++co)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t t = 0; t < khw; ++t) ws[co * khw + t] += qw[(co * s.cin + ci) * khw + t];
  for (int64_t i = 0; i < oh; ++i) {
    const TapRange rr = forward_taps(i, s.sh, s.ph, s.kh, s.h);
    for (int64_t j = 0; j < ow; ++j) {
      const TapRange sr = forward_taps(j, s.sw, s.pw, s.kw, s.w);
      out.n[i * ow + j] = static_cast<int32_t>(s.cin * rr.count() * sr.count());
      for (int64_t co = 0; co < s.cout; ++co) {
        int32_t acc = 0;
        for (int64_t r = rr.lo; r < rr.hi; ++r)
          for (int64_t q = sr.lo; q < sr.hi; ++q) acc += ws[co * khw + r * s.kw + q];
        out.sum_w[co * oh * ow + i * ow + j] = acc;
      }
    }
  }
}

// sum_a[b, p], sum_w[ci, p] and n[p] of the backward-data pass.
[[maybe_unused]] void backward_side_sums(const ConvShape& s, const uint8_t* qg, const uint8_t* qw,
                                         Int8Parts& out) {
  const int64_t oh = s.oh(), ow = s.ow(), ohw = oh * ow, hw = s.h * s.w, khw = s.kh * s.kw;
  const auto tr = backward_taps(s.h, oh, s.sh, s.ph, s.kh);
  const auto tc = backward_taps(s.w, ow, s.sw, s.pw, s.kw);
  std::vector<int32_t> cs(static_cast<size_t>(s.batch * ohw), 0);
#pragma omp parallel for schedule(static) if (s.y_size() > kParallelMin)
  for (int64_t b = 0; b < s.batch; ++b) {
    int32_t* c = cs.data() + b * ohw;
    for (int64_t co = 0; co < s.cout; ++co) {
      const uint8_t* g = qg + (b * s.cout + co) * ohw;
      for (int64_t p = 0; p < ohw; ++p) c[p] += g[p];
    }
    // The transposed box sum, scattered tap by tap over whole rows of c (contiguous for
    // stride 1): c[i, j] goes to every input position (i sh - ph + r, j sw - pw + q) it reaches.
    int32_t* sa = out.sum_a.data() + b * hw;
    std::fill(sa, sa + hw, 0);
    for (int64_t i = 0; i < oh; ++i) {
      const int32_t* crow = c + i * ow;
      for (int64_t r = 0; r < s.kh; ++r) {
        const int64_t y = i * s.sh - s.ph + r;
        if (y < 0 || y >= s.h) continue;
        int32_t* srow = sa + y * s.w;
        for (int64_t q = 0; q < s.kw; ++q) {
          const ColumnRange cr = tap_columns(q, s.sw, s.pw, s.w, ow);
          const int64_t off = q - s.pw;
          if (s.sw == 1) {
            for (int64_t j = cr.lo; j < cr.hi; ++j) srow[j + off] += crow[j];
          } else {
            for (int64_t j = cr.lo; j < cr.hi; ++j) srow[j * s.sw + off] += crow[j];
          }
        }
      }
    }
  }
  std::vector<int32_t> ws(static_cast<size_t>(s.cin * khw), 0);
  for (int64_t co = 0; co < s.cout; ++co)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t t = 0; t < khw; ++t) ws[ci * khw + t] += qw[(co * s.cin + ci) * khw + t];
  for (int64_t y = 0; y < s.h; ++y)
    for (int64_t x = 0; x < s.w; ++x) {
      out.n[y * s.w + x] = static_cast<int32_t>(s.cout * static_cast<int64_t>(tr[y].size()) *
                                                static_cast<int64_t>(tc[x].size()));
      for (int64_t ci = 0; ci < s.cin; ++ci) {
        int32_t acc = 0;
        for (const auto& [r, i] : tr[y])
          for (const auto& [q, j] : tc[x]) acc += ws[ci * khw + r * s.kw + q];
        out.sum_w[ci * hw + y * s.w + x] = acc;
      }
    }
}

// acc[b, c, p] += 128 sum_a[b, p]: from sum q_a (q_w - 128) to sum q_a q_w, exactly (the result
// is the exact sum, within int32 by the reduction-length bound).
[[maybe_unused]] void add_offset(Int8Parts& parts) {
#pragma omp parallel for schedule(static) if (parts.acc.size() > kParallelMin)
  for (int64_t bc = 0; bc < parts.batch * parts.channels; ++bc) {
    const int64_t b = bc / parts.channels;
    int32_t* a = parts.acc.data() + bc * parts.positions;
    const int32_t* sa = parts.sum_a.data() + b * parts.positions;
    for (int64_t p = 0; p < parts.positions; ++p) a[p] = a[p] + 128 * sa[p];
  }
}

void to_s8(const uint8_t* q, int64_t n, int8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(static_cast<int32_t>(q[i]) - 128);
}

[[maybe_unused]] bool onednn_exact() {
  static const bool exact = gemm_int8_path().rfind("onednn", 0) == 0;
  return exact;
}

}  // namespace

void Int8Parts::resize(int64_t b, int64_t c, int64_t p) {
  batch = b;
  channels = c;
  positions = p;
  acc.resize(static_cast<size_t>(b * c * p));
  sum_a.resize(static_cast<size_t>(b * p));
  sum_w.resize(static_cast<size_t>(c * p));
  n.resize(static_cast<size_t>(p));
}

namespace {

// One row of the tensor epilogue; compiled for AVX-512 too (picked at load time), which changes
// no bit: the same IEEE operations in the same order, no FMA (-ffp-contract=off).
__attribute__((target_clones("avx512f", "default"))) void epilogue_row(
    int64_t np, double ka, const int32_t* acc, const double* a1, const double* a2, const double* a3,
    float* out) {
  for (int64_t p = 0; p < np; ++p)
    out[p] = static_cast<float>(((ka * static_cast<double>(acc[p]) + a1[p]) + a2[p]) + a3[p]);
}

// The products B sum_a, C sum_w and D n of int8_epilogue(k, ...), each the same rounded fp64
// product, computed once per (b, p), (c, p) and p; epilogue_row then adds in the same order.
struct EpilogueTerms {
  std::vector<double> t1, t2, t3;  // [batch, positions], [channels, positions], [positions]
  EpilogueTerms(const Int8Parts& parts, const Int8EpilogueCoeffs& k) {
    const int64_t np = parts.positions, nc = parts.channels, nb = parts.batch;
    t1.resize(static_cast<size_t>(nb * np));
    t2.resize(static_cast<size_t>(nc * np));
    t3.resize(static_cast<size_t>(np));
    for (int64_t e = 0; e < nb * np; ++e) t1[e] = k.b * static_cast<double>(parts.sum_a[e]);
    for (int64_t e = 0; e < nc * np; ++e) t2[e] = k.c * static_cast<double>(parts.sum_w[e]);
    for (int64_t p = 0; p < np; ++p) t3[p] = k.d * static_cast<double>(parts.n[p]);
  }
};

// The checks of the requantizing epilogue, in quantize_u8's order; returns the element count.
int64_t check_requant(const char* who, const Int8Parts& parts, const Requant& rq,
                      const uint8_t* q) {
  const int64_t nb = parts.batch, nc = parts.channels, np = parts.positions;
  if (nb < 0 || nc < 0 || np < 0 || parts.acc.size() != static_cast<size_t>(nb * nc * np) ||
      parts.sum_a.size() != static_cast<size_t>(nb * np) ||
      parts.sum_w.size() != static_cast<size_t>(nc * np) ||
      parts.n.size() != static_cast<size_t>(np))
    throw std::invalid_argument(
        fmt::format("{}: the parts' vectors do not match batch = {}, channels = {}, positions = {}",
                    who, nb, nc, np));
  const int64_t total = nb * nc * np;
  if (total == 0) return 0;
  if (q == nullptr) throw std::invalid_argument(fmt::format("{}: null buffer", who));
  quantize_internal::check_params(who, rq.out);
  return total;
}

}  // namespace

void int8_epilogue(const Int8Parts& parts, QParams pa, QParams pw, float* y) {
  const Int8EpilogueCoeffs k = int8_epilogue_coeffs(pa, pw);
  const int64_t np = parts.positions, nc = parts.channels, nb = parts.batch;
  const EpilogueTerms t(parts, k);
#pragma omp parallel for schedule(static) if (nb * nc * np > kParallelMin)
  for (int64_t bc = 0; bc < nb * nc; ++bc) {
    const int64_t b = bc / nc, c = bc % nc;
    const int32_t* acc = parts.acc.data() + bc * np;
    const double* a1 = t.t1.data() + b * np;
    const double* a2 = t.t2.data() + c * np;
    const double* a3 = t.t3.data();
    float* out = y + bc * np;
    epilogue_row(np, k.a, acc, a1, a2, a3, out);
  }
}

void int8_epilogue_requant_ref(const Int8Parts& parts, QParams pa, QParams pw, const Requant& rq,
                               uint8_t* q) {
  const int64_t total = check_requant("int8_epilogue_requant_ref", parts, rq, q);
  if (total == 0) return;
  std::vector<float> y(static_cast<size_t>(total));
  int8_epilogue(parts, pa, pw, y.data());
  if (rq.bias != nullptr) {
    const int64_t nc = parts.channels, np = parts.positions;
    for (int64_t e = 0; e < total; ++e) y[e] = y[e] + rq.bias[(e / np) % nc];
  }
  quantize_u8(y.data(), total, rq.out, rq.rounding, rq.key, q);
}

void int8_epilogue_requant(const Int8Parts& parts, QParams pa, QParams pw, const Requant& rq,
                           uint8_t* q) {
  const int64_t total = check_requant("int8_epilogue_requant", parts, rq, q);
  if (total == 0) return;
  if (rq.out.scale == 0.0f) {  // quantize_u8's degenerate range: every code is 0
    std::memset(q, 0, static_cast<size_t>(total));
    return;
  }
  const Int8EpilogueCoeffs k = int8_epilogue_coeffs(pa, pw);
  const int64_t np = parts.positions, nc = parts.channels;
  const EpilogueTerms t(parts, k);
  // Blocks of kBlock flat elements, their boundaries multiples of kBlock in the stream (so of
  // the stochastic chunk too): per block the fp32 outputs go to a stack buffer (row pieces of
  // epilogue_row, then the bias), then quantize_u8's rounding loop at the block's stream offset.
  constexpr int64_t kBlock = 4 * quantize_internal::kStreamChunk;
  const uint64_t e0 = rq.key.offset, e1 = e0 + static_cast<uint64_t>(total);
  const uint64_t first = e0 / kBlock;
  const int64_t nblocks = static_cast<int64_t>((e1 - 1) / kBlock + 1 - first);
#pragma omp parallel for schedule(static) if (total > kParallelMin)
  for (int64_t i = 0; i < nblocks; ++i) {
    const uint64_t bb = (first + static_cast<uint64_t>(i)) * kBlock;
    const int64_t f0 = static_cast<int64_t>(std::max(bb, e0) - e0);
    const int64_t f1 = static_cast<int64_t>(std::min(bb + kBlock, e1) - e0);
    float y[kBlock];
    for (int64_t f = f0; f < f1;) {
      const int64_t bc = f / np, p = f % np, len = std::min(np - p, f1 - f);
      const int64_t b = bc / nc, c = bc % nc;
      float* out = y + (f - f0);
      epilogue_row(len, k.a, parts.acc.data() + bc * np + p, t.t1.data() + b * np + p,
                   t.t2.data() + c * np + p, t.t3.data() + p, out);
      if (rq.bias != nullptr) {
        const float bias = rq.bias[c];
        for (int64_t j = 0; j < len; ++j) out[j] = out[j] + bias;
      }
      f += len;
    }
    StochasticKey key = rq.key;
    key.offset = e0 + static_cast<uint64_t>(f0);
    quantize_internal::quantize_span(y, f1 - f0, rq.out, rq.rounding, key, q + f0);
  }
}

// --- Reference convolution ------------------------------------------------------------------

void conv_u8_forward_parts_ref(const ConvShape& s, const uint8_t* qx, const uint8_t* qw,
                               Int8Parts& out) {
  check_forward(s, "conv_u8_forward_parts_ref");
  check_ptrs("conv_u8_forward_parts_ref", qx, qw, qw);
  const int64_t oh = s.oh(), ow = s.ow(), hw = s.h * s.w, khw = s.kh * s.kw;
  out.resize(s.batch, s.cout, oh * ow);
#pragma omp parallel for collapse(2) schedule(static) if (s.macs() > kParallelMin)
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          int32_t acc = 0, sa = 0, sw = 0, n = 0;
          for (int64_t ci = 0; ci < s.cin; ++ci)
            for (int64_t r = 0; r < s.kh; ++r) {
              const int64_t y = i * s.sh - s.ph + r;
              if (y < 0 || y >= s.h) continue;
              for (int64_t q = 0; q < s.kw; ++q) {
                const int64_t x = j * s.sw - s.pw + q;
                if (x < 0 || x >= s.w) continue;
                const int32_t a = qx[(b * s.cin + ci) * hw + y * s.w + x];
                const int32_t wv = qw[(co * s.cin + ci) * khw + r * s.kw + q];
                acc += a * wv;
                sa += a;
                sw += wv;
                ++n;
              }
            }
          const int64_t p = i * ow + j;
          out.acc[(b * s.cout + co) * oh * ow + p] = acc;
          if (co == 0) out.sum_a[b * oh * ow + p] = sa;
          if (b == 0) out.sum_w[co * oh * ow + p] = sw;
          if (b == 0 && co == 0) out.n[p] = n;
        }
}

void conv_u8_forward_ref(const ConvShape& s, const uint8_t* qx, QParams px, const uint8_t* qw,
                         QParams pw, float* y) {
  check_ptrs("conv_u8_forward_ref", qx, qw, y);
  Int8Parts parts;
  conv_u8_forward_parts_ref(s, qx, qw, parts);
  int8_epilogue(parts, px, pw, y);
}

void conv_u8_backward_data_parts_ref(const ConvShape& s, const uint8_t* qg, const uint8_t* qw,
                                     Int8Parts& out) {
  check_backward(s, "conv_u8_backward_data_parts_ref");
  check_ptrs("conv_u8_backward_data_parts_ref", qg, qw, qw);
  const int64_t oh = s.oh(), ow = s.ow(), hw = s.h * s.w, khw = s.kh * s.kw;
  out.resize(s.batch, s.cin, hw);
#pragma omp parallel for collapse(2) schedule(static) if (s.macs() > kParallelMin)
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x) {
          int32_t acc = 0, sa = 0, sw = 0, n = 0;
          for (int64_t co = 0; co < s.cout; ++co)
            for (int64_t r = 0; r < s.kh; ++r) {
              const int64_t ni = y + s.ph - r;
              if (ni < 0 || ni % s.sh != 0 || ni / s.sh >= oh) continue;
              const int64_t i = ni / s.sh;
              for (int64_t q = 0; q < s.kw; ++q) {
                const int64_t nj = x + s.pw - q;
                if (nj < 0 || nj % s.sw != 0 || nj / s.sw >= ow) continue;
                const int64_t j = nj / s.sw;
                const int32_t g = qg[((b * s.cout + co) * oh + i) * ow + j];
                const int32_t wv = qw[(co * s.cin + ci) * khw + r * s.kw + q];
                acc += g * wv;
                sa += g;
                sw += wv;
                ++n;
              }
            }
          const int64_t p = y * s.w + x;
          out.acc[(b * s.cin + ci) * hw + p] = acc;
          if (ci == 0) out.sum_a[b * hw + p] = sa;
          if (b == 0) out.sum_w[ci * hw + p] = sw;
          if (b == 0 && ci == 0) out.n[p] = n;
        }
}

void conv_u8_backward_data_ref(const ConvShape& s, const uint8_t* qg, QParams pg, const uint8_t* qw,
                               QParams pw, float* dx) {
  check_ptrs("conv_u8_backward_data_ref", qg, qw, dx);
  Int8Parts parts;
  conv_u8_backward_data_parts_ref(s, qg, qw, parts);
  int8_epilogue(parts, pg, pw, dx);
}

// --- The plan ------------------------------------------------------------------------------

#ifdef SPUSH_HAVE_DNNL
namespace {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

// One oneDNN primitive on u8 src, s8 weights, s32 dst (all created with format any), with the
// reorders from / to spush's plain layouts and its own scratchpad.
struct DnnlOp {
  dnnl::primitive prim;
  memory src, wei, dst, scratch;        // in the primitive's formats
  memory src_user, wei_user, dst_user;  // plain layouts; handles set per call
  dnnl::reorder src_reorder, wei_reorder, dst_reorder;
  bool reorder_src = false, reorder_wei = false, reorder_dst = false;
  std::string info;

  template <typename PD>
  void setup(const dnnl::engine& eng, const PD& pd, const memory::desc& src_md,
             const memory::desc& wei_md, const memory::desc& dst_md) {
    info = pd.impl_info_str();
    src_user = memory(src_md, eng, DNNL_MEMORY_NONE);
    wei_user = memory(wei_md, eng, DNNL_MEMORY_NONE);
    dst_user = memory(dst_md, eng, DNNL_MEMORY_NONE);
    reorder_src = pd.src_desc() != src_md;
    reorder_wei = pd.weights_desc() != wei_md;
    reorder_dst = pd.dst_desc() != dst_md;
    if (reorder_src) {
      src = memory(pd.src_desc(), eng);
      src_reorder = dnnl::reorder(src_user, src);
    }
    if (reorder_wei) {
      wei = memory(pd.weights_desc(), eng);
      wei_reorder = dnnl::reorder(wei_user, wei);
    }
    if (reorder_dst) {
      dst = memory(pd.dst_desc(), eng);
      dst_reorder = dnnl::reorder(dst, dst_user);
    }
    scratch = memory(pd.scratchpad_desc(), eng);
  }

  void run(dnnl::stream& st, const void* s, const void* w, void* d) {
    src_user.set_data_handle(const_cast<void*>(s));
    wei_user.set_data_handle(const_cast<void*>(w));
    dst_user.set_data_handle(d);
    if (reorder_src) src_reorder.execute(st, src_user, src);
    if (reorder_wei) wei_reorder.execute(st, wei_user, wei);
    prim.execute(st, {{DNNL_ARG_SRC, reorder_src ? src : src_user},
                      {DNNL_ARG_WEIGHTS, reorder_wei ? wei : wei_user},
                      {DNNL_ARG_DST, reorder_dst ? dst : dst_user},
                      {DNNL_ARG_SCRATCHPAD, scratch}});
    if (reorder_dst) dst_reorder.execute(st, dst, dst_user);
    st.wait();
  }
};

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

}  // namespace

struct ConvInt8Plan::Impl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream st{eng};
  std::unique_ptr<DnnlOp> fwd;
  std::string fwd_error, bwd_error;  // creation failed: the reference runs
  std::vector<int8_t> w_s8;
  int64_t bwd_h = 0, bwd_w = 0;  // rows / columns of dx the deconvolution produces

  void make_forward(const ConvShape& s) {
    const memory::dims src{s.batch, s.cin, s.h, s.w}, wei{s.cout, s.cin, s.kh, s.kw},
        dst{s.batch, s.cout, s.oh(), s.ow()};
    const memory::desc src_any(src, dt::u8, tag::any), wei_any(wei, dt::s8, tag::any),
        dst_any(dst, dt::s32, tag::any);
    const dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                            dnnl::algorithm::convolution_direct, src_any, wei_any,
                                            dst_any, {s.sh, s.sw}, {s.ph, s.pw}, {s.ph, s.pw});
    // The right padding as oneDNN defines it: (h - 1 + pl + pr - kh) / sh + 1 == oh must hold,
    // with the rows past the last window unused; pr = ph keeps oh as ConvShape computes it.
    const dnnl::convolution_forward::primitive_desc pd(d, user_scratchpad(), eng);
    auto op = std::make_unique<DnnlOp>();
    op->prim = dnnl::convolution_forward(pd);
    op->setup(eng, pd, memory::desc(src, dt::u8, tag::nchw), memory::desc(wei, dt::s8, tag::oihw),
              memory::desc(dst, dt::s32, tag::nchw));
    fwd = std::move(op);
  }

  // oneDNN 2.6's int8 deconvolution (AMX) carries its int32 sums through fp32 on the way out:
  // exact only while |R| <= 2^24. Each |q_g (q_w - 128)| <= 255 * 128 and a dx element has at
  // most cout ceil(kh / sh) ceil(kw / sw) taps, so the output channels of the gradient are cut
  // into chunks small enough to stay within 2^24 and the chunks' exact int32 sums are added.
  static constexpr int64_t kExactDeconvSum = int64_t{1} << 24;

  struct BwdChunk {
    int64_t co0, cc;
    DnnlOp* op;
  };
  std::vector<std::unique_ptr<DnnlOp>> bwd_ops;
  std::vector<BwdChunk> bwd_chunks;
  std::vector<int32_t> bwd_tmp;  // the sums of the chunks after the first

  DnnlOp* make_deconv(const ConvShape& s, int64_t cc) {
    const int64_t full_h = (s.oh() - 1) * s.sh - s.ph + s.kh;
    const int64_t full_w = (s.ow() - 1) * s.sw - s.pw + s.kw;
    const memory::dims src{s.batch, cc, s.oh(), s.ow()}, wei{s.cin, cc, s.kh, s.kw},
        dst{s.batch, s.cin, bwd_h, bwd_w};
    const memory::desc src_any(src, dt::u8, tag::any), wei_any(wei, dt::s8, tag::any),
        dst_any(dst, dt::s32, tag::any);
    const dnnl::deconvolution_forward::desc d(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, src_any, wei_any,
        dst_any, {s.sh, s.sw}, {s.ph, s.pw}, {full_h - bwd_h, full_w - bwd_w});
    const dnnl::deconvolution_forward::primitive_desc pd(d, user_scratchpad(), eng);
    auto op = std::make_unique<DnnlOp>();
    op->prim = dnnl::deconvolution_forward(pd);
    // Source: channels co0 .. co0 + cc - 1 of the [batch, cout, oh, ow] gradient (a strided
    // view). Weights of the deconvolution: logical (cin, cc, kh, kw); rows co0 .. of spush's
    // [cout, cin, kh, kw] buffer are that tensor in iohw order. Destination: a strided view of a
    // [batch, cin, h, w] buffer (dx rows / columns past the reach are not written).
    const int64_t ohw = s.oh() * s.ow();
    const memory::desc src_user(src, dt::u8, memory::dims{s.cout * ohw, ohw, s.ow(), 1});
    const memory::desc dst_user(dst, dt::s32, memory::dims{s.cin * s.h * s.w, s.h * s.w, s.w, 1});
    op->setup(eng, pd, src_user, memory::desc(wei, dt::s8, tag::iohw), dst_user);
    bwd_ops.push_back(std::move(op));
    return bwd_ops.back().get();
  }

  void make_backward(const ConvShape& s) {
    // dx rows the transposed convolution reaches: (oh - 1) sh - ph + kh, at most h (rows
    // beyond it, left by a stride that does not divide h + 2 ph - kh, receive no tap).
    bwd_h = std::min(s.h, (s.oh() - 1) * s.sh - s.ph + s.kh);
    bwd_w = std::min(s.w, (s.ow() - 1) * s.sw - s.pw + s.kw);
    const int64_t taps = ((s.kh + s.sh - 1) / s.sh) * ((s.kw + s.sw - 1) / s.sw);
    const int64_t cc_max = kExactDeconvSum / (255 * 128 * taps);
    if (cc_max == 0) {
      bwd_error = fmt::format("{} taps per output channel exceed the exact range", taps);
      return;
    }
    const int64_t nchunks = (s.cout + cc_max - 1) / cc_max;
    const int64_t cc = (s.cout + nchunks - 1) / nchunks;
    DnnlOp* full = nullptr;
    DnnlOp* last = nullptr;
    for (int64_t co0 = 0; co0 < s.cout; co0 += cc) {
      const int64_t n = std::min(cc, s.cout - co0);
      DnnlOp*& op = n == cc ? full : last;
      if (op == nullptr) op = make_deconv(s, n);
      bwd_chunks.push_back(BwdChunk{co0, n, op});
    }
    if (bwd_chunks.size() > 1) bwd_tmp.assign(static_cast<size_t>(s.x_size()), 0);
    bwd = true;
  }

  // acc = sum over the chunks of the deconvolution of q_g with q_w - 128.
  void run_backward(const ConvShape& s, const uint8_t* qg, int32_t* acc) {
    const int64_t ohw = s.oh() * s.ow(), wk = s.cin * s.kh * s.kw;
    for (size_t k = 0; k < bwd_chunks.size(); ++k) {
      const BwdChunk& c = bwd_chunks[k];
      int32_t* dst = k == 0 ? acc : bwd_tmp.data();
      c.op->run(st, qg + c.co0 * ohw, w_s8.data() + c.co0 * wk, dst);
      if (k == 0) continue;
      const int64_t n = s.x_size();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t e = 0; e < n; ++e) acc[e] += bwd_tmp[e];
    }
  }

  std::string bwd_info() const {
    std::string s = bwd_ops.empty() ? "" : bwd_ops.front()->info;
    if (bwd_chunks.size() > 1)
      s += fmt::format(" ({} chunks of output channels)", bwd_chunks.size());
    return s;
  }
  bool bwd = false;
};

#else
struct ConvInt8Plan::Impl {};
#endif

ConvInt8Plan::ConvInt8Plan(const ConvShape& shape) : shape_(shape) {
  shape_.check("ConvInt8Plan");
#ifdef SPUSH_HAVE_DNNL
  if (onednn_exact()) impl_ = std::make_unique<Impl>();
#endif
}

ConvInt8Plan::~ConvInt8Plan() = default;

std::string ConvInt8Plan::path() { return gemm_int8_path(); }

std::string ConvInt8Plan::impl_info() const {
#ifdef SPUSH_HAVE_DNNL
  if (!impl_) return "";
  std::string s;
  if (impl_->fwd) s += "forward: " + impl_->fwd->info;
  if (!impl_->fwd_error.empty()) s += "forward: reference (" + impl_->fwd_error + ")";
  if (impl_->bwd) s += std::string(s.empty() ? "" : "; ") + "backward-data: " + impl_->bwd_info();
  if (!impl_->bwd_error.empty())
    s += std::string(s.empty() ? "" : "; ") + "backward-data: reference (" + impl_->bwd_error + ")";
  return s;
#else
  return "";
#endif
}

void ConvInt8Plan::forward_parts(const uint8_t* qx, const uint8_t* qw, Int8Parts& out) {
  const ConvShape& s = shape_;
  check_forward(s, "ConvInt8Plan::forward");
  check_ptrs("ConvInt8Plan::forward", qx, qw, qw);
#ifdef SPUSH_HAVE_DNNL
  if (impl_ && !impl_->fwd && impl_->fwd_error.empty()) {
    try {
      impl_->make_forward(s);
    } catch (const dnnl::error& e) {
      impl_->fwd_error = e.what();
    }
  }
  if (impl_ && impl_->fwd) {
    out.resize(s.batch, s.cout, s.oh() * s.ow());
    impl_->w_s8.resize(static_cast<size_t>(s.w_size()));
    to_s8(qw, s.w_size(), impl_->w_s8.data());
    try {
      impl_->fwd->run(impl_->st, qx, impl_->w_s8.data(), out.acc.data());
    } catch (const dnnl::error& e) {
      throw std::runtime_error(
          fmt::format("ConvInt8Plan::forward ({}): oneDNN: {}", s.str(), e.what()));
    }
    forward_side_sums(s, qx, qw, out);
    add_offset(out);
    return;
  }
#endif
  conv_u8_forward_parts_ref(s, qx, qw, out);
}

void ConvInt8Plan::forward(const uint8_t* qx, QParams px, const uint8_t* qw, QParams pw, float* y) {
  check_ptrs("ConvInt8Plan::forward", qx, qw, y);
  forward_parts(qx, qw, parts_);
  int8_epilogue(parts_, px, pw, y);
}

void ConvInt8Plan::forward_requant(const uint8_t* qx, QParams px, const uint8_t* qw, QParams pw,
                                   const Requant& rq, uint8_t* qy) {
  check_ptrs("ConvInt8Plan::forward_requant", qx, qw, qy);
  quantize_internal::check_params("ConvInt8Plan::forward_requant", rq.out);
  forward_parts(qx, qw, parts_);
  int8_epilogue_requant(parts_, px, pw, rq, qy);
}

void ConvInt8Plan::backward_data_parts(const uint8_t* qg, const uint8_t* qw, Int8Parts& out) {
  const ConvShape& s = shape_;
  check_backward(s, "ConvInt8Plan::backward_data");
  check_ptrs("ConvInt8Plan::backward_data", qg, qw, qw);
#ifdef SPUSH_HAVE_DNNL
  if (impl_ && !impl_->bwd && impl_->bwd_error.empty()) {
    try {
      impl_->make_backward(s);
    } catch (const dnnl::error& e) {
      impl_->bwd_error = e.what();
    }
  }
  if (impl_ && impl_->bwd) {
    out.resize(s.batch, s.cin, s.h * s.w);
    if (impl_->bwd_h < s.h || impl_->bwd_w < s.w)  // rows / columns past the reach: no tap
      std::fill(out.acc.begin(), out.acc.end(), 0);
    impl_->w_s8.resize(static_cast<size_t>(s.w_size()));
    to_s8(qw, s.w_size(), impl_->w_s8.data());
    try {
      impl_->run_backward(s, qg, out.acc.data());
    } catch (const dnnl::error& e) {
      throw std::runtime_error(
          fmt::format("ConvInt8Plan::backward_data ({}): oneDNN: {}", s.str(), e.what()));
    }
    backward_side_sums(s, qg, qw, out);
    add_offset(out);
    return;
  }
#endif
  conv_u8_backward_data_parts_ref(s, qg, qw, out);
}

void ConvInt8Plan::backward_data(const uint8_t* qg, QParams pg, const uint8_t* qw, QParams pw,
                                 float* dx) {
  check_ptrs("ConvInt8Plan::backward_data", qg, qw, dx);
  backward_data_parts(qg, qw, parts_);
  int8_epilogue(parts_, pg, pw, dx);
}

// --- Linear layers -----------------------------------------------------------------------

namespace {

void check_linear(const char* who, int64_t batch, int64_t in, int64_t out, int64_t k, const void* a,
                  const void* w, const void* y) {
  if (batch <= 0 || in <= 0 || out <= 0)
    throw std::invalid_argument(fmt::format(
        "{}: sizes batch = {}, in = {}, out = {} must be positive", who, batch, in, out));
  if (k > kMaxInt8GemmK)
    throw std::invalid_argument(fmt::format(
        "{}: reduction length {} above {}: the int32 sums could overflow", who, k, kMaxInt8GemmK));
  check_ptrs(who, a, w, y);
}

// sum_a[b] = sum of row b of a [batch, k]; sum_w[c] and n for the linear parts.
void row_sums(const uint8_t* a, int64_t rows, int64_t k, int32_t* out) {
#pragma omp parallel for schedule(static) if (rows * k > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    int32_t s = 0;
    for (int64_t i = 0; i < k; ++i) s += a[r * k + i];
    out[r] = s;
  }
}

// The integer parts of the linear forward op ([batch, out, 1]): plain loops / the fast path.
void linear_forward_parts_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qx,
                              const uint8_t* qw, Int8Parts& parts) {
  parts.resize(batch, out, 1);
  parts.n[0] = static_cast<int32_t>(in);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t o = 0; o < out; ++o) {
      int32_t acc = 0, sa = 0, sw = 0;
      for (int64_t i = 0; i < in; ++i) {
        const int32_t a = qx[b * in + i], wv = qw[o * in + i];
        acc += a * wv;
        sa += a;
        sw += wv;
      }
      parts.acc[b * out + o] = acc;
      parts.sum_a[b] = sa;
      parts.sum_w[o] = sw;
    }
}

void linear_forward_parts(int64_t batch, int64_t in, int64_t out, const uint8_t* qx,
                          const uint8_t* qw, Int8Parts& parts) {
  parts.resize(batch, out, 1);
  parts.n[0] = static_cast<int32_t>(in);
  // B = w^T as s8 codes q_w - 128 with zero point -128: the GEMM sums q_x q_w exactly.
  std::vector<int8_t> wt(static_cast<size_t>(in * out));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      wt[i * out + o] = static_cast<int8_t>(static_cast<int32_t>(qw[o * in + i]) - 128);
  gemm_u8s8s32(batch, out, in, qx, in, 0, wt.data(), out, -128, parts.acc.data(), out);
  row_sums(qx, batch, in, parts.sum_a.data());
  row_sums(qw, out, in, parts.sum_w.data());
}

}  // namespace

void linear_u8_forward_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qx, QParams px,
                           const uint8_t* qw, QParams pw, float* y) {
  check_linear("linear_u8_forward_ref", batch, in, out, in, qx, qw, y);
  Int8Parts parts;
  linear_forward_parts_ref(batch, in, out, qx, qw, parts);
  int8_epilogue(parts, px, pw, y);
}

void linear_u8_forward(int64_t batch, int64_t in, int64_t out, const uint8_t* qx, QParams px,
                       const uint8_t* qw, QParams pw, float* y) {
  check_linear("linear_u8_forward", batch, in, out, in, qx, qw, y);
  Int8Parts parts;
  linear_forward_parts(batch, in, out, qx, qw, parts);
  int8_epilogue(parts, px, pw, y);
}

void linear_u8_forward_requant_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qx,
                                   QParams px, const uint8_t* qw, QParams pw, const Requant& rq,
                                   uint8_t* qy) {
  check_linear("linear_u8_forward_requant_ref", batch, in, out, in, qx, qw, qy);
  quantize_internal::check_params("linear_u8_forward_requant_ref", rq.out);
  Int8Parts parts;
  linear_forward_parts_ref(batch, in, out, qx, qw, parts);
  int8_epilogue_requant_ref(parts, px, pw, rq, qy);
}

void linear_u8_forward_requant(int64_t batch, int64_t in, int64_t out, const uint8_t* qx,
                               QParams px, const uint8_t* qw, QParams pw, const Requant& rq,
                               uint8_t* qy) {
  check_linear("linear_u8_forward_requant", batch, in, out, in, qx, qw, qy);
  quantize_internal::check_params("linear_u8_forward_requant", rq.out);
  Int8Parts parts;
  linear_forward_parts(batch, in, out, qx, qw, parts);
  int8_epilogue_requant(parts, px, pw, rq, qy);
}

void linear_u8_backward_data_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qg,
                                 QParams pg, const uint8_t* qw, QParams pw, float* dx) {
  check_linear("linear_u8_backward_data_ref", batch, in, out, out, qg, qw, dx);
  Int8Parts parts;
  parts.resize(batch, in, 1);
  parts.n[0] = static_cast<int32_t>(out);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < in; ++i) {
      int32_t acc = 0, sa = 0, sw = 0;
      for (int64_t o = 0; o < out; ++o) {
        const int32_t g = qg[b * out + o], wv = qw[o * in + i];
        acc += g * wv;
        sa += g;
        sw += wv;
      }
      parts.acc[b * in + i] = acc;
      parts.sum_a[b] = sa;
      parts.sum_w[i] = sw;
    }
  int8_epilogue(parts, pg, pw, dx);
}

void linear_u8_backward_data(int64_t batch, int64_t in, int64_t out, const uint8_t* qg, QParams pg,
                             const uint8_t* qw, QParams pw, float* dx) {
  check_linear("linear_u8_backward_data", batch, in, out, out, qg, qw, dx);
  Int8Parts parts;
  parts.resize(batch, in, 1);
  parts.n[0] = static_cast<int32_t>(out);
  std::vector<int8_t> ws(static_cast<size_t>(in * out));
  to_s8(qw, in * out, ws.data());
  gemm_u8s8s32(batch, in, out, qg, out, 0, ws.data(), in, -128, parts.acc.data(), in);
  row_sums(qg, batch, out, parts.sum_a.data());
  std::fill(parts.sum_w.begin(), parts.sum_w.end(), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) parts.sum_w[i] += qw[o * in + i];
  int8_epilogue(parts, pg, pw, dx);
}

}  // namespace spush::kernels

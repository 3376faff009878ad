// 8-bit convolution and linear ops of one node's minibatch (docs/ALGORITHMS.md §12): operands
// are u8 codes q in [0, 255] with their affine parameters (quantize.h), a_hat = s_a q_a + lo_a,
// w_hat = s_w q_w + lo_w; tensors are plain row-major as in conv_shape.h.
//
//   forward:        y[b, co, i, j]  = sum over valid taps (ci, r, s) of x_hat[b, ci, i sh - ph + r,
//                                     j sw - pw + s] * w_hat[co, ci, r, s]
//   backward-data:  dx[b, ci, h, w] = sum over valid (co, i, j, r, s) with i sh - ph + r = h,
//                                     j sw - pw + s = w of g_hat[b, co, i, j] * w_hat[co, ci, r, s]
//                                     (the transposed convolution)
//   linear:         y[b, o]  = sum_i x_hat[b, i] w_hat[o, i]              (w: [out, in])
//                   dx[b, i] = sum_o g_hat[b, o] w_hat[o, i]
//
// A tap is valid when it reads a real input (forward) / a real output-gradient position
// (backward-data): padding is a real 0 and contributes nothing, in particular not lo_x lo_w.
// Each op is an exact integer part and an fp epilogue. For every output element the integer
// part is (Int8Parts, all sums over the valid taps of that element):
//   acc   = sum q_a q_w          sum_a = sum q_a          sum_w = sum q_w          n = #taps
// where sum_a depends on (b, position) only, sum_w on (channel, position), n on position only.
// All are exact in int32: the ops refuse a reduction length (cin kh kw forward, cout kh kw
// backward-data, in / out for linear) above kMaxInt8GemmK = 33,025 (255^2 * 33,025 < 2^31).
// The epilogue (int8_epilogue, the one function both the reference and the fast paths call) is
//   A = s_a s_w, B = s_a lo_w, C = lo_a s_w, D = lo_a lo_w     (in fp64: exact products of fp32)
//   y = fp32( ((A acc + B sum_a) + C sum_w) + D n )            (fp64, each operation rounded in
//                                                               this order, no FMA; one final
//                                                               rounding to fp32)
// so y is the exact sum of a_hat w_hat (with a_hat = s_a q_a + lo_a taken exactly) up to
// 4 * 2^-53 of sum |terms| and one fp32 rounding. fp64 keeps the cancellation between the four
// terms (large when lo is far from 0, as for gradients) from costing fp32 precision.
//
// The requantizing epilogue (Requant: output parameters py, a rounding, a stochastic key and an
// optional per-channel bias) gives the u8 codes of the output without an fp32 tensor:
//   y_e = int8_epilogue(coeffs(pa, pw), acc, sum_a, sum_w, n)      (fp32, as above)
//   y   = bias ? fl(y_e + bias[c]) : y_e                           (one fp32 addition)
//   q   = quantize_u8's code of y with py and the rounding, at stream element
//         e = key.offset + (b channels + c) positions + p          (the flat output index)
// i.e. bit for bit the fp32 epilogue, the bias added, then quantize_u8 on the whole tensor with
// (py, rounding, key); int8_epilogue_requant_ref is that composition, int8_epilogue_requant
// and the *_requant ops compute it in one pass over blocks of the output.
//
// The *_ref functions are the specification (plain loops). ConvInt8Plan and the linear ops
// without _ref are the fast paths: oneDNN's int8 convolution (forward) and deconvolution
// (backward-data) or gemm_u8s8s32 (linear), on u8 codes and s8 weight codes q_w - 128, with
// the exact correction acc = R + 128 sum_a, when spush is built with oneDNN and the CPU has
// VNNI or AMX (where oneDNN's int8 accumulation is exact); otherwise the reference. oneDNN
// 2.6's int8 deconvolution passes its sums through fp32 (exact up to 2^24), so backward-data
// runs it on chunks of output channels whose sums stay within 2^24 and adds them in int32.
// Both give the same bits for the integer parts and for y (tests/kernels/conv_int8_test.cpp,
// which includes sums near 1.5e8 in both directions).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spush/kernels/conv_shape.h"
#include "spush/kernels/gemm_int8.h"
#include "spush/kernels/quantize.h"

namespace spush::kernels {

// The integer part of an op with output [batch, channels, positions].
struct Int8Parts {
  int64_t batch = 0, channels = 0, positions = 0;
  std::vector<int32_t> acc;                      // [batch, channels, positions]
  std::vector<int32_t> sum_a;                    // [batch, positions]
  std::vector<int32_t> sum_w;                    // [channels, positions]
  std::vector<int32_t> n;                        // [positions]
  void resize(int64_t b, int64_t c, int64_t p);  // sizes only: the contents are unspecified
  bool operator==(const Int8Parts&) const = default;
};

struct Int8EpilogueCoeffs {
  double a, b, c, d;
};

SPUSH_HD Int8EpilogueCoeffs int8_epilogue_coeffs(QParams pa, QParams pw) {
  return Int8EpilogueCoeffs{static_cast<double>(pa.scale) * static_cast<double>(pw.scale),
                            static_cast<double>(pa.scale) * static_cast<double>(pw.lo),
                            static_cast<double>(pa.lo) * static_cast<double>(pw.scale),
                            static_cast<double>(pa.lo) * static_cast<double>(pw.lo)};
}

// One output element. Compiled without FMA contraction on the CPU (kernels/CMakeLists.txt);
// a CUDA port must use __dmul_rn / __dadd_rn.
SPUSH_HD float int8_epilogue(const Int8EpilogueCoeffs& k, int32_t acc, int32_t sum_a, int32_t sum_w,
                             int32_t n) {
  const double t0 = k.a * static_cast<double>(acc);
  const double t1 = k.b * static_cast<double>(sum_a);
  const double t2 = k.c * static_cast<double>(sum_w);
  const double t3 = k.d * static_cast<double>(n);
  return static_cast<float>(((t0 + t1) + t2) + t3);
}

// y[b, c, p] = int8_epilogue(coeffs(pa, pw), parts at (b, c, p)) for the whole tensor.
void int8_epilogue(const Int8Parts& parts, QParams pa, QParams pw, float* y);

// The requantizing epilogue's output quantization (see the file comment).
struct Requant {
  QParams out;  // py: the output's parameters
  Rounding rounding = Rounding::kNearestEven;
  StochasticKey key{};          // kStochastic only; offset: stream index of q[0]
  const float* bias = nullptr;  // [channels] or null
};

// q[b, c, p] = the code of fl(y[b, c, p] + bias[c]) (or of y without a bias) that quantize_u8
// gives with (rq.out, rq.rounding, rq.key) on the whole [batch, channels, positions] tensor.
// Throws std::invalid_argument for invalid rq.out (as quantize_u8 does, naming the values), a
// null q, or parts whose vectors do not match their sizes; rq.out.scale == 0 gives all 0.
// _ref: the composition itself (an fp32 tensor, then quantize_u8), the specification.
// Without _ref: one pass over blocks of the output, no fp32 tensor; the same bits.
void int8_epilogue_requant_ref(const Int8Parts& parts, QParams pa, QParams pw, const Requant& rq,
                               uint8_t* q);
void int8_epilogue_requant(const Int8Parts& parts, QParams pa, QParams pw, const Requant& rq,
                           uint8_t* q);

// --- Convolution: the specification -------------------------------------------------------
// x: [batch, cin, h, w], w: [cout, cin, kh, kw], y / g: [batch, cout, oh, ow].
// Throws std::invalid_argument for an invalid shape or a reduction length above the bound.
void conv_u8_forward_parts_ref(const ConvShape& s, const uint8_t* qx, const uint8_t* qw,
                               Int8Parts& out);  // out: [batch, cout, oh * ow]
void conv_u8_forward_ref(const ConvShape& s, const uint8_t* qx, QParams px, const uint8_t* qw,
                         QParams pw, float* y);
void conv_u8_backward_data_parts_ref(const ConvShape& s, const uint8_t* qg, const uint8_t* qw,
                                     Int8Parts& out);  // out: [batch, cin, h * w]
void conv_u8_backward_data_ref(const ConvShape& s, const uint8_t* qg, QParams pg, const uint8_t* qw,
                               QParams pw, float* dx);

// --- Convolution: the fast path -------------------------------------------------------------
// A plan for one shape: oneDNN primitives are created on first use of each op and kept, with
// their scratch memory, for later calls. Not thread-safe: one plan per thread.
class ConvInt8Plan {
 public:
  explicit ConvInt8Plan(const ConvShape& shape);
  ~ConvInt8Plan();
  ConvInt8Plan(const ConvInt8Plan&) = delete;
  ConvInt8Plan& operator=(const ConvInt8Plan&) = delete;

  const ConvShape& shape() const { return shape_; }
  void forward_parts(const uint8_t* qx, const uint8_t* qw, Int8Parts& out);
  void forward(const uint8_t* qx, QParams px, const uint8_t* qw, QParams pw, float* y);
  // qy: [batch, cout, oh, ow] codes, the requantizing epilogue on forward_parts.
  void forward_requant(const uint8_t* qx, QParams px, const uint8_t* qw, QParams pw,
                       const Requant& rq, uint8_t* qy);
  void backward_data_parts(const uint8_t* qg, const uint8_t* qw, Int8Parts& out);
  void backward_data(const uint8_t* qg, QParams pg, const uint8_t* qw, QParams pw, float* dx);

  // "onednn (<isa>)" or "reference (<why>)": what the plans run on this machine.
  static std::string path();
  // The oneDNN implementations chosen for this shape ("" before first use / without oneDNN).
  std::string impl_info() const;

 private:
  struct Impl;
  ConvShape shape_;
  std::unique_ptr<Impl> impl_;
  Int8Parts parts_;  // scratch of forward / backward_data
};

// --- Linear layers --------------------------------------------------------------------------
// x: [batch, in], w: [out, in], y: [batch, out]; g: [batch, out], dx: [batch, in].
void linear_u8_forward_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qx, QParams px,
                           const uint8_t* qw, QParams pw, float* y);
void linear_u8_forward(int64_t batch, int64_t in, int64_t out, const uint8_t* qx, QParams px,
                       const uint8_t* qw, QParams pw, float* y);
// qy: [batch, out] codes of the forward output through the requantizing epilogue (bias: [out]).
void linear_u8_forward_requant_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qx,
                                   QParams px, const uint8_t* qw, QParams pw, const Requant& rq,
                                   uint8_t* qy);
void linear_u8_forward_requant(int64_t batch, int64_t in, int64_t out, const uint8_t* qx,
                               QParams px, const uint8_t* qw, QParams pw, const Requant& rq,
                               uint8_t* qy);
void linear_u8_backward_data_ref(int64_t batch, int64_t in, int64_t out, const uint8_t* qg,
                                 QParams pg, const uint8_t* qw, QParams pw, float* dx);
void linear_u8_backward_data(int64_t batch, int64_t in, int64_t out, const uint8_t* qg, QParams pg,
                             const uint8_t* qw, QParams pw, float* dx);

}  // namespace spush::kernels

// fp32 convolution: the im2col + sgemm reference and the oneDNN plans
// (kernels/include/spush/kernels/conv.h).
//
// Reference, per chunk of S samples (S * P * K <= kColBudget floats of im2col):
//   forward:   col[K, S*P] = im2col(x),  Y[Cout, S*P] = W[Cout, K] col,  K = Cin*kh*kw, P = oh*ow,
//              scattered to y[s, Cout, P] with the bias added.
//   backward:  dW[Cout, K] += dY col^T,  db += row sums of dY,  dcol = W^T dY,  dx = col2im(dcol).
// oneDNN: one convolution_forward / _backward_data / _backward_weights primitive per plan, on
// oneDNN's blocked layouts with reorders from and to the plain tensors or on the plain tensors
// directly (see plain_for_backward_data); user-managed scratchpads, per-thread buffers.
#include "spush/kernels/conv.h"

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "spush/kernels/threads.h"

#ifdef SPUSH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace spush::kernels {
namespace {

constexpr int64_t kColBudget = int64_t{1} << 17;  // floats of im2col per chunk (512 KiB)

// First and one-past-last output column whose input column o*s - p + k lies in [0, n).
inline void valid_range(int64_t n, int64_t out, int64_t s, int64_t p, int64_t k, int64_t& lo,
                        int64_t& hi) {
  const int64_t a = p - k;  // need o*s >= a
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  const int64_t b = n - 1 + p - k;  // need o*s <= b
  hi = b < 0 ? 0 : b / s + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// Sum of n floats with 8 independent accumulators (vectorizes without -ffast-math).
float row_sum(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  float s = 0.0f;
  for (; i < n; ++i) s += x[i];
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

// col rows (c, ki, kj), columns oh*OW + ow at stride ldc, for one sample x[cin, h, w].
void im2col(const float* __restrict x, const ConvShape& g, float* __restrict col, int64_t ldc) {
  const int64_t oh_n = g.oh(), ow_n = g.ow();
  for (int64_t c = 0; c < g.cin; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        float* dst = col + ((c * g.kh + ki) * g.kw + kj) * ldc;
        int64_t lo, hi;
        valid_range(g.w, ow_n, g.sw, g.pw, kj, lo, hi);
        for (int64_t oh = 0; oh < oh_n; ++oh) {
          float* __restrict d = dst + oh * ow_n;
          const int64_t ih = oh * g.sh - g.ph + ki;
          if (ih < 0 || ih >= g.h) {
            std::memset(d, 0, sizeof(float) * ow_n);
            continue;
          }
          const float* __restrict src = x + (c * g.h + ih) * g.w + (kj - g.pw);  // [ow*sw]
          for (int64_t ow = 0; ow < lo; ++ow) d[ow] = 0.0f;
          if (g.sw == 1) {
            // Rows are short (tens of floats): an inline loop beats a memcpy call.
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * g.sw];
          }
          for (int64_t ow = hi; ow < ow_n; ++ow) d[ow] = 0.0f;
        }
      }
    }
  }
}

// dx += col2im(col); the adjoint of im2col.
void col2im(const float* __restrict col, int64_t ldc, const ConvShape& g, float* __restrict dx) {
  const int64_t oh_n = g.oh(), ow_n = g.ow();
  for (int64_t c = 0; c < g.cin; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* src = col + ((c * g.kh + ki) * g.kw + kj) * ldc;
        int64_t lo, hi;
        valid_range(g.w, ow_n, g.sw, g.pw, kj, lo, hi);
        for (int64_t oh = 0; oh < oh_n; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + ki;
          if (ih < 0 || ih >= g.h) continue;
          const float* __restrict s = src + oh * ow_n;
          float* __restrict d = dx + (c * g.h + ih) * g.w + (kj - g.pw);
          if (g.sw == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] += s[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) d[ow * g.sw] += s[ow];
          }
        }
      }
    }
  }
}

// 64-byte aligned growable buffer (contents not kept when it grows).
class Buffer {
 public:
  ~Buffer() { std::free(p_); }
  void* get(size_t bytes) {
    if (bytes > n_) {
      std::free(p_);
      n_ = (bytes + 63) / 64 * 64;
      p_ = std::aligned_alloc(64, n_);
      if (!p_) throw std::bad_alloc();
    }
    return p_;
  }
  float* floats(int64_t n) { return static_cast<float*>(get(sizeof(float) * n)); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Per-thread scratch of the reference and the oneDNN paths.
struct Scratch {
  Buffer col, tmp;                   // reference: im2col, gemm output
  Buffer x, w, y, out, pad, dw, db;  // oneDNN: reordered operands, scratchpad, gradients
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

int64_t chunk_samples(const ConvShape& s) {
  return std::max<int64_t>(1, std::min(s.batch, kColBudget / (s.k() * s.oh() * s.ow())));
}

ConvImpl initial_impl() {
  const char* e = std::getenv("SPUSH_CONV_IMPL");
  return e && std::string(e) == "reference" ? ConvImpl::kReference : ConvImpl::kFast;
}
std::atomic<int>& impl_flag() {
  static std::atomic<int> f{static_cast<int>(initial_impl())};
  return f;
}

}  // namespace

void set_conv_impl(ConvImpl impl) { impl_flag().store(static_cast<int>(impl)); }
ConvImpl conv_impl() { return static_cast<ConvImpl>(impl_flag().load()); }

void conv2d_forward_ref(const ConvShape& s, const float* x, const float* w, const float* b,
                        float* y) {
  s.check("conv2d_forward_ref");
  const int64_t K = s.k(), P = s.oh() * s.ow(), cout = s.cout, chunk = chunk_samples(s);
  Scratch& t = scratch();
  float* col = t.col.floats(K * chunk * P);
  float* tmp = t.tmp.floats(cout * chunk * P);
  for (int64_t s0 = 0; s0 < s.batch; s0 += chunk) {
    const int64_t ns = std::min(chunk, s.batch - s0), N = ns * P;
    for (int64_t j = 0; j < ns; ++j) im2col(x + (s0 + j) * s.cin * s.h * s.w, s, col + j * P, N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(cout),
                static_cast<int>(N), static_cast<int>(K), 1.0f, w, static_cast<int>(K), col,
                static_cast<int>(N), 0.0f, tmp, static_cast<int>(N));
    for (int64_t j = 0; j < ns; ++j) {
      float* dst = y + (s0 + j) * cout * P;
      for (int64_t co = 0; co < cout; ++co) {
        const float* src = tmp + co * N + j * P;
        const float bv = b ? b[co] : 0.0f;
        float* d = dst + co * P;
        for (int64_t p = 0; p < P; ++p) d[p] = src[p] + bv;
      }
    }
  }
}

void conv2d_backward_data_ref(const ConvShape& s, const float* dy, const float* w, float* dx) {
  s.check("conv2d_backward_data_ref");
  const int64_t K = s.k(), P = s.oh() * s.ow(), cout = s.cout, chunk = chunk_samples(s);
  Scratch& t = scratch();
  float* col = t.col.floats(K * chunk * P);
  float* dyc = t.tmp.floats(cout * chunk * P);
  const int64_t xs = s.cin * s.h * s.w;
  for (int64_t s0 = 0; s0 < s.batch; s0 += chunk) {
    const int64_t ns = std::min(chunk, s.batch - s0), N = ns * P;
    for (int64_t j = 0; j < ns; ++j)
      for (int64_t co = 0; co < cout; ++co)
        std::memcpy(dyc + co * N + j * P, dy + ((s0 + j) * cout + co) * P, sizeof(float) * P);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(K), static_cast<int>(N),
                static_cast<int>(cout), 1.0f, w, static_cast<int>(K), dyc, static_cast<int>(N),
                0.0f, col, static_cast<int>(N));
    for (int64_t j = 0; j < ns; ++j) {
      float* d = dx + (s0 + j) * xs;
      std::memset(d, 0, sizeof(float) * xs);
      col2im(col + j * P, N, s, d);
    }
  }
}

void conv2d_backward_weights_ref(const ConvShape& s, const float* x, const float* dy, float* dw,
                                 float* db) {
  s.check("conv2d_backward_weights_ref");
  const int64_t K = s.k(), P = s.oh() * s.ow(), cout = s.cout, chunk = chunk_samples(s);
  Scratch& t = scratch();
  float* col = t.col.floats(K * chunk * P);
  float* dyc = t.tmp.floats(cout * chunk * P);
  for (int64_t s0 = 0; s0 < s.batch; s0 += chunk) {
    const int64_t ns = std::min(chunk, s.batch - s0), N = ns * P;
    for (int64_t j = 0; j < ns; ++j)
      for (int64_t co = 0; co < cout; ++co)
        std::memcpy(dyc + co * N + j * P, dy + ((s0 + j) * cout + co) * P, sizeof(float) * P);
    if (db)
      for (int64_t co = 0; co < cout; ++co) db[co] += row_sum(dyc + co * N, N);
    for (int64_t j = 0; j < ns; ++j) im2col(x + (s0 + j) * s.cin * s.h * s.w, s, col + j * P, N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(cout),
                static_cast<int>(K), static_cast<int>(N), 1.0f, dyc, static_cast<int>(N), col,
                static_cast<int>(N), 1.0f, dw, static_cast<int>(K));
  }
}

// ---------------------------------------------------------------------------------------------
// oneDNN

#ifdef SPUSH_HAVE_DNNL
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    default:
      return "older";
  }
}

const dnnl::engine& engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// One stream per calling thread: a oneDNN stream must not be used by two threads at once.
dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

// oneDNN gets one OpenMP thread (OneThread, threads.h) while it builds or runs a primitive on
// this thread, which makes the results independent of OMP_NUM_THREADS.

// A primitive's operand: the plain tensor directly, or through a reorder into or out of the
// primitive's own layout (in a per-thread buffer).
struct Operand {
  memory::desc user, prim;
  dnnl::reorder to_prim, from_prim;  // empty when user == prim
  bool direct() const { return user == prim; }
  void init(const memory::desc& u, const memory::desc& p, bool input) {
    user = u;
    prim = p;
    if (direct()) return;
    if (input)
      to_prim = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), u, engine(), p));
    else
      from_prim = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), p, engine(), u));
  }
  // The memory the primitive reads: the user's tensor, reordered into `buf` if needed.
  memory in(const void* data, Buffer& buf) const {
    memory u(user, engine(), const_cast<void*>(data));
    if (direct()) return u;
    memory p(prim, engine(), buf.get(prim.get_size()));
    to_prim.execute(stream(), u, p);
    return p;
  }
  // The memory the primitive writes: the user's tensor, or `buf` (copied out by out_done).
  memory out(void* data, Buffer& buf) const {
    if (direct()) return memory(user, engine(), data);
    return memory(prim, engine(), buf.get(prim.get_size()));
  }
  void out_done(memory p, void* data) const {
    if (direct()) return;
    memory u(user, engine(), data);
    from_prim.execute(stream(), p, u);
  }
};

bool is_ref(const char* impl) { return std::strncmp(impl, "ref", 3) == 0; }

// Memory formats of the primitives: oneDNN's own (format_tag::any: nChw16c / OIhw16i16o on
// AVX-512) with reorders from and to the plain tensors, 2-4x faster than the primitives on
// nchw / oihw directly for ResNet-20's 3x3 layers in spush-bench (one thread, reorders
// included), except backward-data into a single input channel or through a strided 1x1
// kernel, which runs 2-5x faster on the plain tensors. A function of the shape alone, so every
// process picks the same code. SPUSH_CONV_DNNL_FORMATS=plain or =any forces one choice for all
// ops (for measurements).
enum class Formats { kAuto, kPlain, kAny };
Formats formats_override() {
  static const Formats f = [] {
    const char* e = std::getenv("SPUSH_CONV_DNNL_FORMATS");
    const std::string v = e ? e : "";
    return v == "plain" ? Formats::kPlain : v == "any" ? Formats::kAny : Formats::kAuto;
  }();
  return f;
}
bool plain_for_backward_data(const ConvShape& s) {
  if (formats_override() != Formats::kAuto) return formats_override() == Formats::kPlain;
  return s.cin == 1 || (s.kh == 1 && s.kw == 1 && (s.sh > 1 || s.sw > 1));
}
bool plain_for_others() { return formats_override() == Formats::kPlain; }

}  // namespace

struct Conv2dPlan::Dnnl {
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_d;
  dnnl::convolution_backward_weights bwd_w;
  Operand fwd_x, fwd_w, fwd_y, bd_dy, bd_w, bd_dx, bw_x, bw_dy, bw_dw;
  memory::desc b_md, fwd_pad, bd_pad, bw_pad;
  std::string info;
  bool any_ref = false;

  Dnnl(const ConvShape& s, bool bias) {
    const memory::dims xd{s.batch, s.cin, s.h, s.w}, wd{s.cout, s.cin, s.kh, s.kw},
        yd{s.batch, s.cout, s.oh(), s.ow()}, bd{s.cout};
    const memory::dims strides{s.sh, s.sw}, pad{s.ph, s.pw};
    // Right padding such that the output size is oh: (h + pl + pr - kh) / sh + 1 == oh.
    const memory::dims pad_r{(s.oh() - 1) * s.sh + s.kh - s.h - s.ph,
                             (s.ow() - 1) * s.sw + s.kw - s.w - s.pw};
    const memory::desc x_u(xd, dt::f32, tag::nchw), w_u(wd, dt::f32, tag::oihw),
        y_u(yd, dt::f32, tag::nchw);
    b_md = memory::desc(bd, dt::f32, tag::a);
    const bool plain = plain_for_others(), plain_d = plain_for_backward_data(s);
    const memory::desc x_any(xd, dt::f32, tag::any), w_any(wd, dt::f32, tag::any),
        y_any(yd, dt::f32, tag::any);
    const memory::desc x_a = plain ? x_u : x_any, w_a = plain ? w_u : w_any,
                       y_a = plain ? y_u : y_any;
    const memory::desc none;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const auto alg = dnnl::algorithm::convolution_direct;

    const dnnl::convolution_forward::primitive_desc fpd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_a, w_a,
                                        bias ? b_md : none, y_a, strides, pad, pad_r),
        attr, engine());
    fwd = dnnl::convolution_forward(fpd);
    fwd_x.init(x_u, fpd.src_desc(), true);
    fwd_w.init(w_u, fpd.weights_desc(), true);
    fwd_y.init(y_u, fpd.dst_desc(), false);
    fwd_pad = fpd.scratchpad_desc();

    const dnnl::convolution_backward_data::primitive_desc dpd(
        dnnl::convolution_backward_data::desc(alg, plain_d ? x_u : x_any, plain_d ? w_u : w_any,
                                              plain_d ? y_u : y_any, strides, pad, pad_r),
        attr, engine(), fpd);
    bwd_d = dnnl::convolution_backward_data(dpd);
    bd_dy.init(y_u, dpd.diff_dst_desc(), true);
    bd_w.init(w_u, dpd.weights_desc(), true);
    bd_dx.init(x_u, dpd.diff_src_desc(), false);
    bd_pad = dpd.scratchpad_desc();

    const dnnl::convolution_backward_weights::primitive_desc wpd(
        dnnl::convolution_backward_weights::desc(alg, x_a, w_a, bias ? b_md : none, y_a, strides,
                                                 pad, pad_r),
        attr, engine(), fpd);
    bwd_w = dnnl::convolution_backward_weights(wpd);
    bw_x.init(x_u, wpd.src_desc(), true);
    bw_dy.init(y_u, wpd.diff_dst_desc(), true);
    bw_dw.init(w_u, wpd.diff_weights_desc(), false);
    bw_pad = wpd.scratchpad_desc();

    any_ref =
        is_ref(fpd.impl_info_str()) || is_ref(dpd.impl_info_str()) || is_ref(wpd.impl_info_str());
    info = fmt::format("fwd={} bwd_d={} bwd_w={}", fpd.impl_info_str(), dpd.impl_info_str(),
                       wpd.impl_info_str());
  }
};

#else
struct Conv2dPlan::Dnnl {};
#endif

Conv2dPlan::Conv2dPlan(const ConvShape& s, bool bias, ConvImpl impl)
    : s_(s), bias_(bias), impl_(impl) {
  s_.check("Conv2dPlan");
#ifdef SPUSH_HAVE_DNNL
  if (impl_ == ConvImpl::kFast) {
    try {
      OneThread one;
      auto d = std::make_unique<Dnnl>(s_, bias_);
      // oneDNN's reference loops (no JIT code for the shape or the CPU) are slower than im2col.
      if (!d->any_ref) dnnl_ = std::move(d);
    } catch (const dnnl::error& e) {
      throw std::runtime_error(fmt::format("Conv2dPlan ({}): oneDNN: {}", s_.str(), e.what()));
    }
  }
#endif
}

Conv2dPlan::~Conv2dPlan() = default;

std::string Conv2dPlan::describe() const {
#ifdef SPUSH_HAVE_DNNL
  if (dnnl_) return dnnl_->info;
#endif
  return "reference";
}

#ifdef SPUSH_HAVE_DNNL
namespace {

// dx = backward-data(dym, w); dym already in the primitive's layout.
void dnnl_backward_data(const Conv2dPlan::Dnnl& d, Scratch& t, const memory& dym, const float* w,
                        float* dx) {
  memory wm = d.bd_w.in(w, t.w), dxm = d.bd_dx.out(dx, t.out);
  memory pad(d.bd_pad, engine(), t.pad.get(d.bd_pad.get_size()));
  d.bwd_d.execute(stream(), {{DNNL_ARG_DIFF_DST, dym},
                             {DNNL_ARG_WEIGHTS, wm},
                             {DNNL_ARG_DIFF_SRC, dxm},
                             {DNNL_ARG_SCRATCHPAD, pad}});
  d.bd_dx.out_done(dxm, dx);
  stream().wait();
}

// dw += backward-weights(x, dym) (db likewise when bias and db are given).
void dnnl_backward_weights(const Conv2dPlan::Dnnl& d, Scratch& t, const ConvShape& s, bool bias,
                           const float* x, const memory& dym, float* dw, float* db) {
  const int64_t wn = s.w_size();
  memory xm = d.bw_x.in(x, t.x);
  // oneDNN overwrites its outputs: gradients go to buffers, then are added to dw and db.
  float* dw_tmp = t.dw.floats(wn);
  float* db_tmp = t.db.floats(s.cout);
  memory dwm = d.bw_dw.out(dw_tmp, t.out);
  memory pad(d.bw_pad, engine(), t.pad.get(d.bw_pad.get_size()));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xm},
                                       {DNNL_ARG_DIFF_DST, dym},
                                       {DNNL_ARG_DIFF_WEIGHTS, dwm},
                                       {DNNL_ARG_SCRATCHPAD, pad}};
  if (bias) args.emplace(DNNL_ARG_DIFF_BIAS, memory(d.b_md, engine(), db_tmp));
  d.bwd_w.execute(stream(), args);
  d.bw_dw.out_done(dwm, dw_tmp);
  stream().wait();
  for (int64_t i = 0; i < wn; ++i) dw[i] += dw_tmp[i];
  if (bias && db)
    for (int64_t i = 0; i < s.cout; ++i) db[i] += db_tmp[i];
}

}  // namespace
#endif

void Conv2dPlan::forward(const float* x, const float* w, const float* b, float* y) const {
#ifdef SPUSH_HAVE_DNNL
  if (dnnl_) {
    const Dnnl& d = *dnnl_;
    OneThread one;
    Scratch& t = scratch();
    memory xm = d.fwd_x.in(x, t.x), wm = d.fwd_w.in(w, t.w), ym = d.fwd_y.out(y, t.out);
    memory pad(d.fwd_pad, engine(), t.pad.get(d.fwd_pad.get_size()));
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, pad}};
    if (bias_) args.emplace(DNNL_ARG_BIAS, memory(d.b_md, engine(), const_cast<float*>(b)));
    d.fwd.execute(stream(), args);
    d.fwd_y.out_done(ym, y);
    stream().wait();
    return;
  }
#endif
  conv2d_forward_ref(s_, x, w, bias_ ? b : nullptr, y);
}

void Conv2dPlan::backward_data(const float* dy, const float* w, float* dx) const {
#ifdef SPUSH_HAVE_DNNL
  if (dnnl_) {
    OneThread one;
    Scratch& t = scratch();
    dnnl_backward_data(*dnnl_, t, dnnl_->bd_dy.in(dy, t.y), w, dx);
    return;
  }
#endif
  conv2d_backward_data_ref(s_, dy, w, dx);
}

void Conv2dPlan::backward_weights(const float* x, const float* dy, float* dw, float* db) const {
#ifdef SPUSH_HAVE_DNNL
  if (dnnl_) {
    OneThread one;
    Scratch& t = scratch();
    dnnl_backward_weights(*dnnl_, t, s_, bias_, x, dnnl_->bw_dy.in(dy, t.y), dw, db);
    return;
  }
#endif
  conv2d_backward_weights_ref(s_, x, dy, dw, bias_ ? db : nullptr);
}

void Conv2dPlan::backward(const float* x, const float* dy, const float* w, float* dx, float* dw,
                          float* db) const {
#ifdef SPUSH_HAVE_DNNL
  if (dnnl_) {
    const Dnnl& d = *dnnl_;
    OneThread one;
    Scratch& t = scratch();
    const memory dym = d.bw_dy.in(dy, t.y);
    dnnl_backward_weights(d, t, s_, bias_, x, dym, dw, db);
    // dy reordered once when both primitives take the same layout (t.y is not reused above).
    if (dx)
      dnnl_backward_data(d, t, d.bd_dy.prim == d.bw_dy.prim ? dym : d.bd_dy.in(dy, t.x), w, dx);
    return;
  }
#endif
  conv2d_backward_weights_ref(s_, x, dy, dw, bias_ ? db : nullptr);
  if (dx) conv2d_backward_data_ref(s_, dy, w, dx);
}

std::string Conv2dPlan::path() {
#ifdef SPUSH_HAVE_DNNL
  const dnnl::version_t* v = dnnl::version();
  const Formats f = formats_override();
  return fmt::format("onednn {}.{}.{} ({}{})", v->major, v->minor, v->patch,
                     isa_name(dnnl::get_effective_cpu_isa()),
                     f == Formats::kPlain ? ", plain formats"
                     : f == Formats::kAny ? ", blocked formats"
                                          : "");
#else
  return "reference (built without oneDNN)";
#endif
}

}  // namespace spush::kernels

// fp32 2-D convolution over one node's minibatch (shapes and layouts: conv_shape.h):
//
//   forward           y  = conv(x, w) (+ b)                  y  overwritten
//   backward_data     dx = conv_transpose(dy, w)             dx overwritten
//   backward_weights  dw += sum_s dy_s (x) x_s,  db += sum dy  (accumulated; db may be null)
//
// The *_ref functions are the specification: im2col + cblas_sgemm per chunk of samples (the
// algorithm Conv2d ran before oneDNN), single-threaded. Conv2dPlan is the fast path: oneDNN's
// convolution primitives (AVX-512 / AVX2 JIT code picked at run time), created once per shape
// when the plan is built, when spush is built with oneDNN (SPUSH_HAVE_DNNL) and oneDNN has JIT
// code for the shape; otherwise the plan runs the reference.
//
// Threading and determinism: a plan runs every op on the calling thread alone (oneDNN is given
// one OpenMP thread while it builds and runs the primitives); callers parallelize over nodes
// and fixed sample ranges (nets::Conv2d does). A plan's results are then a function of the
// shape and the inputs only -- the same bits for any OMP_NUM_THREADS and any number of MPI
// ranks on one machine -- although not the bits of the reference (another summation order).
// Plans are immutable once built: several threads may run one plan at once (scratch buffers
// are per thread).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "spush/kernels/conv_shape.h"

namespace spush::kernels {

void conv2d_forward_ref(const ConvShape& s, const float* x, const float* w, const float* b,
                        float* y);
void conv2d_backward_data_ref(const ConvShape& s, const float* dy, const float* w, float* dx);
void conv2d_backward_weights_ref(const ConvShape& s, const float* x, const float* dy, float* dw,
                                 float* db);

// Which code new Conv2dPlans run: kFast (oneDNN where available, else the reference) or
// kReference (the *_ref functions). Process-wide; the initial value is kFast, or kReference
// when the environment variable SPUSH_CONV_IMPL is "reference" at the first query. Existing
// plans keep the implementation they were built with (nets::Conv2d keys its plans by it).
enum class ConvImpl { kFast, kReference };
void set_conv_impl(ConvImpl impl);
ConvImpl conv_impl();

class Conv2dPlan {
 public:
  // Validates the shape (ConvShape::check) and builds the primitives; `bias` says whether
  // forward() adds b and backward_weights() accumulates db.
  Conv2dPlan(const ConvShape& s, bool bias, ConvImpl impl = conv_impl());
  ~Conv2dPlan();
  Conv2dPlan(const Conv2dPlan&) = delete;
  Conv2dPlan& operator=(const Conv2dPlan&) = delete;

  const ConvShape& shape() const { return s_; }
  bool bias() const { return bias_; }
  ConvImpl impl() const { return impl_; }
  // True when the ops run oneDNN (false: the reference).
  bool uses_dnnl() const { return dnnl_ != nullptr; }
  // The oneDNN implementations chosen ("fwd=... bwd_d=... bwd_w=..."), or "reference".
  std::string describe() const;

  void forward(const float* x, const float* w, const float* b, float* y) const;
  void backward_data(const float* dy, const float* w, float* dx) const;
  void backward_weights(const float* x, const float* dy, float* dw, float* db) const;
  // backward_weights, then backward_data when dx is not null (the same results), reordering dy
  // into oneDNN's layout once for both.
  void backward(const float* x, const float* dy, const float* w, float* dx, float* dw,
                float* db) const;

  // What a kFast plan runs on this machine: "onednn <version> (<isa>)" or "reference (<why>)".
  static std::string path();

 public:
  struct Dnnl;  // the oneDNN primitives (kernels/cpu/conv.cpp)

 private:
  ConvShape s_;
  bool bias_;
  ConvImpl impl_;
  std::unique_ptr<Dnnl> dnnl_;
};

}  // namespace spush::kernels

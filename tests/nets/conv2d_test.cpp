// Conv2d end to end on its two paths (kernels/include/spush/kernels/conv.h): the default plans
// (oneDNN when built with it) against kernels::ConvImpl::kReference (im2col + sgemm) on
// node-batched tensors -- outputs, input gradients and accumulated parameter gradients -- with
// the fp32 summation-order tolerance of tests/kernels/conv_test.cpp; and the same bits for 1 and
// 2 OpenMP threads on the default path (batches of one and of two sample ranges per node).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "nets_test_util.h"
#include "spush/kernels/conv.h"
#include "spush/nets/layers.h"
#include "spush/nets/model.h"

namespace spush::nets {
namespace {

using kernels::ConvImpl;

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

struct Result {
  Tensor out, din;
  NodeMatrix dparams;
};

struct ConvSetup {
  Conv2dSpec spec;
  int64_t nodes, batch, h, w;
};

class Conv2dPaths : public ::testing::TestWithParam<ConvSetup> {};

// Runs forward and backward (dparams starting at `init`) with the given implementation.
Result run_layer(const ConvSetup& st, ConvImpl impl, const Tensor& in, const NodeMatrix& params,
                 const Tensor& dout, const NodeMatrix& init) {
  const ConvImpl saved = kernels::conv_impl();
  kernels::set_conv_impl(impl);
  Conv2d layer(st.spec);
  Layout layout;
  layer.declare(layout, "conv");
  layer.set_nodes(st.nodes);
  Result r;
  r.dparams = init;
  layer.forward(in, r.out, params, true);
  layer.backward(in, r.out, dout, &r.din, params, r.dparams);
  kernels::set_conv_impl(saved);
  return r;
}

using test::random_tensor;

template <typename T>
T abs_of(T t) {
  for (auto& v : t.data) v = std::fabs(v);
  return t;
}

NodeMatrix abs_matrix(const NodeMatrix& m) {
  NodeMatrix a(m.rows(), m.cols());
  for (int64_t r = 0; r < m.rows(); ++r)
    for (int64_t j = 0; j < m.cols(); ++j) a.row(r)[j] = std::fabs(m.row(r)[j]);
  return a;
}

void expect_close(const float* got, const float* want, const float* bound, const float* init,
                  int64_t size, int64_t n, const char* what) {
  const double nn = static_cast<double>(n);
  const double f = 2.0 * std::min(nn, 8.0 * std::sqrt(nn)) * kU;
  int bad = 0;
  for (int64_t i = 0; i < size; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = f * bound[i] + (init ? 2 * kU * std::fabs(init[i]) : 0.0) + 1e-30;
    if (!(err <= tol) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs reference " << want[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST_P(Conv2dPaths, DefaultMatchesReference) {
  const ConvSetup st = GetParam();
  Conv2d probe(st.spec);
  const Shape3 is{st.spec.in, st.h, st.w}, os = probe.output_shape(is);
  Layout layout;
  probe.declare(layout, "conv");
  std::mt19937_64 rng(5);
  const Tensor in = random_tensor(st.nodes, st.batch, is, rng);
  const Tensor dout = random_tensor(st.nodes, st.batch, os, rng);
  NodeMatrix params(st.nodes, layout.size()), init(st.nodes, layout.size());
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (int64_t r = 0; r < st.nodes; ++r)
    for (int64_t j = 0; j < layout.size(); ++j) {
      params.row(r)[j] = d(rng);
      init.row(r)[j] = d(rng);
    }
  NodeMatrix zero(st.nodes, layout.size());
  const Result fast = run_layer(st, ConvImpl::kFast, in, params, dout, init);
  const Result ref = run_layer(st, ConvImpl::kReference, in, params, dout, init);
  const Result bound =
      run_layer(st, ConvImpl::kReference, abs_of(in), abs_matrix(params), abs_of(dout), zero);
  const Conv2dSpec& s = st.spec;
  expect_close(fast.out.data.data(), ref.out.data.data(), bound.out.data.data(), nullptr,
               fast.out.numel(), s.in * s.kh * s.kw + 1, "out");
  expect_close(fast.din.data.data(), ref.din.data.data(), bound.din.data.data(), nullptr,
               fast.din.numel(), s.out * s.kh * s.kw, "din");
  for (int64_t r = 0; r < st.nodes; ++r)
    expect_close(fast.dparams.row(r), ref.dparams.row(r), bound.dparams.row(r), init.row(r),
                 layout.size(), st.batch * os.h * os.w, "dparams");

  // The default path gives the same bits with 1 and 2 threads.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result one = run_layer(st, ConvImpl::kFast, in, params, dout, init);
  omp_set_num_threads(2);
  const Result two = run_layer(st, ConvImpl::kFast, in, params, dout, init);
  omp_set_num_threads(saved);
  EXPECT_EQ(one.out.data, two.out.data);
  EXPECT_EQ(one.din.data, two.din.data);
  for (int64_t r = 0; r < st.nodes; ++r)
    EXPECT_TRUE(
        std::equal(one.dparams.row(r), one.dparams.row(r) + layout.size(), two.dparams.row(r)))
        << "node " << r;
}

INSTANTIATE_TEST_SUITE_P(
    Layers, Conv2dPaths,
    ::testing::Values(
        ConvSetup{Conv2dSpec{16, 16, 3, 3, 1, 1, 1, 1, false}, 4, 32, 32, 32},
        ConvSetup{Conv2dSpec{16, 32, 3, 3, 2, 2, 1, 1, false}, 2, 8, 32, 32},
        ConvSetup{Conv2dSpec{1, 6, 5, 5, 1, 1, 2, 2, true}, 4, 32, 28, 28},
        ConvSetup{Conv2dSpec{6, 16, 5, 5, 1, 1, 0, 0, true}, 3, 70, 14, 14},  // 2 ranges
        ConvSetup{Conv2dSpec{3, 5, 3, 2, 2, 1, 1, 0, true}, 2, 130, 9, 7}));  // 3 ranges

}  // namespace
}  // namespace spush::nets

// fp32 convolution (kernels/include/spush/kernels/conv.h): the Conv2dPlan fast path (oneDNN when
// built with it) against the im2col + sgemm reference on random inputs -- forward with and
// without bias, backward-data (overwrites), backward-weights (accumulates into dw and db) --
// on ResNet-20's and LeNet-5's shapes and odd ones; the reference selection; and the
// determinism contract (the same bits with 1 and 2 OpenMP threads, inside a parallel region or
// not).
//
// Tolerance. Every output is a sum of n products (forward: n = cin*kh*kw; backward-data:
// n = cout*kh*kw / stride^2 at most; backward-weights: n = batch*oh*ow) which both codes add in
// fp32 in different orders. With T = sum |terms| (computed by the reference on |inputs|), each
// code's rounding error is at most (n-1) u T (u = 2^-24, Higham's bound for any summation
// order), and behaves like a random walk of sqrt(n) steps of u T in practice. We allow
// |fast - ref| <= 2 * min(n, 8 sqrt(n)) * u * T (+ 2u |initial| for the accumulating outputs):
// the rigorous bound for small n, an 8-sigma random-walk bound for large n.
#include "spush/kernels/conv.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "conv_test_util.h"

namespace spush::kernels {
namespace {

using Vec = std::vector<float>;

Vec random_vec(int64_t n, std::mt19937_64& rng, float scale = 1.0f) {
  Vec v(static_cast<size_t>(n));
  std::normal_distribution<float> d(0.0f, scale);
  for (auto& x : v) x = d(rng);
  return v;
}

Vec abs_vec(const Vec& v) {
  Vec a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

using test::conv_shape;
using test::square_conv;

std::vector<ConvShape> test_shapes() {
  return {
      // ResNet-20 (CIFAR 32x32 and an MNIST-like 28x28 first layer), batch 32 and 8.
      square_conv(8, 3, 32, 16, 3, 1, 1), square_conv(8, 1, 28, 16, 3, 1, 1),
      square_conv(32, 16, 32, 16, 3, 1, 1), square_conv(8, 16, 32, 32, 3, 2, 1),
      square_conv(8, 16, 32, 32, 1, 2, 0),  // projection shortcut
      square_conv(8, 32, 16, 32, 3, 1, 1), square_conv(8, 32, 16, 64, 3, 2, 1),
      square_conv(32, 64, 8, 64, 3, 1, 1),
      // LeNet-5
      square_conv(32, 1, 28, 6, 5, 1, 2), square_conv(32, 6, 14, 16, 5, 1, 0),
      // odd sizes
      square_conv(1, 1, 5, 1, 1, 1, 0), square_conv(1, 3, 7, 5, 3, 1, 2),
      square_conv(3, 5, 9, 7, 1, 1, 0), square_conv(2, 4, 11, 6, 3, 3, 1),
      conv_shape(2, 3, 7, 13, 5, 3, 2, 2, 1, 2, 0),  // non-square everything
      conv_shape(1, 1, 6, 4, 3, 2, 4, 1, 2, 0, 1),
      square_conv(4, 17, 6, 19, 3, 1, 1),  // channels that are not multiples of the SIMD width
  };
}

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

double tol_factor(int64_t n) {
  const double nn = static_cast<double>(n);
  return 2.0 * std::min(nn, 8.0 * std::sqrt(nn)) * kU;
}

// Checks |got - want| <= f * bound + 2u |init| element-wise; returns the largest
// |got - want| / (u * bound) seen (for the log).
double expect_close(const Vec& got, const Vec& want, const Vec& bound, const Vec* init, double f,
                    const std::string& what) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = f * bound[i] + (init ? 2 * kU * std::fabs((*init)[i]) : 0.0) + 1e-30;
    if (bound[i] > 0) worst = std::max(worst, err / (kU * bound[i]));
    if (!(err <= tol) && bad++ < 5)
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", reference " << want[i]
                    << ", |diff| " << err << " > tolerance " << tol;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " elements outside the tolerance";
  return worst;
}

bool dnnl_expected() { return Conv2dPlan::path().rfind("onednn", 0) == 0; }

class ConvShapes : public ::testing::TestWithParam<ConvShape> {};

TEST_P(ConvShapes, FastMatchesReference) {
  const ConvShape s = GetParam();
  std::mt19937_64 rng(1234 + s.x_size());
  const Vec x = random_vec(s.x_size(), rng), w = random_vec(s.w_size(), rng, 0.3f),
            b = random_vec(s.cout, rng), dy = random_vec(s.y_size(), rng);
  const Vec ax = abs_vec(x), aw = abs_vec(w), ab = abs_vec(b), ady = abs_vec(dy);
  for (bool bias : {false, true}) {
    SCOPED_TRACE(s.str() + (bias ? " bias" : " no bias"));
    const Conv2dPlan plan(s, bias, ConvImpl::kFast);
    std::printf("  %s%s: %s\n", s.str().c_str(), bias ? " bias" : "", plan.describe().c_str());
    // oneDNN has JIT code for every shape here on x86-64 with AVX2 or AVX-512.
    if (dnnl_expected()) {
      EXPECT_TRUE(plan.uses_dnnl()) << plan.describe();
    }

    // forward: y = conv(x, w) (+ b), y overwritten
    Vec y(s.y_size(), NAN), y_ref(s.y_size()), y_abs(s.y_size());
    plan.forward(x.data(), w.data(), b.data(), y.data());
    conv2d_forward_ref(s, x.data(), w.data(), bias ? b.data() : nullptr, y_ref.data());
    conv2d_forward_ref(s, ax.data(), aw.data(), bias ? ab.data() : nullptr, y_abs.data());
    const double wf =
        expect_close(y, y_ref, y_abs, nullptr, tol_factor(s.k() + (bias ? 1 : 0)), "forward");

    // backward-data: dx overwritten
    Vec dx(s.x_size(), NAN), dx_ref(s.x_size()), dx_abs(s.x_size());
    plan.backward_data(dy.data(), w.data(), dx.data());
    conv2d_backward_data_ref(s, dy.data(), w.data(), dx_ref.data());
    conv2d_backward_data_ref(s, ady.data(), aw.data(), dx_abs.data());
    const double wd = expect_close(dx, dx_ref, dx_abs, nullptr, tol_factor(s.cout * s.kh * s.kw),
                                   "backward_data");

    // backward-weights: accumulates into dw (and db when given)
    const Vec dw0 = random_vec(s.w_size(), rng), db0 = random_vec(s.cout, rng);
    Vec dw = dw0, db = db0, dw_ref = dw0, db_ref = db0;
    Vec dw_abs(s.w_size(), 0.0f), db_abs(s.cout, 0.0f);
    plan.backward_weights(x.data(), dy.data(), dw.data(), bias ? db.data() : nullptr);
    conv2d_backward_weights_ref(s, x.data(), dy.data(), dw_ref.data(),
                                bias ? db_ref.data() : nullptr);
    conv2d_backward_weights_ref(s, ax.data(), ady.data(), dw_abs.data(), db_abs.data());
    const int64_t n = s.batch * s.oh() * s.ow();
    const double ww = expect_close(dw, dw_ref, dw_abs, &dw0, tol_factor(n), "backward_weights dw");
    if (bias) {
      expect_close(db, db_ref, db_abs, &db0, tol_factor(n), "backward_weights db");
    } else {
      EXPECT_EQ(db, db0) << "db changed without bias";
    }
    std::printf(
        "    max |fast - ref| / (u sum|terms|): forward %.1f, backward_data %.1f, "
        "backward_weights %.1f\n",
        wf, wd, ww);
    // backward() gives the bits of backward_weights() and backward_data().
    {
      Vec dw3 = dw0, db3 = db0, dx3(s.x_size(), NAN), dw4 = dw0;
      plan.backward(x.data(), dy.data(), w.data(), dx3.data(), dw3.data(),
                    bias ? db3.data() : nullptr);
      EXPECT_EQ(dx3, dx);
      EXPECT_EQ(dw3, dw);
      EXPECT_EQ(db3, db);
      plan.backward(x.data(), dy.data(), w.data(), nullptr, dw4.data(), nullptr);
      EXPECT_EQ(dw4, dw);
    }
    // With bias, a null db is allowed: dw must be the same as with db.
    if (bias) {
      Vec dw2 = dw0;
      plan.backward_weights(x.data(), dy.data(), dw2.data(), nullptr);
      EXPECT_EQ(dw2, dw);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvShapes, ::testing::ValuesIn(test_shapes()),
                         [](const ::testing::TestParamInfo<ConvShape>& i) {
                           const ConvShape& s = i.param;
                           auto d = [](int64_t v) { return std::to_string(v); };
                           return "b" + d(s.batch) + "_" + d(s.cin) + "x" + d(s.h) + "x" + d(s.w) +
                                  "_to" + d(s.cout) + "_k" + d(s.kh) + "x" + d(s.kw) + "_s" +
                                  d(s.sh) + "x" + d(s.sw) + "_p" + d(s.ph) + "x" + d(s.pw);
                         });

// The reference plan runs the *_ref functions: the same bits.
TEST(Conv2dPlan, ReferenceImplIsTheReference) {
  const ConvShape s = square_conv(4, 16, 16, 32, 3, 2, 1);
  std::mt19937_64 rng(7);
  const Vec x = random_vec(s.x_size(), rng), w = random_vec(s.w_size(), rng),
            b = random_vec(s.cout, rng), dy = random_vec(s.y_size(), rng);
  const Conv2dPlan plan(s, true, ConvImpl::kReference);
  EXPECT_FALSE(plan.uses_dnnl());
  EXPECT_EQ(plan.describe(), "reference");
  Vec y(s.y_size()), y_ref(s.y_size()), dx(s.x_size()), dx_ref(s.x_size());
  Vec dw(s.w_size(), 1.0f), dw_ref = dw, db(s.cout, 2.0f), db_ref = db;
  plan.forward(x.data(), w.data(), b.data(), y.data());
  conv2d_forward_ref(s, x.data(), w.data(), b.data(), y_ref.data());
  plan.backward_data(dy.data(), w.data(), dx.data());
  conv2d_backward_data_ref(s, dy.data(), w.data(), dx_ref.data());
  plan.backward_weights(x.data(), dy.data(), dw.data(), db.data());
  conv2d_backward_weights_ref(s, x.data(), dy.data(), dw_ref.data(), db_ref.data());
  EXPECT_EQ(y, y_ref);
  EXPECT_EQ(dx, dx_ref);
  EXPECT_EQ(dw, dw_ref);
  EXPECT_EQ(db, db_ref);
}

TEST(Conv2dPlan, ProcessWideSelection) {
  const ConvImpl saved = conv_impl();
  set_conv_impl(ConvImpl::kReference);
  const ConvShape s = square_conv(2, 16, 8, 16, 3, 1, 1);
  EXPECT_EQ(Conv2dPlan(s, false).impl(), ConvImpl::kReference);
  EXPECT_FALSE(Conv2dPlan(s, false).uses_dnnl());
  set_conv_impl(ConvImpl::kFast);
  EXPECT_EQ(Conv2dPlan(s, false).impl(), ConvImpl::kFast);
  EXPECT_EQ(Conv2dPlan(s, false).uses_dnnl(), dnnl_expected());
  set_conv_impl(saved);
}

TEST(Conv2dPlan, RejectsInvalidShapes) {
  EXPECT_THROW(Conv2dPlan(square_conv(0, 1, 5, 1, 3, 1, 0), false), std::invalid_argument);
  EXPECT_THROW(Conv2dPlan(square_conv(1, 1, 2, 1, 5, 1, 1), false), std::invalid_argument);
  EXPECT_THROW(Conv2dPlan(square_conv(1, 1, 5, 1, 3, 0, 0), false), std::invalid_argument);
}

// The results depend on the shape and the inputs only: the same bits whatever
// omp_get_max_threads() says and whether the caller is inside a parallel region (nets::Conv2d
// runs plans on OpenMP threads; mpi_test compares nodes' digests across thread and rank counts).
TEST(Conv2dPlan, SameBitsForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  for (const ConvShape& s :
       {square_conv(32, 16, 32, 16, 3, 1, 1), square_conv(32, 32, 16, 64, 3, 2, 1),
        square_conv(32, 64, 8, 64, 3, 1, 1), square_conv(32, 6, 14, 16, 5, 1, 0)}) {
    SCOPED_TRACE(s.str());
    std::mt19937_64 rng(99);
    const Vec x = random_vec(s.x_size(), rng), w = random_vec(s.w_size(), rng),
              b = random_vec(s.cout, rng), dy = random_vec(s.y_size(), rng);
    struct Out {
      Vec y, dx, dw, db;
    };
    auto run = [&](const Conv2dPlan& plan) {
      Out o{Vec(s.y_size()), Vec(s.x_size()), Vec(s.w_size(), 0.5f), Vec(s.cout, 0.25f)};
      plan.forward(x.data(), w.data(), b.data(), o.y.data());
      plan.backward_data(dy.data(), w.data(), o.dx.data());
      plan.backward_weights(x.data(), dy.data(), o.dw.data(), o.db.data());
      return o;
    };
    omp_set_num_threads(1);
    const Conv2dPlan plan1(s, true, ConvImpl::kFast);
    const Out one = run(plan1);
    omp_set_num_threads(4);
    const Conv2dPlan plan4(s, true, ConvImpl::kFast);
    const Out four = run(plan4);
    const Out four_on_plan1 = run(plan1);
    Out in_region[2];
#pragma omp parallel num_threads(2)
    {
      const int t = omp_get_thread_num();
      if (t < 2) in_region[t] = run(plan1);
    }
    omp_set_num_threads(saved);
    for (const Out* o :
         std::vector<const Out*>{&four, &four_on_plan1, &in_region[0], &in_region[1]}) {
      EXPECT_EQ(o->y, one.y);
      EXPECT_EQ(o->dx, one.dx);
      EXPECT_EQ(o->dw, one.dw);
      EXPECT_EQ(o->db, one.db);
    }
  }
}

}  // namespace
}  // namespace spush::kernels

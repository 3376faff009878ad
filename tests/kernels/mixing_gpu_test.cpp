// Gossip mixing on the GPU (mixing_cuda.h) against the CPU functions of mixing.h, bit for bit:
// sparse rounds with several interleaved terms per destination, negative self weights and
// push-sum weights, messages spanning many column tiles; the fused round (mix + z = x / u)
// against gossip_mix_sparse_cpu then debias_cpu; dense rounds, including messages that are
// rows of x itself; the de-bias alone; invalid terms and unsorted messages set the error flag.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/mixing_cuda.h"

namespace spush::kernels {
namespace {

constexpr float kPad = -7777.0f;  // padding columns keep this unless an index points there

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b, std::string* where) {
  if (a.size() != b.size()) {
    *where = "size " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    uint32_t p, q;
    std::memcpy(&p, &a[i], 4);
    std::memcpy(&q, &b[i], 4);
    if (p != q) {
      *where = "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " +
               std::to_string(b[i]);
      return false;
    }
  }
  return true;
}

#define EXPECT_BITS_EQ(a, b)                                              \
  do {                                                                    \
    std::string where_;                                                   \
    EXPECT_TRUE(bit_equal(a, b, &where_)) << #a " vs " #b ": " << where_; \
  } while (0)

struct Round {
  int rows = 0, nmsg = 0;
  int64_t d = 0, ld = 0;
  std::vector<float> x, u, msg_u;
  std::vector<MixTerm> terms;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> idx;
  std::vector<float> val;
};

// rows destination rows, nmsg messages each keeping ~rho of [0, ld) (padding columns included
// now and then), 1..4 shuffled terms per row with a negative self-like term.
Round random_round(int rows, int nmsg, int64_t d, int64_t pad, double rho, uint64_t seed) {
  Round R;
  R.rows = rows;
  R.nmsg = nmsg;
  R.d = d;
  R.ld = d + pad;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unit(0.25f, 1.25f), w(0.05f, 0.6f);
  std::bernoulli_distribution keep(rho);
  R.x.assign(static_cast<size_t>(rows * R.ld), kPad);
  for (int r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j) R.x[r * R.ld + j] = normal(rng);
  for (int r = 0; r < rows; ++r) R.u.push_back(unit(rng));
  for (int m = 0; m < nmsg; ++m) {
    for (int64_t j = 0; j < R.ld; ++j) {
      if (keep(rng) || (m == 0 && (j == 0 || j == R.ld - 1))) {
        R.idx.push_back(static_cast<int32_t>(j));
        R.val.push_back(normal(rng));
      }
    }
    R.offsets.push_back(static_cast<int64_t>(R.idx.size()));
    R.msg_u.push_back(unit(rng));
  }
  for (int r = 0; r < rows; ++r) {
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int t = 0; t < n; ++t)
      R.terms.push_back(MixTerm{r, static_cast<int32_t>(rng() % nmsg), t == 0 ? -w(rng) : w(rng)});
  }
  std::shuffle(R.terms.begin(), R.terms.end(), rng);
  return R;
}

struct DeviceRound {
  test::DeviceBuffer<float> x, u, msg_u, val;
  test::DeviceBuffer<MixTerm> terms;
  test::DeviceBuffer<int64_t> offsets;
  test::DeviceBuffer<int32_t> idx;
  test::DeviceBuffer<int> flag;
  explicit DeviceRound(const Round& R)
      : x(R.x),
        u(R.u),
        msg_u(R.msg_u),
        val(R.val),
        terms(R.terms),
        offsets(R.offsets),
        idx(R.idx),
        flag(std::vector<int>{0}) {}
};

TEST(MixingGpu, SparseRoundsMatchTheCpu) {
  SPUSH_REQUIRE_GPU();
  struct Case {
    int rows, nmsg;
    int64_t d, pad;
    double rho;
  };
  for (const Case& c :
       {Case{1, 1, 1, 0, 0.5}, Case{4, 4, 1000, 3, 0.1}, Case{16, 16, 269722, 6, 0.01},
        Case{5, 7, 200000, 0, 0.3}, Case{3, 3, 1 << 20, 1, 0.001}}) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " d " + std::to_string(c.d));
    for (bool with_u : {true, false}) {
      const Round R = random_round(c.rows, c.nmsg, c.d, c.pad, c.rho, c.d * 31 + c.rows);
      DeviceRound D(R);
      gossip_mix_sparse_cuda(D.x.get(), R.rows, R.ld, with_u ? D.u.get() : nullptr, D.terms.get(),
                             static_cast<int64_t>(R.terms.size()), D.offsets.get(), R.nmsg,
                             D.idx.get(), D.val.get(), D.msg_u.get(), D.flag.get(), nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<float> x = R.x, u = R.u;
      gossip_mix_sparse_cpu(x.data(), R.ld, with_u ? u.data() : nullptr, R.terms.data(),
                            static_cast<int64_t>(R.terms.size()), R.offsets.data(), R.idx.data(),
                            R.val.data(), R.msg_u.data());
      EXPECT_EQ(D.flag.download()[0], 0);
      EXPECT_BITS_EQ(D.x.download(), x);
      EXPECT_BITS_EQ(D.u.download(), u);
    }
  }
}

TEST(MixingGpu, FusedRoundEqualsMixThenDebias) {
  SPUSH_REQUIRE_GPU();
  for (int64_t d : {int64_t{1}, int64_t{4095}, int64_t{4096}, int64_t{4097}, int64_t{269722}}) {
    const Round R = random_round(6, 6, d, 5, 0.05, static_cast<uint64_t>(d));
    DeviceRound D(R);
    test::DeviceBuffer<float> z(static_cast<size_t>(R.rows * R.ld));
    gossip_mix_sparse_debias_cuda(D.x.get(), R.rows, R.ld, R.d, D.u.get(), D.terms.get(),
                                  static_cast<int64_t>(R.terms.size()), D.offsets.get(), R.nmsg,
                                  D.idx.get(), D.val.get(), D.msg_u.get(), z.get(), R.ld,
                                  D.flag.get(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> x = R.x, u = R.u;
    gossip_mix_sparse_cpu(x.data(), R.ld, u.data(), R.terms.data(),
                          static_cast<int64_t>(R.terms.size()), R.offsets.data(), R.idx.data(),
                          R.val.data(), R.msg_u.data());
    std::vector<float> zr(static_cast<size_t>(R.rows * R.ld));
    debias_cpu(x.data(), R.ld, u.data(), R.rows, R.d, zr.data(), R.ld);
    std::vector<float> zg = z.download();
    for (int r = 0; r < R.rows; ++r)  // z's padding is not part of the contract
      for (int64_t j = R.d; j < R.ld; ++j) zg[r * R.ld + j] = zr[r * R.ld + j];
    EXPECT_EQ(D.flag.download()[0], 0) << "d " << d;
    EXPECT_BITS_EQ(D.x.download(), x);
    EXPECT_BITS_EQ(D.u.download(), u);
    EXPECT_BITS_EQ(zg, zr);
  }
}

TEST(MixingGpu, DenseRoundsMatchTheCpuIncludingMessagesInX) {
  SPUSH_REQUIRE_GPU();
  for (int64_t d : {int64_t{1}, int64_t{1000}, int64_t{300001}}) {
    const Round R = random_round(8, 8, d, 2, 0.0, static_cast<uint64_t>(d) + 5);
    std::vector<float> msgs = R.x;  // separate message rows, same shape as x
    for (float& m : msgs) m *= 0.5f;
    for (bool in_x : {false, true}) {
      DeviceRound D(R);
      test::DeviceBuffer<float> dm(msgs);
      const float* mptr = in_x ? D.x.get() : dm.get();
      gossip_mix_dense_cuda(D.x.get(), R.rows, R.ld, R.d, D.u.get(), D.terms.get(),
                            static_cast<int64_t>(R.terms.size()), mptr, R.nmsg, R.ld, D.msg_u.get(),
                            D.flag.get(), nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<float> x = R.x, u = R.u;
      gossip_mix_dense_cpu(x.data(), R.ld, R.d, u.data(), R.terms.data(),
                           static_cast<int64_t>(R.terms.size()), in_x ? x.data() : msgs.data(),
                           R.ld, R.msg_u.data());
      EXPECT_EQ(D.flag.download()[0], 0);
      EXPECT_BITS_EQ(D.x.download(), x);
      EXPECT_BITS_EQ(D.u.download(), u);
    }
  }
}

TEST(MixingGpu, DebiasMatchesTheCpu) {
  SPUSH_REQUIRE_GPU();
  const Round R = random_round(5, 1, 123457, 3, 0.0, 9);
  test::DeviceBuffer<float> x(R.x), u(R.u), z(R.x.size());
  debias_cuda(x.get(), R.ld, u.get(), R.rows, R.d, z.get(), R.ld, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> zr(R.x.size());
  debias_cpu(R.x.data(), R.ld, R.u.data(), R.rows, R.d, zr.data(), R.ld);
  std::vector<float> zg = z.download();
  for (int r = 0; r < R.rows; ++r)
    for (int64_t j = R.d; j < R.ld; ++j) zg[r * R.ld + j] = zr[r * R.ld + j];
  EXPECT_BITS_EQ(zg, zr);
}

TEST(MixingGpu, InvalidTermsAndUnsortedMessagesSetTheErrorFlag) {
  SPUSH_REQUIRE_GPU();
  auto run = [](Round R) {
    DeviceRound D(R);
    gossip_mix_sparse_cuda(D.x.get(), R.rows, R.ld, D.u.get(), D.terms.get(),
                           static_cast<int64_t>(R.terms.size()), D.offsets.get(), R.nmsg,
                           D.idx.get(), D.val.get(), D.msg_u.get(), D.flag.get(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    return D.flag.download()[0];
  };
  Round good = random_round(4, 4, 5000, 0, 0.1, 77);
  good.terms.push_back(MixTerm{0, 0, 0.5f});  // message 0 (edited below) is certainly used
  EXPECT_EQ(run(good), 0);
  Round bad = good;
  bad.terms.push_back(MixTerm{4, 0, 0.5f});  // dst outside [0, rows)
  EXPECT_EQ(run(bad), 2);
  bad = good;
  bad.terms.push_back(MixTerm{0, 4, 0.5f});  // msg outside [0, nmsg)
  EXPECT_EQ(run(bad), 2);
  bad = good;
  std::swap(bad.idx[1], bad.idx[2]);  // message 0 no longer ascending
  EXPECT_EQ(run(bad), 2);
  bad = good;
  bad.idx[bad.offsets[1] - 1] = 5000;  // past ld
  EXPECT_EQ(run(bad), 2);
}

}  // namespace
// msg_u null: u is the caller's already-mixed weights; the kernel mixes x and writes z only.
TEST(MixingGpu, FusedRoundWithPremixedWeights) {
  SPUSH_REQUIRE_GPU();
  for (int64_t d : {int64_t{7}, int64_t{4097}, int64_t{100003}}) {
    const Round R = random_round(5, 10, d, 3, 0.03, static_cast<uint64_t>(d) + 77);
    DeviceRound D(R);
    test::DeviceBuffer<float> z(static_cast<size_t>(R.rows * R.ld));
    gossip_mix_sparse_debias_cuda(D.x.get(), R.rows, R.ld, R.d, D.u.get(), D.terms.get(),
                                  static_cast<int64_t>(R.terms.size()), D.offsets.get(), R.nmsg,
                                  D.idx.get(), D.val.get(), nullptr, z.get(), R.ld, D.flag.get(),
                                  nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> x = R.x;
    gossip_mix_sparse_cpu(x.data(), R.ld, nullptr, R.terms.data(),
                          static_cast<int64_t>(R.terms.size()), R.offsets.data(), R.idx.data(),
                          R.val.data(), nullptr);
    std::vector<float> zr(static_cast<size_t>(R.rows * R.ld));
    debias_cpu(x.data(), R.ld, R.u.data(), R.rows, R.d, zr.data(), R.ld);
    std::vector<float> zg = z.download();
    for (int r = 0; r < R.rows; ++r)
      for (int64_t j = R.d; j < R.ld; ++j) zg[r * R.ld + j] = zr[r * R.ld + j];
    EXPECT_EQ(D.flag.download()[0], 0) << "d " << d;
    EXPECT_BITS_EQ(D.x.download(), x);
    EXPECT_BITS_EQ(D.u.download(), R.u);  // untouched
    EXPECT_BITS_EQ(zg, zr);
  }
}

TEST(MixingGpu, ScaleRowsMatchesTheCpu) {
  SPUSH_REQUIRE_GPU();
  for (int64_t d : {int64_t{1}, int64_t{2049}, int64_t{300001}}) {
    const Round R = random_round(7, 1, d, 3, 0.0, static_cast<uint64_t>(d) + 3);
    std::vector<double> w;
    for (int r = 0; r < R.rows; ++r) w.push_back(1.0 - 0.1 * r - 1.0 / (3.0 + r));
    test::DeviceBuffer<float> x(R.x);
    test::DeviceBuffer<double> dw(w);
    scale_rows_cuda(x.get(), R.rows, R.ld, R.d, dw.get(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> xr = R.x;
    scale_rows_cpu(xr.data(), R.rows, R.ld, R.d, w.data());
    EXPECT_BITS_EQ(x.download(), xr);  // padding (kPad) untouched on both
  }
}

}  // namespace spush::kernels

// Gossip mixing tests (mixing.h): sparse (CSR) and dense mixing against a naive reference that
// expands every message to a dense row and applies the terms one by one, with several terms
// per destination, negative self weights and push-sum weights u; the de-bias z = x / u;
// results bit-identical across runs and thread counts; invalid terms rejected before writing.
#include "spush/kernels/mixing.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace spush::kernels {
namespace {

constexpr float kPoison = -7777.0f;  // padding columns must keep this

struct SparseMsgs {
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> idx;
  std::vector<float> val;
  std::vector<float> u;
};

// nmsg messages over d columns, each keeping a random ascending subset of about rho * d.
SparseMsgs random_sparse(int nmsg, int64_t d, double rho, std::mt19937_64& rng) {
  SparseMsgs m;
  std::normal_distribution<float> normal;
  std::bernoulli_distribution keep(rho);
  for (int k = 0; k < nmsg; ++k) {
    for (int64_t j = 0; j < d; ++j)
      if (keep(rng) || (k == 0 && (j == 0 || j == d - 1))) {  // message 0 hits both edges
        m.idx.push_back(static_cast<int32_t>(j));
        m.val.push_back(normal(rng));
      }
    m.offsets.push_back(static_cast<int64_t>(m.idx.size()));
    m.u.push_back(0.25f + std::uniform_real_distribution<float>(0.0f, 1.0f)(rng));
  }
  return m;
}

// Terms: every destination row in [0, rows) except `skip` gets 1..4 terms, among them a
// negative self term; the list is shuffled so terms of one dst are interleaved with others.
std::vector<MixTerm> random_terms(int rows, int nmsg, int skip, std::mt19937_64& rng) {
  std::vector<MixTerm> terms;
  std::uniform_real_distribution<float> w(0.05f, 0.6f);
  for (int r = 0; r < rows; ++r) {
    if (r == skip) continue;
    const int n = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int t = 0; t < n; ++t) {
      const int msg = std::uniform_int_distribution<int>(0, nmsg - 1)(rng);
      terms.push_back(MixTerm{r, msg, t == 0 ? -w(rng) : w(rng)});
    }
  }
  std::shuffle(terms.begin(), terms.end(), rng);
  return terms;
}

std::vector<float> random_matrix(int rows, int64_t d, int64_t ld, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(rows * ld), kPoison);
  for (int r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j) x[r * ld + j] = normal(rng);
  return x;
}

// Naive reference: dense message rows, terms applied in order, element by element.
void reference_mix(std::vector<float>& x, int64_t ld, int64_t d, std::vector<float>* u,
                   const std::vector<MixTerm>& terms, const std::vector<float>& dense_msgs,
                   const std::vector<float>& msg_u) {
  for (const MixTerm& t : terms) {
    for (int64_t j = 0; j < d; ++j) x[t.dst * ld + j] += t.weight * dense_msgs[t.msg * d + j];
    if (u) (*u)[t.dst] += t.weight * msg_u[t.msg];
  }
}

std::vector<float> densify(const SparseMsgs& m, int64_t d) {
  const int nmsg = static_cast<int>(m.offsets.size()) - 1;
  std::vector<float> dense(static_cast<size_t>(nmsg * d), 0.0f);
  for (int k = 0; k < nmsg; ++k)
    for (int64_t e = m.offsets[k]; e < m.offsets[k + 1]; ++e) dense[k * d + m.idx[e]] = m.val[e];
  return dense;
}

// |got - want| within a few rounding errors of the terms' magnitudes; padding untouched.
void expect_close(const std::vector<float>& want, const std::vector<float>& got, int rows,
                  int64_t d, int64_t ld, uint64_t seed) {
  ASSERT_EQ(want.size(), got.size());
  for (int r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ld; ++j) {
      const size_t i = static_cast<size_t>(r * ld + j);
      if (j >= d) {
        ASSERT_EQ(got[i], kPoison) << "padding written at row " << r << " col " << j;
        continue;
      }
      ASSERT_NEAR(got[i], want[i], 1e-5f * std::max(1.0f, std::fabs(want[i])))
          << "row " << r << " col " << j << " seed " << seed;
    }
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](float p, float q) {
           return std::bit_cast<uint32_t>(p) == std::bit_cast<uint32_t>(q);
         });
}

TEST(GossipMix, SparseMatchesDenseReference) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    std::mt19937_64 rng(seed);
    const int rows = 7, nmsg = 9;
    const int64_t d = 203, ld = 208;
    const SparseMsgs m = random_sparse(nmsg, d, 0.1, rng);
    const std::vector<MixTerm> terms = random_terms(rows, nmsg, /*skip=*/4, rng);
    std::vector<float> x = random_matrix(rows, d, ld, rng);
    std::vector<float> u(rows);
    for (float& v : u) v = 1.0f + 0.1f * std::normal_distribution<float>()(rng);
    const std::vector<float> x_init = x;
    std::vector<float> x_ref = x, u_ref = u;
    reference_mix(x_ref, ld, d, &u_ref, terms, densify(m, d), m.u);
    gossip_mix_sparse_cpu(x.data(), ld, u.data(), terms.data(), static_cast<int64_t>(terms.size()),
                          m.offsets.data(), m.idx.data(), m.val.data(), m.u.data());
    expect_close(x_ref, x, rows, d, ld, seed);
    for (int r = 0; r < rows; ++r)
      EXPECT_NEAR(u[r], u_ref[r], 1e-6f) << "u row " << r << " seed " << seed;
    // Row 4 receives nothing: unchanged (reference leaves it alone too).
    EXPECT_EQ(u[4], u_ref[4]);
    EXPECT_FALSE(bit_equal(x, x_init)) << "mixing changed nothing";
  }
}

TEST(GossipMix, SparseWithoutPushSumWeights) {
  std::mt19937_64 rng(8);
  const int rows = 3, nmsg = 4;
  const int64_t d = 50, ld = 50;
  const SparseMsgs m = random_sparse(nmsg, d, 0.3, rng);
  const std::vector<MixTerm> terms = random_terms(rows, nmsg, -1, rng);
  std::vector<float> x = random_matrix(rows, d, ld, rng);
  std::vector<float> x_ref = x;
  reference_mix(x_ref, ld, d, nullptr, terms, densify(m, d), m.u);
  gossip_mix_sparse_cpu(x.data(), ld, nullptr, terms.data(), static_cast<int64_t>(terms.size()),
                        m.offsets.data(), m.idx.data(), m.val.data(), nullptr);
  expect_close(x_ref, x, rows, d, ld, 8);
}

TEST(GossipMix, HandComputedSparseExample) {
  // Row 0 keeps -1/2 of its own message (Sparse-Push self term) and gets 1/2 of message 1.
  const int64_t ld = 4;
  std::vector<float> x{1, 2, 3, 4, 10, 20, 30, 40};
  std::vector<float> u{1.0f, 1.0f};
  const std::vector<int64_t> off{0, 2, 3};
  const std::vector<int32_t> idx{1, 3, 0};
  const std::vector<float> val{2.0f, 8.0f, 6.0f};
  const std::vector<float> mu{1.0f, 0.5f};
  const std::vector<MixTerm> terms{{0, 0, -0.5f}, {0, 1, 0.5f}, {1, 0, 0.25f}};
  gossip_mix_sparse_cpu(x.data(), ld, u.data(), terms.data(), 3, off.data(), idx.data(), val.data(),
                        mu.data());
  const std::vector<float> want{4, 1, 3, 0, 10, 20.5f, 30, 42};
  EXPECT_EQ(x, want);
  EXPECT_EQ(u[0], 1.0f - 0.5f + 0.25f);
  EXPECT_EQ(u[1], 1.25f);
}

TEST(GossipMix, DenseMatchesReference) {
  for (uint64_t seed : {4u, 5u}) {
    std::mt19937_64 rng(seed);
    const int rows = 5, nmsg = 6;
    const int64_t d = 5000, ld = 5008, ld_msg = 5003;  // 3 column blocks, odd message stride
    const std::vector<MixTerm> terms = random_terms(rows, nmsg, /*skip=*/2, rng);
    std::vector<float> msgs = random_matrix(nmsg, d, ld_msg, rng);
    std::vector<float> msg_u(nmsg);
    for (float& v : msg_u) v = std::uniform_real_distribution<float>(0.1f, 1.0f)(rng);
    std::vector<float> dense(static_cast<size_t>(nmsg * d));
    for (int k = 0; k < nmsg; ++k)
      for (int64_t j = 0; j < d; ++j) dense[k * d + j] = msgs[k * ld_msg + j];
    std::vector<float> x = random_matrix(rows, d, ld, rng);
    std::vector<float> u(rows, 1.0f);
    std::vector<float> x_ref = x, u_ref = u;
    reference_mix(x_ref, ld, d, &u_ref, terms, dense, msg_u);
    gossip_mix_dense_cpu(x.data(), ld, d, u.data(), terms.data(),
                         static_cast<int64_t>(terms.size()), msgs.data(), ld_msg, msg_u.data());
    expect_close(x_ref, x, rows, d, ld, seed);
    for (int r = 0; r < rows; ++r) EXPECT_NEAR(u[r], u_ref[r], 1e-6f) << "u row " << r;
    EXPECT_EQ(u[2], 1.0f);
  }
}

TEST(GossipMix, DenseMessagesThatAreRowsOfX) {
  // D-PSGD style: messages are the rows of x itself; each column sees the terms in order.
  std::mt19937_64 rng(6);
  const int rows = 4;
  const int64_t d = 4500, ld = 4512;
  const std::vector<MixTerm> terms = random_terms(rows, rows, -1, rng);
  std::vector<float> x = random_matrix(rows, d, ld, rng);
  std::vector<float> ref = x;
  for (const MixTerm& t : terms)
    for (int64_t j = 0; j < d; ++j) ref[t.dst * ld + j] += t.weight * ref[t.msg * ld + j];
  gossip_mix_dense_cpu(x.data(), ld, d, nullptr, terms.data(), static_cast<int64_t>(terms.size()),
                       x.data(), ld, nullptr);
  expect_close(ref, x, rows, d, ld, 6);
}

TEST(GossipMix, DeterministicAcrossRunsAndThreadCounts) {
  const uint64_t seed = 77;
  std::mt19937_64 rng(seed);
  const int rows = 16, nmsg = 16;
  const int64_t d = 40000, ld = 40000;  // large enough for the parallel paths
  const SparseMsgs m = random_sparse(nmsg, d, 0.05, rng);
  const std::vector<MixTerm> terms = random_terms(rows, nmsg, -1, rng);
  const std::vector<float> x0 = random_matrix(rows, d, ld, rng);
  const std::vector<float> dense = random_matrix(nmsg, d, d, rng);
  const int saved = omp_get_max_threads();
  std::vector<float> first_sparse, first_dense, first_u;
  for (int threads : {1, 2, 3, 4, 2}) {
    omp_set_num_threads(threads);
    std::vector<float> xs = x0, xd = x0, us(rows, 1.0f);
    gossip_mix_sparse_cpu(xs.data(), ld, us.data(), terms.data(),
                          static_cast<int64_t>(terms.size()), m.offsets.data(), m.idx.data(),
                          m.val.data(), m.u.data());
    gossip_mix_dense_cpu(xd.data(), ld, d, nullptr, terms.data(),
                         static_cast<int64_t>(terms.size()), dense.data(), d, nullptr);
    if (first_sparse.empty()) {
      first_sparse = xs;
      first_dense = xd;
      first_u = us;
      std::vector<float> ref = x0, ref_u(rows, 1.0f);
      reference_mix(ref, ld, d, &ref_u, terms, densify(m, d), m.u);
      expect_close(ref, xs, rows, d, ld, seed);
      continue;
    }
    EXPECT_TRUE(bit_equal(first_sparse, xs)) << "sparse, " << threads << " threads";
    EXPECT_TRUE(bit_equal(first_dense, xd)) << "dense, " << threads << " threads";
    EXPECT_TRUE(bit_equal(first_u, us)) << "u, " << threads << " threads";
  }
  omp_set_num_threads(saved);
  EXPECT_FALSE(bit_equal(first_sparse, x0)) << "mixing changed nothing";
}

TEST(GossipMix, RejectsBadTermsBeforeWriting) {
  std::vector<float> x(8, 1.0f), u(2, 1.0f);
  const std::vector<int64_t> off{0, 2};
  const std::vector<int32_t> idx{1, 4};  // 4 >= ld
  const std::vector<float> val{1.0f, 1.0f}, mu{1.0f};
  const std::vector<MixTerm> ok_first{{0, 0, 0.5f}};
  EXPECT_THROW(gossip_mix_sparse_cpu(x.data(), 4, u.data(), ok_first.data(), 1, off.data(),
                                     idx.data(), val.data(), mu.data()),
               std::invalid_argument);
  EXPECT_EQ(x, std::vector<float>(8, 1.0f));
  EXPECT_EQ(u, std::vector<float>(2, 1.0f));
  const std::vector<int32_t> good_idx{1, 3};
  const std::vector<MixTerm> neg{{-1, 0, 0.5f}};
  EXPECT_THROW(gossip_mix_sparse_cpu(x.data(), 4, u.data(), neg.data(), 1, off.data(),
                                     good_idx.data(), val.data(), mu.data()),
               std::invalid_argument);
  EXPECT_THROW(gossip_mix_sparse_cpu(x.data(), 4, u.data(), ok_first.data(), 1, off.data(),
                                     good_idx.data(), val.data(), nullptr),
               std::invalid_argument);
  EXPECT_THROW(
      gossip_mix_dense_cpu(x.data(), 4, 5, nullptr, ok_first.data(), 1, x.data(), 4, nullptr),
      std::invalid_argument);
  EXPECT_THROW(debias_cpu(x.data(), 4, u.data(), 2, 4, x.data(), 3), std::invalid_argument);
  // No terms: nothing happens, even with null message buffers.
  gossip_mix_sparse_cpu(x.data(), 4, u.data(), nullptr, 0, nullptr, nullptr, nullptr, nullptr);
  gossip_mix_dense_cpu(x.data(), 4, 4, u.data(), nullptr, 0, nullptr, 4, nullptr);
  EXPECT_EQ(x, std::vector<float>(8, 1.0f));
}

TEST(Debias, DividesEachRowByItsWeight) {
  std::mt19937_64 rng(12);
  for (int64_t d : {int64_t{1}, int64_t{37}, int64_t{9000}}) {
    const int rows = 6;
    const int64_t ld = d + 3, ldz = d + 5;
    const std::vector<float> x = random_matrix(rows, d, ld, rng);
    std::vector<float> u(rows);
    for (float& v : u) v = std::uniform_real_distribution<float>(0.2f, 2.0f)(rng);
    u[1] = 1.0f;
    std::vector<float> z(static_cast<size_t>(rows * ldz), kPoison);
    debias_cpu(x.data(), ld, u.data(), rows, d, z.data(), ldz);
    for (int r = 0; r < rows; ++r)
      for (int64_t j = 0; j < ldz; ++j) {
        const float got = z[r * ldz + j];
        if (j >= d) {
          ASSERT_EQ(got, kPoison) << "z padding written, row " << r;
          continue;
        }
        // One correctly rounded division: exact, and a relative check against double.
        ASSERT_EQ(got, x[r * ld + j] / u[r]) << "row " << r << " col " << j;
        ASSERT_NEAR(got, static_cast<double>(x[r * ld + j]) / u[r],
                    1e-6 * std::fabs(static_cast<double>(x[r * ld + j]) / u[r]));
        if (r == 1) {
          ASSERT_EQ(got, x[r * ld + j]);
        }
      }
  }
}

}  // namespace
TEST(ScaleRows, OneRoundingOfTheDoubleProduct) {
  std::mt19937_64 rng(31);
  const int rows = 5;
  const int64_t d = 1001, ld = d + 7;
  const std::vector<float> x0 = random_matrix(rows, d, ld, rng);
  // 1 - 3 * 0.1 is not a float: a float weight would round twice and differ in some elements.
  const std::vector<double> w = {1.0, 1.0 - 3 * 0.1, 1.0 / 3.0, 0.0, -0.75};
  std::vector<float> x = x0;
  for (int r = 0; r < rows; ++r)
    for (int64_t j = d; j < ld; ++j) x[r * ld + j] = kPoison;
  scale_rows_cpu(x.data(), rows, ld, d, w.data());
  int differs_from_float_weight = 0;
  for (int r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ld; ++j) {
      const float got = x[r * ld + j];
      if (j >= d) {
        ASSERT_EQ(got, kPoison) << "padding written, row " << r;
        continue;
      }
      const float a = x0[r * ld + j];
      ASSERT_EQ(got, static_cast<float>(w[r] * static_cast<double>(a))) << r << " " << j;
      differs_from_float_weight += got != static_cast<float>(w[r]) * a;
    }
  EXPECT_GT(differs_from_float_weight, 0);
  EXPECT_THROW(scale_rows_cpu(x.data(), rows, d - 1, d, w.data()), std::invalid_argument);
  EXPECT_THROW(scale_rows_cpu(nullptr, rows, ld, d, w.data()), std::invalid_argument);
  scale_rows_cpu(nullptr, 0, ld, d, nullptr);  // nothing to do
}

}  // namespace spush::kernels

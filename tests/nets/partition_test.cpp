// Partitions (docs/ALGORITHMS.md §7) and per-node loaders: skew-s class histograms equal an
// independent evaluation of the §7 rule (closed-form SORTED slices + a separately written
// Fisher-Yates for RANDOM), partitions are disjoint with the stated sizes, Dirichlet and
// exclusive splits behave as documented, and loaders reshuffle per epoch reproducibly, cover
// every sample once per epoch, resume from a saved state and augment deterministically.
#include "spush/nets/partition.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "spush/nets/loader.h"

namespace spush::nets {
namespace {

using Parts = std::vector<std::vector<int64_t>>;
using Hist = std::vector<std::vector<int64_t>>;

// Labels with class c occurring counts[c] times, in a scrambled (but fixed) dataset order.
std::vector<int32_t> scrambled_labels(const std::vector<int64_t>& counts, uint64_t seed) {
  std::vector<int32_t> labels;
  for (size_t c = 0; c < counts.size(); ++c) labels.insert(labels.end(), counts[c], int32_t(c));
  // Independent shuffle (a 64-bit LCG with Durstenfeld swaps; only the order matters here).
  uint64_t state = seed * 2862933555777941757ULL + 3037000493ULL;
  for (size_t i = labels.size(); i > 1; --i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    std::swap(labels[i - 1], labels[(state >> 33) % i]);
  }
  return labels;
}

// Reference Fisher-Yates on mt19937_64, written from the documented rule: for i = n-1 .. 1,
// j = rejection-sampled uniform in [0, i], swap.
void reference_shuffle(std::vector<int64_t>& v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int64_t i = static_cast<int64_t>(v.size()) - 1; i >= 1; --i) {
    const unsigned __int128 range = static_cast<unsigned __int128>(i) + 1;
    const unsigned __int128 two64 = static_cast<unsigned __int128>(1) << 64;
    const unsigned __int128 limit = two64 - two64 % range;  // accept x < limit
    uint64_t x;
    do {
      x = rng();
    } while (static_cast<unsigned __int128>(x) >= limit);
    std::swap(v[i], v[static_cast<int64_t>(x % static_cast<uint64_t>(range))]);
  }
}

int64_t floor_tol(double x) {
  return static_cast<int64_t>(std::floor(x + 1e-9 + 1e-12 * std::fabs(x)));
}

// Expected histogram of the skew-s split: SORTED slices by interval overlap (class c occupies
// sorted positions [start_c, start_c + k_c)), RANDOM by replaying the documented shuffle.
Hist expected_skew_hist(const std::vector<int32_t>& labels, int classes, int nodes, double s,
                        uint64_t seed, std::vector<int64_t>* sizes) {
  const int64_t n_total = static_cast<int64_t>(labels.size());
  std::vector<int64_t> count(classes, 0), k(classes, 0);
  for (int32_t l : labels) ++count[l];
  for (int c = 0; c < classes; ++c) k[c] = floor_tol(s * count[c]);
  std::vector<int64_t> start(classes + 1, 0);
  for (int c = 0; c < classes; ++c) start[c + 1] = start[c] + k[c];
  const int64_t sorted_size = start[classes];
  // RANDOM before the shuffle: class-major, the samples of class c after its first k_c.
  std::vector<int64_t> random_pool;
  for (int c = 0; c < classes; ++c) {
    int64_t seen = 0;
    for (int64_t i = 0; i < n_total; ++i) {
      if (labels[i] == c && seen++ >= k[c]) random_pool.push_back(i);
    }
  }
  reference_shuffle(random_pool, seed);
  const int64_t ts = floor_tol(double(n_total) * s / nodes);
  const int64_t tr = floor_tol(double(n_total) * (1.0 - s) / nodes);
  Hist h(nodes, std::vector<int64_t>(classes, 0));
  int64_t r_next = 0;
  sizes->assign(nodes, 0);
  for (int i = 0; i < nodes; ++i) {
    const int64_t lo = std::min(i * ts, sorted_size), hi = std::min((i + 1) * ts, sorted_size);
    for (int c = 0; c < classes; ++c) {
      h[i][c] += std::max<int64_t>(0, std::min(hi, start[c + 1]) - std::max(lo, start[c]));
    }
    const int64_t want = tr + (ts - (hi - lo));
    for (int64_t j = 0; j < want; ++j) ++h[i][labels[random_pool.at(r_next++)]];
    (*sizes)[i] = ts + tr;
  }
  return h;
}

// Every index valid and used at most once.
void expect_disjoint(const Parts& parts, int64_t n_total) {
  std::vector<int> used(n_total, 0);
  for (size_t i = 0; i < parts.size(); ++i) {
    for (int64_t idx : parts[i]) {
      ASSERT_GE(idx, 0);
      ASSERT_LT(idx, n_total);
      ASSERT_EQ(used[idx]++, 0) << "index " << idx << " used twice (node " << i << ")";
    }
  }
}

template <typename F>
void expect_invalid(F&& f, const std::string& phrase) {
  try {
    f();
    ADD_FAILURE() << "expected std::invalid_argument mentioning " << phrase;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
  }
}

// ---- portable randomness -----------------------------------------------------------------------

TEST(Random, Mt19937_64IsTheStandardEngine) {
  std::mt19937_64 rng;  // [rand.predef]: the 10000th output of a default-constructed engine
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ULL);
}

TEST(Random, HelpersFollowTheirDefinitions) {
  EXPECT_EQ(floor_tolerant(0.29 * 100), 29);
  EXPECT_EQ(floor_tolerant(2.5), 2);
  EXPECT_EQ(floor_tolerant(0.0), 0);
  EXPECT_EQ(floor_tolerant(1000 * (1.0 - 0.8)), 200);
  EXPECT_EQ(floor_tolerant(6.999), 6);
  std::mt19937_64 a(5), b(5);
  for (int i = 0; i < 100; ++i) {
    const double u = uniform01(a);
    EXPECT_EQ(u, double(b() >> 11) / 9007199254740992.0);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
  std::mt19937_64 r(7);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(uniform_index(r, 1), 0u);
  EXPECT_THROW(uniform_index(r, 0), std::invalid_argument);
  // Fisher-Yates equals the reference replay and is a permutation.
  for (uint64_t seed : {0ULL, 1ULL, 123456789ULL}) {
    std::vector<int64_t> v(257), w;
    for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(i);
    w = v;
    std::mt19937_64 rng(seed);
    fisher_yates(v, rng);
    reference_shuffle(w, seed);
    EXPECT_EQ(v, w) << "seed " << seed;
    std::sort(w.begin(), w.end());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(w[i], int64_t(i));
  }
  EXPECT_NE(mix_seed({1, 2}), mix_seed({2, 1}));
  EXPECT_NE(mix_seed({0}), mix_seed({0, 0}));
  EXPECT_EQ(mix_seed({3, 4, 5}), mix_seed({3, 4, 5}));
}

TEST(Random, UniformIndexIsUniform) {
  std::mt19937_64 rng(11);
  const int bound = 7, draws = 70000;
  std::vector<int> hits(bound, 0);
  for (int i = 0; i < draws; ++i) ++hits[uniform_index(rng, bound)];
  for (int k = 0; k < bound; ++k) EXPECT_NEAR(hits[k], draws / bound, 400) << "value " << k;
}

// ---- skew-s partition ---------------------------------------------------------------------------

TEST(PartitionSkew, HistogramsMatchTheRule) {
  // Unequal classes (N_c = 50 + 13c, N = 1085) so the per-class floors differ from the per-node
  // floors; s = 0.8 with 4 nodes exhausts SORTED early (sum floor(0.8 N_c) = 864 < 4 * 217).
  std::vector<int64_t> counts;
  for (int c = 0; c < 10; ++c) counts.push_back(50 + 13 * c);
  const auto labels = scrambled_labels(counts, 3);
  for (double s : {0.0, 0.5, 0.8, 1.0}) {
    for (int nodes : {1, 3, 4, 7}) {
      for (uint64_t seed : {1ULL, 42ULL}) {
        SCOPED_TRACE(testing::Message() << "s=" << s << " nodes=" << nodes << " seed=" << seed);
        const Parts parts = partition_skew(labels, 10, nodes, s, seed);
        ASSERT_EQ(parts.size(), size_t(nodes));
        expect_disjoint(parts, int64_t(labels.size()));
        std::vector<int64_t> sizes;
        const Hist expected = expected_skew_hist(labels, 10, nodes, s, seed, &sizes);
        EXPECT_EQ(class_histogram(parts, labels, 10), expected);
        for (int i = 0; i < nodes; ++i) EXPECT_EQ(int64_t(parts[i].size()), sizes[i]) << i;
      }
    }
  }
}

TEST(PartitionSkew, SortedPartIsClassMajorInDatasetOrder) {
  const auto labels = scrambled_labels({40, 40, 40, 40}, 9);
  const Parts parts = partition_skew(labels, 4, 4, 1.0, 0);
  // s = 1: node i holds exactly class i, in dataset order.
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(parts[i].size(), 40u);
    EXPECT_TRUE(std::is_sorted(parts[i].begin(), parts[i].end()));
    for (int64_t idx : parts[i]) EXPECT_EQ(labels[idx], i);
  }
  // s = 0.5 with 2 nodes: node 0's SORTED share is the first 20 of class 0 then of class 1.
  const Parts half = partition_skew(labels, 4, 2, 0.5, 0);
  std::vector<int64_t> first;
  for (int c = 0; c < 2; ++c) {
    int taken = 0;
    for (size_t i = 0; i < labels.size() && taken < 20; ++i) {
      if (labels[i] == c) first.push_back(int64_t(i)), ++taken;
    }
  }
  EXPECT_EQ(std::vector<int64_t>(half[0].begin(), half[0].begin() + 40), first);
}

TEST(PartitionSkew, ZeroSkewIsRoughlyUniform) {
  const auto labels = scrambled_labels(std::vector<int64_t>(10, 1000), 5);
  const Parts parts = partition_skew(labels, 10, 4, 0.0, 2024);
  const Hist h = class_histogram(parts, labels, 10);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(parts[i].size(), 2500u);
    for (int c = 0; c < 10; ++c) {
      // Hypergeometric mean 250, std ~14: 6 sigma.
      EXPECT_NEAR(h[i][c], 250, 85) << "node " << i << " class " << c;
    }
  }
}

TEST(PartitionSkew, HighSkewConcentratesClasses) {
  const auto labels = scrambled_labels(std::vector<int64_t>(10, 500), 6);
  const Hist h = class_histogram(partition_skew(labels, 10, 5, 0.8, 1), labels, 10);
  // Node i's SORTED share (800 samples) is exactly classes 2i and 2i+1 (400 each).
  for (int i = 0; i < 5; ++i) {
    EXPECT_GE(h[i][2 * i], 400);
    EXPECT_GE(h[i][2 * i + 1], 400);
  }
}

TEST(PartitionSkew, DeterministicPerSeed) {
  const auto labels = scrambled_labels({30, 70, 50, 20}, 1);
  EXPECT_EQ(partition_skew(labels, 4, 3, 0.5, 77), partition_skew(labels, 4, 3, 0.5, 77));
  EXPECT_NE(partition_skew(labels, 4, 3, 0.5, 77), partition_skew(labels, 4, 3, 0.5, 78));
  // s = 1 uses no randomness.
  EXPECT_EQ(partition_skew(labels, 4, 3, 1.0, 77), partition_skew(labels, 4, 3, 1.0, 78));
}

TEST(PartitionSkew, EdgeCases) {
  EXPECT_EQ(partition_skew({}, 3, 2, 0.5, 0), Parts(2));
  // More nodes than samples: everyone gets floor(N/n) = 0.
  const Parts p = partition_skew({0, 1, 2}, 3, 5, 0.0, 0);
  for (const auto& part : p) EXPECT_TRUE(part.empty());
  // One node: floor(12 * 0.3) + floor(12 * 0.7) = 3 + 8 = 11 of the 12 samples (the rule's
  // floors can leave a sample unassigned even with n = 1); s = 0 and s = 1 take all 12.
  const auto labels = scrambled_labels({3, 4, 5}, 2);
  EXPECT_EQ(partition_skew(labels, 3, 1, 0.3, 9)[0].size(), 11u);
  EXPECT_EQ(partition_skew(labels, 3, 1, 0.0, 9)[0].size(), 12u);
  EXPECT_EQ(partition_skew(labels, 3, 1, 1.0, 9)[0].size(), 12u);
}

TEST(PartitionSkew, RejectsInvalidInputs) {
  const std::vector<int32_t> labels = {0, 1, 2, 1};
  expect_invalid([&] { partition_skew(labels, 3, 0, 0.5, 0); }, "nodes = 0");
  expect_invalid([&] { partition_skew(labels, 3, 2, -0.1, 0); }, "skew = -0.1");
  expect_invalid([&] { partition_skew(labels, 3, 2, 1.5, 0); }, "[0, 1]");
  expect_invalid([&] { partition_skew(labels, 3, 2, std::nan(""), 0); }, "skew = nan");
  expect_invalid([&] { partition_skew(labels, 2, 2, 0.5, 0); }, "label 2 at index 2");
  expect_invalid([&] { partition_skew({0, -1}, 2, 2, 0.5, 0); }, "label -1 at index 1");
  expect_invalid([&] { partition_skew(labels, 0, 2, 0.5, 0); }, "num_classes = 0");
}

// ---- Dirichlet --------------------------------------------------------------------------------

// Mean over classes of the largest share one node holds.
double mean_max_share(const Hist& h, int classes) {
  double total = 0.0;
  for (int c = 0; c < classes; ++c) {
    int64_t sum = 0, top = 0;
    for (const auto& row : h) sum += row[c], top = std::max(top, row[c]);
    total += double(top) / double(sum);
  }
  return total / classes;
}

TEST(PartitionDirichlet, SmallAlphaSkewedLargeAlphaUniform) {
  const auto labels = scrambled_labels(std::vector<int64_t>(10, 1000), 8);
  for (uint64_t seed : {1ULL, 2ULL, 3ULL}) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    const Parts skewed = partition_dirichlet(labels, 10, 5, 0.05, seed);
    const Parts uniform = partition_dirichlet(labels, 10, 5, 1000.0, seed);
    for (const Parts* p : {&skewed, &uniform}) {
      expect_disjoint(*p, int64_t(labels.size()));
      int64_t total = 0;
      for (const auto& part : *p) {
        total += int64_t(part.size());
        EXPECT_TRUE(std::is_sorted(part.begin(), part.end()));
      }
      EXPECT_EQ(total, int64_t(labels.size()));  // every sample assigned
    }
    EXPECT_GT(mean_max_share(class_histogram(skewed, labels, 10), 10), 0.8);
    const Hist hu = class_histogram(uniform, labels, 10);
    for (int i = 0; i < 5; ++i) {
      // Dir(1000) shares have std ~0.006: 200 +- 6 per class; allow 40.
      for (int c = 0; c < 10; ++c) EXPECT_NEAR(hu[i][c], 200, 40) << "node " << i << " class " << c;
    }
  }
}

TEST(PartitionDirichlet, MeanShareMatchesDirichletMoments) {
  // Dir(alpha * 1_n) share of one node has mean 1/n and variance (n-1)/(n^2 (n alpha + 1)).
  const int nodes = 4, classes = 400;
  const double alpha = 0.5;
  std::vector<int32_t> labels;
  for (int c = 0; c < classes; ++c) labels.insert(labels.end(), 1000, c);
  const Hist h =
      class_histogram(partition_dirichlet(labels, classes, nodes, alpha, 5), labels, classes);
  double mean = 0.0, sq = 0.0;
  for (int c = 0; c < classes; ++c) {
    const double share = double(h[0][c]) / 1000.0;
    mean += share;
    sq += share * share;
  }
  mean /= classes;
  const double var = sq / classes - mean * mean;
  const double var_ref = (nodes - 1.0) / (nodes * nodes * (nodes * alpha + 1.0));  // 0.0625
  EXPECT_NEAR(mean, 0.25, 0.04);
  EXPECT_NEAR(var, var_ref, 0.25 * var_ref);
}

TEST(PartitionDirichlet, DeterministicAndValidated) {
  const auto labels = scrambled_labels({100, 80, 60}, 4);
  EXPECT_EQ(partition_dirichlet(labels, 3, 4, 0.3, 10), partition_dirichlet(labels, 3, 4, 0.3, 10));
  EXPECT_NE(partition_dirichlet(labels, 3, 4, 0.3, 10), partition_dirichlet(labels, 3, 4, 0.3, 11));
  // Tiny alpha: no underflow, every sample still assigned.
  const Parts tiny = partition_dirichlet(labels, 3, 4, 1e-4, 1);
  int64_t total = 0;
  for (const auto& p : tiny) total += int64_t(p.size());
  EXPECT_EQ(total, 240);
  expect_invalid([&] { partition_dirichlet(labels, 3, 4, 0.0, 0); }, "alpha = 0");
  expect_invalid([&] { partition_dirichlet(labels, 3, 4, -1.0, 0); }, "alpha = -1");
  expect_invalid(
      [&] { partition_dirichlet(labels, 3, 4, std::numeric_limits<double>::infinity(), 0); },
      "alpha = inf");
  expect_invalid([&] { partition_dirichlet(labels, 3, 0, 1.0, 0); }, "nodes = 0");
}

// ---- exclusive -------------------------------------------------------------------------------

TEST(PartitionExclusive, ClassModNodes) {
  const auto labels = scrambled_labels({5, 6, 7, 8, 9}, 12);
  const Parts p = partition_exclusive(labels, 5, 2);
  ASSERT_EQ(p.size(), 2u);
  expect_disjoint(p, int64_t(labels.size()));
  EXPECT_EQ(p[0].size(), 5u + 7 + 9);
  EXPECT_EQ(p[1].size(), 6u + 8);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(std::is_sorted(p[i].begin(), p[i].end()));
    for (int64_t idx : p[i]) EXPECT_EQ(labels[idx] % 2, i);
  }
  const Parts five = partition_exclusive(labels, 5, 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(five[i].size(), size_t(5 + i));
    for (int64_t idx : five[i]) EXPECT_EQ(labels[idx], i);
  }
  expect_invalid([&] { partition_exclusive(labels, 5, 6); }, "nodes = 6 > num_classes = 5");
  expect_invalid([&] { partition_exclusive(labels, 5, 0); }, "nodes = 0");
}

// ---- loaders ---------------------------------------------------------------------------------

// count samples of shape [2, 3, 4]; value = 1000 * index + pixel so every value names its sample.
Dataset make_dataset(int64_t count) {
  Dataset d;
  d.count = count;
  d.c = 2;
  d.h = 3;
  d.w = 4;
  d.num_classes = 5;
  d.name = "synthetic";
  d.images.resize(count * 24);
  d.labels.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    d.labels[i] = int32_t(i % 5);
    for (int p = 0; p < 24; ++p) d.images[i * 24 + p] = float(1000 * i + p);
  }
  return d;
}

int64_t sample_of(const float* img) { return int64_t(std::lround(img[5])) / 1000; }  // pixel 5

std::vector<int64_t> range_indices(int64_t lo, int64_t hi) {
  std::vector<int64_t> v;
  for (int64_t i = lo; i < hi; ++i) v.push_back(i);
  return v;
}

// The samples (decoded) of the next `batches` batches.
std::vector<int64_t> draw(NodeLoader& l, int batches) {
  std::vector<float> img(size_t(l.batch()) * 24);
  std::vector<int32_t> lab(l.batch());
  std::vector<int64_t> out;
  for (int b = 0; b < batches; ++b) {
    l.next_batch(img.data(), lab.data());
    for (int k = 0; k < l.batch(); ++k) {
      const int64_t s = sample_of(&img[k * 24]);
      EXPECT_EQ(lab[k], s % 5);
      for (int p = 0; p < 24; ++p) EXPECT_EQ(img[k * 24 + p], float(1000 * s + p));
      out.push_back(s);
    }
  }
  return out;
}

TEST(NodeLoader, EachEpochIsAFreshPermutation) {
  const Dataset d = make_dataset(60);
  const auto idx = range_indices(10, 34);  // 24 samples
  NodeLoader l(d, idx, 3, {.batch = 6, .seed = 99});
  EXPECT_EQ(l.batches_per_epoch(), 4);
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(l.state(), (LoaderState{e, 0}));
    epochs.push_back(draw(l, 4));
    std::vector<int64_t> sorted = epochs.back();
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, idx) << "epoch " << e << " does not visit every sample once";
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  EXPECT_NE(epochs[0], idx);
  // Same (seed, node): same sequence; another node or seed: another one.
  NodeLoader same(d, idx, 3, {.batch = 6, .seed = 99});
  NodeLoader other_node(d, idx, 4, {.batch = 6, .seed = 99});
  NodeLoader other_seed(d, idx, 3, {.batch = 6, .seed = 100});
  EXPECT_EQ(draw(same, 4), epochs[0]);
  EXPECT_NE(draw(other_node, 4), epochs[0]);
  EXPECT_NE(draw(other_seed, 4), epochs[0]);
}

TEST(NodeLoader, DropLastSkipsTheRemainder) {
  const Dataset d = make_dataset(30);
  const auto idx = range_indices(0, 26);
  NodeLoader l(d, idx, 0, {.batch = 6, .seed = 5});
  EXPECT_EQ(l.batches_per_epoch(), 4);
  for (int e = 0; e < 3; ++e) {
    const std::vector<int64_t> order = l.epoch_order();
    const auto got = draw(l, 4);
    EXPECT_EQ(got, std::vector<int64_t>(order.begin(), order.begin() + 24)) << "epoch " << e;
    EXPECT_EQ(std::set<int64_t>(got.begin(), got.end()).size(), 24u);
    EXPECT_EQ(l.state(), (LoaderState{e + 1, 0}));
  }
  // batch == size: one batch per epoch, still a permutation each time.
  NodeLoader full(d, range_indices(0, 7), 1, {.batch = 7, .seed = 5});
  EXPECT_EQ(full.batches_per_epoch(), 1);
  auto got = draw(full, 1);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, range_indices(0, 7));
}

TEST(NodeLoader, NoShuffleKeepsTheGivenOrder) {
  const Dataset d = make_dataset(20);
  const std::vector<int64_t> idx = {7, 3, 19, 0, 11, 4};
  NodeLoader l(d, idx, 0, {.batch = 3, .seed = 1, .shuffle = false});
  EXPECT_EQ(draw(l, 2), idx);
  EXPECT_EQ(draw(l, 2), idx);
}

TEST(NodeLoader, StateRestoreResumesIdentically) {
  Dataset d = make_dataset(50);
  d.mean = {0.5f, 0.25f};
  d.std = {0.5f, 0.5f};
  const auto idx = range_indices(3, 40);  // 37 samples, batch 5: 7 batches, 2 dropped
  const LoaderOptions opt{.batch = 5, .seed = 1234, .augment = {.pad = 2, .flip = true}};
  NodeLoader a(d, idx, 2, opt);
  std::vector<float> img(5 * 24), img2(5 * 24);
  std::vector<int32_t> lab(5), lab2(5);
  for (int b = 0; b < 11; ++b) a.next_batch(img.data(), lab.data());
  const LoaderState saved = a.state();
  EXPECT_EQ(saved, (LoaderState{1, 20}));
  std::vector<float> seq_a, seq_b;
  std::vector<int32_t> lab_a, lab_b;
  for (int b = 0; b < 9; ++b) {
    a.next_batch(img.data(), lab.data());
    seq_a.insert(seq_a.end(), img.begin(), img.end());
    lab_a.insert(lab_a.end(), lab.begin(), lab.end());
  }
  NodeLoader b(d, idx, 2, opt);
  b.set_state(saved);
  for (int k = 0; k < 9; ++k) {
    b.next_batch(img2.data(), lab2.data());
    seq_b.insert(seq_b.end(), img2.begin(), img2.end());
    lab_b.insert(lab_b.end(), lab2.begin(), lab2.end());
  }
  EXPECT_EQ(seq_a, seq_b);
  EXPECT_EQ(lab_a, lab_b);
  // Going back to an earlier epoch rebuilds that epoch's order.
  NodeLoader c(d, idx, 2, opt);
  const auto e0 = c.epoch_order();
  c.set_state({3, 0});
  EXPECT_NE(c.epoch_order(), e0);
  c.set_state({0, 5});
  EXPECT_EQ(c.epoch_order(), e0);
  expect_invalid([&] { c.set_state({0, 33}); }, "position 33");
  expect_invalid([&] { c.set_state({-1, 0}); }, "epoch -1");
}

// Finds every (oy, ox, flip) whose crop/flip of src (padding value pad_value[ch]) equals out.
std::vector<std::array<int, 3>> matching_transforms(const float* src, const float* out, int pad,
                                                    const float* pad_value) {
  std::vector<std::array<int, 3>> found;
  for (int oy = 0; oy <= 2 * pad; ++oy) {
    for (int ox = 0; ox <= 2 * pad; ++ox) {
      for (int flip = 0; flip < 2; ++flip) {
        bool ok = true;
        for (int ch = 0; ch < 2 && ok; ++ch) {
          for (int y = 0; y < 3 && ok; ++y) {
            for (int x = 0; x < 4 && ok; ++x) {
              // Crop the padded image, then mirror the crop.
              const int cx = flip ? 3 - x : x;
              const int py = y + oy - pad, px = cx + ox - pad;
              const bool inside = py >= 0 && py < 3 && px >= 0 && px < 4;
              const float want = inside ? src[ch * 12 + py * 4 + px] : pad_value[ch];
              ok = out[ch * 12 + y * 4 + x] == want;
            }
          }
        }
        if (ok) found.push_back({oy, ox, flip});
      }
    }
  }
  return found;
}

TEST(NodeLoader, AugmentationIsAValidCropFlipAndDeterministic) {
  Dataset d = make_dataset(40);
  d.mean = {0.5f, 0.25f};
  d.std = {0.5f, 0.5f};
  const float pad_value[2] = {-1.0f, -0.5f};  // a raw black pixel after normalization
  const int pad = 2;
  const LoaderOptions opt{.batch = 8, .seed = 77, .augment = {.pad = pad, .flip = true}};
  NodeLoader l(d, range_indices(0, 40), 0, opt), twin(d, range_indices(0, 40), 0, opt);
  std::vector<float> img(8 * 24), img2(8 * 24);
  std::vector<int32_t> lab(8), lab2(8);
  std::set<int> offsets_y, offsets_x;
  int flips = 0, unique = 0, total = 0;
  for (int b = 0; b < 25; ++b) {  // 5 epochs
    const auto order = l.epoch_order();
    const int64_t pos = l.state().position;
    l.next_batch(img.data(), lab.data());
    twin.next_batch(img2.data(), lab2.data());
    ASSERT_EQ(img, img2) << "batch " << b;
    for (int k = 0; k < 8; ++k) {
      const int64_t s = order[pos + k];
      EXPECT_EQ(lab[k], s % 5);
      const auto found = matching_transforms(d.image(s), &img[k * 24], pad, pad_value);
      ASSERT_FALSE(found.empty()) << "batch " << b << " sample " << s << " is no crop/flip";
      ++total;
      if (found.size() == 1) {
        ++unique;
        offsets_y.insert(found[0][0]);
        offsets_x.insert(found[0][1]);
        flips += found[0][2];
      }
    }
  }
  EXPECT_GT(unique, total / 2);
  EXPECT_EQ(offsets_y.size(), 5u);  // all of [0, 2p] seen
  EXPECT_EQ(offsets_x.size(), 5u);
  EXPECT_GT(flips, unique / 4);
  EXPECT_LT(flips, 3 * unique / 4);
  // Without mean/std the padding is 0.0f; flip only never pads.
  Dataset raw = make_dataset(16);
  NodeLoader crop(raw, range_indices(0, 16), 0, {.batch = 16, .seed = 3, .augment = {.pad = 3}});
  std::vector<float> out(16 * 24);
  std::vector<int32_t> ol(16);
  const auto order = crop.epoch_order();
  crop.next_batch(out.data(), ol.data());
  const float zero_pad[2] = {0.0f, 0.0f};
  for (int k = 0; k < 16; ++k) {
    const auto found = matching_transforms(raw.image(order[k]), &out[k * 24], 3, zero_pad);
    ASSERT_FALSE(found.empty());
    bool unflipped = false;
    for (const auto& f : found) unflipped |= f[2] == 0;
    EXPECT_TRUE(unflipped) << "flip disabled but sample " << order[k] << " only matches flipped";
  }
}

TEST(NodeLoader, RejectsBadArguments) {
  const Dataset d = make_dataset(20);
  try {
    NodeLoader l(d, range_indices(0, 7), 4, {.batch = 8});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("batch size 8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("7 samples"), std::string::npos) << msg;
    EXPECT_NE(msg.find("node 4"), std::string::npos) << msg;
  }
  expect_invalid([&] { NodeLoader(d, range_indices(0, 7), 0, {.batch = 0}); }, "batch = 0");
  expect_invalid([&] { NodeLoader(d, {1, 2, 20}, 0, {.batch = 1}); }, "sample index 20");
  expect_invalid(
      [&] {
        NodeLoader(d, {1, 2}, 0, {.batch = 1, .augment = {.pad = -1}});
      },
      "pad = -1");
}

TEST(MultiNodeLoader, FillsNodeBatchedBuffers) {
  const Dataset d = make_dataset(100);
  const auto labels = d.labels;
  const Parts parts = partition_skew(labels, 5, 3, 0.5, 8);  // 32 samples each
  const LoaderOptions opt{.batch = 4, .seed = 21, .augment = {.pad = 1, .flip = true}};
  MultiNodeLoader ml(d, parts, opt);
  EXPECT_EQ(ml.nodes(), 3);
  EXPECT_EQ(ml.images_size(), 3 * 4 * 24);
  EXPECT_EQ(ml.labels_size(), 12);
  EXPECT_EQ(ml.min_batches_per_epoch(), 8);
  std::vector<NodeLoader> singles;
  for (int i = 0; i < 3; ++i) singles.emplace_back(d, parts[i], i, opt);
  std::vector<float> x, xi(4 * 24);
  std::vector<int32_t> y, yi(4);
  for (int step = 0; step < 20; ++step) {
    ml.next_batch(x, y);
    ASSERT_EQ(x.size(), size_t(ml.images_size()));
    for (int i = 0; i < 3; ++i) {
      singles[i].next_batch(xi.data(), yi.data());
      ASSERT_TRUE(std::equal(xi.begin(), xi.end(), x.begin() + i * 4 * 24)) << "node " << i;
      ASSERT_TRUE(std::equal(yi.begin(), yi.end(), y.begin() + i * 4)) << "node " << i;
    }
  }
  // Node i only ever sees its own partition.
  for (int i = 0; i < 3; ++i) {
    const std::set<int64_t> mine(parts[i].begin(), parts[i].end());
    for (int64_t s : ml.node(i).epoch_order()) EXPECT_TRUE(mine.count(s));
  }
  // State round trip.
  const auto saved = ml.state();
  EXPECT_EQ(saved[0], (LoaderState{2, 16}));
  std::vector<float> after;
  ml.next_batch(after, y);
  MultiNodeLoader ml2(d, parts, opt);
  ml2.set_state(saved);
  std::vector<float> after2;
  std::vector<int32_t> y2;
  ml2.next_batch(after2, y2);
  EXPECT_EQ(after, after2);
  EXPECT_EQ(y, y2);
  expect_invalid([&] { ml2.set_state({}); }, "0 loader states");
  expect_invalid([&] { MultiNodeLoader(d, {}, opt); }, "0 partitions");
  expect_invalid([&] { MultiNodeLoader(d, {{1, 2, 3, 4}, {5}}, opt); }, "node 1");
}

TEST(GatherSamples, CopiesImagesAndLabels) {
  const Dataset d = make_dataset(10);
  const std::vector<int64_t> idx = {9, 0, 4};
  std::vector<float> img(3 * 24, -7.0f);
  std::vector<int32_t> lab(3, -1);
  gather_samples(d, idx.data(), 3, img.data(), lab.data());
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(lab[k], idx[k] % 5);
    for (int p = 0; p < 24; ++p) EXPECT_EQ(img[k * 24 + p], float(1000 * idx[k] + p));
  }
  const std::vector<int64_t> bad = {10};
  EXPECT_THROW(gather_samples(d, bad.data(), 1, img.data(), lab.data()), std::out_of_range);
}

}  // namespace
}  // namespace spush::nets

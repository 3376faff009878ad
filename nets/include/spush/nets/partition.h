// Non-IID partitions of a labelled training set over n nodes (docs/ALGORITHMS.md §7): the
// skew-s split of [SP, Sec. 5] / [LP], a Dirichlet(alpha) label split, and [NIID]'s exclusive
// label split. Each returns one list of sample indices per node; the lists are disjoint.
// Randomness comes from std::mt19937_64 (its output sequence is fixed by the C++ standard) fed
// through the helpers below, never through std::shuffle or std::*_distribution, so partitions
// are identical with every standard library.
//
//   auto parts = partition_skew(train.labels, train.num_classes, /*nodes=*/8, /*skew=*/0.8, 1);
#pragma once
#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

namespace spush::nets {

// ---- portable randomness ---------------------------------------------------------------------

// SplitMix64 finalizer (Steele et al. 2014): a bijective 64-bit mix.
uint64_t splitmix64(uint64_t x);
// Seed derived from several values: h = 0; for each v: h = splitmix64(h ^ splitmix64(v + k))
// with k the position of v (so (1, 2) and (2, 1) differ).
uint64_t mix_seed(std::initializer_list<uint64_t> parts);
// Uniform integer in [0, bound), bound >= 1, by rejection: draw x = rng() until
// x < 2^64 - (2^64 mod bound), return x mod bound.
uint64_t uniform_index(std::mt19937_64& rng, uint64_t bound);
// Uniform double in [0, 1): (rng() >> 11) * 2^-53.
double uniform01(std::mt19937_64& rng);
// Fisher-Yates: for i = size-1 down to 1: swap(v[i], v[uniform_index(rng, i + 1)]).
void fisher_yates(std::vector<int64_t>& v, std::mt19937_64& rng);

// floor(x) with a tolerance for binary rounding of decimal inputs: floor(x + 1e-9 + 1e-12*|x|),
// so that e.g. 0.29 * 100 (28.999999999999996 in double) counts as 29.
int64_t floor_tolerant(double x);

// ---- partitions --------------------------------------------------------------------------------

// Skew-s split (docs/ALGORITHMS.md §7). With N = labels.size(), N_c the count of class c:
//  1. for each class c in order 0..C-1, the first floor(s*N_c) samples of class c (in dataset
//     order) go to SORTED (so SORTED is class-major), the rest to RANDOM (also class-major);
//  2. RANDOM is shuffled by fisher_yates with std::mt19937_64(seed);
//  3. for node i = 0..n-1: take the next floor(N*s/n) of SORTED, then the next
//     floor(N*(1-s)/n) of RANDOM (floors are floor_tolerant).
// When the per-class floors leave SORTED shorter than n*floor(N*s/n), a node that finds SORTED
// exhausted takes its shortfall from RANDOM (right after its own RANDOM share), so every node
// still gets floor(N*s/n) + floor(N*(1-s)/n) samples. The leftover (fewer than 2n samples) is
// not assigned. s = 0 is IID; s = 1 gives each node a contiguous class-major block.
// Node i's list is its SORTED part followed by its RANDOM part.
// Throws std::invalid_argument: nodes < 1, skew outside [0, 1], num_classes < 1, a label
// outside [0, num_classes).
std::vector<std::vector<int64_t>> partition_skew(const std::vector<int32_t>& labels,
                                                 int num_classes, int nodes, double skew,
                                                 uint64_t seed);

// Dirichlet(alpha) label split: rng = std::mt19937_64(seed); for each class c = 0..C-1: draw
// p ~ Dir(alpha * 1_n) (n Gamma(alpha, 1) draws by Marsaglia-Tsang, normalized), shuffle class
// c's indices (fisher_yates), and give node k the slice [floor(P_{k-1} N_c), floor(P_k N_c)) with
// P_k = p_0 + .. + p_k (the last node's slice ends at N_c). Small alpha concentrates each class
// on few nodes; large alpha approaches IID. Every sample is assigned; a node may get few or none.
// Node lists are sorted ascending. Throws std::invalid_argument: nodes < 1, alpha <= 0 (or not
// finite), num_classes < 1, a label outside [0, num_classes).
std::vector<std::vector<int64_t>> partition_dirichlet(const std::vector<int32_t>& labels,
                                                      int num_classes, int nodes, double alpha,
                                                      uint64_t seed);

// [NIID]'s exclusive label split: every sample of class c goes to node c mod n (dataset order).
// Throws std::invalid_argument: nodes < 1, nodes > num_classes (a node would get no class), a
// label outside [0, num_classes).
std::vector<std::vector<int64_t>> partition_exclusive(const std::vector<int32_t>& labels,
                                                      int num_classes, int nodes);

// hist[i][c] = number of samples of class c in parts[i] (for reports and tests).
std::vector<std::vector<int64_t>> class_histogram(const std::vector<std::vector<int64_t>>& parts,
                                                  const std::vector<int32_t>& labels,
                                                  int num_classes);

}  // namespace spush::nets

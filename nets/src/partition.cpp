// Skew-s, Dirichlet and exclusive label partitions (docs/ALGORITHMS.md §7) and the portable
// random helpers they share with the data loader (SplitMix64 seeds, rejection-sampled indices,
// Fisher-Yates, Marsaglia-Tsang Gamma draws on std::mt19937_64).
#include "spush/nets/partition.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace spush::nets {
namespace {

void check_labels(const char* fn, const std::vector<int32_t>& labels, int num_classes, int nodes) {
  if (nodes < 1) {
    throw std::invalid_argument(fmt::format("{}: nodes = {}, expected >= 1", fn, nodes));
  }
  if (num_classes < 1) {
    throw std::invalid_argument(
        fmt::format("{}: num_classes = {}, expected >= 1", fn, num_classes));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      throw std::invalid_argument(
          fmt::format("{}: label {} at index {}, expected [0, {})", fn, labels[i], i, num_classes));
    }
  }
}

// by_class[c] = indices of class c in dataset order.
std::vector<std::vector<int64_t>> group_by_class(const std::vector<int32_t>& labels,
                                                 int num_classes) {
  std::vector<std::vector<int64_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<int64_t>(i));
  return by_class;
}

// Standard normal by Box-Muller (one of the pair), u1 in (0, 1].
double standard_normal(std::mt19937_64& rng) {
  const double u1 = 1.0 - uniform01(rng);
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
}

// log of a Gamma(a, 1) draw. Marsaglia & Tsang (2000) for a >= 1; for a < 1 the boost
// G(a) = G(a + 1) * U^(1/a), kept in log space so tiny alphas do not underflow to 0.
double log_gamma_draw(std::mt19937_64& rng, double a) {
  if (a < 1.0) {
    const double u = 1.0 - uniform01(rng);  // (0, 1]
    return log_gamma_draw(rng, a + 1.0) + std::log(u) / a;
  }
  const double d = a - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = standard_normal(rng);
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = 1.0 - uniform01(rng);
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return std::log(d * v);
  }
}

}  // namespace

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0;
  uint64_t k = 0;
  for (uint64_t v : parts) h = splitmix64(h ^ splitmix64(v + k++));
  return h;
}

uint64_t uniform_index(std::mt19937_64& rng, uint64_t bound) {
  if (bound == 0) throw std::invalid_argument("uniform_index: bound = 0, expected >= 1");
  // 2^64 mod bound, computed without 128-bit arithmetic: (2^64 - bound) mod bound.
  const uint64_t rem = (0 - bound) % bound;
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - rem;  // accept x <= limit
  for (;;) {
    const uint64_t x = rng();
    if (x <= limit) return x % bound;
  }
}

double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

void fisher_yates(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_index(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

int64_t floor_tolerant(double x) {
  return static_cast<int64_t>(std::floor(x + 1e-9 + 1e-12 * std::fabs(x)));
}

std::vector<std::vector<int64_t>> partition_skew(const std::vector<int32_t>& labels,
                                                 int num_classes, int nodes, double skew,
                                                 uint64_t seed) {
  check_labels("partition_skew", labels, num_classes, nodes);
  if (!(skew >= 0.0 && skew <= 1.0)) {
    throw std::invalid_argument(
        fmt::format("partition_skew: skew = {}, expected a value in [0, 1]", skew));
  }
  const auto by_class = group_by_class(labels, num_classes);
  std::vector<int64_t> sorted_pool, random_pool;
  for (const auto& members : by_class) {
    const int64_t take =
        std::min<int64_t>(floor_tolerant(skew * static_cast<double>(members.size())),
                          static_cast<int64_t>(members.size()));
    sorted_pool.insert(sorted_pool.end(), members.begin(), members.begin() + take);
    random_pool.insert(random_pool.end(), members.begin() + take, members.end());
  }
  std::mt19937_64 rng(seed);
  fisher_yates(random_pool, rng);

  const double n_total = static_cast<double>(labels.size());
  const int64_t sorted_share = floor_tolerant(n_total * skew / nodes);
  const int64_t random_share = floor_tolerant(n_total * (1.0 - skew) / nodes);
  std::vector<std::vector<int64_t>> parts(nodes);
  size_t s_next = 0, r_next = 0;
  for (int i = 0; i < nodes; ++i) {
    auto& part = parts[i];
    const size_t from_sorted =
        std::min(static_cast<size_t>(sorted_share), sorted_pool.size() - s_next);
    part.insert(part.end(), sorted_pool.begin() + s_next,
                sorted_pool.begin() + s_next + from_sorted);
    s_next += from_sorted;
    const size_t want_random =
        static_cast<size_t>(random_share) + (static_cast<size_t>(sorted_share) - from_sorted);
    const size_t from_random = std::min(want_random, random_pool.size() - r_next);
    part.insert(part.end(), random_pool.begin() + r_next,
                random_pool.begin() + r_next + from_random);
    r_next += from_random;
  }
  return parts;
}

std::vector<std::vector<int64_t>> partition_dirichlet(const std::vector<int32_t>& labels,
                                                      int num_classes, int nodes, double alpha,
                                                      uint64_t seed) {
  check_labels("partition_dirichlet", labels, num_classes, nodes);
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    throw std::invalid_argument(
        fmt::format("partition_dirichlet: alpha = {}, expected a finite value > 0", alpha));
  }
  auto by_class = group_by_class(labels, num_classes);
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> parts(nodes);
  std::vector<double> logg(nodes);
  for (auto& members : by_class) {
    for (int k = 0; k < nodes; ++k) logg[k] = log_gamma_draw(rng, alpha);
    const double top = *std::max_element(logg.begin(), logg.end());
    double sum = 0.0;
    for (int k = 0; k < nodes; ++k) sum += std::exp(logg[k] - top);
    fisher_yates(members, rng);
    const int64_t n_c = static_cast<int64_t>(members.size());
    double cum = 0.0;
    int64_t begin = 0;
    for (int k = 0; k < nodes; ++k) {
      cum += std::exp(logg[k] - top) / sum;
      int64_t end =
          (k == nodes - 1)
              ? n_c
              : std::clamp<int64_t>(
                    static_cast<int64_t>(std::floor(cum * static_cast<double>(n_c))), begin, n_c);
      parts[k].insert(parts[k].end(), members.begin() + begin, members.begin() + end);
      begin = end;
    }
  }
  for (auto& p : parts) std::sort(p.begin(), p.end());
  return parts;
}

std::vector<std::vector<int64_t>> partition_exclusive(const std::vector<int32_t>& labels,
                                                      int num_classes, int nodes) {
  check_labels("partition_exclusive", labels, num_classes, nodes);
  if (nodes > num_classes) {
    throw std::invalid_argument(fmt::format(
        "partition_exclusive: nodes = {} > num_classes = {}, expected nodes <= num_classes so "
        "that every node gets a class",
        nodes, num_classes));
  }
  std::vector<std::vector<int64_t>> parts(nodes);
  for (size_t i = 0; i < labels.size(); ++i) {
    parts[labels[i] % nodes].push_back(static_cast<int64_t>(i));
  }
  return parts;
}

std::vector<std::vector<int64_t>> class_histogram(const std::vector<std::vector<int64_t>>& parts,
                                                  const std::vector<int32_t>& labels,
                                                  int num_classes) {
  std::vector<std::vector<int64_t>> hist(parts.size(), std::vector<int64_t>(num_classes, 0));
  for (size_t i = 0; i < parts.size(); ++i) {
    for (int64_t idx : parts[i]) {
      if (idx < 0 || idx >= static_cast<int64_t>(labels.size())) {
        throw std::invalid_argument(fmt::format(
            "class_histogram: index {} in part {}, expected [0, {})", idx, i, labels.size()));
      }
      const int32_t c = labels[idx];
      if (c < 0 || c >= num_classes) {
        throw std::invalid_argument(fmt::format(
            "class_histogram: label {} at index {}, expected [0, {})", c, idx, num_classes));
      }
      ++hist[i][c];
    }
  }
  return hist;
}

}  // namespace spush::nets

// The logistic-regression problem the algorithm tests solve (spush/runtime/logistic.h): d = 64
// in 4 segments of 16 (top-1% keeps max(1, ceil(0.16)) = 1 value per segment, 4 of 64 per
// message), 128 samples per node, lambda = 1e-2; one instance per (nodes, skew), built once.
#pragma once
#include <map>
#include <memory>
#include <utility>

#include "spush/runtime/logistic.h"

namespace spush::test {

inline runtime::LogisticSpec acceptance_spec(int nodes, double skew) {
  runtime::LogisticSpec s;
  s.nodes = nodes;
  s.dim = 64;
  s.segments = 4;
  s.samples_per_node = 128;
  s.skew = skew;
  s.lambda = 1e-2;
  s.seed = 7;
  return s;
}

inline const runtime::LogisticProblem& cached_problem(int nodes, double skew) {
  static std::map<std::pair<int, double>, std::unique_ptr<runtime::LogisticProblem>> cache;
  auto& p = cache[{nodes, skew}];
  if (!p) p = std::make_unique<runtime::LogisticProblem>(acceptance_spec(nodes, skew));
  return *p;
}

}  // namespace spush::test

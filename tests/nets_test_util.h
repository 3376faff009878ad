// Helpers shared by the nets tests: node-batched tensors of random values.
#pragma once
#include <cstdint>
#include <random>

#include "spush/nets/tensor.h"

namespace spush::test {

// [n, b, c, h, w] with independent N(0, scale^2) values.
inline nets::Tensor random_tensor(int64_t n, int64_t b, int64_t c, int64_t h, int64_t w,
                                  std::mt19937_64& rng, float scale = 1.0f) {
  nets::Tensor t(n, b, c, h, w);
  std::normal_distribution<float> d(0.0f, scale);
  for (auto& v : t.data) v = d(rng);
  return t;
}

// [n, b, s.c, s.h, s.w] with independent N(0, 1) values.
inline nets::Tensor random_tensor(int64_t n, int64_t b, nets::Shape3 s, std::mt19937_64& rng) {
  return random_tensor(n, b, s.c, s.h, s.w, rng);
}

}  // namespace spush::test

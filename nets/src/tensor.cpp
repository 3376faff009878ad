// Node-batched activation tensor: shape bookkeeping and allocation reuse.
#include "spush/nets/tensor.h"

#include <algorithm>
#include <stdexcept>

namespace spush::nets {

std::string Shape3::str() const {
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

void Tensor::resize(int64_t n, int64_t b, int64_t c_, int64_t h_, int64_t w_) {
  if (n < 0 || b < 0 || c_ < 0 || h_ < 0 || w_ < 0)
    throw std::invalid_argument("Tensor::resize: negative extent in [" + std::to_string(n) + ", " +
                                std::to_string(b) + ", " + std::to_string(c_) + ", " +
                                std::to_string(h_) + ", " + std::to_string(w_) + "]");
  nodes = n;
  batch = b;
  c = c_;
  h = h_;
  w = w_;
  // std::vector::resize never shrinks the capacity, so a tensor reused across iterations with
  // the same or a smaller shape does not reallocate.
  data.resize(static_cast<size_t>(numel()));
}

void Tensor::fill(float v) { std::fill(data.begin(), data.end(), v); }

std::string Tensor::shape_str() const {
  std::string s("[");
  const int64_t ext[5] = {nodes, batch, c, h, w};
  for (int i = 0; i < 5; ++i) {
    if (i) s += ", ";
    s += std::to_string(ext[i]);
  }
  s += "]";
  return s;
}

}  // namespace spush::nets

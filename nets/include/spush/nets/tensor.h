// Node-batched activation tensors: [nodes, batch, c, h, w] floats, row-major, node-major.
// Node n's block starts at data + n * node_stride(); sample b of node n at
// data + (n * batch + b) * sample_stride(). Linear layers use [nodes, batch, features, 1, 1].
//
//   Tensor x(4, 32, 1, 28, 28);          // 4 nodes, 32 images each
//   float* img = x.sample(2, 5);          // node 2, sample 5: 784 floats
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace spush::nets {

// Per-sample shape (channels, height, width).
struct Shape3 {
  int64_t c = 0, h = 0, w = 0;
  int64_t numel() const { return c * h * w; }
  bool operator==(const Shape3&) const = default;
  std::string str() const;  // "CxHxW"
};

struct Tensor {
  int64_t nodes = 0, batch = 0, c = 0, h = 0, w = 0;
  std::vector<float> data;

  Tensor() = default;
  Tensor(int64_t nodes, int64_t batch, int64_t c, int64_t h, int64_t w) {
    resize(nodes, batch, c, h, w);
  }
  // Sets the shape; reuses the allocation when it is large enough (contents unspecified unless
  // the element count is unchanged, in which case they are kept). Throws on a negative extent.
  void resize(int64_t nodes, int64_t batch, int64_t c, int64_t h, int64_t w);
  void resize(int64_t nodes, int64_t batch, Shape3 s) { resize(nodes, batch, s.c, s.h, s.w); }
  // Same shape as another tensor.
  void resize_like(const Tensor& o) { resize(o.nodes, o.batch, o.c, o.h, o.w); }
  void fill(float v);

  Shape3 shape3() const { return {c, h, w}; }
  int64_t sample_stride() const { return c * h * w; }
  int64_t node_stride() const { return batch * c * h * w; }
  int64_t numel() const { return nodes * batch * c * h * w; }
  bool same_shape(const Tensor& o) const {
    return nodes == o.nodes && batch == o.batch && c == o.c && h == o.h && w == o.w;
  }
  std::string shape_str() const;  // "[nodes, batch, c, h, w]"

  float* node(int64_t n) { return data.data() + n * node_stride(); }
  const float* node(int64_t n) const { return data.data() + n * node_stride(); }
  float* sample(int64_t n, int64_t b) { return data.data() + (n * batch + b) * sample_stride(); }
  const float* sample(int64_t n, int64_t b) const {
    return data.data() + (n * batch + b) * sample_stride();
  }
};

}  // namespace spush::nets

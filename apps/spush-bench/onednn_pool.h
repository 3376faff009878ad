// oneDNN's max pooling for spush-bench's maxpool baseline (onednn_pool.cpp): what the layer
// would run if it called the library instead of its own loop (nets/src/layers_pool.cpp).
#pragma once
#include <cstdint>
#include <memory>

namespace spush::bench {

// True when spush-bench was built with oneDNN.
bool onednn_pool_available();

// Max pooling with a k x k window, stride k, no padding, on a plain N x C x H x W (NCHW)
// tensor: oneDNN's training forward (which keeps the arg-max workspace) and its backward.
class OnednnMaxPool {
 public:
  OnednnMaxPool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k);
  ~OnednnMaxPool();
  OnednnMaxPool(const OnednnMaxPool&) = delete;
  OnednnMaxPool& operator=(const OnednnMaxPool&) = delete;
  void forward(const float* x, float* y);
  // dx from dy and the workspace of the last forward.
  void backward(const float* dy, float* dx);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spush::bench

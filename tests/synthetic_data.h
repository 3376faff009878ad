// Small generated data sets in Fashion-MNIST's IDX format for tests: 28x28 images in which
// class c is a bright 6x4 block at one of 10 positions (with jitter) on noise, so that a short
// run learns far above chance.
#pragma once
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "spush/nets/data.h"

namespace spush::test {

// Writes DIR/PREFIX-images-idx3-ubyte and DIR/PREFIX-labels-idx1-ubyte with `count` samples.
inline void write_synthetic(const std::filesystem::path& dir, const std::string& prefix, int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 60), cls(0, 9), jitter(-1, 1);
  std::vector<uint8_t> pixels(static_cast<size_t>(count) * 784), labels(count);
  for (int i = 0; i < count; ++i) {
    const int c = cls(rng);
    labels[i] = static_cast<uint8_t>(c);
    uint8_t* img = pixels.data() + static_cast<size_t>(i) * 784;
    for (int p = 0; p < 784; ++p) img[p] = static_cast<uint8_t>(noise(rng));
    const int oy = 3 + (c / 5) * 12 + jitter(rng), ox = 2 + (c % 5) * 5 + jitter(rng);
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 4; ++x) img[(oy + y) * 28 + ox + x] = 250;
  }
  nets::write_idx_images((dir / (prefix + "-images-idx3-ubyte")).string(), count, 28, 28, pixels,
                         false);
  nets::write_idx_labels((dir / (prefix + "-labels-idx1-ubyte")).string(), labels, false);
}

}  // namespace spush::test

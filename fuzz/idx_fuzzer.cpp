// Feeds arbitrary bytes, raw or gzip, to nets/src/data.cpp's parse_idx_images, parse_idx_labels
// or parse_fashion_mnist (first byte: which; a u16 cuts images from labels). Asserts that an
// accepted file yields exactly count x rows x cols pixels, labels in range and finite normalized
// floats; DataError is the expected rejection.
#include <cmath>
#include <cstdint>

#include "fuzz_util.h"
#include "spush/nets/data.h"

using namespace spush::nets;
using spush::fuzz::FuzzInput;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const uint8_t mode = in.byte() % 3;
  try {
    if (mode == 0) {
      const IdxImages img = parse_idx_images(in.rest(), "fuzz-images");
      FUZZ_CHECK(img.rows >= 1 && img.cols >= 1, "zero dimension accepted");
      FUZZ_CHECK(img.pixels.size() == static_cast<uint64_t>(img.count * img.rows * img.cols),
                 "pixel count differs from count x rows x cols");
    } else if (mode == 1) {
      const int classes = 1 + in.byte() % 16;
      const auto labels = parse_idx_labels(in.rest(), "fuzz-labels", classes);
      for (uint8_t l : labels) FUZZ_CHECK(l < classes, "label out of range accepted");
    } else {
      const size_t cut = in.take<uint16_t>();
      const auto images = in.take_bytes(cut);
      const Dataset d = parse_fashion_mnist(images, "fuzz-images", in.rest(), "fuzz-labels");
      FUZZ_CHECK(d.c == 1 && d.h == 28 && d.w == 28 && d.num_classes == 10, "shape");
      FUZZ_CHECK(d.images.size() == static_cast<size_t>(d.count * 784) &&
                     d.labels.size() == static_cast<size_t>(d.count),
                 "sizes differ from the count");
      for (int32_t l : d.labels) FUZZ_CHECK(l >= 0 && l < 10, "label out of range accepted");
      for (float v : d.images) FUZZ_CHECK(std::isfinite(v), "non-finite pixel");
    }
  } catch (const DataError&) {
  }
  return 0;
}

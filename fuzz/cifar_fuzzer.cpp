// Feeds arbitrary bytes, raw or gzip, to parse_cifar10_batch (the parser of load_cifar10,
// nets/src/data.cpp). Asserts that an accepted batch is a whole number of 3073-byte records
// giving count x 3 x 32 x 32 finite floats and labels in [0, 10); DataError is the expected
// rejection.
#include <cmath>
#include <cstdint>
#include <span>

#include "fuzz_util.h"
#include "spush/nets/data.h"

using namespace spush::nets;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Dataset d;
  try {
    d = parse_cifar10_batch(std::span<const uint8_t>(data, size), "fuzz-batch.bin");
  } catch (const DataError&) {
    return 0;
  }
  FUZZ_CHECK(d.count >= 1 && d.c == 3 && d.h == 32 && d.w == 32 && d.num_classes == 10, "shape");
  FUZZ_CHECK(d.images.size() == static_cast<size_t>(d.count * 3072) &&
                 d.labels.size() == static_cast<size_t>(d.count),
             "sizes differ from the count");
  // A raw batch is exactly its records; a gzip one inflates to them.
  if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) {
    FUZZ_CHECK(size == static_cast<size_t>(d.count * 3073), "raw size != records x 3073");
  }
  for (int32_t l : d.labels) FUZZ_CHECK(l >= 0 && l < 10, "label out of range accepted");
  for (float v : d.images) FUZZ_CHECK(std::isfinite(v), "non-finite pixel");
  return 0;
}

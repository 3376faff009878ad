// Image classification data sets in memory: Fashion-MNIST (IDX files, raw or gzip) and CIFAR-10
// (binary batches), decoded to normalized float images [count, c, h, w] (NCHW, row-major) and
// int32 labels. Normalization is per channel, x = (byte / 255 - mean_c) / std_c, with the
// data set's usual constants (kFashionMnistMean/Std, kCifar10Mean/Std below).
//
//   Dataset train = load_dataset("fashion-mnist", default_data_dir(), /*train=*/true);
//   const float* img7 = train.image(7);   // c*h*w floats
#pragma once
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace spush::nets {

// A data file is missing, malformed or inconsistent. what() is one line naming the file and
// what was expected.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Dataset {
  int64_t count = 0;
  int c = 0, h = 0, w = 0;
  int num_classes = 0;
  std::vector<float> images;    // count * c * h * w, normalized
  std::vector<int32_t> labels;  // count, each in [0, num_classes)
  std::string name;
  // The normalization that produced `images` (c entries each; empty = raw values in [0, 1]
  // or user-made data). A raw black pixel of channel k is stored as -mean[k] / std[k].
  std::vector<float> mean, std;

  int64_t sample_size() const { return int64_t{c} * h * w; }
  const float* image(int64_t i) const { return images.data() + i * sample_size(); }
};

// Normalization constants (the values used by the reference PyTorch pipelines; they are the
// per-channel mean and standard deviation of the training pixels in [0, 1]).
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;
inline constexpr float kCifar10Mean[3] = {0.4914f, 0.4822f, 0.4465f};
inline constexpr float kCifar10Std[3] = {0.2470f, 0.2435f, 0.2616f};

// Where the Debian package dataset-fashion-mnist installs the IDX files.
inline constexpr const char* kFashionMnistSystemDir = "/usr/share/datasets/fashion-mnist";

// $SPUSH_DATA if set and non-empty, else kFashionMnistSystemDir.
std::string default_data_dir();

// Fashion-MNIST from dir: train-images-idx3-ubyte + train-labels-idx1-ubyte (train) or
// t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte (test), each with or without ".gz" (the
// Debian package ships the .gz names; the raw names win when both exist). Images must be 28x28,
// labels in [0, 10). Throws DataError.
Dataset load_fashion_mnist(const std::string& dir, bool train);

// CIFAR-10 binary version from dir (or dir/cifar-10-batches-bin): data_batch_1.bin ..
// data_batch_5.bin (train) or test_batch.bin (test). Each record is 1 label byte followed by
// 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each 32x32 row-major). Throws DataError.
Dataset load_cifar10(const std::string& dir, bool train);

// name: "fashion-mnist" or "cifar10". Unknown names throw std::invalid_argument.
Dataset load_dataset(const std::string& name, const std::string& dir, bool train);

// ---- in-memory parsers ------------------------------------------------------------------------
// The loaders above read whole files and call these (one parser per format; fuzz/ feeds them
// directly). `file` holds a file's bytes, raw or gzip (recognized by the gzip magic 1f 8b, one
// or more members, nothing after the last); `source` names it in every DataError (a path).
// Sizes a header declares are checked for overflow and against the data before anything that
// depends on them is allocated: a raw file must have exactly the declared length, a gzip stream
// is inflated at most one byte past it.

// The largest payload an IDX header may declare (1 TiB: far above any real data set, and every
// size stays in int64).
inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 40;

struct IdxImages {
  int64_t count = 0;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols bytes, image-major, row-major
};

// IDX3 images: magic 0x00000803, count, rows, cols, pixels. rows / cols > 0 are the required
// dimensions (0: any, at least 1).
IdxImages parse_idx_images(std::span<const uint8_t> file, const std::string& source,
                           int64_t rows = 0, int64_t cols = 0);
// IDX1 labels: magic 0x00000801, count, labels (each in [0, num_classes)).
std::vector<uint8_t> parse_idx_labels(std::span<const uint8_t> file, const std::string& source,
                                      int num_classes);
// Fashion-MNIST from the bytes of an images file (28x28) and a labels file (classes 0..9) with
// the same count, normalized as load_fashion_mnist does.
Dataset parse_fashion_mnist(std::span<const uint8_t> images_file, const std::string& images_source,
                            std::span<const uint8_t> labels_file, const std::string& labels_source);
// One CIFAR-10 batch (a whole number >= 1 of 3073-byte records, labels 0..9), normalized as
// load_cifar10 does.
Dataset parse_cifar10_batch(std::span<const uint8_t> file, const std::string& source);

// ---- writers (for tests and tools that generate small data sets) ---------------------------

// IDX3 image file: magic 0x00000803, count, rows, cols (big-endian uint32), then
// count*rows*cols pixel bytes. gzip = true writes a gzip stream (name it "*.gz" yourself).
void write_idx_images(const std::string& path, int64_t count, int rows, int cols,
                      const std::vector<uint8_t>& pixels, bool gzip);
// IDX1 label file: magic 0x00000801, count, then count label bytes.
void write_idx_labels(const std::string& path, const std::vector<uint8_t>& labels, bool gzip);
// CIFAR-10 batch: labels.size() records of label byte + 3072 pixel bytes taken from
// pixels (labels.size() * 3072 bytes, per record channel-major as in the format).
void write_cifar_batch(const std::string& path, const std::vector<uint8_t>& labels,
                       const std::vector<uint8_t>& pixels);

}  // namespace spush::nets

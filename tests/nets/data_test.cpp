// Data set loaders: generated Fashion-MNIST IDX files (raw and gzip) and CIFAR-10 batches load
// with the expected normalized values; every malformed input throws DataError naming the file;
// the installed Fashion-MNIST (dataset-fashion-mnist) loads 60000/10000 images when present.
#include "spush/nets/data.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace spush::nets {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("spush_data_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

uint8_t pixel_value(int64_t i, int64_t p) {
  return static_cast<uint8_t>((i * 31 + p * 7 + 3) % 256);
}

std::vector<uint8_t> make_pixels(int64_t count, int64_t per_image) {
  std::vector<uint8_t> px(static_cast<size_t>(count * per_image));
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t p = 0; p < per_image; ++p) px[i * per_image + p] = pixel_value(i, p);
  }
  return px;
}

std::vector<uint8_t> make_labels(int64_t count, int num_classes) {
  std::vector<uint8_t> l(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) l[i] = static_cast<uint8_t>((i * 7 + 1) % num_classes);
  return l;
}

// Writes a valid Fashion-MNIST-shaped set of `count` images under dir with prefix "train"/"t10k".
void write_fashion(const TempDir& dir, const std::string& prefix, int64_t count, bool gzip) {
  const std::string sfx = gzip ? ".gz" : "";
  write_idx_images(dir.file(prefix + "-images-idx3-ubyte" + sfx), count, 28, 28,
                   make_pixels(count, 784), gzip);
  write_idx_labels(dir.file(prefix + "-labels-idx1-ubyte" + sfx), make_labels(count, 10), gzip);
}

void check_fashion_values(const Dataset& d, int64_t count) {
  ASSERT_EQ(d.count, count);
  EXPECT_EQ(d.c, 1);
  EXPECT_EQ(d.h, 28);
  EXPECT_EQ(d.w, 28);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.name, "fashion-mnist");
  ASSERT_EQ(d.images.size(), static_cast<size_t>(count * 784));
  ASSERT_EQ(d.labels.size(), static_cast<size_t>(count));
  const auto labels = make_labels(count, 10);
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(d.labels[i], labels[i]) << "sample " << i;
    for (int64_t p = 0; p < 784; ++p) {
      const double expected = (pixel_value(i, p) / 255.0 - 0.2860) / 0.3530;
      ASSERT_NEAR(d.images[i * 784 + p], expected, 1e-5) << "sample " << i << " pixel " << p;
    }
  }
}

// Expects a DataError whose message contains the file path and every phrase given.
template <typename F>
void expect_data_error(F&& f, const std::string& path, std::vector<std::string> phrases) {
  try {
    f();
    ADD_FAILURE() << "expected DataError mentioning " << path;
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name " << path << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
    for (const auto& ph : phrases) {
      EXPECT_NE(msg.find(ph), std::string::npos) << "message lacks \"" << ph << "\": " << msg;
    }
  }
}

TEST(FashionMnist, RawFilesLoad) {
  TempDir dir;
  write_fashion(dir, "train", 7, false);
  check_fashion_values(load_fashion_mnist(dir.str(), true), 7);
}

TEST(FashionMnist, GzipFilesLoad) {
  TempDir dir;
  write_fashion(dir, "t10k", 5, true);
  const auto bytes = read_file(dir.file("t10k-images-idx3-ubyte.gz"));
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], 0x1f);  // a real gzip stream, not raw bytes under a .gz name
  EXPECT_EQ(bytes[1], 0x8b);
  EXPECT_LT(bytes.size(), 16u + 5 * 784);
  check_fashion_values(load_fashion_mnist(dir.str(), false), 5);
  check_fashion_values(load_dataset("fashion-mnist", dir.str(), false), 5);
}

TEST(FashionMnist, RawPreferredOverGzipAndMixedAllowed) {
  TempDir dir;
  write_fashion(dir, "train", 4, false);
  // A gzip image file with different contents beside the raw one must be ignored.
  write_idx_images(dir.file("train-images-idx3-ubyte.gz"), 3, 28, 28,
                   std::vector<uint8_t>(3 * 784, 0), true);
  check_fashion_values(load_fashion_mnist(dir.str(), true), 4);
  // Raw images with gzip labels.
  TempDir dir2;
  write_idx_images(dir2.file("train-images-idx3-ubyte"), 4, 28, 28, make_pixels(4, 784), false);
  write_idx_labels(dir2.file("train-labels-idx1-ubyte.gz"), make_labels(4, 10), true);
  check_fashion_values(load_fashion_mnist(dir2.str(), true), 4);
}

TEST(FashionMnist, EmptySetLoads) {
  TempDir dir;
  write_fashion(dir, "train", 0, true);
  const Dataset d = load_fashion_mnist(dir.str(), true);
  EXPECT_EQ(d.count, 0);
  EXPECT_TRUE(d.images.empty());
}

TEST(FashionMnistErrors, MissingFiles) {
  TempDir dir;
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-images-idx3-ubyte"), {"not found", ".gz"});
  write_idx_images(dir.file("t10k-images-idx3-ubyte.gz"), 2, 28, 28, make_pixels(2, 784), true);
  expect_data_error([&] { load_fashion_mnist(dir.str(), false); },
                    dir.file("t10k-labels-idx1-ubyte"), {"not found"});
  expect_data_error([&] { load_fashion_mnist(dir.file("no_such_dir"), false); },
                    dir.file("no_such_dir"), {"not found"});
}

TEST(FashionMnistErrors, WrongMagic) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "raw");
    TempDir dir;
    const std::string sfx = gzip ? ".gz" : "";
    // A label file (magic 0x00000801) where the images belong.
    const std::string images = dir.file("train-images-idx3-ubyte" + sfx);
    write_idx_labels(images, make_labels(3 * 784 + 8, 10), gzip);
    write_idx_labels(dir.file("train-labels-idx1-ubyte" + sfx), make_labels(3, 10), gzip);
    expect_data_error([&] { load_fashion_mnist(dir.str(), true); }, images,
                      {"wrong magic 0x00000801", "expected 0x00000803"});
  }
  TempDir dir;
  write_fashion(dir, "train", 3, false);
  std::vector<uint8_t> bad = read_file(dir.file("train-labels-idx1-ubyte"));
  bad[3] = 0x03;
  write_file(dir.file("train-labels-idx1-ubyte"), bad);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-labels-idx1-ubyte"),
                    {"wrong magic 0x00000803", "expected 0x00000801"});
}

TEST(FashionMnistErrors, WrongDimensions) {
  TempDir dir;
  write_idx_images(dir.file("train-images-idx3-ubyte.gz"), 2, 32, 30, make_pixels(2, 960), true);
  write_idx_labels(dir.file("train-labels-idx1-ubyte.gz"), make_labels(2, 10), true);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-images-idx3-ubyte.gz"), {"wrong dimensions 32x30", "28x28"});
}

TEST(FashionMnistErrors, TruncatedRaw) {
  TempDir dir;
  write_fashion(dir, "train", 5, false);
  const std::string images = dir.file("train-images-idx3-ubyte");
  fs::resize_file(images, 16 + 3 * 784 + 100);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); }, images,
                    {"truncated", "expected " + std::to_string(16 + 5 * 784) + " bytes",
                     "got " + std::to_string(16 + 3 * 784 + 100)});
  // A header cut short.
  fs::resize_file(images, 10);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); }, images,
                    {"truncated", "16-byte", "got 10"});
  // Labels cut short.
  write_fashion(dir, "train", 5, false);
  const std::string labels = dir.file("train-labels-idx1-ubyte");
  fs::resize_file(labels, 8 + 2);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); }, labels,
                    {"truncated", "expected 13 bytes", "got 10"});
}

TEST(FashionMnistErrors, TruncatedGzip) {
  TempDir dir;
  write_fashion(dir, "train", 20, true);
  const std::string images = dir.file("train-images-idx3-ubyte.gz");
  const auto full = read_file(images);
  write_file(images, std::vector<uint8_t>(full.begin(), full.begin() + full.size() / 2));
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); }, images,
                    {"expected " + std::to_string(16 + 20 * 784) + " bytes"});
}

TEST(FashionMnistErrors, CorruptGzip) {
  TempDir dir;
  write_fashion(dir, "train", 3, false);
  // gzip magic followed by garbage.
  std::vector<uint8_t> junk = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03};
  for (int i = 0; i < 200; ++i) junk.push_back(static_cast<uint8_t>(i * 37 + 11));
  fs::remove(dir.file("train-labels-idx1-ubyte"));
  write_file(dir.file("train-labels-idx1-ubyte.gz"), junk);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-labels-idx1-ubyte.gz"), {});
}

TEST(FashionMnistErrors, TrailingData) {
  TempDir dir;
  write_fashion(dir, "train", 3, false);
  auto bytes = read_file(dir.file("train-images-idx3-ubyte"));
  bytes.push_back(0);
  write_file(dir.file("train-images-idx3-ubyte"), bytes);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-images-idx3-ubyte"), {"longer than expected"});
}

TEST(FashionMnistErrors, CountMismatch) {
  TempDir dir;
  write_idx_images(dir.file("train-images-idx3-ubyte"), 6, 28, 28, make_pixels(6, 784), false);
  write_idx_labels(dir.file("train-labels-idx1-ubyte"), make_labels(5, 10), false);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-images-idx3-ubyte"),
                    {"count mismatch", "6 images", "5 labels"});
}

TEST(FashionMnistErrors, LabelOutOfRange) {
  TempDir dir;
  write_idx_images(dir.file("train-images-idx3-ubyte"), 4, 28, 28, make_pixels(4, 784), false);
  write_idx_labels(dir.file("train-labels-idx1-ubyte.gz"), {1, 9, 10, 2}, true);
  expect_data_error([&] { load_fashion_mnist(dir.str(), true); },
                    dir.file("train-labels-idx1-ubyte.gz"),
                    {"label 10 at index 2 out of range", "[0, 10)"});
}

// ---- CIFAR-10 ------------------------------------------------------------------------------

void write_cifar(const fs::path& dir, bool train, int per_batch, int first_label_shift = 0) {
  fs::create_directories(dir);
  const int batches = train ? 5 : 1;
  for (int b = 0; b < batches; ++b) {
    std::vector<uint8_t> labels(per_batch), px(static_cast<size_t>(per_batch) * 3072);
    for (int r = 0; r < per_batch; ++r) {
      const int64_t i = int64_t{b} * per_batch + r;
      labels[r] = static_cast<uint8_t>((i * 3 + first_label_shift) % 10);
      for (int p = 0; p < 3072; ++p) px[r * 3072 + p] = pixel_value(i, p);
    }
    const std::string name =
        train ? "data_batch_" + std::to_string(b + 1) + ".bin" : "test_batch.bin";
    write_cifar_batch((dir / name).string(), labels, px);
  }
}

void check_cifar(const Dataset& d, int64_t count) {
  ASSERT_EQ(d.count, count);
  EXPECT_EQ(d.c, 3);
  EXPECT_EQ(d.h, 32);
  EXPECT_EQ(d.w, 32);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.name, "cifar10");
  ASSERT_EQ(d.images.size(), static_cast<size_t>(count * 3072));
  const double mean[3] = {0.4914, 0.4822, 0.4465}, stdev[3] = {0.2470, 0.2435, 0.2616};
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(d.labels[i], (i * 3) % 10) << "sample " << i;
    for (int p = 0; p < 3072; ++p) {
      const int ch = p / 1024;
      const double expected = (pixel_value(i, p) / 255.0 - mean[ch]) / stdev[ch];
      ASSERT_NEAR(d.images[i * 3072 + p], expected, 1e-5) << "sample " << i << " pixel " << p;
    }
  }
}

TEST(Cifar10, TrainAndTestLoad) {
  TempDir dir;
  write_cifar(dir.str(), true, 3);
  write_cifar(dir.str(), false, 4);
  EXPECT_EQ(fs::file_size(dir.file("data_batch_2.bin")), 3u * 3073);
  check_cifar(load_cifar10(dir.str(), true), 15);
  check_cifar(load_dataset("cifar10", dir.str(), false), 4);
}

TEST(Cifar10, TarballSubdirectoryAccepted) {
  TempDir dir;
  write_cifar(fs::path(dir.str()) / "cifar-10-batches-bin", false, 2);
  check_cifar(load_cifar10(dir.str(), false), 2);
}

TEST(Cifar10Errors, MissingBatch) {
  TempDir dir;
  write_cifar(dir.str(), true, 2);
  fs::remove(dir.file("data_batch_4.bin"));
  expect_data_error([&] { load_cifar10(dir.str(), true); }, dir.file("data_batch_4.bin"),
                    {"not found"});
  expect_data_error([&] { load_cifar10(dir.str(), false); }, dir.file("test_batch.bin"),
                    {"not found"});
}

TEST(Cifar10Errors, Truncated) {
  TempDir dir;
  write_cifar(dir.str(), false, 2);
  fs::resize_file(dir.file("test_batch.bin"), 3073 + 1000);
  expect_data_error([&] { load_cifar10(dir.str(), false); }, dir.file("test_batch.bin"),
                    {"truncated", "expected 6146 bytes", "got 4073"});
  fs::resize_file(dir.file("test_batch.bin"), 0);
  expect_data_error([&] { load_cifar10(dir.str(), false); }, dir.file("test_batch.bin"),
                    {"truncated", "got 0"});
}

TEST(Cifar10Errors, LabelOutOfRange) {
  TempDir dir;
  write_cifar(dir.str(), false, 3);
  auto bytes = read_file(dir.file("test_batch.bin"));
  bytes[2 * 3073] = 11;
  write_file(dir.file("test_batch.bin"), bytes);
  expect_data_error([&] { load_cifar10(dir.str(), false); }, dir.file("test_batch.bin"),
                    {"label 11 at record 2 out of range"});
}

TEST(DataApi, LoadDatasetRejectsUnknownName) {
  try {
    load_dataset("mnist", "/tmp", true);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("\"mnist\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fashion-mnist"), std::string::npos) << e.what();
  }
}

TEST(DataApi, WritersValidateSizes) {
  TempDir dir;
  EXPECT_THROW(write_cifar_batch(dir.file("x.bin"), {1, 2}, std::vector<uint8_t>(3072)),
               std::invalid_argument);
  EXPECT_THROW(write_idx_images(dir.file("x"), 2, 28, 28, std::vector<uint8_t>(784), false),
               std::invalid_argument);
  EXPECT_THROW(write_idx_labels(dir.file("no_dir/x"), {1}, false), DataError);
}

TEST(DataApi, DefaultDataDir) {
  const char* old = std::getenv("SPUSH_DATA");
  const std::string saved = old ? old : "";
  ::setenv("SPUSH_DATA", "/some/where", 1);
  EXPECT_EQ(default_data_dir(), "/some/where");
  ::setenv("SPUSH_DATA", "", 1);
  EXPECT_EQ(default_data_dir(), "/usr/share/datasets/fashion-mnist");
  ::unsetenv("SPUSH_DATA");
  EXPECT_EQ(default_data_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("SPUSH_DATA", saved.c_str(), 1);
}

// ---- in-memory parsers: header sizes checked before allocating ------------------------------

// bytes as one gzip member (zlib, windowBits 15 + 16).
std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& bytes) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&z, bytes.size()) + 32);
  z.next_in = const_cast<Bytef*>(bytes.data());
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// An IDX header: magic, then the dimensions (count first), big-endian.
std::vector<uint8_t> idx_header(uint32_t magic, std::vector<uint32_t> dims) {
  dims.insert(dims.begin(), magic);
  std::vector<uint8_t> b;
  for (uint32_t v : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
  }
  return b;
}

TEST(DataParsers, ParsersGiveWhatTheLoadersGive) {
  TempDir dir;
  write_fashion(dir, "train", 3, true);
  const std::string images = dir.file("train-images-idx3-ubyte.gz");
  const std::string labels = dir.file("train-labels-idx1-ubyte.gz");
  const Dataset parsed = parse_fashion_mnist(read_file(images), images, read_file(labels), labels);
  check_fashion_values(parsed, 3);
  EXPECT_EQ(parsed.images, load_fashion_mnist(dir.str(), true).images);
  const IdxImages raw = parse_idx_images(read_file(images), images);
  EXPECT_EQ(raw.count, 3);
  EXPECT_EQ(raw.rows, 28);
  EXPECT_EQ(raw.cols, 28);
  EXPECT_EQ(raw.pixels, make_pixels(3, 784));
  write_cifar(dir.str(), false, 2);
  const std::string batch = dir.file("test_batch.bin");
  check_cifar(parse_cifar10_batch(read_file(batch), batch), 2);
  // A gzip batch and a file of two concatenated gzip members read as the raw bytes.
  const auto bytes = read_file(batch);
  check_cifar(parse_cifar10_batch(gzip_bytes(bytes), batch), 2);
  auto two = gzip_bytes(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 5000));
  const auto rest = gzip_bytes(std::vector<uint8_t>(bytes.begin() + 5000, bytes.end()));
  two.insert(two.end(), rest.begin(), rest.end());
  check_cifar(parse_cifar10_batch(two, batch), 2);
}

TEST(DataParsers, HugeDeclaredCountIsCheckedAgainstTheData) {
  // 2^28 images of 28x28 declared (210 GB), two present: raw and gzip are both refused with the
  // declared size, before anything of that size is allocated.
  auto bytes = idx_header(0x803, {0x10000000u, 28, 28});
  const auto px = make_pixels(2, 784);
  bytes.insert(bytes.end(), px.begin(), px.end());
  const std::string declared = std::to_string(16 + int64_t{0x10000000} * 784);
  expect_data_error([&] { parse_idx_images(bytes, "huge.idx"); }, "huge.idx",
                    {"truncated", "expected " + declared + " bytes", "got 1584"});
  expect_data_error([&] { parse_idx_images(gzip_bytes(bytes), "huge.idx.gz"); }, "huge.idx.gz",
                    {"truncated", "expected " + declared + " bytes (decompressed)", "got 1584"});
  // 2^32 - 1 images (3.4 TB) exceed kMaxIdxBytes: refused from the header alone.
  bytes[4] = bytes[5] = bytes[6] = bytes[7] = 0xff;
  expect_data_error([&] { parse_idx_images(bytes, "huge.idx"); }, "huge.idx",
                    {"header declares 4294967295 images of 28x28 bytes", "corrupt header"});
  // Labels likewise.
  auto labels = idx_header(0x801, {0xfffffff0u});
  labels.push_back(1);
  expect_data_error(
      [&] { parse_idx_labels(labels, "huge.labels", 10); }, "huge.labels",
      {"truncated", "expected " + std::to_string(8 + int64_t{0xfffffff0}) + " bytes"});
}

TEST(DataParsers, OverflowingAndZeroDimensionsAreRefused) {
  // count x rows x cols = (2^32 - 1)^3 does not fit in 64 bits.
  expect_data_error(
      [&] {
        parse_idx_images(idx_header(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}), "ovf.idx");
      },
      "ovf.idx",
      {"header declares 4294967295 images of 4294967295x4294967295 bytes", "corrupt header"});
  // 2^31 images of 2^16 x 2^16 = 2^63 bytes fits in 64 bits but not under kMaxIdxBytes.
  expect_data_error(
      [&] {
        parse_idx_images(idx_header(0x803, {0x80000000u, 0x10000, 0x10000}), "big.idx");
      },
      "big.idx", {"more than the " + std::to_string(kMaxIdxBytes) + " bytes"});
  // A zero dimension with a huge count would describe 4 billion empty images.
  expect_data_error(
      [&] {
        parse_idx_images(idx_header(0x803, {0xffffffffu, 0, 28}), "zero.idx");
      },
      "zero.idx", {"wrong dimensions 0x28", ">= 1"});
  // Required dimensions are checked before the data.
  expect_data_error(
      [&] {
        parse_idx_images(idx_header(0x803, {5, 32, 32}), "dims.idx", 28, 28);
      },
      "dims.idx", {"wrong dimensions 32x32, expected 28x28"});
}

TEST(DataParsers, GzipStreamsAreStrict) {
  auto bytes = idx_header(0x801, {3});
  bytes.insert(bytes.end(), {1, 2, 3});
  // Bytes after the gzip stream that are not another member.
  auto trailing = gzip_bytes(bytes);
  trailing.push_back(0);
  trailing.push_back(7);
  expect_data_error([&] { parse_idx_labels(trailing, "t.gz", 10); }, "t.gz",
                    {"2 unexpected bytes after the end of the gzip stream"});
  // A stream cut short names the decompressed size and the cut.
  const auto whole = gzip_bytes(bytes);
  const std::vector<uint8_t> cut(whole.begin(), whole.end() - 10);
  expect_data_error([&] { parse_idx_labels(cut, "cut.gz", 10); }, "cut.gz",
                    {"truncated", "gzip stream ends early"});
  // Corrupt deflate data after a valid gzip header.
  std::vector<uint8_t> junk = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03, 0xff, 0xff, 0xff};
  expect_data_error([&] { parse_idx_labels(junk, "junk.gz", 10); }, "junk.gz", {"gzip"});
  // A CIFAR batch of no records and one cut inside a record.
  expect_data_error([&] { parse_cifar10_batch({}, "empty.bin"); }, "empty.bin",
                    {"truncated", "got 0"});
  expect_data_error([&] { parse_cifar10_batch(gzip_bytes(std::vector<uint8_t>(3074)), "c.gz"); },
                    "c.gz", {"expected 6146 bytes (decompressed)", "got 3074"});
}

// ---- the installed data set ------------------------------------------------------------------

TEST(FashionMnistInstalled, LoadsFullSets) {
  const std::string dir = kFashionMnistSystemDir;
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not present (package dataset-fashion-mnist)";
  const Dataset train = load_dataset("fashion-mnist", dir, true);
  const Dataset test = load_dataset("fashion-mnist", dir, false);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  EXPECT_EQ(train.num_classes, 10);
  for (const Dataset* d : {&train, &test}) {
    std::vector<int64_t> hist(10, 0);
    for (int32_t l : d->labels) ++hist.at(l);
    for (int c = 0; c < 10; ++c) EXPECT_EQ(hist[c], d->count / 10) << "class " << c;
  }
  // The normalization constants are the training set's pixel mean and std: after normalization
  // the training pixels have mean ~0 and std ~1.
  double sum = 0.0, sq = 0.0;
  for (float v : train.images) {
    sum += v;
    sq += double{v} * v;
  }
  const double n = static_cast<double>(train.images.size());
  const double mean = sum / n;
  EXPECT_NEAR(mean, 0.0, 2e-3);
  EXPECT_NEAR(std::sqrt(sq / n - mean * mean), 1.0, 2e-3);
}

}  // namespace
}  // namespace spush::nets

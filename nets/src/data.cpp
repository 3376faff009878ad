// Loaders and writers for Fashion-MNIST IDX files and CIFAR-10 binary batches. Every file is
// read through zlib's gzread, which decodes gzip streams and passes raw files through, so
// "x" and "x.gz" are read by the same code. Errors are DataError with one line naming the file.
#include "spush/nets/data.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace spush::nets {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;
constexpr int kFashionSide = 28;
constexpr int kFashionClasses = 10;
constexpr int kCifarSide = 32;
constexpr int kCifarClasses = 10;
constexpr int64_t kCifarPixels = 3 * kCifarSide * kCifarSide;  // 3072
constexpr int64_t kCifarRecord = 1 + kCifarPixels;             // 3073
constexpr int64_t kReadChunk = int64_t{1} << 24;               // 16 MiB per gzread

// RAII wrapper over a zlib file handle opened for reading.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      throw DataError(fmt::format("{}: cannot open for reading", path));
    }
    gzbuffer(file_, 1 << 17);
  }
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Appends up to n bytes to out; returns how many were read (fewer only at end of file).
  int64_t read(std::vector<uint8_t>& out, int64_t n) {
    int64_t got = 0;
    while (got < n) {
      const int64_t want = std::min(kReadChunk, n - got);
      const size_t old = out.size();
      out.resize(old + static_cast<size_t>(want));
      const int r = gzread(file_, out.data() + old, static_cast<unsigned>(want));
      if (r < 0) {
        int errnum = 0;
        const char* msg = gzerror(file_, &errnum);
        throw DataError(fmt::format("{}: read error ({})", path_, msg));
      }
      out.resize(old + static_cast<size_t>(r));
      got += r;
      if (r == 0) break;
    }
    return got;
  }
  // Reads the rest of the file.
  int64_t read_all(std::vector<uint8_t>& out) {
    int64_t total = 0;
    for (;;) {
      const int64_t r = read(out, kReadChunk);
      total += r;
      if (r < kReadChunk) return total;
    }
  }
  // True when the input ended inside a gzip stream (a cut .gz file).
  bool gzip_cut() {
    int errnum = 0;
    gzerror(file_, &errnum);
    return errnum == Z_BUF_ERROR;
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

std::string truncated_message(const std::string& path, int64_t expected, int64_t got,
                              bool gzip_cut) {
  return fmt::format("{}: truncated file: expected {} bytes{}, got {}{}", path, expected,
                     gzip_cut ? " (decompressed)" : "", got,
                     gzip_cut ? " (gzip stream ends early)" : "");
}

// After a header of `header` bytes, reads exactly `body` bytes to the end of the file or throws:
// fewer = truncated, more = trailing data after the declared contents. Sizes in messages are
// whole-file sizes (decompressed for .gz).
void read_body(GzReader& in, const std::string& path, std::vector<uint8_t>& out, int64_t header,
               int64_t body) {
  const int64_t got = in.read(out, body);
  if (got < body) {
    throw DataError(truncated_message(path, header + body, header + got, in.gzip_cut()));
  }
  std::vector<uint8_t> extra;
  if (in.read(extra, 1) != 0) {
    throw DataError(
        fmt::format("{}: file is longer than expected: header declares {} bytes, "
                    "found more (wrong count in the header?)",
                    path, header + body));
  }
}

// "dir/base" if it exists, else "dir/base.gz" if it exists, else DataError.
std::string find_idx_file(const std::string& dir, const std::string& base) {
  const fs::path raw = fs::path(dir) / base;
  const fs::path gz = fs::path(dir) / (base + ".gz");
  std::error_code ec;
  if (fs::is_regular_file(raw, ec)) return raw.string();
  if (fs::is_regular_file(gz, ec)) return gz.string();
  throw DataError(fmt::format(
      "{}: file not found (expected the Fashion-MNIST IDX file {} or {}.gz in {}; install "
      "dataset-fashion-mnist or point SPUSH_DATA / the data directory at the files)",
      raw.string(), base, base, dir));
}

// byte -> (byte / 255 - mean) / std for each channel.
std::vector<std::array<float, 256>> normalization_tables(const std::vector<float>& mean,
                                                         const std::vector<float>& stdev) {
  std::vector<std::array<float, 256>> tables(mean.size());
  for (size_t k = 0; k < mean.size(); ++k) {
    for (int v = 0; v < 256; ++v) {
      tables[k][v] = (static_cast<float>(v) / 255.0f - mean[k]) / stdev[k];
    }
  }
  return tables;
}

struct IdxImages {
  int64_t count = 0;
  std::vector<uint8_t> pixels;  // count * 28 * 28
};

IdxImages read_idx_images(const std::string& path) {
  GzReader in(path);
  std::vector<uint8_t> header;
  const int64_t got = in.read(header, 16);
  if (got < 16) {
    throw DataError(
        fmt::format("{}: truncated file: expected a 16-byte IDX3 header, got {} bytes{}", path, got,
                    in.gzip_cut() ? " (gzip stream ends early)" : ""));
  }
  const uint32_t magic = read_be32(header.data());
  if (magic != kIdxImagesMagic) {
    throw DataError(
        fmt::format("{}: wrong magic 0x{:08x}, expected 0x{:08x} (IDX3 unsigned-byte images)", path,
                    magic, kIdxImagesMagic));
  }
  const uint32_t count = read_be32(header.data() + 4);
  const uint32_t rows = read_be32(header.data() + 8);
  const uint32_t cols = read_be32(header.data() + 12);
  if (rows != kFashionSide || cols != kFashionSide) {
    throw DataError(fmt::format("{}: wrong dimensions {}x{}, expected {}x{} images", path, rows,
                                cols, kFashionSide, kFashionSide));
  }
  IdxImages out;
  out.count = count;
  const int64_t bytes = int64_t{count} * rows * cols;
  read_body(in, path, out.pixels, 16, bytes);
  return out;
}

std::vector<uint8_t> read_idx_labels(const std::string& path, int num_classes) {
  GzReader in(path);
  std::vector<uint8_t> header;
  const int64_t got = in.read(header, 8);
  if (got < 8) {
    throw DataError(
        fmt::format("{}: truncated file: expected an 8-byte IDX1 header, got {} bytes{}", path, got,
                    in.gzip_cut() ? " (gzip stream ends early)" : ""));
  }
  const uint32_t magic = read_be32(header.data());
  if (magic != kIdxLabelsMagic) {
    throw DataError(
        fmt::format("{}: wrong magic 0x{:08x}, expected 0x{:08x} (IDX1 unsigned-byte labels)", path,
                    magic, kIdxLabelsMagic));
  }
  const uint32_t count = read_be32(header.data() + 4);
  std::vector<uint8_t> labels;
  read_body(in, path, labels, 8, count);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      throw DataError(fmt::format("{}: label {} at index {} out of range, expected [0, {})", path,
                                  labels[i], i, num_classes));
    }
  }
  return labels;
}

// Writes bytes to path, gzip-compressed or raw.
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb6");
    if (f == nullptr) throw DataError(fmt::format("{}: cannot open for writing", path));
    size_t done = 0;
    while (done < bytes.size()) {
      const size_t n = std::min<size_t>(bytes.size() - done, static_cast<size_t>(kReadChunk));
      if (gzwrite(f, bytes.data() + done, static_cast<unsigned>(n)) != static_cast<int>(n)) {
        gzclose(f);
        throw DataError(fmt::format("{}: write error", path));
      }
      done += n;
    }
    if (gzclose(f) != Z_OK) throw DataError(fmt::format("{}: write error on close", path));
    return;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw DataError(fmt::format("{}: cannot open for writing", path));
  const size_t n = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = (n == bytes.size()) && std::fclose(f) == 0;
  if (!ok) throw DataError(fmt::format("{}: write error", path));
}

}  // namespace

std::string default_data_dir() {
  const char* env = std::getenv("SPUSH_DATA");
  if (env != nullptr && env[0] != '\0') return env;
  return kFashionMnistSystemDir;
}

Dataset load_fashion_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  const IdxImages raw = read_idx_images(images_path);
  const std::vector<uint8_t> labels = read_idx_labels(labels_path, kFashionClasses);
  if (static_cast<int64_t>(labels.size()) != raw.count) {
    throw DataError(fmt::format("{}: image/label count mismatch: {} images, but {} has {} labels",
                                images_path, raw.count, labels_path, labels.size()));
  }
  Dataset d;
  d.name = "fashion-mnist";
  d.count = raw.count;
  d.c = 1;
  d.h = d.w = kFashionSide;
  d.num_classes = kFashionClasses;
  d.mean = {kFashionMnistMean};
  d.std = {kFashionMnistStd};
  const auto tables = normalization_tables(d.mean, d.std);
  d.images.resize(raw.pixels.size());
  for (size_t i = 0; i < raw.pixels.size(); ++i) d.images[i] = tables[0][raw.pixels[i]];
  d.labels.assign(labels.begin(), labels.end());
  return d;
}

Dataset load_cifar10(const std::string& dir, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int b = 1; b <= 5; ++b) names.push_back(fmt::format("data_batch_{}.bin", b));
  } else {
    names.push_back("test_batch.bin");
  }
  // Accept the directory itself or the folder the official tarball unpacks to.
  fs::path base(dir);
  std::error_code ec;
  if (!fs::is_regular_file(base / names[0], ec) &&
      fs::is_regular_file(base / "cifar-10-batches-bin" / names[0], ec)) {
    base /= "cifar-10-batches-bin";
  }
  Dataset d;
  d.name = "cifar10";
  d.c = 3;
  d.h = d.w = kCifarSide;
  d.num_classes = kCifarClasses;
  d.mean.assign(std::begin(kCifar10Mean), std::end(kCifar10Mean));
  d.std.assign(std::begin(kCifar10Std), std::end(kCifar10Std));
  const auto tables = normalization_tables(d.mean, d.std);
  for (const std::string& name : names) {
    const std::string path = (base / name).string();
    if (!fs::is_regular_file(path, ec)) {
      throw DataError(fmt::format(
          "{}: file not found (expected the CIFAR-10 binary batches {} in {} or "
          "{}/cifar-10-batches-bin)",
          path, train ? "data_batch_1.bin .. data_batch_5.bin" : "test_batch.bin", dir, dir));
    }
    std::vector<uint8_t> bytes;
    {
      GzReader in(path);
      in.read_all(bytes);
    }
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (size == 0 || size % kCifarRecord != 0) {
      const int64_t records = (size + kCifarRecord - 1) / kCifarRecord;
      throw DataError(fmt::format(
          "{}: truncated file: expected {} bytes ({} records of 1 label + {} pixel bytes), got {}",
          path, std::max<int64_t>(records, 1) * kCifarRecord, std::max<int64_t>(records, 1),
          kCifarPixels, size));
    }
    const int64_t records = size / kCifarRecord;
    const int64_t first = d.count;
    d.count += records;
    d.images.resize(static_cast<size_t>(d.count * kCifarPixels));
    d.labels.resize(static_cast<size_t>(d.count));
    for (int64_t r = 0; r < records; ++r) {
      const uint8_t* rec = bytes.data() + r * kCifarRecord;
      if (rec[0] >= kCifarClasses) {
        throw DataError(fmt::format("{}: label {} at record {} out of range, expected [0, {})",
                                    path, rec[0], r, kCifarClasses));
      }
      d.labels[first + r] = rec[0];
      float* dst = d.images.data() + (first + r) * kCifarPixels;
      for (int64_t p = 0; p < kCifarPixels; ++p) {
        dst[p] = tables[p / (kCifarSide * kCifarSide)][rec[1 + p]];
      }
    }
  }
  return d;
}

Dataset load_dataset(const std::string& name, const std::string& dir, bool train) {
  if (name == "fashion-mnist") return load_fashion_mnist(dir, train);
  if (name == "cifar10") return load_cifar10(dir, train);
  throw std::invalid_argument(
      fmt::format("unknown dataset \"{}\", expected \"fashion-mnist\" or \"cifar10\"", name));
}

void write_idx_images(const std::string& path, int64_t count, int rows, int cols,
                      const std::vector<uint8_t>& pixels, bool gzip) {
  if (count < 0 || rows <= 0 || cols <= 0 || count > 0xffffffffLL) {
    throw std::invalid_argument(fmt::format(
        "write_idx_images({}): count {} rows {} cols {}: expected count in [0, 2^32), rows and "
        "cols > 0",
        path, count, rows, cols));
  }
  if (static_cast<int64_t>(pixels.size()) != count * rows * cols) {
    throw std::invalid_argument(
        fmt::format("write_idx_images({}): {} pixel bytes, expected count*rows*cols = {}", path,
                    pixels.size(), count * rows * cols));
  }
  std::vector<uint8_t> bytes;
  bytes.reserve(16 + pixels.size());
  put_be32(bytes, kIdxImagesMagic);
  put_be32(bytes, static_cast<uint32_t>(count));
  put_be32(bytes, static_cast<uint32_t>(rows));
  put_be32(bytes, static_cast<uint32_t>(cols));
  bytes.insert(bytes.end(), pixels.begin(), pixels.end());
  write_bytes(path, bytes, gzip);
}

void write_idx_labels(const std::string& path, const std::vector<uint8_t>& labels, bool gzip) {
  std::vector<uint8_t> bytes;
  bytes.reserve(8 + labels.size());
  put_be32(bytes, kIdxLabelsMagic);
  put_be32(bytes, static_cast<uint32_t>(labels.size()));
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  write_bytes(path, bytes, gzip);
}

void write_cifar_batch(const std::string& path, const std::vector<uint8_t>& labels,
                       const std::vector<uint8_t>& pixels) {
  const int64_t n = static_cast<int64_t>(labels.size());
  if (static_cast<int64_t>(pixels.size()) != n * kCifarPixels) {
    throw std::invalid_argument(
        fmt::format("write_cifar_batch({}): {} pixel bytes, expected {} records * {} = {}", path,
                    pixels.size(), n, kCifarPixels, n * kCifarPixels));
  }
  std::vector<uint8_t> bytes;
  bytes.reserve(static_cast<size_t>(n * kCifarRecord));
  for (int64_t r = 0; r < n; ++r) {
    bytes.push_back(labels[r]);
    bytes.insert(bytes.end(), pixels.begin() + r * kCifarPixels,
                 pixels.begin() + (r + 1) * kCifarPixels);
  }
  write_bytes(path, bytes, false);
}

}  // namespace spush::nets

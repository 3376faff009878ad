// Loaders and writers for Fashion-MNIST IDX files and CIFAR-10 binary batches. A loader reads a
// whole file and hands its bytes to the in-memory parser (the one parser, also fed by fuzz/);
// gzip streams are inflated as they are parsed and raw bytes pass through, so "x" and "x.gz" are
// read by the same code. Sizes declared by a header are checked (overflow, data length) before
// anything depending on them is allocated. Errors are DataError with one line naming the file.
#include "spush/nets/data.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
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
constexpr int64_t kReadChunk = int64_t{1} << 24;               // 16 MiB: inflate / gzwrite step
constexpr int64_t kFirstChunk = int64_t{1} << 16;              // first inflate output chunk

// Reads a file held in memory: a gzip stream (magic 1f 8b, one or more members) is inflated as
// it is read, anything else is passed through, like zlib's gzread. The output grows only with
// the bytes that actually arrive (in chunks that at most double it), so a size declared by a
// header never allocates on its own.
class ByteSource {
 public:
  ByteSource(std::span<const uint8_t> in, const std::string& source)
      : in_(in), source_(source), gzip_(in.size() >= 2 && in[0] == 0x1f && in[1] == 0x8b) {
    if (gzip_ && inflateInit2(&z_, 15 + 16) != Z_OK) {  // 15 + 16: gzip wrapper only
      throw DataError(fmt::format("{}: cannot initialize the gzip decoder", source));
    }
  }
  ~ByteSource() {
    if (gzip_) inflateEnd(&z_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool gzip() const { return gzip_; }
  // Raw input: the bytes not read yet (known before reading them). Gzip input: unknown, -1.
  int64_t raw_remaining() const { return gzip_ ? -1 : static_cast<int64_t>(in_.size() - pos_); }
  // True when the input ended inside a gzip stream (a cut .gz file).
  bool gzip_cut() const { return cut_; }

  // Appends up to n bytes to out; returns how many were read (fewer only at the end).
  int64_t read(std::vector<uint8_t>& out, int64_t n) {
    if (n <= 0) return 0;
    if (!gzip_) {
      const int64_t got = std::min<int64_t>(n, raw_remaining());
      out.insert(out.end(), in_.begin() + static_cast<ptrdiff_t>(pos_),
                 in_.begin() + static_cast<ptrdiff_t>(pos_ + static_cast<size_t>(got)));
      pos_ += static_cast<size_t>(got);
      return got;
    }
    int64_t got = 0;
    while (got < n && !end_) {
      if (member_done_) {
        if (pos_ == in_.size()) {
          end_ = true;
          break;
        }
        if (in_.size() - pos_ < 2 || in_[pos_] != 0x1f || in_[pos_ + 1] != 0x8b) {
          throw DataError(fmt::format(
              "{}: {} unexpected bytes after the end of the gzip stream (expected nothing or "
              "another gzip member)",
              source_, in_.size() - pos_));
        }
        inflateReset(&z_);
        member_done_ = false;
      }
      const int64_t want = std::min({n - got, kReadChunk, std::max<int64_t>(kFirstChunk, got)});
      const size_t old = out.size();
      out.resize(old + static_cast<size_t>(want));
      z_.next_out = out.data() + old;
      z_.avail_out = static_cast<uInt>(want);
      int ret = Z_OK;
      while (z_.avail_out > 0) {
        if (z_.avail_in == 0 && pos_ < in_.size()) {
          // avail_in is 32-bit: feed at most 1 GiB at a time.
          const size_t feed = std::min<size_t>(in_.size() - pos_, size_t{1} << 30);
          z_.next_in = const_cast<Bytef*>(in_.data() + pos_);
          z_.avail_in = static_cast<uInt>(feed);
          pos_ += feed;
        }
        const uInt before_in = z_.avail_in, before_out = z_.avail_out;
        ret = inflate(&z_, Z_NO_FLUSH);
        if (ret == Z_STREAM_END) {
          // Give back what this member did not use (the next member or trailing bytes).
          pos_ -= z_.avail_in;
          z_.avail_in = 0;
          member_done_ = true;
          break;
        }
        if (ret == Z_BUF_ERROR ||
            (ret == Z_OK && z_.avail_in == before_in && z_.avail_out == before_out)) {
          if (z_.avail_in == 0 && pos_ == in_.size()) {  // no input left inside the stream
            cut_ = true;
            end_ = true;
            break;
          }
          if (z_.avail_in == 0) continue;  // feed the next piece of input
          ret = Z_DATA_ERROR;              // input and room, yet no progress
        }
        if (ret != Z_OK) {
          throw DataError(fmt::format("{}: corrupt gzip stream ({})", source_,
                                      z_.msg != nullptr ? z_.msg : "inflate failed"));
        }
      }
      const int64_t produced = want - static_cast<int64_t>(z_.avail_out);
      out.resize(old + static_cast<size_t>(produced));
      got += produced;
    }
    return got;
  }

  // Reads the rest of the input.
  int64_t read_all(std::vector<uint8_t>& out) {
    int64_t total = 0;
    for (;;) {
      const int64_t r = read(out, kReadChunk);
      total += r;
      if (r < kReadChunk) return total;
    }
  }

 private:
  std::span<const uint8_t> in_;
  const std::string& source_;
  bool gzip_;
  z_stream z_{};
  size_t pos_ = 0;  // input bytes handed to the decoder (or copied, raw)
  bool member_done_ = false, end_ = false, cut_ = false;
};

// The whole file at path.
std::vector<uint8_t> read_whole_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw DataError(fmt::format("{}: cannot open for reading", path));
  std::vector<uint8_t> bytes;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (!ec) bytes.reserve(static_cast<size_t>(size));
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const size_t n = std::fread(chunk.data(), 1, chunk.size(), f);
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + static_cast<ptrdiff_t>(n));
    if (n < chunk.size()) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw DataError(fmt::format("{}: read error", path));
  return bytes;
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

std::string truncated_message(const std::string& path, int64_t expected, int64_t got, bool gzip,
                              bool gzip_cut) {
  return fmt::format("{}: truncated file: expected {} bytes{}, got {}{}", path, expected,
                     gzip ? " (decompressed)" : "", got,
                     gzip_cut ? " (gzip stream ends early)" : "");
}

std::string longer_message(const std::string& path, int64_t expected) {
  return fmt::format(
      "{}: file is longer than expected: header declares {} bytes, found more (wrong count in "
      "the header?)",
      path, expected);
}

// Reads the `header`-byte header of an IDX file; DataError when the input is shorter.
std::vector<uint8_t> read_header(ByteSource& in, const std::string& path, int64_t header,
                                 const char* what) {
  std::vector<uint8_t> bytes;
  const int64_t got = in.read(bytes, header);
  if (got < header) {
    throw DataError(fmt::format("{}: truncated file: expected a {}-byte {} header, got {} bytes{}",
                                path, header, what, got,
                                in.gzip_cut() ? " (gzip stream ends early)" : ""));
  }
  return bytes;
}

// After a header of `header` bytes, reads exactly `body` bytes to the end of the input or
// throws: fewer = truncated, more = trailing data after the declared contents. A raw input's
// length is checked before anything is allocated; a gzip input is inflated at most one byte
// past the declared size. Sizes in messages are whole-file sizes (decompressed for .gz).
void read_body(ByteSource& in, const std::string& path, std::vector<uint8_t>& out, int64_t header,
               int64_t body) {
  if (!in.gzip()) {
    const int64_t have = in.raw_remaining();
    if (have < body)
      throw DataError(truncated_message(path, header + body, header + have, false, false));
    if (have > body) throw DataError(longer_message(path, header + body));
    out.reserve(static_cast<size_t>(body));
  }
  const int64_t got = in.read(out, body);
  if (got < body) {
    throw DataError(truncated_message(path, header + body, header + got, in.gzip(), in.gzip_cut()));
  }
  std::vector<uint8_t> extra;
  if (in.read(extra, 1) != 0) throw DataError(longer_message(path, header + body));
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

Dataset empty_cifar10() {
  Dataset d;
  d.name = "cifar10";
  d.c = 3;
  d.h = d.w = kCifarSide;
  d.num_classes = kCifarClasses;
  d.mean.assign(std::begin(kCifar10Mean), std::end(kCifar10Mean));
  d.std.assign(std::begin(kCifar10Std), std::end(kCifar10Std));
  return d;
}

// Appends the records of one CIFAR-10 batch (raw or gzip bytes) to d (made by empty_cifar10).
void append_cifar10_batch(std::span<const uint8_t> file, const std::string& path, Dataset& d) {
  ByteSource in(file, path);
  std::vector<uint8_t> bytes;
  in.read_all(bytes);
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size == 0 || size % kCifarRecord != 0) {
    const int64_t records = std::max<int64_t>((size + kCifarRecord - 1) / kCifarRecord, 1);
    throw DataError(fmt::format(
        "{}: truncated file: expected {} bytes{} ({} records of 1 label + {} pixel bytes), got "
        "{}{}",
        path, records * kCifarRecord, in.gzip() ? " (decompressed)" : "", records, kCifarPixels,
        size, in.gzip_cut() ? " (gzip stream ends early)" : ""));
  }
  const int64_t records = size / kCifarRecord;
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t label = bytes[static_cast<size_t>(r * kCifarRecord)];
    if (label >= kCifarClasses) {
      throw DataError(fmt::format("{}: label {} at record {} out of range, expected [0, {})", path,
                                  label, r, kCifarClasses));
    }
  }
  const auto tables = normalization_tables(d.mean, d.std);
  const int64_t first = d.count;
  d.count += records;
  d.images.resize(static_cast<size_t>(d.count * kCifarPixels));
  d.labels.resize(static_cast<size_t>(d.count));
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* rec = bytes.data() + r * kCifarRecord;
    d.labels[first + r] = rec[0];
    float* dst = d.images.data() + (first + r) * kCifarPixels;
    for (int64_t p = 0; p < kCifarPixels; ++p) {
      dst[p] = tables[p / (kCifarSide * kCifarSide)][rec[1 + p]];
    }
  }
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

IdxImages parse_idx_images(std::span<const uint8_t> file, const std::string& source, int64_t rows,
                           int64_t cols) {
  ByteSource in(file, source);
  const std::vector<uint8_t> header = read_header(in, source, 16, "IDX3");
  const uint32_t magic = read_be32(header.data());
  if (magic != kIdxImagesMagic) {
    throw DataError(
        fmt::format("{}: wrong magic 0x{:08x}, expected 0x{:08x} (IDX3 unsigned-byte images)",
                    source, magic, kIdxImagesMagic));
  }
  IdxImages out;
  out.count = read_be32(header.data() + 4);
  out.rows = read_be32(header.data() + 8);
  out.cols = read_be32(header.data() + 12);
  if (out.rows == 0 || out.cols == 0) {
    throw DataError(fmt::format("{}: wrong dimensions {}x{}, expected rows and cols >= 1", source,
                                out.rows, out.cols));
  }
  if ((rows > 0 && out.rows != rows) || (cols > 0 && out.cols != cols)) {
    throw DataError(fmt::format("{}: wrong dimensions {}x{}, expected {}x{} images", source,
                                out.rows, out.cols, rows, cols));
  }
  // Each factor is below 2^32, so the product of two fits in 64 bits; the third may not.
  const uint64_t per_image = static_cast<uint64_t>(out.rows) * static_cast<uint64_t>(out.cols);
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(per_image, static_cast<uint64_t>(out.count), &bytes) ||
      bytes > static_cast<uint64_t>(kMaxIdxBytes)) {
    throw DataError(fmt::format(
        "{}: header declares {} images of {}x{} bytes, more than the {} bytes an IDX file may "
        "hold here (corrupt header?)",
        source, out.count, out.rows, out.cols, kMaxIdxBytes));
  }
  read_body(in, source, out.pixels, 16, static_cast<int64_t>(bytes));
  return out;
}

std::vector<uint8_t> parse_idx_labels(std::span<const uint8_t> file, const std::string& source,
                                      int num_classes) {
  ByteSource in(file, source);
  const std::vector<uint8_t> header = read_header(in, source, 8, "IDX1");
  const uint32_t magic = read_be32(header.data());
  if (magic != kIdxLabelsMagic) {
    throw DataError(
        fmt::format("{}: wrong magic 0x{:08x}, expected 0x{:08x} (IDX1 unsigned-byte labels)",
                    source, magic, kIdxLabelsMagic));
  }
  const uint32_t count = read_be32(header.data() + 4);
  std::vector<uint8_t> labels;
  read_body(in, source, labels, 8, count);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      throw DataError(fmt::format("{}: label {} at index {} out of range, expected [0, {})", source,
                                  labels[i], i, num_classes));
    }
  }
  return labels;
}

Dataset parse_fashion_mnist(std::span<const uint8_t> images_file, const std::string& images_source,
                            std::span<const uint8_t> labels_file,
                            const std::string& labels_source) {
  const IdxImages raw = parse_idx_images(images_file, images_source, kFashionSide, kFashionSide);
  const std::vector<uint8_t> labels = parse_idx_labels(labels_file, labels_source, kFashionClasses);
  if (static_cast<int64_t>(labels.size()) != raw.count) {
    throw DataError(fmt::format("{}: image/label count mismatch: {} images, but {} has {} labels",
                                images_source, raw.count, labels_source, labels.size()));
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

Dataset parse_cifar10_batch(std::span<const uint8_t> file, const std::string& source) {
  Dataset d = empty_cifar10();
  append_cifar10_batch(file, source, d);
  return d;
}

Dataset load_fashion_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  return parse_fashion_mnist(read_whole_file(images_path), images_path,
                             read_whole_file(labels_path), labels_path);
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
  Dataset d = empty_cifar10();
  for (const std::string& name : names) {
    const std::string path = (base / name).string();
    if (!fs::is_regular_file(path, ec)) {
      throw DataError(fmt::format(
          "{}: file not found (expected the CIFAR-10 binary batches {} in {} or "
          "{}/cifar-10-batches-bin)",
          path, train ? "data_batch_1.bin .. data_batch_5.bin" : "test_batch.bin", dir, dir));
    }
    append_cifar10_batch(read_whole_file(path), path, d);  // one batch in memory at a time
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

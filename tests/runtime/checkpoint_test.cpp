// Checkpoint files: round trip, atomic replacement, and rejection of every kind of damage.
#include "spush/runtime/checkpoint.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace spush::runtime {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spush_ckpt_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  static Checkpoint sample() {
    Checkpoint ck;
    ck.meta["iteration"] = 42;
    ck.meta["model"] = "lenet5";
    std::vector<float> x{1.5f, -2.0f, 3.25f};
    ck.put_floats("x", x.data(), 3);
    ck.put_bytes("empty", nullptr, 0);
    return ck;
  }
  static std::vector<char> slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static void dump(const std::string& p, const std::vector<char>& d) {
    std::ofstream out(p, std::ios::binary);
    out.write(d.data(), static_cast<std::streamsize>(d.size()));
  }
  fs::path dir_;
};

TEST_F(CheckpointTest, RoundTrip) {
  write_checkpoint(path("a.ckpt"), sample());
  const Checkpoint ck = read_checkpoint(path("a.ckpt"));
  EXPECT_EQ(ck.meta["iteration"], 42);
  EXPECT_EQ(ck.meta["model"], "lenet5");
  std::vector<float> x(3);
  ck.get_floats("x", x.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  EXPECT_TRUE(ck.has("empty"));
  // No temporary file is left behind.
  int files = 0;
  for (auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(CheckpointTest, ReplacesAtomically) {
  write_checkpoint(path("a.ckpt"), sample());
  Checkpoint other = sample();
  other.meta["iteration"] = 43;
  write_checkpoint(path("a.ckpt"), other);
  EXPECT_EQ(read_checkpoint(path("a.ckpt")).meta["iteration"], 43);
}

TEST_F(CheckpointTest, SizeMismatchNamesEntry) {
  write_checkpoint(path("a.ckpt"), sample());
  const Checkpoint ck = read_checkpoint(path("a.ckpt"));
  std::vector<float> x(4);
  try {
    ck.get_floats("x", x.data(), 4);
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("'x'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ck.get_floats("missing", x.data(), 1), CheckpointError);
}

TEST_F(CheckpointTest, RejectsDamage) {
  write_checkpoint(path("good.ckpt"), sample());
  const auto good = slurp(path("good.ckpt"));
  auto expect_error = [&](const std::vector<char>& bytes, const char* needle) {
    dump(path("bad.ckpt"), bytes);
    try {
      read_checkpoint(path("bad.ckpt"));
      ADD_FAILURE() << "expected CheckpointError containing '" << needle << "'";
    } catch (const CheckpointError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find("bad.ckpt"), std::string::npos) << msg;
    }
  };
  auto truncated = good;
  truncated.resize(good.size() - 7);
  expect_error(truncated, "checksum");
  auto flipped = good;
  flipped[flipped.size() / 2] ^= 0x10;
  expect_error(flipped, "checksum");
  auto magic = good;
  magic[0] = 'X';
  expect_error(magic, "magic");
  auto version = good;
  version[8] = 9;
  expect_error(version, "version");
  expect_error(std::vector<char>(5, 'a'), "too short");
  EXPECT_THROW(read_checkpoint(path("does-not-exist.ckpt")), CheckpointError);
}

// ---- the in-memory parser: every length bounded by the bytes left ---------------------------

// A checkpoint's bytes with the CRC recomputed after an edit, so that the parser gets past the
// checksum to the field under test.
std::vector<uint8_t> with_crc(std::vector<uint8_t> b) {
  const uint32_t crc = static_cast<uint32_t>(crc32(0L, b.data(), static_cast<uInt>(b.size() - 4)));
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
  return b;
}
template <typename T>
void put_at(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}
std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_checkpoint(bytes, "mem.ckpt");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "(no error)";
}
#define EXPECT_HAS(msg, word) EXPECT_NE((msg).find(word), std::string::npos) << (msg)

TEST_F(CheckpointTest, ParseMatchesWrittenFile) {
  const WrittenCheckpoint w = write_checkpoint(path("a.ckpt"), sample());
  const auto file = slurp(path("a.ckpt"));
  const std::vector<uint8_t> bytes = serialize_checkpoint(sample());
  ASSERT_EQ(bytes.size(), file.size());
  EXPECT_EQ(bytes, std::vector<uint8_t>(file.begin(), file.end()));
  const Checkpoint ck = parse_checkpoint(bytes, "mem.ckpt");
  EXPECT_EQ(ck.source, "mem.ckpt");
  EXPECT_EQ(ck.file_bytes, w.bytes);
  EXPECT_EQ(ck.crc32, w.crc32);
  EXPECT_EQ(ck.blobs(), read_checkpoint(path("a.ckpt")).blobs());
}

TEST_F(CheckpointTest, LengthFieldsAreBoundedByTheBytesLeft) {
  // sample(): magic(8) version(4) meta_len(8) meta count(4) then entries sorted by name:
  // "empty" (4 + 5 + 8 + 0 bytes), then "x" (4 + 1 + 8 + 12 bytes), then the CRC.
  const std::vector<uint8_t> good = serialize_checkpoint(sample());
  uint64_t meta_len;
  std::memcpy(&meta_len, good.data() + 12, 8);
  const size_t count_at = 20 + meta_len, empty_at = count_at + 4;
  const size_t x_at = empty_at + 4 + 5 + 8;
  struct Case {
    size_t at;
    uint64_t value;
    int width;
    const char* word;
  };
  const Case cases[] = {
      {12, uint64_t{1} << 63, 8, "truncated while reading metadata"},
      {12, meta_len + 1, 8, "metadata is not valid JSON"},
      {count_at, 0xffffffffu, 4, "entry count 4294967295 does not fit"},
      {count_at, 4, 4, "entry count 4 does not fit in the 42 bytes left"},
      {count_at, 3, 4, "truncated while reading entry name length"},
      {empty_at, 0xfffffff0u, 4, "truncated while reading entry name"},
      {empty_at + 4 + 5, uint64_t{1} << 62, 8, "truncated while reading entry data"},
      {x_at + 4 + 1, 13, 8, "truncated while reading entry data"},
      {x_at + 4 + 1, 11, 8, "1 unexpected trailing bytes"},
  };
  for (const Case& c : cases) {
    auto bad = good;
    if (c.width == 8)
      put_at<uint64_t>(bad, c.at, c.value);
    else
      put_at<uint32_t>(bad, c.at, static_cast<uint32_t>(c.value));
    const std::string msg = parse_error(with_crc(bad));
    SCOPED_TRACE(c.word);
    EXPECT_HAS(msg, "checkpoint mem.ckpt: ");
    EXPECT_HAS(msg, c.word);
  }
}

TEST_F(CheckpointTest, MetadataObjectAndUniqueNames) {
  Checkpoint ck = sample();
  ck.meta = nlohmann::json::array({1, 2});
  EXPECT_HAS(parse_error(serialize_checkpoint(ck)), "metadata is a JSON array, expected an object");
  // Two entries named "x": the writer cannot make them (names are map keys), a damaged or forged
  // file can; the second one used to replace the first silently.
  auto bytes = serialize_checkpoint(sample());
  uint64_t meta_len;
  std::memcpy(&meta_len, bytes.data() + 12, 8);
  // The 17 bytes of entry "empty" (name length 5, "empty", size 0) become an entry "x" of 4
  // bytes: name length 1, "x", size 4, then 4 data bytes.
  const size_t e = 20 + meta_len + 4;
  put_at<uint32_t>(bytes, e, 1);
  bytes[e + 4] = 'x';
  put_at<uint64_t>(bytes, e + 5, 4);
  const std::string msg = parse_error(with_crc(bytes));
  EXPECT_HAS(msg, "repeats the name 'x'");
}

}  // namespace
}  // namespace spush::runtime

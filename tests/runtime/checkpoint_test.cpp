// Checkpoint files: round trip, atomic replacement, and rejection of every kind of damage.
#include "spush/runtime/checkpoint.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace spush::runtime

// The JSON writers of runtime/include/spush/runtime/json_out.h: one object per line, append and
// truncate modes, atomic replacement of whole documents, and errors that name the file.
#include "spush/runtime/json_out.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace spush::runtime {
namespace {

namespace fs = std::filesystem;

class JsonOut : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spush_json_out_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  fs::path dir_;
};

TEST_F(JsonOut, LinesAreAppendedOrTruncatedAndVisibleAtOnce) {
  const fs::path p = dir_ / "rows.jsonl";
  {
    JsonLinesWriter w(p, JsonLinesWriter::Mode::kTruncate);
    w.write(nlohmann::json{{"round", 0}});
    EXPECT_EQ(slurp(p), "{\"round\":0}\n") << "each line is flushed as it is written";
    nlohmann::ordered_json o;
    o["z"] = 1;
    o["a"] = 2;
    w.write(o);
  }
  EXPECT_EQ(slurp(p), "{\"round\":0}\n{\"z\":1,\"a\":2}\n");
  JsonLinesWriter(p, JsonLinesWriter::Mode::kAppend).write(nlohmann::json{{"round", 1}});
  EXPECT_EQ(slurp(p), "{\"round\":0}\n{\"z\":1,\"a\":2}\n{\"round\":1}\n");
  JsonLinesWriter(p, JsonLinesWriter::Mode::kTruncate).write(nlohmann::json{{"round", 2}});
  EXPECT_EQ(slurp(p), "{\"round\":2}\n");
  JsonLinesWriter w(p, JsonLinesWriter::Mode::kAppend);
  EXPECT_THROW(w.write(nlohmann::json::array({1, 2})), std::invalid_argument);
  EXPECT_EQ(slurp(p), "{\"round\":2}\n");
}

TEST_F(JsonOut, OpenErrorsNameTheFile) {
  const fs::path p = dir_ / "missing" / "rows.jsonl";
  try {
    JsonLinesWriter w(p, JsonLinesWriter::Mode::kAppend);
    ADD_FAILURE() << "opened " << p;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
}

TEST_F(JsonOut, AtomicWriteReplacesTheWholeFileAndLeavesNoTemporary) {
  const fs::path p = dir_ / "doc.json";
  std::ofstream(p) << "old";
  write_json_atomic(p, nlohmann::json{{"a", 1}});
  EXPECT_EQ(slurp(p), "{\n  \"a\": 1\n}\n");
  nlohmann::ordered_json o;
  o["b"] = 1;
  o["a"] = 2;
  write_json_atomic(p, o);
  EXPECT_EQ(slurp(p), "{\n  \"b\": 1,\n  \"a\": 2\n}\n");
  write_text_atomic(p, "text");
  EXPECT_EQ(slurp(p), "text");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1) << "a temporary file was left beside " << p;
  // A file name in the current directory (no parent path) works too.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  write_text_atomic("here.txt", "x");
  fs::current_path(cwd);
  EXPECT_EQ(slurp(dir_ / "here.txt"), "x");
}

TEST_F(JsonOut, AtomicWriteErrorsNameThePathAndKeepTheOldFile) {
  const fs::path missing = dir_ / "no" / "doc.json";
  try {
    write_json_atomic(missing, nlohmann::json{{"a", 1}});
    ADD_FAILURE() << "wrote " << missing;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  // The target is a directory: the rename fails, the directory and no temporary remain.
  const fs::path target = dir_ / "taken";
  fs::create_directories(target / "inside");
  EXPECT_THROW(write_text_atomic(target, "x"), std::runtime_error);
  EXPECT_TRUE(fs::is_directory(target / "inside"));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

}  // namespace
}  // namespace spush::runtime

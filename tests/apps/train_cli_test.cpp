// Runs the built spush-train binary on bad command lines and config files: each gives one
// error line naming the problem, a non-zero exit (2: command-line syntax, 1: invalid setting
// or file) and no output directory.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;
const std::string kBinary = SPUSH_BINARY_DIR "/bin/spush-train";

struct Result {
  int code = -1;
  std::string out, err;
};

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("spush_train_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  Result run(const std::string& args) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string cmd =
        kBinary + " " + args + " > '" + out.string() + "' 2> '" + err.string() + "'";
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  // Expects exit `code`, exactly one stderr line containing `needle`, and no run directory.
  void expect_error(const std::string& args, int code, const std::string& needle) {
    SCOPED_TRACE(args);
    const std::string out = (dir_ / "run").string();
    const Result r = run(args + " --out " + out);
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  fs::path dir_;
};

TEST_F(TrainCli, HelpListsEverySetting) {
  const Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag :
       {"--nodes",  "--topology", "--schedule", "--algorithm", "--compressor", "--density",
        "--bits",   "--eta",      "--model",    "--norm",      "--dataset",    "--data-dir",
        "--skew",   "--epochs",   "--batch",    "--lr",        "--seed",       "--out",
        "--resume", "--device",   "--config"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

TEST_F(TrainCli, BadArguments) {
  expect_error("--no-such-flag", 2, "--no-such-flag");
  expect_error("--nodes many", 2, "--nodes");
  expect_error("--density 2", 1, "density");
  expect_error("--skew 1.5", 1, "skew");
  expect_error("--nodes 0", 1, "nodes");
  expect_error("--model resnet7", 1, "resnet7");
  expect_error("--topology rings4 --nodes 5", 1, "rings4");
  expect_error("--data-dir " + (dir_ / "missing").string(), 1, "missing");
  expect_error("--batch 100000", 1, "batch");
}

TEST_F(TrainCli, ConfigFiles) {
  const fs::path bad = dir_ / "bad.json";
  std::ofstream(bad) << R"({"nodes": 4, "densty": 0.1})";
  expect_error("--config " + bad.string(), 2, "densty");
  std::ofstream(dir_ / "broken.json") << "{ nodes: ";
  expect_error("--config " + (dir_ / "broken.json").string(), 2, "not valid JSON");
  expect_error("--config " + (dir_ / "absent.json").string(), 2, "absent.json");
  // Command-line flags override the file: the file's valid density is replaced by a bad one.
  std::ofstream(dir_ / "ok.json") << R"({"density": 0.1, "nodes": 4})";
  expect_error("--config " + (dir_ / "ok.json").string() + " --density 3", 1, "density = 3");
}

}  // namespace

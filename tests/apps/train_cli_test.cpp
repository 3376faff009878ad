// Runs the built spush-train binary on bad command lines and config files: each gives one
// error line naming the problem, a non-zero exit (2: command-line syntax or config file, 1:
// invalid setting or file) and no output directory. A short run on generated data checks that
// its config.json is accepted back by --config and the names of its metrics.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <chrono>
#include <signal.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "spush/nets/data.h"
#include "synthetic_data.h"

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
  // prefix: shell words before the binary (a cd, environment variables).
  Result run(const std::string& args, const std::string& prefix = "") {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string cmd =
        prefix + kBinary + " " + args + " > '" + out.string() + "' 2> '" + err.string() + "'";
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
       {"--nodes",   "--topology",  "--schedule",     "--algorithm", "--compressor",
        "--density", "--bits",      "--eta",          "--model",     "--norm",
        "--dataset", "--data-dir",  "--skew",         "--epochs",    "--batch",
        "--lr",      "--seed",      "--out",          "--resume",    "--device",
        "--config",  "--transport", "--comm-timeout", "--threads",   "--scsp-final-with-updates"})
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
  expect_error("--nodes=", 2, "--nodes: empty value");
  expect_error("--quiet=maybe", 2, "--quiet");
  expect_error("--lr nan", 2, "--lr");
  expect_error("--threads 5000", 1, "threads = 5000");
  expect_error("--transport tcp", 1, "transport = 'tcp'");
  expect_error("--comm-timeout 0", 1, "comm-timeout = 0");
  expect_error("--algorithm gossipy", 1, "gossipy");
  // Values that would size an allocation or a wait, and non-finite numbers.
  expect_error("--nodes 100000", 1, "nodes = 100000");
  expect_error("--nodes 2147483647", 1, "nodes = 2147483647");
  expect_error("--comm-timeout 1e300", 1, "comm-timeout = 1e+300");
  expect_error("--lr inf", 2, "--lr");
  expect_error("--lr 1e999", 2, "--lr");
  expect_error("--weight-decay inf", 2, "--weight-decay");
  expect_error("--augment-pad 100000", 1, "augment-pad = 100000");
  expect_error("--compressor qsgd --bits 3", 1, "bits = 3");
  expect_error("--compressor fractional --bits 1", 1, "bits = 1");
  expect_error("--epochs -1", 1, "epochs = -1");
  expect_error("--seed -1", 2, "--seed");
}

// An unset shell variable in `--out=$DIR` must not make the next flag the output directory.
TEST_F(TrainCli, EmptyValueDoesNotSwallowTheNextArgument) {
  const Result r = run("--out= --nodes 2", "cd '" + dir_.string() + "' && ");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--out: empty value, expected a directory"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir_)) entries.push_back(e.path().filename());
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"stderr", "stdout"})) << "a run directory was made";
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
  // ... wherever --config appears.
  expect_error("--density 3 --config " + (dir_ / "ok.json").string(), 1, "density = 3");
  // Values are typed: a string for a number, an empty output directory.
  std::ofstream(dir_ / "typed.json") << R"({"nodes": "4"})";
  expect_error("--config " + (dir_ / "typed.json").string(), 2, "'nodes' = \"4\"");
  std::ofstream(dir_ / "empty_out.json") << R"({"out": ""})";
  expect_error("--config " + (dir_ / "empty_out.json").string(), 2, "expected a directory");
}

using spush::test::write_synthetic;

// Small generated data in dir_/data and the flags of a short run on it.
class TrainRun : public TrainCli {
 protected:
  void SetUp() override {
    TrainCli::SetUp();
    fs::create_directories(dir_ / "data");
    write_synthetic(dir_ / "data", "train", 4000, 1);
    write_synthetic(dir_ / "data", "t10k", 100, 2);
  }
  std::string common(const std::string& out) const {
    return "--nodes 4 --batch 16 --density 0.1 --epochs 2 --quiet --data-dir '" +
           (dir_ / "data").string() + "' --out '" + (dir_ / out).string() + "'";
  }
  // Starts spush-train in the background; returns its pid.
  pid_t start(const std::string& args, const std::string& log) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const std::string cmd = "exec " + kBinary + " " + args + " > '" + (dir_ / log).string() +
                              "' 2>&1";
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }
};

// SIGTERM (or SIGINT) in the middle of an epoch: the run finishes the iteration, writes its
// checkpoint and exits 5 at once; --resume finishes identical to a run never stopped. A second
// signal ends the process immediately.
TEST_F(TrainRun, StopSignalExitsFiveAndTheRunResumesIdentically) {
  const Result whole = run(common("whole"));
  ASSERT_EQ(whole.code, 0) << whole.err;
  for (int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    const std::string out = sig == SIGTERM ? "term" : "int";
    const pid_t pid = start(common(out), out + ".log");
    // Wait for the first committed epoch, then stop it in the middle of the second.
    const auto t0 = std::chrono::steady_clock::now();
    while (!fs::exists(dir_ / out / "checkpoint.json") &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(fs::exists(dir_ / out / "checkpoint.json")) << slurp(dir_ / (out + ".log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto hit = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(pid, sig), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - hit).count();
    const std::string log = slurp(dir_ / (out + ".log"));
    ASSERT_TRUE(WIFEXITED(status)) << log;
    EXPECT_EQ(WEXITSTATUS(status), 5) << log;
    EXPECT_LT(took, 2.0) << log;
    EXPECT_NE(log.find("stopped by SIG"), std::string::npos) << log;
    const auto manifest = nlohmann::json::parse(slurp(dir_ / out / "checkpoint.json"));
    EXPECT_GT(manifest.at("in_epoch").get<int>(), 0) << "not stopped in the middle of an epoch";
    const Result resumed = run(common(out) + " --resume");
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    EXPECT_EQ(nlohmann::json::parse(slurp(dir_ / out / "summary.json")).at("node_digests"),
              nlohmann::json::parse(slurp(dir_ / "whole" / "summary.json")).at("node_digests"));
  }
  // Two signals: the second one ends the process at once (killed by it, no status 5).
  const pid_t pid = start(common("twice"), "twice.log");
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(dir_ / "twice" / "config.json") &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(pid, SIGTERM);
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 5))
      << slurp(dir_ / "twice.log");
}

// A test set without images, or files that cannot be written (here: a file-size limit, as a
// full disk would): one error naming the file, a non-zero status, no half-written output.
TEST_F(TrainRun, EmptyTestSetAndWriteFailuresAreClearErrors) {
  write_synthetic(dir_ / "data", "t10k", 0, 2);
  Result r = run(common("empty"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("test set"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "empty"));
  write_synthetic(dir_ / "data", "t10k", 100, 2);
  // 100 KiB per file: config.json and metrics.jsonl fit, a checkpoint shard does not.
  r = run(common("limited"), "ulimit -f 100 && ");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("checkpoint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((dir_ / "limited").string()), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const auto& e : fs::directory_iterator(dir_ / "limited"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << "a temporary file was left: " << e.path();
  EXPECT_FALSE(fs::exists(dir_ / "limited" / "checkpoint.json"));
}

TEST_F(TrainCli, ConfigJsonOfARunIsAcceptedBackAndMetricsUseTheSharedNames) {
  fs::create_directories(dir_ / "data");
  write_synthetic(dir_ / "data", "train", 128, 1);
  write_synthetic(dir_ / "data", "t10k", 64, 2);
  // No --data-dir: the data come from $SPUSH_DATA and config.json says "data-dir": "".
  const std::string env = "SPUSH_DATA='" + (dir_ / "data").string() + "' ";
  const fs::path first = dir_ / "first", second = dir_ / "second";
  const std::string common = "--nodes 2 --epochs 1 --batch 16 --density 0.1 --quiet";
  Result r = run(common + " --out " + first.string(), env);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto cfg = nlohmann::json::parse(slurp(first / "config.json"));
  EXPECT_EQ(cfg.at("data-dir"), "");
  EXPECT_EQ(cfg.at("transport"), "auto");
  EXPECT_EQ(cfg.at("comm-timeout"), 60.0);

  r = run("--config " + (first / "config.json").string() + " --out " + second.string(), env);
  ASSERT_EQ(r.code, 0) << r.err;
  auto again = nlohmann::json::parse(slurp(second / "config.json"));
  EXPECT_EQ(again.at("out"), second.string());
  again["out"] = cfg.at("out");
  EXPECT_EQ(again, cfg);

  std::ifstream metrics(second / "metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(metrics, line));
  const auto m = nlohmann::json::parse(line);
  for (const char* key :
       {"bytes_per_node", "bytes_per_node_paper", "compression_factor", "compression_factor_paper",
        "bytes_per_node_iter", "bytes_per_node_iter_paper", "mb_per_node"})
    EXPECT_TRUE(m.contains(key)) << key << " missing in " << line;
  for (const char* key : {"bytes_per_node_total", "bytes_per_node_total_paper"})
    EXPECT_FALSE(m.contains(key)) << key << " in " << line;
  EXPECT_DOUBLE_EQ(m.at("mb_per_node").get<double>(), m.at("bytes_per_node").get<double>() / 1e6);
  EXPECT_GT(m.at("bytes_per_node").get<double>(), m.at("bytes_per_node_paper").get<double>());
}

}  // namespace

// Runs the built spush-gossip binary: good runs exit 0 and print the documented columns (and
// JSON lines), bad arguments exit non-zero with exactly one stderr line naming the problem
// (malformed command line or config file: 2, invalid setting: 1).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "spush/kernels/device.h"

namespace {

const std::string kBinary = SPUSH_BINARY_DIR "/bin/spush-gossip";

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "spush_gossip_cli_" + std::to_string(::getpid()) + "_" + name;
}

Result run(const std::string& args) {
  const std::string out = temp_path("stdout"), err = temp_path("stderr");
  const std::string cmd = kBinary + " " + args + " > '" + out + "' 2> '" + err + "'";
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) v.push_back(l);
  return v;
}

// Data rows: lines whose first token is a round number.
std::vector<std::vector<std::string>> rows(const std::string& out) {
  std::vector<std::vector<std::string>> v;
  for (const std::string& l : lines(out)) {
    std::stringstream ss(l);
    std::vector<std::string> tok;
    for (std::string t; ss >> t;) tok.push_back(t);
    if (!tok.empty() && tok[0].find_first_not_of("0123456789") == std::string::npos)
      v.push_back(tok);
  }
  return v;
}

class GossipCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kBinary.c_str(), X_OK) != 0) FAIL() << "binary not built: " << kBinary;
  }
};

TEST_F(GossipCli, AveragingRunPrintsColumnsAndConverges) {
  const Result r =
      run("--nodes 4 --topology ring --algorithm sparsepush --dim 64 --rounds 200 "
          "--print-every 50 --seed 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  for (const char* col : {"round", "consensus_error", "objective_gap", "bytes_per_node",
                          "bytes_per_node_paper", "compression_factor", "summary:"})
    EXPECT_NE(r.out.find(col), std::string::npos) << "missing '" << col << "' in\n" << r.out;
  const auto rs = rows(r.out);
  ASSERT_EQ(rs.size(), 5u) << r.out;  // rounds 0, 50, 100, 150, 200
  for (size_t i = 0; i < rs.size(); ++i) {
    ASSERT_EQ(rs[i].size(), 6u) << r.out;
    EXPECT_EQ(std::stoll(rs[i][0]), static_cast<long long>(50 * i));
    EXPECT_EQ(rs[i][2], "-");  // no objective in averaging mode
  }
  EXPECT_DOUBLE_EQ(std::stod(rs[0][1]), 1.0);  // relative to the start
  EXPECT_LT(std::stod(rs[4][1]), std::stod(rs[1][1]));
  // Top-1% of 4 segments of 16: 4 values + 4-byte u per message, 40-byte header, 2-byte
  // indices: 40 + 4 * (2 + 4) = 64 bytes per round to the one out-neighbour.
  EXPECT_DOUBLE_EQ(std::stod(rs[4][3]), 200.0 * 64);
  EXPECT_DOUBLE_EQ(std::stod(rs[4][4]), 200.0 * (6 * 4 + 4));
  EXPECT_NEAR(std::stod(rs[4][5]), 4.0 * 65 / 64, 1e-3);
}

TEST_F(GossipCli, DenseAveragingReachesTheAverage) {
  const Result r =
      run("--nodes 8 --topology full --algorithm sgp --dim 32 --segments 2 "
          "--rounds 5 --print-every 5");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rs = rows(r.out);
  ASSERT_EQ(rs.size(), 2u) << r.out;
  EXPECT_LT(std::stod(rs[1][1]), 1e-5);  // one exact averaging round on the complete graph
}

TEST_F(GossipCli, LogisticRunWritesJsonAndStopsAtTheTarget) {
  const std::string json = temp_path("rows.json");
  const Result r =
      run("--mode logistic --nodes 4 --topology rings4 --algorithm sgp --dim 32 "
          "--samples 64 --lr 1 --lr-decay 0 --rounds 2000 --print-every 10 "
          "--target-gap 1e-3 --json '" +
          json + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("target: objective_gap"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("reached at round"), std::string::npos) << r.out;
  std::ifstream f(json);
  std::vector<nlohmann::json> objs;
  for (std::string l; std::getline(f, l);) objs.push_back(nlohmann::json::parse(l));
  std::remove(json.c_str());
  ASSERT_GE(objs.size(), 2u);
  for (const auto& o : objs) {
    // The names of the trainer's metrics.jsonl for the same quantities.
    for (const char* key :
         {"round", "consensus_error", "objective_gap", "bytes_per_node", "bytes_per_node_paper",
          "compression_factor", "compression_factor_paper"})
      EXPECT_TRUE(o.contains(key)) << key << " missing in " << o.dump();
    EXPECT_FALSE(o.contains("bytes_per_node_actual")) << o.dump();
  }
  EXPECT_EQ(objs.front()["round"], 0);
  EXPECT_DOUBLE_EQ(objs.front()["objective_gap"].get<double>(), 1.0);
  const auto& last = objs.back();
  EXPECT_LT(last["objective_gap"].get<double>(), 1e-3);
  EXPECT_LT(last["round"].get<int>(), 2000);
  // The row before the last one was printed on the --print-every grid and above the target.
  const auto& before = objs[objs.size() - 2];
  EXPECT_EQ(before["round"].get<int>() % 10, 0);
  EXPECT_GE(before["objective_gap"].get<double>(), 1e-3);
  // One message per round to one out-neighbour: 4 d payload bytes + the 40-byte header
  // (which carries u).
  EXPECT_DOUBLE_EQ(last["bytes_per_node"].get<double>(),
                   last["round"].get<double>() * (4 * 32 + 40));
  // Uncompressed: dense 4 (d + 1) per message in both the papers' count and the dense count.
  EXPECT_DOUBLE_EQ(last["bytes_per_node_paper"].get<double>(),
                   last["round"].get<double>() * 4 * (32 + 1));
  EXPECT_DOUBLE_EQ(last["compression_factor_paper"].get<double>(), 1.0);
  // Rows agree with stdout.
  const auto rs = rows(r.out);
  ASSERT_EQ(rs.size(), objs.size());
  EXPECT_EQ(std::stoll(rs.back()[0]), last["round"].get<long long>());
}

TEST_F(GossipCli, HelpExitsZero) {
  const Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag :
       {"--nodes", "--topology", "--algorithm", "--compressor", "--density", "--target-gap",
        "--json", "--device", "--scsp-final-rounds", "--schedule", "--epoch-rounds",
        "--global-compression", "--transport", "--comm-timeout", "--threads", "--config"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

struct BadCase {
  std::string args;
  int code;                           // expected exit code
  std::vector<std::string> mentions;  // substrings the error line must contain
};

TEST_F(GossipCli, BadArgumentsFailWithOneClearLine) {
  const std::vector<BadCase> cases = {
      {"--bogus-flag 3", 2, {"--bogus-flag"}},
      {"--nodes four", 2, {"--nodes", "four"}},
      {"--global", 2, {"unknown option --global"}},    // now --global-compression
      {"--period 2", 2, {"unknown option --period"}},  // now --schedule iterations:N|epochs:N
      {"--period-unit iterations", 2, {"unknown option --period-unit"}},
      {"--topology= --nodes 2", 2, {"--topology: empty value"}},
      {"--rounds 1.5", 2, {"--rounds", "1.5", "an integer"}},
      {"--qgm=yes", 2, {"--qgm", "yes"}},
      {"--algorithm gossipy", 1, {"algorithm = 'gossipy'", "dpsgd", "quantsgp"}},
      {"--compressor zip", 1, {"compressor = 'zip'"}},
      {"--density 2", 1, {"density = 2", "(0, 1]"}},
      {"--density 0", 1, {"density = 0"}},
      {"--nodes 0", 1, {"nodes = 0"}},
      {"--schedule weekly", 1, {"schedule = 'weekly'", "iterations:N"}},
      {"--epoch-rounds 0", 1, {"epoch-rounds = 0"}},
      {"--transport tcp", 1, {"transport = 'tcp'"}},
      {"--threads 2000", 1, {"threads = 2000", "[0, 1024]"}},
      {"--comm-timeout -1", 1, {"comm-timeout = -1", "(0, 1000000]"}},
      {"--algorithm fedavg", 1, {"algorithm = fedavg", "spush-train"}},
      {"--topology rings4 --nodes 5", 1, {"rings4", "4 nodes"}},
      {"--topology file:/nonexistent/spush/missing.topo", 1, {"/nonexistent/spush/missing.topo"}},
      {"--topology moebius", 1, {"moebius"}},
      {"--algorithm deepsqueeze --topology ring", 1, {"Deep-Squeeze"}},
      {"--segments 300 --dim 256", 1, {"segments = 300", "dim = 256"}},
      {"--mode logistic --skew 1.5", 1, {"skew = 1.5"}},
      {"--eta 1.5", 1, {"eta = 1.5"}},
      {"--compressor qsgd --bits 3", 1, {"bits"}},
      {"--device cuda --mode logistic", 1, {"--device cuda", "averaging"}},
      {"--device cuda --compressor randomk", 1, {"cuda"}},
      {"--target-gap 1e-3", 1, {"target-gap"}},
  };
  for (const BadCase& c : cases) {
    const Result r = run(c.args);
    EXPECT_EQ(r.code, c.code) << c.args << "\nstderr: " << r.err;
    const auto err_lines = lines(r.err);
    ASSERT_EQ(err_lines.size(), 1u) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(err_lines[0].rfind("spush-gossip: error: ", 0), 0u) << err_lines[0];
    for (const std::string& m : c.mentions)
      EXPECT_NE(err_lines[0].find(m), std::string::npos)
          << c.args << ": '" << m << "' not in: " << err_lines[0];
  }
}

// Without a usable GPU (or without CUDA in the build) --device cuda is a clear error; with one
// it runs (tests/apps/gossip_gpu_test.cpp compares its trajectory with the host's).
TEST_F(GossipCli, DeviceCudaNeedsAGpu) {
  const Result r = run("--device cuda --rounds 20 --print-every 10");
  if (spush::kernels::cuda_available()) {
    EXPECT_EQ(r.code, 0) << r.err;
  } else {
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
    EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  }
}

// The library's algorithm names are all accepted, aliases included.
TEST_F(GossipCli, AcceptsEveryAlgorithmNameOfTheLibrary) {
  for (const auto& [name, runs] : std::vector<std::pair<std::string, std::string>>{
           {"dpsgd", "sgp"}, {"quantsgp", "choco"}, {"sgp", "sgp"}, {"choco", "choco"}}) {
    const Result r = run("--algorithm " + name + " --rounds 10 --print-every 10");
    EXPECT_EQ(r.code, 0) << name << ": " << r.err;
    EXPECT_NE(r.out.find("# algorithm " + runs + ","), std::string::npos) << name << "\n" << r.out;
  }
}

// The renamed flags keep their meaning: a two-graph rotation every 2 iterations and global
// compression reach the run (its header line says so).
TEST_F(GossipCli, SharedFlagNames) {
  const Result r =
      run("--topology ring,bidir-ring --schedule iterations:2 --global-compression "
          "--rounds 4 --print-every 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("every 2 iteration"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(", global)"), std::string::npos) << r.out;
  const Result e = run("--topology ring,bidir-ring --schedule epochs:3 --rounds 4 --print-every 2");
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("every 3 epoch"), std::string::npos) << e.out;
}

// --config takes the same keys as the flags; flags override it wherever it appears; an empty
// --json (no JSON output) is accepted back.
TEST_F(GossipCli, ConfigFile) {
  const std::string config = temp_path("config.json");
  std::ofstream(config) << R"({"nodes": 8, "topology": "full", "algorithm": "sgp", "dim": 32,
      "segments": 2, "rounds": 4, "print-every": 4, "json": ""})";
  Result r = run("--config '" + config + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("8 nodes"), std::string::npos) << r.out;
  r = run("--nodes 3 --config '" + config + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("3 nodes"), std::string::npos) << r.out;
  std::ofstream(config) << R"({"nodes": 8, "global": true})";
  r = run("--config '" + config + "'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown setting 'global'"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  std::remove(config.c_str());
}

TEST_F(GossipCli, JsonFileIsNotTouchedOnBadArguments) {
  const std::string json = temp_path("keep.json");
  {
    std::ofstream f(json);
    f << "previous\n";
  }
  const Result r = run("--density 2 --json '" + json + "'");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(slurp(json), "previous\n");
  std::remove(json.c_str());
}

}  // namespace

// spush-gossip's averaging mode on the GPU (--device cuda) against the same run on the CPU: the
// JSON rows (consensus error, bytes per node in both conventions, compression factor) must be
// identical, since the device algorithms reproduce the host trajectory bit for bit.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gpu_test_util.h"

namespace {

const std::string kBinary = SPUSH_BINARY_DIR "/bin/spush-gossip";

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "spush_gossip_gpu_" + std::to_string(::getpid()) + "_" + name;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> v;
  for (std::string l; std::getline(f, l);) v.push_back(l);
  return v;
}

// Runs spush-gossip with args on a device; returns its JSON rows (empty on failure).
std::vector<std::string> run(const std::string& args, const std::string& device) {
  const std::string json = temp_path(device + ".jsonl"), err = temp_path(device + ".err");
  const std::string cmd = kBinary + " " + args + " --device " + device + " --json '" + json +
                          "' > /dev/null 2> '" + err + "'";
  const int status = std::system(cmd.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::vector<std::string> rows = read_lines(json);
  const std::vector<std::string> errors = read_lines(err);
  std::remove(json.c_str());
  std::remove(err.c_str());
  EXPECT_EQ(code, 0) << cmd << "\n" << (errors.empty() ? "" : errors.front());
  return code == 0 ? rows : std::vector<std::string>{};
}

void compare(const std::string& args) {
  SCOPED_TRACE(args);
  const std::vector<std::string> cpu = run(args, "cpu");
  const std::vector<std::string> gpu = run(args, "cuda");
  ASSERT_GT(cpu.size(), 2u);
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_EQ(gpu[i], cpu[i]) << "row " << i;
}

TEST(GossipGpu, AveragingTrajectoryEqualsTheCpu) {
  SPUSH_REQUIRE_GPU();
  const std::string common = "--nodes 16 --dim 20000 --segments 7 --rounds 300 --print-every 20";
  compare(common + " --algorithm sparsepush --compressor topk --density 0.01");
  compare(common +
          " --algorithm sparsepush --compressor topk --density 0.01 --index-codec block "
          "--topology torus");
  compare(common + " --algorithm sparsepush --compressor qsgd --bits 8 --eta 0.1");
  compare(common +
          " --algorithm sparsepush --compressor qsgd --bits 2 --eta 0.05 --global-compression");
  compare(common + " --algorithm scsp --compressor topk --density 0.1 --scsp-final-rounds 30");
  compare(common + " --algorithm sgp --topology exponential");
  compare(common + " --algorithm choco --compressor topk --density 0.05 --topology torus");
  compare(
      "--nodes 4 --topology rings4 --dim 5000 --segments 3 --rounds 200 --print-every 10 "
      "--algorithm choco --compressor qsgd --bits 4");
  compare(
      "--nodes 4 --topology rings4 --dim 5000 --segments 3 --rounds 200 --print-every 10 "
      "--algorithm sparsepush --compressor topk --density 0.01 --eta 0.01");
}

}  // namespace

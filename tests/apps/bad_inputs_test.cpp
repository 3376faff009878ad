// Runs tests/apps/bad_inputs.py: spush-train and spush-gossip on about 250 bad inputs (flags,
// config files, topology files, data sets, checkpoints, output folders); each must give an exit
// status in 1..123, one error line naming the input, and leave every output as it was.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

TEST(BadInputs, EveryOneIsOneClearErrorAndChangesNothing) {
  const std::string work = ::testing::TempDir() + "spush_bad_inputs_" + std::to_string(::getpid());
  const std::string cmd = "python3 '" SPUSH_SOURCE_DIR "/tests/apps/bad_inputs.py' '"
                          SPUSH_BINARY_DIR "/bin' '" + work + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) output.append(buf, n);
  const int status = ::pclose(pipe);
  std::system(("rm -rf '" + work + "'").c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_NE(output.find(" bad inputs, 0 failed"), std::string::npos) << output;
}

}  // namespace

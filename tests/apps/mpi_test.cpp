// spush-gossip and spush-train as MPI programs, run with the real mpirun: the same settings on
// 1 process and under `mpirun -np 2` and `-np 4` (and an uneven split) give the same bits
// (every JSON row of spush-gossip; spush-train's final per-node state digests, metrics and byte
// counts, timings aside). A rank that dies (SIGKILL) or stops answering (SIGSTOP) in the middle
// of an epoch ends the job with a non-zero status within the communication timeout, naming the
// lost rank, and `--resume` of the whole job then finishes identical to an uninterrupted run.
// Skipped in builds without MPI.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spush/nets/data.h"
#include "spush/runtime/communicator.h"
#include "synthetic_data.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
const std::string kBin = SPUSH_BINARY_DIR "/bin/";

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "mpirun ... -np N" with what this machine needs: root needs --allow-run-as-root, more ranks
// than cores --oversubscribe; one OpenMP thread per rank keeps the oversubscription small. In
// sanitizer builds the ranks run without LeakSanitizer: Open MPI keeps allocations past exit
// that it reports through frames of unloaded plugins, which no suppression can name (address
// and undefined-behaviour checks stay on; the programs' own code is leak-checked in process by
// the trainer and communicator tests).
std::string mpirun(int np) {
  std::string cmd = "env ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 mpirun ";
  if (::geteuid() == 0) cmd += "--allow-run-as-root ";
  return cmd + "--oversubscribe -x OMP_NUM_THREADS=1 -np " + std::to_string(np) + " ";
}

struct Result {
  int code = -1;
  double seconds = 0;
  std::string out, err;
};

class Mpi : public ::testing::Test {
 public:
  void SetUp() override {
    if (!spush::runtime::mpi_compiled()) GTEST_SKIP() << "this build has no MPI";
    if (std::system("command -v mpirun > /dev/null 2>&1") != 0)
      GTEST_FAIL() << "mpirun is not installed (scripts/setup.sh installs openmpi-bin)";
    dir_ =
        fs::temp_directory_path() /
        ("spush_mpi_" + std::string(testing::UnitTest::GetInstance()->current_test_info()->name()) +
         "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& cmd) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const auto t0 = Clock::now();
    const int status =
        std::system((cmd + " > '" + out.string() + "' 2> '" + err.string() + "'").c_str());
    Result r;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  fs::path dir_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// ---- spush-gossip -------------------------------------------------------------------------

TEST_F(Mpi, GossipRowsAreTheSameOnAnyNumberOfRanks) {
  struct Case {
    std::string args;
    std::vector<int> np;
  };
  const Case cases[] = {
      {"--nodes 4 --topology rings4 --algorithm sparsepush --rounds 300", {2, 4}},
      {"--nodes 8 --topology torus --algorithm choco --compressor qsgd --bits 4 --mode logistic "
       "--batch 16 --rounds 200",
       {2, 4}},
      {"--nodes 8 --topology exponential --algorithm sgp --mode logistic --rounds 150", {3}},
      {"--nodes 6 --topology ring,bidir-ring --schedule iterations:7 --algorithm scsp "
       "--index-codec block --scsp-final-rounds 20 --rounds 100",
       {4}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const std::string common = c.args + " --print-every 20 --json ";
    const Result one =
        run(kBin + "spush-gossip " + common + "'" + (dir_ / "one.jsonl").string() + "'");
    ASSERT_EQ(one.code, 0) << one.err;
    const std::string want = slurp(dir_ / "one.jsonl");
    ASSERT_GT(lines_of(want).size(), 5u);
    for (int np : c.np) {
      const fs::path json = dir_ / ("np" + std::to_string(np) + ".jsonl");
      const Result r =
          run(mpirun(np) + kBin + "spush-gossip " + common + "'" + json.string() + "'");
      ASSERT_EQ(r.code, 0) << "-np " << np << ": " << r.err;
      EXPECT_EQ(slurp(json), want) << "-np " << np << ": the JSON rows differ";
      EXPECT_NE(r.out.find(std::to_string(np) + " rank(s) (mpi transport)"), std::string::npos)
          << r.out;
      // Only rank 0 prints: one summary line.
      int summaries = 0;
      for (const auto& l : lines_of(r.out)) summaries += l.rfind("summary:", 0) == 0;
      EXPECT_EQ(summaries, 1) << r.out;
    }
  }
}

// ---- spush-train --------------------------------------------------------------------------

class MpiTrain : public Mpi {
 public:
  void SetUp() override {
    Mpi::SetUp();
    if (IsSkipped()) return;
    spush::test::write_synthetic(dir_ / "data", "train", samples_, 1);
    spush::test::write_synthetic(dir_ / "data", "t10k", 300, 2);
  }
  std::string train_args(const std::string& out) const {
    return "--nodes 4 --topology ring --algorithm sparsepush --density 0.1 --model lenet5 "
           "--norm batch --batch 16 --lr 0.05 --quiet --data-dir '" +
           (dir_ / "data").string() + "' --out '" + (dir_ / out).string() + "' ";
  }
  // Final node digests and metrics without timings.
  struct Outcome {
    nlohmann::json digests;
    std::vector<nlohmann::json> metrics;
  };
  Outcome outcome(const std::string& out) const {
    Outcome o;
    o.digests = nlohmann::json::parse(slurp(dir_ / out / "summary.json")).at("node_digests");
    for (const auto& l : lines_of(slurp(dir_ / out / "metrics.jsonl"))) {
      auto m = nlohmann::json::parse(l);
      for (const char* k : {"images_per_sec", "epoch_seconds", "elapsed_seconds"}) m.erase(k);
      o.metrics.push_back(m);
    }
    return o;
  }
  int samples_ = 1024;
};

TEST_F(MpiTrain, RunsAreBitIdenticalOnOneTwoAndFourRanks) {
  const std::string extra = "--epochs 2 --algorithm choco --qgm";
  const Result one = run(kBin + "spush-train " + train_args("one") + extra);
  ASSERT_EQ(one.code, 0) << one.err;
  const Outcome want = outcome("one");
  ASSERT_EQ(want.metrics.size(), 2u);
  for (int np : {2, 4}) {
    const std::string out = "np" + std::to_string(np);
    const Result r = run(mpirun(np) + kBin + "spush-train " + train_args(out) + extra);
    ASSERT_EQ(r.code, 0) << "-np " << np << ": " << r.err;
    const Outcome got = outcome(out);
    EXPECT_EQ(got.digests, want.digests) << "-np " << np;
    ASSERT_EQ(got.metrics.size(), want.metrics.size());
    for (size_t e = 0; e < want.metrics.size(); ++e)
      EXPECT_EQ(got.metrics[e], want.metrics[e]) << "-np " << np << " epoch " << e + 1;
    const auto manifest = nlohmann::json::parse(slurp(dir_ / out / "checkpoint.json"));
    EXPECT_EQ(manifest.at("ranks"), np);
    EXPECT_EQ(manifest.at("shards").size(), static_cast<size_t>(np));
    // Rank 0 alone prints: one header line.
    int headers = 0;
    for (const auto& l : lines_of(r.out)) headers += l.rfind("spush-train ", 0) == 0;
    EXPECT_EQ(headers, 1) << r.out;
  }
  // A resume with another number of ranks is refused, naming the right one.
  const Result wrong = run(mpirun(4) + kBin + "spush-train " + train_args("np2") +
                           "--epochs 3 --lr-schedule const --algorithm choco --qgm --resume");
  EXPECT_EQ(wrong.code, 1) << wrong.err;
  EXPECT_NE(wrong.err.find("mpirun -np 2"), std::string::npos) << wrong.err;
}

// The centralized algorithms (one round type each: gradients, dense models, sparse sets,
// votes with add-drop, sampled supports) and SkewScout: 4 ranks give the single process's bits.
TEST_F(MpiTrain, CentralizedAlgorithmsAreBitIdenticalOnFourRanks) {
  for (const std::string extra :
       {"--algorithm bsp", "--algorithm dgc --dgc-warmup-epochs 1",
        "--algorithm gaia --lr 0.01 --skewscout --skewscout-samples 50",
        "--algorithm fedavg --local-steps 2 --fedavg-fraction 0.5 --skewscout "
        "--skewscout-samples 50",
        "--algorithm ssgd-topk --local-steps 2", "--algorithm mv-ad --add-drop-density 0.002",
        "--algorithm mv-rs --local-steps 2 --partition exclusive"}) {
    SCOPED_TRACE(extra);
    const std::string args = "--epochs 2 --model mlp --norm none " + extra;
    const std::string tag = std::to_string(std::hash<std::string>{}(extra) % 100000);
    const Result one = run(kBin + "spush-train " + train_args("c1_" + tag) + args);
    ASSERT_EQ(one.code, 0) << one.err;
    const Result four = run(mpirun(4) + kBin + "spush-train " + train_args("c4_" + tag) + args);
    ASSERT_EQ(four.code, 0) << four.err;
    const Outcome want = outcome("c1_" + tag), got = outcome("c4_" + tag);
    EXPECT_EQ(got.digests, want.digests);
    ASSERT_EQ(got.metrics.size(), 2u);
    EXPECT_EQ(got.metrics, want.metrics);
  }
}

// The pid of rank `rank` of a running spush-train whose command line mentions `marker`.
int find_rank_pid(const std::string& marker, int rank) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = slurp(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find("spush-train") == std::string::npos ||
        cmdline.find(marker) == std::string::npos || cmdline.find("mpirun") != std::string::npos)
      continue;
    std::string env = slurp(e.path() / "environ");
    std::replace(env.begin(), env.end(), '\0', '\n');
    if (env.find("\nOMPI_COMM_WORLD_RANK=" + std::to_string(rank) + "\n") != std::string::npos ||
        env.rfind("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + "\n", 0) == 0)
      return std::stoi(name);
  }
  return -1;
}

// Starts a 4-rank run, waits until epoch 1 is committed and epoch 2 is under way, sends `sig`
// to rank 2, and returns how the job ended; then resumes it and checks it against an
// uninterrupted run.
void lost_rank_case(MpiTrain& t, int sig, const std::string& out, double timeout) {
  const std::string args =
      t.train_args(out) + "--epochs 3 --comm-timeout " + std::to_string(timeout);
  const fs::path log = t.dir_ / (out + ".log");
  const pid_t job = ::fork();
  ASSERT_GE(job, 0);
  if (job == 0) {
    const std::string cmd =
        mpirun(4) + kBin + "spush-train " + args + " > '" + log.string() + "' 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Epoch 1 committed, then a moment into epoch 2.
  const fs::path manifest = t.dir_ / out / "checkpoint.json";
  const auto started = Clock::now();
  while (!fs::exists(manifest) && Clock::now() - started < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(manifest)) << slurp(log);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int victim = find_rank_pid(out, 2);
  ASSERT_GT(victim, 0) << "rank 2 not found";
  const auto hit = Clock::now();
  ASSERT_EQ(::kill(victim, sig), 0);
  int status = 0;
  while (::waitpid(job, &status, WNOHANG) == 0) {
    if (Clock::now() - hit > std::chrono::duration<double>(timeout + 20)) {
      ::kill(victim, SIGKILL);
      ::waitpid(job, &status, 0);
      FAIL() << "the job did not end after rank 2 was lost:\n" << slurp(log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double took = std::chrono::duration<double>(Clock::now() - hit).count();
  ::kill(victim, SIGKILL);  // a stopped rank may outlive the job
  const std::string text = slurp(log);
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_LT(took, timeout + 10) << text;
  EXPECT_NE(text.find("rank 2"), std::string::npos) << "the lost rank is not named:\n" << text;
  if (sig == SIGSTOP) {
    // Every surviving rank reports the same lost rank itself.
    for (int r : {0, 1, 3})
      EXPECT_NE(text.find("error: rank " + std::to_string(r) + ": rank 2 (node 2) is lost"),
                std::string::npos)
          << "rank " << r << " did not name the lost rank:\n"
          << text;
  }
  // The last committed checkpoint is epoch 1 (or 2) and resumes; the result is the
  // uninterrupted run's.
  const auto m = nlohmann::json::parse(slurp(manifest));
  EXPECT_GE(m.at("epochs_done").get<int>(), 1);
  const Result resumed = t.run(mpirun(4) + kBin + "spush-train " + args + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const Result whole = t.run(kBin + "spush-train " + t.train_args(out + "_whole") + "--epochs 3");
  ASSERT_EQ(whole.code, 0) << whole.err;
  const auto a = t.outcome(out), b = t.outcome(out + "_whole");
  EXPECT_EQ(a.digests, b.digests);
  EXPECT_EQ(a.metrics, b.metrics);
}

class MpiFaults : public MpiTrain {
 public:
  // Epochs of a few seconds, so that a rank is lost in the middle of one (sanitizer builds
  // run about ten times slower).
  MpiFaults() { samples_ = std::getenv("SPUSH_SANITIZED") ? 6000 : 12000; }
};

// SIGTERM to mpirun (what a scheduler's preemption does): mpirun passes it on to every rank;
// the ranks agree to stop after the same iteration, write the checkpoint of the epoch so far and
// exit 5 (mpirun itself then exits non-zero), and --resume finishes identical to a run never
// stopped.
TEST_F(MpiFaults, SigtermToMpirunStopsEveryRankWithACheckpoint) {
  const std::string args = train_args("term") + "--epochs 2";
  const fs::path log = dir_ / "term.log";
  const pid_t job = ::fork();
  ASSERT_GE(job, 0);
  if (job == 0) {
    ::setpgid(0, 0);
    const std::string cmd =
        "exec " + mpirun(2) + kBin + "spush-train " + args + " > '" + log.string() + "' 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const fs::path manifest = dir_ / "term" / "checkpoint.json";
  const auto t0 = Clock::now();
  while (!fs::exists(manifest) && Clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(manifest)) << slurp(log);
  // Epoch 2 has begun; a few iterations in, well before its end (an epoch takes about a second
  // even in the sanitizer build, and the ranks stop after the iteration they are in).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(::kill(job, SIGTERM), 0);  // the shell exec'd mpirun: this is mpirun
  int status = 0;
  ASSERT_EQ(::waitpid(job, &status, 0), job);
  const std::string text = slurp(log);
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_NE(text.find("stopped by SIGTERM"), std::string::npos) << text;
  const auto m = nlohmann::json::parse(slurp(manifest));
  EXPECT_GT(m.at("in_epoch").get<int>(), 0) << "not stopped in the middle of the epoch:\n" << text;
  const Result resumed = run(mpirun(2) + kBin + "spush-train " + args + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const Result whole = run(kBin + "spush-train " + train_args("term_whole") + "--epochs 2");
  ASSERT_EQ(whole.code, 0) << whole.err;
  EXPECT_EQ(outcome("term").digests, outcome("term_whole").digests);
  EXPECT_EQ(outcome("term").metrics, outcome("term_whole").metrics);
}

TEST_F(MpiFaults, KilledRankEndsTheJobAndTheRunResumes) {
  lost_rank_case(*this, SIGKILL, "killed", 20);
}

TEST_F(MpiFaults, SilentRankIsNamedByEveryOtherRankWithinTheTimeout) {
  lost_rank_case(*this, SIGSTOP, "stopped", 4);
}

}  // namespace

// The trainer end to end on small generated Fashion-MNIST-format data: it learns, resumes
// bit-identically from a mid-run checkpoint, and rejects bad input without touching outputs.
#include "spush/runtime/trainer.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "spush/nets/data.h"
#include "spush/runtime/checkpoint.h"
#include "spush/runtime/stop.h"
#include "spush/runtime/topology.h"
#include "synthetic_data.h"
#include "thread_comm.h"

namespace spush::runtime {
namespace {

namespace fs = std::filesystem;

using test::write_synthetic;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("spush_trainer_" +
             std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
             std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "data");
    write_synthetic(root_ / "data", "train", 512, 1);
    write_synthetic(root_ / "data", "t10k", 200, 2);
  }
  void TearDown() override { fs::remove_all(root_); }

  TrainConfig config(const std::string& out) const {
    TrainConfig c;
    c.nodes = 4;
    c.topology = "ring";
    c.algorithm = "sparsepush";
    c.density = 0.1;
    c.model = "lenet5";
    c.norm = "group";
    c.data_dir = (root_ / "data").string();
    c.epochs = 3;
    c.batch = 16;
    c.lr = 0.05;
    c.out = (root_ / out).string();
    c.quiet = true;
    return c;
  }
  TrainConfig config_with(TrainConfig c, const std::string& out) const {
    c.out = (root_ / out).string();
    return c;
  }
  static nlohmann::json run(const TrainConfig& c) {
    std::ostringstream log, progress;
    auto comm = make_local_communicator(std::max(c.nodes, 1));
    Trainer t(c, *comm, log, progress);
    return t.run();
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  fs::path root_;
};

TEST_F(TrainerTest, ShortRunLearnsAndWritesOutputs) {
  const auto summary = run(config("learn"));
  EXPECT_TRUE(summary["finished"].get<bool>());
  EXPECT_GT(summary["test_acc_mean"].get<double>(), 0.6) << summary.dump();  // chance: 0.1
  EXPECT_GT(summary["test_acc_avg_model"].get<double>(), 0.6) << summary.dump();
  EXPECT_GT(summary["compression_factor"].get<double>(), 3.0);
  const fs::path out = root_ / "learn";
  for (const char* f : {"config.json", "metrics.jsonl", "checkpoint.json", "checkpoint-i24-r0.ckpt",
                        "summary.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  // Older epochs' shards are gone once a later epoch is committed.
  EXPECT_FALSE(fs::exists(out / "checkpoint-i16-r0.ckpt"));
  const auto manifest = nlohmann::json::parse(slurp(out / "checkpoint.json"));
  EXPECT_EQ(manifest["epochs_done"], 3);
  EXPECT_EQ(manifest["ranks"], 1);
  EXPECT_EQ(manifest["iteration"], 24);  // 3 epochs of 512 / 4 / 16 = 8 iterations
  EXPECT_EQ(manifest["in_epoch"], 0);
  EXPECT_EQ(manifest["shards"][0]["file"], "checkpoint-i24-r0.ckpt");
  EXPECT_EQ(summary["node_digests"].size(), 4u);
  std::ifstream m(out / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(m, line); ++lines) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["epoch"].get<int>(), lines + 1);
    for (const char* k :
         {"train_loss", "test_acc_mean", "test_acc_min", "test_acc_max", "test_acc_avg_model",
          "divergence", "consensus_distance", "bytes_per_node_iter", "bytes_per_node_iter_paper",
          "compression_factor", "images_per_sec"})
      EXPECT_TRUE(j.contains(k)) << k;
    EXPECT_EQ(j["test_acc_nodes"].size(), 4u);
  }
  EXPECT_EQ(lines, 3);
  // config.json is a complete, valid config.
  const auto cfg = nlohmann::json::parse(slurp(out / "config.json"));
  EXPECT_EQ(cfg["model"], "lenet5");
  EXPECT_EQ(cfg["nodes"], 4);
}

TEST_F(TrainerTest, ResumeIsBitIdentical) {
  // "int8": the 8-bit layers' running activation ranges are checkpointed too, and their
  // stochastic rounding continues the same streams (keyed by the iteration).
  for (const char* name : {"sparsepush", "choco", "int8"}) {
    SCOPED_TRACE(name);
    const std::string algo = std::string(name) == "int8" ? "sparsepush" : name;
    TrainConfig full = config(std::string("full_") + name);
    full.algorithm = algo;
    full.norm = "batch";  // running statistics must be checkpointed too
    full.qgm = algo == "choco";
    if (std::string(name) == "int8") full.precision = "int8";
    std::ostringstream log1, p1;
    auto comm = make_local_communicator(4);
    Trainer a(full, *comm, log1, p1);
    a.run();

    TrainConfig part = full;
    part.out = (root_ / (std::string("part_") + name)).string();
    part.stop_after = 1;
    {
      std::ostringstream log, p;
      Trainer b(part, *comm, log, p);
      b.run();
      EXPECT_EQ(b.epochs_done(), 1);
    }
    part.stop_after = 0;
    part.resume = true;
    std::ostringstream log2, p2;
    Trainer c(part, *comm, log2, p2);
    c.run();
    ASSERT_EQ(c.epochs_done(), 3);
    const auto& xa = a.x();
    const auto& xc = c.x();
    ASSERT_EQ(xa.rows(), xc.rows());
    for (int64_t r = 0; r < xa.rows(); ++r)
      for (int64_t k = 0; k < xa.cols(); ++k)
        ASSERT_EQ(xa.row(r)[k], xc.row(r)[k]) << "node " << r << " param " << k;
    // The resumed run's metrics file has every epoch once.
    std::ifstream m(fs::path(part.out) / "metrics.jsonl");
    int lines = 0;
    for (std::string line; std::getline(m, line);) ++lines;
    EXPECT_EQ(lines, 3);
  }
}

// Every centralized algorithm (and SkewScout on FedAvg and Gaia): a run stopped after one epoch
// and resumed ends with the same bits and metrics as the run straight through, and the same
// run with its nodes on 2 ranks gives the same bits.
TEST_F(TrainerTest, CentralizedAlgorithmsResumeAndSplitOverRanksBitIdentically) {
  auto strip = [](const fs::path& dir) {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir / "metrics.jsonl");
    for (std::string l; std::getline(in, l);) {
      auto m = nlohmann::json::parse(l);
      for (const char* k : {"images_per_sec", "epoch_seconds", "elapsed_seconds"}) m.erase(k);
      out.push_back(m);
    }
    return out;
  };
  struct Variant {
    const char* algorithm;
    int local_steps;
    bool skewscout;
  };
  for (const Variant& v :
       {Variant{"bsp", 1, false}, Variant{"fedavg", 2, false}, Variant{"gaia", 1, false},
        Variant{"dgc", 1, false}, Variant{"ssgd-topk", 2, false}, Variant{"ssgd-mv", 2, false},
        Variant{"mv-ad", 1, false}, Variant{"mv-rs", 2, false}, Variant{"fedavg", 2, true},
        Variant{"gaia", 1, true}}) {
    const std::string name = std::string(v.algorithm) + (v.skewscout ? "_ss" : "");
    SCOPED_TRACE(name);
    TrainConfig c = config("central_" + name);
    c.model = "mlp";  // the algorithms are under test, not the layers: the fastest model
    c.norm = "none";
    c.algorithm = v.algorithm;
    c.local_steps = v.local_steps;
    c.partition = "exclusive";
    c.fedavg_fraction = 0.5;
    c.dgc_warmup_epochs = 2;
    c.add_drop_density = 0.002;
    c.dense_epochs = std::string(v.algorithm) == "ssgd-mv" ? 1 : 0;
    c.lr = std::string(v.algorithm) == "gaia" ? 0.01 : 0.05;
    c.skewscout = v.skewscout;
    c.skewscout_samples = 40;
    const auto whole = run(c);
    EXPECT_TRUE(whole["finished"].get<bool>());
    EXPECT_GT(whole["test_acc_avg_model"].get<double>(), 0.3) << whole.dump();
    const auto metrics = strip(c.out);
    ASSERT_EQ(metrics.size(), 3u);
    EXPECT_GT(metrics.back()["bytes_down_per_node_iter"].get<double>(), 0.0);
    EXPECT_TRUE(metrics.back().contains("bits_per_param_up_paper"));
    if (v.skewscout) {
      for (const auto& m : metrics) {
        ASSERT_TRUE(m.contains("skewscout")) << m.dump();
        EXPECT_TRUE(m["skewscout"].contains("accuracy_loss")) << m.dump();
      }
    }

    TrainConfig part = config_with(c, "central_part_" + name);
    part.stop_after = 1;
    run(part);
    part.stop_after = 0;
    part.resume = true;
    const auto resumed = run(part);
    EXPECT_EQ(resumed["node_digests"], whole["node_digests"]);
    EXPECT_EQ(strip(part.out), metrics);

    TrainConfig two = config_with(c, "central_ranks_" + name);
    std::vector<nlohmann::json> summaries(2);
    test::on_ranks(2, two.nodes, [&](Communicator& comm) {
      std::ostringstream log, progress;
      Trainer t(two, comm, log, progress);
      summaries[comm.rank()] = t.run();
    });
    EXPECT_EQ(summaries[0]["node_digests"], whole["node_digests"]);
    EXPECT_EQ(strip(two.out), metrics);
  }
}

// Expects construction to throw an exception whose message contains `needle`.
template <typename E>
void expect_error(const TrainConfig& c, const std::string& needle) {
  std::ostringstream log, progress;
  try {
    auto comm = make_local_communicator(std::max(c.nodes, 1));
    Trainer t(c, *comm, log, progress);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, RejectsInvalidSettings) {
  auto c = config("bad");
  auto with = [&](auto f) {
    TrainConfig x = c;
    f(x);
    return x;
  };
  expect_error<ConfigError>(with([](auto& x) { x.density = 1.5; }), "density");
  expect_error<ConfigError>(with([](auto& x) { x.skew = -0.1; }), "skew");
  expect_error<ConfigError>(with([](auto& x) { x.nodes = 0; }), "nodes");
  expect_error<ConfigError>(with([](auto& x) { x.batch = 500; }), "batch = 500");
  expect_error<std::invalid_argument>(with([](auto& x) { x.model = "resnet7"; }), "resnet7");
  expect_error<TopologyError>(with([](auto& x) {
                                x.topology = "rings4";
                                x.nodes = 5;
                              }),
                              "rings4");
  expect_error<ConfigError>(with([](auto& x) { x.device = "cuda"; }), "device");
  expect_error<ConfigError>(with([](auto& x) { x.schedule = "weekly"; }), "schedule");
  EXPECT_FALSE(fs::exists(root_ / "bad")) << "an invalid run must not create its output";
}

TEST_F(TrainerTest, RejectsBadDataWithoutTouchingOutputs) {
  // An existing run whose files must stay as they are.
  auto c = config("keep");
  c.epochs = 1;
  run(c);
  const std::string metrics = slurp(root_ / "keep" / "metrics.jsonl");
  const std::string ckpt = slurp(root_ / "keep" / "checkpoint-i8-r0.ckpt");

  // Corrupt the training images: wrong magic.
  std::fstream f(root_ / "data" / "train-images-idx3-ubyte",
                 std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(3);
  f.put(0x01);
  f.close();
  c.overwrite = true;
  expect_error<nets::DataError>(c, "train-images-idx3-ubyte");
  // Missing directory.
  c.data_dir = (root_ / "nowhere").string();
  expect_error<nets::DataError>(c, "nowhere");
  EXPECT_EQ(slurp(root_ / "keep" / "metrics.jsonl"), metrics);
  EXPECT_EQ(slurp(root_ / "keep" / "checkpoint-i8-r0.ckpt"), ckpt);
}

TEST_F(TrainerTest, RefusesToReplaceARunUnlessAsked) {
  auto c = config("run");
  c.epochs = 1;
  run(c);
  expect_error<ConfigError>(c, "already holds a run");
  c.overwrite = true;
  EXPECT_NO_THROW(run(c));
}

TEST_F(TrainerTest, RejectsBadCheckpoints) {
  auto c = config("ck");
  c.epochs = 2;
  c.stop_after = 1;
  run(c);
  const fs::path ck = root_ / "ck" / "checkpoint-i8-r0.ckpt";
  const fs::path manifest = root_ / "ck" / "checkpoint.json";
  const std::string good = slurp(ck), good_manifest = slurp(manifest);
  c.stop_after = 0;
  c.resume = true;
  auto put = [](const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  };

  // Mismatched settings.
  TrainConfig other = c;
  other.density = 0.5;
  expect_error<CheckpointError>(other, "density");
  // Truncated and corrupted shards.
  put(ck, good.substr(0, good.size() / 2));
  expect_error<CheckpointError>(c, "checksum");
  {
    std::string bad = good;
    bad[bad.size() / 3] ^= 0x40;
    put(ck, bad);
  }
  expect_error<CheckpointError>(c, "checksum");
  put(ck, "this is not a checkpoint at all, just some text");
  expect_error<CheckpointError>(c, "magic");
  fs::remove(ck);
  expect_error<CheckpointError>(c, "cannot open");
  put(ck, good);
  // A manifest that is not JSON, or whose contents do not hold together.
  put(manifest, "{\"format\": \"spush-train-checkpoint\", ");
  expect_error<CheckpointError>(c, "not valid JSON");
  auto edited = [&](auto f) {
    nlohmann::json m = nlohmann::json::parse(good_manifest);
    f(m);
    put(manifest, m.dump());
  };
  edited([](nlohmann::json& m) { m["epochs_done"] = -3; });
  expect_error<CheckpointError>(c, "inconsistent progress");
  edited([](nlohmann::json& m) { m.erase("iteration"); });
  expect_error<CheckpointError>(c, "missing or mistyped");
  edited([](nlohmann::json& m) { m["iteration"] = "many"; });
  expect_error<CheckpointError>(c, "missing or mistyped");
  edited([](nlohmann::json& m) { m["ranks"] = 2; });
  expect_error<CheckpointError>(c, "mpirun -np 2");
  edited([](nlohmann::json& m) { m["shards"][0]["crc32"] = 12345; });
  expect_error<CheckpointError>(c, "manifest");
  edited([](nlohmann::json& m) { m["format"] = "something else"; });
  expect_error<CheckpointError>(c, "not a spush-train checkpoint");
  fs::remove(manifest);
  expect_error<CheckpointError>(c, "no checkpoint");
  // Restore the good ones: resuming works.
  put(manifest, good_manifest);
  EXPECT_NO_THROW(run(c));
}

// SIGTERM in the middle of an epoch: the run finishes the iteration, writes a checkpoint of the
// epoch so far and stops; --resume then finishes with the bits and metrics of a run that was
// never stopped. (The signal is sent to this process; the handler only sets a flag.)
TEST_F(TrainerTest, StopSignalCheckpointsMidEpochAndResumesBitIdentically) {
  TrainConfig c = config("stop");
  c.epochs = 3;
  c.algorithm = "choco";
  c.norm = "batch";
  const auto whole = run(config_with(c, "whole"));
  install_stop_handlers();
  clear_stop_request();
  std::ostringstream log, progress;
  auto comm = make_local_communicator(c.nodes);
  nlohmann::json stopped;
  {
    Trainer t(c, *comm, log, progress);
    // The request arrives while the first iteration runs: the run stops after it.
    ::kill(::getpid(), SIGTERM);
    stopped = t.run();
  }
  clear_stop_request();
  install_stop_handlers();  // the handler gave SIGTERM back its default action
  EXPECT_TRUE(stopped["stopped"].get<bool>()) << log.str();
  EXPECT_FALSE(stopped["finished"].get<bool>());
  EXPECT_NE(log.str().find("stopped by SIGTERM after iteration 1 "), std::string::npos)
      << log.str();
  const auto manifest = nlohmann::json::parse(slurp(fs::path(c.out) / "checkpoint.json"));
  EXPECT_EQ(manifest["iteration"], 1);
  EXPECT_EQ(manifest["in_epoch"], 1);
  EXPECT_EQ(manifest["epochs_done"], 0);
  EXPECT_FALSE(fs::exists(fs::path(c.out) / "summary.json"));
  c.resume = true;
  const auto resumed = run(c);
  EXPECT_TRUE(resumed["finished"].get<bool>());
  EXPECT_EQ(resumed["node_digests"], whole["node_digests"]);
  auto strip = [&](const fs::path& dir) {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir / "metrics.jsonl");
    for (std::string l; std::getline(in, l);) {
      auto m = nlohmann::json::parse(l);
      for (const char* k : {"images_per_sec", "epoch_seconds", "elapsed_seconds"}) m.erase(k);
      out.push_back(m);
    }
    return out;
  };
  EXPECT_EQ(strip(c.out), strip(root_ / "whole"));
}

// The same run on 1, 2 and 3 ranks (threads of this process with an in-process communicator):
// the same bits for every node, the same metrics (timings aside) and byte counts.
TEST_F(TrainerTest, RanksDoNotChangeTheTrajectory) {
  auto strip = [](nlohmann::json m) {
    for (const char* k : {"images_per_sec", "epoch_seconds", "elapsed_seconds"}) m.erase(k);
    return m;
  };
  // Runs c on `ranks` ranks; returns rank 0's node digests (every rank reports the same).
  auto digests_on = [](const TrainConfig& c, int ranks) {
    std::vector<nlohmann::json> summaries(static_cast<size_t>(ranks));
    test::on_ranks(ranks, c.nodes, [&](Communicator& comm) {
      std::ostringstream log, progress;
      Trainer t(c, comm, log, progress);
      summaries[comm.rank()] = t.run();
    });
    for (int r = 1; r < ranks; ++r)
      EXPECT_EQ(summaries[r]["node_digests"], summaries[0]["node_digests"]);
    return summaries[0]["node_digests"];
  };
  std::map<int, std::vector<nlohmann::json>> metrics;
  std::map<int, nlohmann::json> digests;
  for (int ranks : {1, 2, 3}) {
    TrainConfig c = config("ranks" + std::to_string(ranks));
    c.nodes = 5;
    c.epochs = 2;
    c.algorithm = "choco";
    c.norm = "batch";
    digests[ranks] = digests_on(c, ranks);
    std::ifstream m(fs::path(c.out) / "metrics.jsonl");
    for (std::string line; std::getline(m, line);)
      metrics[ranks].push_back(strip(nlohmann::json::parse(line)));
    const auto manifest = nlohmann::json::parse(slurp(fs::path(c.out) / "checkpoint.json"));
    EXPECT_EQ(manifest["shards"].size(), static_cast<size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
      const std::string file = manifest["shards"][r]["file"];
      EXPECT_EQ(file, fmt::format("checkpoint-i{}-r{}.ckpt", manifest["iteration"].get<int>(), r));
      EXPECT_TRUE(fs::exists(fs::path(c.out) / file));
    }
  }
  ASSERT_EQ(metrics[1].size(), 2u);
  for (int ranks : {2, 3}) {
    EXPECT_EQ(digests[ranks], digests[1]) << ranks << " ranks";
    ASSERT_EQ(metrics[ranks].size(), metrics[1].size());
    for (size_t e = 0; e < metrics[1].size(); ++e)
      EXPECT_EQ(metrics[ranks][e], metrics[1][e]) << ranks << " ranks, epoch " << e + 1;
  }
  // 8-bit training too: every stochastic rounding is keyed by the global node id.
  std::map<int, nlohmann::json> int8_digests;
  for (int ranks : {1, 2}) {
    TrainConfig c = config("int8_ranks" + std::to_string(ranks));
    c.nodes = 3;
    c.epochs = 1;
    c.precision = "int8";
    int8_digests[ranks] = digests_on(c, ranks);
  }
  EXPECT_EQ(int8_digests[2], int8_digests[1]);
  // A resume needs as many ranks as wrote the checkpoint.
  TrainConfig c = config("ranks2");
  c.nodes = 5;
  c.epochs = 3;
  c.algorithm = "choco";
  c.norm = "batch";
  c.resume = true;
  expect_error<CheckpointError>(c, "mpirun -np 2");
}

}  // namespace
}  // namespace spush::runtime

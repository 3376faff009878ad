// The trainer end to end on small generated Fashion-MNIST-format data: it learns, resumes
// bit-identically from a mid-run checkpoint, and rejects bad input without touching outputs.
#include "spush/runtime/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "spush/nets/data.h"
#include "spush/runtime/checkpoint.h"
#include "spush/runtime/topology.h"

namespace spush::runtime {
namespace {

namespace fs = std::filesystem;

// 28x28 images: class c is a bright 6x6 square at one of 10 positions, plus noise.
void write_synthetic(const fs::path& dir, const std::string& prefix, int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 60), cls(0, 9), jitter(-1, 1);
  std::vector<uint8_t> pixels(static_cast<size_t>(count) * 784), labels(count);
  for (int i = 0; i < count; ++i) {
    const int c = cls(rng);
    labels[i] = static_cast<uint8_t>(c);
    uint8_t* img = pixels.data() + static_cast<size_t>(i) * 784;
    for (int p = 0; p < 784; ++p) img[p] = static_cast<uint8_t>(noise(rng));
    const int oy = 3 + (c / 5) * 12 + jitter(rng), ox = 2 + (c % 5) * 5 + jitter(rng);
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 4; ++x) img[(oy + y) * 28 + ox + x] = 250;
  }
  nets::write_idx_images((dir / (prefix + "-images-idx3-ubyte")).string(), count, 28, 28, pixels,
                         false);
  nets::write_idx_labels((dir / (prefix + "-labels-idx1-ubyte")).string(), labels, false);
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("spush_trainer_" +
             std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
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
  static nlohmann::json run(const TrainConfig& c) {
    std::ostringstream log, progress;
    Trainer t(c, log, progress);
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
  for (const char* f : {"config.json", "metrics.jsonl", "checkpoint.ckpt", "summary.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
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
  for (const char* algo : {"sparsepush", "choco"}) {
    SCOPED_TRACE(algo);
    TrainConfig full = config(std::string("full_") + algo);
    full.algorithm = algo;
    full.norm = "batch";  // running statistics must be checkpointed too
    full.qgm = std::string(algo) == "choco";
    std::ostringstream log1, p1;
    Trainer a(full, log1, p1);
    a.run();

    TrainConfig part = full;
    part.out = (root_ / (std::string("part_") + algo)).string();
    part.stop_after = 1;
    {
      std::ostringstream log, p;
      Trainer b(part, log, p);
      b.run();
      EXPECT_EQ(b.epochs_done(), 1);
    }
    part.stop_after = 0;
    part.resume = true;
    std::ostringstream log2, p2;
    Trainer c(part, log2, p2);
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

// Expects construction to throw an exception whose message contains `needle`.
template <typename E>
void expect_error(const TrainConfig& c, const std::string& needle) {
  std::ostringstream log, progress;
  try {
    Trainer t(c, log, progress);
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
  const std::string ckpt = slurp(root_ / "keep" / "checkpoint.ckpt");

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
  EXPECT_EQ(slurp(root_ / "keep" / "checkpoint.ckpt"), ckpt);
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
  const fs::path ck = root_ / "ck" / "checkpoint.ckpt";
  const std::string good = slurp(ck);
  c.stop_after = 0;
  c.resume = true;

  // Mismatched settings.
  TrainConfig other = c;
  other.density = 0.5;
  expect_error<CheckpointError>(other, "density");
  // Truncated and corrupted files.
  { std::ofstream(ck, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() / 2); }
  expect_error<CheckpointError>(c, "checksum");
  {
    std::string bad = good;
    bad[bad.size() / 3] ^= 0x40;
    std::ofstream(ck, std::ios::binary | std::ios::trunc) << bad;
  }
  expect_error<CheckpointError>(c, "checksum");
  {
    std::ofstream(ck, std::ios::binary | std::ios::trunc)
        << "this is not a checkpoint at all, just some text";
  }
  expect_error<CheckpointError>(c, "magic");
  fs::remove(ck);
  expect_error<CheckpointError>(c, "no checkpoint");
  // Restore the good one: resuming works.
  { std::ofstream(ck, std::ios::binary | std::ios::trunc) << good; }
  EXPECT_NO_THROW(run(c));
}

}  // namespace
}  // namespace spush::runtime

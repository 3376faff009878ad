// Every setting of a training run (spush-train's flags and config-file keys), its defaults,
// validation and JSON form. Key names in JSON are the flag names without the leading dashes
// ("data-dir", "local-steps", ...), so a run's config.json can be passed back with --config.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>

namespace spush::runtime {

// An invalid setting; what() names the setting, the value and what is expected.
struct ConfigError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct TrainConfig {
  // graph
  int nodes = 4;
  std::string topology = "ring";      // TopologySpec names (topology.h)
  std::string schedule = "epochs:1";  // UNIT:N: rotate a topology list every N epochs|iterations
  double failure_prob = 0;            // random link failures per edge per round
  // algorithm and compression
  std::string algorithm = "sparsepush";  // sgp | deepsqueeze | sparsepush | scsp | choco
  std::string compressor =
      "topk";  // topk | randomk | qsgd | sign | fractional | minmax8 | identity
  double density = 0.01;
  int bits = 8;
  std::string index_codec = "local16";  // raw32 | local16 | block
  bool global_compression = false;      // compress the whole vector instead of per layer
  double eta = -1;                      // < 0: default for the density (ALGORITHMS.md §3)
  int local_steps = 1;
  int scsp_final_rounds = 40;
  bool scsp_final_with_updates = false;
  // model
  std::string model = "lenet5";
  std::string norm = "group";  // batch | group | evonorm | none
  int64_t groups = 0;          // 0: the model's default
  int64_t group_size = 0;
  std::string shortcut = "zeropad";  // zeropad | conv1x1
  // data
  std::string dataset = "fashion-mnist";  // fashion-mnist | cifar10
  std::string data_dir;                   // empty: $SPUSH_DATA, else the system directory
  std::string partition = "skew";         // skew | dirichlet | exclusive
  double skew = 0;
  double alpha = 0.5;   // Dirichlet concentration
  int augment_pad = 0;  // random crop padding (0: off)
  bool augment_flip = false;
  int64_t eval_samples = 0;  // test samples used per evaluation (0: all)
  // optimization
  int epochs = 4;
  int batch = 32;  // per node
  double lr = 0.05;
  std::string lr_schedule = "step";  // step (x0.1 at 50% and 75%) | const
  int warmup_epochs = 0;             // epochs at lr/10 before the schedule
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 1e-4;
  bool qgm = false;
  // run
  uint64_t seed = 1;
  std::string out = "runs/default";
  bool resume = false;
  bool overwrite = false;
  std::string device = "auto";  // auto | cpu | cuda
  int stop_after = 0;           // stop (as if interrupted) after this many epochs of the run
  int threads = 0;              // OpenMP threads (0: default)
  bool quiet = false;           // no live progress line

  // Calls f(key, field, help) for every setting, in a fixed order: the single list that the
  // command line, config files and config.json are built from.
  template <typename F>
  void visit(F&& f);

  // The schedule setting split into (unit, period); throws ConfigError when malformed.
  std::pair<std::string, int64_t> schedule_period() const;

  // Throws ConfigError for the first invalid setting.
  void validate() const;
  nlohmann::json to_json() const;
  // Keys the checkpoint must agree on to resume (everything that changes the trajectory).
  nlohmann::json trajectory_json() const;
};

template <typename F>
void TrainConfig::visit(F&& f) {
  f("nodes", nodes, "number of nodes (>= 1)");
  f("topology", topology,
    "ring | bidir-ring | torus | torus:RxC | exponential | full | rings4 | rings4-3 | file:PATH, "
    "or a comma-separated list to rotate");
  f("schedule", schedule,
    "rotation of a topology list: epochs:N or iterations:N (each graph used for N of them)");
  f("failure-prob", failure_prob, "probability that a link fails in a round, [0, 1)");
  f("algorithm", algorithm, "sgp | deepsqueeze | sparsepush | scsp | choco");
  f("compressor", compressor, "topk | randomk | qsgd | sign | fractional | minmax8 | identity");
  f("density", density, "fraction of values kept by topk/randomk/fractional, (0, 1]");
  f("bits", bits, "qsgd bits (1, 2, 4, 8) or fractional bits (2..9)");
  f("index-codec", index_codec, "raw32 | local16 | block");
  f("global-compression", global_compression, "compress the whole model instead of per layer");
  f("eta", eta, "averaging rate in (0, 1]; negative: the default for the density");
  f("local-steps", local_steps, "communicate every H iterations");
  f("scsp-final-rounds", scsp_final_rounds, "SCSP: uncompressed gossip rounds at the end");
  f("scsp-final-with-updates", scsp_final_with_updates,
    "SCSP: make the last rounds uncompressed iterations with local updates instead");
  f("model", model, "lenet5 | resnet20 | resnet32 | resnet44 | resnet56 | resnet110 | vgg11 | mlp");
  f("norm", norm, "batch | group | evonorm | none");
  f("groups", groups, "GroupNorm/EvoNorm groups (0: model default)");
  f("group-size", group_size, "GroupNorm channels per group (0: model default)");
  f("shortcut", shortcut, "ResNet shortcut: zeropad | conv1x1");
  f("dataset", dataset, "fashion-mnist | cifar10");
  f("data-dir", data_dir, "data directory (default: $SPUSH_DATA, else the system directory)");
  f("partition", partition, "skew | dirichlet | exclusive");
  f("skew", skew, "label skew s in [0, 1] (0: IID)");
  f("alpha", alpha, "Dirichlet concentration (partition dirichlet), > 0");
  f("augment-pad", augment_pad, "random-crop padding in pixels (0: off)");
  f("augment-flip", augment_flip, "random horizontal flips");
  f("eval-samples", eval_samples, "test samples per evaluation (0: the whole test set)");
  f("epochs", epochs, "training epochs");
  f("batch", batch, "mini-batch size per node");
  f("lr", lr, "learning rate");
  f("lr-schedule", lr_schedule, "step (x0.1 at 50% and 75% of training) | const");
  f("warmup-epochs", warmup_epochs, "epochs at lr/10 first");
  f("momentum", momentum, "momentum in [0, 1)");
  f("nesterov", nesterov, "Nesterov momentum");
  f("weight-decay", weight_decay, "L2 weight decay");
  f("qgm", qgm, "Quasi-Global Momentum");
  f("seed", seed, "seed of initialization, partition, shuffles and stochastic compression");
  f("out", out, "output directory");
  f("resume", resume, "continue the run in --out from its checkpoint");
  f("overwrite", overwrite, "replace an existing run in --out");
  f("device", device, "auto | cpu | cuda");
  f("stop-after", stop_after, "stop after this many epochs of this invocation (0: never)");
  f("threads", threads, "OpenMP threads (0: default)");
  f("quiet", quiet, "no live progress line");
}

}  // namespace spush::runtime

// Training settings: their declaration in the settings registry (the one list behind the
// command line, config files, config.json and validation), and the checks that involve more
// than one setting.
#include "spush/runtime/train_config.h"

#include <fmt/format.h>

#include <cmath>

#include "spush/runtime/algorithm.h"
#include "spush/runtime/skewscout.h"

namespace spush::runtime {
namespace {

void check(bool ok, const std::string& key, const std::string& value, const std::string& expected) {
  if (!ok) throw ConfigError("invalid setting " + key + " = " + value + ": expected " + expected);
}

}  // namespace

void TrainConfig::declare(Settings& s) {
  declare_graph(
      s,
      {.nodes = nodes, .topology = topology, .schedule = schedule, .failure_prob = failure_prob});
  declare_algorithm(s, {.algorithm = algorithm,
                        .compressor = compressor,
                        .density = density,
                        .bits = bits,
                        .index_codec = index_codec,
                        .global_compression = global_compression,
                        .eta = eta,
                        .local_steps = local_steps,
                        .scsp_final_rounds = scsp_final_rounds});
  s.add("scsp-final-with-updates", scsp_final_with_updates,
        "SCSP: make the last rounds uncompressed iterations with local updates instead");

  s.section("centralized algorithms");
  s.add("fedavg-fraction", fedavg_fraction,
        "FedAvg: fraction of the nodes averaged each round, (0, 1]")
      .above(0.0)
      .at_most(1.0);
  s.add("gaia-threshold", gaia_threshold,
        "Gaia: significance threshold T0 (share an accumulated update when |update / w| > T, "
        "T = T0 * lr / base lr), > 0")
      .above(0.0);
  s.add("dgc-warmup-epochs", dgc_warmup_epochs,
        "DGC: epochs of the density warm-up (75%, 93.75%, 98.4375%, 99.6% sparsity, a quarter "
        "each), >= 0")
      .at_least(0);
  s.add("dgc-clip", dgc_clip, "DGC: local gradient clipping norm (divided by sqrt(nodes)); 0: off")
      .at_least(0.0);
  s.add("add-drop-density", add_drop_density,
        "MV-AD: fraction of the model a node may add to and drop from its votes per round, (0, 1]")
      .above(0.0)
      .at_most(1.0);
  s.add("dense-epochs", dense_epochs,
        "SSGD-top-K and the MV family: epochs of uncompressed averaging first, >= 0")
      .at_least(0);

  s.section("SkewScout");
  s.add("skewscout", skewscout,
        "adapt the communication to the accuracy loss across partitions (travelling models, "
        "once per epoch)");
  s.add("skewscout-target", skewscout_target, "accuracy loss tolerated, [0, 1]").in_range(0.0, 1.0);
  s.add("skewscout-samples", skewscout_samples,
        "training samples of a node a travelling model is evaluated on, 1..100000")
      .in_range(int64_t{1}, int64_t{100000});
  s.add("skewscout-grid", skewscout_grid,
        "the knob's values, ascending, comma-separated (empty: 1,2,4,8,16,32,64 for local-steps; "
        "0.01,0.02,0.05,0.1,0.2,0.4 for gaia-threshold)")
      .allow_empty()
      .check(
          [](const std::string& v) {
            try {
              parse_grid(v);
              return true;
            } catch (const std::invalid_argument&) {
              return false;
            }
          },
          "ascending values > 0 separated by commas");

  s.section("model");
  s.add("model", model,
        "lenet5 | resnet20 | resnet32 | resnet44 | resnet56 | resnet110 | vgg11 | mlp")
      .non_empty("a model name");
  s.add("norm", norm, "batch | group | evonorm | rangebn | rangeevo | none")
      .one_of({"batch", "group", "evonorm", "rangebn", "rangeevo", "none"});
  s.add("groups", groups, "GroupNorm/EvoNorm groups (0: model default)").at_least(0);
  s.add("group-size", group_size, "GroupNorm channels per group (0: model default)").at_least(0);
  s.add("shortcut", shortcut, "ResNet shortcut: zeropad | conv1x1").one_of({"zeropad", "conv1x1"});
  s.add("precision", precision,
        "fp32 | int8 (8-bit weights, activations and input gradients in integer arithmetic)")
      .one_of({"fp32", "int8"});
  s.add("int8-activations", int8_activations,
        "int8 rounding of activations: stochastic | nearest (weights: nearest, gradients: "
        "stochastic)")
      .one_of({"stochastic", "nearest"});

  s.section("data");
  s.add("dataset", dataset, "fashion-mnist | cifar10").one_of({"fashion-mnist", "cifar10"});
  s.add("data-dir", data_dir, "data directory (empty: $SPUSH_DATA, else the system directory)")
      .allow_empty();
  s.add("partition", partition, "skew | dirichlet | exclusive")
      .one_of({"skew", "dirichlet", "exclusive"});
  s.add("skew", skew, "label skew s in [0, 1] (0: IID)").in_range(0.0, 1.0);
  s.add("alpha", alpha, "Dirichlet concentration (partition dirichlet), > 0").above(0.0);
  s.add("augment-pad", augment_pad, "random-crop padding in pixels, 0..64 (0: off)")
      .in_range(0, 64);
  s.add("augment-flip", augment_flip, "random horizontal flips");
  s.add("eval-samples", eval_samples, "test samples per evaluation (0: the whole test set)")
      .at_least(0);

  s.section("optimization");
  s.add("epochs", epochs, "training epochs").at_least(1);
  s.add("batch", batch, "mini-batch size per node").at_least(1);
  s.add("lr", lr, "learning rate, > 0").above(0.0);
  s.add("lr-schedule", lr_schedule, "step (x0.1 at 50% and 75% of training) | const")
      .one_of({"step", "const"});
  s.add("warmup-epochs", warmup_epochs, "epochs at lr/10 first, fewer than --epochs").at_least(0);
  s.add("momentum", momentum, "momentum in [0, 1)").at_least(0.0).below(1.0);
  s.add("nesterov", nesterov, "Nesterov momentum");
  s.add("weight-decay", weight_decay, "L2 weight decay, >= 0").at_least(0.0);
  s.add("qgm", qgm, "Quasi-Global Momentum");

  s.section("run");
  s.add("out", out, "output directory").non_empty("a directory");
  s.add("resume", resume, "continue the run in --out from its checkpoint");
  s.add("overwrite", overwrite, "replace an existing run in --out");
  s.add("stop-after", stop_after, "stop after this many epochs of this invocation (0: never)")
      .at_least(0);
  s.add("quiet", quiet, "no live progress line");
  declare_execution(s, {.seed = seed,
                        .device = device,
                        .transport = transport,
                        .comm_timeout = comm_timeout,
                        .threads = threads});
}

void TrainConfig::validate() const {
  TrainConfig copy = *this;
  Settings s("spush-train");
  copy.declare(s);
  s.validate();
  // Checks across settings.
  check(groups == 0 || group_size == 0, "groups", fmt::format("{}", groups),
        "only one of groups and group-size");
  check(warmup_epochs < epochs, "warmup-epochs", fmt::format("{}", warmup_epochs),
        "an integer in [0, epochs)");
  check(!(resume && overwrite), "resume", "true", "not together with overwrite");
  check_compression(compressor, bits);
  const AlgorithmKind kind = algorithm_kind_from_string(algorithm);
  check(!((kind == AlgorithmKind::kBsp || kind == AlgorithmKind::kDgc) && local_steps != 1),
        "local-steps", fmt::format("{}", local_steps),
        fmt::format("1 with algorithm {} (it exchanges gradients every iteration; fedavg and the "
                    "SSGD family take local steps)",
                    algorithm));
  if (skewscout) (void)skewscout_knob();
}

std::pair<std::string, std::vector<double>> TrainConfig::skewscout_knob() const {
  const AlgorithmKind kind = algorithm_kind_from_string(algorithm);
  check(kind != AlgorithmKind::kBsp && kind != AlgorithmKind::kDgc, "skewscout", "true",
        fmt::format("an algorithm with a communication knob, not {} (it communicates every "
                    "iteration)",
                    algorithm));
  std::pair<std::string, std::vector<double>> knob;
  knob.first = kind == AlgorithmKind::kGaia ? "gaia-threshold" : "local-steps";
  try {
    knob.second = parse_grid(skewscout_grid);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(
        fmt::format("invalid setting skewscout-grid = '{}': {}", skewscout_grid, e.what()));
  }
  if (knob.second.empty())
    knob.second = kind == AlgorithmKind::kGaia
                      ? std::vector<double>{0.01, 0.02, 0.05, 0.1, 0.2, 0.4}
                      : std::vector<double>{1, 2, 4, 8, 16, 32, 64};
  if (knob.first == "local-steps")
    for (double v : knob.second)
      check(v == std::floor(v) && v <= 1e6, "skewscout-grid", skewscout_grid,
            "whole numbers of local steps (at most 1e6) for the local-steps knob");
  return knob;
}

std::pair<std::string, int64_t> TrainConfig::schedule_period() const {
  return parse_schedule(schedule);
}

nlohmann::json TrainConfig::to_json() const {
  TrainConfig copy = *this;
  Settings s("spush-train");
  copy.declare(s);
  return s.to_json();
}

nlohmann::json TrainConfig::trajectory_json() const {
  nlohmann::json j = to_json();
  for (const char* key : {"data-dir", "eval-samples", "out", "resume", "overwrite", "device",
                          "transport", "comm-timeout", "stop-after", "threads", "quiet"})
    j.erase(key);
  return j;
}

}  // namespace spush::runtime

// Every setting of a training run (spush-train's flags and config-file keys), its defaults,
// validation and JSON form, declared once through the settings registry (settings.h). Key names
// in JSON are the flag names without the leading dashes ("data-dir", "local-steps", ...), so a
// run's config.json can be passed back with --config.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "spush/runtime/settings.h"  // ConfigError

namespace spush::runtime {

struct TrainConfig {
  // graph
  int nodes = 4;
  std::string topology = "ring";      // TopologySpec names (topology.h)
  std::string schedule = "epochs:1";  // UNIT:N: rotate a topology list every N epochs|iterations
  double failure_prob = 0;            // random link failures per edge per round
  // algorithm and compression
  std::string algorithm = "sparsepush";  // sgp | deepsqueeze | sparsepush | scsp | choco |
                                         // bsp | fedavg | gaia | dgc | ssgd-topk | ssgd-mv |
                                         // mv-ad | mv-rs
  std::string compressor =
      "topk";  // topk | randomk | qsgd | sign | fractional | minmax8 | identity
  double density = 0.01;
  int bits = 8;
  std::string index_codec = "local16";  // raw32 | local16 | block
  bool global_compression = false;      // compress the whole vector instead of per layer
  double eta = -1;                      // < 0: default for the density (docs/ALGORITHMS.md §3.7)
  int local_steps = 1;
  int scsp_final_rounds = 40;
  bool scsp_final_with_updates = false;
  // centralized algorithms (runtime::CentralizedSpec)
  double fedavg_fraction = 1;
  double gaia_threshold = 0.1;
  int dgc_warmup_epochs = 4;
  double dgc_clip = 0;
  double add_drop_density = 1e-3;
  int dense_epochs = 0;
  // SkewScout (runtime/skewscout.h)
  bool skewscout = false;
  double skewscout_target = 0.05;
  int64_t skewscout_samples = 1000;
  std::string skewscout_grid;  // empty: the knob's default grid
  // model
  std::string model = "lenet5";
  std::string norm = "group";  // batch | group | evonorm | rangebn | rangeevo | none
  int64_t groups = 0;          // 0: the model's default
  int64_t group_size = 0;
  std::string shortcut = "zeropad";             // zeropad | conv1x1
  std::string precision = "fp32";               // fp32 | int8 (nets/layers_quant.h)
  std::string int8_activations = "stochastic";  // stochastic | nearest
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
  std::string device = "auto";     // auto | cpu | cuda
  std::string transport = "auto";  // local | mpi | auto
  double comm_timeout = 60;        // seconds a node waits for a message (> 0)
  int stop_after = 0;              // stop (as if interrupted) after this many epochs of the run
  int threads = 0;                 // OpenMP threads (0: default, at most 1024)
  bool quiet = false;              // no live progress line

  // Declares every setting, bound to this object's fields, into s: the single list that the
  // command line, config files and config.json are built from.
  void declare(Settings& s);

  // The schedule setting split into (unit, period); throws ConfigError when malformed.
  std::pair<std::string, int64_t> schedule_period() const;

  // Throws ConfigError for the first invalid setting.
  void validate() const;
  nlohmann::json to_json() const;
  // Keys the checkpoint must agree on to resume (everything that changes the trajectory).
  nlohmann::json trajectory_json() const;
  // SkewScout's knob for the algorithm ("local-steps" or "gaia-threshold") and its grid (the
  // skewscout-grid setting, else the default). Throws ConfigError for an algorithm without a
  // knob (bsp, dgc) or a bad grid.
  std::pair<std::string, std::vector<double>> skewscout_knob() const;
};

}  // namespace spush::runtime

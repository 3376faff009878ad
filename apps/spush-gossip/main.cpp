// spush-gossip: runs one decentralized gossip algorithm (SGP, Deep-Squeeze, Sparse-Push, SCSP,
// CHOCO) over simulated nodes in one process and prints, per round, the consensus error, the
// relative objective gap (logistic mode), the bytes each node sent (transport count and the
// papers' convention) and the cumulative compression factor. Modes: pure averaging of random
// vectors (communicate() only) or the convex logistic problem of runtime/logistic.h.
// Usage and metric definitions: docs/GOSSIP.md.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "spush/kernels/device.h"
#include "spush/nets/optim.h"
#include "spush/nets/partition.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/algorithm_cuda.h"
#include "spush/runtime/logistic.h"
#include "spush/runtime/topology.h"
#include "spush/runtime/transport.h"
#include "spush/runtime/version.h"

namespace {

using spush::nets::NodeMatrix;
namespace rt = spush::runtime;

struct Options {
  int nodes = 4;
  std::string topology = "ring";
  int64_t period = 1;
  std::string period_unit = "epochs";
  int64_t epoch_rounds = 100;
  double failure_prob = 0;
  std::string algorithm = "sparsepush";
  std::string compressor = "topk";
  double density = 0.01;
  int bits = 8;
  std::string index_codec = "local16";
  bool global = false;
  double eta = -1;
  std::string mode = "averaging";
  int64_t rounds = 1000;
  int64_t dim = 256;
  int segments = 4;
  int64_t samples = 512;
  int64_t batch = 0;
  double skew = 0;
  double lambda = 1e-2;
  double label_noise = 0.05;
  double lr = 1.0;
  double lr_decay = 0.05;
  double momentum = 0;
  bool nesterov = false;
  bool qgm = false;
  double weight_decay = 0;
  int local_steps = 1;
  int scsp_final_rounds = 40;
  uint64_t seed = 1;
  int64_t print_every = 100;
  std::string json;
  double target_gap = 0;
  std::string device = "cpu";
};

// A user error: printed as one line, exit code 1.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void require(bool ok, const std::string& what) {
  if (!ok) throw UsageError(what);
}

void validate_options(const Options& o) {
  require(o.nodes >= 1, fmt::format("--nodes {}: expected at least 1 node", o.nodes));
  require(o.density > 0 && o.density <= 1,
          fmt::format("--density {}: expected a value in (0, 1]", o.density));
  require(o.eta < 0 || (o.eta > 0 && o.eta <= 1),
          fmt::format("--eta {}: expected a value in (0, 1], or < 0 for the default of the density",
                      o.eta));
  require(o.period >= 1, fmt::format("--period {}: expected >= 1", o.period));
  require(o.epoch_rounds >= 1, fmt::format("--epoch-rounds {}: expected >= 1", o.epoch_rounds));
  require(o.failure_prob >= 0 && o.failure_prob < 1,
          fmt::format("--failure-prob {}: expected a probability in [0, 1)", o.failure_prob));
  require(o.rounds >= 0, fmt::format("--rounds {}: expected >= 0", o.rounds));
  require(o.dim >= 1, fmt::format("--dim {}: expected >= 1", o.dim));
  require(o.segments >= 1 && o.segments <= o.dim,
          fmt::format("--segments {}: expected a value in [1, --dim = {}]", o.segments, o.dim));
  require(o.samples >= 1, fmt::format("--samples {}: expected >= 1 sample per node", o.samples));
  require(o.batch >= 0, fmt::format("--batch {}: expected >= 0 (0: full batch)", o.batch));
  require(o.skew >= 0 && o.skew <= 1, fmt::format("--skew {}: expected a value in [0, 1]", o.skew));
  require(o.lambda > 0, fmt::format("--lambda {}: expected > 0", o.lambda));
  require(o.label_noise >= 0 && o.label_noise < 0.5,
          fmt::format("--label-noise {}: expected a probability in [0, 0.5)", o.label_noise));
  require(o.lr > 0, fmt::format("--lr {}: expected > 0", o.lr));
  require(o.lr_decay >= 0, fmt::format("--lr-decay {}: expected >= 0", o.lr_decay));
  require(o.momentum >= 0 && o.momentum < 1,
          fmt::format("--momentum {}: expected a value in [0, 1)", o.momentum));
  require(o.weight_decay >= 0, fmt::format("--weight-decay {}: expected >= 0", o.weight_decay));
  require(o.local_steps >= 1, fmt::format("--local-steps {}: expected >= 1", o.local_steps));
  require(o.scsp_final_rounds >= 0,
          fmt::format("--scsp-final-rounds {}: expected >= 0", o.scsp_final_rounds));
  require(o.print_every >= 1, fmt::format("--print-every {}: expected >= 1", o.print_every));
  require(o.target_gap >= 0, fmt::format("--target-gap {}: expected >= 0", o.target_gap));
  require(o.target_gap == 0 || o.mode == "logistic",
          "--target-gap: only meaningful with --mode logistic");
  if (o.device == "cuda") {
    require(o.mode == "averaging",
            "--device cuda: runs the averaging mode only (the logistic mode computes its "
            "gradients on the host), use --device cpu");
    require(spush::kernels::cuda_compiled(),
            "--device cuda: this build of spush has no CUDA support (rebuild with "
            "-DSPUSH_ENABLE_CUDA=ON and a CUDA compiler), use --device cpu");
    require(spush::kernels::cuda_device_count() > 0,
            "--device cuda: no usable CUDA device was found, use --device cpu");
  }
}

// The algorithm on the host (make_algorithm over the `local` transport) or with the node
// matrix on the GPU (make_algorithm_cuda over the device-memory `local` transport).
class Gossip {
 public:
  Gossip(const rt::AlgorithmSpec& spec, const spush::nets::Layout& layout,
         const rt::Schedule& schedule, int nodes, bool cuda) {
    if (cuda) {
      std::string why;
      require(rt::algorithm_cuda_supports(spec, &why), "--device cuda: " + why);
      device_transport_ = std::make_unique<rt::DeviceLocalTransport>(nodes);
      gpu_ = rt::make_algorithm_cuda(spec, layout, schedule, *device_transport_);
    } else {
      transport_ = rt::make_local_transport(nodes);
      cpu_ = rt::make_algorithm(spec, layout, schedule, *transport_);
    }
  }
  void init(const NodeMatrix& x0) { cpu_ ? cpu_->init(x0) : gpu_->init(x0); }
  void communicate(int64_t t, int64_t epoch) {
    cpu_ ? cpu_->communicate(t, epoch) : gpu_->communicate(t, epoch);
  }
  void gossip_rounds(int rounds, int64_t t, int64_t epoch) {
    cpu_ ? cpu_->gossip_rounds(rounds, t, epoch) : gpu_->gossip_rounds(rounds, t, epoch);
  }
  const NodeMatrix& z() {
    if (cpu_) return cpu_->z();
    gpu_->download_z(z_);
    return z_;
  }
  NodeMatrix& x() { return cpu_->x(); }  // host algorithms only (logistic mode)
  const rt::CommStats& stats() const { return cpu_ ? cpu_->stats() : gpu_->stats(); }
  const rt::AlgorithmSpec& spec() const { return cpu_ ? cpu_->spec() : gpu_->spec(); }

 private:
  std::unique_ptr<rt::Transport> transport_;
  std::unique_ptr<rt::Algorithm> cpu_;
  std::unique_ptr<rt::DeviceLocalTransport> device_transport_;
  std::unique_ptr<rt::DeviceAlgorithm> gpu_;
  NodeMatrix z_;
};

// One printed row.
struct Row {
  int64_t round = 0;
  double consensus = 0;
  std::optional<double> gap;
  double bytes_actual = 0;  // per node
  double bytes_paper = 0;   // per node
  double factor = 1;
};

class Printer {
 public:
  explicit Printer(std::ofstream* json) : json_(json) {}
  void header() const {
    fmt::print("{:>8} {:>15} {:>13} {:>15} {:>20} {:>18}\n", "round", "consensus_error",
               "objective_gap", "bytes_per_node", "bytes_per_node_paper", "compression_factor");
  }
  void row(const Row& r) const {
    fmt::print("{:>8} {:>15.6e} {:>13} {:>15.0f} {:>20.0f} {:>18.3f}\n", r.round, r.consensus,
               r.gap ? fmt::format("{:.6e}", *r.gap) : std::string("-"), r.bytes_actual,
               r.bytes_paper, r.factor);
    if (json_) {
      nlohmann::json j;
      j["round"] = r.round;
      j["consensus_error"] = r.consensus;
      j["objective_gap"] = r.gap ? nlohmann::json(*r.gap) : nlohmann::json(nullptr);
      j["bytes_per_node_actual"] = r.bytes_actual;
      j["bytes_per_node_paper"] = r.bytes_paper;
      j["compression_factor"] = r.factor;
      *json_ << j.dump() << '\n';
    }
  }

 private:
  std::ofstream* json_;  // nullptr: no --json
};

// Fills out with standard normal draws (mt19937_64, whose output the C++ standard fixes, and
// Box-Muller) and returns the mean of its rows.
std::vector<float> random_rows(int rows, int64_t d, uint64_t seed, NodeMatrix& out) {
  std::mt19937_64 rng(spush::nets::mix_seed({seed, 0x61766721ull}));
  out = NodeMatrix(rows, d);
  for (int r = 0; r < rows; ++r)
    for (int64_t k = 0; k < d; ++k) {
      const double u1 = 1.0 - spush::nets::uniform01(rng);
      const double u2 = spush::nets::uniform01(rng);
      out.row(r)[k] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                                         std::cos(2.0 * std::numbers::pi * u2));
    }
  return rt::average_rows(out);
}

// Averaging mode: mean over nodes of ||z_i - mean(x0)||, divided by its value at round 0.
double averaging_error(const NodeMatrix& z, const std::vector<float>& target) {
  double total = 0;
  for (int64_t r = 0; r < z.rows(); ++r) {
    double s = 0;
    for (int64_t k = 0; k < z.cols(); ++k) {
      const double e = static_cast<double>(z.row(r)[k]) - target[k];
      s += e * e;
    }
    total += std::sqrt(s);
  }
  return total / static_cast<double>(z.rows());
}

int run(const Options& o) {
  validate_options(o);
  const bool logistic = o.mode == "logistic";

  rt::TopologySpec tspec;
  tspec.name = o.topology;
  tspec.nodes = o.nodes;
  tspec.period = o.period;
  tspec.unit =
      o.period_unit == "iterations" ? rt::PeriodUnit::kIterations : rt::PeriodUnit::kEpochs;
  tspec.failure_prob = o.failure_prob;
  tspec.seed = o.seed;
  const rt::Schedule schedule = rt::make_schedule(tspec);

  rt::AlgorithmSpec aspec;
  aspec.kind = rt::algorithm_kind_from_string(o.algorithm);
  aspec.compressor.kind = spush::kernels::compressor_kind_from_string(o.compressor);
  aspec.compressor.density = o.density;
  aspec.compressor.bits = o.bits;
  aspec.compressor.index_codec = spush::kernels::index_codec_from_string(o.index_codec);
  aspec.compressor.seed = o.seed;
  aspec.layerwise = !o.global;
  aspec.local_steps = o.local_steps;
  aspec.scsp_final_rounds = o.scsp_final_rounds;
  aspec.eta = o.eta;  // < 0: make_algorithm resolves the default (1 without compression)

  std::unique_ptr<rt::LogisticProblem> problem;
  spush::nets::Layout layout;
  if (logistic) {
    rt::LogisticSpec lspec;
    lspec.nodes = o.nodes;
    lspec.dim = o.dim;
    lspec.segments = o.segments;
    lspec.samples_per_node = o.samples;
    lspec.skew = o.skew;
    lspec.lambda = o.lambda;
    lspec.label_noise = o.label_noise;
    lspec.seed = o.seed;
    problem = std::make_unique<rt::LogisticProblem>(lspec);
    layout = problem->layout();
    if (o.batch > 0)
      for (int i = 0; i < o.nodes; ++i)
        require(o.batch <= static_cast<int64_t>(problem->node_samples(i).size()),
                fmt::format("--batch {}: node {} holds only {} samples", o.batch, i,
                            problem->node_samples(i).size()));
  } else {
    layout = rt::make_segment_layout(o.dim, o.segments);
  }

  auto algo = std::make_unique<Gossip>(aspec, layout, schedule, o.nodes, o.device == "cuda");

  // Initial state: random vectors (averaging) or the common start x0 = 0 (logistic).
  NodeMatrix x0(o.nodes, o.dim);
  std::vector<float> target;  // averaging: the true average of x0
  if (!logistic) target = random_rows(o.nodes, o.dim, o.seed, x0);
  const std::vector<float> start(o.dim, 0.0f);
  algo->init(x0);
  const double f_start = logistic ? problem->objective(start.data()) : 0;

  std::ofstream json_file;
  if (!o.json.empty()) {
    json_file.open(o.json, std::ios::out | std::ios::trunc);
    require(json_file.good(), fmt::format("--json {}: cannot open the file for writing", o.json));
  }
  const Printer printer(o.json.empty() ? nullptr : &json_file);

  fmt::print("# spush-gossip {}: mode {}, device {}, topology {}\n", rt::version(), o.mode,
             o.device, schedule.describe());
  const std::string compression =
      algo->spec().kind == rt::AlgorithmKind::kSgp
          ? std::string("none")
          : fmt::format("{} (density {}, bits {}, index codec {}, {})", o.compressor, o.density,
                        o.bits, o.index_codec, o.global ? "global" : "layer-wise");
  fmt::print("# algorithm {}, eta {}, compression {}, d {} in {} segments\n",
             rt::to_string(algo->spec().kind), algo->spec().eta, compression, o.dim, o.segments);
  if (logistic)
    fmt::print(
        "# logistic: {} samples ({} per node before partition), skew {}, lambda {}, "
        "f* = {:.12f} (|grad f*| = {:.1e}), f(x0) = {:.12f}, lr {} / (1 + {} t){}{}{}\n",
        problem->total_samples(), o.samples, o.skew, o.lambda, problem->optimum_value(),
        problem->optimum_gradient_norm(), f_start, o.lr, o.lr_decay,
        o.momentum > 0 ? fmt::format(", momentum {}", o.momentum) : "",
        o.nesterov ? " (Nesterov)" : "", o.qgm ? ", QGM" : "");
  printer.header();

  const double initial_error = logistic ? 0 : averaging_error(algo->z(), target);
  auto measure = [&](int64_t round, bool with_gap) {
    Row r;
    r.round = round;
    const NodeMatrix& z = algo->z();
    if (logistic) {
      r.consensus = rt::consensus_distance(z);
      if (with_gap) {
        const double f = problem->objective(rt::average_rows(z).data());
        r.gap = (f - problem->optimum_value()) / (f_start - problem->optimum_value());
      }
    } else {
      const double e = averaging_error(z, target);
      r.consensus = initial_error > 0 ? e / initial_error : e;
    }
    const rt::CommStats& st = algo->stats();
    r.bytes_actual = static_cast<double>(st.bytes_actual) / o.nodes;
    r.bytes_paper = st.bytes_paper / o.nodes;
    r.factor = st.compression_factor();
    return r;
  };

  spush::nets::OptimizerSpec ospec;
  ospec.momentum = o.momentum;
  ospec.nesterov = o.nesterov;
  ospec.weight_decay = o.weight_decay;
  ospec.qgm = o.qgm;
  std::optional<spush::nets::Optimizer> optimizer;
  NodeMatrix grads;
  std::vector<rt::MinibatchSampler> samplers;
  if (logistic) {
    optimizer.emplace(ospec, o.nodes, o.dim);
    grads = NodeMatrix(o.nodes, o.dim);
    if (o.batch > 0)
      for (int i = 0; i < o.nodes; ++i)
        samplers.emplace_back(static_cast<int64_t>(problem->node_samples(i).size()), o.batch,
                              spush::nets::mix_seed({o.seed, static_cast<uint64_t>(i), 7}));
  }

  printer.row(measure(0, logistic));
  const auto started = std::chrono::steady_clock::now();
  std::optional<Row> reached;
  Row last;
  const bool scsp = algo->spec().kind == rt::AlgorithmKind::kScsp;
  const int64_t total = o.rounds + (scsp ? o.scsp_final_rounds : 0);
  for (int64_t t = 0; t < total; ++t) {
    const int64_t epoch = t / o.epoch_rounds;
    if (t < o.rounds) {
      if (logistic) {
        const NodeMatrix& z = algo->z();
        if (o.batch > 0) {
          for (int i = 0; i < o.nodes; ++i)
            problem->minibatch_gradient(i, z.row(i), grads.row(i), samplers[i].next());
        } else {
          problem->gradients(z, grads);
        }
        const float lr = static_cast<float>(o.lr / (1.0 + o.lr_decay * static_cast<double>(t)));
        optimizer->step(algo->x(), grads, lr);
        algo->communicate(t, epoch);
        optimizer->after_mix(algo->x(), lr);
      } else {
        algo->communicate(t, epoch);
      }
    } else {
      algo->gossip_rounds(1, t, epoch);  // SCSP's uncompressed final phase
    }
    const int64_t round = t + 1;
    const bool print = round % o.print_every == 0 || round == total;
    const bool check_target = o.target_gap > 0 && !reached;
    if (print || check_target) {
      const Row r = measure(round, logistic);
      if (check_target && r.gap && *r.gap < o.target_gap) reached = r;
      if (print || reached) printer.row(r);
      last = r;
      if (reached) break;
    }
  }
  if (total == 0) last = measure(0, logistic);
  // The last measure() read the state back, so on the GPU every round has finished here.
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  fmt::print(
      "summary: rounds {} consensus_error {:.6e} objective_gap {} bytes_per_node {:.0f} "
      "bytes_per_node_paper {:.0f} compression_factor {:.3f}\n",
      last.round, last.consensus, last.gap ? fmt::format("{:.6e}", *last.gap) : "-",
      last.bytes_actual, last.bytes_paper, last.factor);
  fmt::print(
      "time: {:.3f} s for {} rounds on the {} ({:.3f} ms per round, printed rows included)\n",
      seconds, last.round, o.device == "cuda" ? "GPU" : "CPU",
      last.round > 0 ? 1e3 * seconds / static_cast<double>(last.round) : 0.0);
  if (o.target_gap > 0) {
    if (reached)
      fmt::print(
          "target: objective_gap {:.3e} < {} reached at round {} with {:.0f} bytes per node "
          "({:.0f} paper), compression factor {:.3f}\n",
          *reached->gap, o.target_gap, reached->round, reached->bytes_actual, reached->bytes_paper,
          reached->factor);
    else
      fmt::print("target: objective_gap {} not reached in {} rounds\n", o.target_gap, total);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "spush-gossip: decentralized gossip averaging and convex optimization "
      "(docs/GOSSIP.md)"};
  app.add_option("--nodes", o.nodes, "Number of nodes")->capture_default_str();
  app.add_option("--topology", o.topology,
                 "Graph: ring (directed), bidir-ring, torus, torus:RxC, exponential, full, rings4, "
                 "rings4-3, file:PATH, or a comma-separated list to rotate through")
      ->capture_default_str();
  app.add_option("--period", o.period, "How long each graph of a list is used")
      ->capture_default_str();
  app.add_option("--period-unit", o.period_unit, "Unit of --period")
      ->check(CLI::IsMember({"iterations", "epochs"}))
      ->capture_default_str();
  app.add_option("--epoch-rounds", o.epoch_rounds, "Rounds per epoch (for --period-unit epochs)")
      ->capture_default_str();
  app.add_option("--failure-prob", o.failure_prob, "Link failure probability per edge per round")
      ->capture_default_str();
  app.add_option("--algorithm", o.algorithm, "Gossip algorithm")
      ->check(CLI::IsMember({"sgp", "deepsqueeze", "sparsepush", "scsp", "choco"}))
      ->capture_default_str();
  app.add_option("--compressor", o.compressor, "Compression operator (ignored by sgp)")
      ->check(
          CLI::IsMember({"topk", "randomk", "qsgd", "sign", "fractional", "minmax8", "identity"}))
      ->capture_default_str();
  app.add_option("--density", o.density, "Fraction of entries kept per segment, in (0, 1]")
      ->capture_default_str();
  app.add_option("--bits", o.bits, "Bits for qsgd (1, 2, 4, 8) and fractional (2..9)")
      ->capture_default_str();
  app.add_option("--index-codec", o.index_codec, "How sparse indices go on the wire")
      ->check(CLI::IsMember({"raw32", "local16", "block"}))
      ->capture_default_str();
  app.add_flag("--global", o.global, "Compress the whole vector instead of layer by layer");
  app.add_option("--eta", o.eta,
                 "Averaging rate in (0, 1]; default: 1 for sgp/identity, else the default of the "
                 "density (ALGORITHMS.md 3)");
  app.add_option("--mode", o.mode, "averaging (random vectors) or logistic (convex problem)")
      ->check(CLI::IsMember({"averaging", "logistic"}))
      ->capture_default_str();
  app.add_option("--rounds", o.rounds, "Iterations (plus --scsp-final-rounds for scsp)")
      ->capture_default_str();
  app.add_option("--dim", o.dim, "Vector / model dimension d")->capture_default_str();
  app.add_option("--segments", o.segments, "Segments (layers) d is cut into")
      ->capture_default_str();
  app.add_option("--samples", o.samples, "Logistic: samples generated per node")
      ->capture_default_str();
  app.add_option("--batch", o.batch, "Logistic: minibatch size per node (0: full batch)")
      ->capture_default_str();
  app.add_option("--skew", o.skew, "Logistic: label skew s in [0, 1] (0: IID)")
      ->capture_default_str();
  app.add_option("--lambda", o.lambda, "Logistic: L2 regularization of the objective")
      ->capture_default_str();
  app.add_option("--label-noise", o.label_noise, "Logistic: label flip probability")
      ->capture_default_str();
  app.add_option("--lr", o.lr, "Logistic: learning rate")->capture_default_str();
  app.add_option("--lr-decay", o.lr_decay, "Logistic: lr_t = lr / (1 + lr_decay * t)")
      ->capture_default_str();
  app.add_option("--momentum", o.momentum, "Logistic: momentum in [0, 1)")->capture_default_str();
  app.add_flag("--nesterov", o.nesterov, "Logistic: Nesterov momentum");
  app.add_flag("--qgm", o.qgm, "Logistic: Quasi-Global Momentum");
  app.add_option("--weight-decay", o.weight_decay,
                 "Logistic: extra weight decay of the optimizer (lambda is already in f)")
      ->capture_default_str();
  app.add_option("--local-steps", o.local_steps, "Communicate every H iterations")
      ->capture_default_str();
  app.add_option("--scsp-final-rounds", o.scsp_final_rounds,
                 "scsp: uncompressed push-sum rounds after --rounds")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of data, initial vectors, compression and failures")
      ->capture_default_str();
  app.add_option("--print-every", o.print_every, "Print a row every this many rounds")
      ->capture_default_str();
  app.add_option("--json", o.json, "Also write one JSON object per printed row to this file");
  app.add_option("--target-gap", o.target_gap,
                 "Logistic: stop when the relative objective gap falls below this (0: off)")
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "spush-gossip: error: %s (run with --help for usage)\n", e.what());
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "spush-gossip: error: %s\n", e.what());
    return 1;
  }
}

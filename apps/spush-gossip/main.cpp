// spush-gossip: runs one decentralized gossip algorithm (SGP, Deep-Squeeze, Sparse-Push, SCSP,
// CHOCO) over simulated nodes in one process and prints, per round, the consensus error, the
// relative objective gap (logistic mode), the bytes each node sent (transport count and the
// papers' convention) and the cumulative compression factor. Modes: pure averaging of random
// vectors (communicate() only) or the convex logistic problem of runtime/logistic.h.
// Usage and metric definitions: docs/GOSSIP.md.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spush/kernels/backend.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/device.h"
#include "spush/nets/optim.h"
#include "spush/nets/partition.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/communicator.h"
#include "spush/runtime/json_out.h"
#include "spush/runtime/logistic.h"
#include "spush/runtime/settings.h"
#include "spush/runtime/stop.h"
#include "spush/runtime/topology.h"
#include "spush/runtime/version.h"

namespace {

using spush::nets::NodeMatrix;
namespace rt = spush::runtime;

// Every setting; declare() registers them (flags, --config keys, rules, help).
struct Options {
  int nodes = 4;
  std::string topology = "ring";
  std::string schedule = "epochs:1";
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
  std::string transport = "auto";
  double comm_timeout = 60;
  int threads = 0;
};

// The graph, algorithm and execution groups are the ones spush-train declares
// (runtime/include/spush/runtime/settings.h); the rest is this program's own.
void declare(rt::Settings& s, Options& o) {
  rt::declare_graph(s, {.nodes = o.nodes,
                        .topology = o.topology,
                        .schedule = o.schedule,
                        .failure_prob = o.failure_prob});
  s.add("epoch-rounds", o.epoch_rounds, "rounds per epoch (for --schedule epochs:N)").at_least(1);
  rt::declare_algorithm(s, {.algorithm = o.algorithm,
                            .compressor = o.compressor,
                            .density = o.density,
                            .bits = o.bits,
                            .index_codec = o.index_codec,
                            .global_compression = o.global,
                            .eta = o.eta,
                            .local_steps = o.local_steps,
                            .scsp_final_rounds = o.scsp_final_rounds});
  s.section("problem");
  s.add("mode", o.mode, "averaging (random vectors) | logistic (convex problem)")
      .one_of({"averaging", "logistic"});
  s.add("rounds", o.rounds, "iterations (plus --scsp-final-rounds for scsp), 0..2^40")
      .in_range(0, int64_t{1} << 40);
  s.add("dim", o.dim, "vector / model dimension d, 1..2^31-1").in_range(1, int64_t{INT32_MAX});
  s.add("segments", o.segments, "segments (layers) d is cut into, at most --dim").at_least(1);
  s.add("samples", o.samples, "logistic: samples generated per node, 1..2^24")
      .in_range(1, int64_t{1} << 24);
  s.add("batch", o.batch, "logistic: minibatch size per node (0: full batch)").at_least(0);
  s.add("skew", o.skew, "logistic: label skew s in [0, 1] (0: IID)").in_range(0.0, 1.0);
  s.add("lambda", o.lambda, "logistic: L2 regularization of the objective, > 0").above(0.0);
  s.add("label-noise", o.label_noise, "logistic: label flip probability in [0, 0.5)")
      .at_least(0.0)
      .below(0.5);
  s.section("optimizer (logistic mode)");
  s.add("lr", o.lr, "learning rate, > 0").above(0.0);
  s.add("lr-decay", o.lr_decay, "lr_t = lr / (1 + lr_decay * t), >= 0").at_least(0.0);
  s.add("momentum", o.momentum, "momentum in [0, 1)").at_least(0.0).below(1.0);
  s.add("nesterov", o.nesterov, "Nesterov momentum");
  s.add("qgm", o.qgm, "Quasi-Global Momentum");
  s.add("weight-decay", o.weight_decay,
        "extra weight decay of the optimizer (lambda is already in f), >= 0")
      .at_least(0.0);
  s.section("output");
  s.add("print-every", o.print_every, "print a row every this many rounds").at_least(1);
  s.add("json", o.json, "also write one JSON object per printed row to this file (empty: off)")
      .allow_empty();
  s.add("target-gap", o.target_gap,
        "logistic: stop when the relative objective gap falls below this (0: off)")
      .at_least(0.0);
  rt::declare_execution(s, {.seed = o.seed,
                            .device = o.device,
                            .transport = o.transport,
                            .comm_timeout = o.comm_timeout,
                            .threads = o.threads});
}

// An error found while setting up or running: printed as one line, exit code 1.
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void require(bool ok, const std::string& what) {
  if (!ok) throw RunError(what);
}

// Checks across settings and of the machine, after every setting's own rules
// (Settings::validate()).
void validate_options(const Options& o) {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) throw rt::ConfigError(what);
  };
  check(o.segments <= o.dim,
        fmt::format("invalid setting segments = {}: expected an integer in [1, dim = {}]",
                    o.segments, o.dim));
  rt::check_compression(o.compressor, o.bits);
  check(!rt::is_centralized(rt::algorithm_kind_from_string(o.algorithm)),
        fmt::format("invalid setting algorithm = {}: expected a gossip algorithm (sgp, dpsgd, "
                    "deepsqueeze, sparsepush, scsp, choco, quantsgp); the centralized algorithms "
                    "run in spush-train",
                    o.algorithm));
  // The vectors of every node and the message tables: about 8 rows of d floats per node.
  rt::check_memory("dim", std::to_string(o.dim),
                   8.0 * 4.0 * static_cast<double>(o.dim) * o.nodes +
                       (o.mode == "logistic" ? 4.0 * static_cast<double>(o.dim) * o.nodes *
                                                   static_cast<double>(o.samples)
                                             : 0.0),
                   fmt::format("{} nodes of {} values", o.nodes, o.dim));
  check(o.target_gap == 0 || o.mode == "logistic",
        fmt::format("invalid setting target-gap = {}: expected 0 (off) unless --mode logistic",
                    o.target_gap));
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

// One printed row.
struct Row {
  int64_t round = 0;
  double consensus = 0;
  std::optional<double> gap;
  double bytes_actual = 0;  // per node
  double bytes_paper = 0;   // per node
  double factor = 1;
  double factor_paper = 1;
};

class Printer {
 public:
  Printer(rt::JsonLinesWriter* json, bool root) : json_(json), root_(root) {}
  void header() const {
    if (!root_) return;
    fmt::print("{:>8} {:>15} {:>13} {:>15} {:>20} {:>18}\n", "round", "consensus_error",
               "objective_gap", "bytes_per_node", "bytes_per_node_paper", "compression_factor");
  }
  void row(const Row& r) const {
    if (!root_) return;
    fmt::print("{:>8} {:>15.6e} {:>13} {:>15.0f} {:>20.0f} {:>18.3f}\n", r.round, r.consensus,
               r.gap ? fmt::format("{:.6e}", *r.gap) : std::string("-"), r.bytes_actual,
               r.bytes_paper, r.factor);
    if (json_) {
      nlohmann::json j;
      j["round"] = r.round;
      j["consensus_error"] = r.consensus;
      j["objective_gap"] = r.gap ? nlohmann::json(*r.gap) : nlohmann::json(nullptr);
      // The names of the trainer's metrics.jsonl (runtime/src/trainer.cpp) for the same
      // quantities.
      j["bytes_per_node"] = r.bytes_actual;
      j["bytes_per_node_paper"] = r.bytes_paper;
      j["compression_factor"] = r.factor;
      j["compression_factor_paper"] = r.factor_paper;
      json_->write(j);
    }
  }

 private:
  rt::JsonLinesWriter* json_;  // nullptr: no --json
  bool root_;                  // only rank 0 prints
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

// The run's communicator (kept here so that main() can end the whole job on an error).
std::unique_ptr<rt::Communicator> g_comm;

// The local rows [first, first + count) of a matrix of every node's rows.
NodeMatrix local_rows(const NodeMatrix& all, int first, int count) {
  NodeMatrix out(count, all.cols());
  for (int r = 0; r < count; ++r) std::copy_n(all.row(first + r), all.cols(), out.row(r));
  return out;
}

int run(const Options& o) {
  validate_options(o);
  const bool logistic = o.mode == "logistic";
  g_comm = rt::make_communicator(o.transport, o.nodes, {o.comm_timeout});
  auto& comm = g_comm;
  const bool root = comm->rank() == 0;
  const int first = comm->first_local(), local = comm->local_nodes();
  // --device auto: the GPU when there is one and it can run this job, else the CPU.
  std::string device = o.device;
  if (device == "auto")
    device = !logistic && spush::kernels::cuda_available() &&
                     (o.algorithm == "sgp" || o.algorithm == "dpsgd" ||
                      spush::kernels::compress_cuda_supports(
                          spush::kernels::compressor_kind_from_string(o.compressor)))
                 ? "cuda"
                 : "cpu";
  std::unique_ptr<spush::kernels::Backend> backend;
  try {
    backend = spush::kernels::make_backend(device);
  } catch (const std::exception& e) {
    throw RunError(fmt::format("--device {}: {}", device, e.what()));
  }

  rt::TopologySpec tspec;
  tspec.name = o.topology;
  tspec.nodes = o.nodes;
  const auto [unit, period] = rt::parse_schedule(o.schedule);
  tspec.period = period;
  tspec.unit = unit == "iterations" ? rt::PeriodUnit::kIterations : rt::PeriodUnit::kEpochs;
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

  auto algo = rt::make_algorithm(aspec, layout, schedule, *backend, *comm);

  // Initial state: random vectors (averaging; every rank draws all and keeps its rows) or the
  // common start x0 = 0 (logistic).
  NodeMatrix x0_all(o.nodes, o.dim);
  std::vector<float> target;  // averaging: the true average of x0
  if (!logistic) target = random_rows(o.nodes, o.dim, o.seed, x0_all);
  const std::vector<float> start(o.dim, 0.0f);
  algo->init(local_rows(x0_all, first, local));
  const double f_start = logistic ? problem->objective(start.data()) : 0;

  std::optional<rt::JsonLinesWriter> json_file;
  if (root && !o.json.empty()) json_file.emplace(o.json, rt::JsonLinesWriter::Mode::kTruncate);
  const Printer printer(json_file ? &*json_file : nullptr, root);

  if (root) {
    fmt::print("# spush-gossip {}: mode {}, device {}, {} rank(s) ({} transport), topology {}\n",
               rt::version(), o.mode, backend->name(), comm->ranks(), comm->name(),
               schedule.describe());
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
  }
  printer.header();

  // z of the local nodes (a view on the cpu backend, a copy from the GPU).
  NodeMatrix z_copy;
  auto local_z = [&]() -> const NodeMatrix& {
    if (backend->host_memory()) return algo->z();
    algo->download_z(z_copy);
    return z_copy;
  };
  // Every quantity below is reduced over the nodes in node order: the same bits for any number
  // of ranks.
  auto averaging_error = [&](const NodeMatrix& z) {
    std::vector<double> err(static_cast<size_t>(local));
    for (int r = 0; r < local; ++r) {
      double s = 0;
      for (int64_t k = 0; k < z.cols(); ++k) {
        const double e = static_cast<double>(z.row(r)[k]) - target[k];
        s += e * e;
      }
      err[r] = std::sqrt(s);
    }
    return comm->sum_over_nodes(err.data()) / static_cast<double>(o.nodes);
  };
  const double initial_error = logistic ? 0 : averaging_error(local_z());
  auto measure = [&](int64_t round, bool with_gap) {
    Row r;
    r.round = round;
    const NodeMatrix& z = local_z();
    if (logistic) {
      std::vector<double> sum(static_cast<size_t>(local) * static_cast<size_t>(o.dim));
      for (int i = 0; i < local; ++i)
        for (int64_t k = 0; k < o.dim; ++k) sum[i * o.dim + k] = z.row(i)[k];
      comm->allreduce_sum(sum.data(), o.dim);
      std::vector<float> mean(static_cast<size_t>(o.dim));
      for (int64_t k = 0; k < o.dim; ++k)
        mean[k] = static_cast<float>(sum[k] / static_cast<double>(o.nodes));
      std::vector<double> dist(static_cast<size_t>(local));
      for (int i = 0; i < local; ++i) {
        double s = 0;
        for (int64_t k = 0; k < o.dim; ++k) {
          const double e = static_cast<double>(z.row(i)[k]) - sum[k] / o.nodes;
          s += e * e;
        }
        dist[i] = s;
      }
      r.consensus = comm->sum_over_nodes(dist.data()) / static_cast<double>(o.nodes);
      if (with_gap) {
        const double f = problem->objective(mean.data());
        r.gap = (f - problem->optimum_value()) / (f_start - problem->optimum_value());
      }
    } else {
      const double e = averaging_error(z);
      r.consensus = initial_error > 0 ? e / initial_error : e;
    }
    const rt::CommStats& st = algo->stats();
    const double actual = comm->sum_over_ranks(static_cast<double>(st.bytes_actual));
    const double paper = comm->sum_over_ranks(st.bytes_paper);
    const double dense = comm->sum_over_ranks(st.bytes_dense);
    r.bytes_actual = actual / o.nodes;
    r.bytes_paper = paper / o.nodes;
    r.factor = actual > 0 ? dense / actual : 1.0;
    r.factor_paper = paper > 0 ? dense / paper : 1.0;
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
    optimizer.emplace(ospec, local, o.dim);
    grads = NodeMatrix(local, o.dim);
    if (o.batch > 0)
      for (int i = first; i < first + local; ++i)
        samplers.emplace_back(static_cast<int64_t>(problem->node_samples(i).size()), o.batch,
                              spush::nets::mix_seed({o.seed, static_cast<uint64_t>(i), 7}));
  }

  printer.row(measure(0, logistic));
  const auto started = std::chrono::steady_clock::now();
  std::optional<Row> reached;
  Row last;
  bool stopped = false;
  const bool scsp = algo->spec().kind == rt::AlgorithmKind::kScsp;
  const int64_t total = o.rounds + (scsp ? o.scsp_final_rounds : 0);
  for (int64_t t = 0; t < total; ++t) {
    const int64_t epoch = t / o.epoch_rounds;
    if (t < o.rounds) {
      if (logistic) {
        const NodeMatrix& z = algo->z();
        if (o.batch > 0) {
          for (int i = 0; i < local; ++i)
            problem->minibatch_gradient(first + i, z.row(i), grads.row(i), samplers[i].next());
        } else {
          problem->gradients(z, grads, first);
        }
        const float lr = static_cast<float>(o.lr / (1.0 + o.lr_decay * static_cast<double>(t)));
        optimizer->step(algo->x(), grads, lr);
        algo->communicate(t, epoch);
        optimizer->after_mix(std::as_const(*algo).x(), lr);  // reads x: z stays valid
      } else {
        algo->communicate(t, epoch);
      }
    } else {
      algo->gossip_rounds(1, t, epoch);  // SCSP's uncompressed final phase
    }
    const int64_t round = t + 1;
    // SIGINT / SIGTERM: stop after this round on every rank, with a last row and the summary.
    const bool stop_now = comm->ranks() == 1
                              ? rt::stop_requested() != 0
                              : comm->sum_over_ranks(rt::stop_requested() != 0 ? 1.0 : 0.0) > 0;
    if (stop_now && round < total) {
      last = measure(round, logistic);
      printer.row(last);
      stopped = true;
      break;
    }
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
  if (!root) return stopped ? rt::kExitStopped : 0;
  fmt::print(
      "summary: rounds {} consensus_error {:.6e} objective_gap {} bytes_per_node {:.0f} "
      "bytes_per_node_paper {:.0f} compression_factor {:.3f}\n",
      last.round, last.consensus, last.gap ? fmt::format("{:.6e}", *last.gap) : "-",
      last.bytes_actual, last.bytes_paper, last.factor);
  fmt::print(
      "time: {:.3f} s for {} rounds on the {} ({:.3f} ms per round, printed rows included)\n",
      seconds, last.round, backend->host_memory() ? "CPU" : "GPU",
      last.round > 0 ? 1e3 * seconds / static_cast<double>(last.round) : 0.0);
  if (stopped)
    fmt::print(
        "stopped by {} after round {}\n",
        rt::stop_requested() ? rt::signal_name(rt::stop_requested()) : "a signal to another rank",
        last.round);
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
  return stopped ? rt::kExitStopped : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  rt::Settings settings("spush-gossip",
                        "Decentralized gossip averaging and convex optimization over simulated "
                        "nodes, in one process or in many under mpirun (docs/GOSSIP.md).");
  declare(settings, o);
  try {
    if (settings.parse(argc, argv).help) {
      std::fputs(settings.help().c_str(), stdout);
      return 0;
    }
  } catch (const rt::UsageError& e) {
    if (rt::launch_info().rank == 0) std::fprintf(stderr, "spush-gossip: error: %s\n", e.what());
    return 2;
  }
  try {
    settings.validate();
    rt::apply_threads(o.threads);
    rt::install_stop_handlers();
    return run(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    const int code = dynamic_cast<const rt::CommError*>(&e) ? 4 : 1;
    if (g_comm && g_comm->ranks() > 1) {
      std::fprintf(stderr, "spush-gossip: error: rank %d: %s\n", g_comm->rank(), e.what());
      std::fflush(stderr);
      g_comm->abort(code);  // the other ranks must not wait for this one
    } else if (rt::launch_info().rank == 0) {
      std::fprintf(stderr, "spush-gossip: error: %s\n", e.what());
    }
    return code;
  }
}

// The training driver of one rank (trainer.h): the local nodes' data, model, optimizer and the
// one gossip engine over the communicator; per-epoch evaluation and metrics reduced over the
// ranks in node order (so every number is the same for any split of the nodes); rank 0's
// outputs; sharded checkpoints committed by a manifest, resumed bit-identically.
#include "spush/runtime/trainer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <omp.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "spush/kernels/backend.h"
#include "spush/nets/data.h"
#include "spush/nets/loader.h"
#include "spush/nets/model.h"
#include "spush/nets/optim.h"
#include "spush/nets/partition.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/checkpoint.h"
#include "spush/runtime/json_out.h"
#include "spush/runtime/settings.h"
#include "spush/runtime/skewscout.h"
#include "spush/runtime/stop.h"
#include "spush/runtime/topology.h"
#include "spush/runtime/version.h"

namespace spush::runtime {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kManifestFile = "checkpoint.json";
constexpr const char* kMetricsFile = "metrics.jsonl";
constexpr const char* kConfigFile = "config.json";
constexpr const char* kSummaryFile = "summary.json";
constexpr const char* kManifestFormat = "spush-train-checkpoint";
constexpr const char* kShardFormat = "spush-train-shard";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string fmt_duration(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const int t = static_cast<int>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60)
                   : fmt::format("{}m{:02}s", t / 60, t % 60);
}

// A shard is named by the iteration it was taken after (epoch ends, or a stop by a signal).
std::string shard_name(int64_t iteration, int rank) {
  return fmt::format("checkpoint-i{}-r{}.ckpt", iteration, rank);
}

// A stream that drops everything (the log of ranks other than 0).
struct NullStream : std::ostream {
  NullStream() : std::ostream(nullptr) {}
};

}  // namespace

struct Trainer::Impl {
  TrainConfig cfg;
  Communicator& comm;
  NullStream null_out;
  std::ostream& log;
  std::ostream& progress;
  bool root;
  int first = 0, local = 0;
  fs::path out;

  nets::Dataset train, test;
  std::vector<std::vector<int64_t>> parts;  // every node's partition
  std::unique_ptr<nets::MultiNodeLoader> loader;
  std::unique_ptr<nets::Model> model, avg_model;
  std::unique_ptr<Schedule> schedule;
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<Algorithm> algo;
  std::unique_ptr<nets::Optimizer> opt;
  nets::NodeMatrix grads, zbar;
  nets::Tensor input, eval_input;
  std::vector<int32_t> labels, eval_labels;

  int64_t iters_per_epoch = 0;
  int epochs_done = 0;
  int64_t iteration = 0;
  int64_t in_epoch = 0;  // iterations done in the epoch under way (a stop in mid-epoch)
  // The epoch under way: per local node, the sum of minibatch losses and of correct answers.
  std::vector<double> node_loss, node_correct;
  CommStats epoch_start_stats;  // this rank's counts when the epoch under way began
  // SkewScout: the controller, its knob, every node's fixed sample of its training data, and
  // the accuracy loss measured in the epoch under way (before its decision).
  std::unique_ptr<SkewScout> scout;
  std::string scout_knob;
  std::vector<std::vector<int64_t>> scout_samples;
  nlohmann::json scout_measured;           // null until measured this epoch
  std::vector<std::string> metrics_lines;  // metrics.jsonl, rewritten whole (atomically)
  double elapsed_before = 0;               // training seconds of earlier invocations (resume)
  bool resumed = false;

  Impl(TrainConfig c, Communicator& cm, std::ostream& l, std::ostream& p)
      : cfg(std::move(c)),
        comm(cm),
        log(cm.rank() == 0 ? l : null_out),
        progress(cm.rank() == 0 ? p : null_out),
        root(cm.rank() == 0) {}

  nets::ModelSpec model_spec() const {
    nets::ModelSpec s;
    s.name = cfg.model;
    s.norm = cfg.norm;
    s.groups = cfg.groups;
    s.group_size = cfg.group_size;
    s.in_c = train.c;
    s.in_h = train.h;
    s.in_w = train.w;
    s.num_classes = train.num_classes;
    s.shortcut = cfg.shortcut;
    s.precision = cfg.precision;
    s.stochastic_activations = cfg.int8_activations == "stochastic";
    return s;
  }

  // Runs fn on every rank; then every rank learns whether one failed and throws if so (the
  // original exception with one rank, the failing rank's message with several).
  template <typename Fn>
  void collectively(Fn&& fn) {
    std::string error;
    std::exception_ptr ep;
    try {
      fn();
    } catch (const std::exception& e) {
      error = e.what();
      ep = std::current_exception();
    }
    const std::string agreed = comm.agree(error);
    if (agreed.empty()) return;
    if (ep && comm.ranks() == 1) std::rethrow_exception(ep);
    throw std::runtime_error(agreed);
  }

  void build() {
    collectively([&] { build_local(); });
    if (cfg.resume) {
      std::string manifest_text;
      collectively([&] {
        if (root) manifest_text = read_manifest_text();
      });
      uint64_t len = manifest_text.size();
      comm.broadcast(&len, sizeof(len), 0);
      manifest_text.resize(len);
      comm.broadcast(manifest_text.data(), len, 0);
      collectively([&] { load_checkpoint(manifest_text); });
    }
  }

  void build_local() {
    cfg.validate();
    if (cfg.nodes != comm.world_nodes())
      throw ConfigError(fmt::format("invalid setting nodes = {}: the {} communicator has {}",
                                    cfg.nodes, comm.name(), comm.world_nodes()));
    if (cfg.device == "cuda")
      throw ConfigError(
          "invalid setting device = 'cuda': training runs on the CPU in this version "
          "(the GPU runs gossip only: spush-gossip --device cuda); use --device cpu or auto");
    apply_threads(cfg.threads);
    first = comm.first_local();
    local = comm.local_nodes();
    out = cfg.out;
    if (root) check_output_dir();

    const std::string dir = cfg.data_dir.empty() ? nets::default_data_dir() : cfg.data_dir;
    train = nets::load_dataset(cfg.dataset, dir, true);
    test = nets::load_dataset(cfg.dataset, dir, false);
    if (test.count < 1)
      throw nets::DataError(fmt::format("the {} test set in {} holds no images", cfg.dataset, dir));

    if (cfg.partition == "skew")
      parts = nets::partition_skew(train.labels, train.num_classes, cfg.nodes, cfg.skew, cfg.seed);
    else if (cfg.partition == "dirichlet")
      parts = nets::partition_dirichlet(train.labels, train.num_classes, cfg.nodes, cfg.alpha,
                                        cfg.seed);
    else if (cfg.nodes > train.num_classes)
      throw ConfigError(
          fmt::format("invalid setting nodes = {} with partition exclusive: expected "
                      "at most {} nodes (each node takes its own classes)",
                      cfg.nodes, train.num_classes));
    else
      parts = nets::partition_exclusive(train.labels, train.num_classes, cfg.nodes);
    iters_per_epoch = -1;
    for (int i = 0; i < cfg.nodes; ++i) {
      const auto size = static_cast<int64_t>(parts[i].size());
      if (size < cfg.batch)
        throw ConfigError(fmt::format(
            "invalid setting batch = {}: node {} holds only {} training samples ({} nodes, "
            "partition {}); expected batch <= the samples of every node",
            cfg.batch, i, size, cfg.nodes, cfg.partition));
      const int64_t batches = size / cfg.batch;
      iters_per_epoch = iters_per_epoch < 0 ? batches : std::min(iters_per_epoch, batches);
    }
    nets::LoaderOptions lo;
    lo.batch = cfg.batch;
    lo.seed = cfg.seed;
    lo.augment.pad = cfg.augment_pad;
    lo.augment.flip = cfg.augment_flip;
    std::vector<std::vector<int64_t>> mine(parts.begin() + first, parts.begin() + first + local);
    loader = std::make_unique<nets::MultiNodeLoader>(train, mine, lo, first);

    if (cfg.augment_pad > std::min(train.h, train.w))
      throw ConfigError(
          fmt::format("invalid setting augment-pad = {}: expected at most the image "
                      "size ({} x {})",
                      cfg.augment_pad, train.h, train.w));
    model = nets::make_model(model_spec());
    if (nets::QuantContext* q = model->quant()) {  // 8-bit layers: streams keyed by global node
      q->seed = cfg.seed;
      q->first_node = first;
    }
    // Before any per-node buffer: a node count the machine cannot hold is a clear error, not a
    // failed allocation. About a dozen rows of d floats per local node (model, gradients,
    // optimizer and gossip state, message tables).
    check_memory(
        "nodes", std::to_string(cfg.nodes),
        12.0 * 4.0 * static_cast<double>(nets::padded_ld(model->num_params())) * local +
            4.0 * static_cast<double>(cfg.batch) * local * static_cast<double>(train.sample_size()),
        fmt::format("{} nodes of {} parameters in this process", local, model->num_params()));
    if (root) {
      avg_model = nets::make_model(model_spec());
      avg_model->set_nodes(1);
    }
    const int64_t d = model->num_params();

    TopologySpec ts;
    ts.name = cfg.topology;
    ts.nodes = cfg.nodes;
    const auto [unit, period] = cfg.schedule_period();
    ts.period = period;
    ts.unit = unit == "epochs" ? PeriodUnit::kEpochs : PeriodUnit::kIterations;
    ts.failure_prob = cfg.failure_prob;
    ts.seed = cfg.seed;
    schedule = std::make_unique<Schedule>(make_schedule(ts));
    backend = kernels::make_cpu_backend();

    AlgorithmSpec as;
    as.kind = algorithm_kind_from_string(cfg.algorithm);
    as.eta = cfg.eta;
    as.compressor.kind = kernels::compressor_kind_from_string(cfg.compressor);
    as.compressor.density = cfg.density;
    as.compressor.bits = cfg.bits;
    as.compressor.index_codec = kernels::index_codec_from_string(cfg.index_codec);
    as.compressor.seed = cfg.seed;
    as.layerwise = !cfg.global_compression;
    as.local_steps = cfg.local_steps;
    as.scsp_final_rounds = cfg.scsp_final_rounds;
    as.scsp_final_with_updates = cfg.scsp_final_with_updates;
    as.central.fedavg_fraction = cfg.fedavg_fraction;
    as.central.gaia_threshold = cfg.gaia_threshold;
    as.central.dgc_warmup_epochs = cfg.dgc_warmup_epochs;
    as.central.dgc_clip = cfg.dgc_clip;
    as.central.dgc_momentum = cfg.momentum;
    as.central.dgc_weight_decay = cfg.weight_decay;
    as.central.add_drop_density = cfg.add_drop_density;
    as.central.dense_epochs = cfg.dense_epochs;
    algo = make_algorithm(as, model->layout(), *schedule, *backend, comm);

    nets::NodeMatrix x0(local, d);
    model->init(x0, cfg.seed);
    algo->init(x0);
    nets::OptimizerSpec os;
    os.momentum = cfg.momentum;
    os.nesterov = cfg.nesterov;
    os.weight_decay = cfg.weight_decay;
    os.qgm = cfg.qgm;
    if (algo->owns_momentum()) {  // DGC: momentum correction and weight decay are its own
      os.momentum = 0;
      os.nesterov = false;
      os.weight_decay = 0;
      os.qgm = false;
    }
    opt = std::make_unique<nets::Optimizer>(os, local, d);
    grads = nets::NodeMatrix(local, d);
    zbar = nets::NodeMatrix(1, d);
    if (cfg.skewscout) build_skewscout();
  }

  // ---- SkewScout ------------------------------------------------------------------------
  // Once per epoch every node's model "travels" to its partner (node i + 1): it is evaluated
  // on a fixed sample of the partner's training data and on one of its own, and the mean gap
  // drives the controller (runtime/skewscout.h). Every rank holds the training set, so the
  // rank of node i evaluates its model on the partner's sample itself; the model's bytes (and
  // a header) are counted as communication all the same.

  void build_skewscout() {
    auto [knob, grid] = cfg.skewscout_knob();
    scout_knob = knob;
    const double start = knob == "gaia-threshold" ? cfg.gaia_threshold : cfg.local_steps;
    SkewScout probe({.grid = grid, .target = cfg.skewscout_target}, 0);
    scout = std::make_unique<SkewScout>(SkewScoutSpec{.grid = grid, .target = cfg.skewscout_target},
                                        probe.nearest(start));
    apply_knob();
    scout_samples.resize(static_cast<size_t>(cfg.nodes));
    for (int i = 0; i < cfg.nodes; ++i) {
      std::vector<int64_t> ids = parts[i];
      std::mt19937_64 rng(cfg.seed * 1000003u + static_cast<uint64_t>(i) + 0x5c0u);
      std::shuffle(ids.begin(), ids.end(), rng);
      ids.resize(static_cast<size_t>(
          std::min<int64_t>(cfg.skewscout_samples, static_cast<int64_t>(ids.size()))));
      scout_samples[i] = std::move(ids);
    }
  }

  void apply_knob() {
    if (scout_knob == "gaia-threshold")
      algo->set_gaia_threshold(scout->value());
    else
      algo->set_local_steps(static_cast<int>(scout->value()));
  }

  // The iteration of an epoch at which the models travel: the last one in the epoch that ends
  // with a communication round (the local models before they are averaged), else the last.
  int64_t travel_iteration(int epoch) const {
    const int64_t first_it = static_cast<int64_t>(epoch) * iters_per_epoch;
    const int64_t h = algo->spec().local_steps;
    for (int64_t t = first_it + iters_per_epoch - 1; t >= first_it; --t)
      if ((t + 1) % h == 0) return t;
    return first_it + iters_per_epoch - 1;
  }

  // Accuracy of each local node's model on each node's sample in `of` (one per local node).
  std::vector<double> sample_accuracy(const nets::NodeMatrix& z, const std::vector<int>& of) {
    std::vector<double> correct(static_cast<size_t>(local), 0.0);
    const int64_t ss = train.sample_size();
    const int64_t chunk = 250;
    int64_t most = 0;
    for (int r = 0; r < local; ++r)
      most = std::max<int64_t>(most, static_cast<int64_t>(scout_samples[of[r]].size()));
    for (int64_t start = 0; start < most; start += chunk) {
      const int64_t m = std::min(chunk, most - start);
      eval_input.resize(local, m, train.c, train.h, train.w);
      eval_labels.assign(static_cast<size_t>(local * m), 0);
      for (int r = 0; r < local; ++r) {
        const std::vector<int64_t>& ids = scout_samples[of[r]];
        for (int64_t q = 0; q < m; ++q) {
          // Shorter samples wrap around; only their own entries are counted below.
          const int64_t id =
              ids[static_cast<size_t>((start + q) % static_cast<int64_t>(ids.size()))];
          std::copy(train.image(id), train.image(id) + ss, eval_input.node(r) + q * ss);
          eval_labels[static_cast<size_t>(r * m + q)] = train.labels[static_cast<size_t>(id)];
        }
      }
      const nets::LossStats st = model->evaluate(eval_input, eval_labels.data(), z);
      for (int r = 0; r < local; ++r) {
        const auto size = static_cast<int64_t>(scout_samples[of[r]].size());
        if (start < size) {
          // Count only this node's own samples of the chunk (no wrapped repeats).
          const int64_t own = std::min(m, size - start);
          correct[r] += own == m ? static_cast<double>(st.correct[r])
                                 : static_cast<double>(st.correct[r]) * static_cast<double>(own) /
                                       static_cast<double>(m);
        }
      }
      comm.poll();
    }
    for (int r = 0; r < local; ++r) correct[r] /= static_cast<double>(scout_samples[of[r]].size());
    return correct;
  }

  void measure_accuracy_loss() {
    const nets::NodeMatrix& z = algo->z();
    std::vector<int> home(static_cast<size_t>(local)), partner(static_cast<size_t>(local));
    for (int r = 0; r < local; ++r) {
      home[r] = first + r;
      partner[r] = (first + r + 1) % cfg.nodes;
    }
    const std::vector<double> acc_home = sample_accuracy(z, home);
    const std::vector<double> acc_remote = sample_accuracy(z, partner);
    std::vector<double> mine(2 * static_cast<size_t>(local));
    for (int r = 0; r < local; ++r) {
      mine[2 * r] = acc_home[r];
      mine[2 * r + 1] = acc_remote[r];
    }
    std::vector<double> all(2 * static_cast<size_t>(cfg.nodes));
    comm.allgather_nodes(mine.data(), 2 * sizeof(double), all.data());
    double al = 0, home_mean = 0, remote_mean = 0;
    std::vector<double> al_nodes(static_cast<size_t>(cfg.nodes));
    for (int i = 0; i < cfg.nodes; ++i) {
      al_nodes[i] = all[2 * i] - all[2 * i + 1];
      al += al_nodes[i] / cfg.nodes;
      home_mean += all[2 * i] / cfg.nodes;
      remote_mean += all[2 * i + 1] / cfg.nodes;
    }
    // The travelling models: one model and its header per local node.
    const double model_bytes = 4.0 * static_cast<double>(model->num_params());
    CommStats& st = algo->stats_mutable();
    st.bytes_actual +=
        static_cast<uint64_t>(local) * (static_cast<uint64_t>(model_bytes) + sizeof(MessageHeader));
    st.bytes_paper += local * model_bytes;
    st.messages += static_cast<uint64_t>(local);
    scout_measured = {
        {"accuracy_loss", al},    {"accuracy_loss_nodes", al_nodes},
        {"acc_home", home_mean},  {"acc_remote", remote_mean},
        {"iteration", iteration}, {"travel_bytes_per_node", model_bytes + sizeof(MessageHeader)}};
  }

  void check_output_dir() {
    const bool has_run = fs::exists(out / kManifestFile) || fs::exists(out / kMetricsFile) ||
                         fs::exists(out / kConfigFile);
    if (cfg.resume) {
      if (!fs::exists(out / kManifestFile))
        throw CheckpointError(
            fmt::format("--resume: no checkpoint at {}; expected a run started "
                        "with --out {}",
                        (out / kManifestFile).string(), cfg.out));
      return;
    }
    if (has_run && !cfg.overwrite)
      throw ConfigError(fmt::format(
          "invalid setting out = '{}': it already holds a run; use --resume to continue it or "
          "--overwrite to replace it",
          cfg.out));
    if (fs::exists(out) && !fs::is_directory(out))
      throw ConfigError(fmt::format("invalid setting out = '{}': not a directory", cfg.out));
    // The folder (or the nearest existing folder above it, where it will be made) must be
    // writable; checked without creating anything.
    std::error_code ec;
    fs::path probe = fs::absolute(out, ec);
    while (!probe.empty() && !fs::exists(probe, ec) && probe.has_parent_path() &&
           probe.parent_path() != probe)
      probe = probe.parent_path();
    if (!fs::is_directory(probe, ec))
      throw ConfigError(fmt::format("invalid setting out = '{}': '{}' is not a directory", cfg.out,
                                    probe.string()));
    struct statvfs fsinfo {};
    if (::access(probe.c_str(), W_OK | X_OK) != 0 ||
        (::statvfs(probe.c_str(), &fsinfo) == 0 && (fsinfo.f_flag & ST_RDONLY)))
      throw ConfigError(fmt::format(
          "invalid setting out = '{}': cannot write in '{}' ({})", cfg.out, probe.string(),
          (fsinfo.f_flag & ST_RDONLY) ? "read-only file system" : std::strerror(errno)));
  }

  // ---- checkpoints ----------------------------------------------------------------------
  // One shard per rank holds its nodes' state; the manifest (rank 0) names the shards of the
  // last epoch whose shards were all written, so a resume never mixes epochs.

  Checkpoint make_shard() {
    Checkpoint ck;
    ck.meta["format"] = kShardFormat;
    ck.meta["version"] = version();
    ck.meta["config"] = cfg.trajectory_json();
    ck.meta["epochs_done"] = epochs_done;
    ck.meta["iteration"] = iteration;
    ck.meta["in_epoch"] = in_epoch;
    ck.meta["rank"] = comm.rank();
    ck.meta["ranks"] = comm.ranks();
    ck.meta["first_node"] = first;
    ck.meta["local_nodes"] = local;
    ck.meta["params"] = model->num_params();
    if (scout) {
      ck.meta["skewscout"] = scout->state();
      ck.meta["skewscout_measured"] = scout_measured;
    }
    algo->save_state([&](const std::string& name, const float* data, int64_t count) {
      ck.put_floats("algo/" + name, data, count);
    });
    for (const auto& [name, cs] : {std::pair<const char*, const CommStats*>{"comm", &algo->stats()},
                                   {"epoch/comm", &epoch_start_stats}}) {
      const double stats[7] = {static_cast<double>(cs->rounds),
                               static_cast<double>(cs->bytes_actual),
                               cs->bytes_paper,
                               cs->bytes_dense,
                               static_cast<double>(cs->messages),
                               static_cast<double>(cs->bytes_down),
                               cs->bytes_down_paper};
      ck.put_bytes(name, stats, sizeof(stats));
    }
    ck.put_floats("opt/momentum", opt->momentum().data(),
                  opt->momentum().rows() * opt->momentum().ld());
    ck.put_floats("opt/previous", opt->previous().data(),
                  opt->previous().rows() * opt->previous().ld());
    for (const auto& b : model->buffers())
      ck.put_floats("model/" + b.name, b.data->data(), static_cast<int64_t>(b.data->size()));
    std::vector<int64_t> ls;
    for (const auto& s : loader->state()) {
      ls.push_back(s.epoch);
      ls.push_back(s.position);
    }
    ck.put_bytes("loader", ls.data(), ls.size() * sizeof(int64_t));
    ck.put_bytes("epoch/loss", node_loss.data(), node_loss.size() * sizeof(double));
    ck.put_bytes("epoch/correct", node_correct.data(), node_correct.size() * sizeof(double));
    return ck;
  }

  void save_checkpoint(double elapsed) {
    // 1. Every rank writes its shard (atomically).
    struct Written {
      int64_t ok = 0;
      uint64_t bytes = 0;
      uint32_t crc = 0;
      uint32_t pad = 0;
    } mine;
    std::string error;
    const std::string name = shard_name(iteration, comm.rank());
    try {
      const WrittenCheckpoint w = write_checkpoint((out / name).string(), make_shard());
      mine = {1, w.bytes, w.crc32, 0};
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::vector<Written> all(static_cast<size_t>(comm.ranks()));
    comm.allgather_ranks(&mine, sizeof(mine), all.data());
    const std::string failed = comm.agree(error);
    if (!failed.empty())
      throw CheckpointError(
          fmt::format("iteration {}: a checkpoint shard could not be written "
                      "({}); the last committed checkpoint stays valid",
                      iteration, failed));
    // 2. Rank 0 commits the manifest once every shard is on disk.
    std::string commit_error;
    if (root) {
      try {
        nlohmann::json m;
        m["format"] = kManifestFormat;
        m["version"] = version();
        m["epochs_done"] = epochs_done;
        m["iteration"] = iteration;
        m["in_epoch"] = in_epoch;
        m["elapsed_seconds"] = elapsed;
        m["ranks"] = comm.ranks();
        m["nodes"] = cfg.nodes;
        m["shards"] = nlohmann::json::array();
        for (int r = 0; r < comm.ranks(); ++r)
          m["shards"].push_back({{"rank", r},
                                 {"file", shard_name(iteration, r)},
                                 {"bytes", all[r].bytes},
                                 {"crc32", all[r].crc}});
        write_text_atomic(out / kManifestFile, m.dump(2) + "\n");
      } catch (const std::exception& e) {
        commit_error = e.what();
      }
    }
    const std::string committed = comm.agree(commit_error);
    if (!committed.empty())
      throw CheckpointError(
          fmt::format("iteration {}: the checkpoint manifest could not be "
                      "written ({}); the last committed checkpoint stays valid",
                      iteration, committed));
    // 3. Shards of earlier iterations are no longer referenced.
    remove_shards(comm.rank(), iteration);
  }

  // Removes the shard files of `rank` (any rank when rank < 0) except the one of iteration
  // `keep`.
  void remove_shards(int rank, int64_t keep) {
    std::error_code ec;
    if (!fs::is_directory(out, ec)) return;
    for (const auto& entry : fs::directory_iterator(out, ec)) {
      const std::string f = entry.path().filename().string();
      long long i = 0;
      int r = 0;
      char tail = 0;
      if (std::sscanf(f.c_str(), "checkpoint-i%lld-r%d.ckp%c", &i, &r, &tail) != 3 || tail != 't' ||
          f != shard_name(i, r))
        continue;
      if ((rank < 0 || r == rank) && !(r == rank && i == keep)) fs::remove(entry.path(), ec);
    }
  }

  std::string read_manifest_text() {
    const fs::path path = out / kManifestFile;
    std::ifstream in(path);
    if (!in)
      throw CheckpointError(fmt::format("checkpoint {}: cannot open for reading", path.string()));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  void load_checkpoint(const std::string& text) {
    const std::string mpath = (out / kManifestFile).string();
    auto bad = [&](const std::string& what) {
      return CheckpointError(fmt::format("checkpoint {}: {}", mpath, what));
    };
    nlohmann::json m;
    try {
      m = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw bad(fmt::format("not valid JSON: {}", e.what()));
    }
    if (!m.is_object() || m.value("format", "") != kManifestFormat)
      throw bad("not a spush-train checkpoint manifest");
    int ranks = 0, nodes = 0;
    try {
      epochs_done = m.at("epochs_done").get<int>();
      iteration = m.at("iteration").get<int64_t>();
      in_epoch = m.at("in_epoch").get<int64_t>();
      elapsed_before = m.at("elapsed_seconds").get<double>();
      ranks = m.at("ranks").get<int>();
      nodes = m.at("nodes").get<int>();
    } catch (const std::exception& e) {
      throw bad(fmt::format("missing or mistyped field: {}", e.what()));
    }
    if (nodes != cfg.nodes)
      throw bad(fmt::format("written for {} nodes, this run has {}", nodes, cfg.nodes));
    if (ranks != comm.ranks())
      throw bad(fmt::format(
          "written by {} rank(s), this run has {}; resume with the same number of processes ({})",
          ranks, comm.ranks(),
          ranks == 1 ? "one process, without mpirun" : fmt::format("mpirun -np {}", ranks)));
    if (epochs_done < 0 || in_epoch < 0 || in_epoch >= iters_per_epoch ||
        (epochs_done == 0 && in_epoch == 0) ||
        iteration != static_cast<int64_t>(epochs_done) * iters_per_epoch + in_epoch ||
        !std::isfinite(elapsed_before) || elapsed_before < 0)
      throw bad(
          fmt::format("inconsistent progress: epochs_done {}, iteration {}, in_epoch {} "
                      "({} iterations per epoch), elapsed {} s",
                      epochs_done, iteration, in_epoch, iters_per_epoch, elapsed_before));
    if (epochs_done >= cfg.epochs)
      throw bad(fmt::format("the run already finished its {} epochs", epochs_done));
    if (!m.contains("shards") || !m.at("shards").is_array() ||
        static_cast<int>(m.at("shards").size()) != ranks)
      throw bad("the shard list is missing or does not have one entry per rank");
    const nlohmann::json& mine = m.at("shards").at(static_cast<size_t>(comm.rank()));
    std::string file;
    uint64_t bytes = 0;
    uint32_t crc = 0;
    try {
      file = mine.at("file").get<std::string>();
      bytes = mine.at("bytes").get<uint64_t>();
      crc = mine.at("crc32").get<uint32_t>();
    } catch (const std::exception& e) {
      throw bad(fmt::format("shard entry of rank {}: {}", comm.rank(), e.what()));
    }
    if (file != shard_name(iteration, comm.rank()))
      throw bad(fmt::format("rank {}'s shard is '{}', expected '{}'", comm.rank(), file,
                            shard_name(iteration, comm.rank())));

    const std::string path = (out / file).string();
    const Checkpoint ck = read_checkpoint(path);
    if (ck.file_bytes != bytes || ck.crc32 != crc)
      throw CheckpointError(fmt::format(
          "checkpoint {}: {} bytes with checksum {:08x}, but the manifest {} recorded {} bytes "
          "with checksum {:08x} (a shard of another epoch or run?)",
          path, ck.file_bytes, ck.crc32, mpath, bytes, crc));
    check_shard_meta(ck, path);
    // The state must be finite: a checkpoint with a valid checksum may still hold garbage.
    auto finite = [&](const std::string& name, const float* data, int64_t count) {
      for (int64_t k = 0; k < count; ++k)
        if (!std::isfinite(data[k]))
          throw CheckpointError(
              fmt::format("checkpoint {}: entry '{}' holds a non-finite value "
                          "at {}",
                          path, name, k));
    };
    try {
      algo->load_state([&](const std::string& name, float* data, int64_t count) {
        ck.get_floats("algo/" + name, data, count);
        finite("algo/" + name, data, count);
      });
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(fmt::format("checkpoint {}: {}", path, e.what()));
    }
    for (const auto& [name, cs] :
         {std::pair<const char*, CommStats*>{"comm", &algo->stats_mutable()},
          {"epoch/comm", &epoch_start_stats}}) {
      double stats[7];
      ck.get_bytes(name, stats, sizeof(stats));
      for (int q = 0; q < 7; ++q) {
        const double v = stats[q];
        // Counts are whole numbers; the papers' byte conventions may hold fractions (bits / 8).
        const bool whole = q != 2 && q != 3 && q != 6;
        if (!std::isfinite(v) || v < 0 || v > 9.0e15 || (whole && v != std::floor(v)))
          throw CheckpointError(fmt::format(
              "checkpoint {}: entry '{}': communication counts are corrupt", path, name));
      }
      cs->rounds = static_cast<uint64_t>(stats[0]);
      cs->bytes_actual = static_cast<uint64_t>(stats[1]);
      cs->bytes_paper = stats[2];
      cs->bytes_dense = stats[3];
      cs->messages = static_cast<uint64_t>(stats[4]);
      cs->bytes_down = static_cast<uint64_t>(stats[5]);
      cs->bytes_down_paper = stats[6];
    }
    for (nets::NodeMatrix* mat : {&opt->momentum(), &opt->previous()}) {
      const std::string name = mat == &opt->momentum() ? "opt/momentum" : "opt/previous";
      ck.get_floats(name, mat->data(), mat->rows() * mat->ld());
      finite(name, mat->data(), mat->rows() * mat->ld());
    }
    for (const auto& b : model->buffers()) {
      ck.get_floats("model/" + b.name, b.data->data(), static_cast<int64_t>(b.data->size()));
      finite("model/" + b.name, b.data->data(), static_cast<int64_t>(b.data->size()));
    }
    node_loss.assign(static_cast<size_t>(local), 0.0);
    node_correct.assign(static_cast<size_t>(local), 0.0);
    ck.get_bytes("epoch/loss", node_loss.data(), node_loss.size() * sizeof(double));
    ck.get_bytes("epoch/correct", node_correct.data(), node_correct.size() * sizeof(double));
    for (size_t r = 0; r < node_loss.size(); ++r)
      if (!std::isfinite(node_loss[r]) || node_loss[r] < 0 || !(node_correct[r] >= 0) ||
          node_correct[r] > static_cast<double>(in_epoch) * cfg.batch)
        throw CheckpointError(
            fmt::format("checkpoint {}: the epoch's loss or accuracy counts are corrupt", path));
    std::vector<int64_t> ls(2 * static_cast<size_t>(local));
    ck.get_bytes("loader", ls.data(), ls.size() * sizeof(int64_t));
    std::vector<nets::LoaderState> st(static_cast<size_t>(local));
    for (int i = 0; i < local; ++i) st[i] = {ls[2 * i], ls[2 * i + 1]};
    try {
      loader->set_state(st);
    } catch (const std::exception& e) {
      throw CheckpointError("checkpoint " + path + ": data loader state does not fit: " + e.what());
    }
    resumed = true;
    if (!root) return;
    // Keep the metrics of the epochs the checkpoint covers.
    std::ifstream in(out / kMetricsFile);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      try {
        if (nlohmann::json::parse(line).at("epoch").get<int>() <= epochs_done)
          metrics_lines.push_back(line);
      } catch (const std::exception&) {
        // A damaged trailing line (crash while writing) is dropped.
      }
    }
  }

  void check_shard_meta(const Checkpoint& ck, const std::string& path) {
    auto bad = [&](const std::string& what) {
      return CheckpointError(fmt::format("checkpoint {}: {}", path, what));
    };
    const nlohmann::json& meta = ck.meta;
    if (!meta.is_object() || meta.value("format", "") != kShardFormat)
      throw bad("not a spush-train checkpoint shard");
    try {
      if (meta.at("epochs_done").get<int>() != epochs_done ||
          meta.at("iteration").get<int64_t>() != iteration ||
          meta.at("in_epoch").get<int64_t>() != in_epoch)
        throw bad(fmt::format("holds iteration {}, the manifest iteration {}",
                              meta.at("iteration").dump(), iteration));
      if (meta.at("rank").get<int>() != comm.rank() ||
          meta.at("ranks").get<int>() != comm.ranks() ||
          meta.at("first_node").get<int>() != first || meta.at("local_nodes").get<int>() != local)
        throw bad(fmt::format(
            "belongs to rank {} of {} (nodes from {}, {} of them), expected "
            "rank {} of {} (nodes from {}, {})",
            meta.at("rank").dump(), meta.at("ranks").dump(), meta.at("first_node").dump(),
            meta.at("local_nodes").dump(), comm.rank(), comm.ranks(), first, local));
      if (meta.at("params").get<int64_t>() != model->num_params())
        throw bad(fmt::format("holds {} parameters per node, the model has {}",
                              meta.at("params").dump(), model->num_params()));
    } catch (const nlohmann::json::exception& e) {
      throw bad(fmt::format("missing or mistyped field: {}", e.what()));
    }
    const nlohmann::json want = cfg.trajectory_json();
    if (!meta.contains("config") || !meta.at("config").is_object())
      throw bad("missing or mistyped field: config");
    const nlohmann::json& have = meta.at("config");
    for (auto it = want.begin(); it != want.end(); ++it) {
      if (it.key() == "epochs") continue;  // a run may be extended
      if (!have.contains(it.key()) || have.at(it.key()) != it.value())
        throw bad(fmt::format(
            "written with {} = {}, but this run has {} = {}; resume with the settings of the "
            "original run (see {})",
            it.key(), have.contains(it.key()) ? have.at(it.key()).dump() : "(unset)", it.key(),
            it.value().dump(), (out / kConfigFile).string()));
    }
    if (!have.contains("epochs") ||
        (have.at("epochs") != want.at("epochs") && cfg.lr_schedule == "step"))
      throw bad(fmt::format(
          "written for {} epochs, this run asks for {}; the step learning-rate schedule depends "
          "on the epoch count",
          have.contains("epochs") ? have.at("epochs").dump() : "(unset)", cfg.epochs));
    if (scout) {
      if (!meta.contains("skewscout") || !meta.contains("skewscout_measured"))
        throw bad("missing field: skewscout (the controller's state)");
      try {
        scout->restore(meta.at("skewscout"));
      } catch (const std::invalid_argument& e) {
        throw bad(e.what());
      }
      const nlohmann::json& measured = meta.at("skewscout_measured");
      if (!measured.is_null() && (!measured.is_object() || !measured.contains("accuracy_loss") ||
                                  !measured.at("accuracy_loss").is_number() ||
                                  !std::isfinite(measured.at("accuracy_loss").get<double>())))
        throw bad(
            "field skewscout_measured: expected null or an object with a finite "
            "accuracy_loss");
      scout_measured = measured;
      apply_knob();
    }
  }

  // ---- learning rate ----------------------------------------------------------------------
  float lr_at(int epoch) const {
    if (epoch < cfg.warmup_epochs) return static_cast<float>(cfg.lr / 10);
    double lr = cfg.lr;
    if (cfg.lr_schedule == "step") {
      if (epoch >= static_cast<int>(std::ceil(0.5 * cfg.epochs))) lr *= 0.1;
      if (epoch >= static_cast<int>(std::ceil(0.75 * cfg.epochs))) lr *= 0.1;
    }
    return static_cast<float>(lr);
  }

  // ---- evaluation -------------------------------------------------------------------------
  // Per-node test accuracy of z_i (the served models: the server's model for the algorithms that
  // have one), and of the averaged model (mean of z and of the buffers);
  // every sum over nodes in node order (Communicator::allreduce_sum), so the numbers do not
  // depend on the split of the nodes over ranks.
  nlohmann::json evaluate() {
    const nets::NodeMatrix& z = algo->served_models();
    const int n = cfg.nodes;
    const int64_t d = model->num_params();
    // Averaged model: z and the per-node buffers, summed over all nodes.
    auto node_bufs = model->buffers();
    int64_t width = d;
    for (const auto& b : node_bufs) width += b.per_node;
    std::vector<double> sums(static_cast<size_t>(local) * static_cast<size_t>(width));
    for (int r = 0; r < local; ++r) {
      double* row = sums.data() + static_cast<size_t>(r) * static_cast<size_t>(width);
      for (int64_t k = 0; k < d; ++k) row[k] = z.row(r)[k];
      int64_t at = d;
      for (const auto& b : node_bufs) {
        for (int64_t k = 0; k < b.per_node; ++k) row[at + k] = (*b.data)[r * b.per_node + k];
        at += b.per_node;
      }
    }
    comm.allreduce_sum(sums.data(), width);
    for (int64_t k = 0; k < d; ++k) zbar.row(0)[k] = static_cast<float>(sums[k] / n);
    // Divergence and consensus distance of the z_i.
    std::vector<double> dist(static_cast<size_t>(local));
    for (int r = 0; r < local; ++r) {
      double s = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double diff = z.row(r)[k] - zbar.row(0)[k];
        s += diff * diff;
      }
      dist[r] = s;
    }
    // Test set in chunks; every node sees the same images.
    const int64_t count =
        cfg.eval_samples > 0 ? std::min(cfg.eval_samples, test.count) : test.count;
    const int64_t chunk = 250;
    const int64_t ss = test.sample_size();
    // Per local node: correct, loss sum, squared distance, sqrt of it, u.
    constexpr int kFields = 5;
    std::vector<double> per(static_cast<size_t>(local) * kFields, 0.0);
    for (int64_t start = 0; start < count; start += chunk) {
      const int64_t m = std::min(chunk, count - start);
      eval_input.resize(local, m, test.c, test.h, test.w);
      eval_labels.resize(static_cast<size_t>(local * m));
      for (int r = 0; r < local; ++r) {
        std::copy(test.image(start), test.image(start) + m * ss, eval_input.node(r));
        std::copy(test.labels.begin() + start, test.labels.begin() + start + m,
                  eval_labels.begin() + r * m);
      }
      const nets::LossStats st = model->evaluate(eval_input, eval_labels.data(), z);
      for (int r = 0; r < local; ++r) {
        per[r * kFields + 0] += static_cast<double>(st.correct[r]);
        per[r * kFields + 1] += st.loss[r] * static_cast<double>(m);
      }
      comm.poll();
    }
    for (int r = 0; r < local; ++r) {
      per[r * kFields + 2] = dist[r];
      per[r * kFields + 3] = std::sqrt(dist[r]);
      per[r * kFields + 4] = algo->u()[r];
    }
    std::vector<double> all(static_cast<size_t>(n) * kFields);
    comm.allgather_nodes(per.data(), sizeof(double) * kFields, all.data());

    nlohmann::json j;
    std::vector<double> acc(n);
    double mean = 0, mean_loss = 0, div = 0, cons = 0;
    double u_min = all[4], u_max = all[4];
    for (int i = 0; i < n; ++i) {
      const double* f = all.data() + static_cast<size_t>(i) * kFields;
      acc[i] = f[0] / static_cast<double>(count);
      mean += acc[i] / n;
      mean_loss += f[1] / static_cast<double>(count) / n;
      cons += f[2];
      div += f[3];
      u_min = std::min(u_min, f[4]);
      u_max = std::max(u_max, f[4]);
    }
    j["test_acc_mean"] = mean;
    j["test_acc_min"] = *std::min_element(acc.begin(), acc.end());
    j["test_acc_max"] = *std::max_element(acc.begin(), acc.end());
    j["test_acc_nodes"] = acc;
    j["test_loss_mean"] = mean_loss;
    j["test_samples"] = count;
    j["divergence"] = div / n;
    j["consensus_distance"] = cons / n;
    j["u_min"] = u_min;
    j["u_max"] = u_max;
    if (root) {
      // The averaged model is evaluated once, by rank 0.
      auto avg_bufs = avg_model->buffers();
      int64_t at = d;
      for (size_t b = 0; b < avg_bufs.size(); ++b) {
        for (int64_t k = 0; k < avg_bufs[b].per_node; ++k)
          (*avg_bufs[b].data)[k] = static_cast<float>(sums[at + k] / n);
        at += avg_bufs[b].per_node;
      }
      int64_t avg_correct = 0;
      double avg_loss = 0;
      for (int64_t start = 0; start < count; start += chunk) {
        const int64_t m = std::min(chunk, count - start);
        nets::Tensor one(1, m, test.c, test.h, test.w);
        std::copy(test.image(start), test.image(start) + m * ss, one.node(0));
        const nets::LossStats sa = avg_model->evaluate(one, test.labels.data() + start, zbar);
        avg_correct += sa.correct[0];
        avg_loss += sa.loss[0] * static_cast<double>(m);
        comm.poll();
      }
      j["test_acc_avg_model"] = static_cast<double>(avg_correct) / static_cast<double>(count);
      j["test_loss_avg_model"] = avg_loss / static_cast<double>(count);
    }
    return j;
  }

  // Per-node CRC32 of x and u: a fingerprint of the final state for comparing runs.
  nlohmann::json node_digests() {
    const nets::NodeMatrix& x = std::as_const(*algo).x();
    std::vector<uint32_t> mine(static_cast<size_t>(local));
    for (int r = 0; r < local; ++r) {
      uLong c = crc32(0L, Z_NULL, 0);
      c = crc32(c, reinterpret_cast<const Bytef*>(x.row(r)),
                static_cast<uInt>(sizeof(float) * x.cols()));
      c = crc32(c, reinterpret_cast<const Bytef*>(&algo->u()[r]), sizeof(float));
      mine[r] = static_cast<uint32_t>(c);
    }
    std::vector<uint32_t> all(static_cast<size_t>(cfg.nodes));
    comm.allgather_nodes(mine.data(), sizeof(uint32_t), all.data());
    nlohmann::json j = nlohmann::json::array();
    for (uint32_t c : all) j.push_back(fmt::format("{:08x}", c));
    return j;
  }

  void print_header() {
    log << fmt::format(
        "spush-train {}: {} nodes, topology {}, {} (compressor {}, density {}, "
        "eta {}), model {} ({} params, norm {}, {}), {} skew {}, device cpu, "
        "{} rank(s) ({} transport), {} OpenMP threads per rank\n",
        version(), cfg.nodes, schedule->describe(), cfg.algorithm, cfg.compressor, cfg.density,
        algo->spec().eta, cfg.model, model->num_params(), cfg.norm,
        cfg.precision == "int8" ? "int8, activations " + cfg.int8_activations : cfg.precision,
        cfg.dataset, cfg.skew, comm.ranks(), comm.name(), omp_get_max_threads());
    log << fmt::format("{} iterations per epoch, batch {} per node; output in {}\n",
                       iters_per_epoch, cfg.batch, out.string());
    log << fmt::format("{:>5} {:>9} {:>8} {:>20} {:>8} {:>10} {:>11} {:>8} {:>8} {:>7}\n", "epoch",
                       "loss", "acc", "node acc min..max", "avg-acc", "diverg.", "MB/node",
                       "compr.", "img/s", "time");
    log.flush();
  }

  // Communication counts of all ranks (exact: they are integers below 2^53).
  CommStats global_stats(const CommStats& s) {
    CommStats g;
    g.rounds = s.rounds;
    g.bytes_actual =
        static_cast<uint64_t>(comm.sum_over_ranks(static_cast<double>(s.bytes_actual)));
    g.bytes_paper = comm.sum_over_ranks(s.bytes_paper);
    g.bytes_dense = comm.sum_over_ranks(s.bytes_dense);
    g.messages = static_cast<uint64_t>(comm.sum_over_ranks(static_cast<double>(s.messages)));
    g.bytes_down = static_cast<uint64_t>(comm.sum_over_ranks(static_cast<double>(s.bytes_down)));
    g.bytes_down_paper = comm.sum_over_ranks(s.bytes_down_paper);
    return g;
  }

  // Whether any rank was asked to stop (SIGINT / SIGTERM): every rank calls this at the same
  // points, so all of them stop after the same iteration.
  bool stop_agreed() {
    const double mine = stop_requested() != 0 ? 1.0 : 0.0;
    return comm.ranks() == 1 ? mine > 0 : comm.sum_over_ranks(mine) > 0;
  }

  void write_metrics() {
    std::string text;
    for (const auto& l : metrics_lines) text += l + "\n";
    write_text_atomic(out / kMetricsFile, text);
  }

  nlohmann::json run() {
    if (root) {
      std::error_code ec;
      fs::create_directories(out, ec);
      if (ec || !fs::is_directory(out))
        throw ConfigError(fmt::format("invalid setting out = '{}': cannot create the folder ({})",
                                      cfg.out, ec ? ec.message() : "not a directory"));
      if (!resumed) {
        // --overwrite: the replaced run's checkpoint and summary must not outlive it.
        fs::remove(out / kManifestFile);
        fs::remove(out / kSummaryFile);
        remove_shards(-1, -1);
      }
    }
    comm.barrier();  // the folder exists (on a shared file system) before any rank writes
    if (!resumed) remove_shards(comm.rank(), -1);
    if (root) {
      write_text_atomic(out / kConfigFile, cfg.to_json().dump(2) + "\n");
      write_metrics();
    }
    print_header();
    if (resumed)
      log << fmt::format(
          "resumed from {} after epoch {}{} (iteration {})\n", (out / kManifestFile).string(),
          epochs_done,
          in_epoch ? fmt::format(" and {} iterations of epoch {}", in_epoch, epochs_done + 1)
                   : std::string(),
          iteration);

    const bool is_scsp = cfg.algorithm == "scsp";
    const int64_t total_iters = iters_per_epoch * cfg.epochs;
    const auto run_start = Clock::now();
    const int first_epoch = epochs_done;
    const bool tty = root && ::isatty(STDERR_FILENO) && !cfg.quiet;
    nlohmann::json last;
    if (!resumed || in_epoch == 0) epoch_start_stats = algo->stats();
    CommStats before_epoch = global_stats(epoch_start_stats);
    int stopped_by = 0;  // the signal that stopped the run, if one did

    for (int epoch = first_epoch; epoch < cfg.epochs && !stopped_by; ++epoch) {
      const auto epoch_start = Clock::now();
      const float lr = lr_at(epoch);
      algo->set_lr_ratio(static_cast<double>(lr) / cfg.lr);
      const int64_t first_it = in_epoch;  // > 0 when resuming in the middle of this epoch
      const int64_t travel_at = scout ? travel_iteration(epoch) : -1;
      if (first_it == 0) {
        node_loss.assign(static_cast<size_t>(local), 0.0);
        node_correct.assign(static_cast<size_t>(local), 0.0);
        epoch_start_stats = algo->stats();
      }
      auto last_print = Clock::now();
      for (int64_t it = first_it; it < iters_per_epoch; ++it) {
        input.resize(local, cfg.batch, train.c, train.h, train.w);
        labels.resize(static_cast<size_t>(local) * cfg.batch);
        loader->next_batch(input.data.data(), labels.data());
        const nets::NodeMatrix& z = algo->z();
        if (nets::QuantContext* q = model->quant()) q->iteration = static_cast<uint64_t>(iteration);
        const nets::LossStats st = model->loss_and_grad(input, labels.data(), z, grads);
        for (int r = 0; r < local; ++r) {
          if (!std::isfinite(st.loss[r]))
            throw DivergenceError(fmt::format(
                "training diverged: non-finite loss at epoch {} iteration {} on node {} (lr {}); "
                "the last good checkpoint is {}",
                epoch + 1, iteration, first + r, lr,
                fs::exists(out / kManifestFile) ? (out / kManifestFile).string()
                                                : std::string("(none yet)")));
          node_loss[r] += st.loss[r];
          node_correct[r] += static_cast<double>(st.correct[r]);
        }
        algo->reduce_gradients(grads, iteration, epoch);
        opt->step(algo->x(), grads, lr);
        if (iteration == travel_at) measure_accuracy_loss();
        if (is_scsp && cfg.scsp_final_with_updates &&
            iteration >= total_iters - cfg.scsp_final_rounds)
          algo->gossip_rounds(1, iteration, epoch);
        else
          algo->communicate(iteration, epoch);
        opt->after_mix(std::as_const(*algo).x(), lr);  // reads x: z stays valid
        ++iteration;
        in_epoch = it + 1;

        if (root && !cfg.quiet && (tty || seconds_since(last_print) > 15) &&
            seconds_since(last_print) > 0.5) {
          last_print = Clock::now();
          const double el = seconds_since(epoch_start);
          const double seen = static_cast<double>(it + 1 - first_it) * cfg.nodes * cfg.batch;
          const double rate = seen / el;
          const double left =
              static_cast<double>(total_iters - iteration) * cfg.nodes * cfg.batch / rate;
          double loss_sum = 0;
          for (double l : node_loss) loss_sum += l;
          progress << fmt::format("{}epoch {}/{} iter {}/{} loss {:.4f} {:.0f} img/s ETA {}{}",
                                  tty ? "\r" : "", epoch + 1, cfg.epochs, it + 1, iters_per_epoch,
                                  loss_sum / (static_cast<double>(it + 1) * local), rate,
                                  fmt_duration(left), tty ? "   " : "\n");
          progress.flush();
        }
        // A stop in the middle of an epoch saves the epoch so far; at its end the epoch
        // finishes first (evaluation, metrics, its checkpoint).
        if (it + 1 < iters_per_epoch && stop_agreed()) {
          if (tty) progress << "\r" << std::string(80, ' ') << "\r" << std::flush;
          save_checkpoint(elapsed_before + seconds_since(epoch_start));
          stopped_by = std::max(stop_requested(), 1);
          break;
        }
      }
      if (stopped_by) {
        elapsed_before += seconds_since(epoch_start);
        break;
      }
      if (tty) progress << "\r" << std::string(80, ' ') << "\r" << std::flush;
      if (is_scsp && !cfg.scsp_final_with_updates && epoch == cfg.epochs - 1)
        algo->gossip_rounds(cfg.scsp_final_rounds, iteration, epoch);
      const double train_seconds = seconds_since(epoch_start);

      const double seen = static_cast<double>(iters_per_epoch) * cfg.nodes * cfg.batch;
      nlohmann::json m;
      m["epoch"] = epoch + 1;
      m["iteration"] = iteration;
      m["lr"] = lr;
      m["train_loss"] = comm.sum_over_nodes(node_loss.data()) /
                        (static_cast<double>(iters_per_epoch) * cfg.nodes);
      m["train_acc"] = comm.sum_over_nodes(node_correct.data()) / seen;
      m.update(evaluate());
      const CommStats cs = global_stats(algo->stats());
      const double denom = static_cast<double>(iters_per_epoch) * cfg.nodes;
      m["bytes_per_node_iter"] =
          static_cast<double>(cs.bytes_actual - before_epoch.bytes_actual) / denom;
      m["bytes_per_node_iter_paper"] = (cs.bytes_paper - before_epoch.bytes_paper) / denom;
      m["bytes_per_node"] = static_cast<double>(cs.bytes_actual) / cfg.nodes;
      m["bytes_per_node_paper"] = cs.bytes_paper / cfg.nodes;
      m["mb_per_node"] = static_cast<double>(cs.bytes_actual) / cfg.nodes / 1e6;
      m["compression_factor"] = cs.compression_factor();
      m["compression_factor_paper"] = cs.bytes_paper > 0 ? cs.bytes_dense / cs.bytes_paper : 1.0;
      if (is_centralized(algo->spec().kind)) {
        // Downlink, and the MV paper's bit budgets: bits per parameter and iteration of a node.
        const double per = static_cast<double>(model->num_params()) * denom / 8.0;
        m["bytes_down_per_node_iter"] =
            static_cast<double>(cs.bytes_down - before_epoch.bytes_down) / denom;
        m["bits_per_param_up_paper"] = (cs.bytes_paper - before_epoch.bytes_paper) / per;
        m["bits_per_param_down_paper"] =
            (cs.bytes_down_paper - before_epoch.bytes_down_paper) / per;
        m["compression_factor_down"] =
            cs.bytes_down > 0 ? cs.bytes_dense / static_cast<double>(cs.bytes_down) : 1.0;
        m["compression_factor_down_paper"] =
            cs.bytes_down_paper > 0 ? cs.bytes_dense / cs.bytes_down_paper : 1.0;
      }
      if (scout) {
        nlohmann::json sk = scout_measured.is_null() ? nlohmann::json::object() : scout_measured;
        sk["knob"] = scout_knob;
        if (!scout_measured.is_null()) {
          const SkewScoutDecision dec =
              scout->observe(scout_measured["accuracy_loss"].get<double>());
          apply_knob();
          sk.update(dec.to_json());
        } else {
          sk["value_before"] = sk["value_after"] = scout->value();
          sk["reason"] = "no measurement this epoch";
        }
        sk["target"] = cfg.skewscout_target;
        m["skewscout"] = sk;
        scout_measured = nullptr;
      }
      before_epoch = cs;
      // This invocation's share of the epoch (all of it unless it resumed in the middle).
      m["images_per_sec"] = seen * static_cast<double>(iters_per_epoch - first_it) /
                            static_cast<double>(iters_per_epoch) / train_seconds;
      m["epoch_seconds"] = seconds_since(epoch_start);
      double elapsed = elapsed_before + seconds_since(epoch_start);
      comm.broadcast(&elapsed, sizeof(elapsed), 0);  // rank 0's clock is the run's
      elapsed_before = elapsed;
      m["elapsed_seconds"] = elapsed_before;
      epochs_done = epoch + 1;
      in_epoch = 0;
      // The epoch's sums are in its metrics line: the checkpoint starts the next epoch afresh.
      std::fill(node_loss.begin(), node_loss.end(), 0.0);
      std::fill(node_correct.begin(), node_correct.end(), 0.0);
      epoch_start_stats = algo->stats();

      if (root) {
        metrics_lines.push_back(m.dump());
        write_metrics();
      }
      save_checkpoint(elapsed_before);
      log << fmt::format(
          "{:>5} {:>9.4f} {:>7.2f}% {:>9.2f}%..{:>6.2f}% {:>7.2f}% {:>10.4g} "
          "{:>11.3f} {:>7.1f}x {:>8.0f} {:>7}\n",
          epoch + 1, m["train_loss"].get<double>(), 100 * m["test_acc_mean"].get<double>(),
          100 * m["test_acc_min"].get<double>(), 100 * m["test_acc_max"].get<double>(),
          100 * m.value("test_acc_avg_model", 0.0), m["divergence"].get<double>(),
          m["mb_per_node"].get<double>(), m["compression_factor"].get<double>(),
          m["images_per_sec"].get<double>(), fmt_duration(m["epoch_seconds"].get<double>()));
      log.flush();
      last = m;
      if (epoch + 1 < cfg.epochs && stop_agreed()) {
        stopped_by = std::max(stop_requested(), 1);
        break;
      }
      if (cfg.stop_after > 0 && epoch + 1 - first_epoch >= cfg.stop_after &&
          epoch + 1 < cfg.epochs) {
        log << fmt::format(
            "stopped after {} epoch(s) as requested (--stop-after); continue with "
            "--resume --out {}\n",
            cfg.stop_after, cfg.out);
        break;
      }
    }
    if (stopped_by)
      log << fmt::format(
          "stopped by {} after iteration {} (epoch {}, {} of its {} iterations): checkpoint "
          "written; continue with --resume --out {}\n",
          stop_requested() ? signal_name(stop_requested()) : "a signal to another rank", iteration,
          epochs_done + (in_epoch > 0 ? 1 : 0), in_epoch > 0 ? in_epoch : iters_per_epoch,
          iters_per_epoch, cfg.out);

    nlohmann::json summary;
    summary["epochs_done"] = epochs_done;
    summary["finished"] = epochs_done >= cfg.epochs;
    summary["stopped"] = stopped_by != 0;
    summary["iterations"] = iteration;
    summary["nodes"] = cfg.nodes;
    summary["ranks"] = comm.ranks();
    summary["params"] = model->num_params();
    summary["wall_seconds_this_run"] = seconds_since(run_start);
    summary["train_seconds_total"] = elapsed_before;
    summary["node_digests"] = node_digests();
    for (const char* k :
         {"test_acc_mean", "test_acc_min", "test_acc_max", "test_acc_avg_model", "divergence",
          "mb_per_node", "compression_factor", "compression_factor_paper"})
      if (last.contains(k)) summary[k] = last[k];
    if (root && summary["finished"].get<bool>())
      write_text_atomic(out / kSummaryFile, summary.dump(2) + "\n");
    if (last.contains("test_acc_mean"))
      log << fmt::format(
          "{}: mean node test accuracy {:.2f}% (min {:.2f}%, max {:.2f}%), averaged model "
          "{:.2f}%, {:.2f} MB sent per node, compression {:.1f}x, {} training\n",
          summary["finished"].get<bool>() ? "done" : "paused",
          100 * last["test_acc_mean"].get<double>(), 100 * last["test_acc_min"].get<double>(),
          100 * last["test_acc_max"].get<double>(), 100 * last.value("test_acc_avg_model", 0.0),
          last["mb_per_node"].get<double>(), last["compression_factor"].get<double>(),
          fmt_duration(elapsed_before));
    return summary;
  }
};

Trainer::Trainer(TrainConfig cfg, Communicator& comm, std::ostream& log, std::ostream& progress)
    : impl_(std::make_unique<Impl>(std::move(cfg), comm, log, progress)) {
  impl_->build();
}
Trainer::~Trainer() = default;
nlohmann::json Trainer::run() { return impl_->run(); }
const nets::NodeMatrix& Trainer::x() const { return std::as_const(*impl_->algo).x(); }
const nets::NodeMatrix& Trainer::z() { return impl_->algo->z(); }
const TrainConfig& Trainer::config() const { return impl_->cfg; }
int Trainer::epochs_done() const { return impl_->epochs_done; }

}  // namespace spush::runtime

// The training driver: data, model, graph, gossip algorithm and optimizer wired together, with
// per-epoch evaluation, metrics, and atomic checkpoints that resume bit-identically on the CPU.
#include "spush/runtime/trainer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "spush/nets/data.h"
#include "spush/nets/loader.h"
#include "spush/nets/model.h"
#include "spush/nets/optim.h"
#include "spush/nets/partition.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/checkpoint.h"
#include "spush/runtime/topology.h"
#include "spush/runtime/transport.h"
#include "spush/runtime/version.h"

namespace spush::runtime {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kCheckpointFile = "checkpoint.ckpt";
constexpr const char* kMetricsFile = "metrics.jsonl";
constexpr const char* kConfigFile = "config.json";
constexpr const char* kSummaryFile = "summary.json";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Writes text to path atomically (temporary file, fsync, rename).
void write_text_atomic(const fs::path& path, const std::string& text) {
  const std::string tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("write failed: " + tmp);
  }
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, path);
}

std::string fmt_duration(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const int t = static_cast<int>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60)
                   : fmt::format("{}m{:02}s", t / 60, t % 60);
}

}  // namespace

struct Trainer::Impl {
  TrainConfig cfg;
  std::ostream& log;
  std::ostream& progress;
  fs::path out;

  nets::Dataset train, test;
  std::vector<std::vector<int64_t>> parts;
  std::unique_ptr<nets::MultiNodeLoader> loader;
  std::unique_ptr<nets::Model> model, avg_model;
  std::unique_ptr<Schedule> schedule;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Algorithm> algo;
  std::unique_ptr<nets::Optimizer> opt;
  nets::NodeMatrix grads, zbar;
  nets::Tensor input, eval_input;
  std::vector<int32_t> labels, eval_labels;

  int64_t iters_per_epoch = 0;
  int epochs_done = 0;
  int64_t iteration = 0;
  double elapsed_before = 0;  // training seconds of earlier invocations (resume)
  std::unique_ptr<Checkpoint> resume_from;
  std::vector<std::string> kept_metrics;  // metrics lines of the epochs before a resume

  Impl(TrainConfig c, std::ostream& l, std::ostream& p) : cfg(std::move(c)), log(l), progress(p) {}

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
    return s;
  }

  void build() {
    cfg.validate();
    if (cfg.device == "cuda")
      throw ConfigError(
          "invalid setting device = 'cuda': training runs on the CPU in this version "
          "(GPU kernels cover compression and gossip only); use --device cpu or auto");
    if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
    out = cfg.out;
    check_output_dir();

    const std::string dir = cfg.data_dir.empty() ? nets::default_data_dir() : cfg.data_dir;
    train = nets::load_dataset(cfg.dataset, dir, true);
    test = nets::load_dataset(cfg.dataset, dir, false);

    if (cfg.partition == "skew")
      parts = nets::partition_skew(train.labels, train.num_classes, cfg.nodes, cfg.skew, cfg.seed);
    else if (cfg.partition == "dirichlet")
      parts = nets::partition_dirichlet(train.labels, train.num_classes, cfg.nodes, cfg.alpha,
                                        cfg.seed);
    else
      parts = nets::partition_exclusive(train.labels, train.num_classes, cfg.nodes);
    for (int i = 0; i < cfg.nodes; ++i)
      if (static_cast<int64_t>(parts[i].size()) < cfg.batch)
        throw ConfigError(fmt::format(
            "invalid setting batch = {}: node {} holds only {} training samples ({} nodes, "
            "partition {}); expected batch <= the samples of every node",
            cfg.batch, i, parts[i].size(), cfg.nodes, cfg.partition));
    nets::LoaderOptions lo;
    lo.batch = cfg.batch;
    lo.seed = cfg.seed;
    lo.augment.pad = cfg.augment_pad;
    lo.augment.flip = cfg.augment_flip;
    loader = std::make_unique<nets::MultiNodeLoader>(train, parts, lo);
    iters_per_epoch = loader->min_batches_per_epoch();

    model = nets::make_model(model_spec());
    avg_model = nets::make_model(model_spec());
    avg_model->set_nodes(1);
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
    transport = make_local_transport(cfg.nodes);

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
    algo = make_algorithm(as, model->layout(), *schedule, *transport);

    nets::NodeMatrix x0(cfg.nodes, d);
    model->init(x0, cfg.seed);
    algo->init(x0);
    nets::OptimizerSpec os;
    os.momentum = cfg.momentum;
    os.nesterov = cfg.nesterov;
    os.weight_decay = cfg.weight_decay;
    os.qgm = cfg.qgm;
    opt = std::make_unique<nets::Optimizer>(os, cfg.nodes, d);
    grads = nets::NodeMatrix(cfg.nodes, d);
    zbar = nets::NodeMatrix(1, d);

    if (cfg.resume) load_checkpoint();
  }

  void check_output_dir() {
    const bool has_run = fs::exists(out / kCheckpointFile) || fs::exists(out / kMetricsFile) ||
                         fs::exists(out / kConfigFile);
    if (cfg.resume) {
      if (!fs::exists(out / kCheckpointFile))
        throw CheckpointError(
            fmt::format("--resume: no checkpoint at {}; expected a run started "
                        "with --out {}",
                        (out / kCheckpointFile).string(), cfg.out));
      return;
    }
    if (has_run && !cfg.overwrite)
      throw ConfigError(fmt::format(
          "invalid setting out = '{}': it already holds a run; use --resume to continue it or "
          "--overwrite to replace it",
          cfg.out));
    if (fs::exists(out) && !fs::is_directory(out))
      throw ConfigError(fmt::format("invalid setting out = '{}': not a directory", cfg.out));
  }

  // ---- checkpoints ----------------------------------------------------------------------
  Checkpoint make_checkpoint() {
    Checkpoint ck;
    ck.meta["format"] = "spush-train";
    ck.meta["version"] = version();
    ck.meta["config"] = cfg.trajectory_json();
    ck.meta["epochs_done"] = epochs_done;
    ck.meta["iteration"] = iteration;
    ck.meta["elapsed_seconds"] = elapsed_before;
    ck.meta["nodes"] = cfg.nodes;
    ck.meta["params"] = model->num_params();
    for (const auto& t : algo->state()) ck.put_floats("algo/" + t.name, t.data, t.count);
    const CommStats& cs = algo->stats();
    const double comm[5] = {static_cast<double>(cs.rounds), static_cast<double>(cs.bytes_actual),
                            cs.bytes_paper, cs.bytes_dense, static_cast<double>(cs.messages)};
    ck.put_bytes("comm", comm, sizeof(comm));
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
    return ck;
  }

  void load_checkpoint() {
    const std::string path = (out / kCheckpointFile).string();
    auto ck = std::make_unique<Checkpoint>(read_checkpoint(path));
    if (ck->meta.value("format", "") != "spush-train")
      throw CheckpointError("checkpoint " + path + ": not written by spush-train");
    const nlohmann::json want = cfg.trajectory_json();
    const nlohmann::json& have = ck->meta.at("config");
    for (auto it = want.begin(); it != want.end(); ++it) {
      if (it.key() == "epochs") continue;  // a run may be extended
      if (!have.contains(it.key()) || have.at(it.key()) != it.value())
        throw CheckpointError(fmt::format(
            "checkpoint {}: written with {} = {}, but this run has {} = {}; resume with the "
            "settings of the original run (see {})",
            path, it.key(), have.contains(it.key()) ? have.at(it.key()).dump() : "(unset)",
            it.key(), it.value().dump(), (out / kConfigFile).string()));
    }
    if (have.at("epochs") != want.at("epochs") && cfg.lr_schedule == "step")
      throw CheckpointError(fmt::format(
          "checkpoint {}: written for {} epochs, this run asks for {}; the step learning-rate "
          "schedule depends on the epoch count",
          path, have.at("epochs").dump(), cfg.epochs));
    epochs_done = ck->meta.at("epochs_done").get<int>();
    if (epochs_done >= cfg.epochs)
      throw CheckpointError(
          fmt::format("checkpoint {}: the run already finished its {} epochs", path, epochs_done));
    iteration = ck->meta.at("iteration").get<int64_t>();
    elapsed_before = ck->meta.value("elapsed_seconds", 0.0);
    for (const auto& t : algo->state()) ck->get_floats("algo/" + t.name, t.data, t.count);
    double comm[5];
    ck->get_bytes("comm", comm, sizeof(comm));
    CommStats& cs = algo->stats_mutable();
    cs.rounds = static_cast<uint64_t>(comm[0]);
    cs.bytes_actual = static_cast<uint64_t>(comm[1]);
    cs.bytes_paper = comm[2];
    cs.bytes_dense = comm[3];
    cs.messages = static_cast<uint64_t>(comm[4]);
    ck->get_floats("opt/momentum", opt->momentum().data(),
                   opt->momentum().rows() * opt->momentum().ld());
    ck->get_floats("opt/previous", opt->previous().data(),
                   opt->previous().rows() * opt->previous().ld());
    for (const auto& b : model->buffers())
      ck->get_floats("model/" + b.name, b.data->data(), static_cast<int64_t>(b.data->size()));
    std::vector<int64_t> ls(2 * static_cast<size_t>(cfg.nodes));
    ck->get_bytes("loader", ls.data(), ls.size() * sizeof(int64_t));
    std::vector<nets::LoaderState> st(cfg.nodes);
    for (int i = 0; i < cfg.nodes; ++i) st[i] = {ls[2 * i], ls[2 * i + 1]};
    try {
      loader->set_state(st);
    } catch (const std::exception& e) {
      throw CheckpointError("checkpoint " + path + ": data loader state does not fit: " + e.what());
    }
    // Keep the metrics of the epochs the checkpoint covers.
    std::ifstream in(out / kMetricsFile);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      try {
        if (nlohmann::json::parse(line).at("epoch").get<int>() <= epochs_done)
          kept_metrics.push_back(line);
      } catch (const std::exception&) {
        // A damaged trailing line (crash while writing) is dropped.
      }
    }
    resume_from = std::move(ck);
  }

  void save_checkpoint() { write_checkpoint((out / kCheckpointFile).string(), make_checkpoint()); }

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
  // Per-node test accuracy of z_i, and of the averaged model (mean of z, mean of buffers).
  nlohmann::json evaluate() {
    const nets::NodeMatrix& z = algo->z();
    const int n = cfg.nodes;
    const int64_t d = model->num_params();
    // Averaged model.
    std::fill(zbar.data(), zbar.data() + zbar.ld(), 0.0f);
    for (int i = 0; i < n; ++i)
      for (int64_t k = 0; k < d; ++k) zbar.row(0)[k] += z.row(i)[k];
    for (int64_t k = 0; k < d; ++k) zbar.row(0)[k] /= static_cast<float>(n);
    auto node_bufs = model->buffers();
    auto avg_bufs = avg_model->buffers();
    for (size_t b = 0; b < node_bufs.size(); ++b) {
      const int64_t per = node_bufs[b].per_node;
      for (int64_t k = 0; k < per; ++k) {
        double s = 0;
        for (int i = 0; i < n; ++i) s += (*node_bufs[b].data)[i * per + k];
        (*avg_bufs[b].data)[k] = static_cast<float>(s / n);
      }
    }
    // Divergence and consensus distance of the z_i.
    double div = 0, cons = 0;
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double diff = z.row(i)[k] - zbar.row(0)[k];
        s += diff * diff;
      }
      div += std::sqrt(s);
      cons += s;
    }
    // Test set in chunks; every node sees the same images.
    const int64_t count =
        cfg.eval_samples > 0 ? std::min(cfg.eval_samples, test.count) : test.count;
    const int64_t chunk = 250;
    const int64_t ss = test.sample_size();
    std::vector<int64_t> correct(n, 0);
    std::vector<double> loss(n, 0);
    int64_t avg_correct = 0;
    double avg_loss = 0;
    for (int64_t start = 0; start < count; start += chunk) {
      const int64_t m = std::min(chunk, count - start);
      eval_input.resize(n, m, test.c, test.h, test.w);
      eval_labels.resize(static_cast<size_t>(n * m));
      for (int i = 0; i < n; ++i) {
        std::copy(test.image(start), test.image(start) + m * ss, eval_input.node(i));
        std::copy(test.labels.begin() + start, test.labels.begin() + start + m,
                  eval_labels.begin() + i * m);
      }
      const nets::LossStats st = model->evaluate(eval_input, eval_labels.data(), z);
      for (int i = 0; i < n; ++i) {
        correct[i] += st.correct[i];
        loss[i] += st.loss[i] * static_cast<double>(m);
      }
      nets::Tensor one(1, m, test.c, test.h, test.w);
      std::copy(eval_input.node(0), eval_input.node(0) + m * ss, one.node(0));
      const nets::LossStats sa = avg_model->evaluate(one, eval_labels.data(), zbar);
      avg_correct += sa.correct[0];
      avg_loss += sa.loss[0] * static_cast<double>(m);
    }
    nlohmann::json j;
    std::vector<double> acc(n);
    double mean = 0, mean_loss = 0;
    for (int i = 0; i < n; ++i) {
      acc[i] = static_cast<double>(correct[i]) / static_cast<double>(count);
      mean += acc[i] / n;
      mean_loss += loss[i] / static_cast<double>(count) / n;
    }
    j["test_acc_mean"] = mean;
    j["test_acc_min"] = *std::min_element(acc.begin(), acc.end());
    j["test_acc_max"] = *std::max_element(acc.begin(), acc.end());
    j["test_acc_nodes"] = acc;
    j["test_loss_mean"] = mean_loss;
    j["test_acc_avg_model"] = static_cast<double>(avg_correct) / static_cast<double>(count);
    j["test_loss_avg_model"] = avg_loss / static_cast<double>(count);
    j["test_samples"] = count;
    j["divergence"] = div / n;
    j["consensus_distance"] = cons / n;
    const auto& u = algo->u();
    j["u_min"] = *std::min_element(u.begin(), u.begin() + n);
    j["u_max"] = *std::max_element(u.begin(), u.begin() + n);
    return j;
  }

  void print_header() {
    log << fmt::format(
        "spush-train {}: {} nodes, topology {}, {} (compressor {}, density {}, "
        "eta {}), model {} ({} params, norm {}), {} skew {}, device cpu, "
        "{} OpenMP threads\n",
        version(), cfg.nodes, schedule->describe(), cfg.algorithm, cfg.compressor, cfg.density,
        algo->spec().eta, cfg.model, model->num_params(), cfg.norm, cfg.dataset, cfg.skew,
        omp_get_max_threads());
    log << fmt::format("{} iterations per epoch, batch {} per node; output in {}\n",
                       iters_per_epoch, cfg.batch, out.string());
    log << fmt::format("{:>5} {:>9} {:>8} {:>20} {:>8} {:>10} {:>11} {:>8} {:>8} {:>7}\n", "epoch",
                       "loss", "acc", "node acc min..max", "avg-acc", "diverg.", "MB/node",
                       "compr.", "img/s", "time");
    log.flush();
  }

  nlohmann::json run() {
    fs::create_directories(out);
    if (!resume_from) {
      // --overwrite: the replaced run's checkpoint and summary must not outlive it.
      fs::remove(out / kCheckpointFile);
      fs::remove(out / kSummaryFile);
    }
    write_text_atomic(out / kConfigFile, cfg.to_json().dump(2) + "\n");
    {
      std::string text;
      for (const auto& l : kept_metrics) text += l + "\n";
      write_text_atomic(out / kMetricsFile, text);
    }
    print_header();
    if (resume_from)
      log << fmt::format("resumed from {} after epoch {} (iteration {})\n",
                         (out / kCheckpointFile).string(), epochs_done, iteration);

    const bool is_scsp = cfg.algorithm == "scsp";
    const int64_t total_iters = iters_per_epoch * cfg.epochs;
    const auto run_start = Clock::now();
    const int first_epoch = epochs_done;
    const bool tty = ::isatty(STDERR_FILENO) && !cfg.quiet;
    nlohmann::json last;

    for (int epoch = first_epoch; epoch < cfg.epochs; ++epoch) {
      const auto epoch_start = Clock::now();
      const float lr = lr_at(epoch);
      const uint64_t bytes_before = algo->stats().bytes_actual;
      const double paper_before = algo->stats().bytes_paper;
      double loss_sum = 0;
      int64_t correct = 0, seen = 0;
      auto last_print = Clock::now();
      for (int64_t it = 0; it < iters_per_epoch; ++it, ++iteration) {
        input.resize(cfg.nodes, cfg.batch, train.c, train.h, train.w);
        labels.resize(static_cast<size_t>(cfg.nodes) * cfg.batch);
        loader->next_batch(input.data.data(), labels.data());
        const nets::NodeMatrix& z = algo->z();
        const nets::LossStats st = model->loss_and_grad(input, labels.data(), z, grads);
        for (int i = 0; i < cfg.nodes; ++i) {
          if (!std::isfinite(st.loss[i]))
            throw DivergenceError(fmt::format(
                "training diverged: non-finite loss at epoch {} iteration {} on node {} (lr {}); "
                "the last good checkpoint is {}",
                epoch + 1, iteration, i, lr,
                epochs_done > 0 ? (out / kCheckpointFile).string() : std::string("(none yet)")));
          loss_sum += st.loss[i];
          correct += st.correct[i];
        }
        seen += static_cast<int64_t>(cfg.nodes) * cfg.batch;
        opt->step(algo->x(), grads, lr);
        if (is_scsp && cfg.scsp_final_with_updates &&
            iteration >= total_iters - cfg.scsp_final_rounds)
          algo->gossip_rounds(1, iteration, epoch);
        else
          algo->communicate(iteration, epoch);
        opt->after_mix(algo->x(), lr);

        if (!cfg.quiet && (tty || seconds_since(last_print) > 15) &&
            seconds_since(last_print) > 0.5) {
          last_print = Clock::now();
          const double el = seconds_since(epoch_start);
          const double rate = static_cast<double>(seen) / el;
          const double left =
              static_cast<double>(total_iters - iteration - 1) * cfg.nodes * cfg.batch / rate;
          progress << fmt::format("{}epoch {}/{} iter {}/{} loss {:.4f} {:.0f} img/s ETA {}{}",
                                  tty ? "\r" : "", epoch + 1, cfg.epochs, it + 1, iters_per_epoch,
                                  loss_sum / (static_cast<double>(it + 1) * cfg.nodes), rate,
                                  fmt_duration(left), tty ? "   " : "\n");
          progress.flush();
        }
      }
      if (tty) progress << "\r" << std::string(80, ' ') << "\r" << std::flush;
      if (is_scsp && !cfg.scsp_final_with_updates && epoch == cfg.epochs - 1)
        algo->gossip_rounds(cfg.scsp_final_rounds, iteration, epoch);
      const double train_seconds = seconds_since(epoch_start);

      nlohmann::json m;
      m["epoch"] = epoch + 1;
      m["iteration"] = iteration;
      m["lr"] = lr;
      m["train_loss"] = loss_sum / (static_cast<double>(iters_per_epoch) * cfg.nodes);
      m["train_acc"] = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
      m.update(evaluate());
      const CommStats& cs = algo->stats();
      const double denom = static_cast<double>(iters_per_epoch) * cfg.nodes;
      m["bytes_per_node_iter"] = static_cast<double>(cs.bytes_actual - bytes_before) / denom;
      m["bytes_per_node_iter_paper"] = (cs.bytes_paper - paper_before) / denom;
      m["bytes_per_node_total"] = static_cast<double>(cs.bytes_actual) / cfg.nodes;
      m["bytes_per_node_total_paper"] = cs.bytes_paper / cfg.nodes;
      m["mb_per_node"] = static_cast<double>(cs.bytes_actual) / cfg.nodes / 1e6;
      m["compression_factor"] = cs.compression_factor();
      m["compression_factor_paper"] = cs.bytes_paper > 0 ? cs.bytes_dense / cs.bytes_paper : 1.0;
      m["images_per_sec"] = static_cast<double>(seen) / train_seconds;
      m["epoch_seconds"] = seconds_since(epoch_start);
      elapsed_before += seconds_since(epoch_start);
      m["elapsed_seconds"] = elapsed_before;
      epochs_done = epoch + 1;

      {
        std::ofstream mf(out / kMetricsFile, std::ios::app);
        mf << m.dump() << "\n";
        mf.flush();
        if (!mf) throw std::runtime_error("cannot append to " + (out / kMetricsFile).string());
      }
      save_checkpoint();
      log << fmt::format(
          "{:>5} {:>9.4f} {:>7.2f}% {:>9.2f}%..{:>6.2f}% {:>7.2f}% {:>10.4g} "
          "{:>11.3f} {:>7.1f}x {:>8.0f} {:>7}\n",
          epoch + 1, m["train_loss"].get<double>(), 100 * m["test_acc_mean"].get<double>(),
          100 * m["test_acc_min"].get<double>(), 100 * m["test_acc_max"].get<double>(),
          100 * m["test_acc_avg_model"].get<double>(), m["divergence"].get<double>(),
          m["mb_per_node"].get<double>(), m["compression_factor"].get<double>(),
          m["images_per_sec"].get<double>(), fmt_duration(m["epoch_seconds"].get<double>()));
      log.flush();
      last = m;
      if (cfg.stop_after > 0 && epoch + 1 - first_epoch >= cfg.stop_after &&
          epoch + 1 < cfg.epochs) {
        log << fmt::format(
            "stopped after {} epoch(s) as requested (--stop-after); continue with "
            "--resume --out {}\n",
            cfg.stop_after, cfg.out);
        break;
      }
    }

    nlohmann::json summary;
    summary["epochs_done"] = epochs_done;
    summary["finished"] = epochs_done >= cfg.epochs;
    summary["iterations"] = iteration;
    summary["nodes"] = cfg.nodes;
    summary["params"] = model->num_params();
    summary["wall_seconds_this_run"] = seconds_since(run_start);
    summary["train_seconds_total"] = elapsed_before;
    for (const char* k :
         {"test_acc_mean", "test_acc_min", "test_acc_max", "test_acc_avg_model", "divergence",
          "mb_per_node", "compression_factor", "compression_factor_paper"})
      if (last.contains(k)) summary[k] = last[k];
    if (summary["finished"].get<bool>())
      write_text_atomic(out / kSummaryFile, summary.dump(2) + "\n");
    if (last.contains("test_acc_mean"))
      log << fmt::format(
          "{}: mean node test accuracy {:.2f}% (min {:.2f}%, max {:.2f}%), averaged model "
          "{:.2f}%, {:.2f} MB sent per node, compression {:.1f}x, {} training\n",
          summary["finished"].get<bool>() ? "done" : "paused",
          100 * last["test_acc_mean"].get<double>(), 100 * last["test_acc_min"].get<double>(),
          100 * last["test_acc_max"].get<double>(), 100 * last["test_acc_avg_model"].get<double>(),
          last["mb_per_node"].get<double>(), last["compression_factor"].get<double>(),
          fmt_duration(elapsed_before));
    return summary;
  }
};

Trainer::Trainer(TrainConfig cfg, std::ostream& log, std::ostream& progress)
    : impl_(std::make_unique<Impl>(std::move(cfg), log, progress)) {
  impl_->build();
}
Trainer::~Trainer() = default;
nlohmann::json Trainer::run() { return impl_->run(); }
const nets::NodeMatrix& Trainer::x() const { return impl_->algo->x(); }
const nets::NodeMatrix& Trainer::z() { return impl_->algo->z(); }
const TrainConfig& Trainer::config() const { return impl_->cfg; }
int Trainer::epochs_done() const { return impl_->epochs_done; }

}  // namespace spush::runtime

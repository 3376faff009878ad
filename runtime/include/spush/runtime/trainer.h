// The training driver: n nodes, each with its own model (a row of the node matrix), trained on
// its partition of the data with a local optimizer, communicating with the gossip algorithm
// along the schedule's graphs (docs/ALGORITHMS.md §3, §6, §9).
//
// Per iteration: z = x / u; gradients of every node's minibatch loss at z_i; optimizer step on
// x; communicate + mix; (QGM) momentum update. Per epoch: evaluation (each node's z_i and the
// averaged model on the test set), divergence, bytes, one metrics.jsonl line, a checkpoint.
// All output goes to cfg.out: config.json, metrics.jsonl, checkpoint.ckpt, summary.json.
//
//   TrainConfig cfg; cfg.epochs = 2; cfg.out = "runs/x";
//   Trainer trainer(cfg);          // validates, loads data, builds: throws before any output
//   nlohmann::json summary = trainer.run();
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>

#include "spush/nets/layout.h"
#include "spush/runtime/train_config.h"

namespace spush::runtime {

// Training stopped because the loss became NaN or infinite.
struct DivergenceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Trainer {
 public:
  // Validates cfg, loads the data, builds model, schedule, transport, algorithm and optimizer,
  // and (with cfg.resume) reads and checks the checkpoint. Throws ConfigError, DataError,
  // TopologyError, CheckpointError or std::invalid_argument without writing anything.
  explicit Trainer(TrainConfig cfg, std::ostream& log, std::ostream& progress);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains to cfg.epochs (or cfg.stop_after epochs of this invocation); returns the summary.
  // Throws DivergenceError on a non-finite loss (the last checkpoint stays as it was).
  nlohmann::json run();

  // The push-sum numerators x (one row per node) and de-biased models z.
  const nets::NodeMatrix& x() const;
  const nets::NodeMatrix& z();
  const TrainConfig& config() const;
  // Epochs completed so far.
  int epochs_done() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spush::runtime

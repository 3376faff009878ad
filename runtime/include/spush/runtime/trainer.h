// The training driver of one rank: the local nodes' models (rows of the node matrix), data
// partitions, loaders, optimizer state and random streams, trained with the gossip algorithm
// over the communicator (docs/ALGORITHMS.md; docs/DESIGN.md for the execution model). Every
// node's trajectory depends on the settings alone, not on how many ranks share the nodes.
//
// Per iteration: z = x / u; gradients of every local node's minibatch loss at z_i; optimizer
// step on x; communicate + mix; (QGM) momentum update. Per epoch: evaluation (each node's z_i
// and the averaged model on the test set), divergence, bytes, all reduced over the
// communicator; rank 0 writes one metrics.jsonl line and prints the progress; every rank writes
// its checkpoint shard and rank 0 commits the epoch's manifest once all shards are on disk.
// Files in cfg.out (rank 0 unless said): config.json, metrics.jsonl, summary.json,
// checkpoint.json (the manifest) and checkpoint-e<epoch>-r<rank>.ckpt (each rank's shard).
//
//   TrainConfig cfg; cfg.epochs = 2; cfg.out = "runs/x";
//   auto comm = make_communicator(cfg.transport, cfg.nodes, {cfg.comm_timeout});
//   Trainer trainer(cfg, *comm, std::cout, std::cerr);  // validates, loads, builds; no output
//   nlohmann::json summary = trainer.run();
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>

#include "spush/nets/layout.h"
#include "spush/runtime/communicator.h"
#include "spush/runtime/train_config.h"

namespace spush::runtime {

// Training stopped because the loss became NaN or infinite.
struct DivergenceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Trainer {
 public:
  // Validates cfg, loads the data, builds model, schedule, algorithm and optimizer of the local
  // nodes and (with cfg.resume) reads and checks the checkpoint: collectively, so that every
  // rank throws when any rank failed (with one rank: the original ConfigError, DataError,
  // TopologyError, CheckpointError or std::invalid_argument; with several: a
  // std::runtime_error "rank r: ..."), without writing anything. cfg.nodes must equal
  // comm.world_nodes(). log and progress are used on rank 0 only.
  Trainer(TrainConfig cfg, Communicator& comm, std::ostream& log, std::ostream& progress);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains to cfg.epochs (or cfg.stop_after epochs of this invocation); returns the summary
  // (on every rank). Throws DivergenceError on a non-finite loss (the last checkpoint stays as
  // it was), CommError when a rank is lost.
  nlohmann::json run();

  // The push-sum numerators x (one row per local node) and de-biased models z.
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

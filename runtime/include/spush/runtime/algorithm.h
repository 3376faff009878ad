// The algorithms of a run over the node-batched parameter matrix of the nodes this rank hosts:
//  - the push-sum gossip family (docs/ALGORITHMS.md, "The push-sum family"), one engine for
//    every backend and communicator: SGP / D-PSGD, Deep-Squeeze, Sparse-Push, SCSP and
//    CHOCO-SGD / Quant-SGP (runtime/src/engine.cpp);
//  - the centralized algorithms over the communicator's centralized rounds (docs/ALGORITHMS.md,
//    "Centralized algorithms"): BSP, FederatedAveraging, Gaia, DeepGradientCompression,
//    SSGD with top-K, SSGD-MV and its add-drop (MV-AD) and random-selection (MV-RS) variants
//    (runtime/src/engine_centralized.cpp; cpu backend). They keep no push-sum weights: u = 1
//    and z = x.
//
// Per iteration t, for the local nodes:
//   1. the caller computes gradients at z_i = x_i / u_i  (z()),
//   2. the caller's local optimizer step turns x into x^ in place (x()),
//   3. communicate(t, epoch) compresses, exchanges over the communicator along the schedule's
//      graph for this round and mixes, producing the next x, u and z,
//   4. (QGM) the optimizer's after_mix(x).
// communicate() is a no-op on iterations where (t + 1) % local_steps != 0.
//
// Every buffer of a round (x, z, error feedback, public copies, message tables, wire rows)
// lives in the backend's memory and every step is a backend op; only the mixing terms and the
// push-sum weights u (which depend on the schedule alone) are built on the host. So the same
// spec, schedule and x0 give the same bits on the cpu and the cuda backend and for any split of
// the nodes over ranks.
//
//   auto backend = kernels::make_backend("cpu");
//   auto comm = make_communicator("auto", 16);
//   AlgorithmSpec spec{.kind = AlgorithmKind::kSparsePush};
//   spec.compressor.density = 0.01;
//   auto algo = make_algorithm(spec, layout, schedule, *backend, *comm);
//   algo->init(x0);                                    // x0: host [local_nodes x d]
//   for (t...) { grads at algo->z(); step on algo->x(); algo->communicate(t, epoch); }
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "spush/kernels/backend.h"
#include "spush/kernels/compress.h"
#include "spush/nets/layout.h"
#include "spush/runtime/communicator.h"
#include "spush/runtime/topology.h"

namespace spush::runtime {

enum class AlgorithmKind {
  kSgp,          // D-PSGD / SGP: uncompressed push-sum gossip, x <- W x^
  kDeepSqueeze,  // error-compensated compressed gossip on doubly stochastic graphs
  kSparsePush,   // the same rule on any column-stochastic graph
  kScsp,         // Sparse-Push, then an uncompressed push-sum final phase
  kChoco,        // CHOCO-SGD / Quant-SGP (push-sum CHOCO), public copies
  // Centralized: a parameter server that every rank plays (Communicator::gather_round).
  kBsp,       // synchronous SGD: gradients averaged every iteration
  kFedAvg,    // FederatedAveraging: local steps, then the models averaged
  kGaia,      // Gaia: accumulated updates shared when significant relative to the weight
  kDgc,       // DeepGradientCompression: top-K gradients with momentum correction
  kSsgdTopK,  // sparse SGD: each worker's top-K model difference, error feedback
  kMv,        // SSGD-MV: the top-K of the workers' votes is the common support
  kMvAd,      // SSGD-MV with add-drop votes
  kMvRs,      // SSGD-MV with the support sampled in proportion to the votes
};

// The centralized algorithms' settings (docs/ALGORITHMS.md, "Centralized algorithms").
// K = topk_count(d, compressor.density) over the whole model; index sets travel in the block
// position code (kernels/codec.h).
struct CentralizedSpec {
  double fedavg_fraction = 1.0;    // FedAvg: fraction of the nodes averaged each round, (0, 1]
  double gaia_threshold = 0.1;     // Gaia: significance threshold T0 (|accumulated / w| > T)
  int dgc_warmup_epochs = 4;       // DGC: epochs of the density warm-up (0: none)
  double dgc_clip = 0;             // DGC: local gradient clipping norm (0: off)
  double dgc_momentum = 0.9;       // DGC: momentum of the momentum correction
  double dgc_weight_decay = 1e-4;  // DGC: weight decay added to the gradient
  double add_drop_density = 1e-3;  // MV-AD: at most ceil(rho_ad d) votes added and dropped
  int dense_epochs = 0;            // SSGD-top-K, MV family: epochs of uncompressed averaging
};

struct AlgorithmSpec {
  AlgorithmKind kind = AlgorithmKind::kSparsePush;
  double eta = -1;                       // averaging rate; < 0: default for the compressor
  kernels::CompressorSpec compressor;    // ignored by kSgp
  bool layerwise = true;                 // compress per layout segment (else globally)
  int local_steps = 1;                   // H: communicate every H iterations
  int scsp_final_rounds = 40;            // kScsp: rounds of the final phase
  bool scsp_final_with_updates = false;  // kScsp: final phase keeps local updates (see trainer)
  CentralizedSpec central;               // the centralized kinds
};

AlgorithmKind algorithm_kind_from_string(std::string_view name);  // throws, lists names
const char* to_string(AlgorithmKind kind);
// BSP, FedAvg, Gaia, DGC, SSGD-top-K and the MV family.
bool is_centralized(AlgorithmKind kind);
// Averaging-rate defaults by density (docs/ALGORITHMS.md §3.7: 1 -> 1, 0.5 -> 0.08, 0.1 -> 0.01,
// 0.01 -> 0.005, 0.001 -> 0.001; in between: the value of the nearest density above).
double default_eta(double density);

// The MV family's server rules (docs/ALGORITHMS.md, "Centralized algorithms"): the K positions
// of the common support (ascending) from the per-position vote counts of a round.
// majority_support (SSGD-MV, MV-AD): the K largest counts; ties by a pseudo-random priority of
// the position drawn for the round (philox_uniform(seed, 0x4d56, round, j), the same on every
// rank: no position is favoured round after round), then by the lower index.
std::vector<int32_t> majority_support(const std::vector<double>& votes, int64_t k, uint64_t seed,
                                      uint64_t round);
// sampled_support (MV-RS): K positions drawn without replacement with probabilities in
// proportion to their votes (positions without votes only when fewer than K have any).
std::vector<int32_t> sampled_support(const std::vector<double>& votes, int64_t k, uint64_t seed,
                                     uint64_t round);

// Communication accounting of this rank's nodes, cumulative.
struct CommStats {
  uint64_t rounds = 0;        // communication rounds done
  uint64_t bytes_actual = 0;  // header + payload bytes sent by local nodes (communicator count)
  double bytes_paper = 0;     // papers' convention: gossip: 6 bytes per kept value + 4 for u,
                              // dense = 4 (d + 1); centralized: 32 bits per value plus the
                              // block position code's bits per index
  double bytes_dense = 0;     // gossip: what uncompressed gossip (4 (d + 1) per message) would
                              // send; centralized: what BSP would send up (4 d per node and
                              // iteration)
  uint64_t messages = 0;      // messages sent by local nodes
  // Centralized: what the server sends the local nodes (actual and papers' convention; the
  // uplink is in bytes_actual / bytes_paper). Zero for gossip.
  uint64_t bytes_down = 0;
  double bytes_down_paper = 0;
  double compression_factor() const { return bytes_actual ? bytes_dense / bytes_actual : 1.0; }
};

class Algorithm {
 public:
  ~Algorithm();
  Algorithm(const Algorithm&) = delete;
  Algorithm& operator=(const Algorithm&) = delete;

  // Starts from x0 (host, [local_nodes x d]); u = 1, errors and public copies = 0. The
  // centralized kinds start every node from the mean of x0 over all nodes (collective).
  void init(const nets::NodeMatrix& x0);
  // BSP and DGC: replaces each local node's gradient (host [local_nodes x d], computed at z) by
  // what the server returns (the mean gradient; DGC: the mean of the sparsified, momentum
  // corrected accumulations). Collective for them; a no-op for the other kinds.
  void reduce_gradients(nets::NodeMatrix& grads, int64_t iteration, int64_t epoch);
  // Communication + mixing of iteration t (see the file comment).
  void communicate(int64_t iteration, int64_t epoch);
  // Uncompressed push-sum gossip rounds with eta = 1 and no local update (SCSP's final phase;
  // usable by any algorithm to reach consensus). Updates x and u.
  void gossip_rounds(int rounds, int64_t first_iteration, int64_t epoch);

  // Host views of the backend's x and z = x / u (the cpu backend; the cuda backend throws:
  // use download_x / download_z). Writing through x() is how the local optimizer steps.
  nets::NodeMatrix& x();
  const nets::NodeMatrix& x() const;  // reading only: z stays valid
  const nets::NodeMatrix& z();
  // The models a node answers with (what evaluation measures): z, except for the algorithms
  // with a server model (FedAvg, SSGD-top-K, the MV family), whose nodes all serve the
  // server's model theta; their x are local models between two rounds. Host memory.
  const nets::NodeMatrix& served_models();
  // Copies x or z into out (resized to [local_nodes x d]); any backend.
  void download_x(nets::NodeMatrix& out);
  void download_z(nets::NodeMatrix& out);
  // Push-sum weights of the local nodes (kept on the host: they depend on the schedule only).
  const std::vector<float>& u() const { return u_; }
  // Waits for the backend; throws std::runtime_error when an op flagged a non-finite model or a
  // malformed message since the last check. On the cpu backend every round checks itself.
  void synchronize();

  // DGC keeps the momentum and weight decay itself: the caller's optimizer steps without them.
  bool owns_momentum() const { return spec_.kind == AlgorithmKind::kDgc; }
  // The communication knobs an adaptive controller (SkewScout) turns between iterations:
  // the period H (every kind but BSP and DGC) and Gaia's threshold T0.
  void set_local_steps(int h);
  void set_gaia_threshold(double t0);
  // The learning rate over its base value: Gaia's threshold follows it (T = T0 * ratio).
  void set_lr_ratio(double ratio);

  const CommStats& stats() const { return stats_; }
  CommStats& stats_mutable() { return stats_; }
  const AlgorithmSpec& spec() const { return spec_; }
  kernels::Backend& backend() const { return backend_; }
  Communicator& comm() const { return comm_; }
  int first_local() const { return first_; }
  int local_nodes() const { return n_; }

  // The state a checkpoint needs, by name (x, u, errors, public copies, ...), counts in floats.
  struct StateTensor {
    std::string name;
    int64_t count = 0;
  };
  std::vector<StateTensor> state() const;
  // Hands every state tensor to put as host floats.
  void save_state(const std::function<void(const std::string&, const float*, int64_t)>& put);
  // After init(): get fills each state tensor (host floats), which is then restored.
  void load_state(const std::function<void(const std::string&, float*, int64_t)>& get);

 private:
  friend std::unique_ptr<Algorithm> make_algorithm(const AlgorithmSpec&, const nets::Layout&,
                                                   const Schedule&, kernels::Backend&,
                                                   Communicator&);
  struct Impl;     // the push-sum engine (engine.cpp)
  struct Central;  // the centralized algorithms (engine_centralized.cpp)
  Algorithm(const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
            kernels::Backend& backend, Communicator& comm);

  AlgorithmSpec spec_;
  kernels::Backend& backend_;
  Communicator& comm_;
  int first_, n_;
  std::vector<float> u_;
  CommStats stats_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Central> central_;
};

// Validates the spec against the layout, schedule and communicator (eta in (0, 1] or
// negative, local_steps >= 1, a valid compressor, Deep-Squeeze only on a doubly stochastic
// schedule, local16 only with buckets of at most 65536 values, as many nodes as the
// communicator's world, ...) and returns it with eta resolved (< 0: the default). Throws
// std::invalid_argument naming the problem.
AlgorithmSpec checked_algorithm_spec(const AlgorithmSpec& spec, const nets::Layout& layout,
                                     const Schedule& schedule, const Communicator& comm);

// checked_algorithm_spec, plus what the backend and communicator must offer (the backend
// implements the compressor, the communicator moves the backend's memory), then builds the
// algorithm. Throws std::invalid_argument.
std::unique_ptr<Algorithm> make_algorithm(const AlgorithmSpec& spec, const nets::Layout& layout,
                                          const Schedule& schedule, kernels::Backend& backend,
                                          Communicator& comm);

}  // namespace spush::runtime

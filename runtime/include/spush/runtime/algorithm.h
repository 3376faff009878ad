// The push-sum gossip algorithms (docs/ALGORITHMS.md, "The push-sum family"), one engine for
// every backend and communicator: SGP / D-PSGD, Deep-Squeeze, Sparse-Push, SCSP and
// CHOCO-SGD / Quant-SGP over the node-batched parameter matrix of the nodes this rank hosts.
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
};

struct AlgorithmSpec {
  AlgorithmKind kind = AlgorithmKind::kSparsePush;
  double eta = -1;                       // averaging rate; < 0: default for the compressor
  kernels::CompressorSpec compressor;    // ignored by kSgp
  bool layerwise = true;                 // compress per layout segment (else globally)
  int local_steps = 1;                   // H: communicate every H iterations
  int scsp_final_rounds = 40;            // kScsp: rounds of the final phase
  bool scsp_final_with_updates = false;  // kScsp: final phase keeps local updates (see trainer)
};

AlgorithmKind algorithm_kind_from_string(std::string_view name);  // throws, lists names
const char* to_string(AlgorithmKind kind);
// Averaging-rate defaults by density (docs/ALGORITHMS.md §3.7: 1 -> 1, 0.5 -> 0.08, 0.1 -> 0.01,
// 0.01 -> 0.005, 0.001 -> 0.001; in between: the value of the nearest density above).
double default_eta(double density);

// Communication accounting of this rank's nodes, cumulative.
struct CommStats {
  uint64_t rounds = 0;        // communication rounds done
  uint64_t bytes_actual = 0;  // header + payload bytes sent by local nodes (communicator count)
  double bytes_paper = 0;     // papers' convention: 6 bytes per kept value + 4 for u;
                              // dense = 4 (d + 1)
  double bytes_dense = 0;     // what uncompressed gossip (4 (d + 1) per message) would send
  uint64_t messages = 0;      // messages sent by local nodes
  double compression_factor() const { return bytes_actual ? bytes_dense / bytes_actual : 1.0; }
};

class Algorithm {
 public:
  ~Algorithm();
  Algorithm(const Algorithm&) = delete;
  Algorithm& operator=(const Algorithm&) = delete;

  // Starts from x0 (host, [local_nodes x d]); u = 1, errors and public copies = 0.
  void init(const nets::NodeMatrix& x0);
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
  // Copies x or z into out (resized to [local_nodes x d]); any backend.
  void download_x(nets::NodeMatrix& out);
  void download_z(nets::NodeMatrix& out);
  // Push-sum weights of the local nodes (kept on the host: they depend on the schedule only).
  const std::vector<float>& u() const { return u_; }
  // Waits for the backend; throws std::runtime_error when an op flagged a non-finite model or a
  // malformed message since the last check. On the cpu backend every round checks itself.
  void synchronize();

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
  struct Impl;
  Algorithm(const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
            kernels::Backend& backend, Communicator& comm);

  AlgorithmSpec spec_;
  kernels::Backend& backend_;
  Communicator& comm_;
  int first_, n_;
  std::vector<float> u_;
  CommStats stats_;
  std::unique_ptr<Impl> impl_;
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

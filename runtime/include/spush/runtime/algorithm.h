// Decentralized (push-sum family) gossip algorithms of docs/ALGORITHMS.md §3 over the
// node-batched parameter matrix.
//
// Per iteration t, for the nodes this process hosts:
//   1. the caller computes gradients at z_i = x_i / u_i  (algorithm.z()),
//   2. the caller's local optimizer step turns x into x^ in place (algorithm.x()),
//   3. algorithm.communicate(t, epoch) compresses, exchanges over the transport along the
//      schedule's graph for this round and mixes, producing the next x and u,
//   4. (QGM) the optimizer's after_mix(x).
// communicate() is a no-op on iterations where (t + 1) % local_steps != 0.
//
//   AlgorithmSpec spec{.kind = AlgorithmKind::kSparsePush, .eta = 0.005};
//   spec.compressor.density = 0.01;
//   auto algo = make_algorithm(spec, layout, schedule, *transport);
//   algo->init(x0);   // x0: [local_nodes x d]
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "spush/kernels/compress.h"
#include "spush/nets/layout.h"
#include "spush/runtime/topology.h"
#include "spush/runtime/transport.h"

namespace spush::runtime {

enum class AlgorithmKind {
  kSgp,          // D-PSGD / SGP: uncompressed push-sum gossip, x <- W x^
  kDeepSqueeze,  // error-compensated compressed gossip (000 Alg. 1 on doubly stochastic graphs)
  kSparsePush,   // same rule on any column-stochastic graph
  kScsp,         // Sparse-Push, then an uncompressed push-sum final phase
  kChoco,        // CHOCO-SGD / Quant-SGP (push-sum CHOCO), public copies
};

struct AlgorithmSpec {
  AlgorithmKind kind = AlgorithmKind::kSparsePush;
  double eta = -1;                       // averaging rate; < 0: default for the density (§3)
  kernels::CompressorSpec compressor;    // ignored by kSgp
  bool layerwise = true;                 // compress per layout segment (else globally)
  int local_steps = 1;                   // H: communicate every H iterations
  int scsp_final_rounds = 40;            // kScsp: rounds of the final phase
  bool scsp_final_with_updates = false;  // kScsp: final phase keeps local updates (see trainer)
};

AlgorithmKind algorithm_kind_from_string(std::string_view name);  // throws, lists names
const char* to_string(AlgorithmKind kind);
// Averaging-rate defaults of 000 Table 5 (density 1 -> 1, 0.5 -> 0.08, 0.1 -> 0.01,
// 0.01 -> 0.005, 0.001 -> 0.001; in between: the value of the nearest density above).
double default_eta(double density);

// Communication accounting for this process's nodes, cumulative.
struct CommStats {
  uint64_t rounds = 0;        // communication rounds done
  uint64_t bytes_actual = 0;  // header + payload bytes sent by local nodes (transport count)
  double bytes_paper = 0;     // papers' convention: 6 bytes per kept value + 4 for u;
                              // dense = 4 (d + 1)
  double bytes_dense = 0;     // what uncompressed gossip (4 (d + 1) per message) would send
  uint64_t messages = 0;      // messages sent by local nodes
  double compression_factor() const { return bytes_actual ? bytes_dense / bytes_actual : 1.0; }
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;
  // Starts from x0 ([local_nodes x d]); u = 1, errors and public copies = 0.
  virtual void init(const nets::NodeMatrix& x0) = 0;
  // Communication + mixing of iteration t (see the file comment).
  virtual void communicate(int64_t iteration, int64_t epoch) = 0;
  // Uncompressed push-sum gossip rounds with eta = 1 and no local update (SCSP's final phase;
  // also usable for any algorithm to reach consensus). Updates x and u.
  virtual void gossip_rounds(int rounds, int64_t first_iteration, int64_t epoch) = 0;
  nets::NodeMatrix& x() { return x_; }
  const nets::NodeMatrix& x() const { return x_; }
  const std::vector<float>& u() const { return u_; }
  // De-biased models z_i = x_i / u_i (recomputed on each call).
  const nets::NodeMatrix& z();
  const CommStats& stats() const { return stats_; }
  const AlgorithmSpec& spec() const { return spec_; }
  // Every state buffer by name (for checkpoints): x, u, errors, public copies, ...
  // Restoring = writing the same bytes back into these buffers after init().
  struct StateTensor {
    std::string name;
    float* data;
    int64_t count;  // floats, padding included
  };
  virtual std::vector<StateTensor> state() = 0;
  std::vector<float>& u_mutable() { return u_; }
  CommStats& stats_mutable() { return stats_; }

 protected:
  AlgorithmSpec spec_;
  nets::NodeMatrix x_, z_;
  std::vector<float> u_;
  CommStats stats_;
};

// Which nodes a transport hosts (for the checks below).
struct TransportShape {
  std::string name;
  int world_nodes = 0;
  int first_local = 0;
  int local_nodes = 0;
};

// Validates the spec (eta in (0, 1], local_steps >= 1, compressor valid, Deep-Squeeze only on a
// doubly stochastic schedule, nodes consistent with the transport, ...) and returns it with eta
// resolved (< 0: the default). Throws std::invalid_argument naming the problem.
AlgorithmSpec checked_algorithm_spec(const AlgorithmSpec& spec, const nets::Layout& layout,
                                     const Schedule& schedule, const TransportShape& transport);

// checked_algorithm_spec, then builds the algorithm. Throws std::invalid_argument.
std::unique_ptr<Algorithm> make_algorithm(const AlgorithmSpec& spec, const nets::Layout& layout,
                                          const Schedule& schedule, Transport& transport);

}  // namespace spush::runtime

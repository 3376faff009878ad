// Directed, weighted, possibly time-varying communication graphs (docs/ALGORITHMS.md §1).
//
// A Graph is one round: directed edges src -> dst with weight P[dst][src]. Every node has a
// self-loop (src == dst) holding what it keeps. Columns of P sum to 1 (column stochastic):
// only the sender needs to know its weights. A Schedule says which Graph is used at each
// iteration (a list rotated every `period` iterations or epochs, optional random link failures).
//
//   auto sched = make_schedule({.name = "ring", .nodes = 8});
//   const Graph& g = sched.graph(iteration, epoch);
//   for (const Edge& e : g.in_edges(i)) ...   // who node i receives from, with weights
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace spush::runtime {

// Thrown for every invalid graph, schedule or topology file; the message names the problem.
struct TopologyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Edge {
  int src = 0;
  int dst = 0;
  double weight = 0;  // P[dst][src]
};

class Graph {
 public:
  Graph() = default;
  // Edges may come in any order; they are stored sorted by (dst, src). Duplicate (src, dst)
  // pairs, endpoints outside [0, n) are rejected here; validate() checks the rest.
  Graph(int n, std::vector<Edge> edges, std::string name);
  int nodes() const { return n_; }
  const std::string& name() const { return name_; }
  const std::vector<Edge>& edges() const { return edges_; }
  // Edges into node i (including its self-loop), sorted by src.
  const std::vector<Edge>& in_edges(int i) const { return in_.at(i); }
  // Edges out of node i (including its self-loop), sorted by dst.
  const std::vector<Edge>& out_edges(int i) const { return out_.at(i); }
  double self_weight(int i) const;
  // Out-degree without the self-loop.
  int out_degree(int i) const { return static_cast<int>(out_.at(i).size()) - 1; }
  // Dense P, row-major n x n: P[dst * n + src].
  std::vector<double> dense() const;
  // Throws TopologyError: negative weight, missing self-loop, column sum != 1 (tol 1e-6).
  void validate() const;

 private:
  int n_ = 0;
  std::string name_;
  std::vector<Edge> edges_;
  std::vector<std::vector<Edge>> in_, out_;
};

// Generators. Weights default to uniform over out-degree + 1.
Graph directed_ring(int n);       // i -> i+1
Graph bidirectional_ring(int n);  // i -> i+-1
Graph torus(int rows, int cols);  // 2-D torus, 4 peers (fewer when a side is < 3)
Graph fully_connected(int n);
Graph exponential_graph(int n, int round);  // one peer: i -> i + 2^(round mod log2 n); n power of 2
// The three 4-node directed rings of [SP, Fig. 4, Fig. 5] (index 0: 0>1>2>3>0, 1: 0>3>2>1>0,
// 2: 0>2>1>3>0); even nodes keep 1/2 and send 1/2, odd nodes keep 2/3 and send 1/3.
Graph rotating_ring4(int index);
// Limits of topology files: the node count a file may declare (the bound of the `nodes`
// setting, runtime/src/settings.cpp) and the length of one line in bytes.
inline constexpr int kMaxTopologyNodes = 65536;
inline constexpr size_t kMaxTopologyLine = 4096;

// Custom graph from a text file: '#' comments; first non-comment line "nodes N"; then one edge
// per line "src dst weight". Missing self-loops get 1 - sum of the node's out-weights.
// N must be in [1, kMaxTopologyNodes] and, when expected_nodes > 0 (the run's node count), equal
// to it; both are checked on the "nodes" line, before anything of size N is allocated.
// Throws TopologyError naming the file and line on any problem.
Graph load_edge_list(const std::string& path, int expected_nodes = 0);
// The same parser on the text of a file held in memory; `source` names it in messages and in
// the graph's name ("file:" + source).
Graph parse_edge_list(std::string_view text, const std::string& source, int expected_nodes = 0);

// Splits n into rows x cols with rows <= cols as square as possible (for "torus").
std::pair<int, int> torus_shape(int n);

enum class PeriodUnit { kIterations, kEpochs };

struct TopologySpec {
  // "ring" (directed), "bidir-ring", "torus" (rows x cols from torus_shape, or "torus:RxC"),
  // "exponential", "full", "rings4" (the rotating 4-node rings a, b), "rings4-3" (a, b, c),
  // "file:PATH" (load_edge_list), or a comma-separated list of those to rotate through.
  std::string name = "ring";
  int nodes = 4;
  int64_t period = 1;  // how long each graph of a list is used
  PeriodUnit unit = PeriodUnit::kEpochs;
  double failure_prob = 0;  // per edge per round, in [0, 1)
  uint64_t seed = 0;        // for link failures
};

class Schedule {
 public:
  Schedule(std::vector<Graph> graphs, int64_t period, PeriodUnit unit, double failure_prob,
           uint64_t seed);
  // The graph of a round. With link failures, each non-self edge fails independently with
  // probability p (deterministic in seed and iteration); the sender moves a failed edge's
  // weight onto its self-loop, so P stays column stochastic.
  const Graph& graph(int64_t iteration, int64_t epoch) const;
  int nodes() const { return graphs_.front().nodes(); }
  const std::vector<Graph>& graphs() const { return graphs_; }
  // True when every graph is symmetric and doubly stochastic (u stays 1).
  bool doubly_stochastic() const;
  // Throws TopologyError: any graph invalid, node counts differ, the union over one period
  // not strongly connected, p outside [0, 1).
  void validate() const;
  std::string describe() const;

 private:
  std::vector<Graph> graphs_;
  int64_t period_;
  PeriodUnit unit_;
  double failure_prob_;
  uint64_t seed_;
  mutable Graph failed_;  // storage for the last graph with failures applied
};

// Builds and validates the schedule a spec describes; TopologyError on a bad spec.
Schedule make_schedule(const TopologySpec& spec);

}  // namespace spush::runtime

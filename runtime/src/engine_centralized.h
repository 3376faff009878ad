// The centralized algorithms' part of Algorithm (algorithm.h): its state and rounds. Internal
// to the runtime library (engine.cpp forwards to it; engine_centralized.cpp implements it).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "spush/nets/layout.h"
#include "spush/runtime/algorithm.h"

namespace spush::runtime {

struct Algorithm::Central {
  Central(Algorithm& a, const nets::Layout& layout);

  void init(const nets::NodeMatrix& x0);
  void reduce_gradients(nets::NodeMatrix& grads, int64_t iteration, int64_t epoch);
  void communicate(int64_t iteration, int64_t epoch);
  std::vector<StateTensor> state() const;
  void save_state(const std::function<void(const std::string&, const float*, int64_t)>& put);
  void load_state(const std::function<void(const std::string&, float*, int64_t)>& get);

  Algorithm& self;
  Communicator& comm;
  const AlgorithmSpec& spec;  // the Algorithm's (set_local_steps and co. change it)
  int n, first, world;
  int64_t d;
  int64_t k;  // K = topk_count(d, density)
  double lr_ratio = 1;

  nets::NodeMatrix x;           // the local nodes' models (z = x)
  std::vector<float> theta;     // the server's model: the last common one (identical on every rank)
  nets::NodeMatrix e;           // SSGD-top-K, MV family: error feedback; DGC: accumulation v
  nets::NodeMatrix aux;         // Gaia: accumulated updates; DGC: momentum u; MV-AD: votes L_n
  nets::NodeMatrix last;        // Gaia: the models after the last check
  std::vector<float> vote_sum;  // MV-AD: the server's running vote counts
  bool votes_cast = false;      // MV-AD: whether the vote sets hold a full vote (vote_sum > 0)
  nets::NodeMatrix served;      // theta in every row (served_models())

 private:
  // The rounds.
  void average_gradients(nets::NodeMatrix& grads, uint64_t round);
  void dgc(nets::NodeMatrix& grads, uint64_t round, int64_t epoch);
  void fedavg(uint64_t round);
  void gaia(uint64_t round);
  void dense_model_average(uint64_t round);
  void sparse_topk(uint64_t round);
  void majority_vote(uint64_t round);
  // One uplink round (Communicator::gather_round) with its bytes and `messages` messages counted
  // in stats.
  const Communicator::Gathered& gather(uint64_t round, MessageKind kind, uint16_t codec,
                                       const std::vector<std::vector<uint8_t>>& payloads,
                                       int messages);
  // Counts the server's reply of bytes_per_node payload bytes to every local node; returns the
  // bytes counted (headers included).
  uint64_t reply(size_t bytes_per_node);
  // Difference of every local node's model from theta plus its error feedback, into e.
  void accumulate_differences();
  // Adds the server's mean of the nodes' sparse contributions to theta and sets x = theta.
  void finish_sparse(const std::vector<double>& mean_values, const std::vector<int32_t>& support);
  // Counts a round in stats: uplink messages of the local nodes, papers' bits up and down.
  void count(double bits_up_local, double bits_down_local, uint64_t bytes_down_local);
};

}  // namespace spush::runtime

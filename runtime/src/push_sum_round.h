// Host-side arithmetic of one push-sum round, shared by the host and the device algorithms so
// that both apply the same weights in the same order (docs/ALGORITHMS.md §3).
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "spush/kernels/compress.h"
#include "spush/kernels/mixing.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/topology.h"

namespace spush::runtime::detail {

// The header's codec field: compressor kind * 16 + index codec.
inline uint16_t wire_codec_id(const kernels::CompressorSpec& c) {
  return static_cast<uint16_t>(static_cast<int>(c.kind) * 16 + static_cast<int>(c.index_codec));
}

inline void check_iteration(int64_t t, const char* fn) {
  if (t < 0) throw std::invalid_argument(fmt::format("{}: iteration {} < 0", fn, t));
}

inline void check_gossip_rounds(int rounds, int64_t first_iteration) {
  if (rounds < 0) {
    throw std::invalid_argument(fmt::format("gossip_rounds: rounds must be >= 0, got {}", rounds));
  }
  check_iteration(first_iteration, "gossip_rounds");
}

// Adds one round to the counts: `sent` transport bytes from the local nodes [first, first +
// local), each sending to its out-degree neighbours a message of paper_bytes(r) bytes in the
// papers' convention, against 4 (d + 1) bytes uncompressed.
template <typename PaperBytes>
void account_round(const Graph& g, int first, int local, int64_t d, uint64_t sent,
                   PaperBytes paper_bytes, CommStats& stats) {
  stats.rounds += 1;
  stats.bytes_actual += sent;
  for (int r = 0; r < local; ++r) {
    const double deg = g.out_degree(first + r);
    stats.messages += static_cast<uint64_t>(deg);
    stats.bytes_paper += deg * paper_bytes(r);
    stats.bytes_dense += deg * 4.0 * static_cast<double>(d + 1);
  }
}

// The mixing weight a receiver applies to a message: eta * P[dst][src] as the header carries
// it (fp32), rounded to fp32.
inline float received_weight(double eta, float header_weight) {
  return static_cast<float>(eta * static_cast<double>(header_weight));
}

// base - sum over node i's out-edges (no self-loop) of the weights its receivers apply. Used for
// the self terms (1 + eta (P_ii - 1) = 1 - eta sum_j P_ji, and eta (P_ii - 1) = -eta sum_j
// P_ji), so that the weights of each column add up to what the math says (1, or 0 for the
// difference form) up to one fp32 rounding of the self weight, not to the rounding of P_ii:
// the sums of x and u then carry no rounding bias from round to round.
inline double self_weight(const Graph& g, int i, double eta, double base) {
  double sum = 0;
  for (const Edge& e : g.out_edges(i)) {
    if (e.dst != i) sum += received_weight(eta, static_cast<float>(e.weight));
  }
  return base - sum;
}

// Terms of an error-feedback round (x_i += eta sum_j (P_ij - I_ij) c_j): for each local node r
// its own message own_msg(r) with the self weight, then its inbox in src order, message
// in_msg(r, k) for the k-th incoming one.
template <typename Inbox, typename OwnMsg, typename InMsg>
void error_feedback_terms(const Graph& g, int first, double eta,
                          const std::vector<std::vector<Inbox>>& in, OwnMsg own_msg, InMsg in_msg,
                          std::vector<kernels::MixTerm>& terms) {
  terms.clear();
  for (int r = 0; r < static_cast<int>(in.size()); ++r) {
    terms.push_back({r, own_msg(r), static_cast<float>(self_weight(g, first + r, eta, 0.0))});
    for (size_t k = 0; k < in[r].size(); ++k) {
      terms.push_back({r, in_msg(r, k), received_weight(eta, in[r][k].weight)});
    }
  }
}

// Terms of a dense push-sum round after x_r was scaled by its self weight: the inbox of each
// local node r in src order, message in_msg(r, k).
template <typename Inbox, typename InMsg>
void incoming_terms(double eta, const std::vector<std::vector<Inbox>>& in, InMsg in_msg,
                    std::vector<kernels::MixTerm>& terms) {
  terms.clear();
  for (int r = 0; r < static_cast<int>(in.size()); ++r) {
    for (size_t k = 0; k < in[r].size(); ++k) {
      terms.push_back({r, in_msg(r, k), received_weight(eta, in[r][k].weight)});
    }
  }
}

// u_i <- (1 - eta sum_j P_ji) u_i + sum_j eta P_ij u_j  (= u_i + eta sum_j (P_ij - I_ij) u_j)
// on the pre-round u (own and the senders' from the headers), accumulated in double and
// rounded once: on a doubly stochastic graph u stays exactly 1.
template <typename Inbox>
void mix_u(const Graph& g, int first, double eta, const std::vector<std::vector<Inbox>>& in,
           std::vector<float>& u) {
  for (int r = 0; r < static_cast<int>(in.size()); ++r) {
    double acc = self_weight(g, first + r, eta, 1.0) * static_cast<double>(u[r]);
    for (const Inbox& m : in[r]) {
      acc += static_cast<double>(received_weight(eta, m.weight)) * static_cast<double>(m.u);
    }
    u[r] = static_cast<float>(acc);
  }
}

}  // namespace spush::runtime::detail

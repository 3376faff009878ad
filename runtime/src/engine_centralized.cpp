// The centralized algorithms (algorithm.h; docs/ALGORITHMS.md, "Centralized algorithms"): BSP,
// FederatedAveraging, Gaia, DeepGradientCompression, SSGD with top-K and the majority-vote
// family (SSGD-MV, MV-AD, MV-RS).
//
// A parameter server is not a process here: every node's message reaches every rank through
// Communicator::gather_round, and every rank then computes the server's reply itself, in node
// order and in double, so all ranks hold the same server state (theta, the vote counts) bit for
// bit, and the same bits come out for any split of the nodes over ranks. What the server would
// send back is counted with Communicator::count_reply.
//
// Messages (payloads, little-endian):
//  - dense: d fp32 (BSP gradients, FedAvg models, dense warm-up differences);
//  - set: u32 k, the block position code of k ascending indices over [0, d) with the block
//    length of density max(k, 1) / d (kernels/codec.h), then k fp32 values when the set carries
//    values (Gaia, DGC, SSGD-top-K) and none for votes;
//  - add-drop (MV-AD): the added set, then the dropped set, both without values;
//  - values (MV family): K fp32, the node's values on the common support.
// Papers' convention (bytes_paper, bytes_down_paper): 32 bits per value and, per index set, the
// bits of its block position code (log2(1/rho) + 1 bits per index plus one per block, about
// log2(1/rho) + 2 per index: the MV paper's Sec. 4.3.1 count).
#include "engine_centralized.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "spush/kernels/codec.h"
#include "spush/kernels/philox.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

namespace spush::runtime {
namespace {

// Header codec ids of the centralized messages.
constexpr uint16_t kCodecDense = 1, kCodecSet = 2, kCodecAddDrop = 3, kCodecValues = 4;

// Block position code of an index set over [0, d): its block length and exact bit count.
int64_t set_block(int64_t count, int64_t d) {
  return kernels::block_position_block(static_cast<double>(std::max<int64_t>(count, 1)) /
                                       static_cast<double>(d));
}

double set_index_bits(int64_t count, int64_t d) {
  const int64_t b = set_block(count, d);
  return static_cast<double>(count) * (1.0 + std::countr_zero(static_cast<uint64_t>(b))) +
         static_cast<double>((d + b - 1) / b);
}

// Appends the set (u32 count, code, then the values when given) to out.
void put_set(std::vector<uint8_t>& out, const std::vector<int32_t>& idx, const float* values,
             int64_t d) {
  const auto count = static_cast<uint32_t>(idx.size());
  const size_t at = out.size();
  out.resize(at + sizeof(count));
  std::memcpy(out.data() + at, &count, sizeof(count));
  const int64_t offsets[2] = {0, d};
  const int64_t counts[1] = {static_cast<int64_t>(idx.size())};
  kernels::encode_indices(kernels::IndexCodec::kBlockPosition,
                          1.0 / static_cast<double>(set_block(counts[0], d)),
                          kernels::SegmentView{offsets, 1}, idx.data(), counts, out);
  if (values) {
    const size_t v = out.size();
    out.resize(v + sizeof(float) * idx.size());
    std::memcpy(out.data() + v, values, sizeof(float) * idx.size());
  }
}

// Reads a set written by put_set from data[0, n); returns the bytes consumed. Throws CommError
// naming the node on a malformed set.
size_t get_set(const uint8_t* data, size_t n, int64_t d, bool with_values, int node,
               std::vector<int32_t>& idx, std::vector<float>* values) {
  auto bad = [&](const std::string& what) {
    return CommError(
        fmt::format("centralized round: node {} sent a malformed index set: {}", node, what));
  };
  uint32_t count = 0;
  if (n < sizeof(count)) throw bad("shorter than its count");
  std::memcpy(&count, data, sizeof(count));
  if (count > static_cast<uint64_t>(d))
    throw bad(fmt::format("{} indices in a model of {} values", count, d));
  const int64_t offsets[2] = {0, d};
  int64_t decoded = 0;
  idx.clear();
  size_t used = 0;
  try {
    used = kernels::decode_indices(
        kernels::IndexCodec::kBlockPosition, 1.0 / static_cast<double>(set_block(count, d)),
        kernels::SegmentView{offsets, 1}, data + sizeof(count), n - sizeof(count), idx, &decoded);
  } catch (const std::exception& e) {
    throw bad(e.what());
  }
  if (decoded != static_cast<int64_t>(count))
    throw bad(fmt::format("the code holds {} indices, its count says {}", decoded, count));
  used += sizeof(count);
  if (with_values) {
    const size_t vb = sizeof(float) * count;
    if (n - used < vb)
      throw bad(fmt::format("{} values announced, {} bytes left", count, n - used));
    values->resize(count);
    if (vb > 0)
      std::memcpy(values->data(), data + used, vb);  // an empty vector's data() may be null
    used += vb;
  }
  return used;
}

// Indices of the k largest |v| (ties: lower index), ascending.
std::vector<int32_t> top_indices(const float* v, int64_t d, int64_t k) {
  std::vector<int32_t> idx(static_cast<size_t>(k));
  std::vector<float> val(static_cast<size_t>(k));
  if (k > 0) kernels::topk_cpu(v, d, k, idx.data(), val.data());
  return idx;
}

// The k positions ranked first by key (descending), ties by the lower index; ascending.
std::vector<int32_t> top_by_key(const std::vector<double>& key, int64_t k) {
  std::vector<int32_t> pos(key.size());
  std::iota(pos.begin(), pos.end(), 0);
  auto before = [&](int32_t a, int32_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a < b);
  };
  std::nth_element(pos.begin(), pos.begin() + k, pos.end(), before);
  pos.resize(static_cast<size_t>(k));
  std::sort(pos.begin(), pos.end());
  return pos;
}

// A per-round pseudo-random number in [0, 1) for position j, the same on every rank.
double round_uniform(uint64_t seed, uint64_t round, int64_t j) {
  return kernels::philox_uniform(seed, 0x4d56u /* "MV" */, round, static_cast<uint64_t>(j));
}

// Sum over the world's nodes in node order (the server's reduction), from the dense payloads.
void sum_dense(const Communicator::Gathered& g, int world, int64_t d, std::vector<double>& sum,
               const std::vector<char>* include = nullptr) {
  sum.assign(static_cast<size_t>(d), 0.0);
  std::vector<float> row(static_cast<size_t>(d));
  for (int i = 0; i < world; ++i) {
    if (include && !(*include)[i]) continue;
    if (g.bytes[i] != sizeof(float) * static_cast<size_t>(d))
      throw CommError(
          fmt::format("centralized round: node {} sent {} bytes, expected {} (d = {} "
                      "fp32 values)",
                      i, g.bytes[i], sizeof(float) * d, d));
    std::memcpy(row.data(), g.payload(i), sizeof(float) * static_cast<size_t>(d));
    for (int64_t j = 0; j < d; ++j) sum[j] += row[j];
  }
}

// Sums the index sets with values that the nodes sent (DGC, Gaia, SSGD-top-K): sum[j] over the
// nodes that sent j, in node order in double, and in_union[j] = 1 where any did. With k >= 0
// every node must have sent exactly k indices. Throws CommError naming the round and node.
void sum_sets(const Communicator::Gathered& g, int world, int64_t d, int64_t k, const char* what,
              uint64_t round, std::vector<double>& sum, std::vector<char>& in_union) {
  sum.assign(static_cast<size_t>(d), 0.0);
  in_union.assign(static_cast<size_t>(d), 0);
  std::vector<int32_t> idx;
  std::vector<float> val;
  for (int i = 0; i < world; ++i) {
    const size_t used = get_set(g.payload(i), g.bytes[i], d, true, i, idx, &val);
    if (used != g.bytes[i])
      throw CommError(fmt::format("{} round {}: node {} sent {} bytes after its set", what, round,
                                  i, g.bytes[i] - used));
    if (k >= 0 && static_cast<int64_t>(idx.size()) != k)
      throw CommError(fmt::format("{} round {}: node {} sent {} indices, expected K = {}", what,
                                  round, i, idx.size(), k));
    for (size_t q = 0; q < idx.size(); ++q) {
      sum[idx[q]] += val[q];
      in_union[idx[q]] = 1;
    }
  }
}

}  // namespace

std::vector<int32_t> majority_support(const std::vector<double>& votes, int64_t k, uint64_t seed,
                                      uint64_t round) {
  if (k < 0 || k > static_cast<int64_t>(votes.size()))
    throw std::invalid_argument(
        fmt::format("majority_support: K = {} with {} positions", k, votes.size()));
  // Counts are whole numbers: adding half a uniform orders ties without reordering counts.
  std::vector<double> key(votes.size());
  for (size_t j = 0; j < votes.size(); ++j)
    key[j] = votes[j] + 0.5 * round_uniform(seed, round, static_cast<int64_t>(j));
  return top_by_key(key, k);
}

std::vector<int32_t> sampled_support(const std::vector<double>& votes, int64_t k, uint64_t seed,
                                     uint64_t round) {
  if (k < 0 || k > static_cast<int64_t>(votes.size()))
    throw std::invalid_argument(
        fmt::format("sampled_support: K = {} with {} positions", k, votes.size()));
  // Sampling without replacement in proportion to the votes: the K largest keys log(u) / votes
  // (Efraimidis and Spirakis); positions without votes come last, by the lower index.
  std::vector<double> key(votes.size());
  for (size_t j = 0; j < votes.size(); ++j) {
    const double u = round_uniform(seed, round, static_cast<int64_t>(j)) + 0.5 / 16777216.0;
    key[j] = votes[j] > 0 ? std::log(u) / votes[j] : -HUGE_VAL;
  }
  return top_by_key(key, k);
}

bool is_centralized(AlgorithmKind kind) {
  switch (kind) {
    case AlgorithmKind::kBsp:
    case AlgorithmKind::kFedAvg:
    case AlgorithmKind::kGaia:
    case AlgorithmKind::kDgc:
    case AlgorithmKind::kSsgdTopK:
    case AlgorithmKind::kMv:
    case AlgorithmKind::kMvAd:
    case AlgorithmKind::kMvRs:
      return true;
    default:
      return false;
  }
}

Algorithm::Central::Central(Algorithm& a, const nets::Layout& layout)
    : self(a),
      comm(a.comm_),
      spec(a.spec_),
      n(a.n_),
      first(a.first_),
      world(a.comm_.world_nodes()),
      d(layout.size()),
      k(kernels::topk_count(layout.size(), a.spec_.compressor.density)) {
  const AlgorithmKind kind = spec.kind;
  x = nets::NodeMatrix(n, d);
  const bool has_theta = kind == AlgorithmKind::kFedAvg || kind == AlgorithmKind::kSsgdTopK ||
                         kind == AlgorithmKind::kMv || kind == AlgorithmKind::kMvAd ||
                         kind == AlgorithmKind::kMvRs;
  if (has_theta) theta.assign(static_cast<size_t>(d), 0.0f);
  if (kind == AlgorithmKind::kSsgdTopK || kind == AlgorithmKind::kMv ||
      kind == AlgorithmKind::kMvAd || kind == AlgorithmKind::kMvRs || kind == AlgorithmKind::kDgc)
    e = nets::NodeMatrix(n, d);
  if (kind == AlgorithmKind::kGaia || kind == AlgorithmKind::kDgc || kind == AlgorithmKind::kMvAd)
    aux = nets::NodeMatrix(n, d);
  if (kind == AlgorithmKind::kGaia) last = nets::NodeMatrix(n, d);
  if (kind == AlgorithmKind::kMvAd) vote_sum.assign(static_cast<size_t>(d), 0.0f);
}

void Algorithm::Central::init(const nets::NodeMatrix& x0) {
  // Every node starts from the mean of the given models (one common model, as a server has).
  std::vector<double> rows(static_cast<size_t>(n) * static_cast<size_t>(d));
  for (int r = 0; r < n; ++r)
    for (int64_t j = 0; j < d; ++j) rows[static_cast<size_t>(r * d + j)] = x0.row(r)[j];
  comm.allreduce_sum(rows.data(), d);
  for (int r = 0; r < n; ++r)
    for (int64_t j = 0; j < d; ++j)
      x.row(r)[j] = static_cast<float>(rows[static_cast<size_t>(r * d + j)] / world);
  if (!theta.empty()) std::copy(x.row(0), x.row(0) + d, theta.begin());
  if (e.rows()) e.fill(0.0f);
  if (aux.rows()) aux.fill(0.0f);
  if (last.rows()) last.copy_from(x);
  std::fill(vote_sum.begin(), vote_sum.end(), 0.0f);
  votes_cast = false;
}

void Algorithm::Central::count(double bits_up_local, double bits_down_local,
                               uint64_t bytes_down_local) {
  CommStats& st = self.stats_;
  st.rounds += 1;
  st.bytes_paper += bits_up_local / 8.0;
  st.bytes_down_paper += bits_down_local / 8.0;
  st.bytes_down += bytes_down_local;
}

// ---- gradients (BSP, DGC) ---------------------------------------------------------------------

void Algorithm::Central::reduce_gradients(nets::NodeMatrix& grads, int64_t iteration,
                                          int64_t epoch) {
  if (grads.rows() != n || grads.cols() != d)
    throw std::invalid_argument(
        fmt::format("{}: reduce_gradients got [{} x {}], expected [{} x {}]", to_string(spec.kind),
                    grads.rows(), grads.cols(), n, d));
  const auto round = static_cast<uint64_t>(iteration);
  if (spec.kind == AlgorithmKind::kBsp) average_gradients(grads, round);
  if (spec.kind == AlgorithmKind::kDgc) dgc(grads, round, epoch);
}

const Communicator::Gathered& Algorithm::Central::gather(
    uint64_t round, MessageKind kind, uint16_t codec,
    const std::vector<std::vector<uint8_t>>& payloads, int messages) {
  const uint64_t before = comm.bytes().total();
  const Communicator::Gathered& g = comm.gather_round(round, kind, codec, payloads);
  self.stats_.bytes_actual += comm.bytes().total() - before;
  self.stats_.messages += static_cast<uint64_t>(messages);
  return g;
}

uint64_t Algorithm::Central::reply(size_t bytes_per_node) {
  const uint64_t before = comm.bytes().total();
  comm.count_reply(std::vector<size_t>(static_cast<size_t>(n), bytes_per_node));
  return comm.bytes().total() - before;
}

void Algorithm::Central::average_gradients(nets::NodeMatrix& grads, uint64_t round) {
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  const size_t bytes = sizeof(float) * static_cast<size_t>(d);
  for (int r = 0; r < n; ++r) {
    payloads[r].resize(bytes);
    std::memcpy(payloads[r].data(), grads.row(r), bytes);
  }
  const Communicator::Gathered& g = gather(round, MessageKind::kDense, kCodecDense, payloads, n);
  std::vector<double> sum;
  sum_dense(g, world, d, sum);
  for (int r = 0; r < n; ++r)
    for (int64_t j = 0; j < d; ++j) grads.row(r)[j] = static_cast<float>(sum[j] / world);
  const uint64_t down = this->reply(bytes);
  count(32.0 * static_cast<double>(d) * n, 32.0 * static_cast<double>(d) * n, down);
}

namespace {

// DGC's density in an epoch: the warm-up stages 75%, 93.75%, 98.4375%, 99.6% sparsity, each a
// quarter of the warm-up epochs, then the configured density (never denser than configured).
double dgc_density(const AlgorithmSpec& spec, int64_t epoch) {
  const double target = spec.compressor.density;
  const int w = spec.central.dgc_warmup_epochs;
  if (w <= 0 || epoch >= w) return target;
  static constexpr double kStages[4] = {0.25, 0.0625, 0.015625, 0.004};
  const int64_t stage = std::min<int64_t>(3, epoch * 4 / w);
  return std::max(target, kStages[stage]);
}

}  // namespace

void Algorithm::Central::dgc(nets::NodeMatrix& grads, uint64_t round, int64_t epoch) {
  const CentralizedSpec& c = spec.central;
  const double density = dgc_density(spec, epoch);
  const int64_t kt = kernels::topk_count(d, density);
  const auto m = static_cast<float>(c.dgc_momentum);
  const auto wd = static_cast<float>(c.dgc_weight_decay);
  const double clip = c.dgc_clip > 0 ? c.dgc_clip / std::sqrt(static_cast<double>(world)) : 0;
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  std::vector<float> vals(static_cast<size_t>(kt));
  double bits_up = 0;
  for (int r = 0; r < n; ++r) {
    float* g = grads.row(r);
    const float* xr = x.row(r);
    for (int64_t j = 0; j < d; ++j) g[j] += wd * xr[j];
    if (clip > 0) {  // local clipping at the global norm / sqrt(N)
      double sq = 0;
      for (int64_t j = 0; j < d; ++j) sq += static_cast<double>(g[j]) * g[j];
      const double norm = std::sqrt(sq);
      if (norm > clip) {
        const auto s = static_cast<float>(clip / norm);
        for (int64_t j = 0; j < d; ++j) g[j] *= s;
      }
    }
    float* u = aux.row(r);  // momentum correction: u = m u + g, v = v + u
    float* v = e.row(r);
    for (int64_t j = 0; j < d; ++j) {
      u[j] = m * u[j] + g[j];
      v[j] += u[j];
    }
    const std::vector<int32_t> idx = top_indices(v, d, kt);
    for (size_t i = 0; i < idx.size(); ++i) {
      vals[i] = v[idx[i]];
      v[idx[i]] = 0.0f;  // sent
      u[idx[i]] = 0.0f;  // momentum factor masking
    }
    put_set(payloads[r], idx, vals.data(), d);
    bits_up += set_index_bits(kt, d) + 32.0 * static_cast<double>(kt);
  }
  const Communicator::Gathered& g = gather(round, MessageKind::kDense, kCodecSet, payloads, n);
  std::vector<double> sum;
  std::vector<char> in_union;
  sum_sets(g, world, d, -1, "DGC", round, sum, in_union);
  std::vector<int32_t> support;
  for (int64_t j = 0; j < d; ++j)
    if (in_union[j]) support.push_back(static_cast<int32_t>(j));
  for (int r = 0; r < n; ++r) {
    float* gr = grads.row(r);
    for (int64_t j = 0; j < d; ++j) gr[j] = static_cast<float>(sum[j] / world);
  }
  std::vector<uint8_t> reply;
  put_set(reply, support, nullptr, d);
  const size_t reply_bytes = reply.size() + sizeof(float) * support.size();
  const uint64_t down = this->reply(reply_bytes);
  const double bits_down =
      (set_index_bits(static_cast<int64_t>(support.size()), d) + 32.0 * support.size()) * n;
  count(bits_up, bits_down, down);
}

// ---- model rounds -----------------------------------------------------------------------------

void Algorithm::Central::communicate(int64_t iteration, int64_t epoch) {
  self.stats_.bytes_dense += 4.0 * static_cast<double>(d) * n;  // BSP's uplink this iteration
  const AlgorithmKind kind = spec.kind;
  if (kind == AlgorithmKind::kBsp || kind == AlgorithmKind::kDgc) return;
  if ((iteration + 1) % spec.local_steps != 0) return;
  const auto round = static_cast<uint64_t>(iteration);
  switch (kind) {
    case AlgorithmKind::kFedAvg:
      fedavg(round);
      break;
    case AlgorithmKind::kGaia:
      gaia(round);
      break;
    default:  // SSGD-top-K and the MV family
      if (epoch < spec.central.dense_epochs)
        dense_model_average(round);
      else if (kind == AlgorithmKind::kSsgdTopK)
        sparse_topk(round);
      else
        majority_vote(round);
  }
  for (int r = 0; r < n; ++r)
    for (int64_t j = 0; j < d; ++j)
      if (!std::isfinite(x.row(r)[j]))
        throw std::runtime_error(
            fmt::format("{}: node {} holds a non-finite model value at {} "
                        "after round {}",
                        to_string(kind), first + r, j, round));
}

void Algorithm::Central::fedavg(uint64_t round) {
  // The round's clients: the first ceil(C N) of a permutation drawn from the seed and round.
  const double c = spec.central.fedavg_fraction;
  const int chosen = std::clamp(static_cast<int>(std::ceil(c * world - 1e-9)), 1, world);
  std::vector<char> in(static_cast<size_t>(world), 1);
  if (chosen < world) {
    std::vector<double> key(static_cast<size_t>(world));
    for (int i = 0; i < world; ++i) key[i] = round_uniform(spec.compressor.seed, round, i);
    std::fill(in.begin(), in.end(), 0);
    for (int32_t i : top_by_key(key, chosen)) in[i] = 1;
  }
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  const size_t bytes = sizeof(float) * static_cast<size_t>(d);
  int senders = 0;
  for (int r = 0; r < n; ++r) {
    if (!in[first + r]) continue;  // not chosen: sends nothing
    payloads[r].resize(bytes);
    std::memcpy(payloads[r].data(), x.row(r), bytes);
    ++senders;
  }
  const Communicator::Gathered& g =
      gather(round, MessageKind::kModel, kCodecDense, payloads, senders);
  for (int i = 0; i < world; ++i)
    if (!in[i] && g.bytes[i] != 0)
      throw CommError(fmt::format("FedAvg round {}: node {} was not chosen but sent {} bytes",
                                  round, i, g.bytes[i]));
  std::vector<double> sum;
  sum_dense(g, world, d, sum, &in);
  for (int64_t j = 0; j < d; ++j) theta[j] = static_cast<float>(sum[j] / chosen);
  for (int r = 0; r < n; ++r) std::copy(theta.begin(), theta.end(), x.row(r));
  const uint64_t down = this->reply(bytes);
  count(32.0 * static_cast<double>(d) * senders, 32.0 * static_cast<double>(d) * n, down);
}

void Algorithm::Central::gaia(uint64_t round) {
  // Significance: |accumulated update| > T |w| with T = T0 * (lr / base lr).
  const double t = spec.central.gaia_threshold * lr_ratio;
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  std::vector<std::vector<int32_t>> own_idx(static_cast<size_t>(n));
  std::vector<std::vector<float>> own_val(static_cast<size_t>(n));
  double bits_up = 0;
  for (int r = 0; r < n; ++r) {
    float* v = aux.row(r);
    float* xr = x.row(r);
    const float* lr_row = last.row(r);
    for (int64_t j = 0; j < d; ++j) {
      v[j] += xr[j] - lr_row[j];
      if (std::fabs(static_cast<double>(v[j])) > t * std::fabs(static_cast<double>(xr[j]))) {
        own_idx[r].push_back(static_cast<int32_t>(j));
        own_val[r].push_back(v[j]);
        v[j] = 0.0f;
      }
    }
    put_set(payloads[r], own_idx[r], own_val[r].data(), d);
    const auto kr = static_cast<int64_t>(own_idx[r].size());
    bits_up += set_index_bits(kr, d) + 32.0 * static_cast<double>(kr);
  }
  const Communicator::Gathered& g = gather(round, MessageKind::kModel, kCodecSet, payloads, n);
  std::vector<double> sum;
  std::vector<char> in_union;
  sum_sets(g, world, d, -1, "Gaia", round, sum, in_union);
  // Every node applies the others' significant updates (its own are in its model already).
  std::vector<double> others;
  for (int r = 0; r < n; ++r) {
    others = sum;
    for (size_t q = 0; q < own_idx[r].size(); ++q) others[own_idx[r][q]] -= own_val[r][q];
    float* xr = x.row(r);
    for (int64_t j = 0; j < d; ++j)
      if (in_union[j]) xr[j] = static_cast<float>(xr[j] + others[j]);
  }
  last.copy_from(x);
  int64_t u = 0;
  for (char c : in_union) u += c;
  std::vector<int32_t> support;
  support.reserve(static_cast<size_t>(u));
  for (int64_t j = 0; j < d; ++j)
    if (in_union[j]) support.push_back(static_cast<int32_t>(j));
  std::vector<uint8_t> reply;
  put_set(reply, support, nullptr, d);
  const uint64_t down = this->reply(reply.size() + sizeof(float) * support.size());
  count(bits_up, (set_index_bits(u, d) + 32.0 * static_cast<double>(u)) * n, down);
}

void Algorithm::Central::accumulate_differences() {
  for (int r = 0; r < n; ++r) {
    const float* xr = x.row(r);
    float* er = e.row(r);
    for (int64_t j = 0; j < d; ++j) er[j] += xr[j] - theta[j];
  }
}

void Algorithm::Central::finish_sparse(const std::vector<double>& mean_values,
                                       const std::vector<int32_t>& support) {
  for (size_t q = 0; q < support.size(); ++q)
    theta[support[q]] = static_cast<float>(theta[support[q]] + mean_values[q]);
  for (int r = 0; r < n; ++r) std::copy(theta.begin(), theta.end(), x.row(r));
}

void Algorithm::Central::dense_model_average(uint64_t round) {
  accumulate_differences();
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  const size_t bytes = sizeof(float) * static_cast<size_t>(d);
  for (int r = 0; r < n; ++r) {
    payloads[r].resize(bytes);
    std::memcpy(payloads[r].data(), e.row(r), bytes);
  }
  e.fill(0.0f);
  const Communicator::Gathered& g = gather(round, MessageKind::kModel, kCodecDense, payloads, n);
  std::vector<double> sum;
  sum_dense(g, world, d, sum);
  std::vector<int32_t> all(static_cast<size_t>(d));
  std::iota(all.begin(), all.end(), 0);
  for (double& s : sum) s /= world;
  finish_sparse(sum, all);
  const uint64_t down = this->reply(bytes);
  count(32.0 * static_cast<double>(d) * n, 32.0 * static_cast<double>(d) * n, down);
}

void Algorithm::Central::sparse_topk(uint64_t round) {
  accumulate_differences();
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  std::vector<float> vals(static_cast<size_t>(k));
  for (int r = 0; r < n; ++r) {
    float* er = e.row(r);
    const std::vector<int32_t> idx = top_indices(er, d, k);
    for (size_t i = 0; i < idx.size(); ++i) {
      vals[i] = er[idx[i]];
      er[idx[i]] = 0.0f;
    }
    put_set(payloads[r], idx, vals.data(), d);
  }
  const Communicator::Gathered& g = gather(round, MessageKind::kModel, kCodecSet, payloads, n);
  std::vector<double> sum;
  std::vector<char> in_union;
  sum_sets(g, world, d, k, "SSGD-top-K", round, sum, in_union);
  std::vector<int32_t> support;
  std::vector<double> mean;
  for (int64_t j = 0; j < d; ++j)
    if (in_union[j]) {
      support.push_back(static_cast<int32_t>(j));
      mean.push_back(sum[j] / world);
    }
  finish_sparse(mean, support);
  std::vector<uint8_t> reply;
  put_set(reply, support, nullptr, d);
  const uint64_t down = this->reply(reply.size() + sizeof(float) * support.size());
  const auto u = static_cast<int64_t>(support.size());
  count((set_index_bits(k, d) + 32.0 * static_cast<double>(k)) * n,
        (set_index_bits(u, d) + 32.0 * static_cast<double>(u)) * n, down);
}

void Algorithm::Central::majority_vote(uint64_t round) {
  const AlgorithmKind kind = spec.kind;
  accumulate_differences();
  // 1. Votes: each node's top-K support of |delta + e| (MV-AD: changes to its vote set).
  const bool add_drop = kind == AlgorithmKind::kMvAd && votes_cast;
  const int64_t k_ad = kernels::topk_count(d, spec.central.add_drop_density);
  std::vector<std::vector<uint8_t>> payloads(static_cast<size_t>(n));
  double bits_up = 0;
  for (int r = 0; r < n; ++r) {
    const float* er = e.row(r);
    const std::vector<int32_t> top = top_indices(er, d, k);
    if (!add_drop) {
      put_set(payloads[r], top, nullptr, d);
      bits_up += set_index_bits(k, d);
      if (kind == AlgorithmKind::kMvAd) {
        float* l = aux.row(r);
        std::fill(l, l + d, 0.0f);
        for (int32_t j : top) l[j] = 1.0f;
      }
      continue;
    }
    // Add: the largest |v| of top \ L; drop: the smallest |v| of L \ top; as many of each
    // (|top \ L| = |L \ top| since both sets hold K), at most K_ad.
    float* l = aux.row(r);
    std::vector<char> in_top(static_cast<size_t>(d), 0);
    for (int32_t j : top) in_top[j] = 1;
    std::vector<int32_t> add_cand, drop_cand;
    for (int32_t j : top)
      if (l[j] == 0.0f) add_cand.push_back(j);
    for (int64_t j = 0; j < d; ++j)
      if (l[j] != 0.0f && !in_top[j]) drop_cand.push_back(static_cast<int32_t>(j));
    const int64_t changes =
        std::min<int64_t>(k_ad, static_cast<int64_t>(std::min(add_cand.size(), drop_cand.size())));
    auto by_magnitude = [&](std::vector<int32_t>& cand, bool largest) {
      std::vector<double> key(cand.size());
      for (size_t q = 0; q < cand.size(); ++q) {
        const double a = std::fabs(static_cast<double>(er[cand[q]]));
        key[q] = largest ? a : -a;
      }
      std::vector<int32_t> chosen;
      for (int32_t q : top_by_key(key, changes)) chosen.push_back(cand[q]);
      std::sort(chosen.begin(), chosen.end());
      return chosen;
    };
    const std::vector<int32_t> add = by_magnitude(add_cand, true);
    const std::vector<int32_t> drop = by_magnitude(drop_cand, false);
    for (int32_t j : add) l[j] = 1.0f;
    for (int32_t j : drop) l[j] = 0.0f;
    put_set(payloads[r], add, nullptr, d);
    put_set(payloads[r], drop, nullptr, d);
    bits_up += set_index_bits(changes, d) * 2;
  }
  const Communicator::Gathered& g =
      gather(round, MessageKind::kControl, add_drop ? kCodecAddDrop : kCodecSet, payloads, n);

  // 2. The server counts the votes and picks the support M.
  std::vector<double> votes(static_cast<size_t>(d), 0.0);
  if (kind == AlgorithmKind::kMvAd && votes_cast)
    for (int64_t j = 0; j < d; ++j) votes[j] = vote_sum[j];
  std::vector<int32_t> idx, idx2;
  for (int i = 0; i < world; ++i) {
    size_t used = get_set(g.payload(i), g.bytes[i], d, false, i, idx, nullptr);
    if (!add_drop) {
      if (static_cast<int64_t>(idx.size()) != k)
        throw CommError(fmt::format("{} round {}: node {} voted for {} positions, expected K = {}",
                                    to_string(kind), round, i, idx.size(), k));
      for (int32_t j : idx) votes[j] += 1;
    } else {
      used += get_set(g.payload(i) + used, g.bytes[i] - used, d, false, i, idx2, nullptr);
      if (idx.size() != idx2.size() || static_cast<int64_t>(idx.size()) > k_ad)
        throw CommError(
            fmt::format("MV-AD round {}: node {} added {} and dropped {} votes, "
                        "expected equal counts of at most {}",
                        round, i, idx.size(), idx2.size(), k_ad));
      for (int32_t j : idx) votes[j] += 1;
      for (int32_t j : idx2) votes[j] -= 1;
    }
    if (used != g.bytes[i])
      throw CommError(fmt::format("{} round {}: node {} sent {} bytes after its votes",
                                  to_string(kind), round, i, g.bytes[i] - used));
  }
  if (kind == AlgorithmKind::kMvAd) {
    for (int64_t j = 0; j < d; ++j) {
      if (votes[j] < 0 || votes[j] > world)
        throw CommError(
            fmt::format("MV-AD round {}: the vote count of position {} became {}, "
                        "outside [0, {}] (a node dropped a vote it had not cast)",
                        round, j, votes[j], world));
      vote_sum[j] = static_cast<float>(votes[j]);
    }
    votes_cast = true;
  }
  const std::vector<int32_t> support =
      kind == AlgorithmKind::kMvRs ? sampled_support(votes, k, spec.compressor.seed, round)
                                   : majority_support(votes, k, spec.compressor.seed, round);
  std::vector<uint8_t> reply;
  put_set(reply, support, nullptr, d);
  uint64_t down = this->reply(reply.size());

  // 3. Values on the support, without indices; the mean updates theta.
  for (int r = 0; r < n; ++r) {
    float* er = e.row(r);
    payloads[r].resize(sizeof(float) * support.size());
    auto* out = reinterpret_cast<float*>(payloads[r].data());
    for (size_t q = 0; q < support.size(); ++q) {
      out[q] = er[support[q]];
      er[support[q]] = 0.0f;
    }
  }
  const Communicator::Gathered& v = gather(round, MessageKind::kModel, kCodecValues, payloads, n);
  std::vector<double> mean(support.size(), 0.0);
  std::vector<float> row(support.size());
  for (int i = 0; i < world; ++i) {
    if (v.bytes[i] != sizeof(float) * support.size())
      throw CommError(fmt::format("{} round {}: node {} sent {} bytes of values, expected {}",
                                  to_string(kind), round, i, v.bytes[i],
                                  sizeof(float) * support.size()));
    if (!row.empty()) std::memcpy(row.data(), v.payload(i), v.bytes[i]);
    for (size_t q = 0; q < row.size(); ++q) mean[q] += row[q];
  }
  for (double& m : mean) m /= world;
  finish_sparse(mean, support);
  down += this->reply(sizeof(float) * support.size());
  count(bits_up + 32.0 * static_cast<double>(k) * n,
        (set_index_bits(k, d) + 32.0 * static_cast<double>(k)) * n, down);
}

// ---- checkpoints --------------------------------------------------------------------------

std::vector<Algorithm::StateTensor> Algorithm::Central::state() const {
  const int64_t mat = static_cast<int64_t>(n) * x.ld();
  std::vector<StateTensor> t{{"x", mat}, {"u", n}};
  if (!theta.empty()) t.push_back({"theta", d});
  if (e.rows()) t.push_back({spec.kind == AlgorithmKind::kDgc ? "accumulated" : "error", mat});
  if (aux.rows())
    t.push_back({spec.kind == AlgorithmKind::kDgc    ? "momentum"
                 : spec.kind == AlgorithmKind::kGaia ? "accumulated"
                                                     : "votes",
                 mat});
  if (last.rows()) t.push_back({"last", mat});
  if (!vote_sum.empty()) t.push_back({"vote_sum", d});
  return t;
}

void Algorithm::Central::save_state(
    const std::function<void(const std::string&, const float*, int64_t)>& put) {
  for (const StateTensor& t : state()) {
    const float* data = t.name == "x"          ? x.data()
                        : t.name == "u"        ? self.u_.data()
                        : t.name == "theta"    ? theta.data()
                        : t.name == "last"     ? last.data()
                        : t.name == "vote_sum" ? vote_sum.data()
                        : (t.name == "error" || (t.name == "accumulated" && e.rows())) ? e.data()
                                                                                       : aux.data();
    put(t.name, data, t.count);
  }
}

void Algorithm::Central::load_state(
    const std::function<void(const std::string&, float*, int64_t)>& get) {
  for (const StateTensor& t : state()) {
    float* data = t.name == "x"                                                  ? x.data()
                  : t.name == "u"                                                ? self.u_.data()
                  : t.name == "theta"                                            ? theta.data()
                  : t.name == "last"                                             ? last.data()
                  : t.name == "vote_sum"                                         ? vote_sum.data()
                  : (t.name == "error" || (t.name == "accumulated" && e.rows())) ? e.data()
                                                                                 : aux.data();
    get(t.name, data, t.count);
  }
  for (float u : self.u_)
    if (u != 1.0f)
      throw std::invalid_argument(
          fmt::format("restored weight u = {}: a centralized algorithm "
                      "keeps u = 1",
                      u));
  if (spec.kind == AlgorithmKind::kMvAd) {
    double total = 0;
    for (int64_t j = 0; j < d; ++j) {
      const float c = vote_sum[j];
      if (c < 0 || c > static_cast<float>(world) || c != std::floor(c))
        throw std::invalid_argument(
            fmt::format("restored vote count {} at position {} is not an "
                        "integer in [0, {}]",
                        c, j, world));
      total += c;
    }
    for (int r = 0; r < n; ++r) {
      int64_t cast = 0;
      for (int64_t j = 0; j < d; ++j) {
        const float l = aux.row(r)[j];
        if (l != 0.0f && l != 1.0f)
          throw std::invalid_argument(fmt::format(
              "restored vote of node {} at position {} is {}, expected 0 or 1", first + r, j, l));
        cast += l != 0.0f;
      }
      if (cast != (total > 0 ? k : 0))
        throw std::invalid_argument(
            fmt::format("restored vote set of node {} holds {} positions, "
                        "expected {}",
                        first + r, cast, total > 0 ? k : 0));
    }
    votes_cast = total > 0;
  }
}

}  // namespace spush::runtime

// Decentralized push-sum gossip algorithms of docs/ALGORITHMS.md §3 over the node-batched
// parameter matrix x [local_nodes x d]: SGP / D-PSGD (dense W = I + eta (P - I)), Sparse-Push /
// Deep-Squeeze / SCSP (error-compensated compressed gossip, 000 Alg. 1/2) and CHOCO-SGD /
// Quant-SGP (public copies, 002 Alg. 3/5). Every message goes through the codec and the
// transport (header + payload per edge); receivers decode and mix all local nodes with one
// batched gossip_mix_* call. Also: names, eta defaults and the spec validation.
#include "spush/runtime/algorithm.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <set>
#include <stdexcept>
#include <utility>

#include "push_sum_round.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/mixing.h"

namespace spush::runtime {

AlgorithmKind algorithm_kind_from_string(std::string_view name) {
  if (name == "sgp" || name == "dpsgd") return AlgorithmKind::kSgp;
  if (name == "deepsqueeze") return AlgorithmKind::kDeepSqueeze;
  if (name == "sparsepush") return AlgorithmKind::kSparsePush;
  if (name == "scsp") return AlgorithmKind::kScsp;
  if (name == "choco" || name == "quantsgp") return AlgorithmKind::kChoco;
  throw std::invalid_argument(fmt::format(
      "unknown algorithm '{}': expected one of sgp, dpsgd, deepsqueeze, sparsepush, scsp, choco, "
      "quantsgp",
      name));
}

const char* to_string(AlgorithmKind kind) {
  switch (kind) {
    case AlgorithmKind::kSgp:
      return "sgp";
    case AlgorithmKind::kDeepSqueeze:
      return "deepsqueeze";
    case AlgorithmKind::kSparsePush:
      return "sparsepush";
    case AlgorithmKind::kScsp:
      return "scsp";
    case AlgorithmKind::kChoco:
      return "choco";
  }
  return "unknown";
}

double default_eta(double density) {
  if (!(density > 0 && density <= 1)) {
    throw std::invalid_argument(
        fmt::format("default_eta: density must be in (0, 1], got {}", density));
  }
  // 000 Table 5, ascending density; a density between two rows takes the row above it.
  static constexpr std::pair<double, double> kTable[] = {
      {0.001, 0.001}, {0.01, 0.005}, {0.1, 0.01}, {0.5, 0.08}, {1.0, 1.0}};
  for (const auto& [rho, eta] : kTable) {
    if (density <= rho * (1 + 1e-12)) return eta;
  }
  return 1.0;
}

const nets::NodeMatrix& Algorithm::z() {
  if (z_.rows() != x_.rows() || z_.cols() != x_.cols()) {
    z_ = nets::NodeMatrix(x_.rows(), x_.cols());
  }
  kernels::debias_cpu(x_.data(), x_.ld(), u_.data(), x_.rows(), x_.cols(), z_.data(), z_.ld());
  return z_;
}

namespace {

using kernels::Compressed;
using kernels::CompressorKind;
using kernels::CompressorSpec;
using kernels::MixTerm;

using detail::check_iteration;
using detail::received_weight;
using detail::self_weight;

// Below this many floats per round, OpenMP's fork/join costs more than the rows take.
constexpr int64_t kParallelWork = int64_t{1} << 16;

// Runs body(r) for r in [0, n), in parallel when there are several rows of d floats worth it;
// the first exception is rethrown.
template <typename Body>
void parallel_rows(int n, int64_t d, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) if (n > 1 && n * d >= kParallelWork)
  for (int r = 0; r < n; ++r) {
    try {
      body(r);
    } catch (...) {
#pragma omp critical(spush_algorithm_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Shared machinery of the push-sum family: the transport round with its accounting, decoding
// of the received payloads into a message table (own messages first, then each local node's
// incoming ones in src order), the batched mixing call, and the dense push-sum round used by
// SGP and by gossip_rounds().
class PushSumAlgorithm : public Algorithm {
 public:
  PushSumAlgorithm(const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
                   Transport& transport)
      : schedule_(schedule),
        transport_(transport),
        first_(transport.first_local()),
        local_(transport.local_nodes()),
        d_(layout.size()) {
    spec_ = spec;
    if (spec.layerwise) {
      offsets_ = layout.offsets();
    } else {
      offsets_ = {0, d_};
    }
    segs_ = kernels::SegmentView{offsets_.data(), static_cast<int>(offsets_.size()) - 1};
    dense_spec_.kind = CompressorKind::kIdentity;
    dense_spec_.index_codec = kernels::IndexCodec::kRaw32;
    x_ = nets::NodeMatrix(local_, d_);
    z_ = nets::NodeMatrix(local_, d_);
    u_.assign(static_cast<size_t>(local_), 1.0f);
    out_.resize(static_cast<size_t>(local_));
    own_.resize(static_cast<size_t>(local_));
    paper_bytes_.assign(static_cast<size_t>(local_), 0.0);
    in_first_.assign(static_cast<size_t>(local_), 0);
  }

  void init(const nets::NodeMatrix& x0) override {
    if (x0.rows() != local_ || x0.cols() != d_) {
      throw std::invalid_argument(
          fmt::format("{}: init x0 is [{} x {}], expected [local_nodes = {} x d = {}]",
                      to_string(spec_.kind), x0.rows(), x0.cols(), local_, d_));
    }
    for (int64_t r = 0; r < local_; ++r) std::copy_n(x0.row(r), d_, x_.row(r));
    std::fill(u_.begin(), u_.end(), 1.0f);
    stats_ = CommStats{};
    reset_state();
  }

  void gossip_rounds(int rounds, int64_t first_iteration, int64_t epoch) override {
    detail::check_gossip_rounds(rounds, first_iteration);
    for (int k = 0; k < rounds; ++k) {
      const int64_t t = first_iteration + k;
      dense_round(schedule_.graph(t, epoch), static_cast<uint64_t>(t), 1.0);
    }
  }

  std::vector<StateTensor> state() override {
    std::vector<StateTensor> s;
    s.push_back({"x", x_.data(), x_.rows() * x_.ld()});
    s.push_back({"u", u_.data(), static_cast<int64_t>(u_.size())});
    add_state(s);
    return s;
  }

 protected:
  // Zeroes the algorithm's own buffers (errors, public copies, ...).
  virtual void reset_state() = 0;
  virtual void add_state(std::vector<StateTensor>& s) = 0;

  bool communicates(int64_t t) const { return (t + 1) % spec_.local_steps == 0; }

  // Message index of the k-th incoming message of local node r in the message table.
  auto in_msg() const {
    return [this](int r, size_t k) { return in_first_[r] + static_cast<int32_t>(k); };
  }

  // Sets the outgoing message of local node r (payload filled by the caller).
  Outgoing& outgoing(int r, MessageKind kind, uint16_t codec) {
    Outgoing& o = out_[r];
    o.node = first_ + r;
    o.kind = static_cast<uint16_t>(kind);
    o.codec = codec;
    o.u = u_[r];
    o.payload.clear();
    return o;
  }

  // Papers' byte convention for one message carrying c (§9 and CommStats).
  double paper_bytes(const CompressorSpec& spec, const Compressed& c) const {
    if (kernels::is_sparse(spec.kind)) return 6.0 * static_cast<double>(c.idx.size()) + 4.0;
    if (spec.kind == CompressorKind::kIdentity) return 4.0 * static_cast<double>(d_ + 1);
    return static_cast<double>(kernels::encoded_size(spec, segs_, c)) + 4.0;
  }

  // Sum of the transport's byte counts on the out-edges of the local nodes in g.
  uint64_t local_sent_bytes(const Graph& g) const {
    uint64_t sum = 0;
    for (int r = 0; r < local_; ++r) {
      for (const Edge& e : g.out_edges(first_ + r)) {
        if (e.dst != e.src) sum += transport_.bytes().edge(e.src, e.dst);
      }
    }
    return sum;
  }

  // Sends out_ along g, accounts the round and decodes what arrived (see decode_incoming).
  void exchange(const Graph& g, uint64_t round, const CompressorSpec& spec) {
    const uint64_t before = local_sent_bytes(g);
    in_ = transport_.exchange(g, round, out_);
    const uint64_t after = local_sent_bytes(g);
    if (static_cast<int>(in_.size()) != local_) {
      throw TransportError(fmt::format("transport '{}' returned {} inboxes, expected {}",
                                       transport_.name(), in_.size(), local_));
    }
    detail::account_round(
        g, first_, local_, d_, after - before, [this](int r) { return paper_bytes_[r]; }, stats_);
    decode_incoming(spec);
  }

  // Message table: msg_[r] = own_[r] (r < local_), then the decoded incoming messages of local
  // node r at msg_[in_first_[r] + k] (their u stay in in_).
  void decode_incoming(const CompressorSpec& spec) {
    size_t total = 0;
    for (const auto& box : in_) total += box.size();
    if (recv_.size() < total) recv_.resize(total);
    msg_.resize(static_cast<size_t>(local_) + total);
    for (int r = 0; r < local_; ++r) {
      msg_[r] = &own_[r];
    }
    size_t pos = 0;
    for (int r = 0; r < local_; ++r) {
      in_first_[r] = static_cast<int32_t>(local_ + pos);
      for (const Incoming& m : in_[r]) {
        if (m.dst != first_ + r) {
          throw TransportError(fmt::format("message from {} for node {} delivered to node {}",
                                           m.src, m.dst, first_ + r));
        }
        try {
          kernels::decode(spec, segs_, m.payload.data(), m.payload.size(), recv_[pos]);
        } catch (const std::exception& e) {
          throw TransportError(
              fmt::format("message {} -> {}: malformed payload: {}", m.src, m.dst, e.what()));
        }
        msg_[local_ + pos] = &recv_[pos];
        ++pos;
      }
    }
  }

  // target[dst] += w * msg for terms_, in one batched call: CSR of all messages for sparse
  // kinds, a dense message matrix otherwise (u is mixed apart, in double: mix_u).
  void apply_terms(bool sparse, float* target, int64_t ld) {
    if (sparse) {
      msg_offsets_.resize(msg_.size() + 1);
      msg_offsets_[0] = 0;
      for (size_t m = 0; m < msg_.size(); ++m) {
        msg_offsets_[m + 1] = msg_offsets_[m] + static_cast<int64_t>(msg_[m]->idx.size());
      }
      msg_idx_.resize(static_cast<size_t>(msg_offsets_.back()));
      msg_val_.resize(msg_idx_.size());
      for (size_t m = 0; m < msg_.size(); ++m) {
        std::copy(msg_[m]->idx.begin(), msg_[m]->idx.end(), msg_idx_.begin() + msg_offsets_[m]);
        std::copy(msg_[m]->val.begin(), msg_[m]->val.end(), msg_val_.begin() + msg_offsets_[m]);
      }
      kernels::gossip_mix_sparse_cpu(target, ld, nullptr, terms_.data(),
                                     static_cast<int64_t>(terms_.size()), msg_offsets_.data(),
                                     msg_idx_.data(), msg_val_.data(), nullptr);
    } else {
      const int64_t ldm = nets::padded_ld(d_);
      msg_dense_.resize(msg_.size() * static_cast<size_t>(ldm));
      for (size_t m = 0; m < msg_.size(); ++m) {
        std::copy(msg_[m]->val.begin(), msg_[m]->val.end(),
                  msg_dense_.begin() + static_cast<int64_t>(m) * ldm);
      }
      kernels::gossip_mix_dense_cpu(target, ld, d_, nullptr, terms_.data(),
                                    static_cast<int64_t>(terms_.size()), msg_dense_.data(), ldm,
                                    nullptr);
    }
  }

  // One uncompressed push-sum round: every node sends x_i (raw fp32) and u_i, then
  // x_i <- W_ii x_i + sum_j eta P_ij x_j,  u_i <- W_ii u_i + sum_j eta P_ij u_j  with
  // W_ii = 1 + eta (P_ii - 1) (that is W = I + eta (P - I) applied to the pre-round values).
  void dense_round(const Graph& g, uint64_t round, double eta) {
    const uint16_t codec = detail::wire_codec_id(dense_spec_);
    for (int r = 0; r < local_; ++r) {
      Compressed& c = own_[r];
      c.kind = CompressorKind::kIdentity;
      c.idx.clear();
      c.scale.clear();
      c.code.clear();
      c.val.assign(x_.row(r), x_.row(r) + d_);
      Outgoing& o = outgoing(r, MessageKind::kDense, codec);
      kernels::encode(dense_spec_, segs_, c, o.payload);
      paper_bytes_[r] = 4.0 * static_cast<double>(d_ + 1);
    }
    exchange(g, round, dense_spec_);
    // The self term in double, one rounding: exact column sums, no bias (see self_weight).
    w_self_.resize(static_cast<size_t>(local_));
    for (int r = 0; r < local_; ++r) w_self_[r] = self_weight(g, first_ + r, eta, 1.0);
    kernels::scale_rows_cpu(x_.data(), local_, x_.ld(), d_, w_self_.data());
    detail::incoming_terms(eta, in_, in_msg(), terms_);
    apply_terms(false, x_.data(), x_.ld());
    detail::mix_u(g, first_, eta, in_, u_);
  }

  const Schedule& schedule_;
  Transport& transport_;
  int first_, local_;
  int64_t d_;
  std::vector<int64_t> offsets_;  // compression buckets: layout segments or {0, d}
  kernels::SegmentView segs_;
  CompressorSpec dense_spec_;  // identity: raw fp32 rows
  // Per-round scratch, kept between rounds so that steady state does not reallocate.
  std::vector<Outgoing> out_;
  std::vector<Compressed> own_;   // what each local node sent this round (dequantized)
  std::vector<Compressed> recv_;  // decoded incoming messages
  std::vector<double> paper_bytes_;
  std::vector<std::vector<Incoming>> in_;
  std::vector<int32_t> in_first_;
  std::vector<const Compressed*> msg_;
  std::vector<MixTerm> terms_;
  std::vector<int64_t> msg_offsets_;
  std::vector<int32_t> msg_idx_;
  std::vector<float> msg_val_;
  std::vector<float> msg_dense_;
  std::vector<double> w_self_;
};

// SGP / D-PSGD: x_i <- sum_j W_ij x^_j, u_i <- sum_j W_ij u_j with W = I + eta (P - I).
class SgpAlgorithm final : public PushSumAlgorithm {
 public:
  using PushSumAlgorithm::PushSumAlgorithm;
  void communicate(int64_t iteration, int64_t epoch) override {
    check_iteration(iteration, "communicate");
    if (!communicates(iteration)) return;
    dense_round(schedule_.graph(iteration, epoch), static_cast<uint64_t>(iteration), spec_.eta);
  }

 protected:
  void reset_state() override {}
  void add_state(std::vector<StateTensor>&) override {}
};

// Sparse-Push / Deep-Squeeze / SCSP (000 Alg. 1): v = x^ + e, c = C(v), e = v - c, send c;
//   x_i <- x^_i + eta sum_j (P_ij - I_ij) c_j,   u_i <- u_i + eta sum_j (P_ij - I_ij) u_j.
// Since the columns of P sum to 1, sum_i x_i and sum_i u_i are invariant, whatever C does.
class ErrorFeedbackAlgorithm final : public PushSumAlgorithm {
 public:
  ErrorFeedbackAlgorithm(const AlgorithmSpec& spec, const nets::Layout& layout,
                         const Schedule& schedule, Transport& transport)
      : PushSumAlgorithm(spec, layout, schedule, transport), e_(local_, d_) {}

  void communicate(int64_t iteration, int64_t epoch) override {
    check_iteration(iteration, "communicate");
    if (!communicates(iteration)) return;
    const CompressorSpec& cs = spec_.compressor;
    const uint16_t codec = detail::wire_codec_id(cs);
    for (int r = 0; r < local_; ++r) outgoing(r, MessageKind::kModel, codec);
    parallel_rows(local_, d_, [&](int r) {
      kernels::compress_ef_cpu(cs, segs_, x_.row(r), e_.row(r), own_[r],
                               static_cast<uint32_t>(first_ + r), static_cast<uint64_t>(iteration));
      kernels::encode(cs, segs_, own_[r], out_[r].payload);
      paper_bytes_[r] = paper_bytes(cs, own_[r]);
    });
    const Graph& g = schedule_.graph(iteration, epoch);
    exchange(g, static_cast<uint64_t>(iteration), cs);
    const double eta = spec_.eta;
    detail::error_feedback_terms(
        g, first_, eta, in_, [](int r) { return r; }, in_msg(), terms_);
    apply_terms(kernels::is_sparse(cs.kind), x_.data(), x_.ld());
    detail::mix_u(g, first_, eta, in_, u_);
  }

 protected:
  void reset_state() override { e_.fill(0.0f); }
  void add_state(std::vector<StateTensor>& s) override {
    s.push_back({"error", e_.data(), e_.rows() * e_.ld()});
  }

 private:
  nets::NodeMatrix e_;  // error-feedback residuals
};

// CHOCO-SGD / Quant-SGP (002 Alg. 3/5) with push-sum weights:
//   q_i = C(x^_i - x~_i); x~_i += q_i; send q_i; s_i = sum_j P_ij x~_j;
//   x_i <- x^_i + eta (s_i - x~_i);  u_i <- u_i + eta sum_j (P_ij - I_ij) u_j.
// s_i enters only through m_i = s_i - x~_i = sum_j (P_ij - I_ij) x~_j, which is what is kept:
// the same numbers in exact arithmetic, but m_i -> 0 as the nodes agree, so the fp32 rounding
// accumulated by the incremental update is relative to |m_i|, not to |x_i| (keeping s_i itself
// lets sum_i x_i drift by ~eta t^1.5 eps |x| after t rounds).
// Static graph: m_i is updated incrementally, m_i += (P_ii - 1) q_i + sum_j P_ij q_j (j over
// the in-neighbours), i.e. s_i += sum_j P_ij q_j and x~_i += q_i. Time-varying schedules (several
// graphs or link failures): node i keeps a copy of x~_j for every j in the union of its
// in-neighbours over the schedule's graphs, updated with every q_j, and recomputes
// m_i = (P_ii(t) - 1) x~_i + sum_j P_ij(t) x~_j each round. That costs O(in-degree * d) floats
// of memory per node (and as many flops per round); to keep the copies exact every node sends
// q_i to all of its union out-neighbours every round, edges absent from the round (or failed)
// carrying weight 0 (still counted in bytes). On a static graph both give the same m_i.
class ChocoAlgorithm final : public PushSumAlgorithm {
 public:
  ChocoAlgorithm(const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
                 Transport& transport)
      : PushSumAlgorithm(spec, layout, schedule, transport),
        xt_(local_, d_),
        m_(local_, d_),
        diff_(local_, d_) {
    const std::vector<Graph>& graphs = schedule.graphs();
    // Schedule::graph returns one of graphs() itself unless link failures are on.
    copies_mode_ = graphs.size() > 1 || &schedule.graph(0, 0) != &graphs.front();
    if (!copies_mode_) return;
    const int n = schedule.nodes();
    std::vector<std::set<int>> outs(static_cast<size_t>(n));
    for (const Graph& g : graphs) {
      for (const Edge& e : g.edges()) {
        if (e.src != e.dst) outs[e.src].insert(e.dst);
      }
    }
    union_out_.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) union_out_[i].assign(outs[i].begin(), outs[i].end());
    for (const Graph& g : graphs) union_cache_.push_back(union_graph(g));
    // Copies of node r: rows copy_first_[r] .. copy_first_[r + 1] of copies_, one per union
    // in-neighbour in ascending order.
    copy_src_.resize(static_cast<size_t>(local_));
    copy_first_.assign(static_cast<size_t>(local_) + 1, 0);
    for (int r = 0; r < local_; ++r) {
      for (int j = 0; j < n; ++j) {
        if (j != first_ + r && outs[j].count(first_ + r)) copy_src_[r].push_back(j);
      }
      copy_first_[r + 1] = copy_first_[r] + static_cast<int64_t>(copy_src_[r].size());
    }
    copies_ = nets::NodeMatrix(copy_first_.back(), d_);
  }

  void communicate(int64_t iteration, int64_t epoch) override {
    check_iteration(iteration, "communicate");
    if (!communicates(iteration)) return;
    const CompressorSpec& cs = spec_.compressor;
    const uint16_t codec = detail::wire_codec_id(cs);
    for (int r = 0; r < local_; ++r) outgoing(r, MessageKind::kPublicUpdate, codec);
    parallel_rows(local_, d_, [&](int r) {
      const float* xr = x_.row(r);
      float* xt = xt_.row(r);
      float* diff = diff_.row(r);
      for (int64_t k = 0; k < d_; ++k) diff[k] = xr[k] - xt[k];
      kernels::compress_ef_cpu(cs, segs_, diff, nullptr, own_[r], static_cast<uint32_t>(first_ + r),
                               static_cast<uint64_t>(iteration));
      kernels::axpy_compressed_cpu(1.0f, own_[r], segs_, xt);
      kernels::encode(cs, segs_, own_[r], out_[r].payload);
      paper_bytes_[r] = paper_bytes(cs, own_[r]);
    });
    const Graph& round_graph = schedule_.graph(iteration, epoch);
    const Graph* g = &round_graph;
    if (copies_mode_) {
      g = nullptr;
      for (size_t k = 0; k < union_cache_.size(); ++k) {
        if (&round_graph == &schedule_.graphs()[k]) g = &union_cache_[k];
      }
      if (g == nullptr) {
        union_round_ = union_graph(round_graph);
        g = &union_round_;
      }
    } else if (&round_graph != &schedule_.graphs().front()) {
      throw std::logic_error("choco: the schedule changed its graph but m is kept incrementally");
    }
    exchange(*g, static_cast<uint64_t>(iteration), cs);

    if (!copies_mode_) {
      // m_i += (P_ii - 1) q_i + sum_j P_ij q_j, one batched call.
      terms_.clear();
      for (int r = 0; r < local_; ++r) {
        terms_.push_back({r, r, static_cast<float>(self_weight(*g, first_ + r, 1.0, 0.0))});
        for (size_t k = 0; k < in_[r].size(); ++k) {
          terms_.push_back({r, in_first_[r] + static_cast<int32_t>(k), in_[r][k].weight});
        }
      }
      apply_terms(kernels::is_sparse(cs.kind), m_.data(), m_.ld());
    } else {
      parallel_rows(local_, d_, [&](int r) {
        const std::vector<Incoming>& box = in_[r];
        if (box.size() != copy_src_[r].size()) {
          throw std::logic_error(fmt::format("choco: node {} got {} messages, expected {}",
                                             first_ + r, box.size(), copy_src_[r].size()));
        }
        float* m = m_.row(r);
        const float w_self = static_cast<float>(self_weight(*g, first_ + r, 1.0, 0.0));
        const float* xt = xt_.row(r);
        for (int64_t k = 0; k < d_; ++k) m[k] = w_self * xt[k];
        for (size_t k = 0; k < box.size(); ++k) {
          if (box[k].src != copy_src_[r][k]) {
            throw std::logic_error(fmt::format("choco: node {} message {} is from {}, expected {}",
                                               first_ + r, k, box[k].src, copy_src_[r][k]));
          }
          float* copy = copies_.row(copy_first_[r] + static_cast<int64_t>(k));
          kernels::axpy_compressed_cpu(1.0f, *msg_[in_first_[r] + k], segs_, copy);
          const float w = box[k].weight;
          if (w != 0.0f) {
            for (int64_t j = 0; j < d_; ++j) m[j] += w * copy[j];
          }
        }
      });
    }

    const float eta = static_cast<float>(spec_.eta);
    for (int r = 0; r < local_; ++r) {
      float* xr = x_.row(r);
      const float* m = m_.row(r);
      for (int64_t k = 0; k < d_; ++k) xr[k] += eta * m[k];
    }
    detail::mix_u(*g, first_, spec_.eta, in_, u_);
  }

 protected:
  void reset_state() override {
    xt_.fill(0.0f);
    m_.fill(0.0f);
    copies_.fill(0.0f);
  }
  void add_state(std::vector<StateTensor>& s) override {
    s.push_back({"x_public", xt_.data(), xt_.rows() * xt_.ld()});
    if (copies_mode_) {
      // m is recomputed from the copies every round.
      s.push_back({"neighbour_public", copies_.data(), copies_.rows() * copies_.ld()});
    } else {
      s.push_back({"s_minus_public", m_.data(), m_.rows() * m_.ld()});
    }
  }

 private:
  // The union of the schedule's edges with this round's weights (0 where the round has no
  // edge) and this round's self-loops.
  Graph union_graph(const Graph& g) const {
    std::vector<Edge> edges;
    for (int i = 0; i < g.nodes(); ++i) {
      edges.push_back({i, i, g.self_weight(i)});
      const std::vector<Edge>& outs = g.out_edges(i);
      for (int j : union_out_[i]) {
        const auto it = std::lower_bound(outs.begin(), outs.end(), j,
                                         [](const Edge& e, int dst) { return e.dst < dst; });
        edges.push_back({i, j, it != outs.end() && it->dst == j ? it->weight : 0.0});
      }
    }
    return Graph(g.nodes(), std::move(edges), g.name() + " (choco union)");
  }

  nets::NodeMatrix xt_;    // public copies x~_i
  nets::NodeMatrix m_;     // m_i = s_i - x~_i = sum_j (P_ij - I_ij) x~_j
  nets::NodeMatrix diff_;  // scratch x^_i - x~_i
  bool copies_mode_ = false;
  std::vector<std::vector<int>> union_out_;  // union out-neighbours per node (no self)
  std::vector<Graph> union_cache_;           // union_graph of each schedule graph
  Graph union_round_;                        // union_graph of a round with link failures
  std::vector<std::vector<int>> copy_src_;
  std::vector<int64_t> copy_first_;
  nets::NodeMatrix copies_;  // [sum of union in-degrees x d]
};

// eta < 0 in the spec: 000 Table 5 by density for the sparse kinds; 1 without compression;
// for the dense quantizers (not covered by the papers' table) the table at the bit fraction
// they send, (bits + 1) / 32 for QSGD, 1/32 for sign, 8/32 for 8-bit min-max.
double resolve_eta(const AlgorithmSpec& spec) {
  if (spec.eta >= 0) return spec.eta;
  if (spec.kind == AlgorithmKind::kSgp) return 1.0;
  const CompressorSpec& c = spec.compressor;
  switch (c.kind) {
    case CompressorKind::kIdentity:
      return 1.0;
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
    case CompressorKind::kFractional:
      return default_eta(c.density);
    case CompressorKind::kQsgd:
      return default_eta((c.bits + 1) / 32.0);
    case CompressorKind::kSign:
      return default_eta(1.0 / 32.0);
    case CompressorKind::kMinMax8:
      return default_eta(8.0 / 32.0);
  }
  return 1.0;
}

}  // namespace

AlgorithmSpec checked_algorithm_spec(const AlgorithmSpec& spec_in, const nets::Layout& layout,
                                     const Schedule& schedule, const TransportShape& transport) {
  AlgorithmSpec spec = spec_in;
  const char* name = to_string(spec.kind);
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(fmt::format("make_algorithm({}): {}", name, what));
  };
  if (spec.kind != AlgorithmKind::kSgp && spec.kind != AlgorithmKind::kDeepSqueeze &&
      spec.kind != AlgorithmKind::kSparsePush && spec.kind != AlgorithmKind::kScsp &&
      spec.kind != AlgorithmKind::kChoco) {
    fail(fmt::format("unknown algorithm kind {}", static_cast<int>(spec.kind)));
  }
  if (layout.size() <= 0) fail("the layout is empty, expected at least one parameter");
  if (std::isnan(spec.eta)) fail("eta is NaN, expected a value in (0, 1] or < 0 for the default");
  spec.eta = resolve_eta(spec);
  if (!(spec.eta > 0 && spec.eta <= 1)) {
    fail(fmt::format("eta = {} is outside (0, 1] (a negative eta selects the default)", spec.eta));
  }
  if (spec.local_steps < 1) {
    fail(fmt::format("local_steps = {}, expected >= 1", spec.local_steps));
  }
  if (spec.scsp_final_rounds < 0) {
    fail(fmt::format("scsp_final_rounds = {}, expected >= 0", spec.scsp_final_rounds));
  }
  if (transport.world_nodes != schedule.nodes()) {
    fail(fmt::format("the schedule has {} nodes but the transport '{}' has {}", schedule.nodes(),
                     transport.name, transport.world_nodes));
  }
  if (transport.local_nodes < 1 || transport.first_local < 0 ||
      transport.first_local + transport.local_nodes > transport.world_nodes) {
    fail(fmt::format("transport '{}' hosts nodes [{}, {}) of {}", transport.name,
                     transport.first_local, transport.first_local + transport.local_nodes,
                     transport.world_nodes));
  }
  if (spec.kind != AlgorithmKind::kSgp) {
    try {
      kernels::validate(spec.compressor);
    } catch (const std::invalid_argument& e) {
      fail(fmt::format("bad compressor: {}", e.what()));
    }
    const CompressorSpec& c = spec.compressor;
    if (kernels::is_sparse(c.kind) && c.index_codec == kernels::IndexCodec::kLocal16) {
      int64_t longest = layout.size();
      if (spec.layerwise) {
        longest = 0;
        for (const nets::SegmentInfo& s : layout.segments()) longest = std::max(longest, s.size);
      }
      if (longest > 65536) {
        fail(
            fmt::format("index codec local16 needs buckets of at most 65536 values, the longest "
                        "{} bucket has {} (use raw32 or block, or layer-wise compression)",
                        spec.layerwise ? "layer" : "(global)", longest));
      }
    }
    if (c.kind == CompressorKind::kRandomK && c.randomk_scale &&
        spec.kind != AlgorithmKind::kChoco) {
      fail(
          "random-K with randomk_scale is unbiased scaling, not for error feedback; "
          "expected randomk_scale = false");
    }
  }
  if (spec.kind == AlgorithmKind::kDeepSqueeze && !schedule.doubly_stochastic()) {
    fail(
        fmt::format("Deep-Squeeze needs a symmetric doubly stochastic schedule, got {} "
                    "(use sparsepush on directed or time-varying graphs)",
                    schedule.describe()));
  }
  return spec;
}

std::unique_ptr<Algorithm> make_algorithm(const AlgorithmSpec& spec_in, const nets::Layout& layout,
                                          const Schedule& schedule, Transport& transport) {
  const AlgorithmSpec spec =
      checked_algorithm_spec(spec_in, layout, schedule,
                             {transport.name(), transport.world_nodes(), transport.first_local(),
                              transport.local_nodes()});
  switch (spec.kind) {
    case AlgorithmKind::kSgp:
      return std::make_unique<SgpAlgorithm>(spec, layout, schedule, transport);
    case AlgorithmKind::kDeepSqueeze:
    case AlgorithmKind::kSparsePush:
    case AlgorithmKind::kScsp:
      return std::make_unique<ErrorFeedbackAlgorithm>(spec, layout, schedule, transport);
    case AlgorithmKind::kChoco:
      return std::make_unique<ChocoAlgorithm>(spec, layout, schedule, transport);
  }
  throw std::logic_error("make_algorithm: unreachable");
}

}  // namespace spush::runtime

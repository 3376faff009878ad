// The one push-sum engine (algorithm.h): SGP / D-PSGD, Deep-Squeeze, Sparse-Push, SCSP and
// CHOCO-SGD / Quant-SGP as rounds of backend ops over a communicator. A round: compress every
// local row into the message table (compress_ef), encode the own messages into the send rows,
// exchange (the communicator validates each header and counts each edge), decode the received
// rows into the message table, then one batched mixing op whose terms (destination row,
// message, weight) and whose push-sum weights u are computed on the host from the schedule and
// the headers (docs/ALGORITHMS.md, "The push-sum family"), in double with one rounding.
//
// Message table: rows [0, n) the local nodes' own messages, [n, 2n) the same decoded from the
// send rows (what local receivers read), [2n, 2n + R) the messages from other ranks. Sparse
// kinds keep k_row entries per message (idx / val), dense kinds a row of ld floats.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

#include "engine_centralized.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/mixing.h"
#include "spush/runtime/algorithm.h"

namespace spush::runtime {

// ---- names and defaults --------------------------------------------------------------------

AlgorithmKind algorithm_kind_from_string(std::string_view name) {
  if (name == "sgp" || name == "dpsgd") return AlgorithmKind::kSgp;
  if (name == "deepsqueeze") return AlgorithmKind::kDeepSqueeze;
  if (name == "sparsepush") return AlgorithmKind::kSparsePush;
  if (name == "scsp") return AlgorithmKind::kScsp;
  if (name == "choco" || name == "quantsgp") return AlgorithmKind::kChoco;
  if (name == "bsp") return AlgorithmKind::kBsp;
  if (name == "fedavg") return AlgorithmKind::kFedAvg;
  if (name == "gaia") return AlgorithmKind::kGaia;
  if (name == "dgc") return AlgorithmKind::kDgc;
  if (name == "ssgd-topk") return AlgorithmKind::kSsgdTopK;
  if (name == "ssgd-mv") return AlgorithmKind::kMv;
  if (name == "mv-ad") return AlgorithmKind::kMvAd;
  if (name == "mv-rs") return AlgorithmKind::kMvRs;
  throw std::invalid_argument(fmt::format(
      "unknown algorithm '{}': expected one of sgp, dpsgd, deepsqueeze, sparsepush, scsp, choco, "
      "quantsgp, bsp, fedavg, gaia, dgc, ssgd-topk, ssgd-mv, mv-ad, mv-rs",
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
    case AlgorithmKind::kBsp:
      return "bsp";
    case AlgorithmKind::kFedAvg:
      return "fedavg";
    case AlgorithmKind::kGaia:
      return "gaia";
    case AlgorithmKind::kDgc:
      return "dgc";
    case AlgorithmKind::kSsgdTopK:
      return "ssgd-topk";
    case AlgorithmKind::kMv:
      return "ssgd-mv";
    case AlgorithmKind::kMvAd:
      return "mv-ad";
    case AlgorithmKind::kMvRs:
      return "mv-rs";
  }
  return "unknown";
}

double default_eta(double density) {
  if (!(density > 0 && density <= 1)) {
    throw std::invalid_argument(
        fmt::format("default_eta: density must be in (0, 1], got {}", density));
  }
  // Ascending density; a density between two rows takes the row above it.
  static constexpr std::pair<double, double> kTable[] = {
      {0.001, 0.001}, {0.01, 0.005}, {0.1, 0.01}, {0.5, 0.08}, {1.0, 1.0}};
  for (const auto& [rho, eta] : kTable) {
    if (density <= rho * (1 + 1e-12)) return eta;
  }
  return 1.0;
}

namespace {

using kernels::Array;
using kernels::CompressorKind;
using kernels::CompressorSpec;
using kernels::MixTerm;

// eta < 0 in the spec: the density table for the sparse kinds; 1 without compression; for the
// dense quantizers the table at the fraction of bits they send, (bits + 1) / 32 for QSGD, 1/32
// for sign, 8/32 for 8-bit min-max.
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

// The header's codec field: compressor kind * 16 + index codec.
uint16_t wire_codec_id(const CompressorSpec& c) {
  return static_cast<uint16_t>(static_cast<int>(c.kind) * 16 + static_cast<int>(c.index_codec));
}

void check_iteration(int64_t t, const char* fn) {
  if (t < 0) throw std::invalid_argument(fmt::format("{}: iteration {} < 0", fn, t));
}

// The mixing weight a receiver applies to a message: eta * P[dst][src] as the header carries
// it (fp32), rounded to fp32.
float received_weight(double eta, float header_weight) {
  return static_cast<float>(eta * static_cast<double>(header_weight));
}

// base - sum over node i's out-edges (no self-loop) of the weights its receivers apply. Used for
// the self terms (1 + eta (P_ii - 1) = 1 - eta sum_j P_ji, and eta (P_ii - 1) = -eta sum_j P_ji),
// so that the weights of each column add up to what the math says (1, or 0 for the difference
// form) up to one fp32 rounding of the self weight, not to the rounding of P_ii: the sums of x
// and u then carry no rounding bias from round to round.
double self_weight(const Graph& g, int i, double eta, double base) {
  double sum = 0;
  for (const Edge& e : g.out_edges(i)) {
    if (e.dst != i) sum += received_weight(eta, static_cast<float>(e.weight));
  }
  return base - sum;
}

// u_i <- (1 - eta sum_j P_ji) u_i + sum_j eta P_ij u_j  (= u_i + eta sum_j (P_ij - I_ij) u_j)
// on the pre-round u (own and the senders' from the headers), accumulated in double and
// rounded once: on a doubly stochastic graph u stays exactly 1.
void mix_u(const Graph& g, int first, double eta, const Inbox& in, std::vector<float>& u) {
  for (int r = 0; r < static_cast<int>(in.size()); ++r) {
    double acc = self_weight(g, first + r, eta, 1.0) * static_cast<double>(u[r]);
    for (const Incoming& m : in[r]) {
      acc += static_cast<double>(received_weight(eta, m.weight)) * static_cast<double>(m.u);
    }
    u[r] = static_cast<float>(acc);
  }
}

}  // namespace

// ---- the engine ----------------------------------------------------------------------------

struct Algorithm::Impl {
  Impl(Algorithm& a, const nets::Layout& layout, const Schedule& schedule)
      : self(a),
        be(a.backend_),
        comm(a.comm_),
        schedule(schedule),
        spec(a.spec_),
        n(a.n_),
        first(a.first_),
        d(layout.size()),
        ld(nets::padded_ld(layout.size())) {}

  Algorithm& self;
  kernels::Backend& be;
  Communicator& comm;
  const Schedule& schedule;
  const AlgorithmSpec& spec;
  int n, first;
  int64_t d, ld;

  std::vector<int64_t> offsets;  // compression buckets: layout segments or {0, d}
  int nseg = 0;
  kernels::SegmentView host_segs, dev_segs;
  CompressorSpec identity_spec;
  kernels::DenseWireLayout identity_wire, dense_wire;
  kernels::SparseWireLayout sparse_wire;
  bool compressed = false, sparse = false, choco = false;
  int64_t k_row = 0;
  size_t payload_bytes = 0, pitch = 0, ws_bytes = 0;
  double paper_bytes = 0;
  int64_t recv_rows = 0;  // R: most messages from other ranks in one round

  Array<float> x, z, e, u_dev;
  Array<int64_t> seg_dev, koff_dev, tables_dev, msg_off_dev;
  Array<int32_t> idx;
  Array<float> val, mval, scale;
  Array<int16_t> code;
  Array<uint8_t> wire, recv;
  Array<MixTerm> terms_dev;
  Array<double> w_self_dev;
  std::vector<MixTerm> terms;
  std::vector<double> w_self;
  nets::NodeMatrix x_view, z_view;
  bool z_valid = false;

  // CHOCO: pub = [x~ of the local nodes; copies of the union in-neighbours' x~], m, scratch.
  Array<float> pub, m, diff;
  bool copies_mode = false;
  std::vector<std::vector<int>> union_out;  // union out-neighbours per node (no self)
  std::vector<Graph> union_cache;           // union_graph of each schedule graph
  Graph union_round;                        // union_graph of a round with link failures
  std::vector<std::vector<int>> copy_src;   // per local node: its union in-neighbours
  std::vector<int64_t> copy_first;          // their rows in pub are n + copy_first[r] + k
  int64_t ncopies = 0;

  int* flag_compress() { return be.error_word(); }
  int* flag_messages() { return be.error_word() + 1; }
  size_t table_rows() const { return 2 * static_cast<size_t>(n) + static_cast<size_t>(recv_rows); }

  void build(const nets::Layout& layout) {
    offsets = spec.layerwise ? layout.offsets() : std::vector<int64_t>{0, d};
    nseg = static_cast<int>(offsets.size()) - 1;
    host_segs = kernels::SegmentView{offsets.data(), nseg};
    int64_t longest = 0;
    for (int s = 0; s < nseg; ++s) longest = std::max(longest, host_segs.length(s));
    const size_t rows = static_cast<size_t>(n);
    const size_t mat = rows * static_cast<size_t>(ld);
    compressed = spec.kind != AlgorithmKind::kSgp;
    choco = spec.kind == AlgorithmKind::kChoco;
    if (choco) build_choco_graphs();
    recv_rows = max_remote_in_edges();

    x = Array<float>(be, mat);
    z = Array<float>(be, mat);
    u_dev = Array<float>(be, rows);
    seg_dev = Array<int64_t>(be, offsets);
    dev_segs = kernels::SegmentView{seg_dev.get(), nseg};
    be.error_word();

    // Identity wire (SGP rounds and SCSP's final phase): raw fp32 rows of x.
    identity_spec.kind = CompressorKind::kIdentity;
    identity_spec.index_codec = kernels::IndexCodec::kRaw32;
    identity_wire = kernels::dense_wire_layout(identity_spec, host_segs);
    const size_t identity_pitch = kernels::dense_wire_pitch(identity_wire);
    size_t wire_pitch = identity_pitch;
    const size_t trows = table_rows();

    if (compressed) {
      const CompressorSpec& cs = spec.compressor;
      sparse = kernels::is_sparse(cs.kind);
      if (!choco) e = Array<float>(be, mat);
      ws_bytes = be.compress_ef_workspace_size(cs, n, ld, nseg, longest);
      be.reserve_workspace(ws_bytes);
      if (sparse) {
        sparse_wire = kernels::sparse_wire_layout(cs, host_segs);
        const std::vector<int64_t> koff = kernels::topk_offsets(host_segs, cs.density);
        k_row = koff.back();
        koff_dev = Array<int64_t>(be, koff);
        tables_dev = Array<int64_t>(be, sparse_wire.tables);
        idx = Array<int32_t>(be, trows * static_cast<size_t>(k_row));
        val = Array<float>(be, trows * static_cast<size_t>(k_row));
        std::vector<int64_t> offs(trows + 1);
        for (size_t i = 0; i < offs.size(); ++i) offs[i] = static_cast<int64_t>(i) * k_row;
        msg_off_dev = Array<int64_t>(be, offs);
        if (cs.kind == CompressorKind::kFractional) {
          code = Array<int16_t>(be, rows * static_cast<size_t>(k_row));
          scale = Array<float>(be, rows * static_cast<size_t>(nseg) * (size_t{1} << (cs.bits - 1)));
        }
        payload_bytes = sparse_wire.payload_bytes;
        pitch = kernels::sparse_wire_pitch(sparse_wire);
        paper_bytes = 6.0 * static_cast<double>(k_row) + 4.0;
      } else {
        dense_wire = kernels::dense_wire_layout(cs, host_segs);
        if (cs.kind != CompressorKind::kIdentity) {
          code = Array<int16_t>(be, mat);
          scale = Array<float>(be, rows * static_cast<size_t>(nseg) *
                                       static_cast<size_t>(kernels::scales_per_bucket(cs.kind)));
        }
        payload_bytes = dense_wire.payload_bytes;
        pitch = kernels::dense_wire_pitch(dense_wire);
        paper_bytes = cs.kind == CompressorKind::kIdentity
                          ? 4.0 * static_cast<double>(d + 1)
                          : static_cast<double>(payload_bytes) + 4.0;
      }
      wire_pitch = std::max(wire_pitch, pitch);
    }
    // Dense message rows: SGP rounds and the dense kinds (own rows [0, n), decoded ones after);
    // SCSP's final phase needs them too (any other algorithm's gossip_rounds() allocates them).
    if (!sparse || spec.kind == AlgorithmKind::kScsp)
      mval = Array<float>(be, trows * static_cast<size_t>(ld));
    // Mixing terms: at most a self term and one per in-edge or copy of every local node.
    size_t most_in = 0;
    for (const Graph& g : schedule.graphs()) most_in = std::max(most_in, local_in_edges(g));
    for (const Graph& g : union_cache) most_in = std::max(most_in, local_in_edges(g));
    terms_dev = Array<MixTerm>(be, 2 * rows + most_in + static_cast<size_t>(ncopies));
    w_self_dev = Array<double>(be, rows);
    if (choco) {
      pub = Array<float>(be, (rows + static_cast<size_t>(ncopies)) * static_cast<size_t>(ld));
      m = Array<float>(be, mat);
      diff = Array<float>(be, mat);
    }
    wire = Array<uint8_t>(be, rows * wire_pitch);
    recv = Array<uint8_t>(be, std::max<size_t>(static_cast<size_t>(recv_rows) * wire_pitch, 1));
    if (be.host_memory()) {
      x_view = nets::NodeMatrix::view(x.get(), n, d, ld);
      z_view = nets::NodeMatrix::view(z.get(), n, d, ld);
    }
  }

  // CHOCO on a time-varying schedule keeps a copy of every union in-neighbour's public model.
  void build_choco_graphs() {
    const std::vector<Graph>& graphs = schedule.graphs();
    // Schedule::graph returns one of graphs() itself unless link failures are on.
    copies_mode = graphs.size() > 1 || &schedule.graph(0, 0) != &graphs.front();
    if (!copies_mode) return;
    const int world = schedule.nodes();
    std::vector<std::set<int>> outs(static_cast<size_t>(world));
    for (const Graph& g : graphs)
      for (const Edge& ed : g.edges())
        if (ed.src != ed.dst) outs[ed.src].insert(ed.dst);
    union_out.resize(static_cast<size_t>(world));
    for (int i = 0; i < world; ++i) union_out[i].assign(outs[i].begin(), outs[i].end());
    for (const Graph& g : graphs) union_cache.push_back(union_graph(g));
    copy_src.resize(static_cast<size_t>(n));
    copy_first.assign(static_cast<size_t>(n) + 1, 0);
    for (int r = 0; r < n; ++r) {
      for (int j = 0; j < world; ++j)
        if (j != first + r && outs[j].count(first + r)) copy_src[r].push_back(j);
      copy_first[r + 1] = copy_first[r] + static_cast<int64_t>(copy_src[r].size());
    }
    ncopies = copy_first.back();
  }

  // The union of the schedule's edges with this round's weights (0 where the round has no
  // edge) and this round's self-loops.
  Graph union_graph(const Graph& g) const {
    std::vector<Edge> edges;
    for (int i = 0; i < g.nodes(); ++i) {
      edges.push_back({i, i, g.self_weight(i)});
      const std::vector<Edge>& outs = g.out_edges(i);
      for (int j : union_out[i]) {
        const auto it = std::lower_bound(outs.begin(), outs.end(), j,
                                         [](const Edge& ed, int dst) { return ed.dst < dst; });
        edges.push_back({i, j, it != outs.end() && it->dst == j ? it->weight : 0.0});
      }
    }
    return Graph(g.nodes(), std::move(edges), g.name() + " (choco union)");
  }

  int64_t max_remote_in_edges() const {
    size_t most = 0;
    for (const Graph& g : schedule.graphs()) most = std::max(most, comm.remote_in_edges(g));
    for (const Graph& g : union_cache) most = std::max(most, comm.remote_in_edges(g));
    return static_cast<int64_t>(most);
  }

  // ---- round plumbing ----------------------------------------------------------------------

  void debias() {
    be.debias(x.get(), ld, u_dev.get(), n, d, z.get(), ld);
    z_valid = true;
  }

  void upload_u() { u_dev.upload(self.u_); }

  void upload_terms() {
    terms_dev.reserve(terms.size());  // sized in build(); grows only for unforeseen graphs
    terms_dev.upload(terms);
  }

  // Edges into the local nodes of g, self-loops excluded.
  size_t local_in_edges(const Graph& g) const {
    size_t count = 0;
    for (int r = 0; r < n; ++r) count += g.in_edges(first + r).size() - 1;
    return count;
  }

  // Exchanges the send rows over g and adds the round to the counts.
  const Inbox& exchange(const Graph& g, uint64_t round, MessageKind kind, uint16_t codec,
                        size_t bytes, size_t row_pitch, double paper) {
    RoundMessages msg;
    msg.round = round;
    msg.kind = kind;
    msg.codec = codec;
    msg.u = self.u_.data();
    msg.send = wire.get();
    msg.payload_bytes = bytes;
    msg.pitch = row_pitch;
    msg.recv = recv.get();
    msg.recv_rows = static_cast<size_t>(recv_rows);
    const uint64_t before = comm.bytes().total();
    const Inbox& in = comm.exchange(g, msg);
    CommStats& st = self.stats_;
    st.rounds += 1;
    st.bytes_actual += comm.bytes().total() - before;
    for (int r = 0; r < n; ++r) {
      const double deg = g.out_degree(first + r);
      st.messages += static_cast<uint64_t>(deg);
      st.bytes_paper += deg * paper;
      st.bytes_dense += deg * 4.0 * static_cast<double>(d + 1);
    }
    return in;
  }

  // Rows of the receive matrix this round filled.
  static int64_t received_rows(const Inbox& in, int local) {
    int64_t most = 0;
    for (const auto& box : in)
      for (const Incoming& m : box) most = std::max<int64_t>(most, m.row - local + 1);
    return most;
  }

  // Message-table row of the k-th incoming message of local node r.
  int32_t in_msg(const Inbox& in, int r, size_t k) const {
    return static_cast<int32_t>(n + in[r][k].row);
  }

  // Decodes the send rows into table rows [n, 2n) and the receive rows into [2n, ...).
  void decode_sparse(const Inbox& in) {
    const size_t half = static_cast<size_t>(n) * static_cast<size_t>(k_row);
    be.decode_sparse_rows(sparse_wire, tables_dev.get(), n, wire.get(), pitch, idx.get() + half,
                          val.get() + half, flag_messages());
    const int64_t rr = received_rows(in, n);
    if (rr > 0)
      be.decode_sparse_rows(sparse_wire, tables_dev.get(), rr, recv.get(), pitch,
                            idx.get() + 2 * half, val.get() + 2 * half, flag_messages());
  }

  void decode_dense(const kernels::DenseWireLayout& l, size_t row_pitch, const Inbox& in) {
    const size_t half = static_cast<size_t>(n) * static_cast<size_t>(ld);
    const int64_t* segs = seg_dev.get();
    be.decode_dense_rows(l, segs, n, wire.get(), row_pitch, mval.get() + half, ld, flag_messages());
    const int64_t rr = received_rows(in, n);
    if (rr > 0)
      be.decode_dense_rows(l, segs, rr, recv.get(), row_pitch, mval.get() + 2 * half, ld,
                           flag_messages());
  }

  // target[dst] += w * message for terms (sparse: CSR message table; dense: mval rows).
  void mix(float* target, int64_t rows) {
    upload_terms();
    const auto nterms = static_cast<int64_t>(terms.size());
    if (sparse)
      be.gossip_mix_sparse(target, rows, ld, nullptr, terms_dev.get(), nterms, msg_off_dev.get(),
                           static_cast<int64_t>(table_rows()), idx.get(), val.get(), nullptr,
                           flag_messages());
    else
      be.gossip_mix_dense(target, rows, ld, d, nullptr, terms_dev.get(), nterms, mval.get(),
                          static_cast<int64_t>(table_rows()), ld, nullptr, flag_messages());
  }

  // The own messages of this round as the compressor writes them.
  kernels::DeviceMessage own_message() {
    kernels::DeviceMessage own;
    if (sparse) {
      own.idx = idx.get();
      own.val = val.get();
      own.code = code.get();
      own.scale = scale.get();
    } else {
      own.val = mval.get();
      own.code = code.get();
      own.scale = scale.get();
      own.ld_msg = ld;
    }
    return own;
  }

  void encode_own(const kernels::DeviceMessage& own) {
    if (sparse)
      be.encode_sparse_rows(sparse_wire, tables_dev.get(), n, own, wire.get(), pitch);
    else
      be.encode_dense_rows(dense_wire, seg_dev.get(), n, own, wire.get(), pitch);
  }

  // ---- the rounds ----------------------------------------------------------------------------

  // Uncompressed push-sum round: x <- W x, u <- W u with W = I + eta (P - I).
  void dense_round(const Graph& g, uint64_t round, double eta) {
    const size_t row_pitch = kernels::dense_wire_pitch(identity_wire);
    kernels::DeviceMessage own;
    own.val = x.get();
    own.ld_msg = ld;
    be.encode_dense_rows(identity_wire, seg_dev.get(), n, own, wire.get(), row_pitch);
    const Inbox& in =
        exchange(g, round, MessageKind::kDense, wire_codec_id(identity_spec),
                 identity_wire.payload_bytes, row_pitch, 4.0 * static_cast<double>(d + 1));
    decode_dense(identity_wire, row_pitch, in);
    w_self.resize(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) w_self[r] = self_weight(g, first + r, eta, 1.0);
    w_self_dev.upload(w_self);
    be.scale_rows(x.get(), n, ld, d, w_self_dev.get());
    terms.clear();
    for (int r = 0; r < n; ++r)
      for (size_t k = 0; k < in[r].size(); ++k)
        terms.push_back({r, in_msg(in, r, k), received_weight(eta, in[r][k].weight)});
    upload_terms();
    be.gossip_mix_dense(x.get(), n, ld, d, nullptr, terms_dev.get(),
                        static_cast<int64_t>(terms.size()), mval.get(),
                        static_cast<int64_t>(table_rows()), ld, nullptr, flag_messages());
    mix_u(g, first, eta, in, self.u_);
    upload_u();
    debias();
  }

  // Error-compensated compressed round (Sparse-Push / Deep-Squeeze / SCSP):
  // v = x + e, c = C(v), e = v - c, send c; x_i += eta sum_j (P_ij - I_ij) c_j.
  // Since the columns of P sum to 1, sum_i x_i and sum_i u_i are invariant, whatever C does.
  void error_feedback_round(const Graph& g, uint64_t round) {
    const CompressorSpec& cs = spec.compressor;
    const double eta = spec.eta;
    const kernels::DeviceMessage own = own_message();
    be.compress_ef(cs, n, dev_segs, sparse ? koff_dev.get() : nullptr, x.get(), ld, e.get(), ld,
                   own, static_cast<uint32_t>(first), round, be.workspace(), ws_bytes,
                   flag_compress());
    check_errors(false);  // on the cpu: a NaN model is reported before anything is sent
    encode_own(own);
    const Inbox& in = exchange(g, round, MessageKind::kModel, wire_codec_id(cs), payload_bytes,
                               pitch, paper_bytes);
    if (sparse)
      decode_sparse(in);
    else
      decode_dense(dense_wire, pitch, in);
    check_errors(false);  // on the cpu: a malformed message is reported before it is mixed
    terms.clear();
    for (int r = 0; r < n; ++r) {
      terms.push_back({r, r, static_cast<float>(self_weight(g, first + r, eta, 0.0))});
      for (size_t k = 0; k < in[r].size(); ++k)
        terms.push_back({r, in_msg(in, r, k), received_weight(eta, in[r][k].weight)});
    }
    upload_terms();
    mix_u(g, first, eta, in, self.u_);
    upload_u();
    const auto nterms = static_cast<int64_t>(terms.size());
    if (sparse) {
      // u is already the round's new weights (msg_u null): the fused op only de-biases.
      be.gossip_mix_sparse_debias(x.get(), n, ld, d, u_dev.get(), terms_dev.get(), nterms,
                                  msg_off_dev.get(), static_cast<int64_t>(table_rows()), idx.get(),
                                  val.get(), nullptr, z.get(), ld, flag_messages());
      z_valid = true;
    } else {
      be.gossip_mix_dense(x.get(), n, ld, d, nullptr, terms_dev.get(), nterms, mval.get(),
                          static_cast<int64_t>(table_rows()), ld, nullptr, flag_messages());
      debias();
    }
  }

  // CHOCO-SGD / Quant-SGP with push-sum weights:
  //   q_i = C(x^_i - x~_i); x~_i += q_i; send q_i; s_i = sum_j P_ij x~_j;
  //   x_i <- x^_i + eta (s_i - x~_i);  u_i <- u_i + eta sum_j (P_ij - I_ij) u_j.
  // s_i enters only through m_i = s_i - x~_i = sum_j (P_ij - I_ij) x~_j, which is what is kept:
  // the same numbers in exact arithmetic, but m_i -> 0 as the nodes agree, so the fp32
  // rounding accumulated by the incremental update is relative to |m_i|, not to |x_i|.
  // Static graph: m_i += (P_ii - 1) q_i + sum_j P_ij q_j (j over the in-neighbours).
  // Time-varying schedules (several graphs or link failures): node i keeps a copy of x~_j for
  // every j in the union of its in-neighbours over the schedule's graphs, updated with every
  // q_j, and recomputes m_i = (P_ii(t) - 1) x~_i + sum_j P_ij(t) x~_j each round: O(in-degree
  // * d) floats per node. To keep the copies exact every node sends q_i to all of its union
  // out-neighbours every round, edges absent from the round (or failed) carrying weight 0
  // (still counted in bytes). On a static graph both give the same m_i.
  void choco_round(const Graph& round_graph, uint64_t round) {
    const CompressorSpec& cs = spec.compressor;
    const kernels::DeviceMessage own = own_message();
    // q = C(x^ - x~), then x~ += q.
    be.axpby_rows(n, d, 1.0f, x.get(), ld, -1.0f, pub.get(), ld, diff.get(), ld);
    be.compress_ef(cs, n, dev_segs, sparse ? koff_dev.get() : nullptr, diff.get(), ld, nullptr, ld,
                   own, static_cast<uint32_t>(first), round, be.workspace(), ws_bytes,
                   flag_compress());
    check_errors(false);
    terms.clear();
    for (int r = 0; r < n; ++r) terms.push_back({r, r, 1.0f});
    mix(pub.get(), n);
    encode_own(own);

    const Graph* g = &round_graph;
    if (copies_mode) {
      g = nullptr;
      for (size_t k = 0; k < union_cache.size(); ++k)
        if (&round_graph == &schedule.graphs()[k]) g = &union_cache[k];
      if (g == nullptr) {
        union_round = union_graph(round_graph);
        g = &union_round;
      }
    } else if (&round_graph != &schedule.graphs().front()) {
      throw std::logic_error("choco: the schedule changed its graph but m is kept incrementally");
    }
    const Inbox& in = exchange(*g, round, MessageKind::kPublicUpdate, wire_codec_id(cs),
                               payload_bytes, pitch, paper_bytes);
    if (sparse)
      decode_sparse(in);
    else
      decode_dense(dense_wire, pitch, in);

    if (!copies_mode) {
      // m_i += (P_ii - 1) q_i + sum_j P_ij q_j, one batched op.
      terms.clear();
      for (int r = 0; r < n; ++r) {
        terms.push_back({r, r, static_cast<float>(self_weight(*g, first + r, 1.0, 0.0))});
        for (size_t k = 0; k < in[r].size(); ++k)
          terms.push_back({r, in_msg(in, r, k), in[r][k].weight});
      }
      mix(m.get(), n);
    } else {
      // Copies += the received q_j, then m_i = (P_ii - 1) x~_i + sum_j P_ij copy_j.
      terms.clear();
      for (int r = 0; r < n; ++r) {
        if (in[r].size() != copy_src[r].size())
          throw std::logic_error(fmt::format("choco: node {} got {} messages, expected {}",
                                             first + r, in[r].size(), copy_src[r].size()));
        for (size_t k = 0; k < in[r].size(); ++k) {
          if (in[r][k].src != copy_src[r][k])
            throw std::logic_error(fmt::format("choco: node {} message {} is from {}, expected {}",
                                               first + r, k, in[r][k].src, copy_src[r][k]));
          terms.push_back({static_cast<int32_t>(n + copy_first[r] + static_cast<int64_t>(k)),
                           in_msg(in, r, k), 1.0f});
        }
      }
      mix(pub.get(), n + ncopies);
      terms.clear();
      for (int r = 0; r < n; ++r) {
        terms.push_back({r, r, static_cast<float>(self_weight(*g, first + r, 1.0, 0.0))});
        for (size_t k = 0; k < in[r].size(); ++k)
          if (in[r][k].weight != 0.0f)
            terms.push_back({r, static_cast<int32_t>(n + copy_first[r] + static_cast<int64_t>(k)),
                             in[r][k].weight});
      }
      upload_terms();
      m.zero();
      be.gossip_mix_dense(m.get(), n, ld, d, nullptr, terms_dev.get(),
                          static_cast<int64_t>(terms.size()), pub.get(), n + ncopies, ld, nullptr,
                          flag_messages());
    }
    // x += eta m.
    be.axpby_rows(n, d, 1.0f, x.get(), ld, static_cast<float>(spec.eta), m.get(), ld, x.get(), ld);
    mix_u(*g, first, spec.eta, in, self.u_);
    upload_u();
    debias();
  }

  // After each round on the cpu backend (free there); on the GPU at synchronize().
  void check_errors(bool wait) {
    if (!wait && !be.host_memory()) return;
    const kernels::BackendErrors err = be.take_errors();
    if (err.any())
      throw std::runtime_error(fmt::format("{} ({} backend, nodes {}..{}): {}",
                                           to_string(spec.kind), be.name(), first, first + n - 1,
                                           err.describe()));
  }
};

Algorithm::Algorithm(const AlgorithmSpec& spec, const nets::Layout& layout,
                     const Schedule& schedule, kernels::Backend& backend, Communicator& comm)
    : spec_(spec),
      backend_(backend),
      comm_(comm),
      first_(comm.first_local()),
      n_(comm.local_nodes()),
      u_(static_cast<size_t>(comm.local_nodes()), 1.0f) {
  if (is_centralized(spec_.kind)) {
    central_ = std::make_unique<Central>(*this, layout);
    return;
  }
  impl_ = std::make_unique<Impl>(*this, layout, schedule);
  impl_->build(layout);
}

Algorithm::~Algorithm() {
  try {
    if (impl_ || central_) backend_.synchronize();
  } catch (...) {
    // Destructors do not throw; the buffers are released either way.
  }
}

void Algorithm::init(const nets::NodeMatrix& x0) {
  const int64_t d = central_ ? central_->d : impl_->d;
  if (x0.rows() != n_ || x0.cols() != d) {
    throw std::invalid_argument(
        fmt::format("{}: init x0 is [{} x {}], expected [local_nodes = {} x d = {}]",
                    to_string(spec_.kind), x0.rows(), x0.cols(), n_, d));
  }
  if (central_) {
    std::fill(u_.begin(), u_.end(), 1.0f);
    stats_ = CommStats{};
    central_->init(x0);
    return;
  }
  Impl& s = *impl_;
  backend_.synchronize();
  backend_.take_errors();
  s.x.zero();
  backend_.upload_rows(s.x.get(), s.ld, x0.data(), x0.ld(), s.d, n_);
  if (s.e.size()) s.e.zero();
  if (s.pub.size()) s.pub.zero();
  if (s.m.size()) s.m.zero();
  std::fill(u_.begin(), u_.end(), 1.0f);
  s.upload_u();
  stats_ = CommStats{};
  s.debias();
  synchronize();
}

void Algorithm::reduce_gradients(nets::NodeMatrix& grads, int64_t iteration, int64_t epoch) {
  check_iteration(iteration, "reduce_gradients");
  if (central_) central_->reduce_gradients(grads, iteration, epoch);
}

void Algorithm::set_local_steps(int h) {
  if (h < 1) throw std::invalid_argument(fmt::format("set_local_steps: H = {}, expected >= 1", h));
  if (spec_.kind == AlgorithmKind::kBsp || spec_.kind == AlgorithmKind::kDgc)
    throw std::invalid_argument(
        fmt::format("{} communicates every iteration: it has no period H", to_string(spec_.kind)));
  spec_.local_steps = h;
}

void Algorithm::set_gaia_threshold(double t0) {
  if (spec_.kind != AlgorithmKind::kGaia)
    throw std::invalid_argument(
        fmt::format("{} has no significance threshold", to_string(spec_.kind)));
  if (!(t0 > 0 && std::isfinite(t0)))
    throw std::invalid_argument(fmt::format("set_gaia_threshold: T0 = {}, expected > 0", t0));
  spec_.central.gaia_threshold = t0;
}

void Algorithm::set_lr_ratio(double ratio) {
  if (!(ratio > 0 && std::isfinite(ratio)))
    throw std::invalid_argument(fmt::format("set_lr_ratio: {} is not a positive ratio", ratio));
  if (central_) central_->lr_ratio = ratio;
}

void Algorithm::communicate(int64_t iteration, int64_t epoch) {
  check_iteration(iteration, "communicate");
  if (central_) {
    central_->communicate(iteration, epoch);
    return;
  }
  if ((iteration + 1) % spec_.local_steps != 0) return;
  Impl& s = *impl_;
  const Graph& g = s.schedule.graph(iteration, epoch);
  const auto t = static_cast<uint64_t>(iteration);
  switch (spec_.kind) {
    case AlgorithmKind::kSgp:
      s.dense_round(g, t, spec_.eta);
      break;
    case AlgorithmKind::kChoco:
      s.choco_round(g, t);
      break;
    default:
      s.error_feedback_round(g, t);
  }
  s.check_errors(false);
}

void Algorithm::gossip_rounds(int rounds, int64_t first_iteration, int64_t epoch) {
  if (rounds < 0)
    throw std::invalid_argument(fmt::format("gossip_rounds: rounds must be >= 0, got {}", rounds));
  check_iteration(first_iteration, "gossip_rounds");
  if (central_)
    throw std::invalid_argument(
        fmt::format("gossip_rounds: {} is a centralized algorithm", to_string(spec_.kind)));
  Impl& s = *impl_;
  if (!s.mval.size()) s.mval = Array<float>(backend_, s.table_rows() * static_cast<size_t>(s.ld));
  for (int k = 0; k < rounds; ++k) {
    const int64_t t = first_iteration + k;
    s.dense_round(s.schedule.graph(t, epoch), static_cast<uint64_t>(t), 1.0);
    s.check_errors(false);
  }
}

nets::NodeMatrix& Algorithm::x() {
  if (central_) return central_->x;
  Impl& s = *impl_;
  if (!backend_.host_memory())
    throw std::logic_error(fmt::format("{}: x lives in {} device memory; use download_x",
                                       to_string(spec_.kind), backend_.name()));
  s.z_valid = false;  // the caller may step on x
  return s.x_view;
}

const nets::NodeMatrix& Algorithm::x() const {
  if (central_) return central_->x;
  if (!backend_.host_memory())
    throw std::logic_error(fmt::format("{}: x lives in {} device memory; use download_x",
                                       to_string(spec_.kind), backend_.name()));
  return impl_->x_view;
}

const nets::NodeMatrix& Algorithm::z() {
  if (central_) return central_->x;  // no push-sum weights: z = x
  Impl& s = *impl_;
  if (!backend_.host_memory())
    throw std::logic_error(fmt::format("{}: z lives in {} device memory; use download_z",
                                       to_string(spec_.kind), backend_.name()));
  if (!s.z_valid) s.debias();
  return s.z_view;
}

const nets::NodeMatrix& Algorithm::served_models() {
  if (!central_ || central_->theta.empty()) return z();
  Central& c = *central_;
  if (c.served.rows() != n_) c.served = nets::NodeMatrix(n_, c.d);
  for (int r = 0; r < n_; ++r) std::copy(c.theta.begin(), c.theta.end(), c.served.row(r));
  return c.served;
}

void Algorithm::download_x(nets::NodeMatrix& out) {
  if (central_) {
    out = central_->x;
    return;
  }
  Impl& s = *impl_;
  synchronize();
  if (out.rows() != n_ || out.cols() != s.d) out = nets::NodeMatrix(n_, s.d);
  backend_.download_rows(out.data(), out.ld(), s.x.get(), s.ld, s.d, n_);
}

void Algorithm::download_z(nets::NodeMatrix& out) {
  if (central_) {
    out = central_->x;
    return;
  }
  Impl& s = *impl_;
  if (!s.z_valid) s.debias();
  synchronize();
  if (out.rows() != n_ || out.cols() != s.d) out = nets::NodeMatrix(n_, s.d);
  backend_.download_rows(out.data(), out.ld(), s.z.get(), s.ld, s.d, n_);
}

void Algorithm::synchronize() {
  backend_.synchronize();
  if (impl_) impl_->check_errors(true);
}

std::vector<Algorithm::StateTensor> Algorithm::state() const {
  if (central_) return central_->state();
  const Impl& s = *impl_;
  const int64_t mat = static_cast<int64_t>(n_) * s.ld;
  std::vector<StateTensor> t{{"x", mat}, {"u", n_}};
  if (s.e.size()) t.push_back({"error", mat});
  if (s.choco) {
    t.push_back({"x_public", mat});
    if (s.copies_mode)
      t.push_back({"neighbour_public", s.ncopies * s.ld});  // m is recomputed every round
    else
      t.push_back({"s_minus_public", mat});
  }
  return t;
}

void Algorithm::save_state(
    const std::function<void(const std::string&, const float*, int64_t)>& put) {
  if (central_) {
    central_->save_state(put);
    return;
  }
  Impl& s = *impl_;
  synchronize();
  const int64_t mat = static_cast<int64_t>(n_) * s.ld;
  std::vector<float> host;
  auto save = [&](const std::string& name, const float* dev, int64_t count) {
    host.resize(static_cast<size_t>(count));
    if (count) backend_.download(host.data(), dev, sizeof(float) * static_cast<size_t>(count));
    put(name, host.data(), count);
  };
  for (const StateTensor& t : state()) {
    if (t.name == "x") save(t.name, s.x.get(), t.count);
    if (t.name == "u") put(t.name, u_.data(), t.count);
    if (t.name == "error") save(t.name, s.e.get(), t.count);
    if (t.name == "x_public") save(t.name, s.pub.get(), t.count);
    if (t.name == "neighbour_public") save(t.name, s.pub.get() + mat, t.count);
    if (t.name == "s_minus_public") save(t.name, s.m.get(), t.count);
  }
}

void Algorithm::load_state(const std::function<void(const std::string&, float*, int64_t)>& get) {
  if (central_) {
    central_->load_state(get);
    return;
  }
  Impl& s = *impl_;
  synchronize();
  const int64_t mat = static_cast<int64_t>(n_) * s.ld;
  std::vector<float> host;
  auto load = [&](const std::string& name, float* dev, int64_t count) {
    host.assign(static_cast<size_t>(count), 0.0f);
    get(name, host.data(), count);
    if (count) backend_.upload(dev, host.data(), sizeof(float) * static_cast<size_t>(count));
  };
  for (const StateTensor& t : state()) {
    if (t.name == "x") load(t.name, s.x.get(), t.count);
    if (t.name == "u") get(t.name, u_.data(), t.count);
    if (t.name == "error") load(t.name, s.e.get(), t.count);
    if (t.name == "x_public") load(t.name, s.pub.get(), t.count);
    if (t.name == "neighbour_public") load(t.name, s.pub.get() + mat, t.count);
    if (t.name == "s_minus_public") load(t.name, s.m.get(), t.count);
  }
  for (float v : u_)
    if (!std::isfinite(v) || v <= 0)
      throw std::invalid_argument(
          fmt::format("restored push-sum weight u = {} is not finite and "
                      "positive",
                      v));
  s.upload_u();
  s.debias();
  synchronize();
}

// ---- validation and the factory -----------------------------------------------------------

AlgorithmSpec checked_algorithm_spec(const AlgorithmSpec& spec_in, const nets::Layout& layout,
                                     const Schedule& schedule, const Communicator& comm) {
  AlgorithmSpec spec = spec_in;
  const char* name = to_string(spec.kind);
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(fmt::format("make_algorithm({}): {}", name, what));
  };
  if (spec.kind != AlgorithmKind::kSgp && spec.kind != AlgorithmKind::kDeepSqueeze &&
      spec.kind != AlgorithmKind::kSparsePush && spec.kind != AlgorithmKind::kScsp &&
      spec.kind != AlgorithmKind::kChoco && !is_centralized(spec.kind)) {
    fail(fmt::format("unknown algorithm kind {}", static_cast<int>(spec.kind)));
  }
  if (layout.size() <= 0) fail("the layout is empty, expected at least one parameter");
  if (is_centralized(spec.kind)) {
    const CentralizedSpec& c = spec.central;
    if (layout.size() > std::numeric_limits<int32_t>::max())
      fail(fmt::format("{} parameters, at most 2^31 - 1 (int32 indices)", layout.size()));
    if (comm.world_nodes() != schedule.nodes())
      fail(fmt::format("the schedule has {} nodes but the {} communicator's world has {}",
                       schedule.nodes(), comm.name(), comm.world_nodes()));
    if (spec.local_steps < 1)
      fail(fmt::format("local_steps = {}, expected >= 1", spec.local_steps));
    if ((spec.kind == AlgorithmKind::kBsp || spec.kind == AlgorithmKind::kDgc) &&
        spec.local_steps != 1)
      fail(
          fmt::format("local_steps = {}: {} exchanges gradients every iteration (use fedavg or "
                      "the SSGD family for local steps)",
                      spec.local_steps, name));
    if (!(spec.compressor.density > 0 && spec.compressor.density <= 1))
      fail(fmt::format("density = {}, expected a value in (0, 1]", spec.compressor.density));
    if (!(c.fedavg_fraction > 0 && c.fedavg_fraction <= 1))
      fail(fmt::format("fedavg_fraction = {}, expected a value in (0, 1]", c.fedavg_fraction));
    if (!(c.gaia_threshold > 0 && std::isfinite(c.gaia_threshold)))
      fail(fmt::format("gaia_threshold = {}, expected a finite value > 0", c.gaia_threshold));
    if (c.dgc_warmup_epochs < 0)
      fail(fmt::format("dgc_warmup_epochs = {}, expected >= 0", c.dgc_warmup_epochs));
    if (!(c.dgc_clip >= 0 && std::isfinite(c.dgc_clip)))
      fail(fmt::format("dgc_clip = {}, expected a finite value >= 0 (0: off)", c.dgc_clip));
    if (!(c.dgc_momentum >= 0 && c.dgc_momentum < 1))
      fail(fmt::format("dgc_momentum = {}, expected a value in [0, 1)", c.dgc_momentum));
    if (!(c.dgc_weight_decay >= 0 && std::isfinite(c.dgc_weight_decay)))
      fail(fmt::format("dgc_weight_decay = {}, expected a finite value >= 0", c.dgc_weight_decay));
    if (!(c.add_drop_density > 0 && c.add_drop_density <= 1))
      fail(fmt::format("add_drop_density = {}, expected a value in (0, 1]", c.add_drop_density));
    if (c.dense_epochs < 0) fail(fmt::format("dense_epochs = {}, expected >= 0", c.dense_epochs));
    spec.eta = 1;  // no averaging rate: the server averages exactly
    return spec;
  }
  if (std::isnan(spec.eta)) fail("eta is NaN, expected a value in (0, 1] or < 0 for the default");
  spec.eta = resolve_eta(spec);
  if (!(spec.eta > 0 && spec.eta <= 1)) {
    fail(fmt::format("eta = {} is outside (0, 1] (a negative eta selects the default)", spec.eta));
  }
  if (spec.local_steps < 1) fail(fmt::format("local_steps = {}, expected >= 1", spec.local_steps));
  if (spec.scsp_final_rounds < 0) {
    fail(fmt::format("scsp_final_rounds = {}, expected >= 0", spec.scsp_final_rounds));
  }
  if (comm.world_nodes() != schedule.nodes()) {
    fail(fmt::format("the schedule has {} nodes but the {} communicator's world has {}",
                     schedule.nodes(), comm.name(), comm.world_nodes()));
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
                                          const Schedule& schedule, kernels::Backend& backend,
                                          Communicator& comm) {
  const AlgorithmSpec spec = checked_algorithm_spec(spec_in, layout, schedule, comm);
  const char* name = to_string(spec.kind);
  std::string why;
  if (is_centralized(spec.kind) && !backend.host_memory())
    throw std::invalid_argument(
        fmt::format("make_algorithm({}): the centralized algorithms run on the cpu backend, not {}",
                    name, backend.name()));
  if (is_centralized(spec.kind))
    return std::unique_ptr<Algorithm>(new Algorithm(spec, layout, schedule, backend, comm));
  if (spec.kind != AlgorithmKind::kSgp && !backend.supports(spec.compressor, &why))
    throw std::invalid_argument(
        fmt::format("make_algorithm({}): the {} backend: {}", name, backend.name(), why));
  if (!comm.accepts(backend.memory()))
    throw std::invalid_argument(fmt::format(
        "make_algorithm({}): the {} communicator cannot move the {} backend's memory (it moves "
        "host memory: use the cpu backend, or one process with the local transport)",
        name, comm.name(), backend.name()));
  if (!backend.host_memory() && comm.local_nodes() > 65535)
    throw std::invalid_argument(fmt::format(
        "make_algorithm({}): {} nodes on one GPU, at most 65535", name, comm.local_nodes()));
  return std::unique_ptr<Algorithm>(new Algorithm(spec, layout, schedule, backend, comm));
}

}  // namespace spush::runtime

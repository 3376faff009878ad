// The device algorithm (algorithm_cuda.h) over an abstract set of device ops, so that the same
// orchestration runs on the GPU (CudaOps, algorithm_cuda.cpp) and, for tests on machines without
// one, on host memory with the CPU twin of every op (HostOps, algorithm_emulated.cpp).
//
// Ops provides: a name kName; `template <class T> class Array` (an owned array with get(),
// size(), reserve(n) (grow, contents lost), upload(const T*, n, stream), upload(vector,
// stream), zero(stream)); stream(); wait(stream); read_flag(const int*, stream) (waits);
// rows_to_device / rows_to_host (2-D copies of float rows; rows_to_host waits); and members
// named as the kernels' *_cuda functions without the suffix, with the same arguments.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "push_sum_round.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/mixing.h"
#include "spush/nets/layout.h"
#include "spush/runtime/algorithm_cuda.h"

namespace spush::runtime::detail {

using kernels::CompressorKind;
using kernels::CompressorSpec;
using kernels::MixTerm;

// make_algorithm's checks, plus algorithm_cuda_supports and the node limit of one GPU; fn names
// the caller in the errors (std::invalid_argument).
AlgorithmSpec checked_device_spec(const AlgorithmSpec& spec, const nets::Layout& layout,
                                  const Schedule& schedule, const DeviceLocalTransport& transport,
                                  const char* fn);

inline constexpr int kFlagNonFinite = 1;  // what compress_ef sets for NaN / inf

template <typename Ops>
class DevicePushSum final : public DeviceAlgorithm {
  template <typename T>
  using Array = typename Ops::template Array<T>;

 public:
  DevicePushSum(const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
                DeviceLocalTransport& transport)
      : schedule_(schedule),
        transport_(transport),
        n_(transport.local_nodes()),
        d_(layout.size()),
        ld_(nets::padded_ld(layout.size())) {
    spec_ = spec;
    offsets_ = spec.layerwise ? layout.offsets() : std::vector<int64_t>{0, d_};
    nseg_ = static_cast<int>(offsets_.size()) - 1;
    host_segs_ = kernels::SegmentView{offsets_.data(), nseg_};
    int64_t longest = 0;
    for (int s = 0; s < nseg_; ++s) longest = std::max(longest, host_segs_.length(s));
    u_.assign(static_cast<size_t>(n_), 1.0f);
    const size_t rows = static_cast<size_t>(n_);
    const size_t mat = rows * static_cast<size_t>(ld_);

    flag_ = Array<int>(2);  // [0]: the compressor's, [1]: the codecs' and the mixing's
    x_ = Array<float>(mat);
    z_ = Array<float>(mat);
    u_dev_ = Array<float>(rows);
    seg_dev_ = Array<int64_t>(offsets_.size());
    seg_dev_.upload(offsets_, stream_);
    dev_segs_ = kernels::SegmentView{seg_dev_.get(), nseg_};

    // Identity wire (SGP rounds and SCSP's final phase): raw fp32 rows of x.
    identity_spec_.kind = CompressorKind::kIdentity;
    identity_spec_.index_codec = kernels::IndexCodec::kRaw32;
    identity_wire_ = kernels::dense_wire_layout(identity_spec_, host_segs_);

    if (spec.kind != AlgorithmKind::kSgp) {
      const CompressorSpec& cs = spec.compressor;
      sparse_ = kernels::is_sparse(cs.kind);
      e_ = Array<float>(mat);
      ws_bytes_ = ops_.compress_ef_workspace_size(cs, n_, ld_, nseg_, longest);
      ws_ = Array<unsigned char>(std::max<size_t>(ws_bytes_, 1));
      if (sparse_) {
        sparse_wire_ = kernels::sparse_wire_layout(cs, host_segs_);
        const std::vector<int64_t> koff = kernels::topk_offsets(host_segs_, cs.density);
        k_row_ = koff.back();
        koff_dev_ = Array<int64_t>(koff.size());
        koff_dev_.upload(koff, stream_);
        tables_dev_ = Array<int64_t>(sparse_wire_.tables.size());
        tables_dev_.upload(sparse_wire_.tables, stream_);
        // Message table: own messages (rows 0..n-1), then the decoded ones (n..2n-1).
        idx_ = Array<int32_t>(2 * rows * static_cast<size_t>(k_row_));
        val_ = Array<float>(2 * rows * static_cast<size_t>(k_row_));
        std::vector<int64_t> offs(2 * rows + 1);
        for (size_t m = 0; m < offs.size(); ++m) offs[m] = static_cast<int64_t>(m) * k_row_;
        msg_off_dev_ = Array<int64_t>(offs.size());
        msg_off_dev_.upload(offs, stream_);
        payload_bytes_ = sparse_wire_.payload_bytes;
        pitch_ = kernels::sparse_wire_pitch(sparse_wire_);
        paper_bytes_ = 6.0 * static_cast<double>(k_row_) + 4.0;
      } else {
        dense_wire_ = kernels::dense_wire_layout(cs, host_segs_);
        ensure_dense_messages();
        if (cs.kind != CompressorKind::kIdentity) {
          code_ = Array<int16_t>(mat);
          scale_ = Array<float>(rows * static_cast<size_t>(nseg_) *
                                static_cast<size_t>(kernels::scales_per_bucket(cs.kind)));
        }
        payload_bytes_ = dense_wire_.payload_bytes;
        pitch_ = kernels::dense_wire_pitch(dense_wire_);
        paper_bytes_ = cs.kind == CompressorKind::kIdentity
                           ? 4.0 * static_cast<double>(d_ + 1)
                           : static_cast<double>(payload_bytes_) + 4.0;
      }
    }
    const size_t identity_pitch = kernels::dense_wire_pitch(identity_wire_);
    wire_ = Array<uint8_t>(rows * std::max(pitch_, identity_pitch));
    flag_.zero(stream_);
  }

  void init(const nets::NodeMatrix& x0) override {
    if (x0.rows() != n_ || x0.cols() != d_) {
      throw std::invalid_argument(
          fmt::format("{} ({}): init x0 is [{} x {}], expected [local_nodes = {} x d = {}]",
                      to_string(spec_.kind), Ops::kName, x0.rows(), x0.cols(), n_, d_));
    }
    synchronize();
    x_.zero(stream_);
    ops_.rows_to_device(x_.get(), ld_, x0.data(), x0.ld(), d_, n_, stream_);
    if (e_.size()) e_.zero(stream_);
    std::fill(u_.begin(), u_.end(), 1.0f);
    u_dev_.upload(u_, stream_);
    stats_ = CommStats{};
    debias();
    synchronize();
  }

  void communicate(int64_t iteration, int64_t epoch) override {
    check_iteration(iteration, "communicate");
    if ((iteration + 1) % spec_.local_steps != 0) return;
    const Graph& g = schedule_.graph(iteration, epoch);
    const auto t = static_cast<uint64_t>(iteration);
    if (spec_.kind == AlgorithmKind::kSgp) {
      dense_round(g, t, spec_.eta);
    } else {
      error_feedback_round(g, t);
    }
  }

  void gossip_rounds(int rounds, int64_t first_iteration, int64_t epoch) override {
    check_gossip_rounds(rounds, first_iteration);
    for (int k = 0; k < rounds; ++k) {
      const int64_t t = first_iteration + k;
      dense_round(schedule_.graph(t, epoch), static_cast<uint64_t>(t), 1.0);
    }
  }

  void synchronize() override {
    // The compressor's flag first: a message made from a NaN is then malformed too.
    const int compress = ops_.read_flag(flag_.get(), stream_);  // waits for the stream
    const int messages = ops_.read_flag(msg_flag(), stream_);
    if (compress != 0 || messages != 0) {
      flag_.zero(stream_);
      ops_.wait(stream_);
      throw std::runtime_error(fmt::format(
          "{} ({}): {} since the last check", to_string(spec_.kind), Ops::kName,
          compress == kFlagNonFinite ? "a node's model holds NaN or +-inf (or a quantizer's norm "
                                       "overflowed fp32)"
          : compress != 0            ? "the compressor's segment tables are inconsistent"
                                     : "a malformed message or mixing table was detected"));
    }
  }

  void download_x(nets::NodeMatrix& out) override { download(x_, out); }
  void download_z(nets::NodeMatrix& out) override { download(z_, out); }

 private:
  void download(const Array<float>& m, nets::NodeMatrix& out) {
    synchronize();
    if (out.rows() != n_ || out.cols() != d_) out = nets::NodeMatrix(n_, d_);
    ops_.rows_to_host(out.data(), out.ld(), m.get(), ld_, d_, n_, stream_);  // waits
  }

  // Dense message matrix: own rows 0..n-1, decoded rows n..2n-1, stride ld_.
  void ensure_dense_messages() {
    mval_.reserve(2 * static_cast<size_t>(n_) * static_cast<size_t>(ld_));
  }

  int* msg_flag() const { return flag_.get() + 1; }

  void debias() { ops_.debias(x_.get(), ld_, u_dev_.get(), n_, d_, z_.get(), ld_, stream_); }

  // The transport round and its accounting, as the host algorithms count it.
  std::vector<std::vector<DeviceIncoming>> exchange(const Graph& g, uint64_t round,
                                                    MessageKind kind, uint16_t codec,
                                                    size_t payload_bytes, size_t pitch,
                                                    double paper_bytes) {
    const uint64_t before = transport_.bytes().total();
    auto in = transport_.exchange(g, round, static_cast<uint16_t>(kind), codec, u_.data(),
                                  wire_.get(), pitch, payload_bytes);
    account_round(
        g, 0, n_, d_, transport_.bytes().total() - before, [&](int) { return paper_bytes; },
        stats_);
    // Every receiver of node j reads row j of the wire matrix: the table row n + j holds its
    // decoded message.
    for (int r = 0; r < n_; ++r) {
      for (const DeviceIncoming& m : in[r]) {
        if (m.dst != r || m.src < 0 || m.src >= n_ ||
            m.payload != wire_.get() + static_cast<size_t>(m.src) * pitch) {
          throw TransportError(
              fmt::format("{}: message {} -> {} delivered to node {} from an "
                          "unexpected wire location",
                          transport_.name(), m.src, m.dst, r));
        }
      }
    }
    return in;
  }

  auto received_msg(const std::vector<std::vector<DeviceIncoming>>& in) const {
    return [this, &in](int r, size_t k) { return static_cast<int32_t>(n_ + in[r][k].src); };
  }

  void upload_terms() {
    terms_dev_.reserve(std::max<size_t>(terms_.size(), 1));
    terms_dev_.upload(terms_, stream_);
  }

  // Uncompressed push-sum round: x <- W x, u <- W u with W = I + eta (P - I).
  void dense_round(const Graph& g, uint64_t round, double eta) {
    ensure_dense_messages();
    const size_t pitch = kernels::dense_wire_pitch(identity_wire_);
    kernels::DeviceMessage own;
    own.val = x_.get();
    own.ld_msg = ld_;
    ops_.encode_dense_rows(identity_wire_, seg_dev_.get(), n_, own, wire_.get(), pitch, stream_);
    const auto in =
        exchange(g, round, MessageKind::kDense, wire_codec_id(identity_spec_),
                 identity_wire_.payload_bytes, pitch, 4.0 * static_cast<double>(d_ + 1));
    float* recv = mval_.get() + static_cast<size_t>(n_) * static_cast<size_t>(ld_);
    ops_.decode_dense_rows(identity_wire_, seg_dev_.get(), n_, wire_.get(), pitch, recv, ld_,
                           msg_flag(), stream_);
    w_self_.resize(static_cast<size_t>(n_));
    for (int r = 0; r < n_; ++r) w_self_[r] = self_weight(g, r, eta, 1.0);
    w_self_dev_.reserve(w_self_.size());
    w_self_dev_.upload(w_self_, stream_);
    ops_.scale_rows(x_.get(), n_, ld_, d_, w_self_dev_.get(), stream_);
    incoming_terms(eta, in, received_msg(in), terms_);
    upload_terms();
    ops_.gossip_mix_dense(x_.get(), n_, ld_, d_, nullptr, terms_dev_.get(),
                          static_cast<int64_t>(terms_.size()), mval_.get(), 2 * n_, ld_, nullptr,
                          msg_flag(), stream_);
    mix_u(g, 0, eta, in, u_);
    u_dev_.upload(u_, stream_);
    debias();
  }

  // Error-compensated compressed round (Sparse-Push / Deep-Squeeze / SCSP):
  // v = x + e, c = C(v), e = v - c, send c; x_i += eta sum_j (P_ij - I_ij) c_j.
  void error_feedback_round(const Graph& g, uint64_t round) {
    const CompressorSpec& cs = spec_.compressor;
    const double eta = spec_.eta;
    kernels::DeviceMessage own;
    if (sparse_) {
      own.idx = idx_.get();
      own.val = val_.get();
    } else {
      own.val = mval_.get();
      own.code = code_.get();
      own.scale = scale_.get();
      own.ld_msg = ld_;
    }
    ops_.compress_ef(cs, n_, dev_segs_, sparse_ ? koff_dev_.get() : nullptr, x_.get(), ld_,
                     e_.get(), ld_, own, 0, round, ws_.get(), ws_bytes_, flag_.get(), stream_);
    if (sparse_) {
      ops_.encode_sparse_rows(sparse_wire_, tables_dev_.get(), n_, own.idx, own.val, wire_.get(),
                              pitch_, stream_);
    } else {
      ops_.encode_dense_rows(dense_wire_, seg_dev_.get(), n_, own, wire_.get(), pitch_, stream_);
    }
    const auto in = exchange(g, round, MessageKind::kModel, wire_codec_id(cs), payload_bytes_,
                             pitch_, paper_bytes_);
    const size_t half = static_cast<size_t>(n_) * static_cast<size_t>(sparse_ ? k_row_ : ld_);
    if (sparse_) {
      ops_.decode_sparse_rows(sparse_wire_, tables_dev_.get(), n_, wire_.get(), pitch_,
                              idx_.get() + half, val_.get() + half, msg_flag(), stream_);
    } else {
      ops_.decode_dense_rows(dense_wire_, seg_dev_.get(), n_, wire_.get(), pitch_,
                             mval_.get() + half, ld_, msg_flag(), stream_);
    }
    error_feedback_terms(
        g, 0, eta, in, [](int r) { return r; }, received_msg(in), terms_);
    upload_terms();
    mix_u(g, 0, eta, in, u_);
    u_dev_.upload(u_, stream_);
    const auto nterms = static_cast<int64_t>(terms_.size());
    if (sparse_) {
      // u is already the round's new weights (msg_u null): the fused kernel only de-biases.
      ops_.gossip_mix_sparse_debias(x_.get(), n_, ld_, d_, u_dev_.get(), terms_dev_.get(), nterms,
                                    msg_off_dev_.get(), 2 * n_, idx_.get(), val_.get(), nullptr,
                                    z_.get(), ld_, msg_flag(), stream_);
    } else {
      ops_.gossip_mix_dense(x_.get(), n_, ld_, d_, nullptr, terms_dev_.get(), nterms, mval_.get(),
                            2 * n_, ld_, nullptr, msg_flag(), stream_);
      debias();
    }
  }

  const Schedule& schedule_;
  DeviceLocalTransport& transport_;
  int n_;
  int64_t d_, ld_;
  std::vector<int64_t> offsets_;  // compression buckets: layout segments or {0, d}
  int nseg_ = 0;
  kernels::SegmentView host_segs_, dev_segs_;
  Ops ops_;
  kernels::Stream stream_ = ops_.stream();
  CompressorSpec identity_spec_;
  kernels::DenseWireLayout identity_wire_, dense_wire_;
  kernels::SparseWireLayout sparse_wire_;
  bool sparse_ = false;
  int64_t k_row_ = 0;
  size_t payload_bytes_ = 0, pitch_ = 0, ws_bytes_ = 0;
  double paper_bytes_ = 0;

  Array<int> flag_;
  Array<float> x_, z_, e_, u_dev_;
  Array<int64_t> seg_dev_, koff_dev_, tables_dev_, msg_off_dev_;
  Array<unsigned char> ws_;
  Array<int32_t> idx_;
  Array<float> val_, mval_, scale_;
  Array<int16_t> code_;
  Array<uint8_t> wire_;
  Array<MixTerm> terms_dev_;
  Array<double> w_self_dev_;
  std::vector<MixTerm> terms_;
  std::vector<double> w_self_;
};

}  // namespace spush::runtime::detail

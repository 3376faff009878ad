// Push-sum gossip with the node matrix on the GPU (algorithm_cuda.h). One stream per
// algorithm; every per-round host-to-device copy (mixing terms, self weights, u) is a few
// hundred bytes and is stream-ordered after the previous round's kernels. Without CUDA the
// entry points throw.
#include "spush/runtime/algorithm_cuda.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "spush/kernels/compress.h"
#include "spush/kernels/device.h"

#ifdef SPUSH_HAVE_CUDA
#include <cuda_runtime.h>

#include "push_sum_round.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/mixing_cuda.h"
#endif

namespace spush::runtime {

bool algorithm_cuda_supports(const AlgorithmSpec& spec, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
  switch (spec.kind) {
    case AlgorithmKind::kSgp:
      return true;
    case AlgorithmKind::kDeepSqueeze:
    case AlgorithmKind::kSparsePush:
    case AlgorithmKind::kScsp: {
      const kernels::CompressorKind k = spec.compressor.kind;
      if (k == kernels::CompressorKind::kIdentity || k == kernels::CompressorKind::kTopK ||
          k == kernels::CompressorKind::kQsgd || k == kernels::CompressorKind::kSign ||
          k == kernels::CompressorKind::kMinMax8) {
        return true;
      }
      return no(fmt::format(
          "compressor {} has no GPU path (GPU compressors: identity, topk, qsgd, sign, minmax8)",
          kernels::to_string(k)));
    }
    case AlgorithmKind::kChoco:
      return no("choco runs on the host only (GPU algorithms: sgp, deepsqueeze, sparsepush, scsp)");
  }
  return no("unknown algorithm kind");
}

#ifdef SPUSH_HAVE_CUDA
namespace {

using kernels::CompressorKind;
using kernels::CompressorSpec;
using kernels::MixTerm;

// An owned device array of n T (uninitialized).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) {
    if (n > 0) CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
  }
  ~DeviceArray() {
    if (p_) CUDA_CHECK_NOTHROW(cudaFree(p_));
  }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  // Grows (contents lost) to at least n elements.
  void reserve(size_t n) {
    if (n > n_) *this = DeviceArray(n);
  }
  void upload(const T* h, size_t n, cudaStream_t s) {
    if (n > n_) throw std::logic_error("DeviceArray::upload: more elements than allocated");
    if (n) CUDA_CHECK(cudaMemcpyAsync(p_, h, n * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  void upload(const std::vector<T>& h, cudaStream_t s) { upload(h.data(), h.size(), s); }
  void zero(cudaStream_t s) {
    if (n_) CUDA_CHECK(cudaMemsetAsync(p_, 0, n_ * sizeof(T), s));
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// An owned non-blocking stream; destruction waits for its work.
class OwnedStream {
 public:
  OwnedStream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~OwnedStream() {
    CUDA_CHECK_NOTHROW(cudaStreamSynchronize(s_));
    CUDA_CHECK_NOTHROW(cudaStreamDestroy(s_));
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

uint16_t codec_id(const CompressorSpec& c) {
  return static_cast<uint16_t>(static_cast<int>(c.kind) * 16 + static_cast<int>(c.index_codec));
}

constexpr int kFlagNonFinite = 1;

class DevicePushSum final : public DeviceAlgorithm {
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

    flag_ = DeviceArray<int>(1);
    x_ = DeviceArray<float>(mat);
    z_ = DeviceArray<float>(mat);
    u_dev_ = DeviceArray<float>(rows);
    seg_dev_ = DeviceArray<int64_t>(offsets_.size());
    seg_dev_.upload(offsets_, stream_);
    dev_segs_ = kernels::SegmentView{seg_dev_.get(), nseg_};

    // Identity wire (SGP rounds and SCSP's final phase): raw fp32 rows of x.
    identity_spec_.kind = CompressorKind::kIdentity;
    identity_spec_.index_codec = kernels::IndexCodec::kRaw32;
    identity_wire_ = kernels::dense_wire_layout(identity_spec_, host_segs_);

    if (spec.kind != AlgorithmKind::kSgp) {
      const CompressorSpec& cs = spec.compressor;
      sparse_ = kernels::is_sparse(cs.kind);
      e_ = DeviceArray<float>(mat);
      ws_bytes_ = kernels::compress_ef_workspace_size(cs, n_, ld_, nseg_, longest);
      ws_ = DeviceArray<unsigned char>(std::max<size_t>(ws_bytes_, 1));
      if (sparse_) {
        sparse_wire_ = kernels::sparse_wire_layout(cs, host_segs_);
        const std::vector<int64_t> koff = kernels::topk_offsets(host_segs_, cs.density);
        k_row_ = koff.back();
        koff_dev_ = DeviceArray<int64_t>(koff.size());
        koff_dev_.upload(koff, stream_);
        tables_dev_ = DeviceArray<int64_t>(sparse_wire_.tables.size());
        tables_dev_.upload(sparse_wire_.tables, stream_);
        // Message table: own messages (rows 0..n-1), then the decoded ones (n..2n-1).
        idx_ = DeviceArray<int32_t>(2 * rows * static_cast<size_t>(k_row_));
        val_ = DeviceArray<float>(2 * rows * static_cast<size_t>(k_row_));
        std::vector<int64_t> offs(2 * rows + 1);
        for (size_t m = 0; m < offs.size(); ++m) offs[m] = static_cast<int64_t>(m) * k_row_;
        msg_off_dev_ = DeviceArray<int64_t>(offs.size());
        msg_off_dev_.upload(offs, stream_);
        payload_bytes_ = sparse_wire_.payload_bytes;
        pitch_ = kernels::sparse_wire_pitch(sparse_wire_);
        paper_bytes_ = 6.0 * static_cast<double>(k_row_) + 4.0;
      } else {
        dense_wire_ = kernels::dense_wire_layout(cs, host_segs_);
        ensure_dense_messages();
        if (cs.kind != CompressorKind::kIdentity) {
          code_ = DeviceArray<int16_t>(mat);
          scale_ = DeviceArray<float>(rows * static_cast<size_t>(nseg_) *
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
    wire_ = DeviceArray<uint8_t>(rows * std::max(pitch_, identity_pitch));
    flag_.zero(stream_);
  }

  void init(const nets::NodeMatrix& x0) override {
    if (x0.rows() != n_ || x0.cols() != d_) {
      throw std::invalid_argument(
          fmt::format("{} (cuda): init x0 is [{} x {}], expected [local_nodes = {} x d = {}]",
                      to_string(spec_.kind), x0.rows(), x0.cols(), n_, d_));
    }
    synchronize();
    x_.zero(stream_);
    CUDA_CHECK(cudaMemcpy2DAsync(x_.get(), static_cast<size_t>(ld_) * sizeof(float), x0.data(),
                                 static_cast<size_t>(x0.ld()) * sizeof(float),
                                 static_cast<size_t>(d_) * sizeof(float), static_cast<size_t>(n_),
                                 cudaMemcpyHostToDevice, stream_));
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
    if (rounds < 0) {
      throw std::invalid_argument(
          fmt::format("gossip_rounds: rounds must be >= 0, got {}", rounds));
    }
    check_iteration(first_iteration, "gossip_rounds");
    for (int k = 0; k < rounds; ++k) {
      const int64_t t = first_iteration + k;
      dense_round(schedule_.graph(t, epoch), static_cast<uint64_t>(t), 1.0);
    }
  }

  void synchronize() override {
    int flag = 0;
    CUDA_CHECK(cudaMemcpyAsync(&flag, flag_.get(), sizeof(int), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (flag != 0) {
      flag_.zero(stream_);
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      throw std::runtime_error(fmt::format(
          "{} (cuda): {} since the last check", to_string(spec_.kind),
          flag == kFlagNonFinite
              ? "a node's model holds NaN or +-inf (or a quantizer's norm overflowed fp32)"
              : "a malformed message or mixing table was detected"));
    }
  }

  void download_x(nets::NodeMatrix& out) override { download(x_, out); }
  void download_z(nets::NodeMatrix& out) override { download(z_, out); }

 private:
  static void check_iteration(int64_t t, const char* fn) {
    if (t < 0) throw std::invalid_argument(fmt::format("{}: iteration {} < 0", fn, t));
  }

  void download(const DeviceArray<float>& m, nets::NodeMatrix& out) {
    synchronize();
    if (out.rows() != n_ || out.cols() != d_) out = nets::NodeMatrix(n_, d_);
    CUDA_CHECK(cudaMemcpy2DAsync(out.data(), static_cast<size_t>(out.ld()) * sizeof(float), m.get(),
                                 static_cast<size_t>(ld_) * sizeof(float),
                                 static_cast<size_t>(d_) * sizeof(float), static_cast<size_t>(n_),
                                 cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Dense message matrix: own rows 0..n-1, decoded rows n..2n-1, stride ld_.
  void ensure_dense_messages() {
    mval_.reserve(2 * static_cast<size_t>(n_) * static_cast<size_t>(ld_));
  }

  void debias() {
    kernels::debias_cuda(x_.get(), ld_, u_dev_.get(), n_, d_, z_.get(), ld_, stream_);
  }

  // The transport round and its accounting, as the host algorithms count it.
  std::vector<std::vector<DeviceIncoming>> exchange(const Graph& g, uint64_t round,
                                                    MessageKind kind, uint16_t codec,
                                                    size_t payload_bytes, size_t pitch,
                                                    double paper_bytes) {
    const uint64_t before = transport_.bytes().total();
    auto in = transport_.exchange(g, round, static_cast<uint16_t>(kind), codec, u_.data(),
                                  wire_.get(), pitch, payload_bytes);
    stats_.rounds += 1;
    stats_.bytes_actual += transport_.bytes().total() - before;
    for (int r = 0; r < n_; ++r) {
      const double deg = g.out_degree(r);
      stats_.messages += static_cast<uint64_t>(deg);
      stats_.bytes_paper += deg * paper_bytes;
      stats_.bytes_dense += deg * 4.0 * static_cast<double>(d_ + 1);
    }
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
    kernels::encode_dense_rows_cuda(identity_wire_, seg_dev_.get(), n_, own, wire_.get(), pitch,
                                    stream_);
    const auto in =
        exchange(g, round, MessageKind::kDense, codec_id(identity_spec_),
                 identity_wire_.payload_bytes, pitch, 4.0 * static_cast<double>(d_ + 1));
    float* recv = mval_.get() + static_cast<size_t>(n_) * static_cast<size_t>(ld_);
    kernels::decode_dense_rows_cuda(identity_wire_, seg_dev_.get(), n_, wire_.get(), pitch, recv,
                                    ld_, flag_.get(), stream_);
    w_self_.resize(static_cast<size_t>(n_));
    for (int r = 0; r < n_; ++r) w_self_[r] = detail::self_weight(g, r, eta, 1.0);
    w_self_dev_.reserve(w_self_.size());
    w_self_dev_.upload(w_self_, stream_);
    kernels::scale_rows_cuda(x_.get(), n_, ld_, d_, w_self_dev_.get(), stream_);
    detail::incoming_terms(eta, in, received_msg(in), terms_);
    upload_terms();
    kernels::gossip_mix_dense_cuda(x_.get(), n_, ld_, d_, nullptr, terms_dev_.get(),
                                   static_cast<int64_t>(terms_.size()), mval_.get(), 2 * n_, ld_,
                                   nullptr, flag_.get(), stream_);
    detail::mix_u(g, 0, eta, in, u_);
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
    kernels::compress_ef_cuda(cs, n_, dev_segs_, sparse_ ? koff_dev_.get() : nullptr, x_.get(), ld_,
                              e_.get(), ld_, own, 0, round, ws_.get(), ws_bytes_, flag_.get(),
                              stream_);
    if (sparse_) {
      kernels::encode_sparse_rows_cuda(sparse_wire_, tables_dev_.get(), n_, own.idx, own.val,
                                       wire_.get(), pitch_, stream_);
    } else {
      kernels::encode_dense_rows_cuda(dense_wire_, seg_dev_.get(), n_, own, wire_.get(), pitch_,
                                      stream_);
    }
    const auto in =
        exchange(g, round, MessageKind::kModel, codec_id(cs), payload_bytes_, pitch_, paper_bytes_);
    const size_t half = static_cast<size_t>(n_) * static_cast<size_t>(sparse_ ? k_row_ : ld_);
    if (sparse_) {
      kernels::decode_sparse_rows_cuda(sparse_wire_, tables_dev_.get(), n_, wire_.get(), pitch_,
                                       idx_.get() + half, val_.get() + half, flag_.get(), stream_);
    } else {
      kernels::decode_dense_rows_cuda(dense_wire_, seg_dev_.get(), n_, wire_.get(), pitch_,
                                      mval_.get() + half, ld_, flag_.get(), stream_);
    }
    detail::error_feedback_terms(
        g, 0, eta, in, [](int r) { return r; }, received_msg(in), terms_);
    upload_terms();
    detail::mix_u(g, 0, eta, in, u_);
    u_dev_.upload(u_, stream_);
    const auto nterms = static_cast<int64_t>(terms_.size());
    if (sparse_) {
      // u is already the round's new weights (msg_u null): the fused kernel only de-biases.
      kernels::gossip_mix_sparse_debias_cuda(
          x_.get(), n_, ld_, d_, u_dev_.get(), terms_dev_.get(), nterms, msg_off_dev_.get(), 2 * n_,
          idx_.get(), val_.get(), nullptr, z_.get(), ld_, flag_.get(), stream_);
    } else {
      kernels::gossip_mix_dense_cuda(x_.get(), n_, ld_, d_, nullptr, terms_dev_.get(), nterms,
                                     mval_.get(), 2 * n_, ld_, nullptr, flag_.get(), stream_);
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
  OwnedStream owned_stream_;
  cudaStream_t stream_ = owned_stream_.get();
  CompressorSpec identity_spec_;
  kernels::DenseWireLayout identity_wire_, dense_wire_;
  kernels::SparseWireLayout sparse_wire_;
  bool sparse_ = false;
  int64_t k_row_ = 0;
  size_t payload_bytes_ = 0, pitch_ = 0, ws_bytes_ = 0;
  double paper_bytes_ = 0;

  DeviceArray<int> flag_;
  DeviceArray<float> x_, z_, e_, u_dev_;
  DeviceArray<int64_t> seg_dev_, koff_dev_, tables_dev_, msg_off_dev_;
  DeviceArray<unsigned char> ws_;
  DeviceArray<int32_t> idx_;
  DeviceArray<float> val_, mval_, scale_;
  DeviceArray<int16_t> code_;
  DeviceArray<uint8_t> wire_;
  DeviceArray<MixTerm> terms_dev_;
  DeviceArray<double> w_self_dev_;
  std::vector<MixTerm> terms_;
  std::vector<double> w_self_;
};

}  // namespace

#endif  // SPUSH_HAVE_CUDA

std::unique_ptr<DeviceAlgorithm> make_algorithm_cuda(const AlgorithmSpec& spec_in,
                                                     const nets::Layout& layout,
                                                     const Schedule& schedule,
                                                     DeviceLocalTransport& transport) {
  const AlgorithmSpec spec =
      checked_algorithm_spec(spec_in, layout, schedule,
                             {transport.name(), transport.world_nodes(), transport.first_local(),
                              transport.local_nodes()});
  std::string why;
  if (!algorithm_cuda_supports(spec, &why)) {
    throw std::invalid_argument(
        fmt::format("make_algorithm_cuda({}): {}", to_string(spec.kind), why));
  }
  if (transport.local_nodes() > 65535) {
    throw std::invalid_argument(fmt::format(
        "make_algorithm_cuda: {} nodes on one GPU, at most 65535", transport.local_nodes()));
  }
#ifndef SPUSH_HAVE_CUDA
  throw std::runtime_error(
      "make_algorithm_cuda: this build of spush has no CUDA support (rebuild with "
      "-DSPUSH_ENABLE_CUDA=ON and a CUDA compiler)");
#else
  if (kernels::cuda_device_count() < 1) {
    throw std::runtime_error("make_algorithm_cuda: no usable CUDA device was found");
  }
  return std::make_unique<DevicePushSum>(spec, layout, schedule, transport);
#endif
}

}  // namespace spush::runtime

// The device algorithm of algorithm_cuda.h on host memory (make_algorithm_emulated): HostOps
// implements every device op with its CPU twin, reading and writing the device layouts
// (message tables of compress_cuda.h, wire rows of codec_cuda.h) row by row. Where a kernel
// sets the error flag, the CPU function throws: the exception is turned into the same flag.
// Arrays start filled with 0xFF bytes (NaN floats, -1 integers), as the device buffers of the
// gpu tests are, so a read of something the orchestration never wrote shows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_push_sum.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/mixing.h"
#include "spush/runtime/algorithm_cuda.h"

namespace spush::runtime {
namespace {

using kernels::Compressed;
using kernels::DenseWireLayout;
using kernels::DeviceMessage;
using kernels::SegmentView;
using kernels::SparseWireLayout;
using kernels::Stream;

constexpr int kFlagInput = 2;  // what the kernels set for a malformed message or table

class HostOps {
 public:
  static constexpr const char* kName = "emulated";

  template <typename T>
  class Array {
   public:
    Array() = default;
    explicit Array(size_t n) : p_(n ? std::make_unique<T[]>(n) : nullptr), n_(n) {
      if (n) std::memset(static_cast<void*>(p_.get()), 0xFF, n * sizeof(T));
    }
    T* get() const { return p_.get(); }
    size_t size() const { return n_; }
    void reserve(size_t n) {
      if (n > n_) *this = Array(n);
    }
    void upload(const T* h, size_t n, Stream) {
      if (n > n_) throw std::logic_error("HostOps::Array::upload: more elements than allocated");
      if (n) std::memcpy(static_cast<void*>(p_.get()), h, n * sizeof(T));
    }
    void upload(const std::vector<T>& h, Stream s) { upload(h.data(), h.size(), s); }
    void zero(Stream) {
      if (n_) std::memset(static_cast<void*>(p_.get()), 0, n_ * sizeof(T));
    }

   private:
    std::unique_ptr<T[]> p_;
    size_t n_ = 0;
  };

  Stream stream() const { return nullptr; }
  void wait(Stream) {}
  int read_flag(const int* flag, Stream) { return *flag; }
  void rows_to_device(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                      int64_t rows, Stream) {
    copy_rows(dst, ldd, src, lds, d, rows);
  }
  void rows_to_host(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d, int64_t rows,
                    Stream) {
    copy_rows(dst, ldd, src, lds, d, rows);
  }

  size_t compress_ef_workspace_size(const kernels::CompressorSpec&, int64_t, int64_t, int,
                                    int64_t) {
    return 0;
  }

  void compress_ef(const kernels::CompressorSpec& spec, int64_t rows, SegmentView segs,
                   const int64_t* k_offsets, const float* x, int64_t ldx, float* e, int64_t lde,
                   const DeviceMessage& out, uint32_t node_base, uint64_t iteration, void*, size_t,
                   int* error_flag, Stream) {
    const int64_t d = segs.total();
    for (int64_t r = 0; r < rows; ++r) {
      try {
        kernels::compress_ef_cpu(spec, segs, x + r * ldx, e ? e + r * lde : nullptr, c_,
                                 node_base + static_cast<uint32_t>(r), iteration);
      } catch (const std::invalid_argument&) {
        *error_flag = detail::kFlagNonFinite;
        continue;
      }
      if (spec.kind == kernels::CompressorKind::kTopK) {
        const int64_t k_row = k_offsets[segs.count];
        check_size("compress_ef: kept entries", c_.idx.size(), static_cast<size_t>(k_row));
        std::copy(c_.idx.begin(), c_.idx.end(), out.idx + r * k_row);
        std::copy(c_.val.begin(), c_.val.end(), out.val + r * k_row);
        continue;
      }
      if (out.val) std::copy_n(c_.val.begin(), d, out.val + r * out.ld_msg);
      if (spec.kind == kernels::CompressorKind::kIdentity) continue;
      std::copy_n(c_.code.begin(), d, out.code + r * out.ld_msg);
      const size_t nscale = static_cast<size_t>(segs.count) *
                            static_cast<size_t>(kernels::scales_per_bucket(spec.kind));
      check_size("compress_ef: bucket parameters", c_.scale.size(), nscale);
      std::copy(c_.scale.begin(), c_.scale.end(), out.scale + static_cast<size_t>(r) * nscale);
    }
  }

  void encode_sparse_rows(const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                          const int32_t* idx, const float* val, uint8_t* out, size_t pitch,
                          Stream) {
    const SegmentView segs{tables, l.nseg};
    const std::vector<int64_t> counts = sparse_counts(l, tables);
    for (int64_t r = 0; r < rows; ++r) {
      bytes_.clear();
      uint8_t* dst = out + static_cast<size_t>(r) * pitch;
      try {
        kernels::encode_indices(l.codec, block_density(l), segs, idx + r * l.k_total, counts.data(),
                                bytes_);
      } catch (const std::invalid_argument&) {
        // A message the compressor flagged: the GPU encoder writes unspecified bytes.
        std::memset(dst, 0xFF, l.payload_bytes);
        continue;
      }
      const size_t at = bytes_.size();
      bytes_.resize(at + 4 * static_cast<size_t>(l.k_total));
      std::memcpy(bytes_.data() + at, val + r * l.k_total, 4 * static_cast<size_t>(l.k_total));
      check_size("encode_sparse_rows: payload", bytes_.size(), l.payload_bytes);
      std::memcpy(dst, bytes_.data(), bytes_.size());
    }
  }

  void decode_sparse_rows(const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                          const uint8_t* in, size_t pitch, int32_t* idx, float* val,
                          int* error_flag, Stream) {
    const SegmentView segs{tables, l.nseg};
    const std::vector<int64_t> want = sparse_counts(l, tables);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = in + static_cast<size_t>(r) * pitch;
      std::vector<int64_t> counts = want;
      try {
        const size_t used = kernels::decode_indices(l.codec, block_density(l), segs, row,
                                                    l.index_bytes, idx_, counts.data());
        if (used != l.index_bytes || counts != want) throw std::runtime_error("bad index part");
      } catch (const std::exception&) {
        *error_flag = kFlagInput;
        continue;
      }
      std::copy(idx_.begin(), idx_.end(), idx + r * l.k_total);
      float* v = val + r * l.k_total;
      std::memcpy(v, row + l.index_bytes, 4 * static_cast<size_t>(l.k_total));
      for (int64_t k = 0; k < l.k_total; ++k)
        if (std::isnan(v[k])) *error_flag = kFlagInput;
    }
  }

  void encode_dense_rows(const DenseWireLayout& l, const int64_t* seg_offsets, int64_t rows,
                         const DeviceMessage& msg, uint8_t* out, size_t pitch, Stream) {
    const SegmentView segs = dense_segments(l, seg_offsets);
    const kernels::CompressorSpec spec = dense_spec(l);
    const size_t spb = static_cast<size_t>(kernels::scales_per_bucket(l.kind));
    const size_t nscale = static_cast<size_t>(l.nseg) * spb;
    for (int64_t r = 0; r < rows; ++r) {
      c_.kind = l.kind;
      c_.idx.clear();
      c_.val.clear();
      c_.code.clear();
      c_.scale.clear();
      if (l.kind == kernels::CompressorKind::kIdentity) {
        c_.val.assign(msg.val + r * msg.ld_msg, msg.val + r * msg.ld_msg + l.d);
      } else {
        c_.code.assign(msg.code + r * msg.ld_msg, msg.code + r * msg.ld_msg + l.d);
        c_.scale.assign(msg.scale + static_cast<size_t>(r) * nscale,
                        msg.scale + static_cast<size_t>(r + 1) * nscale);
        for (int s = 0; s < l.nseg; ++s)  // as on the GPU: empty buckets send 0
          if (segs.length(s) == 0) std::fill_n(c_.scale.begin() + s * spb, spb, 0.0f);
      }
      bytes_.clear();
      uint8_t* dst = out + static_cast<size_t>(r) * pitch;
      try {
        kernels::encode(spec, segs, c_, bytes_);
      } catch (const std::invalid_argument&) {
        std::memset(dst, 0xFF, l.payload_bytes);  // as for sparse rows above
        continue;
      }
      check_size("encode_dense_rows: payload", bytes_.size(), l.payload_bytes);
      std::memcpy(dst, bytes_.data(), bytes_.size());
    }
  }

  void decode_dense_rows(const DenseWireLayout& l, const int64_t* seg_offsets, int64_t rows,
                         const uint8_t* in, size_t pitch, float* val, int64_t ld_val,
                         int* error_flag, Stream) {
    const SegmentView segs = dense_segments(l, seg_offsets);
    const kernels::CompressorSpec spec = dense_spec(l);
    for (int64_t r = 0; r < rows; ++r) {
      try {
        kernels::decode(spec, segs, in + static_cast<size_t>(r) * pitch, l.payload_bytes, c_);
      } catch (const std::exception&) {
        if (error_flag) *error_flag = kFlagInput;
        continue;
      }
      std::copy(c_.val.begin(), c_.val.end(), val + r * ld_val);
    }
  }

  void scale_rows(float* x, int64_t rows, int64_t ld, int64_t d, const double* w, Stream) {
    kernels::scale_rows_cpu(x, rows, ld, d, w);
  }

  void gossip_mix_sparse_debias(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                const kernels::MixTerm* terms, int64_t nterms,
                                const int64_t* msg_offsets, int64_t, const int32_t* idx,
                                const float* val, const float* msg_u, float* z, int64_t ldz,
                                int* error_flag, Stream) {
    try {
      kernels::gossip_mix_sparse_cpu(x, ld, msg_u ? u : nullptr, terms, nterms, msg_offsets, idx,
                                     val, msg_u);
    } catch (const std::exception&) {
      *error_flag = kFlagInput;
    }
    kernels::debias_cpu(x, ld, u, rows, d, z, ldz);
  }

  void gossip_mix_dense(float* x, int64_t, int64_t ld, int64_t d, float* u,
                        const kernels::MixTerm* terms, int64_t nterms, const float* msgs, int64_t,
                        int64_t ld_msg, const float* msg_u, int* error_flag, Stream) {
    try {
      kernels::gossip_mix_dense_cpu(x, ld, d, u, terms, nterms, msgs, ld_msg, msg_u);
    } catch (const std::exception&) {
      *error_flag = kFlagInput;
    }
  }

  void debias(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
              int64_t ldz, Stream) {
    kernels::debias_cpu(x, ld, u, rows, d, z, ldz);
  }

 private:
  static void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                        int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ldd, src + r * lds, 4 * d);
  }
  static void check_size(const char* what, size_t got, size_t want) {
    if (got != want) {
      throw std::logic_error(std::string("emulated device op: ") + what + " has " +
                             std::to_string(got) + ", expected " + std::to_string(want));
    }
  }
  // The density whose block-position block is the layout's (B is a power of two, 1 / B exact).
  static double block_density(const SparseWireLayout& l) {
    return 1.0 / static_cast<double>(l.block);
  }
  // Kept entries per bucket from the layout's k offsets (tables[nseg + 1 ..]).
  static std::vector<int64_t> sparse_counts(const SparseWireLayout& l, const int64_t* tables) {
    std::vector<int64_t> counts(static_cast<size_t>(l.nseg));
    const int64_t* koff = tables + l.nseg + 1;
    for (int s = 0; s < l.nseg; ++s) counts[s] = koff[s + 1] - koff[s];
    return counts;
  }
  // Identity rows may be encoded without a segment table: one bucket of d.
  SegmentView dense_segments(const DenseWireLayout& l, const int64_t* seg_offsets) {
    if (seg_offsets) return SegmentView{seg_offsets, l.nseg};
    whole_ = {0, l.d};
    return SegmentView{whole_.data(), 1};
  }
  static kernels::CompressorSpec dense_spec(const DenseWireLayout& l) {
    kernels::CompressorSpec spec;
    spec.kind = l.kind;
    spec.bits = l.kind == kernels::CompressorKind::kQsgd ? l.bits : 8;
    spec.index_codec = kernels::IndexCodec::kRaw32;
    return spec;
  }

  Compressed c_;
  std::vector<uint8_t> bytes_;
  std::vector<int32_t> idx_;
  std::vector<int64_t> whole_;
};

}  // namespace

std::unique_ptr<DeviceAlgorithm> make_algorithm_emulated(const AlgorithmSpec& spec_in,
                                                         const nets::Layout& layout,
                                                         const Schedule& schedule,
                                                         DeviceLocalTransport& transport) {
  const AlgorithmSpec spec =
      detail::checked_device_spec(spec_in, layout, schedule, transport, "make_algorithm_emulated");
  return std::make_unique<detail::DevicePushSum<HostOps>>(spec, layout, schedule, transport);
}

}  // namespace spush::runtime

// The "cpu" backend (backend.h): host memory and the CPU reference functions of this folder,
// applied row by row to the layouts the CUDA kernels use (message tables of compress_cuda.h,
// wire rows of codec_cuda.h), rows in parallel with OpenMP. Where a kernel would set the error
// word, the CPU function's exception is caught, the same flag is set and its text is kept for
// take_errors(); every row is computed by one thread, so results do not depend on the thread
// count and equal the GPU's bit for bit.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "spush/kernels/axpy.h"
#include "spush/kernels/backend.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;  // floats per call below which one thread runs
constexpr size_t kAlign = 64;

// Per-thread scratch of the row loops.
struct Scratch {
  Compressed c;
  std::vector<uint8_t> bytes;
};

class CpuBackend final : public Backend {
 public:
  ~CpuBackend() override { release_owned(); }
  const char* name() const override { return "cpu"; }
  MemoryKind memory() const override { return MemoryKind::kHost; }
  Stream stream() const override { return nullptr; }

  void* allocate(size_t bytes) override {
    return ::operator new(std::max(bytes, kAlign), std::align_val_t(kAlign));
  }
  void deallocate(void* p) noexcept override { ::operator delete(p, std::align_val_t(kAlign)); }
  void upload(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes && dst != src) std::memmove(dst, src, bytes);
  }
  void fill_bytes(void* dst, int byte, size_t bytes) override {
    if (bytes) std::memset(dst, byte, bytes);
  }
  void upload_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                   int64_t rows) override {
    copy_rows(dst, ldd, src, lds, d, rows);
  }
  void download_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                     int64_t rows) override {
    copy_rows(dst, ldd, src, lds, d, rows);
  }
  void synchronize() override {}

  bool supports(const CompressorSpec& spec, std::string* why) const override {
    try {
      validate(spec);
    } catch (const std::exception& e) {
      if (why) *why = e.what();
      return false;
    }
    return true;
  }

  size_t compress_ef_workspace_size(const CompressorSpec&, int64_t, int64_t, int,
                                    int64_t) override {
    return 0;
  }

  void compress_ef(const CompressorSpec& spec, int64_t rows, SegmentView segs,
                   const int64_t* k_offsets, const float* x, int64_t ldx, float* e, int64_t lde,
                   const DeviceMessage& out, uint32_t node_base, uint64_t iteration, void*, size_t,
                   int* error_flag) override {
    const int64_t d = segs.total();
    const bool sparse = is_sparse(spec.kind);
    const int64_t k_row = sparse ? k_offsets[segs.count] : 0;
    const size_t nscale =
        static_cast<size_t>(segs.count) *
        static_cast<size_t>(spec.kind == CompressorKind::kFractional ? 1 << (spec.bits - 1)
                                                                     : scales_per_bucket(spec.kind));
    for_rows("compress_ef", rows, d, error_flag, kErrorNonFinite, [&](int64_t r, Scratch& s) {
      Compressed& c = s.c;
      compress_ef_cpu(spec, segs, x + r * ldx, e ? e + r * lde : nullptr, c,
                      node_base + static_cast<uint32_t>(r), iteration);
      if (sparse) {
        check_size("kept entries", c.idx.size(), static_cast<size_t>(k_row));
        std::copy(c.idx.begin(), c.idx.end(), out.idx + r * k_row);
        std::copy(c.val.begin(), c.val.end(), out.val + r * k_row);
        if (spec.kind == CompressorKind::kFractional) {
          std::copy(c.code.begin(), c.code.end(), out.code + r * k_row);
          check_size("interval means", c.scale.size(), nscale);
          std::copy(c.scale.begin(), c.scale.end(), out.scale + static_cast<size_t>(r) * nscale);
        }
        return;
      }
      if (out.val) std::copy_n(c.val.begin(), d, out.val + r * out.ld_msg);
      if (spec.kind == CompressorKind::kIdentity) return;
      std::copy_n(c.code.begin(), d, out.code + r * out.ld_msg);
      check_size("bucket parameters", c.scale.size(), nscale);
      std::copy(c.scale.begin(), c.scale.end(), out.scale + static_cast<size_t>(r) * nscale);
    });
  }

  void encode_sparse_rows(const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                          const DeviceMessage& msg, uint8_t* out, size_t pitch) override {
    const SegmentView segs{tables, l.nseg};
    const CompressorSpec spec = sparse_spec(l);
    const size_t nscale = static_cast<size_t>(l.nseg) * (l.bits ? size_t{1} << (l.bits - 1) : 0);
    for_rows("encode_sparse_rows", rows, l.k_total, nullptr, 0, [&](int64_t r, Scratch& s) {
      Compressed& c = s.c;
      c.kind = l.kind;
      const int64_t at = r * l.k_total;
      c.idx.assign(msg.idx + at, msg.idx + at + l.k_total);
      c.val.assign(msg.val + at, msg.val + at + l.k_total);
      c.code.clear();
      c.scale.clear();
      if (l.kind == CompressorKind::kFractional) {
        c.code.assign(msg.code + at, msg.code + at + l.k_total);
        c.scale.assign(msg.scale + static_cast<size_t>(r) * nscale,
                       msg.scale + static_cast<size_t>(r + 1) * nscale);
      }
      encode_row(spec, segs, c, s.bytes, out + static_cast<size_t>(r) * pitch, l.payload_bytes);
    });
  }

  void decode_sparse_rows(const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                          const uint8_t* in, size_t pitch, int32_t* idx, float* val,
                          int* error_flag) override {
    const SegmentView segs{tables, l.nseg};
    const CompressorSpec spec = sparse_spec(l);
    for_rows("decode_sparse_rows", rows, l.k_total, error_flag, kErrorInput,
             [&](int64_t r, Scratch& s) {
               decode(spec, segs, in + static_cast<size_t>(r) * pitch, l.payload_bytes, s.c);
               check_size("decoded entries", s.c.idx.size(), static_cast<size_t>(l.k_total));
               std::copy(s.c.idx.begin(), s.c.idx.end(), idx + r * l.k_total);
               std::copy(s.c.val.begin(), s.c.val.end(), val + r * l.k_total);
             });
  }

  void encode_dense_rows(const DenseWireLayout& l, const int64_t* seg_offsets, int64_t rows,
                         const DeviceMessage& msg, uint8_t* out, size_t pitch) override {
    const std::vector<int64_t> whole{0, l.d};
    const SegmentView segs = seg_offsets ? SegmentView{seg_offsets, l.nseg}
                                         : SegmentView{whole.data(), 1};
    const CompressorSpec spec = dense_spec(l);
    const size_t spb = static_cast<size_t>(scales_per_bucket(l.kind));
    const size_t nscale = static_cast<size_t>(l.nseg) * spb;
    for_rows("encode_dense_rows", rows, l.d, nullptr, 0, [&](int64_t r, Scratch& s) {
      Compressed& c = s.c;
      c.kind = l.kind;
      c.idx.clear();
      c.val.clear();
      c.code.clear();
      c.scale.clear();
      if (l.kind == CompressorKind::kIdentity) {
        c.val.assign(msg.val + r * msg.ld_msg, msg.val + r * msg.ld_msg + l.d);
      } else {
        c.code.assign(msg.code + r * msg.ld_msg, msg.code + r * msg.ld_msg + l.d);
        c.scale.assign(msg.scale + static_cast<size_t>(r) * nscale,
                       msg.scale + static_cast<size_t>(r + 1) * nscale);
        for (int b = 0; b < l.nseg; ++b)  // as on the GPU: empty buckets send 0
          if (segs.length(b) == 0) std::fill_n(c.scale.begin() + b * spb, spb, 0.0f);
      }
      encode_row(spec, segs, c, s.bytes, out + static_cast<size_t>(r) * pitch, l.payload_bytes);
    });
  }

  void decode_dense_rows(const DenseWireLayout& l, const int64_t* seg_offsets, int64_t rows,
                         const uint8_t* in, size_t pitch, float* val, int64_t ld_val,
                         int* error_flag) override {
    const std::vector<int64_t> whole{0, l.d};
    const SegmentView segs = seg_offsets ? SegmentView{seg_offsets, l.nseg}
                                         : SegmentView{whole.data(), 1};
    const CompressorSpec spec = dense_spec(l);
    for_rows("decode_dense_rows", rows, l.d, error_flag, kErrorInput,
             [&](int64_t r, Scratch& s) {
               decode(spec, segs, in + static_cast<size_t>(r) * pitch, l.payload_bytes, s.c);
               std::copy(s.c.val.begin(), s.c.val.end(), val + r * ld_val);
             });
  }

  void gossip_mix_sparse(float* x, int64_t, int64_t ld, float* u, const MixTerm* terms,
                         int64_t nterms, const int64_t* msg_offsets, int64_t, const int32_t* idx,
                         const float* val, const float* msg_u, int* error_flag) override {
    guarded("gossip_mix_sparse", error_flag, [&] {
      gossip_mix_sparse_cpu(x, ld, u, terms, nterms, msg_offsets, idx, val, msg_u);
    });
  }

  void gossip_mix_sparse_debias(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets,
                                int64_t, const int32_t* idx, const float* val, const float* msg_u,
                                float* z, int64_t ldz, int* error_flag) override {
    guarded("gossip_mix_sparse", error_flag, [&] {
      gossip_mix_sparse_cpu(x, ld, msg_u ? u : nullptr, terms, nterms, msg_offsets, idx, val,
                            msg_u);
    });
    debias_cpu(x, ld, u, rows, d, z, ldz);
  }

  void gossip_mix_dense(float* x, int64_t, int64_t ld, int64_t d, float* u, const MixTerm* terms,
                        int64_t nterms, const float* msgs, int64_t, int64_t ld_msg,
                        const float* msg_u, int* error_flag) override {
    guarded("gossip_mix_dense", error_flag, [&] {
      gossip_mix_dense_cpu(x, ld, d, u, terms, nterms, msgs, ld_msg, msg_u);
    });
  }

  void scale_rows(float* x, int64_t rows, int64_t ld, int64_t d, const double* w) override {
    scale_rows_cpu(x, rows, ld, d, w);
  }
  void debias(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
              int64_t ldz) override {
    debias_cpu(x, ld, u, rows, d, z, ldz);
  }
  void axpby_rows(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                  const float* y, int64_t ldy, float* out, int64_t ldo) override {
    axpby_rows_cpu(rows, d, a, x, ldx, b, y, ldy, out, ldo);
  }

  size_t topk_workspace_size(int64_t, int64_t, int, int64_t) override { return 0; }
  void topk_batched(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                    const int64_t* k_offsets, int32_t* idx, float* val, void*, size_t,
                    int* error_flag) override {
    guarded("topk_batched", error_flag, [&] {
      topk_batched_cpu(x, rows, ld, segs, k_offsets, idx, val);
    }, kErrorNonFinite);
  }

 private:
  static void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                        int64_t rows) {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + r * ldd, src + r * lds, sizeof(float) * static_cast<size_t>(d));
  }
  static void check_size(const char* what, size_t got, size_t want) {
    if (got != want)
      throw std::logic_error(std::string("cpu backend: ") + what + ": " + std::to_string(got) +
                             ", expected " + std::to_string(want));
  }
  static CompressorSpec sparse_spec(const SparseWireLayout& l) {
    CompressorSpec spec;
    spec.kind = l.kind;
    spec.density = l.density;
    spec.bits = l.kind == CompressorKind::kFractional ? l.bits : 8;
    spec.index_codec = l.codec;
    return spec;
  }
  static CompressorSpec dense_spec(const DenseWireLayout& l) {
    CompressorSpec spec;
    spec.kind = l.kind;
    spec.bits = l.kind == CompressorKind::kQsgd ? l.bits : 8;
    spec.index_codec = IndexCodec::kRaw32;
    return spec;
  }
  // Encodes c into dst (payload_bytes long). A row the codec rejects (a message the compressor
  // flagged) gets 0xFF bytes, as the GPU encoder writes unspecified bytes for it.
  static void encode_row(const CompressorSpec& spec, SegmentView segs, const Compressed& c,
                         std::vector<uint8_t>& bytes, uint8_t* dst, size_t payload_bytes) {
    bytes.clear();
    try {
      encode(spec, segs, c, bytes);
    } catch (const std::invalid_argument&) {
      std::memset(dst, 0xFF, payload_bytes);
      return;
    }
    check_size("encoded payload bytes", bytes.size(), payload_bytes);
    std::memcpy(dst, bytes.data(), bytes.size());
  }

  // Runs body(r, scratch) for r < rows (in parallel when the rows are worth it). An exception
  // from a row sets *flag = code (with flag non-null; else it is rethrown) and keeps its text.
  template <typename Body>
  void for_rows(const char* op, int64_t rows, int64_t row_work, int* flag, int code, Body&& body) {
    const int threads = std::max(1, omp_get_max_threads());
    if (static_cast<int>(scratch_.size()) < threads) scratch_.resize(static_cast<size_t>(threads));
    std::exception_ptr fatal;
    std::string first;
    int64_t first_row = -1;
#pragma omp parallel for schedule(dynamic, 1) if (rows > 1 && rows * row_work >= kParallelWork)
    for (int64_t r = 0; r < rows; ++r) {
      try {
        try {
          body(r, scratch_[static_cast<size_t>(omp_get_thread_num())]);
        } catch (const std::invalid_argument&) {
          throw;  // bad data (what the kernels flag): handled below
        } catch (const std::logic_error&) {
#pragma omp critical(spush_cpu_backend)
          if (!fatal) fatal = std::current_exception();
        }
      } catch (const std::exception& e) {
#pragma omp critical(spush_cpu_backend)
        if (first_row < 0 || r < first_row) {
          first_row = r;
          first = e.what();
        }
      }
    }
    // A logic_error is a bug in the caller (a table of the wrong size), not bad data: it throws.
    if (fatal) std::rethrow_exception(fatal);
    if (first_row >= 0) {
      if (!flag) throw std::runtime_error(first);
      *flag = code;
      note_error(std::string(op) + ", row " + std::to_string(first_row) + ": " + first);
    }
  }

  template <typename Body>
  void guarded(const char* op, int* flag, Body&& body, int code = kErrorInput) {
    try {
      body();
    } catch (const std::exception& e) {
      if (!flag) throw;
      *flag = code;
      note_error(std::string(op) + ": " + e.what());
    }
  }

  std::vector<Scratch> scratch_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace spush::kernels

// A backend: where the node-batched buffers live and which implementation of every op runs on
// them. One interface, two implementations: "cpu" (host memory, the CPU reference functions of
// this folder, row-parallel with OpenMP) and "cuda" (device memory, one stream, the kernels of
// kernels/cuda). Runtime code holds a Backend and calls its ops; it never picks a _cpu or a
// _cuda function itself. The ops have the arguments of the kernels' *_cuda entry points minus
// the stream (the backend owns it), and give bit-identical results on both backends.
//
// A backend also owns a workspace pool (sized once from the ops' workspace queries, so that no
// allocation happens inside a round) and an error word: the ops cannot throw on the device, so
// a NaN model or a malformed message sets a flag that take_errors() reads (and clears) later.
// The CPU backend sets the same flags (and keeps the first failure's text) instead of throwing.
//
//   auto be = make_backend("cpu");                    // or "cuda", or "auto"
//   Array<float> x(*be, rows * ld);                   // owned backend memory
//   x.upload(host);                                   // stream-ordered
//   be->axpby_rows(rows, d, 1.0f, x.get(), ld, 0.5f, y.get(), ld, x.get(), ld);
//   if (auto err = be->take_errors(); err.any()) throw std::runtime_error(err.describe());
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/device.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {

enum class MemoryKind { kHost, kDevice };

// Values of the error word's entries (what the kernels write).
inline constexpr int kErrorNonFinite = 1;  // a compressor met NaN / +-inf (or an fp32 overflow)
inline constexpr int kErrorInput = 2;      // inconsistent tables or a malformed message

struct BackendErrors {
  int compressor = 0;  // error word [0]: set by compress_ef
  int messages = 0;    // error word [1]: set by the codecs' decoders and by the mixing ops
  std::string detail;  // the CPU backend's text of the first failure (empty on the GPU)
  bool any() const { return compressor != 0 || messages != 0; }
  // One sentence naming what went wrong.
  std::string describe() const;
};

class Backend {
 public:
  virtual ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual const char* name() const = 0;  // "cpu", "cuda"
  virtual MemoryKind memory() const = 0;
  bool host_memory() const { return memory() == MemoryKind::kHost; }
  virtual Stream stream() const = 0;  // nullptr on the CPU

  // ---- memory -------------------------------------------------------------------------------
  // Uninitialized backend memory of `bytes` bytes (at least 64-byte aligned); bytes == 0 gives
  // a valid unique pointer too. Throws std::bad_alloc / std::runtime_error naming the size.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p) noexcept = 0;
  // Host -> backend, stream-ordered (the host source may be reused when the call returns).
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  // Backend -> host; waits for the stream first.
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  // Within backend memory, stream-ordered.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_bytes(void* dst, int byte, size_t bytes) = 0;
  // 2-D copies of `rows` rows of d floats between host and backend memory (download waits).
  virtual void upload_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                           int64_t rows) = 0;
  virtual void download_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                             int64_t rows) = 0;
  // Waits until every op issued so far has finished.
  virtual void synchronize() = 0;

  // ---- workspace pool -------------------------------------------------------------------------
  // Grows the pool to at least `bytes` (the caller sums the ops' *_workspace_size queries once,
  // before its first round); workspace() then hands it out without allocating.
  void reserve_workspace(size_t bytes);
  void* workspace() const { return pool_; }
  size_t workspace_bytes() const { return pool_bytes_; }

  // ---- error word -----------------------------------------------------------------------------
  // Two ints in backend memory, zero until an op flags a failure: [0] for compress_ef, [1] for
  // the decoders and the mixing ops. Pass error_word() + k as the ops' error_flag.
  int* error_word();
  // Waits for the stream, returns the flags (and the CPU backend's detail) and clears them.
  BackendErrors take_errors();

  // ---- ops --------------------------------------------------------------------------------------
  // True when compress_ef and the codecs implement spec.kind here; else false and *why says so.
  virtual bool supports(const CompressorSpec& spec, std::string* why = nullptr) const = 0;

  // compress_cuda.h (the CPU backend also takes kRandomK and kFractional: their sparse
  // messages carry code [rows * k_row] and, for kFractional, scale [rows * nseg * L]).
  virtual size_t compress_ef_workspace_size(const CompressorSpec& spec, int64_t rows, int64_t ld,
                                            int nseg, int64_t max_seg_len) = 0;
  virtual void compress_ef(const CompressorSpec& spec, int64_t rows, SegmentView segs,
                           const int64_t* k_offsets, const float* x, int64_t ldx, float* e,
                           int64_t lde, const DeviceMessage& out, uint32_t node_base,
                           uint64_t iteration, void* workspace, size_t workspace_bytes,
                           int* error_flag) = 0;

  // codec_cuda.h. Sparse messages: idx / val (and code / scale for kFractional) at r * k_total.
  virtual void encode_sparse_rows(const SparseWireLayout& layout, const int64_t* tables,
                                  int64_t rows, const DeviceMessage& msg, uint8_t* out,
                                  size_t pitch) = 0;
  virtual void decode_sparse_rows(const SparseWireLayout& layout, const int64_t* tables,
                                  int64_t rows, const uint8_t* in, size_t pitch, int32_t* idx,
                                  float* val, int* error_flag) = 0;
  virtual void encode_dense_rows(const DenseWireLayout& layout, const int64_t* seg_offsets,
                                 int64_t rows, const DeviceMessage& msg, uint8_t* out,
                                 size_t pitch) = 0;
  virtual void decode_dense_rows(const DenseWireLayout& layout, const int64_t* seg_offsets,
                                 int64_t rows, const uint8_t* in, size_t pitch, float* val,
                                 int64_t ld_val, int* error_flag) = 0;

  // mixing_cuda.h
  virtual void gossip_mix_sparse(float* x, int64_t rows, int64_t ld, float* u,
                                 const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets,
                                 int64_t nmsg, const int32_t* idx, const float* val,
                                 const float* msg_u, int* error_flag) = 0;
  virtual void gossip_mix_sparse_debias(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                        const MixTerm* terms, int64_t nterms,
                                        const int64_t* msg_offsets, int64_t nmsg,
                                        const int32_t* idx, const float* val, const float* msg_u,
                                        float* z, int64_t ldz, int* error_flag) = 0;
  virtual void gossip_mix_dense(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                const MixTerm* terms, int64_t nterms, const float* msgs,
                                int64_t nmsg, int64_t ld_msg, const float* msg_u,
                                int* error_flag) = 0;
  virtual void scale_rows(float* x, int64_t rows, int64_t ld, int64_t d, const double* w) = 0;
  virtual void debias(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d,
                      float* z, int64_t ldz) = 0;

  // axpy.h: out = a * x + b * y, row by row.
  virtual void axpby_rows(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                          const float* y, int64_t ldy, float* out, int64_t ldo) = 0;

  // topk.h
  virtual size_t topk_workspace_size(int64_t rows, int64_t ld, int nseg,
                                     int64_t max_seg_len) = 0;
  virtual void topk_batched(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                            const int64_t* k_offsets, int32_t* idx, float* val, void* workspace,
                            size_t workspace_bytes, int* error_flag) = 0;

 protected:
  Backend() = default;
  // Derived destructors call this while their allocate/deallocate still work.
  void release_owned() noexcept;
  // The CPU backend records the text of the first flagged failure here.
  void note_error(const std::string& detail);

 private:
  void* pool_ = nullptr;
  size_t pool_bytes_ = 0;
  int* errors_ = nullptr;
  std::string detail_;
};

// "cpu": always available. "cuda": device `device` of this build's CUDA runtime; throws
// std::runtime_error when this build has no CUDA or no usable GPU. "auto": cuda when a GPU is
// usable, else cpu.
std::unique_ptr<Backend> make_cpu_backend();
std::unique_ptr<Backend> make_cuda_backend(int device = 0);
std::unique_ptr<Backend> make_backend(std::string_view name);

// One owned array of n T in a backend's memory (the only RAII buffer type of the project).
// Fresh arrays are filled with 0xFF bytes (NaN floats, -1 integers), so a read of an element
// nobody wrote shows in tests. Move-only; the backend must outlive it.
template <typename T>
class Array {
 public:
  Array() = default;
  Array(Backend& backend, size_t n) : be_(&backend), n_(n) {
    p_ = static_cast<T*>(backend.allocate(n * sizeof(T)));
    if (n) backend.fill_bytes(p_, 0xFF, n * sizeof(T));
  }
  Array(Backend& backend, const std::vector<T>& host) : Array(backend, host.size()) {
    upload(host);
  }
  ~Array() { reset(); }
  Array(Array&& o) noexcept
      : be_(std::exchange(o.be_, nullptr)), p_(std::exchange(o.p_, nullptr)),
        n_(std::exchange(o.n_, 0)) {}
  Array& operator=(Array&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = std::exchange(o.be_, nullptr);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  Backend* backend() const { return be_; }
  // Grows to at least n elements (contents lost); needs a backend.
  void reserve(size_t n) {
    if (n > n_) *this = Array(*be_, n);
  }
  void upload(const T* host, size_t n) {
    check(n, "upload");
    if (n) be_->upload(p_, host, n * sizeof(T));
  }
  void upload(const std::vector<T>& host) { upload(host.data(), host.size()); }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) be_->download(h.data(), p_, bytes());
    return h;
  }
  void zero() {
    if (n_) be_->fill_bytes(p_, 0, bytes());
  }
  void poison() {
    if (n_) be_->fill_bytes(p_, 0xFF, bytes());
  }

 private:
  void reset() noexcept {
    if (be_ && p_) be_->deallocate(p_);
    p_ = nullptr;
    n_ = 0;
  }
  void check(size_t n, const char* what) const;

  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Throws std::logic_error for an upload longer than the array.
[[noreturn]] void array_overflow(const char* what, size_t n, size_t capacity);
template <typename T>
void Array<T>::check(size_t n, const char* what) const {
  if (n > n_) array_overflow(what, n, n_);
}

}  // namespace spush::kernels

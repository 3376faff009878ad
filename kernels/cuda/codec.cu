// Sparse wire codec on the GPU (codec_cuda.h), byte-identical to codec.cpp for kTopK/kRandomK
// rows: raw32 / local16 indices are one store per entry; a block-position index is written at
// its exact bit position, p = stream start of its bucket + (entries before it in the bucket) *
// (1 + log2 B) + (blocks closed before it), with atomicOr into the zeroed stream. Decoding
// raw32 / local16 is one thread per entry; a block-position bucket is parsed by one thread.
#include <stdexcept>
#include <string>

#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/cuda_check.cuh"

namespace spush::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kErrorInput = 2;

struct Wire {
  IndexCodec codec;
  int nseg;
  int64_t k_total;
  int64_t block;
  int lb;
  size_t index_bytes;
  const int64_t* seg;   // [nseg + 1]
  const int64_t* koff;  // [nseg + 1]
  const int64_t* bits;  // [nseg + 1]
};

// Bucket of kept entry j: the largest s < nseg with koff[s] <= j (never an empty bucket).
__device__ int bucket_of(const Wire& w, int64_t j) {
  int lo = 0, hi = w.nseg - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (w.koff[mid] <= j) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads)
    encode_indices_kernel(Wire w, const int32_t* idx, uint8_t* out, size_t pitch) {
  const int64_t r = blockIdx.y;
  uint8_t* row = out + r * pitch;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < w.k_total;
       j += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int s = bucket_of(w, j);
    const int32_t col = idx[r * w.k_total + j];
    const int64_t local = col - w.seg[s];
    if (w.codec == IndexCodec::kRaw32) {
      reinterpret_cast<uint32_t*>(row)[j] = static_cast<uint32_t>(col);
    } else if (w.codec == IndexCodec::kLocal16) {
      reinterpret_cast<uint16_t*>(row)[j] = static_cast<uint16_t>(local);
    } else {
      const int64_t p = w.bits[s] + (j - w.koff[s]) * (1 + w.lb) + (local >> w.lb);
      const uint64_t code = (1ull | (static_cast<uint64_t>(local & (w.block - 1)) << 1))
                            << (p & 31);
      uint32_t* words = reinterpret_cast<uint32_t*>(row) + (p >> 5);
      atomicOr(words, static_cast<uint32_t>(code));
      if (code >> 32) atomicOr(words + 1, static_cast<uint32_t>(code >> 32));
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    encode_values_kernel(Wire w, const float* val, uint8_t* out, size_t pitch) {
  const int64_t r = blockIdx.y;
  uint8_t* dst = out + r * pitch + w.index_bytes;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < w.k_total;
       j += static_cast<int64_t>(gridDim.x) * kThreads) {
    const uint32_t b = __float_as_uint(val[r * w.k_total + j]);
    dst[4 * j] = static_cast<uint8_t>(b);
    dst[4 * j + 1] = static_cast<uint8_t>(b >> 8);
    dst[4 * j + 2] = static_cast<uint8_t>(b >> 16);
    dst[4 * j + 3] = static_cast<uint8_t>(b >> 24);
  }
}

// Row-local index of entry j of a raw32 / local16 payload.
__device__ int64_t fixed_width_index(const Wire& w, const uint8_t* row, int s, int64_t j) {
  if (w.codec == IndexCodec::kRaw32) {
    return static_cast<int64_t>(reinterpret_cast<const uint32_t*>(row)[j]);
  }
  return w.seg[s] + reinterpret_cast<const uint16_t*>(row)[j];
}

__global__ void __launch_bounds__(kThreads)
    decode_fixed_kernel(Wire w, const uint8_t* in, size_t pitch, int32_t* idx, int* error_flag) {
  const int64_t r = blockIdx.y;
  const uint8_t* row = in + r * pitch;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < w.k_total;
       j += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int s = bucket_of(w, j);
    const int64_t col = fixed_width_index(w, row, s, j);
    bool bad = col < w.seg[s] || col >= w.seg[s + 1];
    if (j > w.koff[s] && fixed_width_index(w, row, s, j - 1) >= col) bad = true;
    if (bad) *error_flag = kErrorInput;
    idx[r * w.k_total + j] = static_cast<int32_t>(col);
  }
}

// Bits [pos, pos + n) of a little-endian bit stream, n <= 32, read byte by byte.
__device__ uint32_t get_bits(const uint8_t* row, int64_t pos, int n) {
  uint64_t v = 0;
  const int64_t first = pos >> 3, last = (pos + n - 1) >> 3;
  for (int64_t b = last; b >= first; --b) v = (v << 8) | row[b];
  return static_cast<uint32_t>((v >> (pos & 7)) & ((1ull << n) - 1));
}

// One thread per (row, bucket); thread (row, nseg) checks the stream's zero padding.
__global__ void __launch_bounds__(kThreads)
    decode_block_kernel(Wire w, int64_t rows, const uint8_t* in, size_t pitch, int32_t* idx,
                        int* error_flag) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (t >= rows * (w.nseg + 1)) return;
  const int64_t r = t / (w.nseg + 1);
  const int s = static_cast<int>(t - r * (w.nseg + 1));
  const uint8_t* row = in + r * pitch;
  if (s == w.nseg) {
    const int64_t used = w.bits[w.nseg];
    if ((used & 7) != 0 && (row[used >> 3] >> (used & 7)) != 0) *error_flag = kErrorInput;
    return;
  }
  const int64_t len = w.seg[s + 1] - w.seg[s];
  const int64_t k = w.koff[s + 1] - w.koff[s];
  const int64_t end = w.bits[s + 1];
  const int64_t nblocks = (len + w.block - 1) / w.block;
  int32_t* out = idx + r * w.k_total + w.koff[s];
  int64_t pos = w.bits[s], count = 0;
  bool ok = true;
  for (int64_t b = 0; b < nblocks && ok; ++b) {
    int64_t prev = -1;
    while (true) {
      if (pos >= end) {
        ok = false;
        break;
      }
      if (!get_bits(row, pos++, 1)) break;
      if (pos + w.lb > end || count >= k) {
        ok = false;
        break;
      }
      const int64_t off = w.lb ? get_bits(row, pos, w.lb) : 0;
      pos += w.lb;
      if (off <= prev || b * w.block + off >= len) {
        ok = false;
        break;
      }
      prev = off;
      out[count++] = static_cast<int32_t>(w.seg[s] + b * w.block + off);
    }
  }
  if (!ok || count != k || pos != end) *error_flag = kErrorInput;
}

__global__ void __launch_bounds__(kThreads)
    decode_values_kernel(Wire w, const uint8_t* in, size_t pitch, float* val, int* error_flag) {
  const int64_t r = blockIdx.y;
  const uint8_t* src = in + r * pitch + w.index_bytes;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < w.k_total;
       j += static_cast<int64_t>(gridDim.x) * kThreads) {
    const uint32_t b = static_cast<uint32_t>(src[4 * j]) |
                       (static_cast<uint32_t>(src[4 * j + 1]) << 8) |
                       (static_cast<uint32_t>(src[4 * j + 2]) << 16) |
                       (static_cast<uint32_t>(src[4 * j + 3]) << 24);
    const float v = __uint_as_float(b);
    if (isnan(v)) *error_flag = kErrorInput;
    val[r * w.k_total + j] = v;
  }
}

Wire make_wire(const SparseWireLayout& l, const int64_t* tables) {
  return Wire{l.codec,
              l.nseg,
              l.k_total,
              l.block,
              l.log2_block,
              l.index_bytes,
              tables,
              tables + (l.nseg + 1),
              tables + 2 * (l.nseg + 1)};
}

void check_rows(const char* fn, const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                size_t pitch, const void* a, const void* b, const void* c) {
  if (rows < 0 || rows > 65535 || pitch % 4 != 0 || pitch < l.payload_bytes ||
      l.tables.size() != 3 * static_cast<size_t>(l.nseg + 1)) {
    throw std::invalid_argument(std::string(fn) +
                                ": need 0 <= rows <= 65535, a layout from "
                                "sparse_wire_layout and a pitch that is a multiple of 4 and >= " +
                                std::to_string(l.payload_bytes) + ", got rows = " +
                                std::to_string(rows) + ", pitch = " + std::to_string(pitch));
  }
  if (rows > 0 && l.k_total > 0 && (!tables || !a || !b || !c))
    throw std::invalid_argument(std::string(fn) + ": null device pointer");
  if (l.kind == CompressorKind::kFractional)
    throw std::invalid_argument(std::string(fn) +
                                ": the fractional quantizer has no GPU codec (topk, randomk only)");
}

dim3 entry_grid(int64_t k_total, int64_t rows) {
  int64_t bx = (k_total + kThreads - 1) / kThreads;
  if (bx > 4096) bx = 4096;
  return dim3(static_cast<unsigned>(bx < 1 ? 1 : bx), static_cast<unsigned>(rows));
}

}  // namespace

void encode_sparse_rows_cuda(const SparseWireLayout& layout, const int64_t* tables, int64_t rows,
                             const int32_t* idx, const float* val, uint8_t* out, size_t pitch,
                             Stream stream) {
  check_rows("encode_sparse_rows_cuda", layout, tables, rows, pitch, idx, val, out);
  if (rows == 0 || layout.k_total == 0) return;
  const Wire w = make_wire(layout, tables);
  const dim3 grid = entry_grid(layout.k_total, rows);
  if (layout.codec == IndexCodec::kBlockPosition)
    CUDA_CHECK(
        cudaMemset2DAsync(out, pitch, 0, layout.index_bytes, static_cast<size_t>(rows), stream));
  encode_indices_kernel<<<grid, kThreads, 0, stream>>>(w, idx, out, pitch);
  CUDA_CHECK(cudaGetLastError());
  encode_values_kernel<<<grid, kThreads, 0, stream>>>(w, val, out, pitch);
  CUDA_CHECK(cudaGetLastError());
}

void decode_sparse_rows_cuda(const SparseWireLayout& layout, const int64_t* tables, int64_t rows,
                             const uint8_t* in, size_t pitch, int32_t* idx, float* val,
                             int* error_flag, Stream stream) {
  check_rows("decode_sparse_rows_cuda", layout, tables, rows, pitch, in, idx, val);
  if (!error_flag) throw std::invalid_argument("decode_sparse_rows_cuda: null error_flag");
  if (rows == 0 || layout.k_total == 0) return;
  const Wire w = make_wire(layout, tables);
  const dim3 grid = entry_grid(layout.k_total, rows);
  if (layout.codec == IndexCodec::kBlockPosition) {
    const int64_t threads = rows * (layout.nseg + 1);
    decode_block_kernel<<<ceil_div(threads, kThreads), kThreads, 0, stream>>>(w, rows, in, pitch,
                                                                              idx, error_flag);
  } else {
    decode_fixed_kernel<<<grid, kThreads, 0, stream>>>(w, in, pitch, idx, error_flag);
  }
  CUDA_CHECK(cudaGetLastError());
  decode_values_kernel<<<grid, kThreads, 0, stream>>>(w, in, pitch, val, error_flag);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels

// Dense wire codec on the GPU (codec_cuda.h), byte-identical to codec.cpp for kIdentity,
// kQsgd, kSign and kMinMax8 rows. The payload starts with the per-bucket floats (a multiple of
// 4 bytes), so encoding is one thread per 32-bit word of the row: a parameter, an identity
// value, four minmax8 codes, or the OR of the bit-stream fields that overlap the word (no
// atomics, no memset). Decoding is one thread per element, which finds its bucket by binary
// search and reads only the bytes holding its field; one thread per row checks the padding.
#include <stdexcept>
#include <string>

#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/dequant.h"

namespace spush::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kErrorInput = 2;
constexpr int64_t kMaxBlocksX = 4096;
constexpr int64_t kMaxBlocksY = 65535;

// What the kernels need from a layout; seg: device segment table [nseg + 1].
struct Dense {
  int nseg;
  int spb;         // floats per bucket at the start of the payload
  int width;       // bits per element of the stream (kQsgd bits + 1, kSign 1)
  int32_t levels;  // kQsgd s = 2^bits - 1
  int64_t d;
  int64_t scale_words;  // nseg * spb
  int64_t words;        // payload_bytes rounded up to 32-bit words
  const int64_t* seg;
};

// Bucket of element i < d: the largest s with seg[s] <= i (never an empty bucket).
__device__ int bucket_of(const Dense& w, int64_t i) {
  int lo = 0, hi = w.nseg - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (w.seg[mid] <= i) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Stream field of element i: kQsgd sign (1 = negative) then level; kSign 1 = negative.
template <CompressorKind kKind>
__device__ uint32_t field_of(const Dense& w, const int16_t* code_row, int64_t i) {
  const int32_t c = code_row[i];
  if (kKind == CompressorKind::kSign) return c < 0 ? 1u : 0u;
  const uint32_t level = static_cast<uint32_t>(c < 0 ? -c : c);
  return ((c < 0 ? 1u : 0u) | (level << 1)) & ((1u << w.width) - 1u);
}

// Word j of row r's payload (little-endian, so byte 4j + b is bits 8b..8b+7).
template <CompressorKind kKind>
__device__ uint32_t encode_word(const Dense& w, const DeviceMessage& msg, int64_t r, int64_t j) {
  if (kKind == CompressorKind::kIdentity) return __float_as_uint(msg.val[r * msg.ld_msg + j]);
  if (j < w.scale_words) {
    const int s = static_cast<int>(j / w.spb);
    if (w.seg[s + 1] == w.seg[s]) return 0u;  // empty bucket: the CPU sends 0
    return __float_as_uint(msg.scale[r * w.scale_words + j]);
  }
  const int16_t* code_row = msg.code + r * msg.ld_msg;
  const int64_t k = j - w.scale_words;  // word of the codes / bit stream
  uint32_t word = 0;
  if (kKind == CompressorKind::kMinMax8) {
    for (int b = 0; b < 4 && 4 * k + b < w.d; ++b)
      word |= (static_cast<uint32_t>(code_row[4 * k + b]) & 0xFFu) << (8 * b);
    return word;
  }
  // Elements whose bits [i * width, (i + 1) * width) meet the word's bits [32k, 32k + 32).
  const int64_t bit0 = 32 * k;
  const int64_t first = bit0 / w.width;
  int64_t end = (bit0 + 32 + w.width - 1) / w.width;
  if (end > w.d) end = w.d;
  for (int64_t i = first; i < end; ++i) {
    const uint32_t f = field_of<kKind>(w, code_row, i);
    const int64_t shift = i * w.width - bit0;  // > -width: only the first element straddles
    word |= shift >= 0 ? static_cast<uint32_t>(static_cast<uint64_t>(f) << shift)
                       : f >> static_cast<int>(-shift);
  }
  return word;
}

template <CompressorKind kKind>
__global__ void __launch_bounds__(kThreads)
    encode_dense_kernel(Dense w, int64_t rows, DeviceMessage msg, uint8_t* out, size_t pitch) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    uint32_t* row = reinterpret_cast<uint32_t*>(out + r * pitch);
    for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < w.words;
         j += static_cast<int64_t>(gridDim.x) * kThreads) {
      row[j] = encode_word<kKind>(w, msg, r, j);
    }
  }
}

// Bits [pos, pos + n) of a little-endian bit stream, n <= 32, read byte by byte.
__device__ uint32_t get_bits(const uint8_t* stream, int64_t pos, int n) {
  uint64_t v = 0;
  const int64_t first = pos >> 3, last = (pos + n - 1) >> 3;
  for (int64_t b = last; b >= first; --b) v = (v << 8) | stream[b];
  return static_cast<uint32_t>((v >> (pos & 7)) & ((1ull << n) - 1));
}

template <CompressorKind kKind>
__global__ void __launch_bounds__(kThreads)
    decode_dense_kernel(Dense w, int64_t rows, const uint8_t* in, size_t pitch, float* val,
                        int64_t ld_val, int* error_flag) {
  constexpr bool kStream = kKind == CompressorKind::kQsgd || kKind == CompressorKind::kSign;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const uint8_t* row = in + r * pitch;
    const float* params = reinterpret_cast<const float*>(row);
    const uint8_t* body = row + 4 * w.scale_words;  // bit stream or minmax8 codes
    float* out = val + r * ld_val;
    bool bad = false;
    if (kStream && blockIdx.x == 0 && threadIdx.x == 0) {
      const int64_t used = w.d * w.width;  // stream bits; the rest of the last byte must be 0
      if ((used & 7) != 0 && (body[used >> 3] >> (used & 7)) != 0) bad = true;
    }
    for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < w.d;
         i += static_cast<int64_t>(gridDim.x) * kThreads) {
      if (kKind == CompressorKind::kIdentity) {
        const float v = params[i];
        bad |= isnan(v);
        out[i] = v;
        continue;
      }
      const int s = bucket_of(w, i);
      if (kKind == CompressorKind::kQsgd) {
        const float norm = params[s];
        const uint32_t f = get_bits(body, i * w.width, w.width);
        const int32_t level = static_cast<int32_t>(f >> 1);
        // As the CPU decoder (kernels/cpu/codec.cpp): norm * levels must be finite.
        bad |= !(norm >= 0.0f) || isinf(norm * static_cast<float>(w.levels));
        bad |= level > w.levels;
        bad |= (f & 1u) != 0 && level == 0;
        bad |= level != 0 && norm == 0.0f;
        out[i] = dequant_qsgd(norm, (f & 1u) ? -level : level, w.levels);
      } else if (kKind == CompressorKind::kSign) {
        const float scale = params[s];
        bad |= !(scale >= 0.0f) || isinf(scale);
        out[i] = dequant_sign(scale, get_bits(body, i, 1) ? -1 : 1);
      } else {
        const float lo = params[2 * s], hi = params[2 * s + 1];
        const float step = minmax8_scale(lo, hi);
        bad |= !(lo <= hi) || !isfinite(step);
        out[i] = dequant_minmax8(lo, step, body[i]);
      }
    }
    if (bad && error_flag) *error_flag = kErrorInput;
  }
}

[[noreturn]] void bad_argument(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

// Checks the layout is one dense_wire_layout could have returned, and the pitch fits it.
void check_layout(const char* fn, const DenseWireLayout& l, int64_t rows, size_t pitch) {
  if (!dense_wire_supports(l.kind) || l.nseg < 0 || l.d < 0 ||
      (l.kind == CompressorKind::kQsgd && (l.bits < 1 || l.bits > 8)) ||
      l.scale_bytes != 4 * static_cast<size_t>(l.nseg) * scales_per_bucket(l.kind) ||
      l.payload_bytes != dense_wire_payload_bytes(l.kind, l.bits, l.nseg, l.d))
    bad_argument(fn, "the layout does not come from dense_wire_layout");
  if (rows < 0) bad_argument(fn, "negative row count " + std::to_string(rows));
  if (pitch % 4 != 0 || pitch < l.payload_bytes)
    bad_argument(fn, "pitch must be a multiple of 4 and >= " + std::to_string(l.payload_bytes) +
                         ", got " + std::to_string(pitch));
}

bool misaligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 != 0; }

Dense make_dense(const DenseWireLayout& l, const int64_t* seg_offsets) {
  Dense w{};
  w.nseg = l.nseg;
  w.spb = scales_per_bucket(l.kind);
  w.width = l.kind == CompressorKind::kQsgd ? l.bits + 1 : 1;
  w.levels = l.kind == CompressorKind::kQsgd ? qsgd_levels(l.bits) : 0;
  w.d = l.d;
  w.scale_words = static_cast<int64_t>(l.nseg) * w.spb;
  w.words = static_cast<int64_t>(dense_wire_pitch(l) / 4);
  w.seg = seg_offsets;
  return w;
}

dim3 row_grid(int64_t per_row, int64_t rows) {
  int64_t bx = (per_row + kThreads - 1) / kThreads;
  if (bx > kMaxBlocksX) bx = kMaxBlocksX;
  return dim3(static_cast<unsigned>(bx < 1 ? 1 : bx),
              static_cast<unsigned>(rows < kMaxBlocksY ? rows : kMaxBlocksY));
}

}  // namespace

void encode_dense_rows_cuda(const DenseWireLayout& layout, const int64_t* seg_offsets, int64_t rows,
                            const DeviceMessage& msg, uint8_t* out, size_t pitch, Stream stream) {
  constexpr const char* kFn = "encode_dense_rows_cuda";
  check_layout(kFn, layout, rows, pitch);
  if (rows == 0 || layout.payload_bytes == 0) return;
  const bool identity = layout.kind == CompressorKind::kIdentity;
  if (!out || misaligned(out)) bad_argument(kFn, "out is null or not 4-byte aligned");
  if (!identity && layout.nseg > 0 && !seg_offsets) bad_argument(kFn, "seg_offsets is null");
  if (layout.d > 0 && (identity ? !msg.val : !msg.code))
    bad_argument(kFn, identity ? "msg.val is null" : "msg.code is null");
  if (!identity && layout.nseg > 0 && !msg.scale) bad_argument(kFn, "msg.scale is null");
  if (msg.ld_msg < layout.d)
    bad_argument(kFn, "msg.ld_msg = " + std::to_string(msg.ld_msg) +
                          " is less than d = " + std::to_string(layout.d));
  const Dense w = make_dense(layout, seg_offsets);
  const dim3 grid = row_grid(w.words, rows);
  switch (layout.kind) {
    case CompressorKind::kIdentity:
      encode_dense_kernel<CompressorKind::kIdentity>
          <<<grid, kThreads, 0, stream>>>(w, rows, msg, out, pitch);
      break;
    case CompressorKind::kQsgd:
      encode_dense_kernel<CompressorKind::kQsgd>
          <<<grid, kThreads, 0, stream>>>(w, rows, msg, out, pitch);
      break;
    case CompressorKind::kSign:
      encode_dense_kernel<CompressorKind::kSign>
          <<<grid, kThreads, 0, stream>>>(w, rows, msg, out, pitch);
      break;
    default:
      encode_dense_kernel<CompressorKind::kMinMax8>
          <<<grid, kThreads, 0, stream>>>(w, rows, msg, out, pitch);
      break;
  }
  CUDA_CHECK(cudaGetLastError());
}

void decode_dense_rows_cuda(const DenseWireLayout& layout, const int64_t* seg_offsets, int64_t rows,
                            const uint8_t* in, size_t pitch, float* val, int64_t ld_val,
                            int* error_flag, Stream stream) {
  constexpr const char* kFn = "decode_dense_rows_cuda";
  check_layout(kFn, layout, rows, pitch);
  // With d == 0 there is nothing to write and nothing to check (no stream, no used bucket).
  if (rows == 0 || layout.d == 0) return;
  if (!in || misaligned(in)) bad_argument(kFn, "in is null or not 4-byte aligned");
  if (layout.kind != CompressorKind::kIdentity && !seg_offsets)
    bad_argument(kFn, "seg_offsets is null");
  if (!val) bad_argument(kFn, "val is null");
  if (ld_val < layout.d)
    bad_argument(kFn, "ld_val = " + std::to_string(ld_val) +
                          " is less than d = " + std::to_string(layout.d));
  const Dense w = make_dense(layout, seg_offsets);
  const dim3 grid = row_grid(layout.d, rows);
  switch (layout.kind) {
    case CompressorKind::kIdentity:
      decode_dense_kernel<CompressorKind::kIdentity>
          <<<grid, kThreads, 0, stream>>>(w, rows, in, pitch, val, ld_val, error_flag);
      break;
    case CompressorKind::kQsgd:
      decode_dense_kernel<CompressorKind::kQsgd>
          <<<grid, kThreads, 0, stream>>>(w, rows, in, pitch, val, ld_val, error_flag);
      break;
    case CompressorKind::kSign:
      decode_dense_kernel<CompressorKind::kSign>
          <<<grid, kThreads, 0, stream>>>(w, rows, in, pitch, val, ld_val, error_flag);
      break;
    default:
      decode_dense_kernel<CompressorKind::kMinMax8>
          <<<grid, kThreads, 0, stream>>>(w, rows, in, pitch, val, ld_val, error_flag);
      break;
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels

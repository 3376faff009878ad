// Feeds arbitrary wire rows to the cpu backend's decode_sparse_rows / decode_dense_rows
// (kernels/cpu/backend_cpu.cpp) with the codec_cuda.h layouts, 1..3 rows, pitch and stride from
// the input. Asserts that a bad row only sets the error word (with its text), that accepted rows
// hold in-bucket ascending indices and no NaN, and that the stride padding stays untouched.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fuzz_util.h"
#include "spush/kernels/backend.h"

using namespace spush::kernels;
using spush::fuzz::FuzzInput;

namespace {
constexpr size_t kMaxPayload = 1 << 16;  // larger rows cost time and find nothing new
constexpr uint32_t kSentinel = 0x7fc0beefu;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Backend> be = make_cpu_backend();
  FuzzInput in(data, size);
  const spush::fuzz::CodecCase c = read_codec_case(in);
  const uint8_t shape = in.byte();
  const int64_t rows = 1 + shape % 3;
  const size_t extra = 4 * ((shape >> 2) % 3);  // pitch beyond the minimum
  const int64_t pad = (shape >> 4) % 3;         // ld_val - d (dense)
  const bool with_flag = !(shape & 0x40), null_segs = shape & 0x80;
  int* flag = with_flag ? be->error_word() + 1 : nullptr;
  const bool sparse = is_sparse(c.spec.kind);
  SparseWireLayout sl;
  DenseWireLayout dl;
  try {
    if (sparse)
      sl = sparse_wire_layout(c.spec, c.segs());
    else
      dl = dense_wire_layout(c.spec, c.segs());
  } catch (const std::invalid_argument&) {
    return 0;  // a spec or table the codec does not take
  }
  const size_t payload = sparse ? sl.payload_bytes : dl.payload_bytes;
  if (payload > kMaxPayload) return 0;
  const size_t pitch = (sparse ? sparse_wire_pitch(sl) : dense_wire_pitch(dl)) + extra;
  std::vector<uint8_t> wire(rows * pitch, 0);
  const auto body = in.rest();
  if (const size_t n = std::min(body.size(), wire.size())) std::memcpy(wire.data(), body.data(), n);
  std::vector<int32_t> idx;
  std::vector<float> val;
  const int64_t d = sparse ? sl.d : dl.d, ld = d + pad;
  try {
    if (sparse) {
      idx.assign(rows * sl.k_total, -7);
      val.assign(rows * sl.k_total, 0.0f);
      be->decode_sparse_rows(sl, sl.tables.data(), rows, wire.data(), pitch, idx.data(), val.data(),
                             flag);
    } else {
      val.resize(rows * ld);
      for (float& v : val) std::memcpy(&v, &kSentinel, 4);
      const bool segs_null = null_segs && c.spec.kind == CompressorKind::kIdentity;
      be->decode_dense_rows(dl, segs_null ? nullptr : c.offsets.data(), rows, wire.data(), pitch,
                            val.data(), ld, flag);
    }
  } catch (const std::runtime_error&) {
    FUZZ_CHECK(!with_flag, "a row decoder threw although it was given an error flag");
    return 0;
  }
  const BackendErrors err = be->take_errors();
  if (err.any()) {
    FUZZ_CHECK(err.messages == kErrorInput && err.compressor == 0 && !err.detail.empty(),
               "a malformed row must set the message flag with its text: " + err.describe());
    return 0;
  }
  if (sparse) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int s = 0; s < sl.nseg; ++s) {
        const int64_t lo = sl.tables[s], hi = sl.tables[s + 1];
        const int64_t k0 = sl.tables[sl.nseg + 1 + s], k1 = sl.tables[sl.nseg + 2 + s];
        for (int64_t k = k0; k < k1; ++k) {
          const int32_t j = idx[r * sl.k_total + k];
          FUZZ_CHECK(j >= lo && j < hi, "decoded index outside its bucket");
          FUZZ_CHECK(k == k0 || j > idx[r * sl.k_total + k - 1], "indices not ascending");
          FUZZ_CHECK(!std::isnan(val[r * sl.k_total + k]), "decoded value is NaN");
        }
      }
    }
    return 0;
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < ld; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &val[r * ld + i], 4);
      if (i < d)
        FUZZ_CHECK(!std::isnan(val[r * ld + i]), "decoded value is NaN");
      else
        FUZZ_CHECK(bits == kSentinel, "decoder wrote past the row into the stride padding");
    }
  }
  return 0;
}

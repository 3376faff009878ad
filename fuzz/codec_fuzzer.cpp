// Feeds arbitrary payloads to kernels/cpu/codec.cpp: decode() for every CompressorKind and index
// codec, or decode_indices() alone, spec and segment table from the first bytes. Asserts that an
// accepted payload has the spec's shapes (indices in their bucket, ascending; no NaN) and encodes
// back to the same bytes; std::invalid_argument / std::runtime_error are expected rejections.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "fuzz_util.h"
#include "spush/kernels/codec.h"

using namespace spush::kernels;
using spush::fuzz::FuzzInput;

namespace {

// Indices of bucket s lie in [offsets[s], offsets[s+1]) and ascend strictly.
void check_indices(const std::vector<int64_t>& off, const std::vector<int32_t>& idx,
                   const int64_t* counts) {
  size_t i = 0;
  for (size_t s = 0; s + 1 < off.size(); ++s) {
    for (int64_t k = 0; k < counts[s]; ++k, ++i) {
      FUZZ_CHECK(i < idx.size(), "fewer indices than the counts");
      FUZZ_CHECK(idx[i] >= off[s] && idx[i] < off[s + 1], "index outside its bucket");
      FUZZ_CHECK(k == 0 || idx[i] > idx[i - 1], "indices not strictly ascending");
    }
  }
  FUZZ_CHECK(i == idx.size(), "more indices than the counts");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const bool indices_only = in.byte() & 1;
  const spush::fuzz::CodecCase c = read_codec_case(in);
  const SegmentView segs = c.segs();
  const int nseg = segs.count;
  if (indices_only) {
    std::vector<int64_t> counts(nseg);
    for (int s = 0; s < nseg; ++s) counts[s] = static_cast<int8_t>(in.byte());
    const auto payload = in.rest();
    std::vector<int32_t> idx;
    size_t used = 0;
    try {
      used = decode_indices(c.spec.index_codec, c.spec.density, segs, payload.data(),
                            payload.size(), idx, counts.data());
    } catch (const std::invalid_argument&) {
      return 0;
    } catch (const std::runtime_error&) {
      return 0;
    }
    FUZZ_CHECK(used <= payload.size(), "consumed more bytes than given");
    check_indices(c.offsets, idx, counts.data());
    std::vector<uint8_t> again;
    encode_indices(c.spec.index_codec, c.spec.density, segs, idx.data(), counts.data(), again);
    FUZZ_CHECK(again.size() == used && std::equal(again.begin(), again.end(), payload.begin()),
               "indices do not encode back to the bytes they were decoded from");
    return 0;
  }
  const auto payload = in.rest();
  Compressed out;
  try {
    decode(c.spec, segs, payload.data(), payload.size(), out);
  } catch (const std::invalid_argument&) {
    return 0;
  } catch (const std::runtime_error&) {
    return 0;
  }
  const size_t d = static_cast<size_t>(segs.total());
  FUZZ_CHECK(out.kind == c.spec.kind, "decoded kind differs from the spec");
  if (is_sparse(c.spec.kind)) {
    const std::vector<int64_t> k = topk_offsets(segs, c.spec.density);
    std::vector<int64_t> counts(nseg);
    for (int s = 0; s < nseg; ++s) counts[s] = k[s + 1] - k[s];
    FUZZ_CHECK(out.idx.size() == static_cast<size_t>(k.back()), "kept count != topk_count");
    check_indices(c.offsets, out.idx, counts.data());
    FUZZ_CHECK(out.val.size() == out.idx.size(), "values and indices differ in number");
  } else {
    FUZZ_CHECK(out.idx.empty() && out.val.size() == d, "dense row of the wrong length");
  }
  for (float v : out.val) FUZZ_CHECK(!std::isnan(v), "decoded value is NaN");
  std::vector<uint8_t> again;
  encode(c.spec, segs, out, again);
  FUZZ_CHECK(
      again.size() == payload.size() && std::equal(again.begin(), again.end(), payload.begin()),
      "decoded row does not encode back to the same payload");
  return 0;
}

// Sparse wire codec on the GPU (encode_sparse_rows_cuda / decode_sparse_rows_cuda) against the
// CPU codec (encode / decode of codec.h): every index codec, many densities and layer tables,
// several rows at once. Encoded bytes must equal the CPU's byte for byte, decoding must give
// back the CPU decode's indices and values exactly, and malformed payloads (index outside its
// bucket, descending indices, wrong block-position counts, non-zero padding, NaN values) set
// the error flag.
#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {
namespace {

using test::bits_of;

CompressorSpec sparse_spec(IndexCodec codec, double density) {
  CompressorSpec s;
  s.kind = CompressorKind::kTopK;
  s.density = density;
  s.index_codec = codec;
  return s;
}

// Rows of a valid top-K message: per bucket K sorted distinct indices, random values.
struct Rows {
  std::vector<int64_t> off;
  int64_t rows = 0, k_total = 0;
  std::vector<int32_t> idx;
  std::vector<float> val;
  SegmentView segs() const { return SegmentView{off.data(), static_cast<int>(off.size()) - 1}; }
  Compressed row(int64_t r) const {
    Compressed c;
    c.kind = CompressorKind::kTopK;
    c.idx.assign(idx.begin() + r * k_total, idx.begin() + (r + 1) * k_total);
    c.val.assign(val.begin() + r * k_total, val.begin() + (r + 1) * k_total);
    return c;
  }
};

Rows make_rows(const std::vector<int64_t>& lens, double density, int64_t rows, uint32_t seed) {
  Rows m;
  m.off = {0};
  for (int64_t len : lens) m.off.push_back(m.off.back() + len);
  m.rows = rows;
  const std::vector<int64_t> koff = topk_offsets(m.segs(), density);
  m.k_total = koff.back();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t s = 0; s + 1 < m.off.size(); ++s) {
      std::vector<int32_t> all(static_cast<size_t>(m.off[s + 1] - m.off[s]));
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(m.off[s] + i);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(static_cast<size_t>(koff[s + 1] - koff[s]));
      std::sort(all.begin(), all.end());
      m.idx.insert(m.idx.end(), all.begin(), all.end());
    }
  }
  m.val.resize(m.idx.size());
  for (float& v : m.val) v = normal(rng);
  return m;
}

struct Wire {
  SparseWireLayout layout;
  size_t pitch = 0;
  std::vector<uint8_t> bytes;  // [rows][pitch]
};

Wire encode_gpu(const CompressorSpec& spec, const Rows& m) {
  Wire w;
  w.layout = sparse_wire_layout(spec, m.segs());
  w.pitch = sparse_wire_pitch(w.layout);
  test::DeviceBuffer<int64_t> tables(w.layout.tables);
  test::DeviceBuffer<int32_t> idx(m.idx);
  test::DeviceBuffer<float> val(m.val);
  test::DeviceBuffer<uint8_t> out(static_cast<size_t>(m.rows) * w.pitch);
  encode_sparse_rows_cuda(w.layout, tables.get(), m.rows, idx.get(), val.get(), out.get(), w.pitch,
                          nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  w.bytes = out.download();
  return w;
}

struct Decoded {
  std::vector<int32_t> idx;
  std::vector<float> val;
  int flag = 0;
};

Decoded decode_gpu(const Wire& w, int64_t rows) {
  test::DeviceBuffer<int64_t> tables(w.layout.tables);
  test::DeviceBuffer<uint8_t> in(w.bytes);
  test::DeviceBuffer<int32_t> idx(static_cast<size_t>(rows * w.layout.k_total));
  test::DeviceBuffer<float> val(static_cast<size_t>(rows * w.layout.k_total));
  test::DeviceBuffer<int> flag(std::vector<int>{0});
  decode_sparse_rows_cuda(w.layout, tables.get(), rows, in.get(), w.pitch, idx.get(), val.get(),
                          flag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  return Decoded{idx.download(), val.download(), flag.download()[0]};
}

void round_trip(const CompressorSpec& spec, const Rows& m, const std::string& what) {
  SCOPED_TRACE(what + " codec " + to_string(spec.index_codec) + " density " +
               std::to_string(spec.density));
  const Wire w = encode_gpu(spec, m);
  for (int64_t r = 0; r < m.rows; ++r) {
    const Compressed c = m.row(r);
    std::vector<uint8_t> ref;
    encode(spec, m.segs(), c, ref);
    ASSERT_EQ(ref.size(), w.layout.payload_bytes);
    ASSERT_EQ(encoded_size(spec, m.segs(), c), w.layout.payload_bytes);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_EQ(w.bytes[r * w.pitch + i], ref[i]) << "row " << r << " byte " << i;
  }
  const Decoded d = decode_gpu(w, m.rows);
  ASSERT_EQ(d.flag, 0);
  for (int64_t r = 0; r < m.rows; ++r) {
    Compressed back;
    decode(spec, m.segs(), w.bytes.data() + r * w.pitch, w.layout.payload_bytes, back);
    for (int64_t j = 0; j < m.k_total; ++j) {
      ASSERT_EQ(d.idx[r * m.k_total + j], back.idx[j]) << "row " << r << " entry " << j;
      ASSERT_EQ(bits_of(d.val[r * m.k_total + j]), bits_of(back.val[j]))
          << "row " << r << " entry " << j;
    }
  }
}

const std::vector<int64_t> kLayers{432, 32, 0, 1, 2304, 32, 9216, 64, 36864, 128, 640, 10};

TEST(CodecGpu, EncodeEqualsCpuBytesAndDecodeRoundTrips) {
  SPUSH_REQUIRE_GPU();
  uint32_t seed = 1;
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition}) {
    for (double rho : {0.001, 0.01, 0.03, 0.1, 0.5, 1.0}) {
      round_trip(sparse_spec(codec, rho), make_rows(kLayers, rho, 4, seed++), "layers");
      round_trip(sparse_spec(codec, rho), make_rows({65536, 7, 1, 40000}, rho, 2, seed++),
                 "long buckets");
    }
  }
  for (double rho : {0.001, 0.01}) {  // one long bucket: raw32 and block only
    round_trip(sparse_spec(IndexCodec::kRaw32, rho), make_rows({1 << 20}, rho, 2, seed++),
               "global");
    round_trip(sparse_spec(IndexCodec::kBlockPosition, rho), make_rows({1 << 20}, rho, 2, seed++),
               "global");
  }
}

TEST(CodecGpu, LayoutMatchesTheCpuSizes) {
  SPUSH_REQUIRE_GPU();
  const Rows m = make_rows(kLayers, 0.01, 1, 5);
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition}) {
    const CompressorSpec spec = sparse_spec(codec, 0.01);
    EXPECT_EQ(sparse_wire_layout(spec, m.segs()).payload_bytes,
              encoded_size(spec, m.segs(), m.row(0)));
  }
  CompressorSpec q;
  q.kind = CompressorKind::kQsgd;
  EXPECT_THROW(sparse_wire_layout(q, m.segs()), std::invalid_argument);
  const Rows big = make_rows({70000}, 0.01, 1, 6);
  EXPECT_THROW(sparse_wire_layout(sparse_spec(IndexCodec::kLocal16, 0.01), big.segs()),
               std::invalid_argument);
}

TEST(CodecGpu, MalformedPayloadsSetTheErrorFlag) {
  SPUSH_REQUIRE_GPU();
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition}) {
    SCOPED_TRACE(to_string(codec));
    const CompressorSpec spec = sparse_spec(codec, 0.1);
    const Rows m = make_rows({100, 57, 300}, 0.1, 3, 9);
    const Wire good = encode_gpu(spec, m);
    EXPECT_EQ(decode_gpu(good, m.rows).flag, 0);
    // Row 1, first index moved outside its bucket / two indices swapped.
    Wire bad = good;
    uint8_t* row1 = bad.bytes.data() + bad.pitch;
    if (codec == IndexCodec::kRaw32) {
      const uint32_t outside = 450;  // bucket 0 ends at 100
      std::memcpy(row1, &outside, 4);
    } else if (codec == IndexCodec::kLocal16) {
      const uint16_t outside = 100;
      std::memcpy(row1, &outside, 2);
    } else {
      // Bucket 0's stream all zeros: seven empty blocks, 0 indices instead of K = 10.
      const int64_t nbits0 = good.layout.tables[2 * (good.layout.nseg + 1) + 1];
      for (int64_t bit = 0; bit < nbits0; ++bit)
        row1[bit / 8] &= static_cast<uint8_t>(~(1u << (bit % 8)));
    }
    EXPECT_EQ(decode_gpu(bad, m.rows).flag, 2);
    if (codec != IndexCodec::kBlockPosition) {
      bad = good;
      row1 = bad.bytes.data() + bad.pitch;
      const size_t w = codec == IndexCodec::kRaw32 ? 4 : 2;
      std::vector<uint8_t> a(row1, row1 + w), b(row1 + w, row1 + 2 * w);
      std::copy(b.begin(), b.end(), row1);
      std::copy(a.begin(), a.end(), row1 + w);
      EXPECT_EQ(decode_gpu(bad, m.rows).flag, 2) << "descending indices";
    } else if (good.layout.index_bytes * 8 > static_cast<size_t>(good.layout.tables.back())) {
      bad = good;
      bad.bytes[2 * bad.pitch + good.layout.index_bytes - 1] |= 0x80;
      EXPECT_EQ(decode_gpu(bad, m.rows).flag, 2) << "padding";
    }
    bad = good;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bad.bytes.data() + good.layout.index_bytes + 4, &nan, 4);
    EXPECT_EQ(decode_gpu(bad, m.rows).flag, 2) << "NaN value";
  }
}

}  // namespace
}  // namespace spush::kernels

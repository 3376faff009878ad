// Dense wire codec on the GPU (encode_dense_rows_cuda / decode_dense_rows_cuda) against the CPU
// codec (encode / decode of codec.h): kIdentity, kQsgd (1, 2, 4, 8 bits), kSign and kMinMax8 on
// one-bucket, many-bucket (lengths 1 and 0, odd lengths) and long rows, several rows at once.
// Rows are compressed by compress_ef_cpu and laid out as compress_ef_cuda's DeviceMessage.
// Encoded bytes must equal the CPU's byte for byte, decoding the CPU's payloads must give the
// CPU decode's values bit for bit, and every payload the CPU decode rejects sets the error flag.
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {
namespace {

using test::bits_of;

CompressorSpec dense_spec(CompressorKind kind, int bits = 8) {
  CompressorSpec s;
  s.kind = kind;
  s.bits = bits;
  s.seed = 42;
  return s;
}

// Every dense kind the GPU codec handles.
std::vector<CompressorSpec> all_specs() {
  return {dense_spec(CompressorKind::kQsgd, 1), dense_spec(CompressorKind::kQsgd, 2),
          dense_spec(CompressorKind::kQsgd, 4), dense_spec(CompressorKind::kQsgd, 8),
          dense_spec(CompressorKind::kSign),    dense_spec(CompressorKind::kMinMax8),
          dense_spec(CompressorKind::kIdentity)};
}

std::string name_of(const CompressorSpec& spec) {
  std::string n = to_string(spec.kind);
  if (spec.kind == CompressorKind::kQsgd) n += " bits " + std::to_string(spec.bits);
  return n;
}

std::vector<int64_t> offsets_of(const std::vector<int64_t>& lens) {
  std::vector<int64_t> off{0};
  for (int64_t len : lens) off.push_back(off.back() + len);
  return off;
}

// Segment tables: one bucket (d a multiple of 32 or not), many odd buckets with lengths 1 and
// 0, all buckets empty, a model-like table, and a long row that needs grid-stride loops.
const std::vector<std::vector<int64_t>> kTables{
    {1024},
    {1237},
    {1},
    {7, 0, 1, 33, 0, 101, 3, 1, 0, 250, 13, 0},
    {0, 0, 0},
    {432, 32, 0, 1, 2304, 32, 9216, 64, 36864, 128, 640, 10},
    {(1 << 20) + 3, 5}};

// Rows of a dense message: the CPU's Compressed rows and payloads, and the same message in
// compress_ef_cuda's device layout (with junk where compress_ef_cuda writes nothing).
struct Message {
  CompressorSpec spec;
  std::vector<int64_t> off;
  int64_t rows = 0, d = 0, ld = 0;
  int nseg = 0, spb = 0;
  std::vector<Compressed> cpu;                // [rows]
  std::vector<std::vector<uint8_t>> payload;  // [rows], encode() of cpu[r]
  std::vector<int16_t> code;                  // [rows][ld]
  std::vector<float> val;                     // [rows][ld]
  std::vector<float> scale;                   // [rows][nseg * spb]
  SegmentView segs() const { return SegmentView{off.data(), static_cast<int>(off.size()) - 1}; }
};

Message make_message(const CompressorSpec& spec, const std::vector<int64_t>& lens, int64_t rows,
                     uint32_t seed) {
  Message m;
  m.spec = spec;
  m.off = offsets_of(lens);
  m.rows = rows;
  m.nseg = static_cast<int>(lens.size());
  m.d = m.off.back();
  m.ld = m.d + 3;
  m.spb = scales_per_bucket(spec.kind);
  m.code.assign(static_cast<size_t>(rows * m.ld), int16_t{0x5A5A});
  m.val.assign(static_cast<size_t>(rows * m.ld), std::numeric_limits<float>::quiet_NaN());
  m.scale.assign(static_cast<size_t>(rows) * m.nseg * m.spb, -12345.0f);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> pick(0, 15);
  std::vector<float> x(static_cast<size_t>(m.d));
  for (int64_t r = 0; r < rows; ++r) {
    for (int s = 0; s < m.nseg; ++s) {
      const int mode = pick(rng);  // 0: all zeros, 1: constant, else random with some zeros
      const float c = normal(rng);
      for (int64_t i = m.off[s]; i < m.off[s + 1]; ++i) {
        const int z = pick(rng);
        x[i] = mode == 0 ? 0.0f : mode == 1 ? c : z == 0 ? 0.0f : z == 1 ? -0.0f : normal(rng);
      }
    }
    Compressed c;
    compress_ef_cpu(spec, m.segs(), x.data(), nullptr, c, static_cast<uint32_t>(r), 7);
    std::vector<uint8_t> bytes;
    encode(spec, m.segs(), c, bytes);
    for (int64_t i = 0; i < m.d; ++i) {
      if (spec.kind != CompressorKind::kIdentity) m.code[r * m.ld + i] = c.code[i];
      m.val[r * m.ld + i] = c.val[i];
    }
    // compress_ef_cuda writes no parameters for empty buckets: keep the junk there.
    for (int s = 0; s < m.nseg; ++s)
      for (int q = 0; q < m.spb; ++q)
        if (m.off[s + 1] > m.off[s])
          m.scale[(r * m.nseg + s) * m.spb + q] = c.scale[static_cast<size_t>(s) * m.spb + q];
    m.cpu.push_back(std::move(c));
    m.payload.push_back(std::move(bytes));
  }
  return m;
}

// GPU encode of the message; returns [rows][pitch] bytes (the buffer starts poisoned, 0xFF).
std::vector<uint8_t> encode_gpu(const DenseWireLayout& lay, const Message& m, size_t pitch) {
  test::DeviceBuffer<int64_t> segs(m.off);
  test::DeviceBuffer<int16_t> code(m.code);
  test::DeviceBuffer<float> val(m.val);
  test::DeviceBuffer<float> scale(m.scale);
  test::DeviceBuffer<uint8_t> out(static_cast<size_t>(m.rows) * pitch);
  DeviceMessage msg;
  msg.code = code.get();
  msg.val = val.get();
  msg.scale = scale.get();
  msg.ld_msg = m.ld;
  encode_dense_rows_cuda(lay, segs.get(), m.rows, msg, out.get(), pitch, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  return out.download();
}

// Row r of the CPU payloads at r * pitch; the bytes past each payload are junk.
std::vector<uint8_t> wire_of(const Message& m, size_t pitch) {
  std::vector<uint8_t> wire(static_cast<size_t>(m.rows) * pitch, 0xA5);
  for (int64_t r = 0; r < m.rows; ++r)
    std::copy(m.payload[r].begin(), m.payload[r].end(), wire.begin() + r * pitch);
  return wire;
}

struct Decoded {
  std::vector<float> val;  // [rows][ld_val], poisoned (NaN, 0xFFFFFFFF) before the call
  int flag = 0;
};

Decoded decode_gpu(const DenseWireLayout& lay, const Message& m, const std::vector<uint8_t>& wire,
                   size_t pitch, int64_t ld_val, bool with_flag = true) {
  test::DeviceBuffer<int64_t> segs(m.off);
  test::DeviceBuffer<uint8_t> in(wire);
  test::DeviceBuffer<float> val(static_cast<size_t>(m.rows * ld_val));
  test::DeviceBuffer<int> flag(std::vector<int>{0});
  decode_dense_rows_cuda(lay, segs.get(), m.rows, in.get(), pitch, val.get(), ld_val,
                         with_flag ? flag.get() : nullptr, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  return Decoded{val.download(), flag.download()[0]};
}

void round_trip(const Message& m) {
  SCOPED_TRACE(name_of(m.spec) + ", " + std::to_string(m.nseg) +
               " buckets, d = " + std::to_string(m.d) + ", rows = " + std::to_string(m.rows));
  const DenseWireLayout lay = dense_wire_layout(m.spec, m.segs());
  const size_t tight = dense_wire_pitch(lay);
  ASSERT_EQ(lay.payload_bytes, m.payload[0].size());
  // Encode: the payload bytes, zeros up to the next multiple of 4, nothing written after.
  for (size_t pitch : {tight, tight + 8}) {
    const std::vector<uint8_t> got = encode_gpu(lay, m, pitch);
    for (int64_t r = 0; r < m.rows; ++r) {
      const uint8_t* row = got.data() + r * pitch;
      for (size_t i = 0; i < lay.payload_bytes; ++i)
        ASSERT_EQ(row[i], m.payload[r][i]) << "row " << r << " byte " << i << " pitch " << pitch;
      for (size_t i = lay.payload_bytes; i < tight; ++i)
        ASSERT_EQ(row[i], 0) << "row " << r << " byte " << i << " (rounding to 4)";
      for (size_t i = tight; i < pitch; ++i)
        ASSERT_EQ(row[i], 0xFF) << "row " << r << " byte " << i << " (past the payload)";
    }
  }
  // Decode the CPU's payloads: CPU decode()'s values bit for bit, padding columns untouched.
  const size_t pitch = tight + 4;
  const int64_t ld_val = m.d + 5;
  const Decoded got = decode_gpu(lay, m, wire_of(m, pitch), pitch, ld_val);
  EXPECT_EQ(got.flag, 0);
  for (int64_t r = 0; r < m.rows; ++r) {
    Compressed back;
    decode(m.spec, m.segs(), m.payload[r].data(), m.payload[r].size(), back);
    ASSERT_EQ(back.val.size(), static_cast<size_t>(m.d));
    for (int64_t i = 0; i < m.d; ++i)
      ASSERT_EQ(bits_of(got.val[r * ld_val + i]), bits_of(back.val[i]))
          << "row " << r << " element " << i;
    for (int64_t i = m.d; i < ld_val; ++i)
      ASSERT_EQ(bits_of(got.val[r * ld_val + i]), 0xFFFFFFFFu) << "row " << r << " column " << i;
  }
}

TEST(CodecDenseGpu, EncodeEqualsCpuBytesAndDecodeEqualsCpuValues) {
  SPUSH_REQUIRE_GPU();
  uint32_t seed = 1;
  for (const CompressorSpec& spec : all_specs()) {
    for (const std::vector<int64_t>& lens : kTables) {
      const int64_t rows = lens[0] > 100000 ? 2 : 5;
      round_trip(make_message(spec, lens, rows, seed++));
    }
  }
}

TEST(CodecDenseGpu, MoreRowsThanTheGridHolds) {
  SPUSH_REQUIRE_GPU();
  round_trip(make_message(dense_spec(CompressorKind::kSign), {3, 2}, 70000, 3));
  round_trip(make_message(dense_spec(CompressorKind::kQsgd, 4), {5}, 70000, 4));
}

// Sets bits [e * width, (e + 1) * width) of the bit stream at data + start to f.
void set_field(std::vector<uint8_t>& p, size_t start, int64_t e, int width, uint32_t f) {
  for (int b = 0; b < width; ++b) {
    const int64_t bit = e * width + b;
    uint8_t& byte = p[start + static_cast<size_t>(bit / 8)];
    const uint8_t mask = static_cast<uint8_t>(1u << (bit % 8));
    byte = ((f >> b) & 1u) ? (byte | mask) : (byte & ~mask);
  }
}

void set_float(std::vector<uint8_t>& p, size_t at, float v) { std::memcpy(&p[at], &v, 4); }

TEST(CodecDenseGpu, MalformedPayloadsSetTheErrorFlag) {
  SPUSH_REQUIRE_GPU();
  // Bucket 0 = [0, 7), bucket 1 empty, d = 145: every stream width leaves padding bits.
  const std::vector<int64_t> lens{7, 0, 1, 33, 0, 101, 3};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  uint32_t seed = 100;
  for (const CompressorSpec& spec : all_specs()) {
    SCOPED_TRACE(name_of(spec));
    const Message m = make_message(spec, lens, 3, seed++);
    const DenseWireLayout lay = dense_wire_layout(spec, m.segs());
    const size_t pitch = dense_wire_pitch(lay);
    const size_t start = lay.scale_bytes;  // bit stream / codes
    const int width = spec.kind == CompressorKind::kQsgd ? spec.bits + 1 : 1;
    const bool stream = spec.kind == CompressorKind::kQsgd || spec.kind == CompressorKind::kSign;
    EXPECT_EQ(decode_gpu(lay, m, wire_of(m, pitch), pitch, m.d).flag, 0);
    // Each case edits row 1's payload; `bad` says whether the CPU decode must reject it.
    auto check = [&](const char* what, bool bad, auto&& edit) {
      Message e = m;
      edit(e.payload[1]);
      Compressed back;
      if (bad) {
        EXPECT_THROW(decode(spec, m.segs(), e.payload[1].data(), e.payload[1].size(), back),
                     std::runtime_error)
            << what;
      } else {
        EXPECT_NO_THROW(decode(spec, m.segs(), e.payload[1].data(), e.payload[1].size(), back))
            << what;
      }
      EXPECT_EQ(decode_gpu(lay, e, wire_of(e, pitch), pitch, m.d).flag, bad ? 2 : 0) << what;
      if (bad) decode_gpu(lay, e, wire_of(e, pitch), pitch, m.d, false);  // no flag: no fault
    };
    switch (spec.kind) {
      case CompressorKind::kIdentity:
        check("NaN value", true, [&](std::vector<uint8_t>& p) { set_float(p, 4 * 144, nan); });
        check("inf value", false, [&](std::vector<uint8_t>& p) {
          set_float(p, 4 * 5, std::numeric_limits<float>::infinity());
        });
        break;
      case CompressorKind::kQsgd:
        check("NaN norm", true, [&](std::vector<uint8_t>& p) { set_float(p, 4 * 3, nan); });
        check("negative norm", true, [&](std::vector<uint8_t>& p) { set_float(p, 0, -1.0f); });
        check("infinite norm", true, [&](std::vector<uint8_t>& p) {
          set_float(p, 4 * 3, std::numeric_limits<float>::infinity());
        });
        // With 1 bit the levels are 1: FLT_MAX * 1 is finite and decodes.
        check("norm * levels overflows", spec.bits > 1, [&](std::vector<uint8_t>& p) {
          set_float(p, 4 * 3, std::numeric_limits<float>::max());
        });
        check("NaN norm of an empty bucket", false,
              [&](std::vector<uint8_t>& p) { set_float(p, 4 * 1, nan); });
        check("level 0 with the sign bit", true,
              [&](std::vector<uint8_t>& p) { set_field(p, start, 144, width, 1u); });
        check("level in a bucket with norm 0", true, [&](std::vector<uint8_t>& p) {
          set_float(p, 4 * 6, 0.0f);            // bucket 6 = [142, 145)
          set_field(p, start, 143, width, 2u);  // level 1, positive
        });
        // A level above 2^bits - 1 does not fit the bits + 1 bit field: nothing to test.
        break;
      case CompressorKind::kSign:
        check("NaN scale", true, [&](std::vector<uint8_t>& p) { set_float(p, 4 * 5, nan); });
        check("negative scale", true, [&](std::vector<uint8_t>& p) { set_float(p, 4 * 2, -0.5f); });
        check("infinite scale", true, [&](std::vector<uint8_t>& p) {
          set_float(p, 4 * 5, std::numeric_limits<float>::infinity());
        });
        check("negative scale of an empty bucket", false,
              [&](std::vector<uint8_t>& p) { set_float(p, 4 * 4, -0.5f); });
        break;
      default:  // kMinMax8
        check("lo > hi", true, [&](std::vector<uint8_t>& p) {
          set_float(p, 8 * 3, 2.0f);
          set_float(p, 8 * 3 + 4, 1.0f);
        });
        check("NaN hi", true, [&](std::vector<uint8_t>& p) { set_float(p, 8 * 6 + 4, nan); });
        check("step (hi - lo) / 255 not finite", true, [&](std::vector<uint8_t>& p) {
          set_float(p, 8 * 3, -std::numeric_limits<float>::max());
          set_float(p, 8 * 3 + 4, std::numeric_limits<float>::max());
        });
        check("lo > hi in an empty bucket", false, [&](std::vector<uint8_t>& p) {
          set_float(p, 8 * 1, 2.0f);
          set_float(p, 8 * 1 + 4, 1.0f);
        });
        break;
    }
    if (stream) {
      ASSERT_NE(m.d * width % 8, 0);
      check("padding bit", true, [&](std::vector<uint8_t>& p) { p.back() |= 0x80; });
    }
  }
}

// The layout's sizes equal the CPU encoded_size; no GPU needed.
TEST(CodecDenseGpu, LayoutMatchesTheCpuSizes) {
  for (const CompressorSpec& spec : all_specs()) {
    for (const std::vector<int64_t>& lens : kTables) {
      const std::vector<int64_t> off = offsets_of(lens);
      const SegmentView segs{off.data(), static_cast<int>(lens.size())};
      const Message m = make_message(spec, lens, 1, 77);
      const DenseWireLayout lay = dense_wire_layout(spec, segs);
      EXPECT_EQ(lay.payload_bytes, encoded_size(spec, segs, m.cpu[0])) << name_of(spec);
      EXPECT_EQ(lay.scale_bytes, 4 * lens.size() * scales_per_bucket(spec.kind));
      EXPECT_EQ(lay.d, off.back());
      EXPECT_EQ(lay.nseg, static_cast<int>(lens.size()));
      EXPECT_EQ(dense_wire_pitch(lay) % 4, 0u);
      EXPECT_LT(dense_wire_pitch(lay) - lay.payload_bytes, 4u);
    }
  }
  const std::vector<int64_t> off = offsets_of({10, 20});
  const SegmentView segs{off.data(), 2};
  for (CompressorKind kind :
       {CompressorKind::kTopK, CompressorKind::kRandomK, CompressorKind::kFractional}) {
    CompressorSpec spec = dense_spec(kind);
    if (kind == CompressorKind::kFractional) spec.bits = 4;
    EXPECT_THROW(dense_wire_layout(spec, segs), std::invalid_argument) << to_string(kind);
  }
  const std::vector<int64_t> bad_start{1, 5};
  EXPECT_THROW(
      dense_wire_layout(dense_spec(CompressorKind::kSign), SegmentView{bad_start.data(), 1}),
      std::invalid_argument);
  const std::vector<int64_t> decreasing{0, 5, 3};
  EXPECT_THROW(
      dense_wire_layout(dense_spec(CompressorKind::kSign), SegmentView{decreasing.data(), 2}),
      std::invalid_argument);
}

// Host argument checks throw before touching the device; no GPU needed.
TEST(CodecDenseGpu, BadArgumentsThrow) {
  const std::vector<int64_t> off = offsets_of({10, 21});
  const SegmentView segs{off.data(), 2};
  const DenseWireLayout lay = dense_wire_layout(dense_spec(CompressorKind::kQsgd, 2), segs);
  ASSERT_EQ(lay.payload_bytes, 8u + 12u);  // 2 norms, then 31 * 3 bits
  ASSERT_EQ(dense_wire_pitch(lay), 20u);
  // Host memory stands in for device pointers: every call below throws before any launch.
  std::vector<uint32_t> host(64);
  uint8_t* bytes = reinterpret_cast<uint8_t*>(host.data());
  float* f = reinterpret_cast<float*>(host.data());
  const int64_t* dsegs = reinterpret_cast<const int64_t*>(host.data());
  DeviceMessage msg;
  msg.code = reinterpret_cast<int16_t*>(host.data());
  msg.scale = f;
  msg.ld_msg = 31;
  auto enc = [&](const DenseWireLayout& l, int64_t rows, const DeviceMessage& mm, uint8_t* out,
                 size_t pitch, const int64_t* sg) {
    encode_dense_rows_cuda(l, sg, rows, mm, out, pitch, nullptr);
  };
  using std::invalid_argument;
  EXPECT_THROW(enc(lay, 2, msg, bytes, 22, dsegs), invalid_argument);  // not a multiple of 4
  EXPECT_THROW(enc(lay, 2, msg, bytes, 16, dsegs), invalid_argument);  // too small
  EXPECT_THROW(enc(lay, -1, msg, bytes, 20, dsegs), invalid_argument);
  EXPECT_THROW(enc(lay, 2, msg, nullptr, 20, dsegs), invalid_argument);
  EXPECT_THROW(enc(lay, 2, msg, bytes + 1, 20, dsegs), invalid_argument);
  EXPECT_THROW(enc(lay, 2, msg, bytes, 20, nullptr), invalid_argument);
  DeviceMessage m2 = msg;
  m2.code = nullptr;
  EXPECT_THROW(enc(lay, 2, m2, bytes, 20, dsegs), invalid_argument);
  m2 = msg;
  m2.scale = nullptr;
  EXPECT_THROW(enc(lay, 2, m2, bytes, 20, dsegs), invalid_argument);
  m2 = msg;
  m2.ld_msg = 30;
  EXPECT_THROW(enc(lay, 2, m2, bytes, 20, dsegs), invalid_argument);
  DenseWireLayout forged = lay;
  forged.payload_bytes = 12;
  EXPECT_THROW(enc(forged, 2, msg, bytes, 20, dsegs), invalid_argument);
  const DenseWireLayout ident = dense_wire_layout(dense_spec(CompressorKind::kIdentity), segs);
  EXPECT_THROW(enc(ident, 2, msg, bytes, dense_wire_pitch(ident), dsegs), invalid_argument);
  // No rows: nothing to check or do.
  EXPECT_NO_THROW(enc(lay, 0, DeviceMessage{}, nullptr, 20, nullptr));

  auto dec = [&](int64_t rows, const uint8_t* in, size_t pitch, float* val, int64_t ld_val,
                 const int64_t* sg) {
    decode_dense_rows_cuda(lay, sg, rows, in, pitch, val, ld_val, nullptr, nullptr);
  };
  EXPECT_THROW(dec(2, bytes, 22, f, 31, dsegs), invalid_argument);
  EXPECT_THROW(dec(2, bytes, 16, f, 31, dsegs), invalid_argument);
  EXPECT_THROW(dec(-1, bytes, 20, f, 31, dsegs), invalid_argument);
  EXPECT_THROW(dec(2, nullptr, 20, f, 31, dsegs), invalid_argument);
  EXPECT_THROW(dec(2, bytes + 2, 20, f, 31, dsegs), invalid_argument);
  EXPECT_THROW(dec(2, bytes, 20, nullptr, 31, dsegs), invalid_argument);
  EXPECT_THROW(dec(2, bytes, 20, f, 30, dsegs), invalid_argument);
  EXPECT_THROW(dec(2, bytes, 20, f, 31, nullptr), invalid_argument);
  EXPECT_NO_THROW(dec(0, nullptr, 20, nullptr, 0, nullptr));
}

}  // namespace
}  // namespace spush::kernels

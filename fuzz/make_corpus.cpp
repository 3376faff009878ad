// Regenerates the seed corpora of fuzz/corpus/<harness>/ with the project's own writers
// (write_idx_images, write_cifar_batch, serialize_checkpoint, encode, TrainConfig::to_json, ...):
// small valid inputs of every format and mode of each harness, plus a few known-bad ones (a
// header declaring 2^32 - 1 images, "nodes 2000000000", a cut gzip stream, ...).
//   build-fuzz/fuzz/spush-make-corpus fuzz/corpus     (fuzz/run.sh does not call it)
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/nets/data.h"
#include "spush/runtime/checkpoint.h"
#include "spush/runtime/communicator.h"
#include "spush/runtime/settings.h"
#include "spush/runtime/train_config.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using namespace spush;

namespace {

fs::path g_root;

void put(const std::string& harness, const std::string& name, const Bytes& bytes) {
  const fs::path dir = g_root / harness;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}
Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }
Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
// A file made by a writer that only writes files: written to a temporary path, read back.
template <typename Write>
Bytes via_file(Write&& write) {
  const fs::path tmp = g_root / fmt::format(".make_corpus.{}.tmp", ::getpid());
  write(tmp.string());
  std::ifstream in(tmp, std::ios::binary);
  Bytes b{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  fs::remove(tmp);
  return b;
}
Bytes pixels(size_t n) {
  Bytes p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 37 + 11);
  return p;
}

void idx_seeds() {
  const Bytes img2 = via_file(
      [](const std::string& p) { nets::write_idx_images(p, 2, 28, 28, pixels(2 * 784), false); });
  const Bytes img2gz = via_file(
      [](const std::string& p) { nets::write_idx_images(p, 2, 28, 28, pixels(2 * 784), true); });
  const Bytes lab2 = via_file([](const std::string& p) {
    nets::write_idx_labels(p, {3, 9}, false);
  });
  const Bytes lab2gz = via_file([](const std::string& p) {
    nets::write_idx_labels(p, {0, 7}, true);
  });
  put("idx", "images-raw-28x28", cat({0}, img2));
  put("idx", "images-gzip-28x28", cat({0}, img2gz));
  put("idx", "images-raw-3x5", cat({0}, via_file([](const std::string& p) {
                                     nets::write_idx_images(p, 4, 3, 5, pixels(60), false);
                                   })));
  Bytes huge = img2;
  std::memset(huge.data() + 4, 0xff, 4);  // count 2^32 - 1 with 1568 pixel bytes
  put("idx", "images-huge-count", cat({0}, huge));
  Bytes cut_gz(img2gz.begin(), img2gz.begin() + static_cast<ptrdiff_t>(img2gz.size() / 2));
  put("idx", "images-gzip-cut", cat({0}, cut_gz));
  put("idx", "labels-raw", cat({1, 9}, lab2));
  put("idx", "labels-gzip", cat({1, 9}, lab2gz));
  const auto pair = [](const Bytes& images, const Bytes& labels) {
    const uint16_t cut = static_cast<uint16_t>(images.size());
    Bytes b{2, static_cast<uint8_t>(cut), static_cast<uint8_t>(cut >> 8)};
    return cat(cat(b, images), labels);
  };
  put("idx", "fashion-raw", pair(img2, lab2));
  put("idx", "fashion-gzip", pair(img2gz, lab2gz));
  put("idx", "fashion-count-mismatch", pair(img2, via_file([](const std::string& p) {
                                              nets::write_idx_labels(p, {1, 2, 3}, false);
                                            })));
}

void cifar_seeds() {
  const auto batch = [](int n, uint8_t label) {
    return via_file([&](const std::string& p) {
      nets::write_cifar_batch(p, Bytes(static_cast<size_t>(n), label), pixels(n * 3072u));
    });
  };
  put("cifar", "one-record", batch(1, 3));
  put("cifar", "two-records", batch(2, 9));
  const Bytes three = batch(3, 0);
  put("cifar", "three-records-gzip", via_file([&](const std::string& p) {
        // write_idx_* are the only gzip writers: reuse the label writer's gzip on raw bytes.
        gzFile f = gzopen(p.c_str(), "wb6");
        gzwrite(f, three.data(), static_cast<unsigned>(three.size()));
        gzclose(f);
      }));
  put("cifar", "truncated", Bytes(three.begin(), three.begin() + 3000));
  Bytes bad = batch(1, 3);
  bad[0] = 10;
  put("cifar", "label-out-of-range", bad);
}

void settings_seeds() {
  put("settings", "json-empty", text("\x00{}"));
  put("settings", "json-small",
      text(std::string(1, '\0') +
           R"({"nodes": 8, "topology": "torus:2x4", "algorithm": "choco", "compressor": "qsgd",
               "bits": 4, "lr": 0.1, "schedule": "iterations:10", "seed": 18446744073709551615})"));
  put("settings", "json-all-defaults", cat({0}, text(runtime::TrainConfig{}.to_json().dump(1))));
  put("settings", "json-bad-type", text(std::string(1, '\0') + R"({"nodes": "eight"})"));
  const auto args = [](std::vector<std::string> a) {
    std::string s(1, '\x01');
    for (size_t i = 0; i < a.size(); ++i) s += (i ? std::string(1, '\0') : "") + a[i];
    return text(s);
  };
  put("settings", "cli-small",
      args({"--nodes", "16", "--topology=exponential", "--compressor", "topk", "--density", "0.05",
            "--index-codec=block", "--nesterov", "--epochs=3", "--warmup-epochs", "1"}));
  put("settings", "cli-bad", args({"--nodes", "0", "--lr=-1", "stray"}));
  put("settings", "cli-help", args({"--help"}));
}

void topology_seeds() {
  std::ifstream in(fs::path(SPUSH_SOURCE_DIR) / "docs/examples/ring8.topo");
  put("topology", "ring8",
      Bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()});
  put("topology", "three-nodes",
      text("# a 3-node graph\n\n  nodes 3   # count\n0 1 0.25\n0 2 0.25\n1 2 1.0\r\n2 2 0.4\n"
           "2 0 6e-1\n"));
  put("topology", "one-node", text("nodes 1\n0 0 1\n"));
  put("topology", "huge-count", text("nodes 2000000000\n0 1 0.5\n"));
  put("topology", "duplicate-edge", text("nodes 2\n0 1 0.5\n0 1 0.5\n"));
  put("topology", "column-sum", text("nodes 2\n0 0 0.5\n0 1 0.4\n"));
}

void checkpoint_seeds() {
  runtime::Checkpoint ck;
  ck.meta["format"] = "spush-train-shard";
  ck.meta["epochs_done"] = 2;
  ck.meta["config"] = {{"nodes", 4}, {"lr", 0.05}};
  const std::vector<float> x{1.5f, -2.0f, 3.25f};
  ck.put_floats("algo/x", x.data(), 3);
  ck.put_bytes("empty", nullptr, 0);
  const Bytes good = runtime::serialize_checkpoint(ck);
  put("checkpoint", "shard", cat({0}, good));
  put("checkpoint", "shard-fix-crc", cat({1}, good));
  put("checkpoint", "empty", cat({0}, runtime::serialize_checkpoint(runtime::Checkpoint{})));
  Bytes bad_len = good;
  bad_len[12] = 0xff;  // metadata length far beyond the file; CRC rewritten by the harness
  put("checkpoint", "meta-length-fix-crc", cat({1}, bad_len));
}

void header_seeds() {
  runtime::MessageHeader h;
  h.kind = 1;
  h.codec = 17;
  h.src = 3;
  h.dst = 4;
  h.payload_bytes = 1200;
  h.round = 77;
  h.weight = 0.25f;
  h.u = 1.0f;
  Bytes b(sizeof(h));
  std::memcpy(b.data(), &h, sizeof(h));
  put("header", "valid-own-fields", cat(b, {0x0c, 0}));
  put("header", "src-mismatch", cat(b, {0x06, 1}));
  Bytes exp{1};
  const auto add = [&](const void* p, size_t n) {
    exp.insert(exp.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  };
  const uint64_t payload = h.payload_bytes;
  add(&h.round, 8), add(&h.kind, 2), add(&h.codec, 2), add(&h.src, 4), add(&h.dst, 4);
  add(&payload, 8);
  put("header", "valid-expectations", cat(b, exp));
  h.weight = 1.5f;
  std::memcpy(b.data(), &h, sizeof(h));
  put("header", "weight-above-one", cat(b, {0x0c, 0}));
}

// Codec cases: [kind, codec, bits byte, density index, nseg, lengths...] as
// fuzz_util.h read_codec_case reads them, with the spec they stand for.
struct Case {
  kernels::CompressorSpec spec;
  Bytes head;
  std::vector<int64_t> offsets;
};
Case codec_case(kernels::CompressorKind kind, kernels::IndexCodec codec, uint8_t bits_byte,
                uint8_t dens_index, std::vector<uint8_t> lens) {
  static constexpr double kDensity[] = {1.0, 0.5, 0.25, 0.125, 0.1, 0.07, 0.01, 1.0 / 64};
  static constexpr int kQsgdBits[] = {1, 2, 4, 8};
  Case c;
  c.spec.kind = kind;
  c.spec.index_codec = codec;
  c.spec.bits =
      kind == kernels::CompressorKind::kQsgd ? kQsgdBits[bits_byte % 4] : 2 + bits_byte % 8;
  c.spec.density = kDensity[dens_index];
  c.spec.seed = 5;
  c.head = {static_cast<uint8_t>(kind), static_cast<uint8_t>(codec), bits_byte, dens_index,
            static_cast<uint8_t>(lens.size())};
  c.head.insert(c.head.end(), lens.begin(), lens.end());
  c.offsets = {0};
  for (uint8_t l : lens) c.offsets.push_back(c.offsets.back() + l);
  return c;
}
Bytes encoded_row(const Case& c, uint32_t node) {
  const kernels::SegmentView segs{c.offsets.data(), static_cast<int>(c.offsets.size()) - 1};
  std::vector<float> x(static_cast<size_t>(segs.total()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919 + node) % 41) - 20.5f;
  kernels::Compressed comp;
  kernels::compress_ef_cpu(c.spec, segs, x.data(), nullptr, comp, node, 3);
  Bytes out;
  kernels::encode(c.spec, segs, comp, out);
  return out;
}

void codec_seeds() {
  using K = kernels::CompressorKind;
  using I = kernels::IndexCodec;
  const std::vector<uint8_t> lens{40, 0, 17, 100};
  int n = 0;
  for (K kind :
       {K::kIdentity, K::kTopK, K::kRandomK, K::kQsgd, K::kSign, K::kFractional, K::kMinMax8}) {
    const bool sparse = kernels::is_sparse(kind);
    for (I codec : {I::kRaw32, I::kLocal16, I::kBlockPosition}) {
      if (!sparse && codec != I::kRaw32) continue;
      const Case c = codec_case(kind, codec, 3, sparse ? 4 : 0, lens);
      const Bytes row = encoded_row(c, 1);
      const std::string name = fmt::format("{}-{}", kernels::to_string(kind),
                                           sparse ? kernels::to_string(codec) : "dense");
      put("codec", "decode-" + name, cat(cat({0}, c.head), row));
      // The same row twice for the row decoders: 2 rows, minimal pitch (shape byte 1).
      const size_t payload = row.size(), pitch = (payload + 3) / 4 * 4;
      Bytes wire(2 * pitch, 0);
      std::memcpy(wire.data(), row.data(), payload);
      const Bytes row2 = encoded_row(c, 2);
      std::memcpy(wire.data() + pitch, row2.data(), payload);
      put("wire_rows", "rows-" + name, cat(cat(c.head, {1}), wire));
      ++n;
    }
  }
  // decode_indices alone: counts given for raw32 / local16, written for block.
  for (I codec : {I::kRaw32, I::kLocal16, I::kBlockPosition}) {
    const Case c = codec_case(K::kTopK, codec, 0, 2, {16, 9});
    const kernels::SegmentView segs{c.offsets.data(), 2};
    const std::vector<int32_t> idx{1, 4, 5, 15, 16, 24};
    const std::vector<int64_t> counts{4, 2};
    Bytes out;
    kernels::encode_indices(codec, c.spec.density, segs, idx.data(), counts.data(), out);
    put("codec", fmt::format("indices-{}", kernels::to_string(codec)),
        cat(cat(cat({1}, c.head), {4, 2}), out));
  }
  fmt::print("codec: {} kind/codec pairs\n", n);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: {} CORPUS_DIR (e.g. fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  idx_seeds();
  cifar_seeds();
  settings_seeds();
  topology_seeds();
  checkpoint_seeds();
  header_seeds();
  codec_seeds();
  fmt::print("seeds written under {}\n", g_root.string());
  return 0;
}

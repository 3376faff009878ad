// The message header check, per-edge byte counting and the in-process (`local`) transport.
// A round serializes every message as a 40-byte header plus payload into one byte buffer per
// directed edge (as a network backend would put it on the wire), counts those bytes per edge,
// then each receiver reads the buffer of each in-neighbour's channel, parses the header with
// memcpy, validates it and hands the payload to the algorithm.
#include "spush/runtime/transport.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace spush::runtime {

static_assert(std::endian::native == std::endian::little,
              "the wire header is little-endian and is copied with memcpy");

void validate_header(const MessageHeader& h, uint64_t round, uint16_t kind, uint16_t codec,
                     uint32_t src, uint32_t dst, size_t payload_bytes) {
  auto fail = [&](const std::string& what) {
    throw TransportError(fmt::format("message {} -> {} (round {}): {}", src, dst, round, what));
  };
  if (h.magic != MessageHeader::kMagic) {
    fail(fmt::format("bad magic 0x{:08x}, expected 0x{:08x}", h.magic, MessageHeader::kMagic));
  }
  if (h.version != MessageHeader::kVersion) {
    fail(fmt::format("unsupported version {}, expected {}", h.version, MessageHeader::kVersion));
  }
  if (h.round != round) fail(fmt::format("header round is {}, expected {}", h.round, round));
  if (h.kind != kind) fail(fmt::format("header kind is {}, expected {}", h.kind, kind));
  if (h.codec != codec) fail(fmt::format("header codec is {}, expected {}", h.codec, codec));
  if (h.reserved != 0) fail(fmt::format("header reserved field is {}, expected 0", h.reserved));
  if (h.src != src) {
    fail(fmt::format("header src is {}, expected the in-neighbour {}", h.src, src));
  }
  if (h.dst != dst) fail(fmt::format("header dst is {}, expected {}", h.dst, dst));
  if (h.payload_bytes != payload_bytes) {
    fail(fmt::format("header payload length is {} bytes but {} bytes arrived", h.payload_bytes,
                     payload_bytes));
  }
  if (!std::isfinite(h.weight) || h.weight < 0 || h.weight > 1) {
    fail(fmt::format("mixing weight {} is not in [0, 1]", h.weight));
  }
  if (!std::isfinite(h.u)) fail(fmt::format("push-sum weight u = {} is not finite", h.u));
}

uint64_t ByteCounter::edge(int src, int dst) const {
  const auto it = edges_.find({src, dst});
  return it == edges_.end() ? 0 : it->second;
}

namespace {

constexpr size_t kHeaderBytes = sizeof(MessageHeader);

class LocalTransport final : public Transport {
 public:
  explicit LocalTransport(int nodes) : n_(nodes) {
    if (nodes < 1) {
      throw std::invalid_argument(
          fmt::format("make_local_transport: nodes must be >= 1, got {}", nodes));
    }
  }
  std::string name() const override { return "local"; }
  int world_nodes() const override { return n_; }
  int first_local() const override { return 0; }
  int local_nodes() const override { return n_; }

  std::vector<std::vector<Incoming>> exchange(const Graph& g, uint64_t round,
                                              const std::vector<Outgoing>& out) override;
  void allreduce_sum(float* data, int64_t n) override;

 private:
  // Index of edge (src -> dst) in g.edges(), which is sorted by (dst, src).
  static size_t edge_index(const Graph& g, int src, int dst);

  int n_;
  // One wire buffer per edge of the round's graph (index as in g.edges()); capacity is kept.
  std::vector<std::vector<uint8_t>> wire_;
  std::vector<char> filled_;
  std::vector<char> sent_;
  std::vector<double> sum_;
};

size_t LocalTransport::edge_index(const Graph& g, int src, int dst) {
  const std::vector<Edge>& e = g.edges();
  const auto it = std::lower_bound(e.begin(), e.end(), std::pair<int, int>{dst, src},
                                   [](const Edge& a, const std::pair<int, int>& key) {
                                     return std::pair<int, int>{a.dst, a.src} < key;
                                   });
  if (it == e.end() || it->src != src || it->dst != dst) {
    throw std::logic_error(
        fmt::format("local transport: edge {} -> {} not in graph '{}'", src, dst, g.name()));
  }
  return static_cast<size_t>(it - e.begin());
}

std::vector<std::vector<Incoming>> LocalTransport::exchange(const Graph& g, uint64_t round,
                                                            const std::vector<Outgoing>& out) {
  if (g.nodes() != n_) {
    throw std::invalid_argument(
        fmt::format("local transport: graph '{}' has {} nodes, the transport hosts {}", g.name(),
                    g.nodes(), n_));
  }
  // Every message of a round has the same kind and codec: that is what receivers expect.
  const uint16_t kind = out.empty() ? 0 : out.front().kind;
  const uint16_t codec = out.empty() ? 0 : out.front().codec;
  sent_.assign(static_cast<size_t>(n_), 0);
  for (const Outgoing& o : out) {
    if (o.node < 0 || o.node >= n_) {
      throw std::invalid_argument(
          fmt::format("local transport: sending node {} is outside [0, {})", o.node, n_));
    }
    if (sent_[o.node]) {
      throw std::invalid_argument(fmt::format(
          "local transport: node {} has two outgoing messages in round {}", o.node, round));
    }
    sent_[o.node] = 1;
    if (o.kind != kind || o.codec != codec) {
      throw std::invalid_argument(fmt::format(
          "local transport: node {} sends kind {} codec {} but this round uses kind {} codec {}",
          o.node, o.kind, o.codec, kind, codec));
    }
    if (o.payload.size() > std::numeric_limits<uint32_t>::max()) {
      throw std::invalid_argument(fmt::format(
          "local transport: node {} payload of {} bytes exceeds the 32-bit header length", o.node,
          o.payload.size()));
    }
  }

  // Send: serialize header + payload into the wire buffer of each out-edge.
  const size_t nedges = g.edges().size();
  if (wire_.size() < nedges) wire_.resize(nedges);
  filled_.assign(nedges, 0);
  for (const Outgoing& o : out) {
    for (const Edge& e : g.out_edges(o.node)) {
      if (e.dst == o.node) continue;
      MessageHeader h;
      h.kind = o.kind;
      h.codec = o.codec;
      h.src = static_cast<uint32_t>(o.node);
      h.dst = static_cast<uint32_t>(e.dst);
      h.payload_bytes = static_cast<uint32_t>(o.payload.size());
      h.round = round;
      h.weight = static_cast<float>(e.weight);
      h.u = o.u;
      const size_t k = edge_index(g, o.node, e.dst);
      std::vector<uint8_t>& buf = wire_[k];
      buf.resize(kHeaderBytes + o.payload.size());
      std::memcpy(buf.data(), &h, kHeaderBytes);
      if (!o.payload.empty()) {
        std::memcpy(buf.data() + kHeaderBytes, o.payload.data(), o.payload.size());
      }
      filled_[k] = 1;
      bytes_.add(o.node, e.dst, buf.size());
    }
  }

  // Receive: each node reads the channel of each in-neighbour (sorted by src) and validates.
  std::vector<std::vector<Incoming>> in(static_cast<size_t>(n_));
  for (int dst = 0; dst < n_; ++dst) {
    const std::vector<Edge>& ins = g.in_edges(dst);
    in[dst].reserve(ins.size());
    for (const Edge& e : ins) {
      if (e.src == dst) continue;
      const size_t k = edge_index(g, e.src, dst);
      if (!filled_[k]) {
        throw TransportError(fmt::format(
            "local transport: node {} expected a message from its in-neighbour {} in round {}, "
            "none was sent",
            dst, e.src, round));
      }
      const std::vector<uint8_t>& buf = wire_[k];
      if (buf.size() < kHeaderBytes) {
        throw TransportError(fmt::format(
            "local transport: message {} -> {} of {} bytes is shorter than the {}-byte header",
            e.src, dst, buf.size(), kHeaderBytes));
      }
      MessageHeader h;
      std::memcpy(&h, buf.data(), kHeaderBytes);
      validate_header(h, round, kind, codec, static_cast<uint32_t>(e.src),
                      static_cast<uint32_t>(dst), buf.size() - kHeaderBytes);
      Incoming msg;
      msg.src = static_cast<int>(h.src);
      msg.dst = static_cast<int>(h.dst);
      msg.weight = h.weight;
      msg.u = h.u;
      msg.payload.assign(buf.begin() + kHeaderBytes, buf.end());
      in[dst].push_back(std::move(msg));
    }
  }
  return in;
}

void LocalTransport::allreduce_sum(float* data, int64_t n) {
  if (n < 0) {
    throw std::invalid_argument(fmt::format("local transport allreduce_sum: n = {} < 0", n));
  }
  if (n > 0 && data == nullptr) {
    throw std::invalid_argument("local transport allreduce_sum: data is null");
  }
  // Row order is fixed and the sum is taken in double: deterministic and accurate.
  sum_.assign(static_cast<size_t>(n), 0.0);
  for (int r = 0; r < n_; ++r) {
    const float* row = data + static_cast<int64_t>(r) * n;
    for (int64_t k = 0; k < n; ++k) sum_[k] += row[k];
  }
  for (int r = 0; r < n_; ++r) {
    float* row = data + static_cast<int64_t>(r) * n;
    for (int64_t k = 0; k < n; ++k) row[k] = static_cast<float>(sum_[k]);
  }
}

}  // namespace

std::unique_ptr<Transport> make_local_transport(int nodes) {
  return std::make_unique<LocalTransport>(nodes);
}

DeviceLocalTransport::DeviceLocalTransport(int nodes) : n_(nodes) {
  if (nodes < 1) {
    throw std::invalid_argument(
        fmt::format("device local transport: nodes must be >= 1, got {}", nodes));
  }
}

std::vector<std::vector<DeviceIncoming>> DeviceLocalTransport::exchange(
    const Graph& g, uint64_t round, uint16_t kind, uint16_t codec, const float* u,
    const uint8_t* wire, size_t pitch, size_t payload_bytes) {
  if (g.nodes() != n_) {
    throw std::invalid_argument(
        fmt::format("device local transport: graph '{}' has {} nodes, the transport hosts {}",
                    g.name(), g.nodes(), n_));
  }
  if (payload_bytes > std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument(
        fmt::format("device local transport: payload of {} bytes exceeds the 32-bit header length",
                    payload_bytes));
  }
  if (pitch < payload_bytes || (payload_bytes > 0 && wire == nullptr) || u == nullptr) {
    throw std::invalid_argument(fmt::format(
        "device local transport: need a wire matrix with pitch >= {} bytes (got {}, wire {}) "
        "and push-sum weights",
        payload_bytes, pitch, wire ? "set" : "null"));
  }
  // Send: the header of every edge goes into its channel; the payload stays in the wire row.
  const std::vector<Edge>& edges = g.edges();
  channel_.resize(edges.size());
  filled_.assign(edges.size(), 0);
  for (size_t k = 0; k < edges.size(); ++k) {
    const Edge& e = edges[k];
    if (e.src == e.dst) continue;
    MessageHeader& h = channel_[k];
    h = MessageHeader{};
    h.kind = kind;
    h.codec = codec;
    h.src = static_cast<uint32_t>(e.src);
    h.dst = static_cast<uint32_t>(e.dst);
    h.payload_bytes = static_cast<uint32_t>(payload_bytes);
    h.round = round;
    h.weight = static_cast<float>(e.weight);
    h.u = u[e.src];
    filled_[k] = 1;
    bytes_.add(e.src, e.dst, kHeaderBytes + payload_bytes);
  }
  // Receive: g.edges() is sorted by (dst, src), so each inbox comes out sorted by src.
  std::vector<std::vector<DeviceIncoming>> in(static_cast<size_t>(n_));
  for (size_t k = 0; k < edges.size(); ++k) {
    const Edge& e = edges[k];
    if (e.src == e.dst) continue;
    if (!filled_[k]) {
      throw TransportError(fmt::format(
          "device local transport: node {} expected a message from {} in round {}, none was sent",
          e.dst, e.src, round));
    }
    MessageHeader h;
    std::memcpy(&h, &channel_[k], kHeaderBytes);
    validate_header(h, round, kind, codec, static_cast<uint32_t>(e.src),
                    static_cast<uint32_t>(e.dst), payload_bytes);
    DeviceIncoming m;
    m.src = static_cast<int>(h.src);
    m.dst = static_cast<int>(h.dst);
    m.weight = h.weight;
    m.u = h.u;
    m.payload = wire + static_cast<size_t>(h.src) * pitch;
    m.payload_bytes = h.payload_bytes;
    in[e.dst].push_back(m);
  }
  return in;
}

}  // namespace spush::runtime

// Local transport: delivery along the out-edges of a round's graph with the sender's weights
// and u, per-edge byte counts (40-byte header + payload), header validation (every field),
// error paths, and the all-reduce sum. References are brute force over the graph's edge list.
#include "spush/runtime/transport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace spush::runtime {
namespace {

// Payload of node i in a round: distinct length and bytes per sender (and per round).
std::vector<uint8_t> payload_of(int node, uint64_t round) {
  const size_t len = static_cast<size_t>(3 * node + 1 + round % 2);
  std::vector<uint8_t> p;
  for (size_t k = 0; k < len; ++k) p.push_back(static_cast<uint8_t>(17 * node + 5 * k + round));
  return p;
}

std::vector<Outgoing> outgoing_all(int n, uint64_t round, uint16_t kind, uint16_t codec) {
  std::vector<Outgoing> out;
  for (int i = n - 1; i >= 0; --i) {  // any order is allowed
    Outgoing o;
    o.node = i;
    o.kind = kind;
    o.codec = codec;
    o.u = 0.5f + 0.25f * static_cast<float>(i);
    o.payload = payload_of(i, round);
    out.push_back(o);
  }
  return out;
}

// A hand-built directed graph with unequal, column-stochastic weights (P[dst][src]).
Graph hand_graph() {
  std::vector<Edge> e = {
      {0, 0, 0.5},  {0, 1, 0.3},  {0, 3, 0.2},               // node 0 keeps 1/2
      {1, 1, 0.25}, {1, 2, 0.75},                            //
      {2, 2, 0.4},  {2, 0, 0.2},  {2, 3, 0.2}, {2, 4, 0.2},  //
      {3, 3, 1.0},                                           // node 3 sends nothing
      {4, 4, 0.6},  {4, 0, 0.4},
  };
  return Graph(5, e, "hand");
}

void check_round(const Graph& g, Transport& t, uint64_t round) {
  const int n = g.nodes();
  const auto out = outgoing_all(n, round, 1, 33);
  const auto in = t.exchange(g, round, out);
  ASSERT_EQ(static_cast<int>(in.size()), n);
  for (int dst = 0; dst < n; ++dst) {
    // Brute force: every edge src -> dst with src != dst, ascending src.
    std::vector<Edge> want;
    for (int src = 0; src < n; ++src) {
      for (const Edge& e : g.edges()) {
        if (e.src == src && e.dst == dst && src != dst) want.push_back(e);
      }
    }
    ASSERT_EQ(in[dst].size(), want.size()) << "graph " << g.name() << " node " << dst;
    for (size_t k = 0; k < want.size(); ++k) {
      const Incoming& m = in[dst][k];
      EXPECT_EQ(m.src, want[k].src);
      EXPECT_EQ(m.dst, dst);
      EXPECT_EQ(m.weight, static_cast<float>(want[k].weight));
      EXPECT_EQ(m.u, 0.5f + 0.25f * static_cast<float>(want[k].src));
      EXPECT_EQ(m.payload, payload_of(want[k].src, round));
    }
  }
}

TEST(LocalTransport, DeliversExactlyTheOutNeighbourMessages) {
  for (const Graph& g : {hand_graph(), directed_ring(6), bidirectional_ring(5), torus(3, 4),
                         fully_connected(4), rotating_ring4(2)}) {
    g.validate();
    auto t = make_local_transport(g.nodes());
    EXPECT_EQ(t->name(), "local");
    EXPECT_EQ(t->world_nodes(), g.nodes());
    EXPECT_EQ(t->first_local(), 0);
    EXPECT_EQ(t->local_nodes(), g.nodes());
    for (uint64_t round = 0; round < 3; ++round) check_round(g, *t, round);
  }
}

TEST(LocalTransport, CountsHeaderPlusPayloadPerEdge) {
  const Graph g = hand_graph();
  auto t = make_local_transport(5);
  const int rounds = 3;
  for (int r = 0; r < rounds; ++r) t->exchange(g, r, outgoing_all(5, r, 2, 7));
  uint64_t total = 0;
  for (int src = 0; src < 5; ++src) {
    for (int dst = 0; dst < 5; ++dst) {
      bool edge = false;
      for (const Edge& e : g.edges()) edge |= e.src == src && e.dst == dst && src != dst;
      uint64_t want = 0;
      if (edge) {
        for (int r = 0; r < rounds; ++r) want += 40 + payload_of(src, r).size();
      }
      EXPECT_EQ(t->bytes().edge(src, dst), want) << src << " -> " << dst;
      total += want;
    }
  }
  EXPECT_EQ(t->bytes().total(), total);
  EXPECT_EQ(t->bytes().edges().size(), 7u);  // non-self edges of hand_graph()
  t->bytes().reset();
  EXPECT_EQ(t->bytes().total(), 0u);
  EXPECT_EQ(t->bytes().edge(0, 1), 0u);
}

TEST(LocalTransport, EmptyPayloadStillCarriesTheHeader) {
  const Graph g = directed_ring(3);
  auto t = make_local_transport(3);
  std::vector<Outgoing> out(3);
  for (int i = 0; i < 3; ++i) out[i].node = i;
  const auto in = t->exchange(g, 9, out);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(in[i].size(), 1u);
    EXPECT_TRUE(in[i][0].payload.empty());
    EXPECT_EQ(t->bytes().edge(i, (i + 1) % 3), 40u);
  }
}

TEST(LocalTransport, RejectsBadRounds) {
  const Graph g = directed_ring(4);
  auto t = make_local_transport(4);
  auto out = outgoing_all(4, 0, 1, 0);
  // A node that has out-neighbours but sends nothing: its receiver is left waiting.
  auto missing = out;
  missing.erase(missing.begin());
  EXPECT_THROW(t->exchange(g, 0, missing), TransportError);
  auto dup = out;
  dup.push_back(out.front());
  EXPECT_THROW(t->exchange(g, 0, dup), std::invalid_argument);
  auto mixed = out;
  mixed[1].codec = 5;
  EXPECT_THROW(t->exchange(g, 0, mixed), std::invalid_argument);
  auto outside = out;
  outside[0].node = 4;
  EXPECT_THROW(t->exchange(g, 0, outside), std::invalid_argument);
  EXPECT_THROW(t->exchange(directed_ring(5), 0, out), std::invalid_argument);
  EXPECT_THROW(make_local_transport(0), std::invalid_argument);
}

TEST(MessageHeader, IsLittleEndianFortyBytes) {
  MessageHeader h;
  h.kind = 2;
  h.codec = 0x31;
  h.src = 7;
  h.dst = 9;
  h.payload_bytes = 1234;
  h.round = 0x0102030405060708ull;
  h.weight = 0.25f;
  h.u = 1.5f;
  uint8_t b[40];
  std::memcpy(b, &h, 40);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b), 4), "SPSH");
  EXPECT_EQ(b[4], 1);  // version
  EXPECT_EQ(b[6], 2);  // kind
  EXPECT_EQ(b[8], 0x31);
  EXPECT_EQ(b[12], 7);
  EXPECT_EQ(b[16], 9);
  EXPECT_EQ(b[20] | (b[21] << 8), 1234);
  EXPECT_EQ(b[24], 0x08);
  EXPECT_EQ(b[31], 0x01);
  float w, u;
  std::memcpy(&w, b + 32, 4);
  std::memcpy(&u, b + 36, 4);
  EXPECT_EQ(w, 0.25f);
  EXPECT_EQ(u, 1.5f);
}

TEST(MessageHeader, ValidateRejectsEveryCorruptedField) {
  MessageHeader good;
  good.kind = 1;
  good.codec = 17;
  good.src = 3;
  good.dst = 4;
  good.payload_bytes = 100;
  good.round = 12;
  good.weight = 0.5f;
  good.u = 0.75f;
  auto check = [&](const MessageHeader& h) { validate_header(h, 12, 1, 17, 3, 4, 100); };
  EXPECT_NO_THROW(check(good));

  struct Case {
    const char* what;  // substring the error must contain
    void (*corrupt)(MessageHeader&);
  };
  const Case cases[] = {
      {"magic", [](MessageHeader& h) { h.magic ^= 1; }},
      {"version", [](MessageHeader& h) { h.version = 2; }},
      {"round", [](MessageHeader& h) { h.round = 11; }},
      {"kind", [](MessageHeader& h) { h.kind = 2; }},
      {"codec", [](MessageHeader& h) { h.codec = 16; }},
      {"reserved", [](MessageHeader& h) { h.reserved = 1; }},
      {"src", [](MessageHeader& h) { h.src = 2; }},  // not the in-neighbour expected
      {"dst", [](MessageHeader& h) { h.dst = 5; }},
      {"length", [](MessageHeader& h) { h.payload_bytes = 99; }},
      {"weight", [](MessageHeader& h) { h.weight = std::nanf(""); }},
      {"weight", [](MessageHeader& h) { h.weight = -0.1f; }},
      {"u", [](MessageHeader& h) { h.u = INFINITY; }},
  };
  for (const Case& c : cases) {
    MessageHeader h = good;
    c.corrupt(h);
    try {
      check(h);
      ADD_FAILURE() << "corrupted " << c.what << " was accepted";
    } catch (const TransportError& e) {
      EXPECT_NE(std::string(e.what()).find(c.what), std::string::npos) << e.what();
    }
  }
  // Wrong length seen from the other side: the header is right but fewer bytes arrived.
  EXPECT_THROW(validate_header(good, 12, 1, 17, 3, 4, 101), TransportError);
}

TEST(LocalTransport, AllreduceSumsRows) {
  const int nodes = 5;
  const int64_t n = 37;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-2, 2);
  std::vector<float> data(nodes * n);
  for (float& v : data) v = dist(rng);
  std::vector<double> want(n, 0.0);
  for (int r = 0; r < nodes; ++r)
    for (int64_t k = 0; k < n; ++k) want[k] += data[r * n + k];
  auto t = make_local_transport(nodes);
  t->allreduce_sum(data.data(), n);
  for (int r = 0; r < nodes; ++r)
    for (int64_t k = 0; k < n; ++k)
      EXPECT_NEAR(data[r * n + k], want[k], 1e-6 * (1 + std::fabs(want[k]))) << r << "," << k;
  // Identical rows after the call.
  for (int r = 1; r < nodes; ++r)
    EXPECT_EQ(std::memcmp(&data[0], &data[r * n], n * sizeof(float)), 0);
  t->allreduce_sum(data.data(), 0);  // no-op
  EXPECT_THROW(t->allreduce_sum(data.data(), -1), std::invalid_argument);
}

}  // namespace
// The device-memory transport delivers what the host one does (same senders, weights, u,
// byte counts per edge) and points each message at its sender's wire row.
TEST(DeviceLocalTransport, MatchesTheHostTransport) {
  for (const Graph& g : {hand_graph(), directed_ring(6), bidirectional_ring(5), torus(3, 4),
                         fully_connected(4), rotating_ring4(1)}) {
    const int n = g.nodes();
    DeviceLocalTransport dt(n);
    EXPECT_EQ(dt.world_nodes(), n);
    EXPECT_EQ(dt.first_local(), 0);
    EXPECT_EQ(dt.local_nodes(), n);
    auto host = make_local_transport(n);
    const size_t payload = 13, pitch = 16;
    std::vector<uint8_t> wire(n * pitch);  // stands in for device memory: never dereferenced
    std::vector<float> u;
    for (int i = 0; i < n; ++i) u.push_back(0.5f + 0.25f * static_cast<float>(i));
    for (uint64_t round = 0; round < 3; ++round) {
      std::vector<Outgoing> out = outgoing_all(n, round, 1, 33);
      for (Outgoing& o : out) o.payload.assign(payload, 0);
      const auto want = host->exchange(g, round, out);
      const auto got = dt.exchange(g, round, 1, 33, u.data(), wire.data(), pitch, payload);
      ASSERT_EQ(got.size(), want.size());
      for (int dst = 0; dst < n; ++dst) {
        ASSERT_EQ(got[dst].size(), want[dst].size()) << g.name() << " node " << dst;
        for (size_t k = 0; k < want[dst].size(); ++k) {
          const DeviceIncoming& m = got[dst][k];
          EXPECT_EQ(m.src, want[dst][k].src);
          EXPECT_EQ(m.dst, dst);
          EXPECT_EQ(m.weight, want[dst][k].weight);
          EXPECT_EQ(m.u, want[dst][k].u);
          EXPECT_EQ(m.payload, wire.data() + static_cast<size_t>(m.src) * pitch);
          EXPECT_EQ(m.payload_bytes, payload);
        }
      }
    }
    EXPECT_EQ(dt.bytes().total(), host->bytes().total()) << g.name();
    EXPECT_EQ(dt.bytes().edges(), host->bytes().edges()) << g.name();
  }
}

TEST(DeviceLocalTransport, RejectsBadRounds) {
  EXPECT_THROW({ DeviceLocalTransport none(0); }, std::invalid_argument);
  DeviceLocalTransport dt(4);
  std::vector<uint8_t> wire(64);
  const std::vector<float> u(4, 1.0f);
  EXPECT_THROW(dt.exchange(directed_ring(5), 0, 1, 0, u.data(), wire.data(), 16, 8),
               std::invalid_argument);  // graph of another size
  EXPECT_THROW(dt.exchange(directed_ring(4), 0, 1, 0, u.data(), wire.data(), 4, 8),
               std::invalid_argument);  // pitch smaller than the payload
  EXPECT_THROW(dt.exchange(directed_ring(4), 0, 1, 0, nullptr, wire.data(), 16, 8),
               std::invalid_argument);  // no push-sum weights
  const std::vector<float> bad_u = {1.0f, NAN, 1.0f, 1.0f};
  EXPECT_THROW(dt.exchange(directed_ring(4), 0, 1, 0, bad_u.data(), wire.data(), 16, 8),
               TransportError);  // the header check on receipt
  // As on the host transport, what was sent is counted even though a receiver rejected it.
  EXPECT_EQ(dt.bytes().total(), 4u * (40u + 8u));
}

}  // namespace spush::runtime

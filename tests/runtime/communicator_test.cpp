// The communicator (runtime/communicator.h): the local implementation delivers exactly the
// out-neighbour messages of a round with the sender's weights and u, counts header + payload
// per edge, validates every header field; the node split over ranks; the node-order
// reductions. The round logic for messages between ranks is exercised without MPI by an
// in-process implementation (ThreadComm: one thread per rank, FIFO mailboxes between ranks),
// with which the gossip engine on 1, 2 and 3 ranks gives the same bits per node.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine_util.h"
#include "thread_comm.h"
#include "spush/runtime/communicator.h"

namespace spush::runtime {
namespace {

using test::Hub;
using test::on_ranks;
using test::ThreadComm;

// Payload of node i in a round: distinct bytes per sender and round.
std::vector<uint8_t> payload_of(int node, uint64_t round, size_t len) {
  std::vector<uint8_t> p;
  for (size_t k = 0; k < len; ++k) p.push_back(static_cast<uint8_t>(17 * node + 5 * k + round));
  return p;
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

// The send matrix of a round: row r = payload of local node first + r.
struct Sent {
  std::vector<uint8_t> rows;
  std::vector<uint8_t> recv;
  std::vector<float> u;
  RoundMessages msg;
  Sent(const Communicator& c, const Graph& g, uint64_t round, size_t len, size_t pitch) {
    const int local = c.local_nodes(), first = c.first_local();
    rows.assign(static_cast<size_t>(local) * pitch, 0);
    for (int r = 0; r < local; ++r) {
      const auto p = payload_of(first + r, round, len);
      std::copy(p.begin(), p.end(), rows.begin() + r * pitch);
      u.push_back(0.5f + 0.25f * static_cast<float>(first + r));
    }
    const size_t remote = c.remote_in_edges(g);
    recv.assign(std::max<size_t>(remote, 1) * pitch, 0);
    msg.round = round;
    msg.kind = MessageKind::kModel;
    msg.codec = 33;
    msg.u = u.data();
    msg.send = rows.data();
    msg.payload_bytes = len;
    msg.pitch = pitch;
    msg.recv = recv.data();
    msg.recv_rows = remote;
  }
  const uint8_t* payload(const Communicator& c, const Incoming& m) const {
    return m.row < c.local_nodes() ? rows.data() + m.row * msg.pitch
                                   : recv.data() + (m.row - c.local_nodes()) * msg.pitch;
  }
};

// Checks the inboxes of c's local nodes against a brute force over g's edge list.
void check_inbox(const Communicator& c, const Graph& g, const Inbox& in, const Sent& s,
                 uint64_t round) {
  ASSERT_EQ(static_cast<int>(in.size()), c.local_nodes());
  for (int r = 0; r < c.local_nodes(); ++r) {
    const int dst = c.first_local() + r;
    std::vector<Edge> want;
    for (int src = 0; src < g.nodes(); ++src)
      for (const Edge& e : g.edges())
        if (e.src == src && e.dst == dst && src != dst) want.push_back(e);
    ASSERT_EQ(in[r].size(), want.size()) << "graph " << g.name() << " node " << dst;
    for (size_t k = 0; k < want.size(); ++k) {
      const Incoming& m = in[r][k];
      EXPECT_EQ(m.src, want[k].src);
      EXPECT_EQ(m.dst, dst);
      EXPECT_EQ(m.weight, static_cast<float>(want[k].weight));
      EXPECT_EQ(m.u, 0.5f + 0.25f * static_cast<float>(want[k].src));
      const auto p = payload_of(m.src, round, s.msg.payload_bytes);
      EXPECT_EQ(std::memcmp(s.payload(c, m), p.data(), p.size()), 0)
          << m.src << " -> " << dst << " round " << round;
    }
  }
}

TEST(LocalCommunicator, DeliversExactlyTheOutNeighbourMessages) {
  for (const Graph& g : {hand_graph(), directed_ring(6), bidirectional_ring(5), torus(3, 4),
                         fully_connected(4), rotating_ring4(2)}) {
    g.validate();
    auto c = make_local_communicator(g.nodes());
    EXPECT_EQ(c->name(), "local");
    EXPECT_EQ(c->world_nodes(), g.nodes());
    EXPECT_EQ(c->ranks(), 1);
    EXPECT_EQ(c->first_local(), 0);
    EXPECT_EQ(c->local_nodes(), g.nodes());
    EXPECT_EQ(c->remote_in_edges(g), 0u);
    for (uint64_t round = 0; round < 3; ++round) {
      Sent s(*c, g, round, 5 + round, 8);
      check_inbox(*c, g, c->exchange(g, s.msg), s, round);
    }
  }
}

TEST(LocalCommunicator, CountsHeaderPlusPayloadPerEdgeAndShowsRoundsToTheObserver) {
  const Graph g = hand_graph();
  auto c = make_local_communicator(5);
  int observed = 0;
  c->set_observer([&](const Graph& og, const RoundMessages& m) {
    EXPECT_EQ(&og, &g);
    EXPECT_EQ(m.round, static_cast<uint64_t>(observed));
    ++observed;
  });
  const int rounds = 3;
  for (int r = 0; r < rounds; ++r) {
    Sent s(*c, g, r, 10 + r, 16);
    c->exchange(g, s.msg);
  }
  EXPECT_EQ(observed, rounds);
  uint64_t total = 0;
  for (int src = 0; src < 5; ++src) {
    for (int dst = 0; dst < 5; ++dst) {
      bool edge = false;
      for (const Edge& e : g.edges()) edge |= e.src == src && e.dst == dst && src != dst;
      uint64_t want = 0;
      if (edge)
        for (int r = 0; r < rounds; ++r) want += 40 + 10 + r;
      EXPECT_EQ(c->bytes().edge(src, dst), want) << src << " -> " << dst;
      total += want;
    }
  }
  EXPECT_EQ(c->bytes().total(), total);
  EXPECT_EQ(c->bytes().edges().size(), 7u);  // non-self edges of hand_graph()
  c->bytes().reset();
  EXPECT_EQ(c->bytes().total(), 0u);
}

TEST(LocalCommunicator, RejectsBadRounds) {
  auto c = make_local_communicator(4);
  const Graph g = directed_ring(4);
  Sent s(*c, g, 0, 8, 8);
  EXPECT_THROW(c->exchange(directed_ring(5), s.msg), std::invalid_argument);
  RoundMessages m = s.msg;
  m.pitch = 4;  // smaller than the payload
  EXPECT_THROW(c->exchange(g, m), std::invalid_argument);
  m = s.msg;
  m.u = nullptr;
  EXPECT_THROW(c->exchange(g, m), std::invalid_argument);
  std::vector<float> bad_u = {1.0f, NAN, 1.0f, 1.0f};
  m = s.msg;
  m.u = bad_u.data();
  EXPECT_THROW(c->exchange(g, m), CommError);  // the header check on receipt
  // What was sent is counted even though a receiver rejected it.
  EXPECT_EQ(c->bytes().total(), 4u * (40u + 8u));
  EXPECT_THROW(c->finish_round(), std::logic_error);
  EXPECT_THROW(make_local_communicator(0), std::invalid_argument);
  EXPECT_THROW(make_communicator("carrier-pigeon", 4), std::invalid_argument);
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
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find(c.what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("3 -> 4"), std::string::npos) << e.what();
    }
  }
  // Wrong length seen from the other side: the header is right but more bytes arrived.
  EXPECT_THROW(validate_header(good, 12, 1, 17, 3, 4, 101), CommError);
}

// ---- several ranks in one process -----------------------------------------------------------

TEST(Communicator, SplitsNodesEvenlyInRankOrder) {
  for (int nodes : {1, 2, 5, 7, 16, 33}) {
    for (int ranks = 1; ranks <= std::min(nodes, 6); ++ranks) {
      Hub hub(ranks);
      int covered = 0;
      for (int r = 0; r < ranks; ++r) {
        ThreadComm c(hub, nodes, r);
        EXPECT_EQ(c.first_local(), covered);
        EXPECT_GE(c.local_nodes(), nodes / ranks);
        EXPECT_LE(c.local_nodes(), nodes / ranks + 1);
        for (int i = c.first_local(); i < c.first_local() + c.local_nodes(); ++i)
          EXPECT_EQ(c.rank_of(i), r) << nodes << " nodes, " << ranks << " ranks";
        covered += c.local_nodes();
      }
      EXPECT_EQ(covered, nodes);
    }
  }
  Hub hub(3);
  EXPECT_THROW(ThreadComm(hub, 2, 0), std::invalid_argument);  // fewer nodes than ranks
}

TEST(Communicator, RoundsAcrossRanksDeliverWhatOneRankDelivers) {
  for (const Graph& g : {hand_graph(), torus(3, 3), fully_connected(5), rotating_ring4(1)}) {
    for (int ranks : {2, 3}) {
      SCOPED_TRACE(::testing::Message() << g.name() << " on " << ranks << " ranks");
      std::vector<std::map<std::pair<int, int>, uint64_t>> counts(ranks);
      on_ranks(ranks, g.nodes(), [&](Communicator& c) {
        for (uint64_t round = 0; round < 3; ++round) {
          Sent s(c, g, round, 6 + round, 12);
          check_inbox(c, g, c.exchange(g, s.msg), s, round);
        }
        counts[c.rank()] = c.bytes().edges();
      });
      auto local = make_local_communicator(g.nodes());
      for (uint64_t round = 0; round < 3; ++round) {
        Sent s(*local, g, round, 6 + round, 12);
        local->exchange(g, s.msg);
      }
      std::map<std::pair<int, int>, uint64_t> merged;
      for (const auto& m : counts) merged.insert(m.begin(), m.end());  // each edge: its sender
      EXPECT_EQ(merged, local->bytes().edges());
    }
  }
}

TEST(Communicator, NodeOrderReductionsDoNotDependOnTheRanks) {
  const int nodes = 7, width = 5;
  auto value = [](int node, int k) { return std::sin(1.0 + node * 7.3 + k) * std::pow(10.0, k); };
  std::vector<double> want(width, 0.0);
  for (int i = 0; i < nodes; ++i)
    for (int k = 0; k < width; ++k) want[k] += value(i, k);
  for (int ranks : {1, 2, 3, 7}) {
    on_ranks(ranks, nodes, [&](Communicator& c) {
      std::vector<double> rows(static_cast<size_t>(c.local_nodes()) * width);
      for (int r = 0; r < c.local_nodes(); ++r)
        for (int k = 0; k < width; ++k) rows[r * width + k] = value(c.first_local() + r, k);
      c.allreduce_sum(rows.data(), width);
      for (int r = 0; r < c.local_nodes(); ++r)
        for (int k = 0; k < width; ++k)
          EXPECT_EQ(rows[r * width + k], want[k]) << "bits differ with " << ranks << " ranks";
      std::vector<double> mine(static_cast<size_t>(c.local_nodes()));
      for (int r = 0; r < c.local_nodes(); ++r) mine[r] = value(c.first_local() + r, 2);
      EXPECT_EQ(c.sum_over_nodes(mine.data()), want[2]);
      EXPECT_EQ(c.sum_over_ranks(1.0), ranks);
      double b = c.rank() == 0 ? 42.0 : -1.0;
      c.broadcast(&b, sizeof(b), 0);
      EXPECT_EQ(b, 42.0);
      EXPECT_EQ(c.agree(""), "");
      const std::string err = c.agree(c.rank() == ranks - 1 ? "disk full" : "");
      EXPECT_EQ(err, ranks == 1 ? "disk full" : "rank " + std::to_string(ranks - 1) + ": disk full");
    });
  }
}

// The engine on 1, 2 and 3 ranks: the same bits for every node and the same bytes per edge.
TEST(Communicator, EngineGivesTheSameBitsOnAnyNumberOfRanks) {
  nets::Layout layout;
  for (int64_t s : {int64_t{300}, int64_t{17}, int64_t{1000}}) layout.add("l" + std::to_string(s), {s});
  struct Case {
    AlgorithmKind kind;
    kernels::CompressorKind compressor;
    const char* topology;
  };
  const Case cases[] = {
      {AlgorithmKind::kSparsePush, kernels::CompressorKind::kTopK, "ring"},
      {AlgorithmKind::kSparsePush, kernels::CompressorKind::kQsgd, "torus"},
      {AlgorithmKind::kSgp, kernels::CompressorKind::kIdentity, "exponential"},
      {AlgorithmKind::kChoco, kernels::CompressorKind::kTopK, "bidir-ring"},
      {AlgorithmKind::kChoco, kernels::CompressorKind::kTopK, "ring,bidir-ring"},
      {AlgorithmKind::kScsp, kernels::CompressorKind::kTopK, "full"},
  };
  const int nodes = 8;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << to_string(c.kind) << " " << c.topology);
    const Schedule schedule = make_schedule(
        {.name = c.topology, .nodes = nodes, .period = 4, .unit = PeriodUnit::kIterations});
    AlgorithmSpec spec;
    spec.kind = c.kind;
    spec.compressor.kind = c.compressor;
    spec.compressor.density = 0.05;
    spec.compressor.bits = 4;
    spec.eta = 0.3;
    std::mt19937 rng(9);
    std::normal_distribution<float> dist;
    nets::NodeMatrix x0(nodes, layout.size());
    for (int i = 0; i < nodes; ++i)
      for (int64_t k = 0; k < layout.size(); ++k) x0.row(i)[k] = dist(rng);
    std::map<int, nets::NodeMatrix> results;  // ranks -> x of every node
    std::map<int, std::map<std::pair<int, int>, uint64_t>> bytes;
    for (int ranks : {1, 2, 3}) {
      nets::NodeMatrix all(nodes, layout.size());
      std::map<std::pair<int, int>, uint64_t> edges;
      std::mutex mu;
      on_ranks(ranks, nodes, [&](Communicator& comm) {
        auto backend = kernels::make_cpu_backend();
        auto algo = make_algorithm(spec, layout, schedule, *backend, comm);
        nets::NodeMatrix mine(comm.local_nodes(), layout.size());
        for (int r = 0; r < comm.local_nodes(); ++r)
          std::copy_n(x0.row(comm.first_local() + r), layout.size(), mine.row(r));
        algo->init(mine);
        for (int t = 0; t < 30; ++t) algo->communicate(t, 0);
        algo->gossip_rounds(3, 30, 0);
        std::lock_guard lock(mu);
        for (int r = 0; r < comm.local_nodes(); ++r)
          std::copy_n(algo->z().row(r), layout.size(), all.row(comm.first_local() + r));
        edges.insert(comm.bytes().edges().begin(), comm.bytes().edges().end());
      });
      results.emplace(ranks, all);
      bytes.emplace(ranks, edges);
    }
    for (int ranks : {2, 3}) {
      EXPECT_EQ(std::memcmp(results.at(1).data(), results.at(ranks).data(),
                            sizeof(float) * nodes * results.at(1).ld()),
                0)
          << "z differs on " << ranks << " ranks";
      EXPECT_EQ(bytes.at(1), bytes.at(ranks)) << "byte counts differ on " << ranks << " ranks";
    }
  }
}

}  // namespace
}  // namespace spush::runtime

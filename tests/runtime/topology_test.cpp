// Topology layer: generators against brute-force neighbour sets and the literal matrices of
// [SP, Fig. 5] (docs/ALGORITHMS.md §1), validation errors, edge-list files, schedule rotation,
// union connectivity, random link failures (rate, column sums, determinism), doubly-stochastic
// detection, and a plain push-sum run on the time-varying rings4-3 schedule reaching the exact
// average.
#include "spush/runtime/topology.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace spush::runtime {
namespace {

namespace fs = std::filesystem;

const int kSizes[] = {1, 2, 3, 4, 8, 16};

// Dense reference with uniform weights from out-neighbour sets (self and repeats removed).
std::vector<double> uniform_reference(int n, const std::function<std::set<int>(int)>& peers) {
  std::vector<double> p(n * n, 0.0);
  for (int i = 0; i < n; ++i) {
    std::set<int> s = peers(i);
    s.erase(i);
    const double w = 1.0 / (s.size() + 1);
    p[i * n + i] = w;
    for (int j : s) p[j * n + i] = w;
  }
  return p;
}

// Structural invariants every valid graph has: in/out lists consistent and sorted, columns sum
// to 1, self-loop present.
void expect_well_formed(const Graph& g) {
  SCOPED_TRACE(g.name());
  const int n = g.nodes();
  size_t in_total = 0, out_total = 0;
  for (int i = 0; i < n; ++i) {
    const auto& in = g.in_edges(i);
    const auto& out = g.out_edges(i);
    in_total += in.size();
    out_total += out.size();
    double col = 0;
    bool self = false;
    for (size_t k = 0; k < out.size(); ++k) {
      EXPECT_EQ(out[k].src, i);
      if (k > 0) {
        EXPECT_LT(out[k - 1].dst, out[k].dst);
      }
      col += out[k].weight;
      self |= out[k].dst == i;
    }
    for (size_t k = 0; k < in.size(); ++k) {
      EXPECT_EQ(in[k].dst, i);
      if (k > 0) {
        EXPECT_LT(in[k - 1].src, in[k].src);
      }
    }
    EXPECT_TRUE(self) << "node " << i;
    EXPECT_NEAR(col, 1.0, 1e-12) << "node " << i;
    EXPECT_EQ(g.out_degree(i), static_cast<int>(out.size()) - 1);
  }
  EXPECT_EQ(in_total, g.edges().size());
  EXPECT_EQ(out_total, g.edges().size());
  EXPECT_NO_THROW(g.validate());
}

void expect_dense_eq(const Graph& g, const std::vector<double>& ref) {
  SCOPED_TRACE(g.name());
  const std::vector<double> p = g.dense();
  ASSERT_EQ(p.size(), ref.size());
  const int n = g.nodes();
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) {
      EXPECT_NEAR(p[r * n + c], ref[r * n + c], 1e-15) << "P[" << r << "][" << c << "]";
    }
  }
  // Every nonzero of the reference is one stored edge (zero-weight self-loops may be stored).
  size_t nonzeros = 0, nonzero_edges = 0;
  for (double v : ref) nonzeros += v != 0;
  for (const Edge& e : g.edges()) nonzero_edges += e.weight != 0;
  EXPECT_EQ(nonzero_edges, nonzeros);
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const TopologyError& e) {
    return e.what();
  }
  return "<no TopologyError thrown>";
}

#define EXPECT_HAS(msg, word) EXPECT_NE((msg).find(word), std::string::npos) << (msg)

// ---- generators -------------------------------------------------------------------------------

TEST(Generators, DirectedRing) {
  for (int n : kSizes) {
    const Graph g = directed_ring(n);
    EXPECT_EQ(g.nodes(), n);
    expect_well_formed(g);
    expect_dense_eq(g, uniform_reference(n, [n](int i) { return std::set<int>{(i + 1) % n}; }));
  }
  // Literal 4-node matrix.
  const std::vector<double> p = directed_ring(4).dense();
  const std::vector<double> ref = {0.5, 0, 0, 0.5, 0.5, 0.5, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0.5, 0.5};
  EXPECT_EQ(p, ref);
  EXPECT_EQ(directed_ring(1).edges().size(), 1u);
  EXPECT_EQ(directed_ring(1).self_weight(0), 1.0);
  EXPECT_THROW(directed_ring(0), TopologyError);
}

TEST(Generators, BidirectionalRing) {
  for (int n : kSizes) {
    const Graph g = bidirectional_ring(n);
    expect_well_formed(g);
    expect_dense_eq(g, uniform_reference(n, [n](int i) {
                      return std::set<int>{(i + 1) % n, (i + n - 1) % n};
                    }));
  }
  // n = 2: one neighbour, weight 1/2; n >= 3: two neighbours, weight 1/3.
  EXPECT_EQ(bidirectional_ring(2).out_degree(0), 1);
  EXPECT_DOUBLE_EQ(bidirectional_ring(2).self_weight(1), 0.5);
  EXPECT_EQ(bidirectional_ring(8).out_degree(5), 2);
  EXPECT_DOUBLE_EQ(bidirectional_ring(8).self_weight(5), 1.0 / 3.0);
  const Graph ring8 = bidirectional_ring(8);
  const auto& in = ring8.in_edges(0);
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0].src, 0);
  EXPECT_EQ(in[1].src, 1);
  EXPECT_EQ(in[2].src, 7);
}

TEST(Generators, Torus) {
  for (int rows = 1; rows <= 5; ++rows) {
    for (int cols = 1; cols <= 5; ++cols) {
      const Graph g = torus(rows, cols);
      EXPECT_EQ(g.nodes(), rows * cols);
      expect_well_formed(g);
      expect_dense_eq(g, uniform_reference(rows * cols, [=](int i) {
                        const int r = i / cols, c = i % cols;
                        return std::set<int>{
                            ((r + 1) % rows) * cols + c, ((r + rows - 1) % rows) * cols + c,
                            r * cols + (c + 1) % cols, r * cols + (c + cols - 1) % cols};
                      }));
    }
  }
  // Degrees: 4 for sides >= 3; a side of 2 collapses up/down; a side of 1 removes them.
  EXPECT_EQ(torus(4, 4).out_degree(5), 4);
  EXPECT_DOUBLE_EQ(torus(4, 4).self_weight(5), 0.2);
  EXPECT_EQ(torus(2, 4).out_degree(0), 3);
  EXPECT_EQ(torus(2, 2).out_degree(0), 2);
  EXPECT_EQ(torus(1, 8).out_degree(0), 2);
  EXPECT_EQ(torus(1, 1).out_degree(0), 0);
  EXPECT_THROW(torus(0, 4), TopologyError);
}

TEST(Generators, FullyConnected) {
  for (int n : kSizes) {
    const Graph g = fully_connected(n);
    expect_well_formed(g);
    EXPECT_EQ(g.edges().size(), static_cast<size_t>(n * n));
    for (double v : g.dense()) EXPECT_DOUBLE_EQ(v, 1.0 / n);
  }
}

TEST(Generators, Exponential) {
  for (int n : kSizes) {
    if (n == 3) {
      EXPECT_HAS(error_of([] { exponential_graph(3, 0); }), "power of 2");
      continue;
    }
    int k = 0;
    while ((1 << k) < n) ++k;
    for (int round = 0; round < 6; ++round) {
      const Graph g = exponential_graph(n, round);
      expect_well_formed(g);
      const int hop = n == 1 ? 0 : 1 << (round % k);
      expect_dense_eq(g, uniform_reference(n, [=](int i) { return std::set<int>{(i + hop) % n}; }));
    }
  }
  EXPECT_EQ(exponential_graph(1, 0).edges().size(), 1u);
  EXPECT_EQ(exponential_graph(16, 2).out_edges(3)[1].dst, 7);  // 3 + 4
  EXPECT_THROW(exponential_graph(12, 0), TopologyError);
  EXPECT_THROW(exponential_graph(0, 0), TopologyError);
}

TEST(Generators, RotatingRings4MatchPaperFig5) {
  // [SP, Fig. 5] at eta = 1: P[dst][src]; even senders send 1/2, odd senders send 1/3.
  const double h = 0.5, t = 1.0 / 3.0;
  const std::vector<std::vector<double>> ref = {
      {1 - h, 0, 0, t, h, 1 - t, 0, 0, 0, t, 1 - h, 0, 0, 0, h, 1 - t},
      {1 - h, t, 0, 0, 0, 1 - t, h, 0, 0, 0, 1 - h, t, h, 0, 0, 1 - t},
      {1 - h, 0, 0, t, 0, 1 - t, h, 0, h, 0, 1 - h, 0, 0, t, 0, 1 - t}};
  for (int k = 0; k < 3; ++k) {
    const Graph g = rotating_ring4(k);
    expect_well_formed(g);
    expect_dense_eq(g, ref[k]);
    // Column stochastic but not row stochastic: u drifts away from 1.
    const std::vector<double> p = g.dense();
    double max_row_err = 0;
    for (int r = 0; r < 4; ++r) {
      double row = 0;
      for (int c = 0; c < 4; ++c) row += p[r * 4 + c];
      max_row_err = std::max(max_row_err, std::abs(row - 1));
    }
    EXPECT_GT(max_row_err, 0.1) << "graph " << k;
  }
  EXPECT_THROW(rotating_ring4(3), TopologyError);
  EXPECT_THROW(rotating_ring4(-1), TopologyError);
}

TEST(Generators, TorusShapeIsMostSquareFactorization) {
  for (int n = 1; n <= 200; ++n) {
    const auto [r, c] = torus_shape(n);
    int best = 1;
    for (int d = 1; d <= n; ++d) {
      if (n % d == 0 && d <= n / d) best = d;
    }
    EXPECT_EQ(r * c, n);
    EXPECT_LE(r, c);
    EXPECT_EQ(r, best) << "n=" << n;
  }
  EXPECT_EQ(torus_shape(16), (std::pair<int, int>{4, 4}));
  EXPECT_EQ(torus_shape(8), (std::pair<int, int>{2, 4}));
  EXPECT_EQ(torus_shape(7), (std::pair<int, int>{1, 7}));
  EXPECT_THROW(torus_shape(0), TopologyError);
}

// ---- Graph construction and validation --------------------------------------------------------

TEST(Graph, SortsEdgesAndIndexes) {
  const Graph g(3, {{2, 0, 0.5}, {0, 0, 0.25}, {1, 1, 1.0}, {0, 2, 0.75}, {2, 2, 0.5}}, "g");
  ASSERT_EQ(g.edges().size(), 5u);
  for (size_t k = 1; k < g.edges().size(); ++k) {
    const Edge& a = g.edges()[k - 1];
    const Edge& b = g.edges()[k];
    EXPECT_TRUE(a.dst < b.dst || (a.dst == b.dst && a.src < b.src));
  }
  EXPECT_EQ(g.in_edges(0).size(), 2u);
  EXPECT_EQ(g.in_edges(0)[1].src, 2);
  EXPECT_EQ(g.out_edges(0).size(), 2u);
  EXPECT_EQ(g.out_edges(0)[1].dst, 2);
  EXPECT_DOUBLE_EQ(g.self_weight(0), 0.25);
  EXPECT_EQ(g.out_degree(1), 0);
  const std::vector<double> p = g.dense();
  EXPECT_DOUBLE_EQ(p[2 * 3 + 0], 0.75);  // P[dst=2][src=0]
  EXPECT_DOUBLE_EQ(p[0 * 3 + 2], 0.5);
  EXPECT_NO_THROW(g.validate());
  EXPECT_EQ(g.name(), "g");
}

TEST(Graph, ConstructorRejectsDuplicatesAndBadEndpoints) {
  EXPECT_HAS(error_of([] {
               Graph(2, {{0, 1, 0.5}, {0, 0, 0.5}, {0, 1, 0.1}}, "dup");
             }),
             "duplicate edge 0 -> 1");
  EXPECT_HAS(error_of([] { Graph(2, {{0, 2, 0.5}}, "oob"); }), "outside [0, 2)");
  EXPECT_HAS(error_of([] { Graph(2, {{-1, 0, 0.5}}, "neg"); }), "outside");
  EXPECT_HAS(error_of([] { Graph(0, {}, "empty"); }), ">= 1");
}

TEST(Graph, ValidateRejectsEachBadCase) {
  const std::string neg = error_of([] {
    Graph(2, {{0, 0, 1.2}, {0, 1, -0.2}, {1, 1, 1.0}}, "negw").validate();
  });
  EXPECT_HAS(neg, "negative");
  EXPECT_HAS(neg, "0 -> 1");
  EXPECT_HAS(neg, "negw");

  const std::string self = error_of([] { Graph(2, {{0, 1, 1.0}, {1, 1, 1.0}}, "s").validate(); });
  EXPECT_HAS(self, "self-loop");
  EXPECT_HAS(self, "node 0");

  const std::string col = error_of([] {
    Graph(3, {{0, 0, 1}, {1, 1, 1}, {2, 2, 0.5}, {2, 0, 0.4}}, "c").validate();
  });
  EXPECT_HAS(col, "column sum");
  EXPECT_HAS(col, "node 2");
  EXPECT_HAS(col, "0.9");

  const std::string nan = error_of([] {
    Graph(1, {{0, 0, std::numeric_limits<double>::quiet_NaN()}}, "nan").validate();
  });
  EXPECT_HAS(nan, "non-finite");

  // Within the 1e-6 tolerance is accepted, beyond it rejected.
  EXPECT_NO_THROW(Graph(1, {{0, 0, 1 + 5e-7}}, "tol").validate());
  EXPECT_THROW(Graph(1, {{0, 0, 1 + 5e-6}}, "tol").validate(), TopologyError);
}

// ---- edge-list files --------------------------------------------------------------------------

class EdgeListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("spush_topology_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

TEST_F(EdgeListTest, LoadsWithCommentsAndImplicitSelfLoops) {
  const std::string path = write("g.topo",
                                 "# a 3-node graph\n"
                                 "\n"
                                 "  nodes 3   # count\n"
                                 "0 1 0.25\n"
                                 "0 2 0.25   # trailing comment\n"
                                 "1 2 1.0\r\n"
                                 "2 2 0.4\n"
                                 "2 0 6e-1\n");
  const Graph g = load_edge_list(path);
  EXPECT_EQ(g.nodes(), 3);
  expect_well_formed(g);
  // Node 0 keeps 1 - 0.5, node 1 keeps 0 (a zero-weight self-loop), node 2 keeps 0.4 as given.
  expect_dense_eq(g, {0.5, 0, 0.6, 0.25, 0, 0, 0.25, 1.0, 0.4});
  EXPECT_EQ(g.edges().size(), 7u);
  EXPECT_EQ(g.out_degree(1), 1);
  EXPECT_EQ(g.self_weight(1), 0.0);
  EXPECT_EQ(g.name(), "file:" + path);
  // The same file through a spec.
  const Schedule s = make_schedule({.name = "file:" + path, .nodes = 3});
  EXPECT_EQ(s.graph(0, 0).dense(), g.dense());
  EXPECT_HAS(error_of([&] { make_schedule({.name = "file:" + path, .nodes = 4}); }),
             "has 3 nodes, expected 4");
}

TEST_F(EdgeListTest, ExampleRing8Loads) {
  const std::string path = std::string(SPUSH_SOURCE_DIR) + "/docs/examples/ring8.topo";
  const Graph g = load_edge_list(path);
  EXPECT_EQ(g.nodes(), 8);
  expect_well_formed(g);
  std::vector<double> ref(64, 0.0);
  for (int i = 0; i < 8; ++i) {
    ref[i * 8 + i] = 0.5;
    ref[((i + 1) % 8) * 8 + i] = 0.25;
    ref[((i + 7) % 8) * 8 + i] = 0.25;
  }
  expect_dense_eq(g, ref);
  const Schedule s = make_schedule({.name = "file:" + path, .nodes = 8});
  EXPECT_TRUE(s.doubly_stochastic());
}

TEST_F(EdgeListTest, ErrorsNameFileAndLine) {
  struct Case {
    const char* text;
    int line;
    const char* word;
  };
  const Case cases[] = {
      {"nodes 2\n0 1\n", 2, "expected 'src dst weight'"},
      {"# c\nnodes 2\n0 1 0.5 7\n", 3, "expected 'src dst weight'"},
      {"nodes 2\n0 x 0.5\n", 2, "integers"},
      {"nodes 2\n0 1 half\n", 2, "not a finite number"},
      {"nodes 2\n0 1 inf\n", 2, "not a finite number"},
      {"nodes 2\n\n0 2 0.5\n", 3, "out of range"},
      {"nodes 2\n-1 0 0.5\n", 2, "out of range"},
      {"nodes 2\n0 1 -0.5\n", 2, "negative weight"},
      {"nodes 2\n0 1 0.5\n0 1 0.5\n", 3, "duplicate edge 0 -> 1 (first given on line 2)"},
      {"0 1 0.5\n", 1, "'nodes N'"},
      {"nodes two\n", 1, "not a positive integer"},
      {"nodes 0\n", 1, "not a positive integer"},
      {"nodes 3\n0 1 0.7\n1 0 0.5\n0 2 0.6\n", 4, "out-weights of node 0 sum to 1.3"},
  };
  for (size_t k = 0; k < std::size(cases); ++k) {
    const std::string path = write("bad" + std::to_string(k) + ".topo", cases[k].text);
    const std::string msg = error_of([&] { load_edge_list(path); });
    SCOPED_TRACE("case " + std::to_string(k) + ": " + cases[k].text);
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, "line " + std::to_string(cases[k].line) + ":");
    EXPECT_HAS(msg, cases[k].word);
  }
  // No "nodes" line at all (only comments), unreadable file, explicit self-loop with bad sum.
  const std::string empty = write("empty.topo", "# nothing\n\n");
  EXPECT_HAS(error_of([&] { load_edge_list(empty); }), "no 'nodes N' line");
  const std::string missing = (dir_ / "does_not_exist.topo").string();
  const std::string msg = error_of([&] { load_edge_list(missing); });
  EXPECT_HAS(msg, missing);
  EXPECT_HAS(msg, "cannot open");
  const std::string col = write("col.topo", "nodes 2\n0 0 0.5\n0 1 0.4\n");
  const std::string col_msg = error_of([&] { load_edge_list(col); });
  EXPECT_HAS(col_msg, col);
  EXPECT_HAS(col_msg, "column sum of node 0");
}

TEST_F(EdgeListTest, HugeNodeCountRefusedOnItsLine) {
  // Before the fix the whole file was read and then 2e9 nodes were allocated: killed for memory.
  const std::string path = write("huge.topo", "# big\nnodes 2000000000\n0 1 0.5\n");
  const std::string msg = error_of([&] { load_edge_list(path); });
  EXPECT_HAS(msg, path);
  EXPECT_HAS(msg, "line 2:");
  EXPECT_HAS(msg, "2000000000");
  EXPECT_HAS(msg, "limit of 65536");
  // The bound itself is accepted, one more is not.
  EXPECT_EQ(parse_edge_list("nodes 65536\n", "max.topo").nodes(), kMaxTopologyNodes);
  EXPECT_HAS(error_of([] { parse_edge_list("nodes 65537\n", "over.topo"); }), "65537");
}

TEST_F(EdgeListTest, NodeCountMustMatchTheRunBeforeTheEdges) {
  // The run's count is checked on the "nodes" line: a later malformed line is never reached.
  const std::string path = write("eight.topo", "nodes 8\n0 1 not-a-weight\n");
  for (const std::string& msg : {error_of([&] { load_edge_list(path, 4); }), error_of([&] {
                                   make_schedule({.name = "file:" + path, .nodes = 4});
                                 })}) {
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, "line 1:");
    EXPECT_HAS(msg, "has 8 nodes, expected 4");
  }
  // Without an expected count (0) the same file fails on its weight instead.
  EXPECT_HAS(error_of([&] { load_edge_list(path); }), "line 2:");
}

TEST_F(EdgeListTest, LongLinesAreRefusedAndQuotedShort) {
  const std::string long_line(kMaxTopologyLine + 1, '7');
  for (const std::string& text : {"nodes 2\n" + long_line + "\n", "nodes 2\n" + long_line,
                                  "nodes 2\n" + long_line + long_line + "\n0 1 0.5\n"}) {
    const std::string path = write("long.topo", text);
    const std::string msg = error_of([&] { load_edge_list(path); });
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, "line 2:");
    EXPECT_HAS(msg, std::to_string(kMaxTopologyLine));
    EXPECT_HAS(error_of([&] { parse_edge_list(text, "mem.topo"); }), "line 2:");
  }
  // A line at the limit is parsed; an offending token is quoted in at most ~100 bytes.
  const std::string token(kMaxTopologyLine - 6, 'x');
  const std::string msg = error_of([&] { parse_edge_list("nodes " + token + "\n", "t.topo"); });
  EXPECT_HAS(msg, "is not a positive integer");
  EXPECT_HAS(msg, std::to_string(token.size()) + " bytes");
  EXPECT_LT(msg.size(), 250u) << msg;
}

TEST_F(EdgeListTest, ParseEdgeListMatchesTheFileLoader) {
  const std::string text = "nodes 3\n0 1 0.25\n0 2 0.25\n1 2 1.0\r\n2 0 6e-1";  // no final '\n'
  const std::string path = write("g.topo", text);
  const Graph a = load_edge_list(path), b = parse_edge_list(text, path);
  EXPECT_EQ(a.dense(), b.dense());
  EXPECT_EQ(a.name(), b.name());
  EXPECT_EQ(b.name(), "file:" + path);
}

// ---- schedules --------------------------------------------------------------------------------

TEST(Schedule, RotatesByIterations) {
  const Schedule s = make_schedule(
      {.name = "ring, bidir-ring,full", .nodes = 5, .period = 3, .unit = PeriodUnit::kIterations});
  ASSERT_EQ(s.graphs().size(), 3u);
  EXPECT_EQ(s.nodes(), 5);
  const std::string names[3] = {"ring(5)", "bidir-ring(5)", "full(5)"};
  for (int64_t it = 0; it < 40; ++it) {
    EXPECT_EQ(s.graph(it, 99 - it).name(), names[(it / 3) % 3]) << "iteration " << it;
  }
  EXPECT_HAS(s.describe(), "bidir-ring(5)");
  EXPECT_HAS(s.describe(), "every 3 iteration");
}

TEST(Schedule, RotatesByEpochs) {
  const Schedule s =
      make_schedule({.name = "rings4-3", .nodes = 4, .period = 6, .unit = PeriodUnit::kEpochs});
  ASSERT_EQ(s.graphs().size(), 3u);
  const std::string names[3] = {"rings4-a", "rings4-b", "rings4-c"};
  for (int64_t epoch = 0; epoch < 40; ++epoch) {
    EXPECT_EQ(s.graph(epoch * 1000 + 7, epoch).name(), names[(epoch / 6) % 3]) << epoch;
  }
  EXPECT_HAS(s.describe(), "every 6 epoch");
  const Schedule two = make_schedule({.name = "rings4", .nodes = 4, .period = 11});
  ASSERT_EQ(two.graphs().size(), 2u);
  EXPECT_EQ(two.graph(0, 10).name(), "rings4-a");
  EXPECT_EQ(two.graph(0, 11).name(), "rings4-b");
  EXPECT_EQ(two.graph(0, 22).name(), "rings4-a");
  // A single graph never changes.
  const Schedule one = make_schedule({.name = "torus", .nodes = 16});
  EXPECT_EQ(one.graph(12345, 67).name(), "torus(4x4)");
  EXPECT_EQ(make_schedule({.name = "torus:2x8", .nodes = 16}).graph(0, 0).name(), "torus(2x8)");
}

TEST(Schedule, ExponentialCyclesPeersEveryIteration) {
  // The spec's period and unit are ignored: the hop changes every iteration.
  const Schedule s =
      make_schedule({.name = "exponential", .nodes = 16, .period = 7, .unit = PeriodUnit::kEpochs});
  ASSERT_EQ(s.graphs().size(), 4u);
  for (int64_t it = 0; it < 20; ++it) {
    const int hop = 1 << (it % 4);
    const Graph& g = s.graph(it, 0);
    for (int i = 0; i < 16; ++i) {
      ASSERT_EQ(g.out_degree(i), 1);
      const auto& out = g.out_edges(i);
      const int peer = out[0].dst == i ? out[1].dst : out[0].dst;
      EXPECT_EQ(peer, (i + hop) % 16) << "iteration " << it << " node " << i;
    }
  }
  EXPECT_EQ(make_schedule({.name = "exponential", .nodes = 2}).graphs().size(), 1u);
  EXPECT_EQ(make_schedule({.name = "exponential", .nodes = 1}).graphs().size(), 1u);
}

TEST(Schedule, UnionConnectivity) {
  auto g = [](std::vector<std::pair<int, int>> links, const char* name) {
    // Each listed sender sends 1/2 on its (single) link; everyone else keeps everything.
    std::vector<Edge> edges;
    std::vector<bool> sends(4, false);
    for (auto [s, d] : links) {
      edges.push_back({s, d, 0.5});
      sends[s] = true;
    }
    for (int i = 0; i < 4; ++i) edges.push_back({i, i, sends[i] ? 0.5 : 1.0});
    return Graph(4, edges, name);
  };
  // Two halves that never talk to each other.
  const Schedule split({g({{0, 1}, {1, 0}}, "a"), g({{2, 3}, {3, 2}}, "b")}, 1,
                       PeriodUnit::kIterations, 0, 0);
  const std::string msg = error_of([&] { split.validate(); });
  EXPECT_HAS(msg, "strongly connected");
  EXPECT_HAS(msg, "node 2");
  // A one-way chain: everyone is reachable from 0 but nobody can reach 0.
  const Schedule chain({g({{0, 1}, {1, 2}, {2, 3}}, "c")}, 1, PeriodUnit::kIterations, 0, 0);
  EXPECT_HAS(error_of([&] { chain.validate(); }), "cannot reach node 0");
  // Each graph disconnected, their union a directed cycle: valid.
  const Schedule cycle({g({{0, 1}, {2, 3}}, "d"), g({{1, 2}, {3, 0}}, "e")}, 2, PeriodUnit::kEpochs,
                       0, 0);
  EXPECT_NO_THROW(cycle.validate());
  EXPECT_THROW(Schedule({g({{0, 1}}, "f")}, 1, PeriodUnit::kIterations, 0, 0).validate(),
               TopologyError);
}

TEST(Schedule, ValidateRejectsBadSchedules) {
  for (double p : {1.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    const Schedule s({directed_ring(4)}, 1, PeriodUnit::kIterations, p, 0);
    EXPECT_HAS(error_of([&] { s.validate(); }), "[0, 1)");
  }
  const Schedule mixed({directed_ring(4), directed_ring(5)}, 1, PeriodUnit::kIterations, 0, 0);
  EXPECT_HAS(error_of([&] { mixed.validate(); }), "has 5 nodes");
  const Schedule bad({directed_ring(2), Graph(2, {{0, 0, 1}, {1, 1, 0.5}}, "x")}, 1,
                     PeriodUnit::kIterations, 0, 0);
  EXPECT_HAS(error_of([&] { bad.validate(); }), "graph 1");
  EXPECT_THROW(Schedule({}, 1, PeriodUnit::kIterations, 0, 0), TopologyError);
  EXPECT_THROW(Schedule({directed_ring(2)}, 0, PeriodUnit::kIterations, 0, 0), TopologyError);
}

TEST(Schedule, MakeScheduleRejectsBadSpecs) {
  auto expect_error = [](const TopologySpec& spec, const std::vector<std::string>& words) {
    const std::string msg = error_of([&] { make_schedule(spec); });
    for (const std::string& w : words) EXPECT_HAS(msg, w);
  };
  expect_error({.name = "star", .nodes = 8},
               {"'star'", "with 8 nodes", "unknown graph", "expected"});
  expect_error({.name = "ring", .nodes = 0}, {"node count must be >= 1"});
  expect_error({.name = "torus:3x3", .nodes = 8}, {"torus:3x3", "R*C = 9", "node count 8"});
  expect_error({.name = "torus:3by3", .nodes = 9}, {"torus:3by3", "expected torus:RxC"});
  expect_error({.name = "torus:0x4", .nodes = 4}, {"torus:0x4", "positive integers"});
  expect_error({.name = "rings4", .nodes = 5}, {"rings4", "exactly 4 nodes"});
  expect_error({.name = "rings4-3", .nodes = 8}, {"rings4-3", "exactly 4 nodes"});
  expect_error({.name = "exponential", .nodes = 6}, {"power-of-2"});
  expect_error({.name = "exponential,ring", .nodes = 8}, {"cannot be combined"});
  expect_error({.name = "ring,,full", .nodes = 8}, {"empty entry"});
  expect_error({.name = "ring", .nodes = 8, .period = 0}, {"period"});
  expect_error({.name = "ring", .nodes = 8, .failure_prob = 1.0}, {"[0, 1)"});
  expect_error({.name = "file:/nonexistent/spush.topo", .nodes = 8}, {"/nonexistent/spush.topo"});
}

TEST(Schedule, GeneratorsFromSpecAcrossSizes) {
  for (int n : kSizes) {
    for (const char* name : {"ring", "bidir-ring", "torus", "full", "ring,full"}) {
      const Schedule s = make_schedule({.name = name, .nodes = n});
      EXPECT_EQ(s.nodes(), n);
      for (const Graph& g : s.graphs()) expect_well_formed(g);
    }
  }
}

TEST(Schedule, DoublyStochastic) {
  for (int n : {3, 8, 16}) {
    EXPECT_TRUE(make_schedule({.name = "bidir-ring", .nodes = n}).doubly_stochastic()) << n;
    EXPECT_TRUE(make_schedule({.name = "torus", .nodes = n}).doubly_stochastic()) << n;
    EXPECT_TRUE(make_schedule({.name = "full", .nodes = n}).doubly_stochastic()) << n;
    EXPECT_FALSE(make_schedule({.name = "ring", .nodes = n}).doubly_stochastic()) << n;
  }
  EXPECT_TRUE(make_schedule({.name = "torus:3x5", .nodes = 15}).doubly_stochastic());
  EXPECT_TRUE(make_schedule({.name = "bidir-ring,full", .nodes = 6}).doubly_stochastic());
  EXPECT_FALSE(make_schedule({.name = "bidir-ring,ring", .nodes = 6}).doubly_stochastic());
  EXPECT_FALSE(make_schedule({.name = "rings4", .nodes = 4}).doubly_stochastic());
  EXPECT_FALSE(make_schedule({.name = "rings4-3", .nodes = 4}).doubly_stochastic());
  EXPECT_FALSE(make_schedule({.name = "exponential", .nodes = 8}).doubly_stochastic());
  // Link failures break the symmetry of a symmetric graph.
  EXPECT_FALSE(
      make_schedule({.name = "bidir-ring", .nodes = 8, .failure_prob = 0.1}).doubly_stochastic());
}

// ---- link failures ----------------------------------------------------------------------------

TEST(LinkFailures, KeepColumnsStochasticAtRateP) {
  const double p = 0.3;
  const uint64_t seed = 42;
  const int n = 16;
  const Schedule s = make_schedule({.name = "full",
                                    .nodes = n,
                                    .unit = PeriodUnit::kIterations,
                                    .failure_prob = p,
                                    .seed = seed});
  const Graph base = fully_connected(n);
  const std::vector<double> pb = base.dense();
  int64_t trials = 0, failed = 0, pair_trials = 0, both_failed = 0;
  const int rounds = 300;
  for (int64_t it = 0; it < rounds; ++it) {
    const Graph& g = s.graph(it, 0);
    ASSERT_NO_THROW(g.validate()) << "iteration " << it << " seed " << seed;
    const std::vector<double> pg = g.dense();
    for (int src = 0; src < n; ++src) {
      double lost = 0;
      for (int dst = 0; dst < n; ++dst) {
        if (dst == src) continue;
        const bool f = pg[dst * n + src] == 0;
        if (!f) {
          EXPECT_EQ(pg[dst * n + src], pb[dst * n + src]);
        }
        lost += f ? pb[dst * n + src] : 0;
        ++trials;
        failed += f;
        if (dst > src) {
          ++pair_trials;
          both_failed += f && pg[src * n + dst] == 0;
        }
      }
      // The failed weight went onto the sender's self-loop.
      EXPECT_NEAR(pg[src * n + src], pb[src * n + src] + lost, 1e-12);
      EXPECT_EQ(g.out_degree(src) + 1, static_cast<int>(g.out_edges(src).size()));
    }
  }
  const double rate = static_cast<double>(failed) / trials;
  const double sigma = std::sqrt(p * (1 - p) / trials);
  EXPECT_NEAR(rate, p, 5 * sigma) << "seed " << seed << " trials " << trials;
  // Edges fail independently: both directions of a pair fail with probability p^2.
  const double both = static_cast<double>(both_failed) / pair_trials;
  EXPECT_NEAR(both, p * p, 5 * std::sqrt(p * p * (1 - p * p) / pair_trials)) << "seed " << seed;
}

TEST(LinkFailures, DeterministicInSeedAndIteration) {
  auto spec = [](uint64_t seed) {
    return TopologySpec{.name = "torus",
                        .nodes = 16,
                        .unit = PeriodUnit::kIterations,
                        .failure_prob = 0.25,
                        .seed = seed};
  };
  const Schedule a = make_schedule(spec(7)), b = make_schedule(spec(7)), c = make_schedule(spec(8));
  int differ_seed = 0, differ_iter = 0;
  std::vector<double> prev;
  for (int64_t it = 50; it >= 0; --it) {  // any call order gives the same graphs
    const std::vector<double> pa = a.graph(it, 0).dense();
    EXPECT_EQ(pa, b.graph(it, 0).dense()) << "iteration " << it;
    EXPECT_EQ(pa, a.graph(it, 123).dense()) << "iteration " << it;  // epoch does not matter
    differ_seed += pa != c.graph(it, 0).dense();
    differ_iter += !prev.empty() && pa != prev;
    prev = pa;
  }
  EXPECT_GT(differ_seed, 40);
  EXPECT_GT(differ_iter, 40);
  // p = 0 returns the base graph itself.
  const Schedule none = make_schedule({.name = "torus", .nodes = 16});
  EXPECT_EQ(&none.graph(3, 0), &none.graphs()[0]);
  EXPECT_HAS(a.describe(), "p=0.25");
}

// ---- push-sum on the time-varying rings ----------------------------------------------------

TEST(PushSum, Rings4ThreeReachExactAverage) {
  const uint32_t seed = 20240601;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(0.5, 3.0);
  std::vector<double> x(4), u(4, 1.0);
  double avg = 0;
  for (double& v : x) avg += (v = dist(rng)) / 4;
  const double total = avg * 4;
  const Schedule s =
      make_schedule({.name = "rings4-3", .nodes = 4, .period = 5, .unit = PeriodUnit::kIterations});
  for (int64_t t = 0; t < 400; ++t) {
    const std::vector<double> p = s.graph(t, 0).dense();
    std::vector<double> nx(4, 0.0), nu(4, 0.0);
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) {
        nx[i] += p[i * 4 + j] * x[j];
        nu[i] += p[i * 4 + j] * u[j];
      }
    }
    x = nx;
    u = nu;
  }
  double sum_x = 0, sum_u = 0, max_ratio_err = 0, max_x_err = 0, max_u_err = 0;
  for (int i = 0; i < 4; ++i) {
    sum_x += x[i];
    sum_u += u[i];
    max_ratio_err = std::max(max_ratio_err, std::abs(x[i] / u[i] - avg) / std::abs(avg));
    max_x_err = std::max(max_x_err, std::abs(x[i] - avg) / std::abs(avg));
    max_u_err = std::max(max_u_err, std::abs(u[i] - 1));
  }
  EXPECT_NEAR(sum_x, total, 1e-12 * std::abs(total) + 1e-12) << "seed " << seed;  // mass kept
  EXPECT_NEAR(sum_u, 4.0, 1e-12);
  EXPECT_LT(max_ratio_err, 1e-6) << "seed " << seed << " avg " << avg;
  EXPECT_GT(max_x_err, 1e-2) << "seed " << seed;  // x alone is biased by the asymmetric weights
  EXPECT_GT(max_u_err, 1e-2);                     // u drifted from 1
}

}  // namespace
}  // namespace spush::runtime

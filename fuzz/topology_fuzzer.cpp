// Feeds arbitrary text to parse_edge_list (the parser of load_edge_list, runtime/src/topology.cpp).
// Asserts that an accepted file is a valid graph of 1..kMaxTopologyNodes nodes, parses the same
// when the caller expects its node count, and is refused naming both counts when the caller
// expects another; TopologyError is the expected rejection.
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "spush/runtime/topology.h"

using namespace spush::runtime;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Graph g;
  try {
    g = parse_edge_list(text, "fuzz.topo");
  } catch (const TopologyError&) {
    return 0;
  }
  const int n = g.nodes();
  FUZZ_CHECK(n >= 1 && n <= kMaxTopologyNodes, "node count outside [1, kMaxTopologyNodes]");
  for (const Edge& e : g.edges()) {
    FUZZ_CHECK(e.src >= 0 && e.src < n && e.dst >= 0 && e.dst < n, "endpoint out of range");
  }
  g.validate();  // a TopologyError here escapes: the parser returned an invalid graph
  const Graph same = parse_edge_list(text, "fuzz.topo", n);
  FUZZ_CHECK(same.edges().size() == g.edges().size(), "expected count changed the graph");
  for (size_t k = 0; k < g.edges().size(); ++k) {
    const Edge &a = g.edges()[k], &b = same.edges()[k];
    FUZZ_CHECK(a.src == b.src && a.dst == b.dst && a.weight == b.weight,
               "expected count changed the graph");
  }
  const int other = n % kMaxTopologyNodes + 1;
  try {
    parse_edge_list(text, "fuzz.topo", other);
    FUZZ_CHECK(false,
               "a file of " + std::to_string(n) + " nodes accepted for " + std::to_string(other));
  } catch (const TopologyError& e) {
    const std::string msg = e.what();
    FUZZ_CHECK(msg.find("fuzz.topo") != std::string::npos &&
                   msg.find(std::to_string(n)) != std::string::npos &&
                   msg.find(std::to_string(other)) != std::string::npos,
               msg);
  }
  return 0;
}

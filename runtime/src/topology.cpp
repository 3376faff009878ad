// Communication graphs and their schedules (docs/ALGORITHMS.md §1): the graph container with
// its validation, the generators (rings, torus, exponential, fully connected, the rotating
// 4-node rings of [SP, Fig. 4, Fig. 5]), the edge-list file loader, time-varying schedules with
// random link failures (counter-based hash of (seed, iteration, edge): no RNG state), and the
// parser of topology specs ("ring", "torus:4x4", "rings4-3", "file:PATH", lists, ...).
#include "spush/runtime/topology.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <utility>

namespace spush::runtime {
namespace {

constexpr double kTol = 1e-6;

bool is_power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

int log2_exact(int n) {
  int k = 0;
  while ((1 << k) < n) ++k;
  return k;
}

// Uniform weights: keep 1/(deg+1) and send 1/(deg+1) to each of the distinct out-neighbours.
// `peers[i]` may contain i itself or repeats (small rings and tori); they are collapsed.
Graph uniform_graph(int n, const std::vector<std::vector<int>>& peers, std::string name) {
  std::vector<Edge> edges;
  for (int i = 0; i < n; ++i) {
    std::vector<int> p;
    for (int j : peers[i]) {
      if (j != i) p.push_back(j);
    }
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    const double w = 1.0 / static_cast<double>(p.size() + 1);
    edges.push_back({i, i, w});
    for (int j : p) edges.push_back({i, j, w});
  }
  return Graph(n, std::move(edges), std::move(name));
}

void require_nodes(int n, const char* what) {
  if (n < 1) {
    throw TopologyError(fmt::format("{}: node count must be >= 1, got {}", what, n));
  }
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

bool parse_int(std::string_view s, int* out) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

// Whole-string strtod (accepts what strtod does: "1e-1", "+0.5", "0x1p-2", ...).
bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// splitmix64 finalizer (Steele et al. 2014): a bijective 64-bit mix, used as a counter hash.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 53 bits, a pure function of (seed, iteration, src, dst).
double edge_uniform(uint64_t seed, int64_t iteration, int src, int dst) {
  const uint64_t edge =
      (static_cast<uint64_t>(static_cast<uint32_t>(src)) << 32) | static_cast<uint32_t>(dst);
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ static_cast<uint64_t>(iteration));
  h = splitmix64(h ^ edge);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

int64_t floor_mod(int64_t a, int64_t m) {
  const int64_t r = a % m;
  return r < 0 ? r + m : r;
}

int64_t floor_div(int64_t a, int64_t m) { return (a - floor_mod(a, m)) / m; }

// Nodes reachable from node 0 following adj.
std::vector<bool> reachable(int n, const std::vector<std::vector<int>>& adj) {
  std::vector<bool> seen(n, false);
  std::deque<int> queue{0};
  seen[0] = true;
  while (!queue.empty()) {
    const int v = queue.front();
    queue.pop_front();
    for (int w : adj[v]) {
      if (!seen[w]) {
        seen[w] = true;
        queue.push_back(w);
      }
    }
  }
  return seen;
}

}  // namespace

// ---- Graph ------------------------------------------------------------------------------------

Graph::Graph(int n, std::vector<Edge> edges, std::string name)
    : n_(n), name_(std::move(name)), edges_(std::move(edges)) {
  if (n < 1) {
    throw TopologyError(fmt::format("graph '{}': node count must be >= 1, got {}", name_, n));
  }
  for (const Edge& e : edges_) {
    if (e.src < 0 || e.src >= n || e.dst < 0 || e.dst >= n) {
      throw TopologyError(fmt::format("graph '{}': edge {} -> {} has an endpoint outside [0, {})",
                                      name_, e.src, e.dst, n));
    }
  }
  std::sort(edges_.begin(), edges_.end(), [](const Edge& a, const Edge& b) {
    return a.dst != b.dst ? a.dst < b.dst : a.src < b.src;
  });
  for (size_t k = 1; k < edges_.size(); ++k) {
    if (edges_[k].src == edges_[k - 1].src && edges_[k].dst == edges_[k - 1].dst) {
      throw TopologyError(
          fmt::format("graph '{}': duplicate edge {} -> {}", name_, edges_[k].src, edges_[k].dst));
    }
  }
  in_.assign(n, {});
  out_.assign(n, {});
  // edges_ is sorted by (dst, src): appending in order keeps in_ sorted by src, out_ by dst.
  for (const Edge& e : edges_) {
    in_[e.dst].push_back(e);
    out_[e.src].push_back(e);
  }
}

double Graph::self_weight(int i) const {
  for (const Edge& e : in_.at(i)) {
    if (e.src == i) return e.weight;
  }
  return 0.0;
}

std::vector<double> Graph::dense() const {
  std::vector<double> p(static_cast<size_t>(n_) * n_, 0.0);
  for (const Edge& e : edges_) p[static_cast<size_t>(e.dst) * n_ + e.src] = e.weight;
  return p;
}

void Graph::validate() const {
  for (const Edge& e : edges_) {
    if (!(e.weight >= 0) || !std::isfinite(e.weight)) {
      throw TopologyError(fmt::format(
          "graph '{}': edge {} -> {} has negative or non-finite weight {} (expected >= 0)", name_,
          e.src, e.dst, e.weight));
    }
  }
  for (int i = 0; i < n_; ++i) {
    bool has_self = false;
    double sum = 0;
    for (const Edge& e : out_[i]) {
      has_self |= e.dst == i;
      sum += e.weight;
    }
    if (!has_self) {
      throw TopologyError(fmt::format(
          "graph '{}': node {} has no self-loop (every node must keep part of its value)", name_,
          i));
    }
    if (std::abs(sum - 1.0) > kTol) {
      throw TopologyError(fmt::format(
          "graph '{}': column sum of node {} (its out-weights incl. self-loop) is {:.9g}, "
          "expected 1 within {:g}",
          name_, i, sum, kTol));
    }
  }
}

// ---- generators -------------------------------------------------------------------------------

Graph directed_ring(int n) {
  require_nodes(n, "directed_ring");
  std::vector<std::vector<int>> peers(n);
  for (int i = 0; i < n; ++i) peers[i] = {(i + 1) % n};
  return uniform_graph(n, peers, fmt::format("ring({})", n));
}

Graph bidirectional_ring(int n) {
  require_nodes(n, "bidirectional_ring");
  std::vector<std::vector<int>> peers(n);
  for (int i = 0; i < n; ++i) peers[i] = {(i + 1) % n, (i + n - 1) % n};
  return uniform_graph(n, peers, fmt::format("bidir-ring({})", n));
}

Graph torus(int rows, int cols) {
  if (rows < 1 || cols < 1) {
    throw TopologyError(fmt::format("torus: rows and cols must be >= 1, got {}x{}", rows, cols));
  }
  const int n = rows * cols;
  std::vector<std::vector<int>> peers(n);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      peers[r * cols + c] = {((r + 1) % rows) * cols + c, ((r + rows - 1) % rows) * cols + c,
                             r * cols + (c + 1) % cols, r * cols + (c + cols - 1) % cols};
    }
  }
  return uniform_graph(n, peers, fmt::format("torus({}x{})", rows, cols));
}

Graph fully_connected(int n) {
  require_nodes(n, "fully_connected");
  std::vector<std::vector<int>> peers(n);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) peers[i].push_back(j);
  }
  return uniform_graph(n, peers, fmt::format("full({})", n));
}

Graph exponential_graph(int n, int round) {
  if (!is_power_of_two(n)) {
    throw TopologyError(fmt::format(
        "exponential_graph: node count must be a power of 2 (1, 2, 4, ...), got {}", n));
  }
  if (n == 1) return uniform_graph(1, {{}}, "exponential(1)");
  const int k = log2_exact(n);
  const int hop = 1 << static_cast<int>(floor_mod(round, k));
  std::vector<std::vector<int>> peers(n);
  for (int i = 0; i < n; ++i) peers[i] = {(i + hop) % n};
  return uniform_graph(n, peers, fmt::format("exponential({}, hop {})", n, hop));
}

Graph rotating_ring4(int index) {
  static const int kOrders[3][4] = {{0, 1, 2, 3}, {0, 3, 2, 1}, {0, 2, 1, 3}};
  static const char* kNames[3] = {"rings4-a", "rings4-b", "rings4-c"};
  if (index < 0 || index > 2) {
    throw TopologyError(
        fmt::format("rotating_ring4: index must be 0, 1 or 2 (graphs a, b, c), got {}", index));
  }
  std::vector<Edge> edges;
  for (int k = 0; k < 4; ++k) {
    const int src = kOrders[index][k];
    const int dst = kOrders[index][(k + 1) % 4];
    const double send = src % 2 == 0 ? 1.0 / 2.0 : 1.0 / 3.0;
    edges.push_back({src, src, 1.0 - send});
    edges.push_back({src, dst, send});
  }
  return Graph(4, std::move(edges), kNames[index]);
}

std::pair<int, int> torus_shape(int n) {
  require_nodes(n, "torus_shape");
  int rows = 1;
  for (int r = 1; static_cast<int64_t>(r) * r <= n; ++r) {
    if (n % r == 0) rows = r;
  }
  return {rows, n / rows};
}

// ---- edge-list files --------------------------------------------------------------------------

namespace {

// At most this much of an offending line or token is quoted in an error message.
constexpr size_t kQuoteBytes = 80;

std::string quote(std::string_view s) {
  if (s.size() <= kQuoteBytes) return std::string(s);
  return fmt::format("{}... ({} bytes)", s.substr(0, kQuoteBytes), s.size());
}

// The one edge-list parser, fed a line at a time by parse_edge_list (text in memory) and
// load_edge_list (a file, read line by line). Nothing it allocates depends on a number in the
// file before that number is checked: the node count against kMaxTopologyNodes and the caller's
// count, node ids against the node count; a line costs one edge (views into the line, no copies
// beyond the kMaxTopologyLine bytes of a weight token).
class EdgeListParser {
 public:
  EdgeListParser(const std::string& source, int expected_nodes)
      : source_(source), expected_(expected_nodes) {}

  TopologyError fail(int line_no, const std::string& what) const {
    return TopologyError(fmt::format("topology file '{}' line {}: {}", source_, line_no, what));
  }

  void line(std::string_view raw, int line_no) {
    if (raw.size() > kMaxTopologyLine) {
      throw fail(line_no,
                 fmt::format("line of {} bytes, expected at most {} (not a topology file?)",
                             raw.size(), kMaxTopologyLine));
    }
    const std::string_view line = trim_view(raw.substr(0, raw.find('#')));
    if (line.empty()) return;
    std::string_view tok[4];
    size_t ntok = 0;
    for (size_t pos = 0; ntok < 4;) {
      pos = line.find_first_not_of(" \t\r\n\v\f", pos);
      if (pos == std::string_view::npos) break;
      const size_t end = std::min(line.find_first_of(" \t\r\n\v\f", pos), line.size());
      tok[ntok++] = line.substr(pos, end - pos);
      pos = end;
    }
    if (n_ == 0) {
      if (ntok != 2 || tok[0] != "nodes") {
        throw fail(
            line_no,
            fmt::format("expected 'nodes N' as the first non-comment line, got '{}'", quote(line)));
      }
      int n = 0;
      if (!parse_int(tok[1], &n) || n < 1) {
        throw fail(line_no,
                   fmt::format("node count '{}' is not a positive integer", quote(tok[1])));
      }
      if (n > kMaxTopologyNodes) {
        throw fail(line_no, fmt::format("node count {} exceeds the limit of {} nodes", n,
                                        kMaxTopologyNodes));
      }
      if (expected_ > 0 && n != expected_) {
        throw fail(line_no, fmt::format("the file has {} nodes, expected {} (the run's node count)",
                                        n, expected_));
      }
      n_ = n;
      return;
    }
    if (ntok != 3) {
      throw fail(line_no, fmt::format("expected 'src dst weight', got '{}'", quote(line)));
    }
    int src = 0, dst = 0;
    double w = 0;
    if (!parse_int(tok[0], &src) || !parse_int(tok[1], &dst)) {
      throw fail(line_no, fmt::format("node ids must be integers, got '{}'", quote(line)));
    }
    if (!parse_double(std::string(tok[2]), &w) || !std::isfinite(w)) {
      throw fail(line_no, fmt::format("weight '{}' is not a finite number", quote(tok[2])));
    }
    if (src < 0 || src >= n_ || dst < 0 || dst >= n_) {
      throw fail(line_no, fmt::format("edge {} -> {}: node out of range [0, {})", src, dst, n_));
    }
    if (w < 0) {
      throw fail(line_no,
                 fmt::format("edge {} -> {}: negative weight {} (expected >= 0)", src, dst, w));
    }
    auto [it, inserted] = edge_line_.emplace(std::pair{src, dst}, line_no);
    if (!inserted) {
      throw fail(line_no, fmt::format("duplicate edge {} -> {} (first given on line {})", src, dst,
                                      it->second));
    }
    edges_.push_back({src, dst, w});
  }

  Graph finish() {
    if (n_ == 0) {
      throw TopologyError(
          fmt::format("topology file '{}': no 'nodes N' line (expected it as the first "
                      "non-comment line)",
                      source_));
    }
    // Missing self-loops keep what the node does not send.
    std::vector<double> out_sum(n_, 0.0);
    std::vector<bool> has_self(n_, false);
    std::vector<int> last_line(n_, 0);
    for (const Edge& e : edges_) {
      out_sum[e.src] += e.weight;
      has_self[e.src] = has_self[e.src] || e.src == e.dst;
      last_line[e.src] = std::max(last_line[e.src], edge_line_.at({e.src, e.dst}));
    }
    for (int i = 0; i < n_; ++i) {
      if (has_self[i]) continue;
      if (out_sum[i] > 1.0 + kTol) {
        throw fail(last_line[i], fmt::format("out-weights of node {} sum to {:.9g} > 1, nothing is "
                                             "left for its self-loop",
                                             i, out_sum[i]));
      }
      edges_.push_back({i, i, std::max(0.0, 1.0 - out_sum[i])});
    }
    Graph g(n_, std::move(edges_), "file:" + source_);
    try {
      g.validate();
    } catch (const TopologyError& e) {
      throw TopologyError(fmt::format("topology file '{}': {}", source_, e.what()));
    }
    return g;
  }

 private:
  static std::string_view trim_view(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n\v\f");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n\v\f");
    return s.substr(b, e - b + 1);
  }

  const std::string& source_;
  int expected_;
  int n_ = 0;
  std::vector<Edge> edges_;
  std::map<std::pair<int, int>, int> edge_line_;  // (src, dst) -> line it was defined on
};

}  // namespace

Graph parse_edge_list(std::string_view text, const std::string& source, int expected_nodes) {
  EdgeListParser parser(source, expected_nodes);
  int line_no = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    parser.line(text.substr(0, end), ++line_no);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return parser.finish();
}

Graph load_edge_list(const std::string& path, int expected_nodes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw TopologyError(fmt::format("topology file '{}': cannot open for reading", path));
  }
  EdgeListParser parser(path, expected_nodes);
  // One line at a time into a fixed buffer: a line one byte longer than the limit is read whole
  // (and rejected by the parser), a longer one is cut there and rejected as well.
  std::vector<char> buf(kMaxTopologyLine + 2);
  for (int line_no = 1;; ++line_no) {
    in.getline(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (in.bad()) throw parser.fail(line_no, "read error");
    if (got == 0 && in.eof()) break;
    if (in.fail() && !in.eof()) {  // buffer full before the end of the line
      throw parser.fail(line_no, fmt::format("line longer than {} bytes (not a topology file?)",
                                             kMaxTopologyLine));
    }
    // gcount() counts the '\n' that getline consumed (every line but a last one without it).
    const size_t len = in.eof() ? got : got - 1;
    parser.line(std::string_view(buf.data(), len), line_no);
    if (in.eof()) break;
  }
  return parser.finish();
}

// ---- Schedule ---------------------------------------------------------------------------------

Schedule::Schedule(std::vector<Graph> graphs, int64_t period, PeriodUnit unit, double failure_prob,
                   uint64_t seed)
    : graphs_(std::move(graphs)),
      period_(period),
      unit_(unit),
      failure_prob_(failure_prob),
      seed_(seed) {
  if (graphs_.empty()) throw TopologyError("schedule: the graph list is empty");
  if (period_ < 1) {
    throw TopologyError(fmt::format("schedule: period must be >= 1, got {}", period_));
  }
}

// Not thread safe: with failures the result lives in failed_, overwritten by the next call.
const Graph& Schedule::graph(int64_t iteration, int64_t epoch) const {
  const int64_t t = unit_ == PeriodUnit::kEpochs ? epoch : iteration;
  const Graph& base =
      graphs_[floor_mod(floor_div(t, period_), static_cast<int64_t>(graphs_.size()))];
  if (failure_prob_ <= 0) return base;
  const int n = base.nodes();
  std::vector<Edge> edges;
  std::vector<double> self(n, 0.0);
  for (const Edge& e : base.edges()) {
    if (e.src == e.dst) {
      self[e.src] += e.weight;
    } else if (edge_uniform(seed_, iteration, e.src, e.dst) < failure_prob_) {
      self[e.src] += e.weight;  // the sender keeps what it could not send
    } else {
      edges.push_back(e);
    }
  }
  for (int i = 0; i < n; ++i) edges.push_back({i, i, self[i]});
  failed_ = Graph(n, std::move(edges),
                  fmt::format("{} (link failures p={:g}, iteration {})", base.name(), failure_prob_,
                              iteration));
  return failed_;
}

bool Schedule::doubly_stochastic() const {
  if (failure_prob_ > 0) return false;  // failed sends break the symmetry
  for (const Graph& g : graphs_) {
    const int n = g.nodes();
    const std::vector<double> p = g.dense();
    for (int i = 0; i < n; ++i) {
      double row = 0, col = 0;
      for (int j = 0; j < n; ++j) {
        if (std::abs(p[i * n + j] - p[j * n + i]) > kTol) return false;
        row += p[i * n + j];
        col += p[j * n + i];
      }
      if (std::abs(row - 1) > kTol || std::abs(col - 1) > kTol) return false;
    }
  }
  return true;
}

void Schedule::validate() const {
  if (!(failure_prob_ >= 0 && failure_prob_ < 1)) {
    throw TopologyError(
        fmt::format("schedule: link failure probability must be in [0, 1), got {}", failure_prob_));
  }
  const int n = graphs_.front().nodes();
  for (size_t k = 0; k < graphs_.size(); ++k) {
    const Graph& g = graphs_[k];
    if (g.nodes() != n) {
      throw TopologyError(fmt::format(
          "schedule: graph {} '{}' has {} nodes, graph 0 '{}' has {} (all must be equal)", k,
          g.name(), g.nodes(), graphs_.front().name(), n));
    }
    try {
      g.validate();
    } catch (const TopologyError& e) {
      throw TopologyError(fmt::format("schedule: graph {}: {}", k, e.what()));
    }
  }
  std::vector<std::vector<int>> fwd(n), rev(n);
  for (const Graph& g : graphs_) {
    for (const Edge& e : g.edges()) {
      if (e.src == e.dst || e.weight <= 0) continue;
      fwd[e.src].push_back(e.dst);
      rev[e.dst].push_back(e.src);
    }
  }
  const std::vector<bool> from0 = reachable(n, fwd), to0 = reachable(n, rev);
  for (int i = 0; i < n; ++i) {
    if (!from0[i] || !to0[i]) {
      throw TopologyError(fmt::format(
          "schedule '{}': the union of its graphs over one period is not strongly connected "
          "(node {} {} node 0)",
          describe(), i, !from0[i] ? "cannot be reached from" : "cannot reach"));
    }
  }
}

std::string Schedule::describe() const {
  std::string names;
  for (size_t k = 0; k < graphs_.size(); ++k) {
    names += (k ? ", " : "") + graphs_[k].name();
  }
  std::string s;
  if (graphs_.size() == 1) {
    s = fmt::format("{}, {} nodes, static", names, nodes());
  } else {
    s = fmt::format("{} graphs [{}] rotated every {} {}, {} nodes", graphs_.size(), names, period_,
                    unit_ == PeriodUnit::kEpochs ? "epoch(s)" : "iteration(s)", nodes());
  }
  if (failure_prob_ > 0) {
    s += fmt::format(", link failure p={:g} seed={}", failure_prob_, seed_);
  }
  return s;
}

// ---- spec parsing -----------------------------------------------------------------------------

Schedule make_schedule(const TopologySpec& spec) {
  const int n = spec.nodes;
  auto bad = [&](const std::string& what) {
    return TopologyError(fmt::format("topology '{}' with {} nodes: {}", spec.name, n, what));
  };
  if (n < 1) throw bad("node count must be >= 1");
  if (spec.period < 1) throw bad(fmt::format("period must be >= 1, got {}", spec.period));

  std::vector<std::string> items;
  {
    std::string rest = spec.name;
    size_t pos;
    // "file:PATH" items may not contain commas; everything is split on ','.
    while ((pos = rest.find(',')) != std::string::npos) {
      items.push_back(trim(rest.substr(0, pos)));
      rest = rest.substr(pos + 1);
    }
    items.push_back(trim(rest));
  }

  std::vector<Graph> graphs;
  int64_t period = spec.period;
  PeriodUnit unit = spec.unit;
  for (const std::string& item : items) {
    if (item.empty()) throw bad("empty entry in the topology list");
    if (item == "ring") {
      graphs.push_back(directed_ring(n));
    } else if (item == "bidir-ring") {
      graphs.push_back(bidirectional_ring(n));
    } else if (item == "torus") {
      const auto [r, c] = torus_shape(n);
      graphs.push_back(torus(r, c));
    } else if (item.rfind("torus:", 0) == 0) {
      const std::string shape = item.substr(6);
      const size_t x = shape.find('x');
      int r = 0, c = 0;
      if (x == std::string::npos || !parse_int(std::string_view(shape).substr(0, x), &r) ||
          !parse_int(std::string_view(shape).substr(x + 1), &c) || r < 1 || c < 1) {
        throw bad(fmt::format("'{}': expected torus:RxC with positive integers R, C", item));
      }
      if (static_cast<int64_t>(r) * c != n) {
        throw bad(fmt::format("'{}': R*C = {} must equal the node count {}", item,
                              static_cast<int64_t>(r) * c, n));
      }
      graphs.push_back(torus(r, c));
    } else if (item == "exponential") {
      if (items.size() != 1) {
        throw bad(
            "'exponential' is its own schedule (one hop per iteration) and cannot be "
            "combined with other graphs in a list");
      }
      if (!is_power_of_two(n)) {
        throw bad("'exponential' needs a power-of-2 node count (1, 2, 4, 8, ...)");
      }
      const int k = std::max(1, log2_exact(n));
      for (int round = 0; round < k; ++round) graphs.push_back(exponential_graph(n, round));
      period = 1;  // one hop per iteration, whatever the spec's period says
      unit = PeriodUnit::kIterations;
    } else if (item == "full") {
      graphs.push_back(fully_connected(n));
    } else if (item == "rings4" || item == "rings4-3") {
      if (n != 4) throw bad(fmt::format("'{}' is defined for exactly 4 nodes", item));
      const int count = item == "rings4" ? 2 : 3;
      for (int k = 0; k < count; ++k) graphs.push_back(rotating_ring4(k));
    } else if (item.rfind("file:", 0) == 0) {
      // The file's node count is checked against n before the graph is built.
      graphs.push_back(load_edge_list(item.substr(5), n));
    } else {
      throw bad(fmt::format(
          "unknown graph '{}' (expected ring, bidir-ring, torus, torus:RxC, exponential, full, "
          "rings4, rings4-3, file:PATH, or a comma-separated list of those)",
          item));
    }
  }
  Schedule s(std::move(graphs), period, unit, spec.failure_prob, spec.seed);
  try {
    s.validate();
  } catch (const TopologyError& e) {
    throw bad(e.what());
  }
  return s;
}

}  // namespace spush::runtime

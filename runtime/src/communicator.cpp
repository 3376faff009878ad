// The round logic every communicator shares (communicator.h): headers built for every out-edge
// of the local nodes and counted per edge, local edges delivered through an in-process channel,
// remote ones posted to the implementation, then every header validated in (dst, src) order;
// the node-level reductions built on the rank collectives; the `local` communicator; the
// factory and the launcher's environment.
#include "spush/runtime/communicator.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace spush::runtime {

static_assert(std::endian::native == std::endian::little,
              "the wire header is little-endian and is copied with memcpy");

void validate_header(const MessageHeader& h, uint64_t round, uint16_t kind, uint16_t codec,
                     uint32_t src, uint32_t dst, size_t payload_bytes) {
  auto fail = [&](const std::string& what) {
    throw CommError(fmt::format("message {} -> {} (round {}): {}", src, dst, round, what));
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
    fail(fmt::format("header payload length is {} bytes, expected {}", h.payload_bytes,
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

// ---- Communicator ---------------------------------------------------------------------------

Communicator::Communicator(int world_nodes, int ranks, int rank, CommOptions options)
    : n_(world_nodes), ranks_(ranks), rank_(rank), options_(options) {
  if (ranks < 1 || rank < 0 || rank >= ranks)
    throw std::invalid_argument(fmt::format("communicator: rank {} of {} ranks", rank, ranks));
  if (world_nodes < ranks)
    throw std::invalid_argument(fmt::format(
        "{} nodes cannot be split over {} ranks: every rank needs at least one node (use at most "
        "{} ranks, or more nodes)",
        world_nodes, ranks, world_nodes));
  if (!(options.timeout_seconds > 0) || !std::isfinite(options.timeout_seconds))
    throw std::invalid_argument(
        fmt::format("communicator: timeout {} s, expected a finite number of seconds > 0",
                    options.timeout_seconds));
}

Communicator::~Communicator() = default;

int Communicator::first_of(int rank) const {
  return static_cast<int>(static_cast<int64_t>(rank) * n_ / ranks_);
}

int Communicator::rank_of(int node) const {
  if (node < 0 || node >= n_)
    throw std::out_of_range(fmt::format("node {} is outside [0, {})", node, n_));
  // The largest r with first_of(r) <= node.
  int r = static_cast<int>((static_cast<int64_t>(node) * ranks_ + ranks_ - 1) / n_);
  while (r > 0 && first_of(r) > node) --r;
  while (r + 1 < ranks_ && first_of(r + 1) <= node) ++r;
  return r;
}

std::string Communicator::describe_rank(int rank) const {
  const int a = first_of(rank), b = first_of(rank + 1) - 1;
  return a == b ? fmt::format("rank {} (node {})", rank, a)
                : fmt::format("rank {} (nodes {}..{})", rank, a, b);
}

std::chrono::steady_clock::time_point Communicator::deadline() const {
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
             std::chrono::duration<double>(options_.timeout_seconds));
}

size_t Communicator::remote_in_edges(const Graph& g) const {
  size_t count = 0;
  for (const Edge& e : g.edges())
    if (e.src != e.dst && is_local(e.dst) && !is_local(e.src)) ++count;
  return count;
}

void Communicator::start_round(const Graph& g, const RoundMessages& m) {
  if (graph_) throw std::logic_error("communicator: a round is already in progress");
  if (g.nodes() != n_)
    throw std::invalid_argument(fmt::format(
        "{} communicator: graph '{}' has {} nodes, the world {}", name(), g.name(), g.nodes(), n_));
  if (m.payload_bytes > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument(
        fmt::format("{} communicator: payload of {} bytes exceeds the 32-bit header length", name(),
                    m.payload_bytes));
  if (m.pitch < m.payload_bytes || (m.payload_bytes > 0 && !m.send) || !m.u)
    throw std::invalid_argument(fmt::format(
        "{} communicator: need a send matrix with pitch >= {} bytes (got {}) and push-sum weights",
        name(), m.payload_bytes, m.pitch));
  if (observer_) observer_(g, m);
  const int first = first_local();
  const std::vector<Edge>& edges = g.edges();
  channel_.resize(edges.size());
  filled_.assign(edges.size(), 0);
  sends_.clear();
  recvs_.clear();
  // Sends: a header per out-edge of every local node, counted per edge; local receivers get it
  // through the channel, remote ones through post(). g.edges() is sorted by (dst, src), so the
  // sends to one rank come in the order that rank lists its receives.
  for (size_t k = 0; k < edges.size(); ++k) {
    const Edge& e = edges[k];
    if (e.src == e.dst || !is_local(e.src)) continue;
    MessageHeader h;
    h.kind = static_cast<uint16_t>(m.kind);
    h.codec = m.codec;
    h.src = static_cast<uint32_t>(e.src);
    h.dst = static_cast<uint32_t>(e.dst);
    h.payload_bytes = static_cast<uint32_t>(m.payload_bytes);
    h.round = m.round;
    h.weight = static_cast<float>(e.weight);
    h.u = m.u[e.src - first];
    bytes_.add(e.src, e.dst, sizeof(MessageHeader) + m.payload_bytes);
    if (is_local(e.dst)) {
      std::memcpy(&channel_[k], &h, sizeof(h));
      filled_[k] = 1;
    } else {
      Remote s;
      s.src = e.src;
      s.dst = e.dst;
      s.peer = rank_of(e.dst);
      s.header = h;
      s.send = m.send + static_cast<size_t>(e.src - first) * m.pitch;
      s.payload_bytes = m.payload_bytes;
      sends_.push_back(s);
    }
  }
  // Receives from other ranks, in (dst, src) order.
  for (const Edge& e : edges) {
    if (e.src == e.dst || !is_local(e.dst) || is_local(e.src)) continue;
    if (recvs_.size() >= m.recv_rows)
      throw std::logic_error(
          fmt::format("{} communicator: round {} needs more than the {} receive rows given", name(),
                      m.round, m.recv_rows));
    Remote r;
    r.src = e.src;
    r.dst = e.dst;
    r.peer = rank_of(e.src);
    r.recv = m.recv + recvs_.size() * m.pitch;
    r.payload_bytes = m.payload_bytes;
    recvs_.push_back(r);
  }
  graph_ = &g;
  msg_ = m;
  try {
    post(sends_, recvs_);
  } catch (...) {
    graph_ = nullptr;
    throw;
  }
}

const Inbox& Communicator::finish_round() {
  if (!graph_) throw std::logic_error("communicator: finish_round without start_round");
  const Graph& g = *graph_;
  graph_ = nullptr;
  wait_posted();
  const int first = first_local(), local = local_nodes();
  inbox_.resize(static_cast<size_t>(local));
  for (auto& box : inbox_) box.clear();
  const std::vector<Edge>& edges = g.edges();
  size_t next_recv = 0;
  for (size_t k = 0; k < edges.size(); ++k) {
    const Edge& e = edges[k];
    if (e.src == e.dst || !is_local(e.dst)) continue;
    MessageHeader h;
    int64_t row = 0;
    size_t arrived = msg_.payload_bytes;
    if (is_local(e.src)) {
      if (!filled_[k])
        throw CommError(fmt::format("node {} expected a message from {} in round {}, none was sent",
                                    e.dst, e.src, msg_.round));
      std::memcpy(&h, &channel_[k], sizeof(h));
      row = e.src - first;
    } else {
      const Remote& r = recvs_[next_recv];
      if (r.src != e.src || r.dst != e.dst)
        throw std::logic_error("communicator: receive list out of order");
      h = r.header;
      arrived = r.payload_bytes;
      row = local + static_cast<int64_t>(next_recv);
      ++next_recv;
    }
    validate_header(h, msg_.round, static_cast<uint16_t>(msg_.kind), msg_.codec,
                    static_cast<uint32_t>(e.src), static_cast<uint32_t>(e.dst), msg_.payload_bytes);
    if (arrived != msg_.payload_bytes)
      throw CommError(
          fmt::format("message {} -> {} (round {}): {} payload bytes arrived, "
                      "expected {}",
                      e.src, e.dst, msg_.round, arrived, msg_.payload_bytes));
    Incoming in;
    in.src = e.src;
    in.dst = e.dst;
    in.weight = h.weight;
    in.u = h.u;
    in.row = row;
    inbox_[static_cast<size_t>(e.dst - first)].push_back(in);
  }
  return inbox_;
}

const Communicator::Gathered& Communicator::gather_round(
    uint64_t round, MessageKind kind, uint16_t codec,
    const std::vector<std::vector<uint8_t>>& local_payloads) {
  if (static_cast<int>(local_payloads.size()) != local_nodes())
    throw std::invalid_argument(
        fmt::format("gather_round: {} payloads, expected one per local "
                    "node ({})",
                    local_payloads.size(), local_nodes()));
  const int first = first_local();
  std::vector<uint64_t> mine(local_payloads.size()), sizes(static_cast<size_t>(n_));
  for (size_t r = 0; r < local_payloads.size(); ++r) {
    if (local_payloads[r].size() > std::numeric_limits<uint32_t>::max())
      throw std::invalid_argument(
          fmt::format("gather_round: node {} payload of {} bytes exceeds the 32-bit header length",
                      first + static_cast<int>(r), local_payloads[r].size()));
    mine[r] = local_payloads[r].size();
  }
  allgather_nodes(mine.data(), sizeof(uint64_t), sizes.data());
  uint64_t most = 0;
  for (uint64_t b : sizes) most = std::max(most, b);
  if (most > std::numeric_limits<uint32_t>::max())
    throw CommError(
        fmt::format("gather_round (round {}): a node announced {} payload bytes, more "
                    "than a header can describe",
                    round, most));
  // One block per node: the header, then the payload padded to the largest one.
  const size_t block = sizeof(MessageHeader) + static_cast<size_t>(most);
  std::vector<uint8_t> local(block * local_payloads.size(), 0);
  for (size_t r = 0; r < local_payloads.size(); ++r) {
    MessageHeader h;
    h.kind = static_cast<uint16_t>(kind);
    h.codec = codec;
    h.src = static_cast<uint32_t>(first + static_cast<int>(r));
    h.dst = static_cast<uint32_t>(kServer);
    h.payload_bytes = static_cast<uint32_t>(local_payloads[r].size());
    h.round = round;
    h.weight = 1.0f;
    h.u = 1.0f;
    std::memcpy(local.data() + r * block, &h, sizeof(h));
    if (!local_payloads[r].empty())
      std::memcpy(local.data() + r * block + sizeof(h), local_payloads[r].data(),
                  local_payloads[r].size());
    if (!local_payloads[r].empty())  // a node with nothing to say sends nothing
      bytes_.add(first + static_cast<int>(r), kServer, sizeof(h) + local_payloads[r].size());
  }
  std::vector<uint8_t> all(block * static_cast<size_t>(n_));
  allgather_nodes(local.data(), block, all.data());
  gathered_.data.resize(static_cast<size_t>(most) * static_cast<size_t>(n_));
  gathered_.offset.assign(static_cast<size_t>(n_), 0);
  gathered_.bytes.assign(static_cast<size_t>(n_), 0);
  size_t at = 0;
  for (int i = 0; i < n_; ++i) {
    MessageHeader h;
    std::memcpy(&h, all.data() + static_cast<size_t>(i) * block, sizeof(h));
    validate_header(h, round, static_cast<uint16_t>(kind), codec, static_cast<uint32_t>(i),
                    static_cast<uint32_t>(kServer), static_cast<size_t>(sizes[i]));
    gathered_.offset[i] = at;
    gathered_.bytes[i] = static_cast<size_t>(sizes[i]);
    if (sizes[i])
      std::memcpy(gathered_.data.data() + at,
                  all.data() + static_cast<size_t>(i) * block + sizeof(h),
                  static_cast<size_t>(sizes[i]));
    at += static_cast<size_t>(sizes[i]);
  }
  return gathered_;
}

void Communicator::count_reply(const std::vector<size_t>& payload_bytes) {
  if (static_cast<int>(payload_bytes.size()) != local_nodes())
    throw std::invalid_argument("count_reply: one length per local node expected");
  for (size_t r = 0; r < payload_bytes.size(); ++r)
    bytes_.add(kServer, first_local() + static_cast<int>(r),
               sizeof(MessageHeader) + payload_bytes[r]);
}

void Communicator::allgather_nodes(const void* local_rows, size_t bytes_per_node, void* all_rows) {
  int most = 0;
  for (int r = 0; r < ranks_; ++r) most = std::max(most, count_of(r));
  const size_t block = static_cast<size_t>(most) * bytes_per_node;
  if (ranks_ == 1) {
    if (block) std::memcpy(all_rows, local_rows, block);
    return;
  }
  std::vector<uint8_t> mine(block, 0), all(block * static_cast<size_t>(ranks_));
  if (local_nodes() > 0 && bytes_per_node)
    std::memcpy(mine.data(), local_rows, static_cast<size_t>(local_nodes()) * bytes_per_node);
  allgather_ranks(mine.data(), block, all.data());
  auto* out = static_cast<uint8_t*>(all_rows);
  for (int r = 0; r < ranks_; ++r) {
    const size_t n = static_cast<size_t>(count_of(r)) * bytes_per_node;
    if (n)
      std::memcpy(out + static_cast<size_t>(first_of(r)) * bytes_per_node,
                  all.data() + static_cast<size_t>(r) * block, n);
  }
}

void Communicator::allreduce_sum(double* rows, int64_t n) {
  if (n < 0) throw std::invalid_argument(fmt::format("allreduce_sum: n = {} < 0", n));
  if (n == 0) return;
  std::vector<double> all(static_cast<size_t>(n_) * static_cast<size_t>(n));
  allgather_nodes(rows, sizeof(double) * static_cast<size_t>(n), all.data());
  std::vector<double> sum(static_cast<size_t>(n), 0.0);
  for (int i = 0; i < n_; ++i) {
    const double* row = all.data() + static_cast<size_t>(i) * static_cast<size_t>(n);
    for (int64_t k = 0; k < n; ++k) sum[k] += row[k];
  }
  for (int r = 0; r < local_nodes(); ++r)
    std::copy(sum.begin(), sum.end(), rows + static_cast<int64_t>(r) * n);
}

double Communicator::sum_over_nodes(const double* local) {
  std::vector<double> all(static_cast<size_t>(n_));
  allgather_nodes(local, sizeof(double), all.data());
  double s = 0;
  for (double v : all) s += v;
  return s;
}

double Communicator::sum_over_ranks(double v) {
  std::vector<double> all(static_cast<size_t>(ranks_));
  allgather_ranks(&v, sizeof(double), all.data());
  double s = 0;
  for (double x : all) s += x;
  return s;
}

std::string Communicator::agree(const std::string& error) {
  // A fixed-size record per rank: a flag and the start of the message.
  constexpr size_t kText = 2000;
  std::vector<char> mine(kText + 1, 0), all((kText + 1) * static_cast<size_t>(ranks_));
  mine[0] = error.empty() ? 0 : 1;
  std::memcpy(mine.data() + 1, error.data(), std::min(error.size(), kText - 1));
  allgather_ranks(mine.data(), mine.size(), all.data());
  for (int r = 0; r < ranks_; ++r) {
    const char* rec = all.data() + static_cast<size_t>(r) * (kText + 1);
    if (rec[0]) {
      const std::string text(rec + 1, strnlen(rec + 1, kText - 1));
      return ranks_ == 1 ? text : fmt::format("rank {}: {}", r, text);
    }
  }
  return "";
}

// ---- local -----------------------------------------------------------------------------------

namespace {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(int nodes) : Communicator(nodes, 1, 0, CommOptions{}) {}
  std::string name() const override { return "local"; }
  bool accepts(kernels::MemoryKind) const override { return true; }
  void allgather_ranks(const void* mine, size_t bytes, void* all) override {
    if (bytes) std::memcpy(all, mine, bytes);
  }
  void broadcast(void*, size_t, int root) override {
    if (root != 0) throw std::invalid_argument(fmt::format("broadcast: root rank {} of 1", root));
  }
  void barrier() override {}
  void abort(int) noexcept override {}

 protected:
  void post(std::vector<Remote>& sends, std::vector<Remote>& recvs) override {
    if (!sends.empty() || !recvs.empty())
      throw std::logic_error("local communicator: a message to another rank");
  }
  void wait_posted() override {}
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return end && *end == 0 && x >= 0 && x < (1L << 30) ? static_cast<int>(x) : fallback;
}

}  // namespace

std::unique_ptr<Communicator> make_local_communicator(int world_nodes) {
  if (world_nodes < 1)
    throw std::invalid_argument(
        fmt::format("local communicator: nodes must be >= 1, got {}", world_nodes));
  return std::make_unique<LocalCommunicator>(world_nodes);
}

LaunchInfo launch_info() {
  LaunchInfo info;
  // Open MPI's mpirun, then the PMI variables of MPICH's and Slurm's launchers.
  const int size = env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", env_int("PMIX_SIZE", -1)));
  if (size < 1) return info;
  info.launched = true;
  info.size = size;
  info.rank = env_int("OMPI_COMM_WORLD_RANK", env_int("PMI_RANK", env_int("PMIX_RANK", 0)));
  info.local_size =
      std::max(1, env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("MPI_LOCALNRANKS", 1)));
  return info;
}

void apply_threads(int threads) {
  if (threads > 0) {
    omp_set_num_threads(threads);
    return;
  }
  if (std::getenv("OMP_NUM_THREADS")) return;
  const int share = launch_info().local_size;
  if (share > 1) omp_set_num_threads(std::max(1, omp_get_num_procs() / share));
}

std::unique_ptr<Communicator> make_communicator(const std::string& kind, int world_nodes,
                                                const CommOptions& options) {
  const LaunchInfo launch = launch_info();
  if (kind == "local") {
    if (launch.launched && launch.size > 1)
      throw std::invalid_argument(fmt::format(
          "transport local: this process was started by an MPI launcher with {} ranks, and each "
          "would run every node on its own; use --transport mpi (or auto)",
          launch.size));
    return make_local_communicator(world_nodes);
  }
  if (kind == "mpi") return make_mpi_communicator(world_nodes, options);
  if (kind == "auto")
    return launch.launched && launch.size > 1 ? make_mpi_communicator(world_nodes, options)
                                              : make_local_communicator(world_nodes);
  throw std::invalid_argument(
      fmt::format("unknown transport '{}': expected local, mpi or auto", kind));
}

}  // namespace spush::runtime

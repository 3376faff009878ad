// The communicator: how the nodes of a run talk, whatever process or machine hosts them.
//
// The world is n nodes 0..n-1. A process (rank) hosts a contiguous block of them, the blocks
// of ranks 0, 1, ... in order, split as evenly as possible (rank r hosts [r n / R, (r+1) n / R)).
// Every rank knows which rank hosts each node. The operations:
//
//  - A gossip round (start_round / finish_round, or exchange): every local node sends one
//    payload, the same to each of its out-neighbours in the round's graph, with a 40-byte header
//    (round, kind, codec, src, dst, length, the weight P[dst][src] the sender gives the edge and
//    the sender's push-sum weight u). start_round posts every send and receive and returns;
//    finish_round waits for them, validates every header against what the receiver expects
//    (CommError naming the edge when one does not match) and returns each local node's inbox,
//    sorted by sender. Payloads never change memory kind: a node's payload is row r of the
//    caller's send matrix, and a message from another rank lands in a row of the caller's
//    receive matrix, both in the caller's backend memory. Bytes (header + payload) are counted
//    per directed edge by the sending rank, the same way in every implementation.
//  - Collectives over ranks, with which the node-level reductions below are built:
//    allgather_ranks, broadcast, barrier. Node-level sums are taken in node order in double, so
//    a reduction gives the same bits whatever the number of ranks.
//  - A centralized round (gather_round): every local node's payload, with a header addressed to
//    the parameter server (dst kServer), reaches every rank; every rank checks every header and
//    then plays the server itself (the same reduction in node order on every rank), so the
//    server's reply is never sent: count_reply() counts what a server would send each node.
//    Uplink bytes are counted on the edge (node, kServer), downlink on (kServer, node).
//  - agree(): every rank learns whether any rank failed a step, and with which message.
// Every rank must make the same sequence of rounds and collectives: a rank that leaves it (an
// error) must end the job with abort(), or the others wait for it until they time out.
// A rank computing for longer than half the timeout between communicator calls must call
// poll() now and then, or it is taken for a lost one.
//
// Implementations (make_communicator):
//  - `local`: one rank hosting every node; messages between local nodes never leave the
//    caller's matrices (host or device memory): only their headers are built and checked.
//  - `mpi`: one process per rank, started by mpirun (one or many machines); host memory.
//    Messages between ranks are MPI point-to-point messages posted non-blocking; every wait is
//    bounded by the timeout, so a rank that died or stopped answering makes the others fail
//    with a CommError naming it instead of waiting forever.
//  - `nccl` (later) fits the same interface: one GPU per rank, send / receive matrices in
//    device memory, post_send / post_recv as grouped ncclSend / ncclRecv on the backend's stream
//    (ncclGroupStart in start_round, ncclGroupEnd before returning), the headers alongside as
//    small device buffers copied to the host in finish_round for the same validation, and the
//    rank collectives through MPI (which also broadcasts the NCCL unique id). Messages between
//    nodes of one GPU stay device-local exactly as in `local`.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spush/kernels/backend.h"
#include "spush/runtime/topology.h"

namespace spush::runtime {

// A communication failure: a lost or silent rank, a message that does not match its header.
struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a message carries (the header's `kind` field).
enum class MessageKind : uint16_t { kModel = 1, kPublicUpdate = 2, kDense = 3, kControl = 4 };

// Fixed 40-byte little-endian header in front of every payload.
struct MessageHeader {
  static constexpr uint32_t kMagic = 0x48535053;  // "SPSH"
  static constexpr uint16_t kVersion = 1;
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint16_t kind = 0;   // MessageKind
  uint16_t codec = 0;  // compressor kind * 16 + index codec (wire_codec_id in engine.cpp)
  uint16_t reserved = 0;
  uint32_t src = 0;  // sending node
  uint32_t dst = 0;  // receiving node
  uint32_t payload_bytes = 0;
  uint64_t round = 0;
  float weight = 0;  // P[dst][src]
  float u = 0;       // sender's push-sum weight
};
static_assert(sizeof(MessageHeader) == 40, "MessageHeader must be 40 bytes");

// Throws CommError naming the edge and the field when the header is not what the receiver
// expects (payload_bytes: the payload length both ends know from the round).
void validate_header(const MessageHeader& h, uint64_t round, uint16_t kind, uint16_t codec,
                     uint32_t src, uint32_t dst, size_t payload_bytes);

// Bytes per directed edge (src, dst), cumulative.
class ByteCounter {
 public:
  void add(int src, int dst, uint64_t bytes) {
    edges_[{src, dst}] += bytes;
    total_ += bytes;
  }
  uint64_t edge(int src, int dst) const;
  uint64_t total() const { return total_; }
  const std::map<std::pair<int, int>, uint64_t>& edges() const { return edges_; }
  void reset() {
    edges_.clear();
    total_ = 0;
  }

 private:
  std::map<std::pair<int, int>, uint64_t> edges_;
  uint64_t total_ = 0;
};

// One gossip round's messages, as the sender lays them out.
struct RoundMessages {
  uint64_t round = 0;
  MessageKind kind = MessageKind::kModel;
  uint16_t codec = 0;
  const float* u = nullptr;  // host [local_nodes]: the senders' push-sum weights
  // Backend memory. Local node r's payload: send + r * pitch (payload_bytes bytes).
  const uint8_t* send = nullptr;
  size_t payload_bytes = 0;
  size_t pitch = 0;
  // Backend memory with room for recv_rows payloads of `pitch` bytes: the messages from other
  // ranks land here (remote_in_edges() of the round's graph of them).
  uint8_t* recv = nullptr;
  size_t recv_rows = 0;
};

// A message delivered to a local node.
struct Incoming {
  int src = 0;
  int dst = 0;
  float weight = 0;  // P[dst][src] as the sender set it
  float u = 0;       // the sender's push-sum weight
  // Where the payload is: row < local_nodes(): the send matrix's row (the sender src is local,
  // row = src - first_local()); else row local_nodes() + j: the receive matrix's row j.
  int64_t row = 0;
};
using Inbox = std::vector<std::vector<Incoming>>;  // per local node, sorted by src

struct CommOptions {
  // How long any wait may last before the ranks that did not answer are declared lost.
  double timeout_seconds = 60;
};

class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual std::string name() const = 0;  // "local", "mpi"
  int world_nodes() const { return n_; }
  int ranks() const { return ranks_; }
  int rank() const { return rank_; }
  int first_local() const { return first_of(rank_); }
  int local_nodes() const { return count_of(rank_); }
  int first_of(int rank) const;
  int count_of(int rank) const { return first_of(rank + 1) - first_of(rank); }
  int rank_of(int node) const;
  bool is_local(int node) const { return rank_of(node) == rank_; }
  // Whether payloads in this kind of memory can be sent (mpi: host memory only).
  virtual bool accepts(kernels::MemoryKind memory) const = 0;
  const CommOptions& options() const { return options_; }

  // ---- gossip rounds ----------------------------------------------------------------------
  // Messages from other ranks to local nodes in g (the receive rows a round over g needs).
  size_t remote_in_edges(const Graph& g) const;
  // Posts the round's sends and receives (non-blocking); one round at a time.
  void start_round(const Graph& g, const RoundMessages& m);
  // Waits for them, validates every header and returns the inboxes (valid until the next
  // round). Throws CommError on a bad message or a rank that does not answer in time.
  const Inbox& finish_round();
  const Inbox& exchange(const Graph& g, const RoundMessages& m) {
    start_round(g, m);
    return finish_round();
  }
  ByteCounter& bytes() { return bytes_; }
  const ByteCounter& bytes() const { return bytes_; }
  // Called by start_round with the round's graph and messages before anything is sent (tests
  // check what the algorithms send through it; tools can trace rounds).
  using Observer = std::function<void(const Graph&, const RoundMessages&)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  // ---- centralized rounds (host memory) ------------------------------------------------------
  // The parameter server's node id in headers and byte counts.
  static constexpr int kServer = -1;
  // Every node's payload of a centralized round, in node order.
  struct Gathered {
    std::vector<uint8_t> data;
    std::vector<size_t> offset, bytes;  // per node: where its payload starts, its length
    const uint8_t* payload(int node) const { return data.data() + offset[node]; }
  };
  // Sends each local node's payload (local_payloads[r] for node first_local() + r; lengths may
  // differ) to every rank, checks every header (CommError naming the node on a mismatch) and
  // counts the uplink bytes (header + payload; nothing for an empty payload: that node sends
  // nothing). Collective. The result is valid until the next call.
  const Gathered& gather_round(uint64_t round, MessageKind kind, uint16_t codec,
                               const std::vector<std::vector<uint8_t>>& local_payloads);
  // Counts the server's reply of payload_bytes[r] bytes (plus its header) to local node r.
  void count_reply(const std::vector<size_t>& payload_bytes);

  // ---- collectives (host memory; every rank calls them in the same order) -----------------
  // all[k * bytes .. (k + 1) * bytes) = rank k's `mine`.
  virtual void allgather_ranks(const void* mine, size_t bytes, void* all) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // all [world_nodes x bytes_per_node], in node order, from each rank's [local_nodes x ...].
  void allgather_nodes(const void* local_rows, size_t bytes_per_node, void* all_rows);
  // rows: [local_nodes x n]; on return every row holds the sum over all nodes of the world,
  // taken in node order in double (the same bits for every number of ranks).
  void allreduce_sum(double* rows, int64_t n);
  // The sum over all nodes of one value per local node (local: [local_nodes]), node order.
  double sum_over_nodes(const double* local);
  // Sum over ranks of v (rank order, double).
  double sum_over_ranks(double v);
  // Collective: every rank passes its error ("" when it succeeded); every rank gets the first
  // failing rank's error as "rank r: ..." (just the message with one rank), or "".
  std::string agree(const std::string& error);
  // Answers other ranks' liveness queries (mpi); call it now and then during long computations
  // between communicator calls, so that a busy rank is not taken for a lost one.
  virtual void poll() {}
  // Ends the whole job (mpi: lets the other ranks learn of the failure for a moment, then
  // MPI_Abort with exit_code); a no-op for `local`, whose caller exits itself.
  virtual void abort(int exit_code) noexcept = 0;

 protected:
  Communicator(int world_nodes, int ranks, int rank, CommOptions options);

  // One message to or from another rank. The header travels first, then the payload.
  struct Remote {
    int src = 0, dst = 0;  // the edge
    int peer = 0;          // the other rank
    MessageHeader header;  // sends: filled; receives: filled by the implementation
    const uint8_t* send = nullptr;
    uint8_t* recv = nullptr;
    size_t payload_bytes = 0;
  };
  // Posts the round's messages to and from other ranks (non-blocking), in the order given,
  // which both ends of every pair of ranks list identically. A receive's payload_bytes is the
  // length expected; wait_posted() sets it to the length that arrived.
  virtual void post(std::vector<Remote>& sends, std::vector<Remote>& recvs) = 0;
  // Waits until every posted message has completed; throws CommError naming the ranks still
  // owing messages after the timeout, or a receive whose length differs from its header's.
  virtual void wait_posted() = 0;
  // "rank 2 (nodes 4..5)".
  std::string describe_rank(int rank) const;
  // The round being posted or waited for.
  uint64_t round_in_progress() const { return msg_.round; }
  std::chrono::steady_clock::time_point deadline() const;

 private:
  int n_, ranks_, rank_;
  CommOptions options_;
  ByteCounter bytes_;
  Observer observer_;
  // The round in progress.
  const Graph* graph_ = nullptr;
  RoundMessages msg_;
  std::vector<MessageHeader> channel_;  // local edges: the header of g.edges()[k]
  std::vector<char> filled_;
  std::vector<Remote> sends_, recvs_;
  Inbox inbox_;
  Gathered gathered_;
};

// The communicator of a run: "local", "mpi" (needs a build with MPI and a start by mpirun, or
// a single process), or "auto" (mpi when this process was started by mpirun with more than one
// rank, else local). world_nodes must be >= the number of ranks. Throws std::invalid_argument
// or CommError naming the problem.
std::unique_ptr<Communicator> make_communicator(const std::string& kind, int world_nodes,
                                                const CommOptions& options = {});
std::unique_ptr<Communicator> make_local_communicator(int world_nodes);
// The mpi communicator (make_communicator("mpi", ...)); throws std::invalid_argument in builds
// without MPI.
std::unique_ptr<Communicator> make_mpi_communicator(int world_nodes, const CommOptions& options);

// What the launcher (mpirun) says about this process, from its environment, before any MPI
// call: its rank and the job's size (0 and 1 when not started by a launcher), and how many
// ranks share this machine.
struct LaunchInfo {
  int rank = 0;
  int size = 1;
  int local_size = 1;
  bool launched = false;  // started by mpirun (or another MPI launcher)
};
LaunchInfo launch_info();
// True when this build can run the mpi communicator.
bool mpi_compiled();
// Sets this process's OpenMP threads: `threads` when > 0; else leaves OMP_NUM_THREADS when it
// is set; else the processors OpenMP sees, divided among the ranks the launcher started on this
// machine (at least 1), so that ranks sharing a machine do not oversubscribe it.
void apply_threads(int threads);

}  // namespace spush::runtime

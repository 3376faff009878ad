// Transports move encoded messages along the edges of the current graph round.
//
// A process hosts a contiguous block of nodes [first_local, first_local + local_nodes). In a
// round every local node i hands one payload to the transport; it is delivered to each
// out-neighbour j != i of the round's graph, together with the weight P[j][i] the sender
// assigns and the sender's push-sum weight u_i (sent uncompressed). Each local node receives
// one message from each in-neighbour. The `local` backend keeps everything in one process;
// the `mpi` and `nccl` backends implement the same interface across processes / GPUs.
// Every message has a fixed header that is validated on receipt, and every directed edge
// counts the bytes it carries (header + payload).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spush/runtime/topology.h"

namespace spush::runtime {

struct TransportError : std::runtime_error {
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
  uint16_t codec = 0;  // compressor kind * 16 + index codec, see algorithm.cpp
  uint16_t reserved = 0;
  uint32_t src = 0;  // sending node
  uint32_t dst = 0;  // receiving node
  uint32_t payload_bytes = 0;
  uint64_t round = 0;
  float weight = 0;  // P[dst][src]
  float u = 0;       // sender's push-sum weight
};
static_assert(sizeof(MessageHeader) == 40, "MessageHeader must be 40 bytes");

// Throws TransportError naming the field when the header is not what the receiver expects.
void validate_header(const MessageHeader& h, uint64_t round, uint16_t kind, uint16_t codec,
                     uint32_t src, uint32_t dst, size_t payload_bytes);

struct Outgoing {
  int node = 0;  // sending (local) node
  uint16_t kind = 0;
  uint16_t codec = 0;
  float u = 0;
  std::vector<uint8_t> payload;  // same payload to every out-neighbour
};

struct Incoming {
  int src = 0;
  int dst = 0;       // receiving (local) node
  float weight = 0;  // P[dst][src] as the sender set it
  float u = 0;
  std::vector<uint8_t> payload;
};

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

class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string name() const = 0;
  virtual int world_nodes() const = 0;
  virtual int first_local() const = 0;
  virtual int local_nodes() const = 0;
  // One gossip round over graph g. `out` holds one entry per local node that sends
  // (in any order). Returns, for each local node (index node - first_local()), the messages
  // from its in-neighbours (excluding itself), sorted by src. Headers are validated.
  virtual std::vector<std::vector<Incoming>> exchange(const Graph& g, uint64_t round,
                                                      const std::vector<Outgoing>& out) = 0;
  // Sum over all nodes of a per-node float vector: data is [local_nodes x n] row-major on
  // input; on output every row holds the sum over all world nodes.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  ByteCounter& bytes() { return bytes_; }
  const ByteCounter& bytes() const { return bytes_; }

 protected:
  ByteCounter bytes_;
};

// All nodes in this process; messages are serialized (header + payload) into host buffers,
// delivered, parsed and validated exactly as a remote backend would.
std::unique_ptr<Transport> make_local_transport(int nodes);

// A message whose payload stays in device memory.
struct DeviceIncoming {
  int src = 0;
  int dst = 0;
  float weight = 0;  // P[dst][src] as the sender set it
  float u = 0;
  const uint8_t* payload = nullptr;  // device pointer to the sender's payload
  size_t payload_bytes = 0;
};

// The `local` transport for node matrices held on one GPU: payloads never leave device memory.
// Node i writes its payload to row i of a wire matrix in device memory (row i at
// wire + i * pitch, the same payload for every out-neighbour); a round builds the 40-byte
// header of every edge of the graph, serializes it into that edge's host channel, and each
// receiver parses and validates the headers of its in-neighbours' channels as the host `local`
// transport does, counting header + payload bytes per edge, then receives the device address
// of the sender's payload. Pure host code: no CUDA call is made here.
class DeviceLocalTransport {
 public:
  explicit DeviceLocalTransport(int nodes);  // throws std::invalid_argument for nodes < 1
  std::string name() const { return "local (device memory)"; }
  int world_nodes() const { return n_; }
  int first_local() const { return 0; }
  int local_nodes() const { return n_; }
  // One round over g: every node sends payload_bytes bytes from wire + node * pitch with
  // push-sum weight u[node] (u: host array of world_nodes() floats). Returns, per node, the
  // messages of its in-neighbours (excluding itself), sorted by src. Headers are validated.
  std::vector<std::vector<DeviceIncoming>> exchange(const Graph& g, uint64_t round, uint16_t kind,
                                                    uint16_t codec, const float* u,
                                                    const uint8_t* wire, size_t pitch,
                                                    size_t payload_bytes);
  ByteCounter& bytes() { return bytes_; }
  const ByteCounter& bytes() const { return bytes_; }

 private:
  int n_;
  ByteCounter bytes_;
  std::vector<MessageHeader> channel_;  // header of each edge of the round, index as g.edges()
  std::vector<char> filled_;
};

}  // namespace spush::runtime

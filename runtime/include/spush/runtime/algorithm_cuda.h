// The push-sum gossip algorithms with the node matrix in GPU memory: the device twins of
// algorithm.h's SGP / D-PSGD, Deep-Squeeze, Sparse-Push and SCSP, for nodes simulated on one
// GPU. A round runs entirely on the device: fused error-feedback compression of all nodes
// (compress_cuda.h), encoding into a wire matrix (codec_cuda.h), the device-memory `local`
// transport (transport.h: headers and byte counts on the host, payloads in device memory),
// decoding, and one batched mixing call that also writes z = x / u (mixing_cuda.h). The host
// only builds the round's mixing terms and the push-sum weights u, with the same code and in
// the same order as the host algorithms, so that for the same spec, schedule and x0 the
// trajectory is bit for bit the host one (kernels and their CPU twins are bit-identical).
//
//   DeviceLocalTransport transport(16);
//   auto algo = make_algorithm_cuda(spec, layout, schedule, transport);
//   algo->init(x0);                       // host [16 x d]
//   for (t...) algo->communicate(t, epoch);
//   algo->download_z(z);                  // waits for the device, checks for errors
//
// Supported: sgp; deepsqueeze, sparsepush and scsp with the compressors that have a CUDA path
// (identity, topk, qsgd, sign, minmax8). CHOCO, random-K and fractional run on the host only.
// make_algorithm_emulated runs the same orchestration on host memory with the CPU twins of the
// device ops (for testing without a GPU).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spush/nets/layout.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/topology.h"
#include "spush/runtime/transport.h"

namespace spush::runtime {

// True when make_algorithm_cuda implements the spec; otherwise false with the reason in *why.
bool algorithm_cuda_supports(const AlgorithmSpec& spec, std::string* why = nullptr);

class DeviceAlgorithm {
 public:
  virtual ~DeviceAlgorithm() = default;
  // Starts from x0 (host, [local_nodes x d]); u = 1, errors = 0.
  virtual void init(const nets::NodeMatrix& x0) = 0;
  // Communication + mixing of iteration t, as Algorithm::communicate.
  virtual void communicate(int64_t iteration, int64_t epoch) = 0;
  // Uncompressed push-sum rounds with eta = 1, as Algorithm::gossip_rounds.
  virtual void gossip_rounds(int rounds, int64_t first_iteration, int64_t epoch) = 0;
  // Wait for the device; throw std::runtime_error when a kernel flagged a non-finite value or a
  // malformed message since the last check (the kernels cannot throw; the host algorithms would
  // have thrown at that round).
  virtual void synchronize() = 0;
  // synchronize(), then copy x or z = x / u into out (resized to [local_nodes x d]).
  virtual void download_x(nets::NodeMatrix& out) = 0;
  virtual void download_z(nets::NodeMatrix& out) = 0;
  // Push-sum weights (kept on the host too: they depend on the schedule only).
  const std::vector<float>& u() const { return u_; }
  const CommStats& stats() const { return stats_; }
  const AlgorithmSpec& spec() const { return spec_; }

 protected:
  AlgorithmSpec spec_;
  std::vector<float> u_;
  CommStats stats_;
};

// Validates as make_algorithm does, plus algorithm_cuda_supports, and needs a usable GPU.
// Throws std::invalid_argument for a bad or unsupported spec, std::runtime_error when this
// build has no CUDA or no device is usable.
std::unique_ptr<DeviceAlgorithm> make_algorithm_cuda(const AlgorithmSpec& spec,
                                                     const nets::Layout& layout,
                                                     const Schedule& schedule,
                                                     DeviceLocalTransport& transport);

// The same device algorithm with every device op replaced by its CPU twin (compress_ef_cpu,
// the CPU codec row by row, gossip_mix_*_cpu, ...) on host memory laid out as on the GPU: runs
// the device path's own orchestration (message tables, wire matrix, device-memory transport,
// error flag) on any machine, with the host algorithms' results. For testing that
// orchestration where no GPU is available; as slow as the host algorithms or slower.
std::unique_ptr<DeviceAlgorithm> make_algorithm_emulated(const AlgorithmSpec& spec,
                                                         const nets::Layout& layout,
                                                         const Schedule& schedule,
                                                         DeviceLocalTransport& transport);

}  // namespace spush::runtime

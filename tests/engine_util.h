// Test helpers for the gossip engine: an algorithm on a backend and the local communicator that
// owns both, so that a test can write `auto a = local_algorithm(spec, layout, schedule);` and use
// `a->z()`, `a.comm->bytes()` and so on.
#pragma once
#include <memory>
#include <string>

#include "spush/kernels/backend.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/communicator.h"

namespace spush::test {

struct LocalAlgorithm {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<runtime::Communicator> comm;
  std::unique_ptr<runtime::Algorithm> algo;
  runtime::Algorithm* operator->() const { return algo.get(); }
  runtime::Algorithm& operator*() const { return *algo; }
};

// make_algorithm over `backend` ("cpu" or "cuda") and a local communicator of every node.
inline LocalAlgorithm local_algorithm(const runtime::AlgorithmSpec& spec, const nets::Layout& layout,
                                      const runtime::Schedule& schedule,
                                      const std::string& backend = "cpu") {
  LocalAlgorithm a;
  a.backend = kernels::make_backend(backend);
  a.comm = runtime::make_local_communicator(schedule.nodes());
  a.algo = runtime::make_algorithm(spec, layout, schedule, *a.backend, *a.comm);
  return a;
}

// The algorithm's state tensors as host vectors, by name.
inline std::vector<std::pair<std::string, std::vector<float>>> saved_state(runtime::Algorithm& a) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  a.save_state([&](const std::string& name, const float* data, int64_t count) {
    out.emplace_back(name, std::vector<float>(data, data + count));
  });
  return out;
}

}  // namespace spush::test

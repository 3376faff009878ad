// The device algorithm's orchestration run on the host (make_algorithm_emulated: every device
// op replaced by its CPU twin, device layouts kept) against the host algorithms, bit for bit
// (cases in device_cases.h); errors flagged by the ops reported at the next synchronization.
// Runs on every machine; algorithm_cuda_gpu_test.cpp runs the same cases on the GPU.
#include <gtest/gtest.h>

#include <string>

#include "runtime/device_cases.h"

namespace spush::runtime {
namespace {

auto emulated = [](const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
                   DeviceLocalTransport& transport) {
  return make_algorithm_emulated(spec, layout, schedule, transport);
};

TEST(AlgorithmEmulated, SparsePushTopKMatchesTheHost) { test::run_sparse_cases(emulated); }

TEST(AlgorithmEmulated, DenseCompressorsMatchTheHost) { test::run_dense_cases(emulated); }

TEST(AlgorithmEmulated, SgpDeepSqueezeAndScspMatchTheHost) {
  test::run_uncompressed_and_phase_cases(emulated);
}

TEST(AlgorithmEmulated, NonFiniteModelIsReportedAtTheNextSynchronization) {
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  const nets::Layout layout = make_segment_layout(1000, 3);
  DeviceLocalTransport transport(4);
  auto algo = make_algorithm_emulated(AlgorithmSpec{}, layout, schedule, transport);
  nets::NodeMatrix x0 = test::random_x0(4, 1000, 9);
  x0.row(2)[500] = NAN;
  algo->init(x0);
  algo->communicate(0, 0);
  nets::NodeMatrix z;
  try {
    algo->download_z(z);
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
  algo->init(test::random_x0(4, 1000, 10));
  algo->communicate(0, 0);
  EXPECT_NO_THROW(algo->download_z(z));
}

TEST(AlgorithmEmulated, RejectsWhatTheGpuPathRejects) {
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  const nets::Layout layout = make_segment_layout(100, 2);
  DeviceLocalTransport transport(4);
  AlgorithmSpec spec;
  spec.kind = AlgorithmKind::kChoco;
  EXPECT_THROW(make_algorithm_emulated(spec, layout, schedule, transport), std::invalid_argument);
  spec.kind = AlgorithmKind::kSparsePush;
  spec.compressor.kind = kernels::CompressorKind::kRandomK;
  EXPECT_THROW(make_algorithm_emulated(spec, layout, schedule, transport), std::invalid_argument);
  auto algo = make_algorithm_emulated(AlgorithmSpec{}, layout, schedule, transport);
  EXPECT_THROW(algo->init(nets::NodeMatrix(3, 100)), std::invalid_argument);
  EXPECT_THROW(algo->communicate(-1, 0), std::invalid_argument);
  EXPECT_THROW(algo->gossip_rounds(-1, 0, 0), std::invalid_argument);
}

}  // namespace
}  // namespace spush::runtime

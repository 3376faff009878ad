// The device algorithms on the GPU (make_algorithm_cuda) against the host algorithms, bit for
// bit (cases in device_cases.h), and a NaN in a model reported at the next synchronization.
#include "gpu_test_util.h"
#include "runtime/device_cases.h"

namespace spush::runtime {
namespace {

auto on_gpu = [](const AlgorithmSpec& spec, const nets::Layout& layout, const Schedule& schedule,
                 DeviceLocalTransport& transport) {
  return make_algorithm_cuda(spec, layout, schedule, transport);
};

TEST(AlgorithmCuda, SparsePushTopKMatchesTheHostBitForBit) {
  SPUSH_REQUIRE_GPU();
  test::run_sparse_cases(on_gpu);
}

TEST(AlgorithmCuda, DenseCompressorsMatchTheHostBitForBit) {
  SPUSH_REQUIRE_GPU();
  test::run_dense_cases(on_gpu);
}

TEST(AlgorithmCuda, SgpDeepSqueezeAndScspMatchTheHostBitForBit) {
  SPUSH_REQUIRE_GPU();
  test::run_uncompressed_and_phase_cases(on_gpu);
}

TEST(AlgorithmCuda, NonFiniteModelIsReportedAtTheNextSynchronization) {
  SPUSH_REQUIRE_GPU();
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  const nets::Layout layout = make_segment_layout(1000, 3);
  AlgorithmSpec spec;
  DeviceLocalTransport transport(4);
  auto algo = make_algorithm_cuda(spec, layout, schedule, transport);
  nets::NodeMatrix x0 = test::random_x0(4, 1000, 9);
  x0.row(2)[500] = NAN;
  algo->init(x0);
  algo->communicate(0, 0);
  nets::NodeMatrix z;
  EXPECT_THROW(algo->download_z(z), std::runtime_error);
  // Reported once; a fresh start is clean.
  algo->init(test::random_x0(4, 1000, 10));
  algo->communicate(0, 0);
  EXPECT_NO_THROW(algo->download_z(z));
}

}  // namespace
}  // namespace spush::runtime

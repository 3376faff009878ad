// The one engine on the cuda backend against the cpu backend: every case of backend_cases.h
// (Sparse-Push with each index codec, global buckets, time-varying schedules, link failures,
// local steps; the dense compressors; SGP, Deep-Squeeze, SCSP; CHOCO with incremental sums and
// with per-neighbour copies) must give the same bits for x, z, u, the state and every count.
// Skips without a usable GPU; the cpu twins are in engine_backends_test.cpp.
#include "backend_cases.h"
#include "gpu_test_util.h"

namespace spush::runtime::test {
namespace {

const Setup kCpu{"cpu", 0};
const Setup kCuda{"cuda", 0};

TEST(EngineGpu, SparseCasesMatchTheCpuBitForBit) {
  SPUSH_REQUIRE_GPU();
  run_sparse_cases(kCpu, kCuda);
}

TEST(EngineGpu, DenseCasesMatchTheCpuBitForBit) {
  SPUSH_REQUIRE_GPU();
  run_dense_cases(kCpu, kCuda);
}

TEST(EngineGpu, SgpScspAndChocoMatchTheCpuBitForBit) {
  SPUSH_REQUIRE_GPU();
  run_uncompressed_phase_and_choco_cases(kCpu, kCuda);
}

TEST(EngineGpu, NonFiniteModelIsReportedAtTheNextSynchronization) {
  SPUSH_REQUIRE_GPU();
  nets::Layout layout;
  layout.add("w", {1000});
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  AlgorithmSpec spec;
  spec.compressor.density = 0.05;
  auto a = local_algorithm(spec, layout, schedule, "cuda");
  nets::NodeMatrix x0 = random_x0(4, 1000, 7);
  x0.row(1)[10] = std::nanf("");
  a->init(x0);
  a->communicate(0, 0);  // the kernels flag it; the host learns at the next synchronization
  try {
    a->synchronize();
    ADD_FAILURE() << "a NaN model went unreported";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(a->synchronize());  // reported once
}

TEST(EngineGpu, CpuOnlyCompressorsAreRefusedOnTheGpu) {
  SPUSH_REQUIRE_GPU();
  nets::Layout layout;
  layout.add("w", {100});
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  AlgorithmSpec spec;
  spec.compressor.kind = CompressorKind::kRandomK;
  try {
    local_algorithm(spec, layout, schedule, "cuda");
    ADD_FAILURE() << "randomk accepted on the GPU";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA implementation"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace spush::runtime::test

// The engine's results do not depend on how the cpu backend runs: every case of
// backend_cases.h with one OpenMP thread and with four gives the same bits (the cpu twins of
// engine_gpu_test.cpp's cpu-versus-cuda comparisons), plus the compressors only the cpu backend
// has (random-K, fractional) and the errors a backend reports.
#include "backend_cases.h"

namespace spush::runtime::test {
namespace {

const Setup kOneThread{"cpu", 1};
const Setup kFourThreads{"cpu", 4};

TEST(EngineCpu, SparseCasesDoNotDependOnThreads) { run_sparse_cases(kOneThread, kFourThreads); }

TEST(EngineCpu, DenseCasesDoNotDependOnThreads) { run_dense_cases(kOneThread, kFourThreads); }

TEST(EngineCpu, SgpScspAndChocoCasesDoNotDependOnThreads) {
  run_uncompressed_phase_and_choco_cases(kOneThread, kFourThreads);
}

TEST(EngineCpu, CpuOnlyCompressorsDoNotDependOnThreads) {
  run_case({.name = "randomk", .compressor = CompressorKind::kRandomK, .density = 0.05}, 40,
           kOneThread, kFourThreads);
  run_case({.name = "fractional block",
            .compressor = CompressorKind::kFractional,
            .density = 0.05,
            .bits = 4,
            .codec = IndexCodec::kBlockPosition},
           40, kOneThread, kFourThreads);
  run_case({.name = "choco fractional rings4",
            .kind = AlgorithmKind::kChoco,
            .compressor = CompressorKind::kFractional,
            .density = 0.1,
            .bits = 3,
            .topology = "rings4",
            .nodes = 4},
           40, kOneThread, kFourThreads);
}

TEST(EngineCpu, CudaBackendIsRefusedClearlyWithoutAGpu) {
  if (kernels::cuda_available()) GTEST_SKIP() << "a GPU is present";
  try {
    kernels::make_backend("cuda");
    ADD_FAILURE() << "a cuda backend without a GPU";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("no CUDA support") != std::string::npos ||
                what.find("no usable CUDA device") != std::string::npos)
        << what;
  }
  EXPECT_THROW(kernels::make_backend("tpu"), std::invalid_argument);
  EXPECT_STREQ(kernels::make_backend("auto")->name(), "cpu");
}

}  // namespace
}  // namespace spush::runtime::test

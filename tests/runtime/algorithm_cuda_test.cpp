// What the device algorithms accept, checked on any machine: algorithm_cuda_supports names the
// unsupported algorithms and compressors, make_algorithm_cuda validates the spec like
// make_algorithm before it looks for a GPU, and without a GPU (or without CUDA in the build) it
// fails with a clear runtime error. Their trajectories are compared with the host's in
// algorithm_cuda_gpu_test.cpp.
#include "spush/runtime/algorithm_cuda.h"

#include <gtest/gtest.h>

#include <string>

#include "spush/kernels/device.h"
#include "spush/runtime/logistic.h"

namespace spush::runtime {
namespace {

using kernels::CompressorKind;

TEST(AlgorithmCudaSupports, GpuAlgorithmsAndCompressors) {
  AlgorithmSpec spec;
  std::string why;
  for (AlgorithmKind k : {AlgorithmKind::kSgp, AlgorithmKind::kDeepSqueeze,
                          AlgorithmKind::kSparsePush, AlgorithmKind::kScsp}) {
    spec.kind = k;
    for (CompressorKind c :
         {CompressorKind::kIdentity, CompressorKind::kTopK, CompressorKind::kQsgd,
          CompressorKind::kSign, CompressorKind::kMinMax8}) {
      spec.compressor.kind = c;
      EXPECT_TRUE(algorithm_cuda_supports(spec, &why)) << to_string(k) << " " << why;
    }
  }
  spec.kind = AlgorithmKind::kSparsePush;
  for (CompressorKind c : {CompressorKind::kRandomK, CompressorKind::kFractional}) {
    spec.compressor.kind = c;
    EXPECT_FALSE(algorithm_cuda_supports(spec, &why));
    EXPECT_NE(why.find(kernels::to_string(c)), std::string::npos) << why;
  }
  spec.kind = AlgorithmKind::kChoco;
  spec.compressor.kind = CompressorKind::kTopK;
  EXPECT_FALSE(algorithm_cuda_supports(spec, &why));
  EXPECT_NE(why.find("choco"), std::string::npos) << why;
  EXPECT_FALSE(algorithm_cuda_supports(spec));  // why is optional
}

TEST(MakeAlgorithmCuda, ValidatesBeforeLookingForAGpu) {
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  const nets::Layout layout = make_segment_layout(100, 2);
  DeviceLocalTransport transport(4);
  AlgorithmSpec spec;
  spec.eta = 1.5;
  EXPECT_THROW(make_algorithm_cuda(spec, layout, schedule, transport), std::invalid_argument);
  spec.eta = -1;
  spec.kind = AlgorithmKind::kDeepSqueeze;  // needs a doubly stochastic schedule
  EXPECT_THROW(make_algorithm_cuda(spec, layout, schedule, transport), std::invalid_argument);
  spec.kind = AlgorithmKind::kChoco;
  EXPECT_THROW(make_algorithm_cuda(spec, layout, schedule, transport), std::invalid_argument);
  DeviceLocalTransport five(5);
  spec.kind = AlgorithmKind::kSparsePush;
  EXPECT_THROW(make_algorithm_cuda(spec, layout, schedule, five), std::invalid_argument);
}

TEST(MakeAlgorithmCuda, NeedsAGpu) {
  if (kernels::cuda_available()) GTEST_SKIP() << "a GPU is present: covered by the gpu tests";
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  const nets::Layout layout = make_segment_layout(100, 2);
  DeviceLocalTransport transport(4);
  try {
    make_algorithm_cuda(AlgorithmSpec{}, layout, schedule, transport);
    FAIL() << "expected std::runtime_error";
  } catch (const std::invalid_argument& e) {
    FAIL() << "a valid spec was rejected: " << e.what();
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("no CUDA support") != std::string::npos ||
                what.find("no usable CUDA device") != std::string::npos)
        << what;
  }
}

}  // namespace
}  // namespace spush::runtime

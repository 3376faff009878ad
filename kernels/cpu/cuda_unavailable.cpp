// Builds without CUDA: the GPU entry points of compress_cuda.h, codec_cuda.h and mixing_cuda.h
// exist so that callers link, and throw std::runtime_error naming themselves. (topk.h's GPU
// entry points are defined (to throw) in topk.cpp, axpy.h's in axpy.cpp.)
#ifndef SPUSH_HAVE_CUDA
#include <stdexcept>
#include <string>

#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/mixing_cuda.h"

namespace spush::kernels {
namespace {

[[noreturn]] void no_cuda(const char* fn) {
  throw std::runtime_error(std::string(fn) + ": this build has no CUDA support");
}

}  // namespace

size_t compress_ef_workspace_size(const CompressorSpec&, int64_t, int64_t, int, int64_t) {
  no_cuda("compress_ef_workspace_size");
}

void compress_ef_cuda(const CompressorSpec&, int64_t, SegmentView, const int64_t*, const float*,
                      int64_t, float*, int64_t, const DeviceMessage&, uint32_t, uint64_t, void*,
                      size_t, int*, Stream) {
  no_cuda("compress_ef_cuda");
}

void encode_sparse_rows_cuda(const SparseWireLayout&, const int64_t*, int64_t, const int32_t*,
                             const float*, uint8_t*, size_t, Stream) {
  no_cuda("encode_sparse_rows_cuda");
}

void decode_sparse_rows_cuda(const SparseWireLayout&, const int64_t*, int64_t, const uint8_t*,
                             size_t, int32_t*, float*, int*, Stream) {
  no_cuda("decode_sparse_rows_cuda");
}

void encode_dense_rows_cuda(const DenseWireLayout&, const int64_t*, int64_t, const DeviceMessage&,
                            uint8_t*, size_t, Stream) {
  no_cuda("encode_dense_rows_cuda");
}

void decode_dense_rows_cuda(const DenseWireLayout&, const int64_t*, int64_t, const uint8_t*, size_t,
                            float*, int64_t, int*, Stream) {
  no_cuda("decode_dense_rows_cuda");
}

void gossip_mix_sparse_cuda(float*, int64_t, int64_t, float*, const MixTerm*, int64_t,
                            const int64_t*, int64_t, const int32_t*, const float*, const float*,
                            int*, Stream) {
  no_cuda("gossip_mix_sparse_cuda");
}

void gossip_mix_dense_cuda(float*, int64_t, int64_t, int64_t, float*, const MixTerm*, int64_t,
                           const float*, int64_t, int64_t, const float*, int*, Stream) {
  no_cuda("gossip_mix_dense_cuda");
}

void debias_cuda(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, Stream) {
  no_cuda("debias_cuda");
}

void scale_rows_cuda(float*, int64_t, int64_t, int64_t, const double*, Stream) {
  no_cuda("scale_rows_cuda");
}

void gossip_mix_sparse_debias_cuda(float*, int64_t, int64_t, int64_t, float*, const MixTerm*,
                                   int64_t, const int64_t*, int64_t, const int32_t*, const float*,
                                   const float*, float*, int64_t, int*, Stream) {
  no_cuda("gossip_mix_sparse_debias_cuda");
}

}  // namespace spush::kernels
#endif  // SPUSH_HAVE_CUDA

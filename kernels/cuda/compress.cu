// Host entry of the fused error-feedback compressors on the GPU (compress_cuda.h): argument
// checks, workspace sizing, and dispatch to the radix-select top-K with v = x + e formed in its
// first pass (topk_*.cu) or to the two-pass dense compressors (compress_dense.cu).
#include <stdexcept>
#include <string>

#include "compress_internal.cuh"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/topk.h"
#include "topk_internal.cuh"

namespace spush::kernels {
namespace {

void check_host_args(const char* fn, const CompressorSpec& spec, int64_t rows, int64_t ld,
                     int nseg) {
  validate(spec);
  if (!compress_cuda_supports(spec.kind)) {
    throw std::invalid_argument(std::string(fn) + ": compressor kind " + to_string(spec.kind) +
                                " has no CUDA path; supported: identity, topk, qsgd, sign, "
                                "minmax8");
  }
  if (rows < 0 || ld < 0 || nseg < 0) {
    throw std::invalid_argument(
        std::string(fn) + ": rows = " + std::to_string(rows) + ", ld = " + std::to_string(ld) +
        ", nseg = " + std::to_string(nseg) + "; expected non-negative values");
  }
}

}  // namespace

size_t compress_ef_workspace_size(const CompressorSpec& spec, int64_t rows, int64_t ld, int nseg,
                                  int64_t max_seg_len) {
  check_host_args("compress_ef_workspace_size", spec, rows, ld, nseg);
  if (spec.kind == CompressorKind::kTopK)
    return topk_batched_workspace_size(rows, ld, nseg, max_seg_len);
  return dense_detail::workspace_bytes(rows, ld, nseg);
}

void compress_ef_cuda(const CompressorSpec& spec, int64_t rows, SegmentView segs,
                      const int64_t* k_offsets, const float* x, int64_t ldx, float* e, int64_t lde,
                      const DeviceMessage& out, uint32_t node_base, uint64_t iteration,
                      void* workspace, size_t workspace_bytes, int* error_flag, Stream stream) {
  constexpr const char* kFn = "compress_ef_cuda";
  check_host_args(kFn, spec, rows, ldx, segs.count);
  if (rows == 0 || segs.count == 0) return;
  if (!x || !segs.offsets || !workspace || !error_flag || (e && lde < 1)) {
    throw std::invalid_argument(std::string(kFn) +
                                ": x, segment offsets, workspace and error_flag must be non-null "
                                "device pointers, and lde >= 1 when e is given");
  }
  if (spec.kind == CompressorKind::kTopK) {
    if (!k_offsets || !out.idx || !out.val) {
      throw std::invalid_argument(std::string(kFn) +
                                  ": topk needs k_offsets and the message's idx and val");
    }
    if (workspace_bytes < topk_detail::workspace_fixed_bytes(rows, ldx, segs.count)) {
      throw std::invalid_argument(std::string(kFn) + ": workspace of " +
                                  std::to_string(workspace_bytes) +
                                  " bytes is too small; compress_ef_workspace_size gives the size");
    }
    topk_detail::Problem p;
    p.x = x;
    p.ldx = ldx;
    p.e = e;
    p.lde = lde;
    p.finite_only = true;
    p.rows = rows;
    p.nseg = segs.count;
    p.dstride = ldx;
    p.seg_off = segs.offsets;
    p.k_off = k_offsets;
    p.idx = out.idx;
    p.val = out.val;
    p.error_flag = error_flag;
    topk_detail::run_topk(p, workspace, workspace_bytes, stream);
    return;
  }
  const bool identity = spec.kind == CompressorKind::kIdentity;
  if ((identity && !out.val) || (!identity && (!out.code || !out.scale)) || out.ld_msg < 1) {
    throw std::invalid_argument(std::string(kFn) + ": " + to_string(spec.kind) +
                                " needs the message's " + (identity ? "val" : "code and scale") +
                                " and ld_msg >= 1");
  }
  if (workspace_bytes < dense_detail::workspace_bytes(rows, ldx, segs.count)) {
    throw std::invalid_argument(
        std::string(kFn) + ": workspace of " + std::to_string(workspace_bytes) +
        " bytes is smaller than the " +
        std::to_string(dense_detail::workspace_bytes(rows, ldx, segs.count)) +
        " bytes compress_ef_workspace_size gives");
  }
  dense_detail::Problem p;
  p.kind = spec.kind;
  p.bits = spec.bits;
  p.seed = spec.seed;
  p.node_base = node_base;
  p.iteration = iteration;
  p.x = x;
  p.ldx = ldx;
  p.e = e;
  p.lde = lde;
  p.rows = rows;
  p.nseg = segs.count;
  p.dstride = ldx;
  p.seg_off = segs.offsets;
  p.code = out.code;
  p.val = out.val;
  p.scale = out.scale;
  p.ld_msg = out.ld_msg;
  p.error_flag = error_flag;
  dense_detail::run_dense(p, workspace, stream);
}

}  // namespace spush::kernels

// out = a * x + b * y over the rows of node matrices: the backend's elementwise op (CHOCO's
// x^ - x~ and x + eta m, and the plumbing tests). Each element is round(round(a x) + round(b y))
// in fp32 on both implementations (no fused multiply-add), so the CPU and the GPU agree bit for
// bit. out may alias x or y (the same row stride then).
//
//   axpby_rows_cpu(rows, d, 1.0f, x, ld, -1.0f, xt, ld, diff, ld);   // diff = x - xt
#pragma once
#include <cstdint>

#include "spush/kernels/device.h"

namespace spush::kernels {

// x: [rows][ldx], y: [rows][ldy], out: [rows][ldo]; columns [0, d). Throws
// std::invalid_argument for negative sizes, d larger than a stride or null pointers.
void axpby_rows_cpu(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                    const float* y, int64_t ldy, float* out, int64_t ldo);
// Device pointers; stream-ordered; no synchronization.
void axpby_rows_cuda(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                     const float* y, int64_t ldy, float* out, int64_t ldo, Stream stream);

}  // namespace spush::kernels

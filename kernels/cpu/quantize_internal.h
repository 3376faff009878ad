// Internal to spush_kernels (not a public header): the parameter check and the rounding loops of
// quantize_u8 (quantize.cpp), for the ops that quantize values they compute themselves block by
// block (the requantizing epilogue of conv_int8.cpp) with the bits of quantize_u8 on the whole
// tensor. Both files are built with -ffp-contract=off.
#pragma once
#include <cstdint>

#include "spush/kernels/quantize.h"

namespace spush::kernels::quantize_internal {

// Stochastic rounding draws its uniforms in chunks of this many stream elements, aligned in the
// stream (element e is in chunk e / kStreamChunk): a caller that cuts a tensor into blocks whose
// stream boundaries are multiples of it computes each chunk's Philox calls once.
constexpr int64_t kStreamChunk = 256;

// Throws std::invalid_argument "<who>: invalid parameters lo = .., scale = .." unless
// p.scale >= 0 and p.scale and p.lo are finite (quantize_u8's check).
void check_params(const char* who, QParams p);

// q[i] = Q(x[i]) for i < n as quantize_u8 gives it, x[i] being stream element key.offset + i;
// on the calling thread. Expects n >= 0, p checked by check_params, and p.scale > 0 (the caller
// handles scale == 0: all codes 0).
void quantize_span(const float* x, int64_t n, QParams p, Rounding r, const StochasticKey& key,
                   uint8_t* q);

}  // namespace spush::kernels::quantize_internal

// Gossip mixing on the GPU: the device twins of mixing.h's CPU functions, bit for bit
// (x[dst] += w * message, terms with the same dst applied in the order given; every product
// and sum a separately rounded fp32 operation, as on the CPU), plus a fused round that applies
// sparse messages to x and u and writes z = x / u in one pass over x.
//
// All pointers are device pointers (terms and msg_offsets included). x: [rows][ld];
// u, msg_u: [rows] / [nmsg] or null (no push-sum weights). Sparse messages in CSR form:
// message m owns entries [msg_offsets[m], msg_offsets[m+1]) of idx / val, with STRICTLY
// ASCENDING row-local indices (what top-K produces): the kernels split each row into column
// tiles and find a message's entries of a tile by binary search. Invalid input (a term with
// dst outside [0, rows) or msg outside [0, nmsg), an index outside [0, ld), indices not
// ascending) is skipped and sets *error_flag = 2 when error_flag is non-null; the CPU functions
// throw instead. Stream-ordered, no allocation, no host synchronization.
// Example (one Sparse-Push round over 16 nodes, messages from compress_ef_cuda):
//   gossip_mix_sparse_debias_cuda(x, 16, ld, d, u, terms, nterms, offs, 16, idx, val, mu,
//                                 z, ld, flag, stream);
#pragma once
#include <cstdint>

#include "spush/kernels/device.h"
#include "spush/kernels/mixing.h"

namespace spush::kernels {

void gossip_mix_sparse_cuda(float* x, int64_t rows, int64_t ld, float* u, const MixTerm* terms,
                            int64_t nterms, const int64_t* msg_offsets, int64_t nmsg,
                            const int32_t* idx, const float* val, const float* msg_u,
                            int* error_flag, Stream stream);

// msgs: [nmsg][ld_msg]; may be rows of x itself (ld_msg == ld), as on the CPU: every column
// walks all terms in order, so a message row updated by an earlier term is read updated.
void gossip_mix_dense_cuda(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                           const MixTerm* terms, int64_t nterms, const float* msgs, int64_t nmsg,
                           int64_t ld_msg, const float* msg_u, int* error_flag, Stream stream);

// scale_rows_cpu on the device (w: device [rows] doubles).
void scale_rows_cuda(float* x, int64_t rows, int64_t ld, int64_t d, const double* w, Stream stream);

// z[r] = x[r] / u[r] for r < rows, columns < d.
void debias_cuda(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
                 int64_t ldz, Stream stream);

// gossip_mix_sparse_cuda then debias_cuda(x, ld, u, rows, d, z, ldz), in one pass over x
// (u must be non-null; z must not overlap x). With msg_u null, u is not mixed: it is taken as
// the round's new push-sum weights, already computed by the caller.
void gossip_mix_sparse_debias_cuda(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                   const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets,
                                   int64_t nmsg, const int32_t* idx, const float* val,
                                   const float* msg_u, float* z, int64_t ldz, int* error_flag,
                                   Stream stream);

}  // namespace spush::kernels

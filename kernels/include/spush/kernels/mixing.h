// Gossip mixing over the rows of a node matrix (docs/ALGORITHMS.md §3):
//   x[dst] += weight * message[msg]      u[dst] += weight * msg_u[msg]
// for every term of a round, then the de-bias z = x / u. Terms with the same dst are applied
// in the order given, so the result is deterministic.
//
// x: [rows x d] with leading dimension ld; u: [rows] (nullptr: no push-sum weights).
// Sparse messages in CSR form: message m owns entries [msg_offsets[m], msg_offsets[m+1]) of
// idx (row-local) / val. Dense messages: [nmsg x d] with leading dimension ld_msg.
#pragma once
#include <cstdint>

#include "spush/kernels/device.h"

namespace spush::kernels {

struct MixTerm {
  int32_t dst;   // row of x that receives
  int32_t msg;   // message index
  float weight;  // mixing weight (may be negative: the self term of Sparse-Push)
};

void gossip_mix_sparse_cpu(float* x, int64_t ld, float* u, const MixTerm* terms, int64_t nterms,
                           const int64_t* msg_offsets, const int32_t* idx, const float* val,
                           const float* msg_u);
void gossip_mix_dense_cpu(float* x, int64_t ld, int64_t d, float* u, const MixTerm* terms,
                          int64_t nterms, const float* msgs, int64_t ld_msg, const float* msg_u);
// x[r][k] = (float)(w[r] * (double)x[r][k]) for r < rows, k < d: the self weight of a dense
// push-sum round, in double with one rounding (w: [rows]).
void scale_rows_cpu(float* x, int64_t rows, int64_t ld, int64_t d, const double* w);
// z[r] = x[r] / u[r] for r < rows.
void debias_cpu(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
                int64_t ldz);

}  // namespace spush::kernels

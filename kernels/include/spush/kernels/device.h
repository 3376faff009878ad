// Device discovery and the CUDA stream type, without including CUDA headers.
// Any error while querying devices counts as "no GPU", so CPU-only machines and
// machines with a broken driver behave the same.
#pragma once

struct CUstream_st;
namespace spush::kernels {

using Stream = CUstream_st*;  // == cudaStream_t; nullptr is the default stream

// True when this build contains the CUDA kernels.
bool cuda_compiled();
// Number of usable CUDA devices: 0 when CUDA is not compiled in or any query fails.
int cuda_device_count();
// True when at least one usable device exists.
inline bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace spush::kernels

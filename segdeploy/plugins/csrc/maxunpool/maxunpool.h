// MaxUnpool2d (PyTorch semantics) -- launcher API. No TensorRT includes.
//
// Semantics (torch.nn.functional.max_unpool2d): output [N,C,OH,OW] is zero-initialised, then for every input
// element e of plane (n,c): output[n,c].flat[indices[e]] = input[e]. Indices are flat PER PLANE (h*OW+w), as
// max_pool2d(return_indices=True) produces them; OH/OW are given by the caller (PyTorch's default is
// (IH-1)*stride - 2*pad + kernel).
//  * Out-of-range indices (< 0 or >= OH*OW): defined behaviour here -- the element is SKIPPED and counted;
//    the count is left in the workspace (int32 at byte offset 4) after the launch. (PyTorch asserts on CUDA
//    and raises on CPU.)
//  * Duplicate indices: one of the values wins, which one is unspecified (as in PyTorch on CUDA). Indices
//    produced by max_pool2d with overlapping windows can repeat, but then carry equal values.
//  * FP16 values are copied unchanged.
// Algorithms:
//  * kSCATTER: memset(0) + one thread per input element scattering its value (any indices).
//  * kGATHER: one thread per OUTPUT element reads the single input element whose pooling window contains it
//    and writes either its value or 0 (each output written exactly once, coalesced); a second, usually empty,
//    pass then scatters the "stray" input elements whose index lies outside their own window (or counts them
//    when out of range). Exact for ANY indices; needs the pooling params, non-overlapping windows
//    (stride >= kernel) and windows that all intersect the output (see maxUnpool2dGatherEligible).
//  * kAUTO: kGATHER when eligible, else kSCATTER.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "../common/types.h"

namespace segdeploy {
namespace plugins {

//! The pooling that produced the indices. All zero = unknown (then only kSCATTER is possible).
struct MaxUnpool2dParams {
    int32_t kernel_h{0}, kernel_w{0};
    int32_t stride_h{0}, stride_w{0};
    int32_t pad_h{0}, pad_w{0};
};

enum class UnpoolAlgo : int32_t { kAUTO = 0, kSCATTER = 1, kGATHER = 2 };

//! PyTorch's default output size for one dimension: (in-1)*stride - 2*pad + kernel.
inline int64_t maxUnpool2dDefaultOutputSize(int64_t in, int32_t kernel, int32_t stride, int32_t pad) {
    return (in - 1) * stride - 2 * int64_t(pad) + kernel;
}

//! Whether the gather algorithm applies (exactly) to these params and sizes.
bool maxUnpool2dGatherEligible(const MaxUnpool2dParams& p, int64_t IH, int64_t IW, int64_t OH, int64_t OW);

//! nullptr when the sizes are valid, else a static one-line message.
const char* maxUnpool2dCheck(const MaxUnpool2dParams& p, int64_t IH, int64_t IW, int64_t OH, int64_t OW);

//! Bytes of device workspace launchMaxUnpool2d needs (int32 flags/counters; zeroed by the launcher).
//! After the launch completes: int32[0] = 1 when the gather pass found stray indices, int32[1] = number of
//! out-of-range indices that were skipped.
size_t maxUnpool2dWorkspaceSize();

//! input/indices [N,C,IH,IW] (`dtype` / `itype`), output [N,C,OH,OW] (`dtype`), workspace: device memory of
//! maxUnpool2dWorkspaceSize() bytes. Returns cudaErrorInvalidValue for invalid sizes/dtypes, or kGATHER
//! requested but not eligible; else the launch status. Nothing is launched when the output is empty.
cudaError_t launchMaxUnpool2d(const void* input, const void* indices, void* output, DataType dtype,
                              IndexType itype, int64_t N, int64_t C, int64_t IH, int64_t IW, int64_t OH, int64_t OW,
                              const MaxUnpool2dParams& p, UnpoolAlgo algo, void* workspace, cudaStream_t stream);

}  // namespace plugins
}  // namespace segdeploy

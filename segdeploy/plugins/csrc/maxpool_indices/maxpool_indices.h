// MaxPool2d with indices (PyTorch semantics) -- launcher API. No TensorRT includes.
//
// Semantics (identical to torch.nn.functional.max_pool2d(..., return_indices=True) on CUDA and CPU):
//  * input NCHW, output N x C x OH x OW, indices N x C x OH x OW;
//  * OH = floor_or_ceil((H + 2*pad_h - dilation_h*(kernel_h-1) - 1) / stride_h) + 1, and with ceil_mode the
//    last window must start inside the input or the left padding (else OH is reduced by one);
//  * indices are flat PER PLANE: h * W + w (as PyTorch returns them; ONNX MaxPool's Indices output is
//    flat over the whole N*C*H*W tensor instead -- callers mapping ONNX must add/subtract the plane offset);
//  * window scan order row-major; a value replaces the running max when it is greater (first max wins on
//    ties) or when it is NaN (so NaN wins, and the LAST NaN in the window gives the index);
//  * FP16 values are compared in float32 and written back unchanged (exact);
//  * index dtype int32 (TensorRT's preferred type) or int64 (PyTorch's type).
// Constraints (checked, else cudaErrorInvalidValue and maxPool2dCheck() says why): kernel, stride,
// dilation >= 1; 0 <= pad <= ((kernel-1)*dilation+1)/2; OH, OW >= 1; H*W <= INT32_MAX.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../common/types.h"

namespace segdeploy {
namespace plugins {

struct MaxPool2dParams {
    int32_t kernel_h{1}, kernel_w{1};
    int32_t stride_h{1}, stride_w{1};
    int32_t pad_h{0}, pad_w{0};
    int32_t dilation_h{1}, dilation_w{1};
    bool ceil_mode{false};
};

//! PyTorch's pooling_output_shape for one spatial dimension (may return <= 0 for impossible inputs).
SD_INLINE int64_t maxPool2dOutputSize(int64_t in, int32_t kernel, int32_t stride, int32_t pad,
                                      int32_t dilation, bool ceil_mode) {
    const int64_t num = in + 2 * int64_t(pad) - int64_t(dilation) * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
    int64_t q = num / stride;
    if ((num % stride != 0) && (num < 0)) q -= 1;  // floor division (stride > 0)
    int64_t out = q + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad) --out;  // last window must start inside input/left pad
    return out;
}

//! nullptr when (params, H, W) are valid, else a static one-line message naming the problem.
const char* maxPool2dCheck(const MaxPool2dParams& p, int64_t H, int64_t W);

//! Launch the kernel on `stream`. input [N,C,H,W] of `dtype`; output [N,C,OH,OW] of `dtype`;
//! indices [N,C,OH,OW] of `itype`. All pointers are device pointers. Returns cudaErrorInvalidValue
//! for invalid params/dtypes, else the launch status. Nothing is launched when the output is empty.
cudaError_t launchMaxPool2dWithIndices(const void* input, void* output, void* indices, DataType dtype,
                                       IndexType itype, int64_t N, int64_t C, int64_t H, int64_t W,
                                       const MaxPool2dParams& p, cudaStream_t stream);

}  // namespace plugins
}  // namespace segdeploy

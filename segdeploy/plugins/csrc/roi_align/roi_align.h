// RoiAlign (torchvision.ops.roi_align semantics) -- launcher API. No TensorRT includes.
//
// Semantics (torchvision 0.19+ roi_align_forward_kernel, computed in float32 for both dtypes):
//  * features [N,C,H,W]; boxes [K,5] = (batch_index, x1, y1, x2, y2) in input-image coordinates, or
//    [K,4] = (x1, y1, x2, y2) plus a separate batch-index array [K] (int32/int64, ONNX RoiAlign style);
//    output [K,C,pooled_h,pooled_w];
//  * box * spatial_scale, minus 0.5 when `aligned`; when not aligned, width/height are clamped to >= 1;
//  * bin = box size / pooled size; samples per bin = sampling_ratio when > 0, else ceil(box/pooled)
//    (adaptive); sample points at (i + 0.5) * bin / samples; output = mean of the samples
//    (divided by max(samples_h*samples_w, 1); empty grids give 0);
//  * bilinear interpolation with torchvision's boundary rules: a sample with y < -1 or y > H (x likewise)
//    contributes 0; otherwise y, x are clamped to >= 0 and the high neighbour to H-1 / W-1;
//  * FP16: features/boxes are read as half and converted to float; accumulation is float32; the result
//    is rounded once to half. (torchvision's own half kernel rounds every intermediate to half, and rounds
//    spatial_scale to half: our FP16 result is closer to the float32 reference than torchvision's.)
//  * defined behaviour beyond torchvision (where it is undefined): a box whose batch index is not in [0, N)
//    (after truncation towards zero, as torchvision casts it; NaN included), or whose scaled coordinates
//    are not finite, produces zeros (torchvision reads out of bounds / may never finish); adaptive sampling
//    uses at most 16384 samples per bin side (only boxes > 16384 bins wide differ from torchvision).
//  * K = 0: nothing is launched.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../common/types.h"

namespace segdeploy {
namespace plugins {

struct RoiAlignParams {
    int32_t pooled_h{1}, pooled_w{1};
    float spatial_scale{1.f};
    int32_t sampling_ratio{0};  //!< > 0: fixed samples per bin side; <= 0: adaptive ceil(box / pooled)
    bool aligned{false};
};

//! nullptr when valid, else a static one-line message.
const char* roiAlignCheck(const RoiAlignParams& p, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K);

//! features [N,C,H,W] (`dtype`), boxes [K,5] (`box_dtype`) when batch_indices is null, else boxes [K,4] and
//! batch_indices [K] (`batch_index_type`); output [K,C,pooled_h,pooled_w] (`dtype`). Device pointers.
//! Returns cudaErrorInvalidValue for invalid params/dtypes, else the launch status.
cudaError_t launchRoiAlign(const void* features, const void* boxes, const void* batch_indices, void* output,
                           DataType dtype, DataType box_dtype, IndexType batch_index_type, int64_t N, int64_t C,
                           int64_t H, int64_t W, int64_t K, const RoiAlignParams& p, cudaStream_t stream);

}  // namespace plugins
}  // namespace segdeploy

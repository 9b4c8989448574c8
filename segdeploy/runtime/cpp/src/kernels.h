// segdeploy runtime (internal): launchers of the preprocessing and argmax CUDA kernels (kernels.cu).
// No TensorRT include: the kernels are testable alone (tests/runtime/kernel_harness.cu). Every kernel evaluates
// the element functions of pixel_ops.h, which the host reference (preprocess.cpp / postprocess.cpp) also uses.
// All pointers are device pointers; every launcher enqueues on `stream` and returns the launch status
// (cudaErrorInvalidValue for bad sizes). Nothing is launched for an empty output.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace segdeploy {
namespace cuda {

//! For model channel c, the byte of a source pixel to read (preprocess.h: sourceChannels).
struct Channels {
    int c[3];
};

//! Pad mode (and any image already at the slot's size): slot [3, H, W] float32 from the 8-bit image h x w
//! (3 bytes per pixel, `stride` bytes per row); outside the image the value is 0. `table`: 768 floats
//! (normalizationTable).
cudaError_t launchPadNormalize(const uint8_t* image, size_t stride, int h, int w, Channels channels, const float* table,
                               float* slot, int H, int W, cudaStream_t stream);

//! Resize, horizontal pass: rows [row_first, row_first + rows) of the image -> `temp` (rows x out_w x 3 bytes,
//! tightly packed). bounds/coeffs/ksize: bilinearAxis(w, out_w).
cudaError_t launchResizeHorizontal(const uint8_t* image, size_t stride, int row_first, int rows, const int32_t* bounds,
                                   const int32_t* coeffs, int ksize, uint8_t* temp, int out_w, cudaStream_t stream);

//! Resize, vertical pass alone (the vertical-first order): `src` holds source rows from row 0 (`stride` bytes
//! per row, w pixels of 3 bytes) -> `dst` (out_h x w x 3 bytes, tightly packed). bounds/coeffs/ksize:
//! bilinearAxis(h, out_h).
cudaError_t launchResizeVertical(const uint8_t* src, size_t stride, const int32_t* bounds, const int32_t* coeffs, int ksize,
                                 uint8_t* dst, int out_h, int w, cudaStream_t stream);

//! Resize, vertical pass fused with the normalisation: `src` holds source rows starting at row `row0`
//! (`stride` bytes per row, W pixels of 3 bytes); bounds/coeffs/ksize: bilinearAxis(h, H). Writes slot [3, H, W].
cudaError_t launchResizeVerticalNormalize(const uint8_t* src, size_t stride, int row0, const int32_t* bounds,
                                          const int32_t* coeffs, int ksize, Channels channels, const float* table,
                                          float* slot, int H, int W, cudaStream_t stream);

//! Argmax over K classes of logits [K, H, W] (float32, or float16 when `half`) at the pixels (rows[y], cols[x])
//! for y < out_h, x < out_w -> labels [out_h, out_w] (uint16).
cudaError_t launchArgmaxRestore(const void* logits, bool half, int K, int H, int W, const int32_t* rows,
                                const int32_t* cols, int out_h, int out_w, uint16_t* labels, cudaStream_t stream);

}  // namespace cuda
}  // namespace segdeploy

// segdeploy runtime: preprocessing and argmax CUDA kernels (see kernels.h). Each thread evaluates the element
// functions of pixel_ops.h -- integer resampling, table lookups and comparisons only -- so the results are the
// host reference's bytes and floats exactly.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels.h"
#include "pixel_ops.h"

namespace segdeploy {
namespace cuda {

namespace {

constexpr int kThreads = 256;

int blocksFor(int64_t items) {
    int64_t b = (items + kThreads - 1) / kThreads;
    return int(std::min<int64_t>(std::max<int64_t>(b, 1), int64_t(1) << 20));  // grid-stride loops cover the rest
}

__device__ void loadTable(const float* table, float* shared) {
    for (int i = threadIdx.x; i < 768; i += blockDim.x) shared[i] = table[i];
    __syncthreads();
}

__global__ void padNormalizeKernel(const uint8_t* __restrict__ image, size_t stride, int h, int w, Channels ch,
                                   const float* __restrict__ table, float* __restrict__ slot, int H, int W) {
    __shared__ float t[768];
    loadTable(table, t);
    const int64_t plane = int64_t(H) * W;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < plane; i += int64_t(gridDim.x) * blockDim.x) {
        int y = int(i / W), x = int(i % W);
        for (int c = 0; c < 3; ++c) slot[c * plane + i] = ops::padPixel(image, stride, h, w, y, x, ch.c[c], t, c);
    }
}

__global__ void resizeHorizontalKernel(const uint8_t* __restrict__ image, size_t stride, int row_first, int rows,
                                       const int32_t* __restrict__ bounds, const int32_t* __restrict__ coeffs, int ksize,
                                       uint8_t* __restrict__ temp, int out_w) {
    const int64_t n = int64_t(rows) * out_w;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int r = int(i / out_w), xx = int(i % out_w);
        const uint8_t* row = image + size_t(row_first + r) * stride;
        uint8_t* dst = temp + size_t(i) * 3;
        for (int c = 0; c < 3; ++c) dst[c] = ops::resizeH(row, xx, c, bounds, coeffs, ksize);
    }
}

__global__ void resizeVerticalKernel(const uint8_t* __restrict__ src, size_t stride, const int32_t* __restrict__ bounds,
                                     const int32_t* __restrict__ coeffs, int ksize, uint8_t* __restrict__ dst, int out_h, int w) {
    const int64_t n = int64_t(out_h) * w;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int yy = int(i / w), x = int(i % w);
        uint8_t* d = dst + size_t(i) * 3;
        for (int c = 0; c < 3; ++c) d[c] = ops::resizeV(src, stride, 0, yy, x, c, bounds, coeffs, ksize);
    }
}

__global__ void resizeVerticalNormalizeKernel(const uint8_t* __restrict__ src, size_t stride, int row0,
                                              const int32_t* __restrict__ bounds, const int32_t* __restrict__ coeffs,
                                              int ksize, Channels ch, const float* __restrict__ table,
                                              float* __restrict__ slot, int H, int W) {
    __shared__ float t[768];
    loadTable(table, t);
    const int64_t plane = int64_t(H) * W;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < plane; i += int64_t(gridDim.x) * blockDim.x) {
        int yy = int(i / W), x = int(i % W);
        for (int c = 0; c < 3; ++c) {
            uint8_t v = ops::resizeV(src, stride, row0, yy, x, ch.c[c], bounds, coeffs, ksize);
            slot[c * plane + i] = t[c * 256 + v];
        }
    }
}

template <typename T>
__device__ float toFloat(T v);
template <>
__device__ float toFloat<float>(float v) { return v; }
template <>
__device__ float toFloat<__half>(__half v) { return __half2float(v); }

template <typename T>
__global__ void argmaxRestoreKernel(const T* __restrict__ logits, int K, int H, int W, const int32_t* __restrict__ rows,
                                    const int32_t* __restrict__ cols, int out_h, int out_w, uint16_t* __restrict__ labels) {
    const int64_t plane = int64_t(H) * W;
    const int64_t n = int64_t(out_h) * out_w;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int y = int(i / out_w), x = int(i % out_w);
        const T* px = logits + int64_t(rows[y]) * W + cols[x];
        int k = ops::argmax([&](int c) { return toFloat<T>(px[c * plane]); }, K);
        labels[i] = uint16_t(k);
    }
}

}  // namespace

cudaError_t launchPadNormalize(const uint8_t* image, size_t stride, int h, int w, Channels channels, const float* table,
                               float* slot, int H, int W, cudaStream_t stream) {
    if (h <= 0 || w <= 0 || H <= 0 || W <= 0 || !image || !table || !slot) return cudaErrorInvalidValue;
    padNormalizeKernel<<<blocksFor(int64_t(H) * W), kThreads, 0, stream>>>(image, stride, h, w, channels, table, slot, H, W);
    return cudaGetLastError();
}

cudaError_t launchResizeHorizontal(const uint8_t* image, size_t stride, int row_first, int rows, const int32_t* bounds,
                                   const int32_t* coeffs, int ksize, uint8_t* temp, int out_w, cudaStream_t stream) {
    if (rows < 0 || out_w <= 0 || ksize <= 0 || row_first < 0 || !image || !bounds || !coeffs || !temp) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    resizeHorizontalKernel<<<blocksFor(int64_t(rows) * out_w), kThreads, 0, stream>>>(image, stride, row_first, rows, bounds,
                                                                                       coeffs, ksize, temp, out_w);
    return cudaGetLastError();
}

cudaError_t launchResizeVertical(const uint8_t* src, size_t stride, const int32_t* bounds, const int32_t* coeffs, int ksize,
                                 uint8_t* dst, int out_h, int w, cudaStream_t stream) {
    if (out_h <= 0 || w <= 0 || ksize <= 0 || !src || !bounds || !coeffs || !dst) return cudaErrorInvalidValue;
    resizeVerticalKernel<<<blocksFor(int64_t(out_h) * w), kThreads, 0, stream>>>(src, stride, bounds, coeffs, ksize, dst, out_h, w);
    return cudaGetLastError();
}

cudaError_t launchResizeVerticalNormalize(const uint8_t* src, size_t stride, int row0, const int32_t* bounds,
                                          const int32_t* coeffs, int ksize, Channels channels, const float* table,
                                          float* slot, int H, int W, cudaStream_t stream) {
    if (H <= 0 || W <= 0 || ksize <= 0 || row0 < 0 || !src || !bounds || !coeffs || !table || !slot) return cudaErrorInvalidValue;
    resizeVerticalNormalizeKernel<<<blocksFor(int64_t(H) * W), kThreads, 0, stream>>>(src, stride, row0, bounds, coeffs, ksize,
                                                                                      channels, table, slot, H, W);
    return cudaGetLastError();
}

cudaError_t launchArgmaxRestore(const void* logits, bool half, int K, int H, int W, const int32_t* rows,
                                const int32_t* cols, int out_h, int out_w, uint16_t* labels, cudaStream_t stream) {
    if (K <= 0 || K > 65536 || H <= 0 || W <= 0 || out_h <= 0 || out_w <= 0 || !logits || !rows || !cols || !labels) {
        return cudaErrorInvalidValue;
    }
    int blocks = blocksFor(int64_t(out_h) * out_w);
    if (half) {
        argmaxRestoreKernel<__half><<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(logits), K, H, W, rows, cols,
                                                                    out_h, out_w, labels);
    } else {
        argmaxRestoreKernel<float><<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(logits), K, H, W, rows, cols,
                                                                   out_h, out_w, labels);
    }
    return cudaGetLastError();
}

}  // namespace cuda
}  // namespace segdeploy

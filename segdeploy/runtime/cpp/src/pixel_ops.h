// segdeploy runtime (internal): the per-element arithmetic shared by the host reference (preprocess.cpp,
// postprocess.cpp, compiled by the C++ compiler) and the CUDA kernels (kernels.cu, compiled by nvcc), so that
// the GPU computes exactly what the tested host code computes. Only integer arithmetic, table lookups and
// comparisons happen here: no floating-point operation whose rounding could differ between host and device.
// No CUDA or TensorRT include.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define SD_HD __host__ __device__ __forceinline__
#else
#define SD_HD inline
#endif

namespace segdeploy {
namespace ops {

//! Pillow's fixed-point precision for 8-bit resampling (32 - 8 - 2 bits).
constexpr int kPrecisionBits = 22;

//! Pillow's clip8: arithmetic shift by 22, clamp to 0..255.
SD_HD uint8_t clip8(int32_t acc) {
    int32_t v = acc >> kPrecisionBits;  // arithmetic shift (floor), as Pillow relies on
    return v < 0 ? uint8_t(0) : v > 255 ? uint8_t(255) : uint8_t(v);
}

//! One resampled byte: taps p[0], p[step], ... p[(count-1)*step] weighted by k[0..count).
SD_HD uint8_t resampleTap(const uint8_t* p, size_t step, const int32_t* k, int count) {
    int32_t acc = int32_t(1) << (kPrecisionBits - 1);
    for (int i = 0; i < count; ++i) acc += int32_t(p[size_t(i) * step]) * k[i];
    return clip8(acc);
}

//! Horizontal pass: byte c of output column xx from source row `row` (3 bytes per pixel).
SD_HD uint8_t resizeH(const uint8_t* row, int xx, int c, const int32_t* bounds, const int32_t* coeffs, int ksize) {
    return resampleTap(row + size_t(bounds[2 * xx]) * 3 + size_t(c), 3, coeffs + size_t(xx) * size_t(ksize), bounds[2 * xx + 1]);
}

//! Vertical pass: byte c of output row yy, column x; `src` holds source rows starting at row `row0`.
SD_HD uint8_t resizeV(const uint8_t* src, size_t stride, int row0, int yy, int x, int c, const int32_t* bounds,
                      const int32_t* coeffs, int ksize) {
    const uint8_t* p = src + size_t(bounds[2 * yy] - row0) * stride + size_t(x) * 3 + size_t(c);
    return resampleTap(p, stride, coeffs + size_t(yy) * size_t(ksize), bounds[2 * yy + 1]);
}

//! Pad mode: model channel c at (y, x) of the batch slot; 0 outside the h x w image.
SD_HD float padPixel(const uint8_t* img, size_t stride, int h, int w, int y, int x, int src_c, const float* table, int c) {
    if (y >= h || x >= w) return 0.0f;
    return table[c * 256 + img[size_t(y) * stride + size_t(x) * 3 + size_t(src_c)]];
}

//! NumPy's argmax over K scores: the first maximum; a NaN counts as the maximum (the first NaN wins).
//! `load(k)` returns score k as float.
template <class Load>
SD_HD int argmax(const Load& load, int K) {
    float best = load(0);
    if (best != best) return 0;
    int idx = 0;
    for (int k = 1; k < K; ++k) {
        float v = load(k);
        if (!(v <= best)) {  // greater, or NaN
            if (v != v) return k;
            best = v;
            idx = k;
        }
    }
    return idx;
}

}  // namespace ops
}  // namespace segdeploy

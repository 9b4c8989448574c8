// MaxPool2d with indices: per-output-element bodies, __host__ __device__ (shared by the CUDA kernels and
// the host reference library used by the CPU tests). Mirrors PyTorch's max_pool_forward_nchw exactly.
#pragma once

#include <climits>

#include "../common/numeric.cuh"
#include "maxpool_indices.h"

namespace segdeploy {
namespace plugins {
namespace detail {

//! Max and flat (h*W+w) index of the window of output (oh, ow) in one input plane.
template <typename T>
SD_INLINE void maxPoolWindow(const T* plane, int64_t H, int64_t W, int64_t oh, int64_t ow,
                             const MaxPool2dParams& p, T& outVal, int64_t& outIdx) {
    int64_t hstart = oh * p.stride_h - p.pad_h;
    int64_t wstart = ow * p.stride_w - p.pad_w;
    const int64_t hend = imin64(hstart + int64_t(p.kernel_h - 1) * p.dilation_h + 1, H);
    const int64_t wend = imin64(wstart + int64_t(p.kernel_w - 1) * p.dilation_w + 1, W);
    while (hstart < 0) hstart += p.dilation_h;
    while (wstart < 0) wstart += p.dilation_w;
    int64_t maxIdx = hstart * W + wstart;
    float maxVal = negInf();
    T maxRaw = fromFloat<T>(maxVal);
    for (int64_t h = hstart; h < hend; h += p.dilation_h) {
        for (int64_t w = wstart; w < wend; w += p.dilation_w) {
            const T raw = plane[h * W + w];
            const float v = toFloat(raw);
            if (v > maxVal || isNan(v)) {
                maxIdx = h * W + w;
                maxVal = v;
                maxRaw = raw;
            }
        }
    }
    outVal = maxRaw;
    outIdx = maxIdx;
}

//! Load two adjacent elements; one vector load on the device when `aligned`, scalar loads on the host.
template <typename T>
SD_INLINE void loadPair(const T* p, bool aligned, T& a, T& b) {
#if defined(__CUDA_ARCH__)
    if (aligned) {
        if constexpr (sizeof(T) == 4) {
            const float2 v = *reinterpret_cast<const float2*>(p);
            a = *reinterpret_cast<const T*>(&v.x);
            b = *reinterpret_cast<const T*>(&v.y);
        } else {
            const __half2 v = *reinterpret_cast<const __half2*>(p);
            a = __low2half(v);
            b = __high2half(v);
        }
        return;
    }
#endif
    (void)aligned;
    a = p[0];
    b = p[1];
}

//! Fast path: kernel 2x2, stride 2x2, no padding, dilation 1, W even (so OW = W/2 and every window has
//! two columns). Same scan order and comparison rule as maxPoolWindow (rows may be 1 at the bottom edge
//! in ceil_mode). `aligned`: the plane pointer allows 2-element vector loads.
template <typename T>
SD_INLINE void maxPool2x2Window(const T* plane, int64_t H, int64_t W, int64_t oh, int64_t ow, bool aligned,
                                T& outVal, int64_t& outIdx) {
    const int64_t h0 = 2 * oh;
    const int64_t w0 = 2 * ow;
    T r[4];
    loadPair(plane + h0 * W + w0, aligned, r[0], r[1]);
    const bool row2 = h0 + 1 < H;
    if (row2) loadPair(plane + (h0 + 1) * W + w0, aligned, r[2], r[3]);
    float maxVal = negInf();
    T maxRaw = fromFloat<T>(maxVal);
    int64_t maxIdx = h0 * W + w0;
    const int n = row2 ? 4 : 2;
    for (int i = 0; i < 4; ++i) {
        if (i < n) {
            const float v = toFloat(r[i]);
            if (v > maxVal || isNan(v)) {
                maxVal = v;
                maxRaw = r[i];
                maxIdx = (h0 + (i >> 1)) * W + w0 + (i & 1);
            }
        }
    }
    outVal = maxRaw;
    outIdx = maxIdx;
}

//! Whether the 2x2/stride-2 fast path computes exactly what maxPoolWindow computes for these params.
SD_INLINE bool maxPoolIs2x2Fast(const MaxPool2dParams& p, int64_t W) {
    return p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
           p.pad_w == 0 && p.dilation_h == 1 && p.dilation_w == 1 && (W % 2 == 0);
}

//! The body of one CUDA thread iteration: output element `e` (linear over N*C*OH*OW). L = uint32_t: the
//! launcher guarantees total < 2^31 and the divisions use FastDiv; L = uint64_t: plain division.
template <typename T, typename I, typename L, bool kFast2x2>
SD_INLINE void maxPoolElement(const T* input, T* output, I* indices, L e, L OH, L OW, const FastDiv& divOH,
                              const FastDiv& divOW, int64_t H, int64_t W, const MaxPool2dParams& p, bool aligned) {
    L ow, t, oh, plane;
    if constexpr (sizeof(L) == 4) {
        uint32_t q, r;
        divOW.divMod(uint32_t(e), q, r);
        ow = r;
        t = q;
        divOH.divMod(uint32_t(t), q, r);
        oh = r;
        plane = q;
    } else {
        ow = e % OW;
        t = e / OW;
        oh = t % OH;
        plane = t / OH;
    }
    const T* in = input + int64_t(plane) * H * W;
    T v;
    int64_t idx;
    if (kFast2x2) {
        maxPool2x2Window(in, H, W, int64_t(oh), int64_t(ow), aligned, v, idx);
    } else {
        maxPoolWindow(in, H, W, int64_t(oh), int64_t(ow), p, v, idx);
    }
    output[e] = v;
    indices[e] = static_cast<I>(idx);
}

//! Validation shared by the launcher and the host reference (nullptr = valid).
inline const char* maxPool2dCheckImpl(const MaxPool2dParams& p, int64_t H, int64_t W) {
    if (p.kernel_h < 1 || p.kernel_w < 1) return "max_pool2d: kernel size must be >= 1";
    if (p.stride_h < 1 || p.stride_w < 1) return "max_pool2d: stride must be >= 1";
    if (p.dilation_h < 1 || p.dilation_w < 1) return "max_pool2d: dilation must be >= 1";
    if (p.pad_h < 0 || p.pad_w < 0) return "max_pool2d: padding must be >= 0";
    if (int64_t(p.pad_h) > (int64_t(p.kernel_h - 1) * p.dilation_h + 1) / 2 ||
        int64_t(p.pad_w) > (int64_t(p.kernel_w - 1) * p.dilation_w + 1) / 2)
        return "max_pool2d: pad must be at most half of the effective kernel size ((kernel-1)*dilation+1)/2";
    if (H < 1 || W < 1) return "max_pool2d: input height and width must be >= 1";
    if (H * W > int64_t(INT32_MAX)) return "max_pool2d: input plane H*W must be <= 2^31-1";
    if (maxPool2dOutputSize(H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode) < 1 ||
        maxPool2dOutputSize(W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode) < 1)
        return "max_pool2d: output size is too small (< 1) for this input, kernel, padding and dilation";
    return nullptr;
}

}  // namespace detail
}  // namespace plugins
}  // namespace segdeploy

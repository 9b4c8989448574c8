// MaxUnpool2d: per-element bodies, __host__ __device__ (shared by the CUDA kernels and the host reference
// library used by the CPU tests).
#pragma once

#include <climits>

#include "../common/numeric.cuh"
#include "maxunpool.h"

namespace segdeploy {
namespace plugins {
namespace detail {

//! Sizes of one unpool problem (per plane), plus the pooling params for the gather formulation.
struct UnpoolGeom {
    int64_t IH, IW, OH, OW;
    MaxUnpool2dParams p;
    FastDiv divSH, divSW, divOW;  // by stride_h, stride_w (gather geometry only) and by OW
};

inline UnpoolGeom makeUnpoolGeom(int64_t IH, int64_t IW, int64_t OH, int64_t OW, const MaxUnpool2dParams& p) {
    UnpoolGeom g{IH, IW, OH, OW, p, FastDiv(p.stride_h > 0 ? uint32_t(p.stride_h) : 1u),
                 FastDiv(p.stride_w > 0 ? uint32_t(p.stride_w) : 1u), FastDiv(OW > 0 ? uint32_t(OW) : 1u)};
    return g;
}

//! Whether `idx` (flat in the output plane) lies inside input element (ih, iw)'s pooling window, clipped
//! to the output. Gather geometry only.
SD_INLINE bool unpoolInOwnWindow(const UnpoolGeom& g, int64_t ih, int64_t iw, int64_t idx) {
    if (idx < 0 || idx >= g.OH * g.OW) return false;
    const int64_t oh = int64_t(g.divOW.div(uint32_t(idx)));  // idx < OH*OW <= INT32_MAX: FastDiv range
    const int64_t ow = idx - oh * g.OW;
    const int64_t h0 = ih * g.p.stride_h - g.p.pad_h;
    const int64_t w0 = iw * g.p.stride_w - g.p.pad_w;
    return oh >= h0 && oh < h0 + g.p.kernel_h && ow >= w0 && ow < w0 + g.p.kernel_w;
}

//! Gather: value of output (oh, ow) of one plane. Sets *stray when this element is the "anchor" (first
//! in-range position) of a window whose index lies outside the window (the fix-up pass handles those).
template <typename T, typename I>
SD_INLINE T unpoolGatherOne(const T* in, const I* ind, const UnpoolGeom& g, int64_t oh, int64_t ow,
                            bool& stray) {
    stray = false;
    const int64_t hp = oh + g.p.pad_h;
    const int64_t wp = ow + g.p.pad_w;
    // FastDiv (64-bit divisions are emulated and slow on the GPU; 32-bit ones cost ~20 instructions).
    const int64_t ih = int64_t(g.divSH.div(uint32_t(hp)));
    const int64_t iw = int64_t(g.divSW.div(uint32_t(wp)));
    if (hp - ih * g.p.stride_h >= g.p.kernel_h || wp - iw * g.p.stride_w >= g.p.kernel_w || ih >= g.IH ||
        iw >= g.IW)
        return fromFloat<T>(0.f);  // in no window (stride > kernel gap, or beyond the last window)
    const int64_t src = ih * g.IW + iw;
    const int64_t idx = static_cast<int64_t>(ind[src]);
    const int64_t me = oh * g.OW + ow;
    const int64_t anchorH = imax64(ih * g.p.stride_h - g.p.pad_h, 0);
    const int64_t anchorW = imax64(iw * g.p.stride_w - g.p.pad_w, 0);
    if (oh == anchorH && ow == anchorW && !unpoolInOwnWindow(g, ih, iw, idx)) stray = true;
    return idx == me ? in[src] : fromFloat<T>(0.f);
}

//! Fix-up after gather, for input element (ih, iw) of one plane: 0 = nothing to do (gather wrote it),
//! 1 = scatter it to out[idx], -1 = index out of range (skip and count).
template <typename I>
SD_INLINE int unpoolFixupAction(const I* ind, const UnpoolGeom& g, int64_t ih, int64_t iw, int64_t& idx) {
    idx = static_cast<int64_t>(ind[ih * g.IW + iw]);
    if (idx < 0 || idx >= g.OH * g.OW) return -1;
    return unpoolInOwnWindow(g, ih, iw, idx) ? 0 : 1;
}

//! Scatter: destination of input element `e` of a plane, or -1 when out of range (skip and count).
template <typename I>
SD_INLINE int64_t unpoolScatterTarget(const I* ind, int64_t e, int64_t planeOut) {
    const int64_t idx = static_cast<int64_t>(ind[e]);
    return (idx < 0 || idx >= planeOut) ? -1 : idx;
}

SD_INLINE bool unpoolGatherEligible(const MaxUnpool2dParams& p, int64_t IH, int64_t IW, int64_t OH, int64_t OW) {
    if (p.kernel_h < 1 || p.kernel_w < 1 || p.stride_h < p.kernel_h || p.stride_w < p.kernel_w) return false;
    if (p.pad_h < 0 || p.pad_w < 0 || p.pad_h > p.kernel_h - 1 || p.pad_w > p.kernel_w - 1) return false;
    // every window must have an anchor inside the output: the last window must start before OH/OW
    if (IH > 0 && (IH - 1) * p.stride_h - p.pad_h >= OH) return false;
    if (IW > 0 && (IW - 1) * p.stride_w - p.pad_w >= OW) return false;
    return true;
}

//! Count one skipped index: atomically on the device, plainly in the (sequential) host reference.
SD_INLINE void counterAdd(int32_t* c) {
#if defined(__CUDA_ARCH__)
    atomicAdd(c, 1);
#else
    ++*c;
#endif
}

//! Thread body, scatter: input element `e` (linear over N*C*IH*IW). L = uint32_t: total < 2^31, FastDiv.
template <typename T, typename I, typename L>
SD_INLINE void unpoolScatterElement(const T* input, const I* indices, T* output, L e, L planeIn,
                                    const FastDiv& divPlaneIn, int64_t planeOut, int32_t* counters) {
    int64_t plane;
    if constexpr (sizeof(L) == 4) {
        plane = int64_t(divPlaneIn.div(uint32_t(e)));
    } else {
        plane = int64_t(e / planeIn);
    }
    const int64_t dst = unpoolScatterTarget(indices, int64_t(e), planeOut);
    if (dst < 0) {
        counterAdd(counters + 1);
    } else {
        output[plane * planeOut + dst] = input[e];
    }
}

//! Thread body, gather: output element `ow` of output row (plane, oh); (plane, oh) = divmod(row, OH) is
//! computed once per row by the caller. Returns "stray index seen".
template <typename T, typename I>
SD_INLINE bool unpoolGatherElement(const T* input, const I* indices, T* output, const UnpoolGeom& g, int64_t plane,
                                   int64_t oh, int32_t ow) {
    const int64_t planeIn = g.IH * g.IW;
    const int64_t row = plane * g.OH + oh;
    bool stray;
    output[row * g.OW + ow] = unpoolGatherOne(input + plane * planeIn, indices + plane * planeIn, g, oh, int64_t(ow), stray);
    return stray;
}

//! Thread body, fix-up after gather: input element `e`. Only runs when the gather pass saw a stray index,
//! so plain divisions are fine.
template <typename T, typename I, typename L>
SD_INLINE void unpoolFixupElement(const T* input, const I* indices, T* output, L e, const UnpoolGeom& g,
                                  int32_t* counters) {
    const L IW = L(g.IW), IH = L(g.IH);
    const L iw = e % IW;
    const L t = e / IW;
    const L ih = t % IH;
    const int64_t plane = int64_t(t / IH);
    const int64_t planeIn = g.IH * g.IW;
    int64_t idx;
    const int action = unpoolFixupAction(indices + plane * planeIn, g, int64_t(ih), int64_t(iw), idx);
    if (action < 0) {
        counterAdd(counters + 1);
    } else if (action > 0) {
        output[plane * g.OH * g.OW + idx] = input[e];
    }
}

//! Validation shared by the launcher and the host reference (nullptr = valid).
inline const char* maxUnpool2dCheckImpl(const MaxUnpool2dParams& p, int64_t IH, int64_t IW, int64_t OH, int64_t OW) {
    if (IH < 0 || IW < 0) return "max_unpool2d: input height and width must be >= 0";
    if (OH < 1 || OW < 1) return "max_unpool2d: output height and width must be >= 1";
    if (IH * IW > int64_t(INT32_MAX) || OH * OW > int64_t(INT32_MAX))
        return "max_unpool2d: input and output planes (H*W) must be <= 2^31-1";
    return nullptr;
}

}  // namespace detail
}  // namespace plugins
}  // namespace segdeploy

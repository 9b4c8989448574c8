// Host (CPU) build of the kernels' __host__ __device__ bodies -- the SAME code the CUDA kernels run per
// element -- with the launchers' path selection emulated sequentially. It lets a machine without a GPU test
// the kernels' index math, boundary rules, NaN/tie handling, unpool algorithms and RoiAlign sample tables
// against PyTorch/torchvision (tests/plugins/test_kernels_host.py). Not a product: no performance intent.
// Compiled with a plain C++ compiler (cuda_fp16.h supplies host half conversions):
//   c++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -I<csrc> -I<cuda>/include host_reference.cpp
// Exported functions mirror capi.h with host pointers and an explicit `path` (see each function).
#include <cstring>
#include <vector>

#include "capi.h"
#include "maxpool_indices/maxpool_indices_impl.cuh"
#include "maxunpool/maxunpool_impl.cuh"
#include "roi_align/roi_align_impl.cuh"

using namespace segdeploy::plugins;
using namespace segdeploy::plugins::detail;

namespace {

thread_local const char* tLastError = "";

int32_t fail(const char* why) {
    tLastError = why;
    return 1;  // cudaErrorInvalidValue
}

constexpr int32_t kHostThreads = 256;  // "threads" per block in the emulation (the kernels use 256)

// path: 0 = as the launcher (2x2 fast path when eligible, 32-bit indexing when < 2^31 outputs),
// 1 = generic window loop, 2 = force the 64-bit linear indexing path.
template <typename T, typename I>
void maxPoolHost(const T* in, T* out, I* ind, int64_t planes, int64_t H, int64_t W, const MaxPool2dParams& p,
                 int32_t path) {
    const int64_t OH = maxPool2dOutputSize(H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
    const int64_t OW = maxPool2dOutputSize(W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
    const int64_t total = planes * OH * OW;
    const bool fast = path != 1 && maxPoolIs2x2Fast(p, W);
    if (total <= int64_t(INT32_MAX) && path != 2) {
        const FastDiv dOH(uint32_t(OH > 0 ? OH : 1)), dOW(uint32_t(OW > 0 ? OW : 1));
        for (uint32_t e = 0; e < uint32_t(total); ++e) {
            if (fast) maxPoolElement<T, I, uint32_t, true>(in, out, ind, e, uint32_t(OH), uint32_t(OW), dOH, dOW, H, W, p, false);
            else maxPoolElement<T, I, uint32_t, false>(in, out, ind, e, uint32_t(OH), uint32_t(OW), dOH, dOW, H, W, p, false);
        }
    } else {
        const FastDiv one(1u);
        for (uint64_t e = 0; e < uint64_t(total); ++e) {
            if (fast) maxPoolElement<T, I, uint64_t, true>(in, out, ind, e, uint64_t(OH), uint64_t(OW), one, one, H, W, p, false);
            else maxPoolElement<T, I, uint64_t, false>(in, out, ind, e, uint64_t(OH), uint64_t(OW), one, one, H, W, p, false);
        }
    }
}

// wide: force the 64-bit linear indexing of the scatter / fix-up kernels.
template <typename T, typename I>
void unpoolHost(const T* in, const I* ind, T* out, int64_t planes, const UnpoolGeom& g, bool gather, bool wide,
                int32_t* counters) {
    const int64_t planeIn = g.IH * g.IW, planeOut = g.OH * g.OW;
    const int64_t totalIn = planes * planeIn;
    const bool small = !wide && totalIn <= int64_t(INT32_MAX) && planes * planeOut <= int64_t(INT32_MAX);
    counters[0] = counters[1] = 0;
    if (gather) {
        bool stray = false;
        for (int64_t row = 0; row < planes * g.OH; ++row) {  // the kernel's block loop
            const int64_t plane = row / g.OH;
            const int64_t oh = row - plane * g.OH;
            for (int32_t ow = 0; ow < int32_t(g.OW); ++ow) stray |= unpoolGatherElement(in, ind, out, g, plane, oh, ow);
        }
        if (stray) counters[0] = 1;
        if (counters[0] == 0) return;  // the fix-up kernel's early exit
        for (int64_t e = 0; e < totalIn; ++e) {
            if (small) unpoolFixupElement<T, I, uint32_t>(in, ind, out, uint32_t(e), g, counters);
            else unpoolFixupElement<T, I, uint64_t>(in, ind, out, uint64_t(e), g, counters);
        }
    } else {
        std::memset(static_cast<void*>(out), 0, size_t(planes * planeOut) * sizeof(T));
        const FastDiv dPlane(uint32_t(planeIn > 0 && planeIn <= INT32_MAX ? planeIn : 1));
        for (int64_t e = 0; e < totalIn; ++e) {
            if (small) unpoolScatterElement<T, I, uint32_t>(in, ind, out, uint32_t(e), uint32_t(planeIn), dPlane, planeOut, counters);
            else unpoolScatterElement<T, I, uint64_t>(in, ind, out, uint64_t(e), uint64_t(planeIn), dPlane, planeOut, counters);
        }
    }
}

// path: 0 = as the CUDA kernel (table when the box's samples fit the launch config's capacity),
// 1 = direct (torchvision structure) only, 2 = table only. Blocks and their threads run sequentially,
// phase by phase (the kernel's __syncthreads separate the phases).
template <typename T, typename B>
void roiAlignHost(const T* feat, const B* boxes, const void* bidx, IndexType bt, T* out, int64_t N, int64_t C,
                  int64_t H, int64_t W, int64_t K, const RoiAlignParams& p, int32_t path) {
    RoiLaunchConfig cfg = roiLaunchConfig(p, C);
    if (path == 1) cfg.cap = 0;
    std::vector<int32_t> table;
    for (int64_t blk = 0; blk < K * cfg.numChunks; ++blk) {
        const RoiBlock b = roiBlockSetup(blk, cfg, boxes, bidx, bt, N, C, p);
        if (b.g.batch < 0) {
            for (int32_t tid = 0; tid < kHostThreads; ++tid) roiBlockZero(b, out, C, p, tid, kHostThreads);
            continue;
        }
        const bool useTable = path == 2 || b.nS <= cfg.cap;
        const int32_t cap = path == 2 ? int32_t(b.nS > 0 ? b.nS : 1) : cfg.cap;
        if (useTable) {
            table.assign(size_t(8) * size_t(cap > 0 ? cap : 1), 0);
            for (int32_t tid = 0; tid < kHostThreads; ++tid) roiBlockFillTable(b, p, H, W, table.data(), cap, tid, kHostThreads);
        }
        for (int32_t tid = 0; tid < kHostThreads; ++tid)
            roiBlockOutputs(b, useTable, feat, out, p, C, H, W, table.data(), cap, tid, kHostThreads);
    }
}

}  // namespace

extern "C" {

SD_API const char* sdref_last_error(void) { return tLastError; }

// FastDiv as the kernels use it (host branch; the device branch computes the same with __umulhi).
SD_API uint32_t sdref_fastdiv(uint32_t n, uint32_t d) { return FastDiv(d).div(n); }

// path: see maxPoolHost.
SD_API int32_t sdref_maxpool2d_with_indices(const void* input, void* output, void* indices, int32_t dtype,
                                            int32_t index_type, int64_t n, int64_t c, int64_t h, int64_t w,
                                            int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                            int32_t pad_h, int32_t pad_w, int32_t dilation_h, int32_t dilation_w,
                                            int32_t ceil_mode, int32_t path) {
    tLastError = "";
    MaxPool2dParams p;
    p.kernel_h = kernel_h; p.kernel_w = kernel_w; p.stride_h = stride_h; p.stride_w = stride_w;
    p.pad_h = pad_h; p.pad_w = pad_w; p.dilation_h = dilation_h; p.dilation_w = dilation_w;
    p.ceil_mode = ceil_mode != 0;
    if (const char* why = maxPool2dCheckImpl(p, h, w)) return fail(why);
    const int64_t planes = n * c;
    if (dtype == 0 && index_type == 0)
        maxPoolHost(static_cast<const float*>(input), static_cast<float*>(output), static_cast<int32_t*>(indices), planes, h, w, p, path);
    else if (dtype == 0 && index_type == 1)
        maxPoolHost(static_cast<const float*>(input), static_cast<float*>(output), static_cast<int64_t*>(indices), planes, h, w, p, path);
    else if (dtype == 1 && index_type == 0)
        maxPoolHost(static_cast<const __half*>(input), static_cast<__half*>(output), static_cast<int32_t*>(indices), planes, h, w, p, path);
    else if (dtype == 1 && index_type == 1)
        maxPoolHost(static_cast<const __half*>(input), static_cast<__half*>(output), static_cast<int64_t*>(indices), planes, h, w, p, path);
    else
        return fail("max_pool2d: dtype must be 0 (float32) or 1 (float16), index type 0 (int32) or 1 (int64)");
    return 0;
}

SD_API int32_t sdref_maxunpool2d_gather_eligible(int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                                 int32_t pad_h, int32_t pad_w, int64_t in_h, int64_t in_w,
                                                 int64_t out_h, int64_t out_w) {
    MaxUnpool2dParams p{kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w};
    return unpoolGatherEligible(p, in_h, in_w, out_h, out_w) ? 1 : 0;
}

// counters (host int32[2]): [0] stray flag (gather), [1] out-of-range indices skipped.
// path: 0 = as the launcher, 2 = force the 64-bit linear indexing of the scatter / fix-up kernels.
SD_API int32_t sdref_maxunpool2d(const void* input, const void* indices, void* output, int32_t dtype, int32_t index_type,
                                 int64_t n, int64_t c, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                 int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w, int32_t pad_h,
                                 int32_t pad_w, int32_t algo, int32_t* counters, int32_t path) {
    tLastError = "";
    MaxUnpool2dParams p{kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w};
    if (const char* why = maxUnpool2dCheckImpl(p, in_h, in_w, out_h, out_w)) return fail(why);
    const bool eligible = unpoolGatherEligible(p, in_h, in_w, out_h, out_w);
    if (algo < 0 || algo > 2) return fail("max_unpool2d: algo must be 0 (auto), 1 (scatter) or 2 (gather)");
    if (algo == 2 && !eligible)
        return fail("max_unpool2d: gather needs stride >= kernel, pad <= kernel-1 and every window inside the output; use algo 0 (auto) or 1 (scatter)");
    const bool gather = algo == 2 || (algo == 0 && eligible);
    const UnpoolGeom g = makeUnpoolGeom(in_h, in_w, out_h, out_w, p);
    const int64_t planes = n * c;
    if (dtype == 0 && index_type == 0)
        unpoolHost(static_cast<const float*>(input), static_cast<const int32_t*>(indices), static_cast<float*>(output), planes, g, gather, path == 2, counters);
    else if (dtype == 0 && index_type == 1)
        unpoolHost(static_cast<const float*>(input), static_cast<const int64_t*>(indices), static_cast<float*>(output), planes, g, gather, path == 2, counters);
    else if (dtype == 1 && index_type == 0)
        unpoolHost(static_cast<const __half*>(input), static_cast<const int32_t*>(indices), static_cast<__half*>(output), planes, g, gather, path == 2, counters);
    else if (dtype == 1 && index_type == 1)
        unpoolHost(static_cast<const __half*>(input), static_cast<const int64_t*>(indices), static_cast<__half*>(output), planes, g, gather, path == 2, counters);
    else
        return fail("max_unpool2d: dtype must be 0 (float32) or 1 (float16), index type 0 (int32) or 1 (int64)");
    return 0;
}

// path: 0 = as the CUDA kernel chooses, 1 = direct only, 2 = shared-memory-table formulation only.
SD_API int32_t sdref_roi_align(const void* features, const void* boxes, const void* batch_indices, void* output,
                               int32_t dtype, int32_t box_dtype, int32_t batch_index_type, int64_t n, int64_t c,
                               int64_t h, int64_t w, int64_t k, int32_t pooled_h, int32_t pooled_w,
                               float spatial_scale, int32_t sampling_ratio, int32_t aligned, int32_t path) {
    tLastError = "";
    RoiAlignParams p;
    p.pooled_h = pooled_h; p.pooled_w = pooled_w; p.spatial_scale = spatial_scale;
    p.sampling_ratio = sampling_ratio; p.aligned = aligned != 0;
    if (const char* why = roiAlignCheckImpl(p, n, c, h, w, k)) return fail(why);
    if (batch_index_type != 0 && batch_index_type != 1) return fail("roi_align: batch index type must be 0 (int32) or 1 (int64)");
    const IndexType bt = static_cast<IndexType>(batch_index_type);
#define SD_ROI(T, B) roiAlignHost(static_cast<const T*>(features), static_cast<const B*>(boxes), batch_indices, bt, \
                                  static_cast<T*>(output), n, c, h, w, k, p, path)
    if (dtype == 0 && box_dtype == 0) SD_ROI(float, float);
    else if (dtype == 0 && box_dtype == 1) SD_ROI(float, __half);
    else if (dtype == 1 && box_dtype == 0) SD_ROI(__half, float);
    else if (dtype == 1 && box_dtype == 1) SD_ROI(__half, __half);
    else return fail("roi_align: dtypes must be 0 (float32) or 1 (float16)");
#undef SD_ROI
    return 0;
}

}  // extern "C"

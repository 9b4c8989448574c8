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

template <typename T, typename I>
void maxPoolHost(const T* in, T* out, I* ind, int64_t planes, int64_t H, int64_t W, const MaxPool2dParams& p,
                 bool generic) {
    const int64_t OH = maxPool2dOutputSize(H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
    const int64_t OW = maxPool2dOutputSize(W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
    const bool fast = !generic && maxPoolIs2x2Fast(p, W);
    for (int64_t pl = 0; pl < planes; ++pl) {
        const T* plane = in + pl * H * W;
        for (int64_t oh = 0; oh < OH; ++oh) {
            for (int64_t ow = 0; ow < OW; ++ow) {
                T v;
                int64_t idx;
                if (fast) {
                    maxPool2x2Window(plane, H, W, oh, ow, false, v, idx);
                } else {
                    maxPoolWindow(plane, H, W, oh, ow, p, v, idx);
                }
                const int64_t e = (pl * OH + oh) * OW + ow;
                out[e] = v;
                ind[e] = static_cast<I>(idx);
            }
        }
    }
}

template <typename T, typename I>
void unpoolHost(const T* in, const I* ind, T* out, int64_t planes, const UnpoolGeom& g, bool gather,
                int32_t* counters) {
    const int64_t planeIn = g.IH * g.IW, planeOut = g.OH * g.OW;
    counters[0] = counters[1] = 0;
    if (gather) {
        for (int64_t pl = 0; pl < planes; ++pl) {
            for (int64_t oh = 0; oh < g.OH; ++oh) {
                for (int64_t ow = 0; ow < g.OW; ++ow) {
                    bool stray;
                    out[pl * planeOut + oh * g.OW + ow] =
                        unpoolGatherOne(in + pl * planeIn, ind + pl * planeIn, g, oh, ow, stray);
                    if (stray) counters[0] = 1;
                }
            }
        }
        if (counters[0] == 0) return;  // the fix-up kernel's early exit
        for (int64_t pl = 0; pl < planes; ++pl) {
            for (int64_t ih = 0; ih < g.IH; ++ih) {
                for (int64_t iw = 0; iw < g.IW; ++iw) {
                    int64_t idx;
                    const int action = unpoolFixupAction(ind + pl * planeIn, g, ih, iw, idx);
                    if (action < 0) {
                        counters[1] += 1;
                    } else if (action > 0) {
                        out[pl * planeOut + idx] = in[pl * planeIn + ih * g.IW + iw];
                    }
                }
            }
        }
    } else {
        std::memset(static_cast<void*>(out), 0, size_t(planes * planeOut) * sizeof(T));
        for (int64_t pl = 0; pl < planes; ++pl) {
            for (int64_t e = 0; e < planeIn; ++e) {
                const int64_t dst = unpoolScatterTarget(ind + pl * planeIn, e, planeOut);
                if (dst < 0) {
                    counters[1] += 1;
                } else {
                    out[pl * planeOut + dst] = in[pl * planeIn + e];
                }
            }
        }
    }
}

// path: 0 = as the CUDA kernel chooses (table when the box's samples fit kMaxTable=1024 / the fixed count),
// 1 = direct (torchvision structure) only, 2 = table only.
template <typename T, typename B>
void roiAlignHost(const T* feat, const B* boxes, const void* bidx, IndexType bt, T* out, int64_t N, int64_t C,
                  int64_t H, int64_t W, int64_t K, const RoiAlignParams& p, int32_t path) {
    const int32_t bins = p.pooled_h * p.pooled_w;
    int32_t cap = 1024;  // must match roi_align.cu
    if (p.sampling_ratio > 0) {
        const int64_t fixed = int64_t(bins) * p.sampling_ratio * p.sampling_ratio;
        cap = fixed <= 1024 ? int32_t(fixed) : 0;
    }
    std::vector<int32_t> table;
    for (int64_t k = 0; k < K; ++k) {
        const RoiGeom g = roiGeometryOf(boxes, bidx, bt, k, N, p);
        T* o = out + k * C * bins;
        if (g.batch < 0) {
            for (int64_t e = 0; e < C * bins; ++e) o[e] = fromFloat<T>(0.f);
            continue;
        }
        const int64_t nS = roiSampleCount(g, p);
        const bool useTable = path == 2 || (path == 0 && nS <= cap);
        const int32_t tcap = path == 2 ? int32_t(nS) : cap;
        if (useTable) {
            table.assign(size_t(8) * (tcap > 0 ? tcap : 1), 0);
            for (int32_t s = 0; s < int32_t(nS); ++s) tableStore(table.data(), tcap, s, roiTableSample(g, p, H, W, s));
        }
        for (int64_t c = 0; c < C; ++c) {
            const T* plane = feat + (g.batch * C + c) * H * W;
            for (int32_t bin = 0; bin < bins; ++bin) {
                const float v = useTable ? roiAlignOutputTable(plane, g, p, table.data(), tcap, bin)
                                         : roiAlignOutputDirect(plane, g, H, W, bin / p.pooled_w, bin % p.pooled_w);
                o[c * bins + bin] = fromFloat<T>(v);
            }
        }
    }
}

}  // namespace

extern "C" {

SD_API const char* sdref_last_error(void) { return tLastError; }

// FastDiv as the kernels use it (host branch; the device branch computes the same with __umulhi).
SD_API uint32_t sdref_fastdiv(uint32_t n, uint32_t d) { return FastDiv(d).div(n); }

// path: 0 = as the CUDA launcher chooses (2x2 fast path when eligible), 1 = generic window loop only.
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
    const bool generic = path == 1;
    if (dtype == 0 && index_type == 0)
        maxPoolHost(static_cast<const float*>(input), static_cast<float*>(output), static_cast<int32_t*>(indices), planes, h, w, p, generic);
    else if (dtype == 0 && index_type == 1)
        maxPoolHost(static_cast<const float*>(input), static_cast<float*>(output), static_cast<int64_t*>(indices), planes, h, w, p, generic);
    else if (dtype == 1 && index_type == 0)
        maxPoolHost(static_cast<const __half*>(input), static_cast<__half*>(output), static_cast<int32_t*>(indices), planes, h, w, p, generic);
    else if (dtype == 1 && index_type == 1)
        maxPoolHost(static_cast<const __half*>(input), static_cast<__half*>(output), static_cast<int64_t*>(indices), planes, h, w, p, generic);
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
SD_API int32_t sdref_maxunpool2d(const void* input, const void* indices, void* output, int32_t dtype, int32_t index_type,
                                 int64_t n, int64_t c, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                 int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w, int32_t pad_h,
                                 int32_t pad_w, int32_t algo, int32_t* counters) {
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
        unpoolHost(static_cast<const float*>(input), static_cast<const int32_t*>(indices), static_cast<float*>(output), planes, g, gather, counters);
    else if (dtype == 0 && index_type == 1)
        unpoolHost(static_cast<const float*>(input), static_cast<const int64_t*>(indices), static_cast<float*>(output), planes, g, gather, counters);
    else if (dtype == 1 && index_type == 0)
        unpoolHost(static_cast<const __half*>(input), static_cast<const int32_t*>(indices), static_cast<__half*>(output), planes, g, gather, counters);
    else if (dtype == 1 && index_type == 1)
        unpoolHost(static_cast<const __half*>(input), static_cast<const int64_t*>(indices), static_cast<__half*>(output), planes, g, gather, counters);
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

// RoiAlign: per-box / per-sample / per-output bodies, __host__ __device__ (shared by the CUDA kernel and the
// host reference library used by the CPU tests). Expression order follows torchvision's float kernel.
#pragma once

#include <climits>

#include "../common/numeric.cuh"
#include "roi_align.h"

namespace segdeploy {
namespace plugins {
namespace detail {

//! Geometry of one box after scaling (torchvision's per-output prologue, computed once per box).
struct RoiGeom {
    int64_t batch;      //!< -1: invalid batch index (the box's output is all zeros)
    float start_h, start_w;
    float bin_h, bin_w;
    int32_t grid_h, grid_w;  //!< samples per bin side (may be <= 0: no samples)
    float count;             //!< max(grid_h * grid_w, 1)
};

//! Read a box value of either dtype as float.
template <typename B>
SD_INLINE float boxAt(const B* boxes, int64_t i) { return toFloat(boxes[i]); }

//! Adaptive samples per bin side: ceil(bin), as torchvision; <= 0 -> 0 (no samples, same result as
//! torchvision's empty loops), capped at kMaxAdaptiveGrid so that grid_h * grid_w cannot overflow.
constexpr int32_t kMaxAdaptiveGrid = 16384;
SD_INLINE int32_t adaptiveGrid(float binSize) {
    const float c = ceilf(binSize);
    if (!(c >= 1.f)) return 0;
    return c < float(kMaxAdaptiveGrid) ? int32_t(c) : kMaxAdaptiveGrid;
}

//! batchF: the batch index as read (float from a [K,5] box, or an integer array value converted).
SD_INLINE RoiGeom roiGeometry(float batchF, float x1, float y1, float x2, float y2, int64_t N,
                              const RoiAlignParams& p) {
    RoiGeom g;
    // torchvision casts the float to int (truncation); anything not in [0, N) after that is invalid here.
    g.batch = (batchF > -1.f && batchF < float(N)) ? int64_t(int32_t(batchF)) : -1;
    if (g.batch >= N) g.batch = -1;
    const float offset = p.aligned ? 0.5f : 0.f;
    const float roi_start_w = x1 * p.spatial_scale - offset;
    const float roi_start_h = y1 * p.spatial_scale - offset;
    const float roi_end_w = x2 * p.spatial_scale - offset;
    const float roi_end_h = y2 * p.spatial_scale - offset;
    float roi_width = roi_end_w - roi_start_w;
    float roi_height = roi_end_h - roi_start_h;
    if (!p.aligned) {
        roi_width = roi_width > 1.f ? roi_width : 1.f;
        roi_height = roi_height > 1.f ? roi_height : 1.f;
    }
    g.start_h = roi_start_h;
    g.start_w = roi_start_w;
    g.bin_h = roi_height / static_cast<float>(p.pooled_h);
    g.bin_w = roi_width / static_cast<float>(p.pooled_w);
    g.grid_h = (p.sampling_ratio > 0) ? p.sampling_ratio : adaptiveGrid(roi_height / p.pooled_h);
    g.grid_w = (p.sampling_ratio > 0) ? p.sampling_ratio : adaptiveGrid(roi_width / p.pooled_w);
    // Non-finite coordinates (torchvision: undefined behaviour, possibly a hang) give zeros here.
    if (!(isFinite(roi_start_h) && isFinite(roi_start_w) && isFinite(roi_end_h) && isFinite(roi_end_w))) g.batch = -1;
    const int32_t prod = g.grid_h * g.grid_w;
    g.count = static_cast<float>(prod > 1 ? prod : 1);
    return g;
}

//! One bilinear sample: 4 flat offsets into the plane and 4 weights (all zero outside, torchvision rule).
struct Sample {
    int32_t o1, o2, o3, o4;
    float w1, w2, w3, w4;
};

SD_INLINE Sample bilinearSample(int64_t height, int64_t width, float y, float x) {
    Sample s{0, 0, 0, 0, 0.f, 0.f, 0.f, 0.f};
    // torchvision: y < -1 || y > H || x < -1 || x > W -> 0. Written negated so that NaN is rejected too.
    if (!(y >= -1.0f && y <= float(height) && x >= -1.0f && x <= float(width))) return s;
    if (y <= 0) y = 0;
    if (x <= 0) x = 0;
    int32_t y_low = int32_t(y);
    int32_t x_low = int32_t(x);
    int32_t y_high, x_high;
    if (y_low >= height - 1) {
        y_high = y_low = int32_t(height - 1);
        y = float(y_low);
    } else {
        y_high = y_low + 1;
    }
    if (x_low >= width - 1) {
        x_high = x_low = int32_t(width - 1);
        x = float(x_low);
    } else {
        x_high = x_low + 1;
    }
    const float ly = y - y_low;
    const float lx = x - x_low;
    const float hy = 1.f - ly, hx = 1.f - lx;
    s.o1 = int32_t(y_low * width + x_low);
    s.o2 = int32_t(y_low * width + x_high);
    s.o3 = int32_t(y_high * width + x_low);
    s.o4 = int32_t(y_high * width + x_high);
    s.w1 = hy * hx;
    s.w2 = hy * lx;
    s.w3 = ly * hx;
    s.w4 = ly * lx;
    return s;
}

//! Sample (iy, ix) of bin (ph, pw).
SD_INLINE Sample roiSample(const RoiGeom& g, int64_t H, int64_t W, int32_t ph, int32_t pw, int32_t iy, int32_t ix) {
    const float y = g.start_h + ph * g.bin_h + static_cast<float>(iy + .5f) * g.bin_h / static_cast<float>(g.grid_h);
    const float x = g.start_w + pw * g.bin_w + static_cast<float>(ix + .5f) * g.bin_w / static_cast<float>(g.grid_w);
    return bilinearSample(H, W, y, x);
}

template <typename T>
SD_INLINE float sampleValue(const T* plane, const Sample& s) {
    return s.w1 * toFloat(plane[s.o1]) + s.w2 * toFloat(plane[s.o2]) + s.w3 * toFloat(plane[s.o3]) +
           s.w4 * toFloat(plane[s.o4]);
}

//! Output (ph, pw) of one box and channel, samples computed on the fly (torchvision's structure).
template <typename T>
SD_INLINE float roiAlignOutputDirect(const T* plane, const RoiGeom& g, int64_t H, int64_t W, int32_t ph, int32_t pw) {
    float acc = 0.f;
    for (int32_t iy = 0; iy < g.grid_h; iy++) {
        for (int32_t ix = 0; ix < g.grid_w; ix++) {
            acc += sampleValue(plane, roiSample(g, H, W, ph, pw, iy, ix));
        }
    }
    return acc / g.count;
}

//! Number of samples of a box (all bins), 0 when its grid is empty.
SD_INLINE int64_t roiSampleCount(const RoiGeom& g, const RoiAlignParams& p) {
    if (g.grid_h <= 0 || g.grid_w <= 0) return 0;
    return int64_t(p.pooled_h) * p.pooled_w * g.grid_h * g.grid_w;
}

//! Precomputed sample table of one box, structure-of-arrays so that threads working on consecutive bins
//! read consecutive 32-bit words (no shared-memory bank conflicts): field f of slot s at tbl[f*cap + s];
//! fields 0-3 the int32 offsets, 4-7 the float weights (bit-cast). Slot of (bin, r) = r * bins + bin, with
//! r = iy * grid_w + ix the sample number inside the bin.
SD_INLINE void tableStore(int32_t* tbl, int32_t cap, int32_t slot, const Sample& s) {
    tbl[slot] = s.o1;
    tbl[cap + slot] = s.o2;
    tbl[2 * cap + slot] = s.o3;
    tbl[3 * cap + slot] = s.o4;
    float* w = reinterpret_cast<float*>(tbl + 4 * cap);
    w[slot] = s.w1;
    w[cap + slot] = s.w2;
    w[2 * cap + slot] = s.w3;
    w[3 * cap + slot] = s.w4;
}

SD_INLINE Sample tableLoad(const int32_t* tbl, int32_t cap, int32_t slot) {
    const float* w = reinterpret_cast<const float*>(tbl + 4 * cap);
    return Sample{tbl[slot], tbl[cap + slot], tbl[2 * cap + slot], tbl[3 * cap + slot],
                  w[slot],   w[cap + slot],   w[2 * cap + slot],   w[3 * cap + slot]};
}

//! Table slot `slot` (< roiSampleCount) of a box: which sample it holds.
SD_INLINE Sample roiTableSample(const RoiGeom& g, const RoiAlignParams& p, int64_t H, int64_t W, int32_t slot) {
    const int32_t bins = p.pooled_h * p.pooled_w;
    const int32_t r = slot / bins;
    const int32_t bin = slot - r * bins;
    return roiSample(g, H, W, bin / p.pooled_w, bin % p.pooled_w, r / g.grid_w, r % g.grid_w);
}

//! Output `bin` of one box and channel from the table (same summation order as roiAlignOutputDirect).
template <typename T>
SD_INLINE float roiAlignOutputTable(const T* plane, const RoiGeom& g, const RoiAlignParams& p,
                                    const int32_t* tbl, int32_t cap, int32_t bin) {
    const int32_t bins = p.pooled_h * p.pooled_w;
    const int32_t per = g.grid_h * g.grid_w;
    float acc = 0.f;
    for (int32_t r = 0; r < per; ++r) acc += sampleValue(plane, tableLoad(tbl, cap, r * bins + bin));
    return acc / g.count;
}

//! Geometry of box k: boxes [K,5] when batchIndices is null, else boxes [K,4] + batchIndices [K].
template <typename B>
SD_INLINE RoiGeom roiGeometryOf(const B* boxes, const void* batchIndices, IndexType bt, int64_t k, int64_t N,
                                const RoiAlignParams& p) {
    if (batchIndices == nullptr) {
        const B* b = boxes + k * 5;
        return roiGeometry(toFloat(b[0]), toFloat(b[1]), toFloat(b[2]), toFloat(b[3]), toFloat(b[4]), N, p);
    }
    const int64_t bi = bt == IndexType::kINT32 ? int64_t(static_cast<const int32_t*>(batchIndices)[k])
                                               : static_cast<const int64_t*>(batchIndices)[k];
    const B* b = boxes + k * 4;
    RoiGeom g = roiGeometry(0.f, toFloat(b[0]), toFloat(b[1]), toFloat(b[2]), toFloat(b[3]), N, p);
    if (g.batch >= 0) g.batch = (bi >= 0 && bi < N) ? bi : -1;  // keep -1 of a non-finite box
    return g;
}

// ---- block-level structure of the CUDA kernel (also run, block by block and thread by thread, by the
// ---- host reference): one block per (box, channel chunk); phase 1 fills the sample table, barrier,
// ---- phase 2 computes the outputs.
constexpr int32_t kRoiMaxTable = 1024;        // samples; 8 words each -> 32 KiB of shared memory
constexpr int32_t kRoiOutputsPerBlock = 1024; // target (channel, bin) outputs per block (~4 per thread)

struct RoiLaunchConfig {
    int32_t chunkC;     //!< channels per block
    int64_t numChunks;  //!< blocks per box
    int32_t cap;        //!< table capacity in samples (0: no table unless a box has no samples)
};

inline RoiLaunchConfig roiLaunchConfig(const RoiAlignParams& p, int64_t C) {
    RoiLaunchConfig cfg;
    const int32_t bins = p.pooled_h * p.pooled_w;
    int64_t chunkC = kRoiOutputsPerBlock / bins;
    if (chunkC < 1) chunkC = 1;
    if (chunkC > C) chunkC = C;
    cfg.chunkC = int32_t(chunkC);
    cfg.numChunks = chunkC > 0 ? (C + chunkC - 1) / chunkC : 0;
    // exactly the fixed sample count when sampling_ratio > 0 (0 = direct when too big); the maximum for
    // adaptive sampling (per-box counts differ)
    cfg.cap = kRoiMaxTable;
    if (p.sampling_ratio > 0) {
        const int64_t fixed = int64_t(bins) * p.sampling_ratio * p.sampling_ratio;
        cfg.cap = fixed <= kRoiMaxTable ? int32_t(fixed) : 0;
    }
    return cfg;
}

struct RoiBlock {
    int64_t k, c0;     //!< box, first channel
    int32_t outputs;   //!< (channel, bin) outputs of this block
    RoiGeom g;         //!< g.batch < 0: all outputs are zero
    int64_t nS;        //!< samples of the box
};

template <typename B>
SD_INLINE RoiBlock roiBlockSetup(int64_t blk, const RoiLaunchConfig& cfg, const B* boxes, const void* batchIndices,
                                 IndexType bt, int64_t N, int64_t C, const RoiAlignParams& p) {
    RoiBlock b;
    b.k = blk / cfg.numChunks;
    b.c0 = (blk - b.k * cfg.numChunks) * cfg.chunkC;
    const int64_t nc = (C - b.c0) < cfg.chunkC ? (C - b.c0) : cfg.chunkC;
    b.outputs = int32_t(nc) * (p.pooled_h * p.pooled_w);
    b.g = roiGeometryOf(boxes, batchIndices, bt, b.k, N, p);
    b.nS = roiSampleCount(b.g, p);
    return b;
}

template <typename T>
SD_INLINE void roiBlockZero(const RoiBlock& b, T* output, int64_t C, const RoiAlignParams& p, int32_t tid,
                            int32_t nthreads) {
    T* out = output + (b.k * C + b.c0) * (p.pooled_h * p.pooled_w);
    for (int32_t e = tid; e < b.outputs; e += nthreads) out[e] = fromFloat<T>(0.f);
}

SD_INLINE void roiBlockFillTable(const RoiBlock& b, const RoiAlignParams& p, int64_t H, int64_t W, int32_t* table,
                                 int32_t cap, int32_t tid, int32_t nthreads) {
    for (int32_t s = tid; s < int32_t(b.nS); s += nthreads) tableStore(table, cap, s, roiTableSample(b.g, p, H, W, s));
}

template <typename T>
SD_INLINE void roiBlockOutputs(const RoiBlock& b, bool useTable, const T* features, T* output, const RoiAlignParams& p,
                               int64_t C, int64_t H, int64_t W, const int32_t* table, int32_t cap, int32_t tid,
                               int32_t nthreads) {
    const int32_t bins = p.pooled_h * p.pooled_w;
    T* out = output + (b.k * C + b.c0) * bins;
    const T* base = features + (b.g.batch * C + b.c0) * H * W;
    for (int32_t e = tid; e < b.outputs; e += nthreads) {
        const int32_t c = e / bins;
        const int32_t bin = e - c * bins;
        const float v = useTable ? roiAlignOutputTable(base + c * H * W, b.g, p, table, cap, bin)
                                 : roiAlignOutputDirect(base + c * H * W, b.g, H, W, bin / p.pooled_w, bin % p.pooled_w);
        out[e] = fromFloat<T>(v);
    }
}

//! Validation shared by the launcher and the host reference (nullptr = valid).
inline const char* roiAlignCheckImpl(const RoiAlignParams& p, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K) {
    if (p.pooled_h < 1 || p.pooled_w < 1) return "roi_align: output size must be >= 1";
    if (int64_t(p.pooled_h) * p.pooled_w > 65536) return "roi_align: output size pooled_h*pooled_w must be <= 65536";
    if (!(p.spatial_scale > 0.f) || p.spatial_scale != p.spatial_scale || p.spatial_scale > 3.0e38f)
        return "roi_align: spatial_scale must be a finite number > 0";
    if (N < 0 || C < 0 || K < 0) return "roi_align: N, C and K must be >= 0";
    if (H < 1 || W < 1) return "roi_align: feature height and width must be >= 1";
    if (H * W > int64_t(INT32_MAX)) return "roi_align: feature plane H*W must be <= 2^31-1";
    if (N > int64_t(INT32_MAX)) return "roi_align: batch size must be <= 2^31-1";
    return nullptr;
}

}  // namespace detail
}  // namespace plugins
}  // namespace segdeploy

// RoiAlign: CUDA kernel and launcher. See roi_align.h for the contract.
//
// One block per (box, channel chunk). The block first computes the box's bilinear samples (4 offsets +
// 4 weights each) once into a shared-memory table -- they are the same for every channel -- then each
// thread produces outputs (channel, bin) by summing table samples; consecutive threads take consecutive
// bins of a channel. Boxes whose sample count exceeds the table capacity (huge boxes with adaptive
// sampling) compute their samples on the fly, like torchvision. Accumulation is float32.
#include <climits>
#include <cstdint>

#include "roi_align.h"
#include "roi_align_impl.cuh"

namespace segdeploy {
namespace plugins {
namespace {

constexpr int kThreads = 256;
constexpr int32_t kMaxTable = 1024;         // samples; 8 words each -> 32 KiB of shared memory
constexpr int32_t kOutputsPerBlock = 1024;  // target (channel, bin) outputs per block (~4 per thread)

template <typename T, typename B>
__global__ void __launch_bounds__(kThreads)
    roiAlignKernel(const T* __restrict__ features, const B* __restrict__ boxes, const void* batchIndices,
                   IndexType bt, T* __restrict__ output, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K,
                   RoiAlignParams p, int32_t chunkC, int64_t numChunks, int32_t cap) {
    extern __shared__ int32_t table[];
    const int32_t bins = p.pooled_h * p.pooled_w;
    for (int64_t blk = blockIdx.x; blk < K * numChunks; blk += gridDim.x) {
        const int64_t k = blk / numChunks;
        const int64_t c0 = (blk - k * numChunks) * chunkC;
        const int64_t nc = (C - c0) < chunkC ? (C - c0) : chunkC;
        const int32_t outputs = int32_t(nc) * bins;
        T* out = output + (k * C + c0) * bins;
        const detail::RoiGeom g = detail::roiGeometryOf(boxes, batchIndices, bt, k, N, p);  // block-uniform
        if (g.batch < 0) {
            for (int32_t e = threadIdx.x; e < outputs; e += blockDim.x) out[e] = detail::fromFloat<T>(0.f);
            continue;
        }
        const int64_t nS = detail::roiSampleCount(g, p);
        const T* base = features + (g.batch * C + c0) * H * W;
        if (nS <= cap) {
            __syncthreads();  // the previous box's table is no longer read
            for (int32_t s = threadIdx.x; s < int32_t(nS); s += blockDim.x)
                detail::tableStore(table, cap, s, detail::roiTableSample(g, p, H, W, s));
            __syncthreads();
            for (int32_t e = threadIdx.x; e < outputs; e += blockDim.x) {
                const int32_t c = e / bins;
                const int32_t bin = e - c * bins;
                out[e] = detail::fromFloat<T>(detail::roiAlignOutputTable(base + c * H * W, g, p, table, cap, bin));
            }
        } else {
            for (int32_t e = threadIdx.x; e < outputs; e += blockDim.x) {
                const int32_t c = e / bins;
                const int32_t bin = e - c * bins;
                out[e] = detail::fromFloat<T>(
                    detail::roiAlignOutputDirect(base + c * H * W, g, H, W, bin / p.pooled_w, bin % p.pooled_w));
            }
        }
    }
}

template <typename T, typename B>
cudaError_t launchTyped(const void* features, const void* boxes, const void* batchIndices, IndexType bt,
                        void* output, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, const RoiAlignParams& p,
                        cudaStream_t stream) {
    const int32_t bins = p.pooled_h * p.pooled_w;
    int32_t chunkC = kOutputsPerBlock / bins;
    if (chunkC < 1) chunkC = 1;
    if (chunkC > C) chunkC = int32_t(C);
    const int64_t numChunks = (C + chunkC - 1) / chunkC;
    // Table capacity: exactly the fixed sample count when sampling_ratio > 0 (0 = always direct when too
    // big); the maximum for adaptive sampling (per-box counts differ).
    int32_t cap = kMaxTable;
    if (p.sampling_ratio > 0) {
        const int64_t fixed = int64_t(bins) * p.sampling_ratio * p.sampling_ratio;
        cap = fixed <= kMaxTable ? int32_t(fixed) : 0;
    }
    const int64_t wanted = K * numChunks;
    const unsigned blocks = static_cast<unsigned>(wanted < INT_MAX ? wanted : INT_MAX);
    const size_t smem = size_t(cap) * 8 * sizeof(int32_t);
    roiAlignKernel<T, B><<<blocks, kThreads, smem, stream>>>(
        static_cast<const T*>(features), static_cast<const B*>(boxes), batchIndices, bt, static_cast<T*>(output), N,
        C, H, W, K, p, chunkC, numChunks, cap);
    return cudaGetLastError();
}

}  // namespace

const char* roiAlignCheck(const RoiAlignParams& p, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K) {
    return detail::roiAlignCheckImpl(p, N, C, H, W, K);
}

cudaError_t launchRoiAlign(const void* features, const void* boxes, const void* batch_indices, void* output,
                           DataType dtype, DataType box_dtype, IndexType batch_index_type, int64_t N, int64_t C,
                           int64_t H, int64_t W, int64_t K, const RoiAlignParams& p, cudaStream_t stream) {
    if (roiAlignCheck(p, N, C, H, W, K) != nullptr) return cudaErrorInvalidValue;
    if (batch_index_type != IndexType::kINT32 && batch_index_type != IndexType::kINT64) return cudaErrorInvalidValue;
    if (K == 0 || C == 0) return cudaSuccess;
    if (boxes == nullptr || output == nullptr || (features == nullptr && N > 0)) return cudaErrorInvalidValue;
    const bool fh = dtype == DataType::kHALF, bh = box_dtype == DataType::kHALF;
    if ((!fh && dtype != DataType::kFLOAT) || (!bh && box_dtype != DataType::kFLOAT)) return cudaErrorInvalidValue;
    const IndexType bt = batch_index_type;
    if (!fh && !bh) return launchTyped<float, float>(features, boxes, batch_indices, bt, output, N, C, H, W, K, p, stream);
    if (!fh && bh) return launchTyped<float, __half>(features, boxes, batch_indices, bt, output, N, C, H, W, K, p, stream);
    if (fh && !bh) return launchTyped<__half, float>(features, boxes, batch_indices, bt, output, N, C, H, W, K, p, stream);
    return launchTyped<__half, __half>(features, boxes, batch_indices, bt, output, N, C, H, W, K, p, stream);
}

}  // namespace plugins
}  // namespace segdeploy

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

template <typename T, typename B>
__global__ void __launch_bounds__(kThreads)
    roiAlignKernel(const T* __restrict__ features, const B* __restrict__ boxes, const void* batchIndices,
                   IndexType bt, T* __restrict__ output, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K,
                   RoiAlignParams p, detail::RoiLaunchConfig cfg) {
    extern __shared__ int32_t table[];
    for (int64_t blk = blockIdx.x; blk < K * cfg.numChunks; blk += gridDim.x) {
        const detail::RoiBlock b = detail::roiBlockSetup(blk, cfg, boxes, batchIndices, bt, N, C, p);  // block-uniform
        if (b.g.batch < 0) {
            detail::roiBlockZero(b, output, C, p, threadIdx.x, blockDim.x);
            continue;
        }
        const bool useTable = b.nS <= cfg.cap;
        if (useTable) {
            __syncthreads();  // the previous box's table is no longer read
            detail::roiBlockFillTable(b, p, H, W, table, cfg.cap, threadIdx.x, blockDim.x);
            __syncthreads();
        }
        detail::roiBlockOutputs(b, useTable, features, output, p, C, H, W, table, cfg.cap, threadIdx.x, blockDim.x);
    }
}

template <typename T, typename B>
cudaError_t launchTyped(const void* features, const void* boxes, const void* batchIndices, IndexType bt,
                        void* output, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, const RoiAlignParams& p,
                        cudaStream_t stream) {
    const detail::RoiLaunchConfig cfg = detail::roiLaunchConfig(p, C);
    const int64_t wanted = K * cfg.numChunks;
    const unsigned blocks = static_cast<unsigned>(wanted < INT_MAX ? wanted : INT_MAX);
    const size_t smem = size_t(cfg.cap) * 8 * sizeof(int32_t);
    roiAlignKernel<T, B><<<blocks, kThreads, smem, stream>>>(
        static_cast<const T*>(features), static_cast<const B*>(boxes), batchIndices, bt, static_cast<T*>(output), N,
        C, H, W, K, p, cfg);
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

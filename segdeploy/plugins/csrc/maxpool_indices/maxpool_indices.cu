// MaxPool2d with indices: CUDA kernels and launcher. See maxpool_indices.h for the contract.
//
// Memory-bound: one thread per output element (grid-stride loop), consecutive threads write consecutive
// outputs (coalesced stores); the 2x2/stride-2 case (SegNet) loads each window row with one 8-byte
// (float2) / 4-byte (half2) vector load. Linear indexing is 32-bit when the output fits, else 64-bit.
#include <climits>
#include <cstdint>

#include "maxpool_indices.h"
#include "maxpool_indices_impl.cuh"

namespace segdeploy {
namespace plugins {
namespace {

constexpr int kThreads = 256;

// L = uint32_t: total < 2^31, divisions by OW/OH through FastDiv (3 instructions instead of ~20);
// L = uint64_t: plain 64-bit division (huge tensors only).
template <typename T, typename I, typename L, bool kFast2x2>
__global__ void __launch_bounds__(kThreads)
    maxPoolKernel(const T* __restrict__ input, T* __restrict__ output, I* __restrict__ indices, L total,
                  L OH, L OW, detail::FastDiv divOH, detail::FastDiv divOW, int64_t H, int64_t W, MaxPool2dParams p,
                  bool aligned) {
    for (L e = L(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += L(gridDim.x) * blockDim.x)
        detail::maxPoolElement<T, I, L, kFast2x2>(input, output, indices, e, OH, OW, divOH, divOW, H, W, p, aligned);
}

template <typename T, typename I, typename L>
cudaError_t launchTyped(const void* input, void* output, void* indices, L total, L OH, L OW, int64_t H,
                        int64_t W, const MaxPool2dParams& p, cudaStream_t stream) {
    const int64_t wanted = (int64_t(total) + kThreads - 1) / kThreads;
    const unsigned blocks = static_cast<unsigned>(wanted < INT_MAX ? wanted : INT_MAX);
    const T* in = static_cast<const T*>(input);
    const detail::FastDiv divOH(sizeof(L) == 4 ? uint32_t(OH) : 1u), divOW(sizeof(L) == 4 ? uint32_t(OW) : 1u);
    if (detail::maxPoolIs2x2Fast(p, W)) {
        // Vector loads need every row start 2-element aligned: W is even, so the base pointer decides.
        const bool aligned = (reinterpret_cast<uintptr_t>(input) % (2 * sizeof(T))) == 0;
        maxPoolKernel<T, I, L, true><<<blocks, kThreads, 0, stream>>>(
            in, static_cast<T*>(output), static_cast<I*>(indices), total, OH, OW, divOH, divOW, H, W, p, aligned);
    } else {
        maxPoolKernel<T, I, L, false><<<blocks, kThreads, 0, stream>>>(
            in, static_cast<T*>(output), static_cast<I*>(indices), total, OH, OW, divOH, divOW, H, W, p, false);
    }
    return cudaGetLastError();
}

template <typename T, typename I>
cudaError_t launchIndexed(const void* input, void* output, void* indices, int64_t total, int64_t OH,
                          int64_t OW, int64_t H, int64_t W, const MaxPool2dParams& p, cudaStream_t stream) {
    if (total <= int64_t(INT32_MAX)) {  // FastDiv's exact range
        return launchTyped<T, I, uint32_t>(input, output, indices, uint32_t(total), uint32_t(OH), uint32_t(OW), H,
                                           W, p, stream);
    }
    return launchTyped<T, I, uint64_t>(input, output, indices, uint64_t(total), uint64_t(OH), uint64_t(OW), H, W,
                                       p, stream);
}

}  // namespace

const char* maxPool2dCheck(const MaxPool2dParams& p, int64_t H, int64_t W) {
    return detail::maxPool2dCheckImpl(p, H, W);
}

cudaError_t launchMaxPool2dWithIndices(const void* input, void* output, void* indices, DataType dtype,
                                       IndexType itype, int64_t N, int64_t C, int64_t H, int64_t W,
                                       const MaxPool2dParams& p, cudaStream_t stream) {
    if (N < 0 || C < 0 || maxPool2dCheck(p, H, W) != nullptr) return cudaErrorInvalidValue;
    const int64_t OH = maxPool2dOutputSize(H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
    const int64_t OW = maxPool2dOutputSize(W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
    const int64_t total = N * C * OH * OW;
    if (total == 0) return cudaSuccess;
    if (input == nullptr || output == nullptr || indices == nullptr) return cudaErrorInvalidValue;
    const bool i32 = itype == IndexType::kINT32;
    if (itype != IndexType::kINT32 && itype != IndexType::kINT64) return cudaErrorInvalidValue;
    switch (dtype) {
        case DataType::kFLOAT:
            return i32 ? launchIndexed<float, int32_t>(input, output, indices, total, OH, OW, H, W, p, stream)
                       : launchIndexed<float, int64_t>(input, output, indices, total, OH, OW, H, W, p, stream);
        case DataType::kHALF:
            return i32 ? launchIndexed<__half, int32_t>(input, output, indices, total, OH, OW, H, W, p, stream)
                       : launchIndexed<__half, int64_t>(input, output, indices, total, OH, OW, H, W, p, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace plugins
}  // namespace segdeploy

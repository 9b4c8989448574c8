// MaxUnpool2d: CUDA kernels and launcher. See maxunpool.h for the contract.
//
// kGATHER writes every output element exactly once with coalesced stores (the input/indices element of a
// window is re-read by its kernel_h*kernel_w outputs, from cache), which moves ~the minimum number of bytes;
// the fix-up pass reads one flag and exits unless the gather pass saw a stray index. kSCATTER is
// cudaMemsetAsync + one thread per input element.
#include <climits>
#include <cstdint>

#include "maxunpool.h"
#include "maxunpool_impl.cuh"

namespace segdeploy {
namespace plugins {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFixupBlocks = 1024;  // grid-stride; cheap when the flag is clear

unsigned blocksFor(int64_t n) {
    const int64_t b = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < INT_MAX ? b : INT_MAX);
}

// L: linear index type, uint32_t when the tensor fits (64-bit division is slow on the GPU), else uint64_t.
template <typename T, typename I, typename L>
__global__ void __launch_bounds__(kThreads)
    unpoolScatterKernel(const T* __restrict__ input, const I* __restrict__ indices, T* __restrict__ output,
                        L total, L planeIn, detail::FastDiv divPlaneIn, int64_t planeOut,
                        int32_t* __restrict__ counters) {
    for (L e = L(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += L(gridDim.x) * blockDim.x)
        detail::unpoolScatterElement<T, I, L>(input, indices, output, e, planeIn, divPlaneIn, planeOut, counters);
}

// One block per output row (plane, oh): the row-uniform part (plane, oh, the input row) is computed once per
// block, so each output element costs a few dozen instructions (a FastDiv by the stride, the window test,
// two cached loads, one coalesced store) -- below the memory time of the element.
template <typename T, typename I>
__global__ void __launch_bounds__(kThreads)
    unpoolGatherKernel(const T* __restrict__ input, const I* __restrict__ indices, T* __restrict__ output,
                       int64_t rows, detail::UnpoolGeom g, int32_t* __restrict__ counters) {
    bool anyStray = false;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const int64_t plane = row / g.OH;  // block-uniform
        const int64_t oh = row - plane * g.OH;
        for (int32_t ow = threadIdx.x; ow < int32_t(g.OW); ow += blockDim.x)
            anyStray |= detail::unpoolGatherElement(input, indices, output, g, plane, oh, ow);
    }
    if (anyStray) counters[0] = 1;
}

template <typename T, typename I, typename L>
__global__ void __launch_bounds__(kThreads)
    unpoolFixupKernel(const T* __restrict__ input, const I* __restrict__ indices, T* __restrict__ output,
                      L total, detail::UnpoolGeom g, int32_t* __restrict__ counters) {
    if (*reinterpret_cast<volatile const int32_t*>(counters) == 0) return;  // no stray index: nothing to do
    for (L e = L(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += L(gridDim.x) * blockDim.x)
        detail::unpoolFixupElement<T, I, L>(input, indices, output, e, g, counters);
}

template <typename T, typename I, typename L>
cudaError_t launchTyped(const void* input, const void* indices, void* output, int64_t planes,
                        const detail::UnpoolGeom& g, bool gather, int32_t* counters, cudaStream_t stream) {
    const T* in = static_cast<const T*>(input);
    const I* ind = static_cast<const I*>(indices);
    T* out = static_cast<T*>(output);
    const int64_t totalIn = planes * g.IH * g.IW;
    const int64_t totalOut = planes * g.OH * g.OW;
    if (gather) {
        const int64_t rows = planes * g.OH;
        const int threads = g.OW >= kThreads ? kThreads : int((g.OW + 31) / 32 * 32);
        const unsigned rowBlocks = static_cast<unsigned>(rows < INT_MAX ? rows : INT_MAX);
        unpoolGatherKernel<T, I><<<rowBlocks, threads, 0, stream>>>(in, ind, out, rows, g, counters);
        if (totalIn > 0) {
            const unsigned fb = blocksFor(totalIn) < kFixupBlocks ? blocksFor(totalIn) : kFixupBlocks;
            unpoolFixupKernel<T, I, L><<<fb, kThreads, 0, stream>>>(in, ind, out, L(totalIn), g, counters);
        }
    } else {
        cudaError_t err = cudaMemsetAsync(output, 0, size_t(totalOut) * sizeof(T), stream);
        if (err != cudaSuccess) return err;
        if (totalIn > 0) {
            unpoolScatterKernel<T, I, L><<<blocksFor(totalIn), kThreads, 0, stream>>>(
                in, ind, out, L(totalIn), L(g.IH * g.IW),
                detail::FastDiv(sizeof(L) == 4 && g.IH * g.IW > 0 ? uint32_t(g.IH * g.IW) : 1u), g.OH * g.OW, counters);
        }
    }
    return cudaGetLastError();
}

cudaError_t dispatch(bool half, bool i32, bool small, const void* input, const void* indices, void* output,
                     int64_t planes, const detail::UnpoolGeom& g, bool gather, int32_t* c, cudaStream_t s) {
#define SD_UNPOOL_CASE(T, I, L) return launchTyped<T, I, L>(input, indices, output, planes, g, gather, c, s)
    if (!half) {
        if (i32) { if (small) SD_UNPOOL_CASE(float, int32_t, uint32_t); else SD_UNPOOL_CASE(float, int32_t, uint64_t); }
        if (small) SD_UNPOOL_CASE(float, int64_t, uint32_t); else SD_UNPOOL_CASE(float, int64_t, uint64_t);
    }
    if (i32) { if (small) SD_UNPOOL_CASE(__half, int32_t, uint32_t); else SD_UNPOOL_CASE(__half, int32_t, uint64_t); }
    if (small) SD_UNPOOL_CASE(__half, int64_t, uint32_t); else SD_UNPOOL_CASE(__half, int64_t, uint64_t);
#undef SD_UNPOOL_CASE
}

}  // namespace

bool maxUnpool2dGatherEligible(const MaxUnpool2dParams& p, int64_t IH, int64_t IW, int64_t OH, int64_t OW) {
    return detail::unpoolGatherEligible(p, IH, IW, OH, OW);
}

const char* maxUnpool2dCheck(const MaxUnpool2dParams& p, int64_t IH, int64_t IW, int64_t OH, int64_t OW) {
    return detail::maxUnpool2dCheckImpl(p, IH, IW, OH, OW);
}

size_t maxUnpool2dWorkspaceSize() { return 2 * sizeof(int32_t); }

cudaError_t launchMaxUnpool2d(const void* input, const void* indices, void* output, DataType dtype,
                              IndexType itype, int64_t N, int64_t C, int64_t IH, int64_t IW, int64_t OH, int64_t OW,
                              const MaxUnpool2dParams& p, UnpoolAlgo algo, void* workspace, cudaStream_t stream) {
    if (N < 0 || C < 0 || maxUnpool2dCheck(p, IH, IW, OH, OW) != nullptr) return cudaErrorInvalidValue;
    if (workspace == nullptr) return cudaErrorInvalidValue;
    if (itype != IndexType::kINT32 && itype != IndexType::kINT64) return cudaErrorInvalidValue;
    if (dtype != DataType::kFLOAT && dtype != DataType::kHALF) return cudaErrorInvalidValue;
    const bool eligible = detail::unpoolGatherEligible(p, IH, IW, OH, OW);
    bool gather;
    switch (algo) {
        case UnpoolAlgo::kAUTO: gather = eligible; break;
        case UnpoolAlgo::kSCATTER: gather = false; break;
        case UnpoolAlgo::kGATHER:
            if (!eligible) return cudaErrorInvalidValue;
            gather = true;
            break;
        default: return cudaErrorInvalidValue;
    }
    int32_t* counters = static_cast<int32_t*>(workspace);
    cudaError_t err = cudaMemsetAsync(counters, 0, maxUnpool2dWorkspaceSize(), stream);
    if (err != cudaSuccess) return err;
    const int64_t planes = N * C;
    if (planes == 0) return cudaSuccess;
    if (input == nullptr || indices == nullptr || output == nullptr) return cudaErrorInvalidValue;
    const detail::UnpoolGeom g = detail::makeUnpoolGeom(IH, IW, OH, OW, p);
    // 32-bit linear indexing (and FastDiv) when both tensors have < 2^31 elements
    const bool small = planes * IH * IW <= int64_t(INT32_MAX) && planes * OH * OW <= int64_t(INT32_MAX);
    const bool i32 = itype == IndexType::kINT32;
    return dispatch(dtype == DataType::kHALF, i32, small, input, indices, output, planes, g, gather, counters,
                    stream);
}

}  // namespace plugins
}  // namespace segdeploy

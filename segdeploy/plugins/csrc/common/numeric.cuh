// segdeploy CUDA kernels: float/half conversions usable from device code AND from host code.
//
// The per-element kernel bodies (<op>/<op>_impl.cuh) are __host__ __device__ so that the same code
// is compiled into the CUDA kernels and into a host reference library (tests/plugins) that the CPU
// test-suite checks against PyTorch/torchvision. cuda_fp16.h provides host-side conversions.
#pragma once

#include <cuda_fp16.h>

#include <cmath>

#include "types.h"

namespace segdeploy {
namespace plugins {
namespace detail {

SD_INLINE float toFloat(float v) { return v; }
SD_INLINE float toFloat(__half v) { return __half2float(v); }

template <typename T>
SD_INLINE T fromFloat(float v);
template <>
SD_INLINE float fromFloat<float>(float v) { return v; }
template <>
SD_INLINE __half fromFloat<__half>(float v) { return __float2half_rn(v); }

//! -infinity on host and device (no <cmath> macro dependence).
SD_INLINE float negInf() { return -__builtin_huge_valf(); }

//! NaN test that survives any -ffast-math style flags of a host compiler we do not control.
SD_INLINE bool isNan(float v) { return v != v; }

//! Finite test (false for +-inf and NaN), same robustness as isNan.
SD_INLINE bool isFinite(float v) { return v - v == 0.f; }

SD_INLINE int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }
SD_INLINE int64_t imax64(int64_t a, int64_t b) { return a > b ? a : b; }

//! Floor division (rounds towards -infinity), b > 0. PyTorch's div_rtn.
SD_INLINE int64_t divFloor(int64_t a, int64_t b) {
    int64_t q = a / b;
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace detail
}  // namespace plugins
}  // namespace segdeploy

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

//! Division by a runtime-constant 32-bit divisor with a multiply-high and a shift (Granlund-Montgomery,
//! as PyTorch's IntDivider): exact for 1 <= divisor <= INT32_MAX and 0 <= n <= INT32_MAX. A plain 32-bit
//! division costs ~20 GPU instructions; this costs 3, which keeps the index arithmetic of the
//! memory-bound kernels below their memory time.
struct FastDiv {
    uint32_t divisor{1};
    uint32_t magic{0};
    uint32_t shift{0};

    FastDiv() = default;
    explicit FastDiv(uint32_t d) : divisor(d) {
        shift = 0;
        while (shift < 32 && (uint64_t(1) << shift) < d) ++shift;
        magic = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
    }
    SD_INLINE uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
        const uint32_t t = __umulhi(n, magic);
#else
        const uint32_t t = uint32_t((uint64_t(n) * magic) >> 32);
#endif
        return (t + n) >> shift;
    }
    //! quotient and remainder
    SD_INLINE void divMod(uint32_t n, uint32_t& q, uint32_t& r) const {
        q = div(n);
        r = n - q * divisor;
    }
};

}  // namespace detail
}  // namespace plugins
}  // namespace segdeploy

// segdeploy CUDA kernels: shared types for the launcher headers.
//
// No TensorRT includes here or in any launcher header: the kernels are testable alone
// (ctypes C API in ../capi.cu) and the TensorRT glue (../../trt/) maps its own enums onto these.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SD_HD __host__ __device__
#define SD_INLINE __host__ __device__ __forceinline__
#else
#define SD_HD
#define SD_INLINE inline
#endif

namespace segdeploy {
namespace plugins {

//! Element type of a feature tensor (inputs/outputs of the kernels).
enum class DataType : int32_t {
    kFLOAT = 0,  //!< IEEE float32
    kHALF = 1,   //!< IEEE float16 (compute/accumulate in float32)
};

//! Element type of an index tensor.
enum class IndexType : int32_t {
    kINT32 = 0,  //!< int32 (TensorRT's preferred index type)
    kINT64 = 1,  //!< int64 (what PyTorch returns)
};

}  // namespace plugins
}  // namespace segdeploy

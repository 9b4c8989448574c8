/* segdeploy kernels: C ABI over the launchers (libsegdeploy_kernels.so), for ctypes and other FFIs.
 *
 * All tensors are device pointers (e.g. torch.Tensor.data_ptr() of contiguous CUDA tensors); `stream` is a
 * cudaStream_t (0 = legacy default stream). Every launch function returns a cudaError_t value (0 = success).
 * Invalid arguments return cudaErrorInvalidValue (1) and sd_last_error() then gives a one-line reason
 * (thread-local; "" after a successful call). Enum values: dtype 0 = float32, 1 = float16; index type
 * 0 = int32, 1 = int64; unpool algo 0 = auto, 1 = scatter, 2 = gather. Semantics: see the launcher headers.
 * The kernels are asynchronous: results (and the unpool counters) are valid after the stream synchronises.
 */
#ifndef SEGDEPLOY_KERNELS_CAPI_H
#define SEGDEPLOY_KERNELS_CAPI_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define SD_API __declspec(dllexport)
#else
#define SD_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this C ABI (bumped on any signature change). */
SD_API int32_t sd_abi_version(void);
/* cudaGetErrorString of a returned code. */
SD_API const char* sd_error_string(int32_t code);
/* One-line reason of the last cudaErrorInvalidValue from this thread, "" otherwise. */
SD_API const char* sd_last_error(void);

SD_API int64_t sd_maxpool2d_output_size(int64_t in, int32_t kernel, int32_t stride, int32_t pad, int32_t dilation,
                                        int32_t ceil_mode);
SD_API int32_t sd_maxpool2d_with_indices(const void* input, void* output, void* indices, int32_t dtype,
                                         int32_t index_type, int64_t n, int64_t c, int64_t h, int64_t w,
                                         int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                         int32_t pad_h, int32_t pad_w, int32_t dilation_h, int32_t dilation_w,
                                         int32_t ceil_mode, void* stream);

SD_API size_t sd_maxunpool2d_workspace_size(void);
SD_API int32_t sd_maxunpool2d_gather_eligible(int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                              int32_t pad_h, int32_t pad_w, int64_t in_h, int64_t in_w,
                                              int64_t out_h, int64_t out_w);
SD_API int32_t sd_maxunpool2d(const void* input, const void* indices, void* output, int32_t dtype, int32_t index_type,
                              int64_t n, int64_t c, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                              int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w, int32_t pad_h,
                              int32_t pad_w, int32_t algo, void* workspace, void* stream);

/* boxes [K,5] (batch, x1, y1, x2, y2) when batch_indices is NULL, else boxes [K,4] + batch_indices [K]. */
SD_API int32_t sd_roi_align(const void* features, const void* boxes, const void* batch_indices, void* output,
                            int32_t dtype, int32_t box_dtype, int32_t batch_index_type, int64_t n, int64_t c,
                            int64_t h, int64_t w, int64_t k, int32_t pooled_h, int32_t pooled_w,
                            float spatial_scale, int32_t sampling_ratio, int32_t aligned, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* SEGDEPLOY_KERNELS_CAPI_H */

// C ABI over the kernel launchers (see capi.h). The only symbols libsegdeploy_kernels.so exports.
#include <cuda_runtime_api.h>

#include "capi.h"
#include "maxpool_indices/maxpool_indices.h"
#include "maxunpool/maxunpool.h"
#include "roi_align/roi_align.h"

using namespace segdeploy::plugins;

namespace {

thread_local const char* tLastError = "";

int32_t fail(const char* why) {
    tLastError = why;
    return static_cast<int32_t>(cudaErrorInvalidValue);
}

int32_t done(cudaError_t err) {
    tLastError = err == cudaErrorInvalidValue ? "invalid argument (null pointer or unsupported dtype/index type)" : "";
    return static_cast<int32_t>(err);
}

bool dtypeOk(int32_t d) { return d == 0 || d == 1; }

}  // namespace

extern "C" {

SD_API int32_t sd_abi_version(void) { return 1; }

SD_API const char* sd_error_string(int32_t code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

SD_API const char* sd_last_error(void) { return tLastError; }

SD_API int64_t sd_maxpool2d_output_size(int64_t in, int32_t kernel, int32_t stride, int32_t pad, int32_t dilation,
                                        int32_t ceil_mode) {
    if (stride < 1) return -1;
    return maxPool2dOutputSize(in, kernel, stride, pad, dilation, ceil_mode != 0);
}

SD_API int32_t sd_maxpool2d_with_indices(const void* input, void* output, void* indices, int32_t dtype,
                                         int32_t index_type, int64_t n, int64_t c, int64_t h, int64_t w,
                                         int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                         int32_t pad_h, int32_t pad_w, int32_t dilation_h, int32_t dilation_w,
                                         int32_t ceil_mode, void* stream) {
    MaxPool2dParams p;
    p.kernel_h = kernel_h; p.kernel_w = kernel_w; p.stride_h = stride_h; p.stride_w = stride_w;
    p.pad_h = pad_h; p.pad_w = pad_w; p.dilation_h = dilation_h; p.dilation_w = dilation_w;
    p.ceil_mode = ceil_mode != 0;
    if (const char* why = maxPool2dCheck(p, h, w)) return fail(why);
    if (n < 0 || c < 0) return fail("max_pool2d: N and C must be >= 0");
    if (!dtypeOk(dtype) || !dtypeOk(index_type)) return fail("max_pool2d: dtype must be 0 (float32) or 1 (float16), index type 0 (int32) or 1 (int64)");
    return done(launchMaxPool2dWithIndices(input, output, indices, static_cast<DataType>(dtype),
                                           static_cast<IndexType>(index_type), n, c, h, w, p,
                                           static_cast<cudaStream_t>(stream)));
}

SD_API size_t sd_maxunpool2d_workspace_size(void) { return maxUnpool2dWorkspaceSize(); }

static MaxUnpool2dParams unpoolParams(int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                      int32_t pad_h, int32_t pad_w) {
    MaxUnpool2dParams p;
    p.kernel_h = kernel_h; p.kernel_w = kernel_w; p.stride_h = stride_h; p.stride_w = stride_w;
    p.pad_h = pad_h; p.pad_w = pad_w;
    return p;
}

SD_API int32_t sd_maxunpool2d_gather_eligible(int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w,
                                              int32_t pad_h, int32_t pad_w, int64_t in_h, int64_t in_w,
                                              int64_t out_h, int64_t out_w) {
    return maxUnpool2dGatherEligible(unpoolParams(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w), in_h, in_w,
                                     out_h, out_w) ? 1 : 0;
}

SD_API int32_t sd_maxunpool2d(const void* input, const void* indices, void* output, int32_t dtype, int32_t index_type,
                              int64_t n, int64_t c, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                              int32_t kernel_h, int32_t kernel_w, int32_t stride_h, int32_t stride_w, int32_t pad_h,
                              int32_t pad_w, int32_t algo, void* workspace, void* stream) {
    const MaxUnpool2dParams p = unpoolParams(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w);
    if (const char* why = maxUnpool2dCheck(p, in_h, in_w, out_h, out_w)) return fail(why);
    if (n < 0 || c < 0) return fail("max_unpool2d: N and C must be >= 0");
    if (!dtypeOk(dtype) || !dtypeOk(index_type)) return fail("max_unpool2d: dtype must be 0 (float32) or 1 (float16), index type 0 (int32) or 1 (int64)");
    if (algo < 0 || algo > 2) return fail("max_unpool2d: algo must be 0 (auto), 1 (scatter) or 2 (gather)");
    if (algo == 2 && !maxUnpool2dGatherEligible(p, in_h, in_w, out_h, out_w))
        return fail("max_unpool2d: gather needs stride >= kernel, pad <= kernel-1 and every window inside the output; use algo 0 (auto) or 1 (scatter)");
    if (workspace == nullptr) return fail("max_unpool2d: workspace is required (sd_maxunpool2d_workspace_size() bytes of device memory)");
    return done(launchMaxUnpool2d(input, indices, output, static_cast<DataType>(dtype), static_cast<IndexType>(index_type),
                                  n, c, in_h, in_w, out_h, out_w, p, static_cast<UnpoolAlgo>(algo), workspace,
                                  static_cast<cudaStream_t>(stream)));
}

SD_API int32_t sd_roi_align(const void* features, const void* boxes, const void* batch_indices, void* output,
                            int32_t dtype, int32_t box_dtype, int32_t batch_index_type, int64_t n, int64_t c,
                            int64_t h, int64_t w, int64_t k, int32_t pooled_h, int32_t pooled_w,
                            float spatial_scale, int32_t sampling_ratio, int32_t aligned, void* stream) {
    RoiAlignParams p;
    p.pooled_h = pooled_h; p.pooled_w = pooled_w; p.spatial_scale = spatial_scale;
    p.sampling_ratio = sampling_ratio; p.aligned = aligned != 0;
    if (const char* why = roiAlignCheck(p, n, c, h, w, k)) return fail(why);
    if (!dtypeOk(dtype) || !dtypeOk(box_dtype) || !dtypeOk(batch_index_type))
        return fail("roi_align: dtypes must be 0 (float32) or 1 (float16), batch index type 0 (int32) or 1 (int64)");
    return done(launchRoiAlign(features, boxes, batch_indices, output, static_cast<DataType>(dtype),
                               static_cast<DataType>(box_dtype), static_cast<IndexType>(batch_index_type), n, c, h, w,
                               k, p, static_cast<cudaStream_t>(stream)));
}

}  // extern "C"

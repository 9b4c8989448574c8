// segdeploy runtime (internal): the GPU side of Segmenter without TensorRT -- image upload + preprocessing
// into the input tensor, and argmax + restore + download of the class maps. Segmenter runs the engine between
// the two; tests/runtime/gpu_harness.cpp runs them alone against the host reference.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <string>
#include <vector>

#include "segdeploy/image.h"
#include "segdeploy/manifest.h"
#include "segdeploy/preprocess.h"

namespace segdeploy {
namespace gpu {

//! Throws segdeploy::Error "CUDA <what> failed: <name> (<text>); <fix>" unless rc is cudaSuccess.
void checkCuda(cudaError_t rc, const std::string& what);

//! Owned device memory that only grows. cudaFree synchronises the device, so growing is safe while work
//! that uses the old block is still queued.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void reserve(size_t bytes, const char* what);
    template <typename T>
    T* as() const { return static_cast<T*>(ptr_); }
    size_t bytes() const { return bytes_; }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

class Pipeline {
public:
    //! Uploads the normalisation table of `pre` (synchronously).
    explicit Pipeline(const Preprocess& pre);

    //! Allocate now what batches up to max_batch x max_h x max_w need ("pad": everything; "resize": all but the
    //! images and scratch of sources larger than that).
    void reserve(int max_batch, int max_h, int max_w);

    //! Enqueue on `stream`: upload `views` and write the batch planned by `plan` (planBatch of their sizes) into
    //! `input` ([n, 3, H, W] float32, device memory). Host data is staged before this returns.
    void preprocess(const std::vector<ImageView>& views, const BatchPlan& plan, float* input, cudaStream_t stream);

    //! Enqueue on `stream`: argmax + restore of `logits` ([n, K, H, W], float32 or float16 when `half`, device
    //! memory) and the downloads into `maps` (resized here). Read `maps` after synchronising the stream.
    void postprocess(const void* logits, bool half, int num_classes, const BatchPlan& plan, std::vector<ClassMap>& maps,
                     cudaStream_t stream);

private:
    Preprocess pre_;
    DeviceBuffer table_, images_, temp_, tables_, labels_;
    std::vector<std::vector<int32_t>> host_tables_;  // kept until the next call (the caller synchronised by then)
};

}  // namespace gpu
}  // namespace segdeploy

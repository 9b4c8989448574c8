// segdeploy::Segmenter -- run a segdeploy TensorRT engine on 8-bit images and get class maps back.
//
//   segdeploy::Segmenter seg("model.fp16.engine", "manifest.json");     // + SegmenterOptions for plugins etc.
//   segdeploy::ClassMap map = seg.segment(image.view());                // argmax class per original pixel
//
// What it does (TensorRT 8.6, 10.x and 11.x; no CUDA or TensorRT header is included here):
//  * Construction: reads the manifest (input/output names, shape profile, preprocessing, classes); loads the
//    plugin library when one is given, or when the engine needs segdeploy's plugins (the manifest's engines entry
//    names a plugin library, or the engine is not listed and the manifest has a plugin graph) -- then
//    libsegdeploy_trt_plugins.so is looked up next to the engine and next to the manifest. The library is
//    dlopen'ed first (clear dlerror() messages) and registered with TensorRT's plugin registry
//    (IPluginRegistry::loadLibrary, as trtexec --dynamicPlugins), once per process and path; it stays loaded
//    until the process ends. NVIDIA's standard plugins (libnvinfer_plugin, e.g. TensorRT 8.6's InstanceNorm) are
//    registered only when a deserialization fails on a missing plugin, then it is retried once.
//    The engine must be a plain serialized plan (checked before deserialization). A plan that carries host code
//    (built version-compatible: BuilderFlag VERSION_COMPATIBLE, trtexec --versionCompatible) loads only with
//    SegmenterOptions::trust_host_code (IRuntime::setEngineHostCodeAllowed, TensorRT 8.6+); when the manifest's
//    engines entry records such a build and the option is off, construction fails first with a one-line error
//    that names the option (plan.h: requireHostCodeTrust).
//    Its input must be float32 NCHW with 3 channels, its output float32 or float16 [N, num_classes, H, W]; the
//    usable shape range is the manifest's profile intersected with the engine's profile 0. Device buffers for
//    the largest batch of that range are allocated once (input, logits, image upload, class maps); only
//    resize-mode scratch (the uploaded image and the resampling temp) grows for images larger than the profile.
//  * segment(): uploads the image(s), preprocesses on the GPU exactly as segdeploy's Python side
//    (segdeploy/runtime/cpp/include/segdeploy/preprocess.h gives the rules; rounding in short: resizing is
//    Pillow's 22-bit fixed-point bilinear with round-half-up and clamping to 8 bits per pass; normalisation is
//    (float(p) * float(scale) - float(mean)) / float(std) with each IEEE float32 operation rounded to nearest,
//    never fused, tabulated on the host for all 256 byte values; the pad value is 0.0), runs the engine
//    with enqueueV3 on the segmenter's CUDA stream, computes argmax on the GPU and restores every class map to
//    its image's original size (crop for "pad", nearest for "resize"), then copies the maps back and waits
//    for the stream. Bit-for-bit the same class maps as the host reference (postprocess.h) on the same logits.
//  * End-to-end engines (built from model[.prec].e2e.onnx, `segdeploy export --end-to-end`) are recognised by their
//    I/O tensors: one uint8 input [N, H, W, 3] and a uint8 or int32 output [N, H, W] (the class map; a float32
//    scores output, --with-scores, is bound but not read). Then segment() copies each frame's bytes straight into
//    the input (cudaMemcpy2DAsync, strided rows included; no CPU or GPU normalisation: the engine does it, and pads
//    to its multiple) and copies the class map back (no argmax kernel). The frames of one call must share one
//    size; a frame whose PixelFormat differs from the manifest's end_to_end.input.channel_order is swapped on the
//    host first (export with --frame-order to avoid it). The usable range is the engine's profile 0.
//  * Errors: segdeploy::Error with one line "<what failed>; <how to fix it>" (code 2 for inputs outside the
//    profile, 1 otherwise). CUDA/TensorRT failures name the call; TensorRT's own error log lines are appended.
//  * Threads: one Segmenter is one execution context, one stream and one set of buffers -- use it from one
//    thread at a time (one Segmenter per thread for concurrency). The CUDA device current on the calling thread
//    is left as it was (SegmenterOptions::device selects the device for the segmenter's own calls only).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "segdeploy/error.h"
#include "segdeploy/image.h"
#include "segdeploy/manifest.h"
#include "segdeploy/plan.h"

namespace segdeploy {

enum class LogSeverity : int { kInternalError = 0, kError = 1, kWarning = 2, kInfo = 3, kVerbose = 4 };

struct SegmenterOptions {
    //! Plugin library (libsegdeploy_trt_plugins.so) to register; empty: only when needed, looked up next to the
    //! engine and the manifest.
    std::string plugin_library;
    //! Allow plans that carry host code (version-compatible plans: an embedded lean runtime, serialized plugins):
    //! TensorRT then runs code from the engine file, so set it only for engines you built or trust. Needs TensorRT
    //! 8.6 or newer. segdeploy_infer --trust-host-code.
    bool trust_host_code = false;
    //! CUDA device ordinal; -1: the device current on the constructing thread.
    int device = -1;
    //! TensorRT and runtime messages at or above this severity go to `log` (default: warnings and errors).
    LogSeverity log_level = LogSeverity::kWarning;
    //! Receives the messages; empty: they are printed to stderr as "[segdeploy] <severity>: <message>".
    std::function<void(LogSeverity, const std::string&)> log;
};

//! What the engine and the manifest agreed on (for logs and the CLI's summary).
struct EngineSummary {
    std::string engine_path;
    std::string tensorrt_runtime_version;  //!< the linked libnvinfer, e.g. "10.3.0"
    PlanInfo plan;                         //!< the TensorRT that built the engine (from the plan header)
    std::string input_name, output_name;
    std::string output_dtype;               //!< "float32" or "float16"; end-to-end: "uint8" or "int32" (class map)
    bool end_to_end = false;                //!< uint8 NHWC frames in, the class map out (see above)
    int64_t min_batch = 0, max_batch = 0;   //!< usable batch range
    int64_t min_h = 0, min_w = 0, max_h = 0, max_w = 0;  //!< usable input H/W range
    bool plugins_loaded = false;
    std::string plugin_library;             //!< the path registered, when any
    bool host_code_allowed = false;         //!< SegmenterOptions::trust_host_code was set
    std::string device_name;
    int device = 0;
};

class Segmenter {
public:
    //! Loads everything and allocates the buffers. `manifest_path` may be the export directory.
    Segmenter(const std::string& engine_path, const std::string& manifest_path, const SegmenterOptions& options = {});
    ~Segmenter();
    Segmenter(Segmenter&&) noexcept;
    Segmenter& operator=(Segmenter&&) noexcept;
    Segmenter(const Segmenter&) = delete;
    Segmenter& operator=(const Segmenter&) = delete;

    //! Class map of one image (batch of 1).
    ClassMap segment(const ImageView& image);
    //! Class maps of several images run as one batch (padded to the batch's largest size in "pad" mode).
    std::vector<ClassMap> segment(const std::vector<ImageView>& images);

    const Manifest& manifest() const;
    const EngineSummary& summary() const;
    int numClasses() const;
    //! Class names from the manifest (may be empty).
    const std::vector<std::string>& classNames() const;
    //! The cudaStream_t the segmenter enqueues on (as void*, so this header needs no CUDA include).
    void* stream() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace segdeploy

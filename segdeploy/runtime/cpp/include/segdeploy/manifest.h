// segdeploy runtime: the parts of an export directory's manifest.json a device needs.
//
// Contract:
//  * readManifest(path) / parseManifest(text, where) return a Manifest or throw segdeploy::Error with ONE line
//    "<where>: <what is wrong>; <fix>" (e.g. "manifest.json: preprocess.std must be an array, not string; re-run
//    `segdeploy export` to regenerate it"). `path` may also be the export directory (then DIR/manifest.json).
//  * JSON is parsed by nlohmann-json (RFC 8259; the last of duplicate keys wins, as in Python). Syntax errors say
//    "invalid JSON at line L, column C: <reason>" (1-based; the column counts bytes). Python's json.dumps writes
//    NaN / Infinity / -Infinity for non-finite floats, which JSON does not allow: outside strings these literals are
//    read as null, so a document holding them elsewhere still loads, and a field this reader uses that holds one
//    fails its type check naming the field.
//  * What is checked (the subset of segdeploy.manifest.validate_manifest the runtime relies on): schema name
//    "segdeploy.manifest"; schema_version 1 or 2 (a newer one is refused: the runtime sources must come from the
//    same segdeploy release as the export, which `segdeploy bundle` guarantees); the types of every field read
//    below; the shape profile's invariants (4 positive ints N,C,H,W; same C everywhere; min <= opt <= max per
//    axis; H/W multiples of spatial_multiple); the preprocessing (mean/std of 1 or 3 values, the same count,
//    std != 0; channel_order RGB|BGR; resize pad|resize, "pad" when absent); model.in_channels == profile C == 3
//    (this runtime feeds 3-channel images); 1 <= num_classes <= 65536; class_names empty or one per class;
//    input dtype float32; output dtype float32 or float16. Unknown keys are ignored.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace segdeploy {

enum class ChannelOrder { kRGB, kBGR };
enum class ResizeMode { kPad, kResize };

//! min/opt/max NCHW shapes of the model input, as in segdeploy.spec.ShapeProfile.
struct ShapeProfile {
    std::array<int64_t, 4> min{};
    std::array<int64_t, 4> opt{};
    std::array<int64_t, 4> max{};
    int64_t spatial_multiple = 1;
};

//! x = (pixel * scale - mean[c]) / std[c], channels in channel_order (segdeploy.spec.Preprocess).
//! mean/std hold 1 value (used for every channel) or 3 values (in the MODEL's channel order).
struct Preprocess {
    std::vector<double> mean;
    std::vector<double> std;
    double scale = 1.0 / 255.0;
    ChannelOrder channel_order = ChannelOrder::kRGB;
    ResizeMode resize = ResizeMode::kPad;
};

//! One entry of manifest["engines"] (written by `segdeploy build`).
struct EngineEntry {
    std::string file;              //!< engine file name inside the export directory
    std::string precision;         //!< fp32 | fp16 | int8 | int8-implicit
    std::string plugins;           //!< plugin library the engine needs ("plugins": name or {"library": name}); empty when none
    std::string tensorrt_version;  //!< TensorRT version that built it ("10.3.0.26"); empty when unknown
    //! Built with BuilderFlag VERSION_COMPATIBLE ("VERSION_COMPATIBLE" in flags.builder): the plan carries host code
    //! (a lean runtime, serialized plugins) that TensorRT runs only when the application allows it.
    bool version_compatible = false;
};

struct Manifest {
    int schema_version = 0;
    std::string input_name;    //!< e.g. "input"
    std::string input_dtype;   //!< "float32"
    std::string output_name;   //!< e.g. "logits"
    std::string output_dtype;  //!< "float32" or "float16"
    ShapeProfile profile;
    Preprocess preprocess;
    int in_channels = 3;
    int num_classes = 0;
    std::vector<std::string> class_names;  //!< empty, or num_classes names
    bool has_plugin_graph = false;         //!< manifest["tensorrt_plugins"] present: the model needs our plugins
    std::string plugin_graph_file;         //!< its ONNX file (model.trt.onnx)
    std::vector<EngineEntry> engines;
    //! manifest["end_to_end"] present (segdeploy export --end-to-end): engines built from model[.prec].e2e.onnx take
    //! uint8 [N, H, W, 3] frames in `frame_order` and return the class map.
    bool has_end_to_end = false;
    ChannelOrder frame_order = ChannelOrder::kRGB;  //!< end_to_end.input.channel_order

    //! The engines entry whose file name equals `file_name` (no directory), else nullptr.
    const EngineEntry* engineFor(const std::string& file_name) const;
};

//! Parse a manifest from JSON text; `where` names it in messages (e.g. its path).
Manifest parseManifest(const std::string& text, const std::string& where);
//! Read and parse `path` (a manifest.json, or an export directory holding one).
Manifest readManifest(const std::string& path);

//! "RGB"/"BGR", "pad"/"resize" (for messages and the CLI's summary).
const char* toString(ChannelOrder order);
const char* toString(ResizeMode mode);

}  // namespace segdeploy

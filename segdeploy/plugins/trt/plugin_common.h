// segdeploy TensorRT plugins: shared glue (logging, error reporting, plugin-field parsing, type mapping).
//
// TensorRT 10.x / 11.x only (IPluginV3). TensorRT 8.6 has no IPluginV3 and is not served by this library.
// Every noexcept entry point of the plugins catches all exceptions and reports them through
// reportError(), which logs through the ILogger that TensorRT hands over with setLoggerFinder() (stderr
// when none was set, e.g. when a test links the library directly).
#pragma once

#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/types.h"

#if NV_TENSORRT_MAJOR < 10
#error "segdeploy TensorRT plugins need TensorRT >= 10.0 (IPluginV3); TensorRT 8.6 (IPluginV2 only) is not supported"
#endif

namespace segdeploy {
namespace trt {

//! Plugin namespace and version written by segdeploy.plugins.onnx_mapping (plugin_namespace / plugin_version,
//! also the ONNX node domain) -- keep in sync with PLUGIN_NAMESPACE / PLUGIN_VERSION there.
constexpr char const* kPluginNamespace = "segdeploy";
constexpr char const* kPluginVersion = "1";

//! Log `msg` at `severity` through TensorRT's logger (set by setLoggerFinder), else stderr.
void logMessage(nvinfer1::ILogger::Severity severity, std::string const& msg) noexcept;

//! Report a caught error of `where` (e.g. "SegdeployRoiAlign::enqueue") as kERROR.
void reportError(char const* where, char const* what) noexcept;

//! Thrown by the helpers below; caught at the noexcept boundary and reported.
class PluginError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

//! Integer field values (kINT8/16/32/64 accepted; the ONNX parser passes kINT32).
std::vector<int64_t> fieldInts(nvinfer1::PluginField const& f);
//! Float field value (kFLOAT32/kFLOAT64/kFLOAT16 accepted).
float fieldFloat(nvinfer1::PluginField const& f);
//! One int field (length must be 1).
int32_t fieldInt(nvinfer1::PluginField const& f);
//! A (h, w) pair: one value (used for both) or two values.
void fieldPair(nvinfer1::PluginField const& f, int32_t& h, int32_t& w);

//! Feature dtype of a TensorRT type (kFLOAT / kHALF), throws PluginError otherwise.
plugins::DataType featureType(nvinfer1::DataType t);
//! Index dtype of a TensorRT type (kINT32 / kINT64), throws PluginError otherwise.
plugins::IndexType indexType(nvinfer1::DataType t);

//! Product of dims [begin, end).
int64_t volume(nvinfer1::Dims const& d, int32_t begin, int32_t end);

//! Throw PluginError(msg) when !cond.
inline void check(bool cond, char const* msg) {
    if (!cond) throw PluginError(msg);
}

//! Wrap the body of a noexcept entry point: every exception is caught and reported with the method's name.
//! Use inside PluginBase/CreatorBase members (they provide fail()); `onError` is the value returned then.
#define SD_TRT_TRY try {
#define SD_TRT_CATCH(method, onError)                 \
    }                                                 \
    catch (std::exception const& e) {                 \
        fail(method, e.what());                       \
    }                                                 \
    catch (...) {                                     \
        fail(method, "unknown exception");            \
    }                                                 \
    return onError;

//! Common base of the three plugins: one object implements all V3 capability interfaces.
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
public:
    explicit PluginBase(char const* name) noexcept : mName(name) {}
    ~PluginBase() override = default;

    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::AsciiChar const* getPluginName() const noexcept override { return mName; }
    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
    nvinfer1::AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

protected:
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;
    //! Report an exception caught in `method` of this plugin.
    void fail(char const* method, char const* what) const noexcept;

    char const* mName;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFC{};
};

//! Common base of the creators: name/version/namespace and the advertised field list.
class CreatorBase : public nvinfer1::IPluginCreatorV3One {
public:
    CreatorBase(char const* name, std::vector<nvinfer1::PluginField> fields);
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFC; }
    nvinfer1::AsciiChar const* getPluginName() const noexcept override { return mName; }
    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
    nvinfer1::AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

protected:
    void fail(char const* method, char const* what) const noexcept {
        reportError((std::string(mName) + "Creator::" + method).c_str(), what);
    }
    char const* mName;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFC{};
};

}  // namespace trt
}  // namespace segdeploy

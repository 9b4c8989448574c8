// segdeploy TensorRT plugins: shared glue and the library entry points getCreators / setLoggerFinder.
#include "plugin_common.h"

#include <cstdio>
#include <cstring>
#include <mutex>

#include <cuda_fp16.h>

#include "maxpool_plugin.h"
#include "maxunpool_plugin.h"
#include "roi_align_plugin.h"

namespace segdeploy {
namespace trt {

namespace {
std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder = nullptr;
}  // namespace

void setLoggerFinderImpl(nvinfer1::ILoggerFinder* finder) noexcept {
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    gLoggerFinder = finder;
}

void logMessage(nvinfer1::ILogger::Severity severity, std::string const& msg) noexcept {
    try {
        nvinfer1::ILogger* logger = nullptr;
        {
            std::lock_guard<std::mutex> lock(gLoggerMutex);
            if (gLoggerFinder != nullptr) logger = gLoggerFinder->findLogger();
        }
        if (logger != nullptr) {
            logger->log(severity, msg.c_str());
        } else if (severity <= nvinfer1::ILogger::Severity::kWARNING) {
            std::fprintf(stderr, "[segdeploy plugins] %s\n", msg.c_str());
        }
    } catch (...) {
        // Logging must never throw across the noexcept boundary.
    }
}

void reportError(char const* where, char const* what) noexcept {
    try {
        logMessage(nvinfer1::ILogger::Severity::kERROR, std::string(where) + ": " + (what ? what : "unknown error"));
    } catch (...) {
    }
}

std::vector<int64_t> fieldInts(nvinfer1::PluginField const& f) {
    check(f.data != nullptr && f.length >= 1, "plugin field has no data");
    std::vector<int64_t> out(static_cast<size_t>(f.length));
    for (int32_t i = 0; i < f.length; ++i) {
        switch (f.type) {
        case nvinfer1::PluginFieldType::kINT8: out[i] = static_cast<int8_t const*>(f.data)[i]; break;
        case nvinfer1::PluginFieldType::kINT16: out[i] = static_cast<int16_t const*>(f.data)[i]; break;
        case nvinfer1::PluginFieldType::kINT32: out[i] = static_cast<int32_t const*>(f.data)[i]; break;
        case nvinfer1::PluginFieldType::kINT64: out[i] = static_cast<int64_t const*>(f.data)[i]; break;
        default: throw PluginError(std::string("plugin field '") + f.name + "' must be an integer field");
        }
    }
    return out;
}

float fieldFloat(nvinfer1::PluginField const& f) {
    check(f.data != nullptr && f.length == 1, "plugin float field must hold exactly one value");
    switch (f.type) {
    case nvinfer1::PluginFieldType::kFLOAT32: return *static_cast<float const*>(f.data);
    case nvinfer1::PluginFieldType::kFLOAT64: return static_cast<float>(*static_cast<double const*>(f.data));
    case nvinfer1::PluginFieldType::kFLOAT16: return __half2float(*static_cast<__half const*>(f.data));
    default: throw PluginError(std::string("plugin field '") + f.name + "' must be a float field");
    }
}

int32_t fieldInt(nvinfer1::PluginField const& f) {
    auto v = fieldInts(f);
    if (v.size() != 1 || v[0] < INT32_MIN || v[0] > INT32_MAX)
        throw PluginError(std::string("plugin field '") + f.name + "' must hold one int32 value");
    return static_cast<int32_t>(v[0]);
}

void fieldPair(nvinfer1::PluginField const& f, int32_t& h, int32_t& w) {
    auto v = fieldInts(f);
    if (v.size() != 1 && v.size() != 2)
        throw PluginError(std::string("plugin field '") + f.name + "' must hold 1 or 2 values (h, w)");
    for (auto x : v)
        if (x < INT32_MIN || x > INT32_MAX) throw PluginError(std::string("plugin field '") + f.name + "' overflows int32");
    h = static_cast<int32_t>(v[0]);
    w = static_cast<int32_t>(v.size() == 2 ? v[1] : v[0]);
}

plugins::DataType featureType(nvinfer1::DataType t) {
    if (t == nvinfer1::DataType::kFLOAT) return plugins::DataType::kFLOAT;
    if (t == nvinfer1::DataType::kHALF) return plugins::DataType::kHALF;
    throw PluginError("feature tensors must be FP32 or FP16");
}

plugins::IndexType indexType(nvinfer1::DataType t) {
    if (t == nvinfer1::DataType::kINT32) return plugins::IndexType::kINT32;
    if (t == nvinfer1::DataType::kINT64) return plugins::IndexType::kINT64;
    throw PluginError("index tensors must be INT32 or INT64");
}

int64_t volume(nvinfer1::Dims const& d, int32_t begin, int32_t end) {
    int64_t v = 1;
    for (int32_t i = begin; i < end; ++i) v *= d.d[i];
    return v;
}

nvinfer1::IPluginCapability* PluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
    try {
        switch (type) {
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        }
        throw PluginError("unknown plugin capability type");
    } catch (std::exception const& e) {
        fail("getCapabilityInterface", e.what());
    } catch (...) {
        fail("getCapabilityInterface", "unknown exception");
    }
    return nullptr;
}

nvinfer1::IPluginV3* PluginBase::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
    return clone();  // clone() catches and reports itself
}

void PluginBase::fail(char const* method, char const* what) const noexcept {
    try {
        reportError((std::string(mName) + "::" + method).c_str(), what);
    } catch (...) {
    }
}

CreatorBase::CreatorBase(char const* name, std::vector<nvinfer1::PluginField> fields)
    : mName(name), mFields(std::move(fields)) {
    mFC.nbFields = static_cast<int32_t>(mFields.size());
    mFC.fields = mFields.data();
}

}  // namespace trt
}  // namespace segdeploy

// ------------------------------------------------------------------------------------ exported entry points
// Our own visibility macro: TENSORRTAPI is empty in some TensorRT versions' headers, and the library is built
// with -fvisibility=hidden, so the entry points must be marked explicitly.
#if defined(_WIN32)
#define SD_TRT_EXPORT __declspec(dllexport)
#else
#define SD_TRT_EXPORT __attribute__((visibility("default")))
#endif

// `trtexec --dynamicPlugins=libsegdeploy_trt_plugins.so`, IPluginRegistry::loadLibrary and Python's
// `builder.get_plugin_registry().load_library(path)` call these; they are the only exported symbols.
extern "C" SD_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    segdeploy::trt::setLoggerFinderImpl(finder);
}

extern "C" SD_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    try {
        static segdeploy::trt::MaxPoolWithIndicesCreator sMaxPool;
        static segdeploy::trt::MaxUnpoolCreator sMaxUnpool;
        static segdeploy::trt::RoiAlignCreator sRoiAlign;
        static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sMaxPool, &sMaxUnpool, &sRoiAlign};
        nbCreators = static_cast<int32_t>(sizeof(kCreators) / sizeof(kCreators[0]));
        return kCreators;
    } catch (std::exception const& e) {
        segdeploy::trt::reportError("getCreators", e.what());
    } catch (...) {
        segdeploy::trt::reportError("getCreators", "unknown exception");
    }
    nbCreators = 0;
    return nullptr;
}

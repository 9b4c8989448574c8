// SegdeployRoiAlign plugin + creator (see roi_align_plugin.h).
#include "roi_align_plugin.h"

#include <cmath>
#include <cstring>
#include <string>

using nvinfer1::DataType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

namespace segdeploy {
namespace trt {

RoiAlignPlugin::RoiAlignPlugin(plugins::RoiAlignParams const& params)
    : PluginBase(kRoiAlignPluginName), mParams(params) {
    check(params.pooled_h >= 1 && params.pooled_w >= 1, "output_height and output_width must be >= 1");
    check(std::isfinite(params.spatial_scale) && params.spatial_scale > 0.f, "spatial_scale must be a positive number");
}

nvinfer1::IPluginV3* RoiAlignPlugin::clone() noexcept {
    SD_TRT_TRY
    return new RoiAlignPlugin(*this);
    SD_TRT_CATCH("clone", nullptr)
}

int32_t RoiAlignPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(nbInputs == 3 && nbOutputs == 1, "expects inputs (X, rois, batch_indices) and 1 output");
    check(in[0].desc.dims.nbDims == 4, "X must be 4-D NCHW");
    check(in[1].desc.dims.nbDims == 2, "rois must be [K, 4]");
    check(in[2].desc.dims.nbDims == 1, "batch_indices must be [K]");
    return 0;
    SD_TRT_CATCH("configurePlugin", -1)
}

int32_t RoiAlignPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
    int32_t nbInputs) const noexcept {
    SD_TRT_TRY
    check(nbInputs == 3 && nbOutputs == 1, "expects inputs (X, rois, batch_indices) and 1 output");
    outputTypes[0] = inputTypes[0];
    return 0;
    SD_TRT_CATCH("getOutputDataTypes", -1)
}

int32_t RoiAlignPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& b) noexcept {
    SD_TRT_TRY
    check(nbInputs == 3 && nbShapeInputs == 0 && nbOutputs == 1, "expects inputs (X, rois, batch_indices)");
    check(inputs[0].nbDims == 4 && inputs[1].nbDims == 2, "X must be 4-D and rois [K, 4]");
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[1].d[0];
    outputs[0].d[1] = inputs[0].d[1];
    outputs[0].d[2] = b.constant(mParams.pooled_h);
    outputs[0].d[3] = b.constant(mParams.pooled_w);
    return 0;
    SD_TRT_CATCH("getOutputShapes", -1)
}

bool RoiAlignPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(nbInputs == 3 && nbOutputs == 1 && pos >= 0 && pos < 4, "bad format query");
    auto const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR) return false;
    switch (pos) {
    case 0: return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    case 1: return d.type == inOut[0].desc.type || d.type == DataType::kFLOAT;  // boxes may stay FP32
    case 2: return d.type == DataType::kINT32 || d.type == DataType::kINT64;
    default: return d.type == inOut[0].desc.type;
    }
    SD_TRT_CATCH("supportsFormatCombination", false)
}

int32_t RoiAlignPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(nbInputs == 3 && nbOutputs == 1, "expects inputs (X, rois, batch_indices) and 1 output");
    auto const& x = in[0].dims;
    check(in[1].dims.nbDims == 2 && in[1].dims.d[1] == 4, "rois must be [K, 4]");
    check(in[2].dims.nbDims == 1 && in[2].dims.d[0] == in[1].dims.d[0], "batch_indices must be [K] like rois");
    if (char const* msg = plugins::roiAlignCheck(mParams, x.d[0], x.d[1], x.d[2], x.d[3], in[1].dims.d[0]))
        throw PluginError(msg);
    return 0;
    SD_TRT_CATCH("onShapeChange", -1)
}

int32_t RoiAlignPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept {
    SD_TRT_TRY
    auto const& x = inputDesc[0].dims;
    int64_t const k = inputDesc[1].dims.d[0];
    if (k == 0) return 0;  // empty box list: empty output
    cudaError_t const st = plugins::launchRoiAlign(inputs[0], inputs[1], inputs[2], outputs[0],
        featureType(inputDesc[0].type), featureType(inputDesc[1].type), indexType(inputDesc[2].type), x.d[0], x.d[1],
        x.d[2], x.d[3], k, mParams, stream);
    if (st != cudaSuccess) {
        char const* why = plugins::roiAlignCheck(mParams, x.d[0], x.d[1], x.d[2], x.d[3], k);
        throw PluginError(std::string("kernel launch failed: ") + (why ? why : cudaGetErrorString(st)));
    }
    return 0;
    SD_TRT_CATCH("enqueue", -1)
}

nvinfer1::PluginFieldCollection const* RoiAlignPlugin::getFieldsToSerialize() noexcept {
    SD_TRT_TRY
    mOutH = mParams.pooled_h;
    mOutW = mParams.pooled_w;
    mSampling = mParams.sampling_ratio;
    mAligned = mParams.aligned ? 1 : 0;
    mScale = mParams.spatial_scale;
    mSerialFields = {
        PluginField("output_height", &mOutH, PluginFieldType::kINT32, 1),
        PluginField("output_width", &mOutW, PluginFieldType::kINT32, 1),
        PluginField("sampling_ratio", &mSampling, PluginFieldType::kINT32, 1),
        PluginField("spatial_scale", &mScale, PluginFieldType::kFLOAT32, 1),
        PluginField("aligned", &mAligned, PluginFieldType::kINT32, 1),
    };
    mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialFC.fields = mSerialFields.data();
    return &mSerialFC;
    SD_TRT_CATCH("getFieldsToSerialize", nullptr)
}

RoiAlignCreator::RoiAlignCreator()
    : CreatorBase(kRoiAlignPluginName,
                  {PluginField("output_height", nullptr, PluginFieldType::kINT32, 1),
                   PluginField("output_width", nullptr, PluginFieldType::kINT32, 1),
                   PluginField("sampling_ratio", nullptr, PluginFieldType::kINT32, 1),
                   PluginField("spatial_scale", nullptr, PluginFieldType::kFLOAT32, 1),
                   PluginField("aligned", nullptr, PluginFieldType::kINT32, 1)}) {}

nvinfer1::IPluginV3* RoiAlignCreator::createPlugin(nvinfer1::AsciiChar const* /*name*/,
    nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept {
    SD_TRT_TRY
    check(fc != nullptr, "no plugin fields");
    plugins::RoiAlignParams p;
    bool haveSampling = false, haveH = false, haveW = false, haveAligned = false;
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr) continue;
        if (!std::strcmp(f.name, "output_height")) {
            p.pooled_h = fieldInt(f);
            haveH = true;
        } else if (!std::strcmp(f.name, "output_width")) {
            p.pooled_w = fieldInt(f);
            haveW = true;
        } else if (!std::strcmp(f.name, "sampling_ratio")) {
            p.sampling_ratio = fieldInt(f);
            haveSampling = true;
        } else if (!std::strcmp(f.name, "spatial_scale")) {
            p.spatial_scale = fieldFloat(f);
        } else if (!std::strcmp(f.name, "aligned")) {
            p.aligned = fieldInt(f) != 0;
            haveAligned = true;
        }
    }
    // No silent defaults for the attributes whose defaults differ between torchvision, ONNX and TensorRT.
    check(haveH && haveW, "fields output_height and output_width are required");
    check(haveSampling, "field sampling_ratio is required (0 = adaptive, as torchvision)");
    check(haveAligned, "field aligned is required (0 or 1)");
    return new RoiAlignPlugin(p);
    SD_TRT_CATCH("createPlugin", nullptr)
}

}  // namespace trt
}  // namespace segdeploy

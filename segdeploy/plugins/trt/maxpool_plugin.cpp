// SegdeployMaxPoolWithIndices plugin + creator (see maxpool_plugin.h).
#include "maxpool_plugin.h"

#include <cstring>
#include <string>

using nvinfer1::DataType;
using nvinfer1::DimensionOperation;
using nvinfer1::IDimensionExpr;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

namespace segdeploy {
namespace trt {

namespace {

//! PyTorch's pooling_output_shape as a TensorRT shape expression of the input size `in`.
IDimensionExpr const* poolDim(nvinfer1::IExprBuilder& b, IDimensionExpr const* in, int32_t k, int32_t s, int32_t p,
                              int32_t d, bool ceil) {
    int64_t const c = 2 * int64_t(p) - int64_t(d) * (k - 1) - 1 + (ceil ? s - 1 : 0);
    auto const* num = b.operation(DimensionOperation::kSUM, *in, *b.constant(c));
    auto const* out = b.operation(DimensionOperation::kSUM, *b.operation(DimensionOperation::kFLOOR_DIV, *num, *b.constant(s)),
                                  *b.constant(1));
    if (!ceil) return out;
    // With ceil_mode the last window must start inside the input or the left padding:
    // out -= 1 unless (out - 1) * s < in + p.
    auto const* lastStart = b.operation(DimensionOperation::kPROD,
                                        *b.operation(DimensionOperation::kSUB, *out, *b.constant(1)), *b.constant(s));
    auto const* limit = b.operation(DimensionOperation::kSUM, *in, *b.constant(p));
    auto const* keep = b.operation(DimensionOperation::kLESS, *lastStart, *limit);  // 1 keeps, 0 drops one
    return b.operation(DimensionOperation::kSUM, *b.operation(DimensionOperation::kSUB, *out, *b.constant(1)), *keep);
}

}  // namespace

MaxPoolWithIndicesPlugin::MaxPoolWithIndicesPlugin(plugins::MaxPool2dParams const& params)
    : PluginBase(kMaxPoolPluginName), mParams(params) {
    check(params.kernel_h >= 1 && params.kernel_w >= 1, "kernel_size must be >= 1");
    check(params.stride_h >= 1 && params.stride_w >= 1, "stride must be >= 1");
    check(params.dilation_h >= 1 && params.dilation_w >= 1, "dilation must be >= 1");
    check(params.pad_h >= 0 && params.pad_w >= 0, "padding must be >= 0");
    check(params.pad_h <= ((params.kernel_h - 1) * params.dilation_h + 1) / 2
              && params.pad_w <= ((params.kernel_w - 1) * params.dilation_w + 1) / 2,
          "padding must be at most half of the effective kernel size");
}

nvinfer1::IPluginV3* MaxPoolWithIndicesPlugin::clone() noexcept {
    SD_TRT_TRY
    return new MaxPoolWithIndicesPlugin(*this);
    SD_TRT_CATCH("clone", nullptr)
}

int32_t MaxPoolWithIndicesPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(nbInputs == 1 && nbOutputs == 2, "expects 1 input and 2 outputs");
    check(in[0].desc.dims.nbDims == 4, "input must be 4-D NCHW");
    return 0;
    SD_TRT_CATCH("configurePlugin", -1)
}

int32_t MaxPoolWithIndicesPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
    DataType const* inputTypes, int32_t nbInputs) const noexcept {
    SD_TRT_TRY
    check(nbInputs == 1 && nbOutputs == 2, "expects 1 input and 2 outputs");
    outputTypes[0] = inputTypes[0];
    outputTypes[1] = DataType::kINT32;
    return 0;
    SD_TRT_CATCH("getOutputDataTypes", -1)
}

int32_t MaxPoolWithIndicesPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& exprBuilder) noexcept {
    SD_TRT_TRY
    check(nbInputs == 1 && nbShapeInputs == 0 && nbOutputs == 2, "expects 1 input and 2 outputs");
    check(inputs[0].nbDims == 4, "input must be 4-D NCHW");
    auto const& p = mParams;
    for (int32_t o = 0; o < 2; ++o) {
        outputs[o].nbDims = 4;
        outputs[o].d[0] = inputs[0].d[0];
        outputs[o].d[1] = inputs[0].d[1];
        outputs[o].d[2] = poolDim(exprBuilder, inputs[0].d[2], p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
        outputs[o].d[3] = poolDim(exprBuilder, inputs[0].d[3], p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
    }
    return 0;
    SD_TRT_CATCH("getOutputShapes", -1)
}

bool MaxPoolWithIndicesPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(nbInputs == 1 && nbOutputs == 2 && pos >= 0 && pos < 3, "bad format query");
    auto const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR) return false;
    if (pos == 0) return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    if (pos == 1) return d.type == inOut[0].desc.type;
    return d.type == DataType::kINT32;
    SD_TRT_CATCH("supportsFormatCombination", false)
}

int32_t MaxPoolWithIndicesPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(nbInputs == 1 && nbOutputs == 2, "expects 1 input and 2 outputs");
    check(in[0].dims.nbDims == 4, "input must be 4-D NCHW");
    if (char const* msg = plugins::maxPool2dCheck(mParams, in[0].dims.d[2], in[0].dims.d[3])) throw PluginError(msg);
    return 0;
    SD_TRT_CATCH("onShapeChange", -1)
}

int32_t MaxPoolWithIndicesPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* /*workspace*/,
    cudaStream_t stream) noexcept {
    SD_TRT_TRY
    auto const& d = inputDesc[0].dims;
    if (char const* msg = plugins::maxPool2dCheck(mParams, d.d[2], d.d[3])) throw PluginError(msg);
    cudaError_t const st = plugins::launchMaxPool2dWithIndices(inputs[0], outputs[0], outputs[1],
        featureType(inputDesc[0].type), indexType(outputDesc[1].type), d.d[0], d.d[1], d.d[2], d.d[3], mParams, stream);
    if (st != cudaSuccess) throw PluginError(std::string("kernel launch failed: ") + cudaGetErrorString(st));
    return 0;
    SD_TRT_CATCH("enqueue", -1)
}

nvinfer1::PluginFieldCollection const* MaxPoolWithIndicesPlugin::getFieldsToSerialize() noexcept {
    SD_TRT_TRY
    auto const& p = mParams;
    mKernel[0] = p.kernel_h, mKernel[1] = p.kernel_w;
    mStride[0] = p.stride_h, mStride[1] = p.stride_w;
    mPadding[0] = p.pad_h, mPadding[1] = p.pad_w;
    mDilation[0] = p.dilation_h, mDilation[1] = p.dilation_w;
    mCeil = p.ceil_mode ? 1 : 0;
    mSerialFields = {
        PluginField("kernel_size", mKernel, PluginFieldType::kINT32, 2),
        PluginField("stride", mStride, PluginFieldType::kINT32, 2),
        PluginField("padding", mPadding, PluginFieldType::kINT32, 2),
        PluginField("dilation", mDilation, PluginFieldType::kINT32, 2),
        PluginField("ceil_mode", &mCeil, PluginFieldType::kINT32, 1),
    };
    mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialFC.fields = mSerialFields.data();
    return &mSerialFC;
    SD_TRT_CATCH("getFieldsToSerialize", nullptr)
}

MaxPoolWithIndicesCreator::MaxPoolWithIndicesCreator()
    : CreatorBase(kMaxPoolPluginName,
                  {PluginField("kernel_size", nullptr, PluginFieldType::kINT32, 2),
                   PluginField("stride", nullptr, PluginFieldType::kINT32, 2),
                   PluginField("padding", nullptr, PluginFieldType::kINT32, 2),
                   PluginField("dilation", nullptr, PluginFieldType::kINT32, 2),
                   PluginField("ceil_mode", nullptr, PluginFieldType::kINT32, 1)}) {}

nvinfer1::IPluginV3* MaxPoolWithIndicesCreator::createPlugin(nvinfer1::AsciiChar const* /*name*/,
    nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept {
    SD_TRT_TRY
    check(fc != nullptr, "no plugin fields");
    plugins::MaxPool2dParams p;
    bool haveKernel = false, haveStride = false;
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr) continue;
        if (!std::strcmp(f.name, "kernel_size")) {
            fieldPair(f, p.kernel_h, p.kernel_w);
            haveKernel = true;
        } else if (!std::strcmp(f.name, "stride")) {
            fieldPair(f, p.stride_h, p.stride_w);
            haveStride = true;
        } else if (!std::strcmp(f.name, "padding")) {
            fieldPair(f, p.pad_h, p.pad_w);
        } else if (!std::strcmp(f.name, "dilation")) {
            fieldPair(f, p.dilation_h, p.dilation_w);
        } else if (!std::strcmp(f.name, "ceil_mode")) {
            p.ceil_mode = fieldInt(f) != 0;
        }
    }
    check(haveKernel, "field kernel_size is required");
    if (!haveStride) p.stride_h = p.kernel_h, p.stride_w = p.kernel_w;  // PyTorch's default stride
    return new MaxPoolWithIndicesPlugin(p);
    SD_TRT_CATCH("createPlugin", nullptr)
}

}  // namespace trt
}  // namespace segdeploy

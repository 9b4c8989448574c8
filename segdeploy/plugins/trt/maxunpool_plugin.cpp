// SegdeployMaxUnpool plugin + creator (see maxunpool_plugin.h).
#include "maxunpool_plugin.h"

#include <cstring>
#include <string>

using nvinfer1::DataType;
using nvinfer1::DimensionOperation;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

namespace segdeploy {
namespace trt {

namespace {
// TensorRT passes shape inputs to getOutputShapes only; should a version also list the shape tensor among the
// regular inputs of the other methods, accept it there (it is never read on the device).
bool validCounts(int32_t nbInputs, int32_t nbOutputs) {
    return (nbInputs == 2 || nbInputs == 3) && nbOutputs == 1;
}
}  // namespace

MaxUnpoolPlugin::MaxUnpoolPlugin(plugins::MaxUnpool2dParams const& params)
    : PluginBase(kMaxUnpoolPluginName), mParams(params) {
    check(params.kernel_h >= 1 && params.kernel_w >= 1, "kernel_size must be >= 1");
    check(params.stride_h >= 1 && params.stride_w >= 1, "stride must be >= 1");
    check(params.pad_h >= 0 && params.pad_w >= 0, "padding must be >= 0");
}

nvinfer1::IPluginV3* MaxUnpoolPlugin::clone() noexcept {
    SD_TRT_TRY
    return new MaxUnpoolPlugin(*this);
    SD_TRT_CATCH("clone", nullptr)
}

int32_t MaxUnpoolPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(validCounts(nbInputs, nbOutputs), "expects inputs (X, indices) [+ shape input] and 1 output");
    check(in[0].desc.dims.nbDims == 4 && in[1].desc.dims.nbDims == 4, "X and indices must be 4-D NCHW");
    return 0;
    SD_TRT_CATCH("configurePlugin", -1)
}

int32_t MaxUnpoolPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
    int32_t nbInputs) const noexcept {
    SD_TRT_TRY
    check(validCounts(nbInputs, nbOutputs), "expects inputs (X, indices) [+ shape input] and 1 output");
    outputTypes[0] = inputTypes[0];
    return 0;
    SD_TRT_CATCH("getOutputDataTypes", -1)
}

int32_t MaxUnpoolPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& b) noexcept {
    SD_TRT_TRY
    // The output-shape tensor arrives as a shape input (tensorrt_plugin_shape_input_indices=[2]); its values,
    // not its dims, give the size, so a third *regular* input cannot define the output shape.
    check(nbInputs == 2 && nbOutputs == 1 && nbShapeInputs <= 1,
          "expects inputs (X, indices) and at most one shape input (mark it with tensorrt_plugin_shape_input_indices)");
    check(inputs[0].nbDims == 4, "X must be 4-D NCHW");
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = inputs[0].d[1];
    if (nbShapeInputs == 1) {
        // The values of the shape input: (N, C, OH, OW) or (OH, OW).
        auto const& s = shapeInputs[0];
        check(s.nbDims == 4 || s.nbDims == 2, "the output-shape input must hold 4 (N,C,H,W) or 2 (H,W) values");
        outputs[0].d[2] = s.d[s.nbDims - 2];
        outputs[0].d[3] = s.d[s.nbDims - 1];
    } else {
        auto const& p = mParams;
        // (in - 1) * stride - 2 * pad + kernel  ==  in * stride + (kernel - stride - 2 * pad)
        outputs[0].d[2] = b.operation(DimensionOperation::kSUM,
            *b.operation(DimensionOperation::kPROD, *inputs[0].d[2], *b.constant(p.stride_h)),
            *b.constant(int64_t(p.kernel_h) - p.stride_h - 2 * int64_t(p.pad_h)));
        outputs[0].d[3] = b.operation(DimensionOperation::kSUM,
            *b.operation(DimensionOperation::kPROD, *inputs[0].d[3], *b.constant(p.stride_w)),
            *b.constant(int64_t(p.kernel_w) - p.stride_w - 2 * int64_t(p.pad_w)));
    }
    return 0;
    SD_TRT_CATCH("getOutputShapes", -1)
}

bool MaxUnpoolPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(validCounts(nbInputs, nbOutputs) && pos >= 0 && pos < nbInputs + 1, "bad format query");
    auto const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR) return false;
    if (pos == 0) return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    if (pos == 1) return d.type == DataType::kINT32 || d.type == DataType::kINT64;
    if (pos == nbInputs) return d.type == inOut[0].desc.type;  // the output
    return d.type == DataType::kINT32 || d.type == DataType::kINT64;  // shape tensor, if listed as an input
    SD_TRT_CATCH("supportsFormatCombination", false)
}

size_t MaxUnpoolPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept {
    try {
        return plugins::maxUnpool2dWorkspaceSize();
    } catch (...) {
        return 0;
    }
}

int32_t MaxUnpoolPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    SD_TRT_TRY
    check(validCounts(nbInputs, nbOutputs), "expects inputs (X, indices) [+ shape input] and 1 output");
    auto const& x = in[0].dims;
    auto const& i = in[1].dims;
    check(x.nbDims == 4 && i.nbDims == 4, "X and indices must be 4-D NCHW");
    for (int32_t k = 0; k < 4; ++k) check(x.d[k] == i.d[k], "X and indices must have the same shape");
    if (char const* msg = plugins::maxUnpool2dCheck(mParams, x.d[2], x.d[3], out[0].dims.d[2], out[0].dims.d[3]))
        throw PluginError(msg);
    return 0;
    SD_TRT_CATCH("onShapeChange", -1)
}

int32_t MaxUnpoolPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
    SD_TRT_TRY
    auto const& x = inputDesc[0].dims;
    auto const& o = outputDesc[0].dims;
    cudaError_t const st = plugins::launchMaxUnpool2d(inputs[0], inputs[1], outputs[0], featureType(inputDesc[0].type),
        indexType(inputDesc[1].type), x.d[0], x.d[1], x.d[2], x.d[3], o.d[2], o.d[3], mParams,
        plugins::UnpoolAlgo::kAUTO, workspace, stream);
    if (st != cudaSuccess) {
        char const* why = plugins::maxUnpool2dCheck(mParams, x.d[2], x.d[3], o.d[2], o.d[3]);
        throw PluginError(std::string("kernel launch failed: ") + (why ? why : cudaGetErrorString(st)));
    }
    return 0;
    SD_TRT_CATCH("enqueue", -1)
}

nvinfer1::PluginFieldCollection const* MaxUnpoolPlugin::getFieldsToSerialize() noexcept {
    SD_TRT_TRY
    mKernel[0] = mParams.kernel_h, mKernel[1] = mParams.kernel_w;
    mStride[0] = mParams.stride_h, mStride[1] = mParams.stride_w;
    mPadding[0] = mParams.pad_h, mPadding[1] = mParams.pad_w;
    mSerialFields = {
        PluginField("kernel_size", mKernel, PluginFieldType::kINT32, 2),
        PluginField("stride", mStride, PluginFieldType::kINT32, 2),
        PluginField("padding", mPadding, PluginFieldType::kINT32, 2),
    };
    mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialFC.fields = mSerialFields.data();
    return &mSerialFC;
    SD_TRT_CATCH("getFieldsToSerialize", nullptr)
}

MaxUnpoolCreator::MaxUnpoolCreator()
    : CreatorBase(kMaxUnpoolPluginName,
                  {PluginField("kernel_size", nullptr, PluginFieldType::kINT32, 2),
                   PluginField("stride", nullptr, PluginFieldType::kINT32, 2),
                   PluginField("padding", nullptr, PluginFieldType::kINT32, 2)}) {}

nvinfer1::IPluginV3* MaxUnpoolCreator::createPlugin(nvinfer1::AsciiChar const* /*name*/,
    nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept {
    SD_TRT_TRY
    check(fc != nullptr, "no plugin fields");
    plugins::MaxUnpool2dParams p;
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
        }
    }
    check(haveKernel, "field kernel_size is required");
    if (!haveStride) p.stride_h = p.kernel_h, p.stride_w = p.kernel_w;
    return new MaxUnpoolPlugin(p);
    SD_TRT_CATCH("createPlugin", nullptr)
}

}  // namespace trt
}  // namespace segdeploy

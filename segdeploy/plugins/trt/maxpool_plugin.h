// SegdeployMaxPoolWithIndices: TensorRT IPluginV3 for max_pool2d(return_indices=True), PyTorch semantics.
//
// Input 0: X [N, C, H, W] FP32/FP16 (linear). Outputs: Y [N, C, OH, OW] (type of X) and
// I [N, C, OH, OW] INT32, indices flat per plane (h * W + w) as PyTorch returns them.
// Fields (ints, as the ONNX parser passes them): kernel_size[2], stride[2], padding[2], dilation[2],
// ceil_mode. Output sizes follow PyTorch's pooling_output_shape, as shape expressions (dynamic shapes).
#pragma once

#include "maxpool_indices/maxpool_indices.h"
#include "plugin_common.h"

namespace segdeploy {
namespace trt {

constexpr char const* kMaxPoolPluginName = "SegdeployMaxPoolWithIndices";

class MaxPoolWithIndicesPlugin final : public PluginBase {
public:
    explicit MaxPoolWithIndicesPlugin(plugins::MaxPool2dParams const& params);

    nvinfer1::IPluginV3* clone() noexcept override;
    int32_t getNbOutputs() const noexcept override { return 2; }
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    MaxPoolWithIndicesPlugin(MaxPoolWithIndicesPlugin const&) = default;
    plugins::MaxPool2dParams mParams;
    // serialisation storage (pairs as [h, w])
    int32_t mKernel[2]{}, mStride[2]{}, mPadding[2]{}, mDilation[2]{}, mCeil{0};
};

class MaxPoolWithIndicesCreator final : public CreatorBase {
public:
    MaxPoolWithIndicesCreator();
    nvinfer1::IPluginV3* createPlugin(nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
};

}  // namespace trt
}  // namespace segdeploy

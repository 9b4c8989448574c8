// SegdeployMaxUnpool: TensorRT IPluginV3 for max_unpool2d, PyTorch semantics.
//
// Inputs: X [N, C, IH, IW] FP32/FP16 and I [N, C, IH, IW] INT32/INT64 (flat per-plane indices, as
// SegdeployMaxPoolWithIndices / PyTorch produce them); optional shape input S (the ONNX node marks it with
// tensorrt_plugin_shape_input_indices=[2]): the output shape as 4 values (N, C, OH, OW) or 2 values (OH, OW).
// Output: [N, C, OH, OW] (type of X), zero-initialised, then output[n,c].flat[I] = X. Without S the size is
// PyTorch's default (IH - 1) * stride - 2 * padding + kernel_size. Out-of-range indices are skipped (the
// kernel's defined behaviour; PyTorch raises), duplicate indices: one value wins.
// Fields: kernel_size[2], stride[2], padding[2] (the pooling that produced I).
#pragma once

#include "maxunpool/maxunpool.h"
#include "plugin_common.h"

namespace segdeploy {
namespace trt {

constexpr char const* kMaxUnpoolPluginName = "SegdeployMaxUnpool";

class MaxUnpoolPlugin final : public PluginBase {
public:
    explicit MaxUnpoolPlugin(plugins::MaxUnpool2dParams const& params);

    nvinfer1::IPluginV3* clone() noexcept override;
    int32_t getNbOutputs() const noexcept override { return 1; }
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    MaxUnpoolPlugin(MaxUnpoolPlugin const&) = default;
    plugins::MaxUnpool2dParams mParams;
    int32_t mKernel[2]{}, mStride[2]{}, mPadding[2]{};
};

class MaxUnpoolCreator final : public CreatorBase {
public:
    MaxUnpoolCreator();
    nvinfer1::IPluginV3* createPlugin(nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
};

}  // namespace trt
}  // namespace segdeploy

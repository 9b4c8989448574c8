// SegdeployRoiAlign: TensorRT IPluginV3 for torchvision.ops.roi_align (average mode).
//
// Named differently from ONNX's RoiAlign so the TensorRT ONNX parser does not route the node to its built-in
// ROIAlign_TRT plugin (whose importer defaults sampling_ratio to 1).
// Inputs: X [N, C, H, W] FP32/FP16, rois [K, 4] (x1, y1, x2, y2; FP32 or the type of X), batch_indices [K]
// INT32/INT64. Output: [K, C, output_height, output_width] (type of X); K may be 0 (nothing is launched).
// Fields: output_height, output_width, sampling_ratio (<= 0: adaptive), spatial_scale (float), aligned (0/1).
#pragma once

#include "plugin_common.h"
#include "roi_align/roi_align.h"

namespace segdeploy {
namespace trt {

constexpr char const* kRoiAlignPluginName = "SegdeployRoiAlign";

class RoiAlignPlugin final : public PluginBase {
public:
    explicit RoiAlignPlugin(plugins::RoiAlignParams const& params);

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
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    RoiAlignPlugin(RoiAlignPlugin const&) = default;
    plugins::RoiAlignParams mParams;
    int32_t mOutH{1}, mOutW{1}, mSampling{0}, mAligned{0};
    float mScale{1.f};
};

class RoiAlignCreator final : public CreatorBase {
public:
    RoiAlignCreator();
    nvinfer1::IPluginV3* createPlugin(nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
};

}  // namespace trt
}  // namespace segdeploy

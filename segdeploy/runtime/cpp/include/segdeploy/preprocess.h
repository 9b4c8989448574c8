// segdeploy runtime: image -> model input, the host reference of what the GPU path computes.
//
// Matches segdeploy.datasets.preprocess.to_batch (Python) bit for bit; tests/runtime/ checks it on the shipped
// validation images. The rules:
//  * Size (targetSize / planBatch). "pad": an image is padded bottom/right to the next multiple of the profile's
//    spatial_multiple, and to at least the profile's min H/W; above the max H/W is an error (usage). In a batch
//    every image is padded to the batch's largest size. The padding value is 0 AFTER normalisation.
//    "resize": every image is resized to the profile's opt H/W.
//  * Resize: Pillow's Image.resize(BILINEAR) reproduced exactly (Pillow 13): separable two-pass convolution
//    (horizontal pass first, over the source rows the vertical pass needs -- or vertical first when the height
//    shrinks much more than the width, see verticalFirst), triangle filter whose support widens by the scale
//    factor when downscaling (antialiasing), coefficients computed in double and normalised to sum 1, then
//    converted to 22-bit fixed point with round-half-away-from-zero; each pass accumulates in int32 starting at
//    2^21 (= +0.5, rounding) and clamps to 0..255 after an arithmetic shift by 22. A pass whose size does not
//    change is skipped (as Pillow), so an image already at opt H/W is not touched. Integer arithmetic: the GPU
//    kernels give the same bytes.
//  * Normalisation: x = (float(pixel) * float(scale) - float(mean[c])) / float(std[c]), every operation in IEEE
//    float32 with round-to-nearest-even, in that order (NumPy's order: no fused multiply-add, no reciprocal).
//    It is tabulated once (3 x 256 floats, normalizationTable) and both the host and the GPU read the table, so
//    host and device agree exactly. mean/std are given in the MODEL's channel order; with 1 value it is used for
//    every channel.
//  * Channels: model channel c reads the image byte sourceChannels(order, format)[c]: an RGB image fed to a BGR
//    model (or the reverse) is swapped, as Python reverses its RGB images for BGR models.
// Errors: segdeploy::Error (usage) for sizes the profile does not accept, empty images, too many/few images.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "segdeploy/image.h"
#include "segdeploy/manifest.h"

namespace segdeploy {

//! Where one image sits in its batch tensor (segdeploy.datasets.preprocess.InputInfo).
struct InputInfo {
    int orig_h = 0, orig_w = 0;        //!< the image's size
    int input_h = 0, input_w = 0;      //!< the batch tensor's H/W
    int content_h = 0, content_w = 0;  //!< rows/cols holding the image (pad: orig; resize: input)
    ResizeMode mode = ResizeMode::kPad;
};

//! The batch tensor's shape [batch, 3, height, width] and each image's placement.
struct BatchPlan {
    int batch = 0, height = 0, width = 0;
    std::vector<InputInfo> infos;
};

//! (H, W) an image of h x w is brought to on its own (target_size). Throws Error (usage) above the max.
std::pair<int, int> targetSize(int h, int w, const Preprocess& pre, const ShapeProfile& profile);

//! Batch layout for images of sizes (h, w) (to_batch's shape logic). Throws Error (usage) when the count is
//! outside the profile's batch range or an image does not fit.
BatchPlan planBatch(const std::vector<std::pair<int, int>>& sizes, const Preprocess& pre, const ShapeProfile& profile);

//! table[c * 256 + v] = normalised value of byte v in model channel c (see the rules above).
std::array<float, 768> normalizationTable(const Preprocess& pre);

//! For model channel c (0..2), the index (0..2) of the byte to read in a pixel of `format`.
std::array<int, 3> sourceChannels(ChannelOrder model_order, PixelFormat format);

//! Pillow-exact bilinear resampling coefficients for one axis (in_size -> out_size).
struct ResampleAxis {
    int in_size = 0, out_size = 0, ksize = 0;
    std::vector<int32_t> bounds;  //!< 2 per output: first input index, number of taps
    std::vector<int32_t> coeffs;  //!< ksize per output: 22-bit fixed-point weights (unused taps are 0)
};
ResampleAxis bilinearAxis(int in_size, int out_size);

//! Pillow's pass order when both axes change (Pillow >= 13, python-pillow/Pillow#9549): the vertical pass runs
//! first when the height shrinks by more than twice as many pixels as the width,
//! out_h < in_h && in_h - out_h > 2 * (in_w - out_w); else the horizontal pass runs first (the only order
//! before Pillow 13). The order changes the rounding of the 8-bit intermediate image.
bool verticalFirst(int in_h, int in_w, int out_h, int out_w);

//! Pillow-exact bilinear resize of an 8-bit 3-channel image to out_h x out_w (tightly packed, bytes kept in
//! the image's own order).
std::vector<uint8_t> resizeBilinear(const ImageView& image, int out_h, int out_w);

//! The float32 NCHW batch (to_batch). Fills *plan when given.
std::vector<float> toBatch(const std::vector<ImageView>& images, const Preprocess& pre, const ShapeProfile& profile,
                           BatchPlan* plan = nullptr);

}  // namespace segdeploy

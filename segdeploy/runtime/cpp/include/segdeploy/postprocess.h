// segdeploy runtime: logits -> class map at the original image size, the host reference of the GPU kernel.
//
// Matches Python's `restore_prediction(logits.argmax(axis=1)[i], info)` (segdeploy.datasets.preprocess):
//  * argmax over the K class scores of a pixel as NumPy computes it: the first maximum wins ties; a NaN score
//    counts as the maximum (the first NaN wins); +-inf compare as usual;
//  * "pad": the class map is the top-left orig_h x orig_w crop (no resampling);
//  * "resize": nearest-neighbour back to orig_h x orig_w through pixel centres:
//    src = min(floor((i + 0.5) * (n_in / n_out)), n_in - 1), computed in double as NumPy does.
// The GPU kernel evaluates the same argmax at the pixels named by the same index tables (restoreTables).
#pragma once

#include <cstdint>
#include <vector>

#include "segdeploy/image.h"
#include "segdeploy/preprocess.h"

namespace segdeploy {

//! NumPy's _nearest_index: for each of n_out output positions, the source index among n_in.
std::vector<int32_t> nearestIndex(int n_out, int n_in);

//! Source row for each output row and source column for each output column of one image.
struct RestoreTables {
    std::vector<int32_t> rows;  //!< orig_h entries, indices into the tensor's rows
    std::vector<int32_t> cols;  //!< orig_w entries
};
RestoreTables restoreTables(const InputInfo& info);

//! Class map of one image from its logits [K, info.input_h, info.input_w] (float32, contiguous).
ClassMap argmaxRestore(const float* logits, int num_classes, const InputInfo& info);

//! Pixels where ``map`` equals the reference class map ``reference`` (a decoded 8-bit gray image: the class is
//! each pixel's first channel). Throws segdeploy::Error (usage) when the sizes differ.
struct Agreement {
    size_t equal = 0;
    size_t total = 0;
    double percent() const { return total ? 100.0 * double(equal) / double(total) : 100.0; }
};
Agreement pixelAgreement(const ClassMap& map, const Image& reference);

}  // namespace segdeploy

// segdeploy runtime: host reference of argmax + restore (see include/segdeploy/postprocess.h).
#include "segdeploy/postprocess.h"

#include <cmath>
#include <string>

#include "pixel_ops.h"
#include "segdeploy/error.h"

namespace segdeploy {

std::vector<int32_t> nearestIndex(int n_out, int n_in) {
    std::vector<int32_t> idx(size_t(n_out > 0 ? n_out : 0));
    const double ratio = static_cast<double>(n_in) / static_cast<double>(n_out);
    for (int i = 0; i < n_out; ++i) {
        double v = std::floor((static_cast<double>(i) + 0.5) * ratio);
        int64_t j = static_cast<int64_t>(v);
        idx[size_t(i)] = static_cast<int32_t>(j < n_in - 1 ? j : n_in - 1);
    }
    return idx;
}

RestoreTables restoreTables(const InputInfo& info) {
    RestoreTables t;
    bool identity = info.mode == ResizeMode::kPad || (info.content_h == info.orig_h && info.content_w == info.orig_w);
    if (identity) {
        t.rows.resize(size_t(info.orig_h));
        t.cols.resize(size_t(info.orig_w));
        for (int i = 0; i < info.orig_h; ++i) t.rows[size_t(i)] = i;
        for (int j = 0; j < info.orig_w; ++j) t.cols[size_t(j)] = j;
    } else {
        t.rows = nearestIndex(info.orig_h, info.content_h);
        t.cols = nearestIndex(info.orig_w, info.content_w);
    }
    return t;
}

ClassMap argmaxRestore(const float* logits, int num_classes, const InputInfo& info) {
    if (num_classes < 1) throw usageError("argmax needs at least one class, got " + std::to_string(num_classes) + "; check the model's output");
    if (info.content_h > info.input_h || info.content_w > info.input_w || info.orig_h <= 0 || info.orig_w <= 0) {
        throw usageError("inconsistent InputInfo (content larger than the input, or an empty image); use the BatchPlan from planBatch");
    }
    RestoreTables t = restoreTables(info);
    const size_t plane = size_t(info.input_h) * size_t(info.input_w);
    ClassMap map;
    map.width = info.orig_w;
    map.height = info.orig_h;
    map.labels.resize(size_t(info.orig_h) * size_t(info.orig_w));
    for (int y = 0; y < info.orig_h; ++y) {
        for (int x = 0; x < info.orig_w; ++x) {
            const float* px = logits + size_t(t.rows[size_t(y)]) * size_t(info.input_w) + size_t(t.cols[size_t(x)]);
            int k = ops::argmax([&](int c) { return px[size_t(c) * plane]; }, num_classes);
            map.labels[size_t(y) * size_t(info.orig_w) + size_t(x)] = static_cast<uint16_t>(k);
        }
    }
    return map;
}

Agreement pixelAgreement(const ClassMap& map, const Image& reference) {
    if (reference.width != map.width || reference.height != map.height) {
        throw usageError("reference class map is " + std::to_string(reference.width) + "x" + std::to_string(reference.height) +
                         " but the class map is " + std::to_string(map.width) + "x" + std::to_string(map.height) +
                         " (WxH); compare maps of the same image");
    }
    Agreement a;
    a.total = map.labels.size();
    for (size_t i = 0; i < a.total; ++i) {
        if (map.labels[i] == reference.pixels[size_t(reference.channels) * i]) a.equal++;
    }
    return a;
}

}  // namespace segdeploy

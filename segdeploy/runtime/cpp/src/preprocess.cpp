// segdeploy runtime: host reference of the preprocessing (see include/segdeploy/preprocess.h for the rules).
#include "segdeploy/preprocess.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "pixel_ops.h"
#include "segdeploy/error.h"

namespace segdeploy {

namespace {

int64_t roundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

std::string wxh(int64_t w, int64_t h) { return std::to_string(w) + "x" + std::to_string(h); }

void checkView(const ImageView& img, size_t index) {
    if (!img.data || img.width <= 0 || img.height <= 0) {
        throw usageError("image " + std::to_string(index) + " is empty (" + wxh(img.width, img.height) +
                         ", data " + (img.data ? "set" : "null") + "); pass a decoded 8-bit 3-channel image");
    }
    if (img.row_stride != 0 && img.row_stride < size_t(img.width) * 3) {
        throw usageError("image " + std::to_string(index) + " has row_stride " + std::to_string(img.row_stride) +
                         " < width * 3 = " + std::to_string(size_t(img.width) * 3) + "; set row_stride to the bytes per row (0 = packed)");
    }
}

double bilinearFilter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

}  // namespace

bool verticalFirst(int in_h, int in_w, int out_h, int out_w) {
    return out_h < in_h && int64_t(in_h) - out_h > 2 * (int64_t(in_w) - out_w);
}

std::pair<int, int> targetSize(int h, int w, const Preprocess& pre, const ShapeProfile& profile) {
    if (pre.resize == ResizeMode::kResize) return {int(profile.opt[2]), int(profile.opt[3])};
    int64_t m = profile.spatial_multiple;
    int64_t th = std::max(roundUp(h, m), profile.min[2]);
    int64_t tw = std::max(roundUp(w, m), profile.min[3]);
    if (th > profile.max[2] || tw > profile.max[3]) {
        throw usageError("image " + wxh(w, h) + " (WxH) pads to " + wxh(tw, th) + ", above the model's max input " +
                         wxh(profile.max[3], profile.max[2]) +
                         "; re-export with a larger --max-shape and rebuild the engine, or export with --resize resize");
    }
    return {int(th), int(tw)};
}

BatchPlan planBatch(const std::vector<std::pair<int, int>>& sizes, const Preprocess& pre, const ShapeProfile& profile) {
    if (sizes.empty()) throw usageError("no images to preprocess; pass at least one image");
    int64_t n = int64_t(sizes.size());
    if (n > profile.max[0]) {
        throw usageError("batch of " + std::to_string(n) + " exceeds the model's max batch " + std::to_string(profile.max[0]) +
                         "; pass at most " + std::to_string(profile.max[0]) + " images per call");
    }
    BatchPlan plan;
    plan.batch = int(n);
    std::vector<std::pair<int, int>> targets;
    for (const auto& s : sizes) {
        if (s.first <= 0 || s.second <= 0) throw usageError("an image of size " + wxh(s.second, s.first) + " cannot be preprocessed; pass non-empty images");
        targets.push_back(targetSize(s.first, s.second, pre, profile));
        plan.height = std::max(plan.height, targets.back().first);
        plan.width = std::max(plan.width, targets.back().second);
    }
    if (n < profile.min[0]) {
        throw usageError("batch of " + std::to_string(n) + " is below the model's min batch " + std::to_string(profile.min[0]) +
                         "; pass at least " + std::to_string(profile.min[0]) + " images per call");
    }
    for (const auto& s : sizes) {
        InputInfo info;
        info.orig_h = s.first;
        info.orig_w = s.second;
        info.input_h = plan.height;
        info.input_w = plan.width;
        info.mode = pre.resize;
        if (pre.resize == ResizeMode::kResize) {
            info.content_h = plan.height;
            info.content_w = plan.width;
        } else {
            info.content_h = s.first;
            info.content_w = s.second;
        }
        plan.infos.push_back(info);
    }
    return plan;
}

std::array<float, 768> normalizationTable(const Preprocess& pre) {
    std::array<float, 768> table{};
    const float scale = static_cast<float>(pre.scale);
    for (int c = 0; c < 3; ++c) {
        size_t i = pre.mean.size() == 1 ? 0 : size_t(c);
        const float mean = static_cast<float>(pre.mean[i]);
        const float sd = static_cast<float>(pre.std[i]);
        for (int v = 0; v < 256; ++v) {
            // volatile: each operation is rounded to float32 on its own (never fused into an FMA), as NumPy does
            volatile float scaled = static_cast<float>(v) * scale;
            volatile float centred = scaled - mean;
            table[size_t(c) * 256 + size_t(v)] = centred / sd;
        }
    }
    return table;
}

std::array<int, 3> sourceChannels(ChannelOrder model_order, PixelFormat format) {
    bool same = (model_order == ChannelOrder::kRGB) == (format == PixelFormat::kRGB8);
    return same ? std::array<int, 3>{0, 1, 2} : std::array<int, 3>{2, 1, 0};
}

ResampleAxis bilinearAxis(int in_size, int out_size) {
    // Pillow's precompute_coeffs + normalize_coeffs_8bpc (libImaging/Resample.c), box = [0, in_size].
    ResampleAxis ax;
    ax.in_size = in_size;
    ax.out_size = out_size;
    const float in0 = 0.0f, in1 = static_cast<float>(in_size);
    const double scale = static_cast<double>(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale;  // bilinear support 1
    ax.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    const double inv_filterscale = 1.0 / filterscale;
    ax.bounds.assign(size_t(out_size) * 2, 0);
    ax.coeffs.assign(size_t(out_size) * size_t(ax.ksize), 0);
    std::vector<double> k(size_t(ax.ksize));
    for (int xx = 0; xx < out_size; ++xx) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        std::fill(k.begin(), k.end(), 0.0);
        for (int x = 0; x < xmax; ++x) {
            double w = bilinearFilter((x + xmin - center + 0.5) * inv_filterscale);
            k[size_t(x)] = w;
            ww += w;
        }
        if (ww != 0.0) {
            for (int x = 0; x < xmax; ++x) k[size_t(x)] /= ww;
        }
        for (int x = 0; x < ax.ksize; ++x) {
            double v = k[size_t(x)];
            int32_t q = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << ops::kPrecisionBits))
                              : static_cast<int32_t>(0.5 + v * (1 << ops::kPrecisionBits));
            ax.coeffs[size_t(xx) * size_t(ax.ksize) + size_t(x)] = q;
        }
        ax.bounds[size_t(xx) * 2] = xmin;
        ax.bounds[size_t(xx) * 2 + 1] = xmax;
    }
    return ax;
}

std::vector<uint8_t> resizeBilinear(const ImageView& image, int out_h, int out_w) {
    checkView(image, 0);
    if (out_h <= 0 || out_w <= 0) throw usageError("cannot resize to " + wxh(out_w, out_h) + "; the target size must be positive");
    const int h = image.height, w = image.width;
    const size_t stride = image.stride();
    const bool need_h = out_w != w, need_v = out_h != h;
    std::vector<uint8_t> out(size_t(out_h) * size_t(out_w) * 3);
    if (!need_h && !need_v) {
        for (int y = 0; y < h; ++y) std::copy_n(image.data + size_t(y) * stride, size_t(w) * 3, out.data() + size_t(y) * size_t(w) * 3);
        return out;
    }
    ResampleAxis vert = bilinearAxis(h, out_h);
    if (need_h && need_v && verticalFirst(h, w, out_h, out_w)) {
        // Pillow >= 13: vertical pass over every column first, then the horizontal pass
        ResampleAxis horiz = bilinearAxis(w, out_w);
        const size_t tstride = size_t(w) * 3;
        std::vector<uint8_t> temp(size_t(out_h) * tstride);
        for (int yy = 0; yy < out_h; ++yy) {
            for (int x = 0; x < w; ++x) {
                for (int c = 0; c < 3; ++c) {
                    temp[size_t(yy) * tstride + size_t(x) * 3 + size_t(c)] =
                        ops::resizeV(image.data, stride, 0, yy, x, c, vert.bounds.data(), vert.coeffs.data(), vert.ksize);
                }
            }
        }
        for (int yy = 0; yy < out_h; ++yy) {
            const uint8_t* row = temp.data() + size_t(yy) * tstride;
            for (int xx = 0; xx < out_w; ++xx) {
                for (int c = 0; c < 3; ++c) {
                    out[(size_t(yy) * size_t(out_w) + size_t(xx)) * 3 + size_t(c)] =
                        ops::resizeH(row, xx, c, horiz.bounds.data(), horiz.coeffs.data(), horiz.ksize);
                }
            }
        }
        return out;
    }
    const uint8_t* src = image.data;
    size_t src_stride = stride;
    int row0 = 0;
    std::vector<uint8_t> temp;
    if (need_h) {
        ResampleAxis horiz = bilinearAxis(w, out_w);
        int first = vert.bounds[0];
        int last = vert.bounds[size_t(out_h) * 2 - 2] + vert.bounds[size_t(out_h) * 2 - 1];
        size_t tstride = size_t(out_w) * 3;
        temp.assign(size_t(last - first) * tstride, 0);
        for (int y = first; y < last; ++y) {
            const uint8_t* row = image.data + size_t(y) * stride;
            uint8_t* dst = temp.data() + size_t(y - first) * tstride;
            for (int xx = 0; xx < out_w; ++xx) {
                for (int c = 0; c < 3; ++c) dst[size_t(xx) * 3 + size_t(c)] = ops::resizeH(row, xx, c, horiz.bounds.data(), horiz.coeffs.data(), horiz.ksize);
            }
        }
        if (!need_v) return temp;  // out_h == h: the temp holds every row
        src = temp.data();
        src_stride = tstride;
        row0 = first;
    }
    for (int yy = 0; yy < out_h; ++yy) {
        for (int x = 0; x < out_w; ++x) {
            for (int c = 0; c < 3; ++c) {
                out[(size_t(yy) * size_t(out_w) + size_t(x)) * 3 + size_t(c)] =
                    ops::resizeV(src, src_stride, row0, yy, x, c, vert.bounds.data(), vert.coeffs.data(), vert.ksize);
            }
        }
    }
    return out;
}

std::vector<float> toBatch(const std::vector<ImageView>& images, const Preprocess& pre, const ShapeProfile& profile, BatchPlan* plan_out) {
    std::vector<std::pair<int, int>> sizes;
    for (size_t i = 0; i < images.size(); ++i) {
        checkView(images[i], i);
        sizes.emplace_back(images[i].height, images[i].width);
    }
    BatchPlan plan = planBatch(sizes, pre, profile);
    const std::array<float, 768> table = normalizationTable(pre);
    const size_t H = size_t(plan.height), W = size_t(plan.width), plane = H * W;
    std::vector<float> batch(size_t(plan.batch) * 3 * plane, 0.0f);
    for (size_t i = 0; i < images.size(); ++i) {
        const ImageView& img = images[i];
        const std::array<int, 3> src_c = sourceChannels(pre.channel_order, img.format);
        float* slot = batch.data() + i * 3 * plane;
        if (pre.resize == ResizeMode::kResize) {
            std::vector<uint8_t> r = resizeBilinear(img, plan.height, plan.width);
            for (int c = 0; c < 3; ++c) {
                for (size_t p = 0; p < plane; ++p) slot[size_t(c) * plane + p] = table[size_t(c) * 256 + r[p * 3 + size_t(src_c[size_t(c)])]];
            }
        } else {
            for (int c = 0; c < 3; ++c) {
                for (int y = 0; y < plan.height; ++y) {
                    for (int x = 0; x < plan.width; ++x) {
                        slot[size_t(c) * plane + size_t(y) * W + size_t(x)] =
                            ops::padPixel(img.data, img.stride(), img.height, img.width, y, x, src_c[size_t(c)], table.data(), c);
                    }
                }
            }
        }
    }
    if (plan_out) *plan_out = std::move(plan);
    return batch;
}

}  // namespace segdeploy

// segdeploy runtime: GPU preprocessing and postprocessing around the engine (see gpu_pipeline.h).
#include "gpu_pipeline.h"

#include "kernels.h"
#include "segdeploy/error.h"
#include "segdeploy/postprocess.h"

namespace segdeploy {
namespace gpu {

void checkCuda(cudaError_t rc, const std::string& what) {
    if (rc == cudaSuccess) return;
    std::string fix = "check that a CUDA GPU is visible and the driver matches the CUDA runtime (nvidia-smi, or tegrastats on Jetson)";
    if (rc == cudaErrorMemoryAllocation) fix = "free GPU memory, or rebuild the engine with a smaller max shape";
    else if (rc == cudaErrorInvalidValue || rc == cudaErrorLaunchFailure || rc == cudaErrorIllegalAddress) fix = "report this as a segdeploy bug with the engine's summary";
    throw Error("CUDA " + what + " failed: " + cudaGetErrorName(rc) + " (" + cudaGetErrorString(rc) + "); " + fix);
}

DeviceBuffer::~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
}

void DeviceBuffer::reserve(size_t bytes, const char* what) {
    if (bytes <= bytes_) return;
    if (ptr_) {
        checkCuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize (before growing a buffer)");
        cudaFree(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }
    checkCuda(cudaMalloc(&ptr_, bytes), std::string("cudaMalloc of ") + std::to_string(bytes) + " bytes (" + what + ")");
    bytes_ = bytes;
}

Pipeline::Pipeline(const Preprocess& pre) : pre_(pre) {
    std::array<float, 768> table = normalizationTable(pre_);
    table_.reserve(sizeof table, "normalisation table");
    checkCuda(cudaMemcpy(table_.as<void>(), table.data(), sizeof table, cudaMemcpyHostToDevice), "cudaMemcpy (normalisation table)");
}

void Pipeline::reserve(int max_batch, int max_h, int max_w) {
    const size_t n = size_t(max_batch), hw = size_t(max_h) * size_t(max_w);
    images_.reserve(n * hw * 3, "images");
    labels_.reserve(n * hw * sizeof(uint16_t), "class maps");
    // pad mode needs only the restore tables; resize mode also the coefficients of same-sized sources
    size_t ints = n * size_t(max_h + max_w);
    if (pre_.resize == ResizeMode::kResize) {
        ints += n * (size_t(max_h + max_w) * 2 + size_t(max_h + max_w) * 3);
        temp_.reserve(n * hw * 3, "resize scratch");
    }
    tables_.reserve(ints * sizeof(int32_t), "index tables");
}

void Pipeline::preprocess(const std::vector<ImageView>& views, const BatchPlan& plan, float* input, cudaStream_t stream) {
    const int n = plan.batch, H = plan.height, W = plan.width;
    if (int(views.size()) != n) throw Error("internal: " + std::to_string(views.size()) + " images for a plan of " + std::to_string(n) + "; report this as a segdeploy bug");
    const bool resize = pre_.resize == ResizeMode::kResize;
    struct Work {
        size_t image_off = 0, temp_off = 0, table_off = 0;
        bool need_h = false, need_v = false, vertical_first = false;
        ResampleAxis horiz, vert;
        int row_first = 0, rows = 0;
    };
    std::vector<Work> work(static_cast<size_t>(n));
    size_t image_bytes = 0, temp_bytes = 0, table_ints = 0;
    for (int i = 0; i < n; ++i) {
        Work& w = work[size_t(i)];
        const ImageView& v = views[size_t(i)];
        w.image_off = image_bytes;
        image_bytes += size_t(v.width) * size_t(v.height) * 3;
        if (resize) {
            w.need_h = v.width != W;
            w.need_v = v.height != H;
            if (w.need_v || w.need_h) w.vert = bilinearAxis(v.height, H);
            if (w.need_h) {
                w.horiz = bilinearAxis(v.width, W);
                w.temp_off = temp_bytes;
                w.vertical_first = w.need_v && verticalFirst(v.height, v.width, H, W);
                if (w.vertical_first) {  // vertical pass (H x w) then horizontal pass (H x W), then normalise
                    temp_bytes += size_t(H) * size_t(v.width) * 3 + size_t(H) * size_t(W) * 3;
                } else {
                    w.row_first = w.vert.bounds[0];
                    w.rows = w.vert.bounds[size_t(H) * 2 - 2] + w.vert.bounds[size_t(H) * 2 - 1] - w.row_first;
                    temp_bytes += size_t(w.rows) * size_t(W) * 3;
                }
            }
        }
        w.table_off = table_ints;
        table_ints += w.horiz.bounds.size() + w.horiz.coeffs.size() + w.vert.bounds.size() + w.vert.coeffs.size();
    }
    // no slot is reused within a call: nothing queued can see its data overwritten
    images_.reserve(image_bytes, "images");
    if (temp_bytes) temp_.reserve(temp_bytes, "resize scratch");
    if (table_ints) tables_.reserve(table_ints * sizeof(int32_t), "resize coefficients");

    host_tables_.assign(static_cast<size_t>(n), {});
    const float* table = table_.as<const float>();
    const size_t plane = size_t(H) * size_t(W);
    for (int i = 0; i < n; ++i) {
        const Work& w = work[size_t(i)];
        const ImageView& v = views[size_t(i)];
        uint8_t* dimg = images_.as<uint8_t>() + w.image_off;
        const size_t row_bytes = size_t(v.width) * 3;
        checkCuda(cudaMemcpy2DAsync(dimg, row_bytes, v.data, v.stride(), row_bytes, size_t(v.height), cudaMemcpyHostToDevice, stream),
                  "cudaMemcpy2DAsync (image upload)");
        const std::array<int, 3> src = sourceChannels(pre_.channel_order, v.format);
        const cuda::Channels ch{{src[0], src[1], src[2]}};
        float* slot = input + size_t(i) * 3 * plane;
        if (!resize || (!w.need_h && !w.need_v)) {
            checkCuda(cuda::launchPadNormalize(dimg, row_bytes, v.height, v.width, ch, table, slot, H, W, stream), "preprocess kernel launch");
            continue;
        }
        std::vector<int32_t>& ht = host_tables_[size_t(i)];
        for (const auto* part : {&w.horiz.bounds, &w.horiz.coeffs, &w.vert.bounds, &w.vert.coeffs}) ht.insert(ht.end(), part->begin(), part->end());
        int32_t* dt = tables_.as<int32_t>() + w.table_off;
        checkCuda(cudaMemcpyAsync(dt, ht.data(), ht.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (resize coefficients)");
        const int32_t* hb = dt;
        const int32_t* hc = hb + w.horiz.bounds.size();
        const int32_t* vb = hc + w.horiz.coeffs.size();
        const int32_t* vc = vb + w.vert.bounds.size();
        if (w.vertical_first) {
            uint8_t* dvert = temp_.as<uint8_t>() + w.temp_off;
            uint8_t* dboth = dvert + size_t(H) * row_bytes;
            checkCuda(cuda::launchResizeVertical(dimg, row_bytes, vb, vc, w.vert.ksize, dvert, H, v.width, stream), "resize kernel launch");
            checkCuda(cuda::launchResizeHorizontal(dvert, row_bytes, 0, H, hb, hc, w.horiz.ksize, dboth, W, stream), "resize kernel launch");
            checkCuda(cuda::launchPadNormalize(dboth, size_t(W) * 3, H, W, ch, table, slot, H, W, stream), "preprocess kernel launch");
            continue;
        }
        const uint8_t* rows = dimg;
        size_t stride = row_bytes;
        int row0 = 0;
        if (w.need_h) {
            uint8_t* dtemp = temp_.as<uint8_t>() + w.temp_off;
            checkCuda(cuda::launchResizeHorizontal(dimg, row_bytes, w.row_first, w.rows, hb, hc, w.horiz.ksize, dtemp, W, stream), "resize kernel launch");
            if (!w.need_v) {  // the scratch holds all H rows at width W
                checkCuda(cuda::launchPadNormalize(dtemp, size_t(W) * 3, H, W, ch, table, slot, H, W, stream), "preprocess kernel launch");
                continue;
            }
            rows = dtemp;
            stride = size_t(W) * 3;
            row0 = w.row_first;
        }
        checkCuda(cuda::launchResizeVerticalNormalize(rows, stride, row0, vb, vc, w.vert.ksize, ch, table, slot, H, W, stream), "resize kernel launch");
    }
}

void Pipeline::postprocess(const void* logits, bool half, int num_classes, const BatchPlan& plan, std::vector<ClassMap>& maps,
                           cudaStream_t stream) {
    const int n = plan.batch;
    const size_t plane = size_t(plan.height) * size_t(plan.width);
    const size_t elem = half ? 2 : 4;
    std::vector<RestoreTables> restore;
    size_t table_ints = 0, label_count = 0;
    for (const InputInfo& info : plan.infos) {
        restore.push_back(restoreTables(info));
        table_ints += restore.back().rows.size() + restore.back().cols.size();
        label_count += size_t(info.orig_h) * size_t(info.orig_w);
    }
    // the restore tables go after the resize coefficients of this call (queued work may still read those)
    size_t base = 0;
    for (const auto& t : host_tables_) base += t.size();
    tables_.reserve((base + table_ints) * sizeof(int32_t), "index tables");
    labels_.reserve(label_count * sizeof(uint16_t), "class maps");
    std::vector<int32_t> ht;
    ht.reserve(table_ints);
    for (const RestoreTables& t : restore) {
        ht.insert(ht.end(), t.rows.begin(), t.rows.end());
        ht.insert(ht.end(), t.cols.begin(), t.cols.end());
    }
    int32_t* dt = tables_.as<int32_t>() + base;
    checkCuda(cudaMemcpyAsync(dt, ht.data(), ht.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (restore tables)");
    host_tables_.push_back(std::move(ht));

    maps.assign(static_cast<size_t>(n), ClassMap{});
    size_t toff = 0, loff = 0;
    for (int i = 0; i < n; ++i) {
        const InputInfo& info = plan.infos[size_t(i)];
        const int32_t* rows = dt + toff;
        const int32_t* cols = rows + info.orig_h;
        toff += size_t(info.orig_h) + size_t(info.orig_w);
        uint16_t* dl = labels_.as<uint16_t>() + loff;
        loff += size_t(info.orig_h) * size_t(info.orig_w);
        const void* src = static_cast<const char*>(logits) + size_t(i) * size_t(num_classes) * plane * elem;
        checkCuda(cuda::launchArgmaxRestore(src, half, num_classes, plan.height, plan.width, rows, cols, info.orig_h, info.orig_w, dl, stream),
                  "argmax kernel launch");
        ClassMap& m = maps[size_t(i)];
        m.width = info.orig_w;
        m.height = info.orig_h;
        m.labels.resize(size_t(info.orig_w) * size_t(info.orig_h));
        checkCuda(cudaMemcpyAsync(m.labels.data(), dl, m.labels.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost, stream),
                  "cudaMemcpyAsync (class map download)");
    }
}

}  // namespace gpu
}  // namespace segdeploy

// GPU test driver: runs segdeploy::gpu::Pipeline (the CUDA kernels the Segmenter uses, without TensorRT) and
// writes the same files as runtime_harness's host reference, so the tests compare them byte for byte.
//
//   preprocess MANIFEST OUT FMT IMG...          FMT rgb | bgr; same output as runtime_harness preprocess
//   classmap MANIFEST LOGITS OUT f32|f16 HxW...  LOGITS: int32 n,k,h,w + float32 (or float16) values
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gpu_pipeline.h"
#include "segdeploy/error.h"
#include "segdeploy/plan.h"

using namespace segdeploy;

namespace {

void writeAll(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    if (!out) throw Error("cannot write " + path + "; check the test");
}

void put(std::vector<uint8_t>& o, const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    o.insert(o.end(), b, b + n);
}

int run(const std::vector<std::string>& a) {
    if (a.size() < 4) throw usageError("gpu_harness: missing arguments; see gpu_harness.cpp");
    Manifest m = readManifest(a[1]);
    cudaStream_t stream;
    gpu::checkCuda(cudaStreamCreate(&stream), "cudaStreamCreate");
    gpu::Pipeline pipe(m.preprocess);
    if (a[0] == "preprocess") {
        std::vector<Image> imgs;
        for (size_t i = 4; i < a.size(); ++i) imgs.push_back(readImage(a[i]));
        std::vector<ImageView> views;
        for (Image& img : imgs) {
            ImageView v = img.view();
            if (a[3] == "bgr") {
                for (size_t p = 0; p + 2 < img.pixels.size(); p += 3) std::swap(img.pixels[p], img.pixels[p + 2]);
                v.format = PixelFormat::kBGR8;
            }
            views.push_back(v);
        }
        std::vector<std::pair<int, int>> sizes;
        for (const ImageView& v : views) sizes.emplace_back(v.height, v.width);
        BatchPlan plan = planBatch(sizes, m.preprocess, m.profile);
        size_t count = size_t(plan.batch) * 3 * size_t(plan.height) * size_t(plan.width);
        gpu::DeviceBuffer input;
        input.reserve(count * sizeof(float), "input");
        gpu::checkCuda(cudaMemsetAsync(input.as<void>(), 0xFF, count * sizeof(float), stream), "memset");  // NaN: unwritten values show
        pipe.preprocess(views, plan, input.as<float>(), stream);
        std::vector<float> host(count);
        gpu::checkCuda(cudaMemcpyAsync(host.data(), input.as<void>(), count * sizeof(float), cudaMemcpyDeviceToHost, stream), "download");
        gpu::checkCuda(cudaStreamSynchronize(stream), "preprocess");
        std::vector<uint8_t> o;
        int32_t dims[4] = {plan.batch, 3, plan.height, plan.width};
        put(o, dims, sizeof dims);
        put(o, host.data(), count * sizeof(float));
        for (const InputInfo& in : plan.infos) {
            int32_t v[7] = {in.orig_h, in.orig_w, in.input_h, in.input_w, in.content_h, in.content_w, int(in.mode == ResizeMode::kResize)};
            put(o, v, sizeof v);
        }
        writeAll(a[2], o);
        return 0;
    }
    if (a[0] == "classmap") {
        bool half = a[4] == "f16";
        std::vector<uint8_t> lg = readFileBytes(a[2], "logits", "check the test");
        int32_t dims[4];
        std::memcpy(dims, lg.data(), 16);
        std::vector<std::pair<int, int>> sizes;
        for (size_t i = 5; i < a.size(); ++i) {
            size_t x = a[i].find('x');
            sizes.emplace_back(std::stoi(a[i].substr(0, x)), std::stoi(a[i].substr(x + 1)));
        }
        BatchPlan plan = planBatch(sizes, m.preprocess, m.profile);
        gpu::DeviceBuffer logits;
        logits.reserve(lg.size() - 16, "logits");
        gpu::checkCuda(cudaMemcpy(logits.as<void>(), lg.data() + 16, lg.size() - 16, cudaMemcpyHostToDevice), "upload");
        std::vector<ClassMap> maps;
        pipe.postprocess(logits.as<void>(), half, dims[1], plan, maps, stream);
        gpu::checkCuda(cudaStreamSynchronize(stream), "postprocess");
        std::vector<uint8_t> o;
        for (const ClassMap& map : maps) {
            int32_t hw[2] = {map.height, map.width};
            put(o, hw, sizeof hw);
            put(o, map.labels.data(), map.labels.size() * 2);
        }
        writeAll(a[3], o);
        return 0;
    }
    throw usageError("gpu_harness: unknown subcommand " + a[0]);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return e.exitCode();
    }
}

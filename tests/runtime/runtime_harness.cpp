// Test driver for the pure C++ parts of the segdeploy runtime (segdeploy/runtime/cpp): each subcommand runs one
// host function on files written by the Python tests and writes its result to a file (little-endian binary) or
// stdout. Errors: "error: <message>" on stderr, exit status = segdeploy::Error::exitCode().
//
//   decode IMG OUT                     int32 h, w; h*w*3 RGB bytes
//   resize IMG OUT H W                 Pillow-exact bilinear resize: h*w*3 bytes
//   preprocess MANIFEST OUT FMT IMG... FMT rgb | bgr | rgb-strided; int32 n,c,h,w; floats; 7 int32 per image
//   classmap MANIFEST LOGITS OUT HxW...  LOGITS: int32 n,k,h,w + floats; OUT: per image int32 h,w + uint16 labels
//   manifest MANIFEST                  key=value lines
//   encode-png RAW OUT W H CHANNELS    encodePng (8-bit gray or RGB) to OUT
//   classmap-file RAW16 OUT W H        write a uint16 class map to OUT (.png / .pgm)
//   write-image RAW OUT W H CHANNELS   writeImage (.png / .ppm / .pgm)
//   plan FILE                          builder version from the plan header
//   host-code MANIFEST ENGINE 0|1      requireHostCodeTrust for ENGINE's entry, with trust_host_code 0/1
//   failure-hint LOG PLAN_VERSION RUNTIME_VERSION PLUGINS(0|1) TRUST(0|1)   deserializeFailureHint ("-" = unknown)
//   png-support                        1 when built with libpng, else 0
//   stats V...                         mean p50 p90 min max count
//   args ARG...                        segdeploy_infer's parsed arguments
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "infer_args.h"
#include "segdeploy/error.h"
#include "segdeploy/image.h"
#include "segdeploy/manifest.h"
#include "segdeploy/plan.h"
#include "segdeploy/postprocess.h"
#include "segdeploy/preprocess.h"
#include "segdeploy/stats.h"

using namespace segdeploy;

namespace {

std::vector<uint8_t> readAll(const std::string& path) { return readFileBytes(path, "file", "check the test"); }

void writeAll(const std::string& path, const void* data, size_t n) {
    std::ofstream out(path, std::ios::binary);
    out.write(static_cast<const char*>(data), std::streamsize(n));
    if (!out) throw Error("cannot write " + path + "; check the test");
}

struct Out {
    std::vector<uint8_t> bytes;
    void i32(int32_t v) { raw(&v, 4); }
    void raw(const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        bytes.insert(bytes.end(), b, b + n);
    }
};

int need(const std::vector<std::string>& a, size_t n) {
    if (a.size() < n) throw usageError("harness: missing arguments; see runtime_harness.cpp");
    return 0;
}

int run(const std::vector<std::string>& a) {
    need(a, 1);
    const std::string& cmd = a[0];
    if (cmd == "decode") {
        need(a, 3);
        Image img = readImage(a[1]);
        Out o;
        o.i32(img.height);
        o.i32(img.width);
        o.raw(img.pixels.data(), img.pixels.size());
        writeAll(a[2], o.bytes.data(), o.bytes.size());
        return 0;
    }
    if (cmd == "resize") {
        need(a, 5);
        Image img = readImage(a[1]);
        std::vector<uint8_t> r = resizeBilinear(img.view(), std::stoi(a[3]), std::stoi(a[4]));
        writeAll(a[2], r.data(), r.size());
        return 0;
    }
    if (cmd == "preprocess") {
        need(a, 5);
        Manifest m = readManifest(a[1]);
        const std::string fmt = a[3];
        std::vector<Image> imgs;
        std::vector<std::vector<uint8_t>> buffers;
        std::vector<ImageView> views;
        for (size_t i = 4; i < a.size(); ++i) imgs.push_back(readImage(a[i]));
        for (const Image& img : imgs) {
            ImageView v = img.view();
            if (fmt == "bgr") {
                std::vector<uint8_t> b(img.pixels);
                for (size_t p = 0; p + 2 < b.size(); p += 3) std::swap(b[p], b[p + 2]);
                buffers.push_back(std::move(b));
                v.data = buffers.back().data();
                v.format = PixelFormat::kBGR8;
            } else if (fmt == "rgb-strided") {
                size_t stride = size_t(img.width) * 3 + 7;
                std::vector<uint8_t> b(stride * size_t(img.height), 0xAB);
                for (int y = 0; y < img.height; ++y) {
                    std::memcpy(b.data() + size_t(y) * stride, img.pixels.data() + size_t(y) * size_t(img.width) * 3, size_t(img.width) * 3);
                }
                buffers.push_back(std::move(b));
                v.data = buffers.back().data();
                v.row_stride = stride;
            } else if (fmt != "rgb") {
                throw usageError("harness: FMT must be rgb, bgr or rgb-strided");
            }
            views.push_back(v);
        }
        BatchPlan plan;
        std::vector<float> batch = toBatch(views, m.preprocess, m.profile, &plan);
        Out o;
        o.i32(plan.batch);
        o.i32(3);
        o.i32(plan.height);
        o.i32(plan.width);
        o.raw(batch.data(), batch.size() * sizeof(float));
        for (const InputInfo& in : plan.infos) {
            for (int v : {in.orig_h, in.orig_w, in.input_h, in.input_w, in.content_h, in.content_w, int(in.mode == ResizeMode::kResize)}) o.i32(v);
        }
        writeAll(a[2], o.bytes.data(), o.bytes.size());
        return 0;
    }
    if (cmd == "classmap") {
        need(a, 5);
        Manifest m = readManifest(a[1]);
        std::vector<uint8_t> lg = readAll(a[2]);
        int32_t dims[4];
        std::memcpy(dims, lg.data(), 16);
        std::vector<std::pair<int, int>> sizes;
        for (size_t i = 4; i < a.size(); ++i) {
            size_t x = a[i].find('x');
            sizes.emplace_back(std::stoi(a[i].substr(0, x)), std::stoi(a[i].substr(x + 1)));
        }
        BatchPlan plan = planBatch(sizes, m.preprocess, m.profile);
        if (plan.batch != dims[0] || plan.height != dims[2] || plan.width != dims[3]) {
            throw Error("harness: logits are " + std::to_string(dims[0]) + "x" + std::to_string(dims[1]) + "x" + std::to_string(dims[2]) + "x" +
                        std::to_string(dims[3]) + " but the plan is " + std::to_string(plan.batch) + "x?x" + std::to_string(plan.height) + "x" +
                        std::to_string(plan.width) + "; check the test");
        }
        const float* logits = reinterpret_cast<const float*>(lg.data() + 16);
        size_t per = size_t(dims[1]) * size_t(dims[2]) * size_t(dims[3]);
        Out o;
        for (int n = 0; n < plan.batch; ++n) {
            ClassMap map = argmaxRestore(logits + size_t(n) * per, dims[1], plan.infos[size_t(n)]);
            o.i32(map.height);
            o.i32(map.width);
            o.raw(map.labels.data(), map.labels.size() * 2);
        }
        writeAll(a[3], o.bytes.data(), o.bytes.size());
        return 0;
    }
    if (cmd == "manifest") {
        need(a, 2);
        Manifest m = readManifest(a[1]);
        auto shape = [](const std::array<int64_t, 4>& s) {
            return std::to_string(s[0]) + "," + std::to_string(s[1]) + "," + std::to_string(s[2]) + "," + std::to_string(s[3]);
        };
        auto values = [](const std::vector<double>& v) {
            std::string s;
            char buf[64];
            for (double d : v) {
                std::snprintf(buf, sizeof buf, "%.17g", d);
                s += (s.empty() ? "" : ",") + std::string(buf);
            }
            return s;
        };
        char scale[64];
        std::snprintf(scale, sizeof scale, "%.17g", m.preprocess.scale);
        std::cout << "schema_version=" << m.schema_version << "\ninput_name=" << m.input_name << "\noutput_name=" << m.output_name
                  << "\noutput_dtype=" << m.output_dtype << "\nmin=" << shape(m.profile.min) << "\nopt=" << shape(m.profile.opt)
                  << "\nmax=" << shape(m.profile.max) << "\nspatial_multiple=" << m.profile.spatial_multiple
                  << "\nmean=" << values(m.preprocess.mean) << "\nstd=" << values(m.preprocess.std) << "\nscale=" << scale
                  << "\nchannel_order=" << toString(m.preprocess.channel_order) << "\nresize=" << toString(m.preprocess.resize)
                  << "\nnum_classes=" << m.num_classes << "\nclass_names=";
        for (size_t i = 0; i < m.class_names.size(); ++i) std::cout << (i ? "," : "") << m.class_names[i];
        std::cout << "\nhas_plugin_graph=" << m.has_plugin_graph << "\nplugin_graph_file=" << m.plugin_graph_file << "\nengines=";
        for (size_t i = 0; i < m.engines.size(); ++i) {
            const EngineEntry& e = m.engines[i];
            std::cout << (i ? ";" : "") << e.file << "|" << e.precision << "|" << e.plugins << "|" << e.tensorrt_version << "|"
                      << e.version_compatible;
        }
        std::cout << "\nhas_end_to_end=" << m.has_end_to_end << "\nframe_order=" << toString(m.frame_order) << "\n";
        return 0;
    }
    if (cmd == "encode-png") {
        need(a, 6);
        std::vector<uint8_t> b = readAll(a[1]);
        std::vector<uint8_t> png = encodePng(b.data(), std::stoi(a[3]), std::stoi(a[4]), std::stoi(a[5]));
        writeAll(a[2], png.data(), png.size());
        return 0;
    }
    if (cmd == "classmap-file") {
        need(a, 5);
        std::vector<uint8_t> b = readAll(a[1]);
        ClassMap map;
        map.width = std::stoi(a[3]);
        map.height = std::stoi(a[4]);
        map.labels.resize(b.size() / 2);
        std::memcpy(map.labels.data(), b.data(), map.labels.size() * 2);
        writeClassMap(a[2], map);
        return 0;
    }
    if (cmd == "write-image") {
        need(a, 6);
        Image img;
        img.pixels = readAll(a[1]);
        img.width = std::stoi(a[3]);
        img.height = std::stoi(a[4]);
        img.channels = std::stoi(a[5]);
        writeImage(a[2], img);
        return 0;
    }
    if (cmd == "plan") {
        need(a, 2);
        std::vector<uint8_t> b = readAll(a[1]);
        std::cout << inspectPlan(b.data(), b.size(), a[1]).versionString() << "\n";
        return 0;
    }
    if (cmd == "host-code") {
        need(a, 4);
        Manifest m = readManifest(a[1]);
        requireHostCodeTrust(m.engineFor(a[2]), a[3] == "1", a[2]);
        std::cout << "ok\n";
        return 0;
    }
    if (cmd == "failure-hint") {
        need(a, 6);
        PlanInfo plan;
        if (a[2] != "-") {
            plan.version_known = true;
            std::sscanf(a[2].c_str(), "%d.%d.%d.%d", &plan.major, &plan.minor, &plan.patch, &plan.build);
        }
        std::cout << deserializeFailureHint(a[1], plan, a[3], a[4] == "1", a[5] == "1") << "\n";
        return 0;
    }
    if (cmd == "png-support") {
        std::cout << pngSupported() << "\n";
        return 0;
    }
    if (cmd == "stats") {
        std::vector<double> v;
        for (size_t i = 1; i < a.size(); ++i) v.push_back(std::stod(a[i]));
        LatencySummary s = summarizeLatency(v);
        char buf[256];
        std::snprintf(buf, sizeof buf, "%.17g %.17g %.17g %.17g %.17g %zu", s.mean, s.p50, s.p90, s.min, s.max, s.count);
        std::cout << buf << "\n";
        return 0;
    }
    if (cmd == "args") {
        InferArgs p = parseInferArgs(std::vector<std::string>(a.begin() + 1, a.end()));
        if (p.help) {
            std::cout << inferUsage();
            return 0;
        }
        std::cout << p.engine << "|" << p.manifest << "|" << p.image << "|" << p.output << "|" << p.plugins << "|" << p.iterations
                  << "|" << p.warmup << "|" << p.device << "|" << p.compare << "|" << p.min_agreement << "|" << p.trust_host_code << "\n";
        return 0;
    }
    if (cmd == "agree") {  // agree MAP.png REF.png: the smoke test's comparison of two class-map files
        Image m = readImage(a.at(1));
        ClassMap map;
        map.width = m.width;
        map.height = m.height;
        for (size_t i = 0; i < size_t(m.width) * size_t(m.height); ++i) map.labels.push_back(m.pixels[size_t(m.channels) * i]);
        Agreement g = pixelAgreement(map, readImage(a.at(2)));
        std::cout << g.equal << " " << g.total << "\n";
        return 0;
    }
    throw usageError("harness: unknown subcommand " + cmd);
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

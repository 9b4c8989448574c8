// segdeploy_infer: run a segdeploy TensorRT engine on one image, write the class map, print the latency.
//
//   segdeploy_infer ENGINE MANIFEST IMAGE OUT [--plugins LIB] [--trust-host-code] [--iterations N] [--warmup N]
//                   [--device N] [--compare REF --min-agreement PERCENT]
//
// Output (stdout): the engine summary, the latency over N timed iterations of Segmenter::segment (end to end:
// image upload, GPU preprocessing, inference, GPU argmax + restore, class map download -- for an end-to-end engine
// (export --end-to-end) the frame's bytes upload, inference and class map download; wall clock on the host,
// after `--warmup` untimed runs), and the pixel count per class. Errors: one line "error: ..." on stderr.
// With --compare: the pixel agreement with a reference class map (the bundle's smoke test); exit 3 below
// --min-agreement. Exit status: 0 ok, 1 error, 2 usage error, 3 agreement below the threshold.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "infer_args.h"
#include "segdeploy/error.h"
#include "segdeploy/image.h"
#include "segdeploy/postprocess.h"
#include "segdeploy/segmenter.h"
#include "segdeploy/stats.h"

using segdeploy::ClassMap;

namespace {

void printSummary(const segdeploy::Segmenter& seg, const segdeploy::Image& img) {
    const segdeploy::EngineSummary& s = seg.summary();
    const segdeploy::Manifest& m = seg.manifest();
    std::printf("engine        %s (built by TensorRT %s; runtime TensorRT %s)\n", s.engine_path.c_str(), s.plan.versionString().c_str(),
                s.tensorrt_runtime_version.c_str());
    std::printf("device        %d: %s\n", s.device, s.device_name.c_str());
    if (s.end_to_end) {
        std::printf("tensors       %s uint8 NHWC %s frames -> %s %s class map, %d classes (end-to-end: preprocessing and "
                    "argmax in the engine)\n", s.input_name.c_str(), segdeploy::toString(m.frame_order), s.output_name.c_str(),
                    s.output_dtype.c_str(), seg.numClasses());
    } else {
        std::printf("tensors       %s float32 -> %s %s, %d classes\n", s.input_name.c_str(), s.output_name.c_str(),
                    s.output_dtype.c_str(), seg.numClasses());
    }
    std::printf("shape range   batch %lld..%lld, H %lld..%lld, W %lld..%lld (multiple of %lld)\n", (long long)s.min_batch,
                (long long)s.max_batch, (long long)s.min_h, (long long)s.max_h, (long long)s.min_w, (long long)s.max_w,
                (long long)m.profile.spatial_multiple);
    std::printf("preprocess    %s%s, channels %s, scale %.9g\n", segdeploy::toString(m.preprocess.resize),
                s.end_to_end ? " (in the engine: the frame's bytes go straight in)" : "",
                segdeploy::toString(m.preprocess.channel_order), m.preprocess.scale);
    std::printf("plugins       %s\n", s.plugins_loaded ? s.plugin_library.c_str() : "none");
    if (s.host_code_allowed) std::printf("host code     allowed (--trust-host-code)\n");
    std::printf("image         %dx%d (WxH)\n", img.width, img.height);
}

void printClasses(const segdeploy::Segmenter& seg, const ClassMap& map) {
    std::vector<size_t> counts(size_t(seg.numClasses()), 0);
    for (uint16_t v : map.labels) {
        if (v < counts.size()) counts[v]++;
    }
    const auto& names = seg.classNames();
    double total = double(map.labels.size());
    std::printf("classes      ");
    bool any = false;
    for (size_t k = 0; k < counts.size(); ++k) {
        if (!counts[k]) continue;
        std::string name = k < names.size() ? names[k] : "class " + std::to_string(k);
        std::printf(" %s %zu px (%.1f%%)", name.c_str(), counts[k], 100.0 * double(counts[k]) / total);
        any = true;
    }
    std::printf("%s\n", any ? "" : " (none)");
}

}  // namespace

int main(int argc, char** argv) {
    try {
        segdeploy::InferArgs args = segdeploy::parseInferArgs(std::vector<std::string>(argv + 1, argv + argc));
        if (args.help) {
            std::fputs(segdeploy::inferUsage().c_str(), stdout);
            return 0;
        }
        segdeploy::Image image = segdeploy::readImage(args.image);
        segdeploy::SegmenterOptions options;
        options.plugin_library = args.plugins;
        options.trust_host_code = args.trust_host_code;
        options.device = args.device;
        segdeploy::Segmenter seg(args.engine, args.manifest, options);
        printSummary(seg, image);

        const segdeploy::ImageView view = image.view(segdeploy::PixelFormat::kRGB8);
        for (int i = 0; i < args.warmup; ++i) seg.segment(view);
        ClassMap map;
        std::vector<double> ms;
        for (int i = 0; i < args.iterations; ++i) {
            auto t0 = std::chrono::steady_clock::now();
            map = seg.segment(view);
            auto t1 = std::chrono::steady_clock::now();
            ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
        segdeploy::writeClassMap(args.output, map);
        segdeploy::LatencySummary s = segdeploy::summarizeLatency(ms);
        std::printf("latency       %zu iteration%s (after %d warm-up): mean %.3f ms, p50 %.3f ms, p90 %.3f ms (min %.3f, max %.3f); "
                    "end to end: upload, preprocess, inference, argmax, download\n",
                    s.count, s.count == 1 ? "" : "s", args.warmup, s.mean, s.p50, s.p90, s.min, s.max);
        printClasses(seg, map);
        std::printf("wrote         %s (%dx%d class map)\n", args.output.c_str(), map.width, map.height);
        if (!args.compare.empty()) {
            const segdeploy::Agreement a = segdeploy::pixelAgreement(map, segdeploy::readImage(args.compare));
            std::printf("agreement     %.3f%% (%zu of %zu pixels equal %s)\n", a.percent(), a.equal, a.total, args.compare.c_str());
            if (args.min_agreement >= 0.0 && a.percent() < args.min_agreement) {
                std::fprintf(stderr, "error: pixel agreement %.3f%% with %s is below --min-agreement %.3f%%; the engine's masks "
                             "differ from the reference (check the precision, the TensorRT version, the plugin library)\n",
                             a.percent(), args.compare.c_str(), args.min_agreement);
                return 3;
            }
        }
        return 0;
    } catch (const segdeploy::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return e.exitCode();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s; report this as a segdeploy bug\n", e.what());
        return 1;
    }
}

// segdeploy_infer: command-line parsing (see infer_args.h).
#include "infer_args.h"

#include <charconv>

#include "segdeploy/error.h"

namespace segdeploy {

namespace {

const char* const kTry = "run segdeploy_infer --help";

int parseInt(const std::string& option, const std::string& text, int lo) {
    int v = 0;
    auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size() || v < lo) {
        throw usageError(option + " takes an integer >= " + std::to_string(lo) + ", got '" + text + "'; " + kTry);
    }
    return v;
}

double parsePercent(const std::string& option, const std::string& text) {
    double v = 0;
    auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size() || !(v >= 0.0 && v <= 100.0)) {
        throw usageError(option + " takes a percentage in [0, 100], got '" + text + "'; " + kTry);
    }
    return v;
}

}  // namespace

std::string inferUsage() {
    return "usage: segdeploy_infer ENGINE MANIFEST IMAGE OUT [--plugins LIB] [--trust-host-code] [--iterations N]\n"
           "                       [--warmup N] [--device N] [--compare REF --min-agreement PERCENT]\n"
           "\n"
           "Runs a segdeploy TensorRT engine on one image and writes the class map.\n"
           "  ENGINE            serialized TensorRT plan (segdeploy build / trtexec --saveEngine)\n"
           "  MANIFEST          manifest.json of the export (or the export directory)\n"
           "  IMAGE             8-bit image: PNG (any colour type; when built with libpng), PPM (P6) or PGM (P5)\n"
           "  OUT               class map: .png or .pgm, 8-bit gray (16-bit when a class id exceeds 255)\n"
           "  --plugins LIB     TensorRT plugin library to register (default: only when the engine needs\n"
           "                    segdeploy's plugins, found next to the engine or the manifest)\n"
           "  --trust-host-code allow a plan that carries host code (built version-compatible: trtexec\n"
           "                    --versionCompatible, segdeploy build --version-compatible); TensorRT then runs\n"
           "                    code from the engine file: only for engines you built or trust (TensorRT 8.6+)\n"
           "  --iterations N    timed runs (default 1); prints mean/p50/p90 end-to-end latency\n"
           "  --warmup N        untimed runs before them (default 1)\n"
           "  --device N        CUDA device (default: the current one, normally 0)\n"
           "  --compare REF     reference class map (8-bit gray PNG/PGM, same size): print the pixel agreement\n"
           "  --min-agreement P with --compare: exit 3 when the agreement is below P percent\n"
           "Exit status: 0 ok, 1 error, 2 usage error, 3 agreement below --min-agreement.\n";
}

InferArgs parseInferArgs(const std::vector<std::string>& args) {
    InferArgs a;
    std::vector<std::string> positional;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "-h" || arg == "--help") {
            a.help = true;
            return a;
        }
        if (arg == "--trust-host-code") {
            a.trust_host_code = true;
            continue;
        }
        if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
            std::string name = arg, value;
            bool has_value = false;
            size_t eq = arg.find('=');
            if (eq != std::string::npos) {
                name = arg.substr(0, eq);
                value = arg.substr(eq + 1);
                has_value = true;
            }
            if (name == "--trust-host-code") throw usageError("--trust-host-code takes no value; " + std::string(kTry));
            if (name != "--plugins" && name != "--iterations" && name != "--warmup" && name != "--device" &&
                name != "--compare" && name != "--min-agreement") {
                throw usageError("unknown option " + name + "; " + kTry);
            }
            if (!has_value) {
                if (i + 1 >= args.size()) throw usageError(name + " needs a value; " + kTry);
                value = args[++i];
            }
            if (name == "--plugins") {
                if (value.empty()) throw usageError("--plugins needs a library path; " + std::string(kTry));
                a.plugins = value;
            } else if (name == "--iterations") {
                a.iterations = parseInt(name, value, 1);
            } else if (name == "--warmup") {
                a.warmup = parseInt(name, value, 0);
            } else if (name == "--compare") {
                if (value.empty()) throw usageError("--compare needs a class-map path; " + std::string(kTry));
                a.compare = value;
            } else if (name == "--min-agreement") {
                a.min_agreement = parsePercent(name, value);
            } else {
                a.device = parseInt(name, value, 0);
            }
            continue;
        }
        if (arg.size() > 1 && arg[0] == '-') throw usageError("unknown option " + arg + "; " + kTry);
        positional.push_back(arg);
    }
    if (positional.size() != 4) {
        throw usageError("expected 4 arguments ENGINE MANIFEST IMAGE OUT, got " + std::to_string(positional.size()) + "; " + kTry);
    }
    if (a.min_agreement >= 0.0 && a.compare.empty()) {
        throw usageError("--min-agreement needs --compare REF; " + std::string(kTry));
    }
    a.engine = positional[0];
    a.manifest = positional[1];
    a.image = positional[2];
    a.output = positional[3];
    return a;
}

}  // namespace segdeploy

// segdeploy_infer: command-line parsing (pure C++, tested without TensorRT).
//
// usage: segdeploy_infer ENGINE MANIFEST IMAGE OUT [--plugins LIB] [--trust-host-code] [--iterations N] [--warmup N]
//                        [--device N] [--compare REF --min-agreement PERCENT]
// Options with a value accept "--name value" and "--name=value"; --trust-host-code takes none. Errors throw
// segdeploy::Error with code 2 (usage).
#pragma once

#include <string>
#include <vector>

namespace segdeploy {

struct InferArgs {
    std::string engine, manifest, image, output;
    std::string plugins;  //!< --plugins: plugin library to register ("" = only when needed)
    bool trust_host_code = false;  //!< --trust-host-code: allow plans that carry host code (version-compatible)
    int iterations = 1;   //!< --iterations: timed runs (>= 1)
    int warmup = 1;       //!< --warmup: untimed runs before them (>= 0)
    int device = -1;      //!< --device: CUDA device ordinal (-1 = current)
    std::string compare;  //!< --compare: reference class map (8-bit gray PNG/PGM) to measure pixel agreement against
    double min_agreement = -1.0;  //!< --min-agreement: percent; below it the run exits 3 (-1 = report only)
    bool help = false;    //!< -h / --help
};

//! Parse argv[1..argc). Throws segdeploy::Error (usage) with a one-line message naming the bad argument.
InferArgs parseInferArgs(const std::vector<std::string>& args);

//! The --help text.
std::string inferUsage();

}  // namespace segdeploy

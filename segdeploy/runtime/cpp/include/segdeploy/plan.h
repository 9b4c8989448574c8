// segdeploy runtime: engine files. A segdeploy engine is a PLAIN serialized TensorRT plan (what
// IBuilder::buildSerializedNetwork / trtexec --saveEngine write), with no header of ours.
//
// inspectPlan() checks the plan magic before TensorRT sees the bytes, so that a wrong file gets a clear one-line
// error instead of a deserialization failure deep in TensorRT, and reads the version of the TensorRT that built
// the plan from the header (bytes 0-3 "ftrt"; when the uint32 at offset 4 is 0, bytes 24..27 hold the builder's
// major, minor, patch, build -- the layout trtexec --getPlanVersionOnly reads, TensorRT 8.6 and later).
// A file with a JSON metadata prefix (Ultralytics' format: int32 length + JSON, then the plan) is recognised and
// refused with the number of bytes to strip.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace segdeploy {

struct PlanInfo {
    bool version_known = false;
    int major = 0, minor = 0, patch = 0, build = 0;

    //! "10.3.0.26", or "unknown".
    std::string versionString() const;
};

//! Throws segdeploy::Error naming `name` when `data` is not a plain TensorRT plan.
PlanInfo inspectPlan(const uint8_t* data, size_t size, const std::string& name);

//! Whole file -> bytes. Throws segdeploy::Error "cannot read <what> <path>; <fix>".
std::vector<uint8_t> readFileBytes(const std::string& path, const std::string& what, const std::string& fix);

}  // namespace segdeploy

// segdeploy runtime: engine files. A segdeploy engine is a PLAIN serialized TensorRT plan (what
// IBuilder::buildSerializedNetwork / trtexec --saveEngine write), with no header of ours.
//
// inspectPlan() checks the plan magic before TensorRT sees the bytes, so that a wrong file gets a clear one-line
// error instead of a deserialization failure deep in TensorRT, and reads the version of the TensorRT that built
// the plan from the header (bytes 0-3 "ftrt"; when the uint32 at offset 4 is 0, bytes 24..27 hold the builder's
// major, minor, patch, build -- the layout trtexec --getPlanVersionOnly reads, TensorRT 8.6 and later).
// A file with a JSON metadata prefix (Ultralytics' format: int32 length + JSON, then the plan) is recognised and
// refused with the number of bytes to strip.
//
// Host code: a plan built version-compatible (BuilderFlag VERSION_COMPATIBLE, trtexec --versionCompatible) carries
// executable code (a lean runtime, serialized plugins) that TensorRT deserializes only when the application allows
// it (IRuntime::setEngineHostCodeAllowed, TensorRT 8.6+). The plan header has no documented flag for it, so the
// runtime learns it from the manifest's engines entry (requireHostCodeTrust, before any GPU call) and, for
// engines the manifest does not list (a trtexec build), from TensorRT's log after a failed deserialization
// (deserializeFailureHint).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "segdeploy/manifest.h"

namespace segdeploy {

struct PlanInfo {
    bool version_known = false;
    int major = 0, minor = 0, patch = 0, build = 0;

    //! "10.3.0.26", or "unknown".
    std::string versionString() const;
};

//! Throws segdeploy::Error naming `name` when `data` is not a plain TensorRT plan.
PlanInfo inspectPlan(const uint8_t* data, size_t size, const std::string& name);

//! Throws segdeploy::Error when `entry` (the manifest's record of the engine, may be null) says it was built
//! version-compatible and `trust_host_code` is false: one line naming --trust-host-code instead of TensorRT's failure.
void requireHostCodeTrust(const EngineEntry* entry, bool trust_host_code, const std::string& engine_name);

//! What a failed deserializeCudaEngine should tell the user to do (the text after "; " in the error): from
//! TensorRT's logged errors `trt_log`, the plan header, the linked TensorRT `runtime_version` ("10.3.0"), whether
//! plugins were registered and whether host code was allowed.
std::string deserializeFailureHint(const std::string& trt_log, const PlanInfo& plan, const std::string& runtime_version,
                                   bool plugins_loaded, bool trust_host_code);

//! Whole file -> bytes. Throws segdeploy::Error "cannot read <what> <path>; <fix>".
std::vector<uint8_t> readFileBytes(const std::string& path, const std::string& what, const std::string& fix);

}  // namespace segdeploy

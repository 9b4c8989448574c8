// segdeploy runtime: engine file checks (see include/segdeploy/plan.h).
#include "segdeploy/plan.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>

#include "segdeploy/error.h"

namespace segdeploy {

std::string PlanInfo::versionString() const {
    if (!version_known) return "unknown";
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch) + "." + std::to_string(build);
}

PlanInfo inspectPlan(const uint8_t* data, size_t size, const std::string& name) {
    static const char kMagic[4] = {'f', 't', 'r', 't'};
    if (size >= 8 && std::memcmp(data, kMagic, 4) == 0) {
        PlanInfo info;
        uint32_t tag = uint32_t(data[4]) | (uint32_t(data[5]) << 8) | (uint32_t(data[6]) << 16) | (uint32_t(data[7]) << 24);
        if (tag == 0 && size >= 28) {
            info.version_known = true;
            info.major = data[24];
            info.minor = data[25];
            info.patch = data[26];
            info.build = data[27];
        }
        return info;
    }
    if (size >= 9) {
        uint32_t meta = uint32_t(data[0]) | (uint32_t(data[1]) << 8) | (uint32_t(data[2]) << 16) | (uint32_t(data[3]) << 24);
        if (data[4] == '{' && meta < size && size - 4 - meta >= 4 && std::memcmp(data + 4 + meta, kMagic, 4) == 0) {
            throw Error("engine " + name + " starts with a " + std::to_string(meta) + "-byte JSON metadata header (Ultralytics "
                        "format), not a plain TensorRT plan; strip its first " + std::to_string(4 + meta) +
                        " bytes, or build the engine with `segdeploy build` or trtexec --saveEngine");
        }
    }
    throw Error("engine " + name + " is not a serialized TensorRT plan (no 'ftrt' magic); pass an engine built by "
                "`segdeploy build` or trtexec --saveEngine, not the ONNX file or the manifest");
}

void requireHostCodeTrust(const EngineEntry* entry, bool trust_host_code, const std::string& engine_name) {
    if (!entry || !entry->version_compatible || trust_host_code) return;
    throw Error("engine " + engine_name + " was built version-compatible (manifest engines entry: flags.builder has "
                "VERSION_COMPATIBLE), so it carries host code that TensorRT runs only when allowed; pass "
                "--trust-host-code (SegmenterOptions::trust_host_code) if you built it or trust where it came from, or "
                "rebuild it without --version-compatible");
}

std::string deserializeFailureHint(const std::string& trt_log, const PlanInfo& plan, const std::string& runtime_version,
                                   bool plugins_loaded, bool trust_host_code) {
    std::string log = trt_log;
    std::transform(log.begin(), log.end(), log.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    auto mentions = [&log](const char* s) { return log.find(s) != std::string::npos; };
    const std::string trust = "pass --trust-host-code (SegmenterOptions::trust_host_code) if you trust where it came from";
    if (!trust_host_code && (mentions("host code") || mentions("hostcode") || mentions("version compatib") ||
                             mentions("versioncompatib") || mentions("lean runtime"))) {
        return "the plan looks version-compatible (it carries host code, which TensorRT runs only when allowed): " + trust +
               ", or rebuild it on this device without version compatibility";
    }
    std::string plan_v = plan.version_known ? std::to_string(plan.major) + "." + std::to_string(plan.minor) + "." +
                                                  std::to_string(plan.patch) : "";
    if (!plan_v.empty() && plan_v != runtime_version) {
        std::string s = "it was built by TensorRT " + plan.versionString() + " but this runtime uses TensorRT " + runtime_version +
                        ": rebuild the engine on this device with this TensorRT (`segdeploy build` or trtexec)";
        return trust_host_code ? s + " (a version-compatible plan loads only on the same or a newer TensorRT, at most one "
                                     "major release later)"
                               : s + ", or, if it was built version-compatible, " + trust;
    }
    if (!plugins_loaded && mentions("plugin")) {
        return "the engine uses plugins: pass the plugin library (segdeploy_infer --plugins, SegmenterOptions::plugin_library)";
    }
    return "engines only run on the GPU model and TensorRT version that built them: rebuild it on this device "
           "(`segdeploy build` or trtexec)";
}

std::vector<uint8_t> readFileBytes(const std::string& path, const std::string& what, const std::string& fix) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw Error("cannot read " + what + " " + path + " (missing or unreadable); " + fix);
    std::streamoff n = in.tellg();
    if (n < 0) throw Error("cannot read " + what + " " + path + " (not a regular file); " + fix);
    std::vector<uint8_t> bytes(static_cast<size_t>(n));
    in.seekg(0);
    if (n > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), n)) throw Error("cannot read " + what + " " + path + " (read failed); " + fix);
    return bytes;
}

}  // namespace segdeploy

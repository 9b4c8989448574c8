// segdeploy::Segmenter: TensorRT + CUDA (see include/segdeploy/segmenter.h for the contract).
//
// TensorRT API used (present in 8.6, 10.x and 11.x alike, so no version switch is needed for them):
// createInferRuntime, IRuntime::getPluginRegistry / deserializeCudaEngine(blob, size), IPluginRegistry::loadLibrary,
// ICudaEngine::getNbIOTensors / getIOTensorName / getTensorIOMode / getTensorDataType / getTensorShape /
// getTensorLocation / getNbOptimizationProfiles / getProfileShape, IExecutionContext::setInputShape /
// getTensorShape / setTensorAddress / enqueueV3, `delete` on every TensorRT object, getInferLibVersion.
// NV_TENSORRT_MAJOR selects code only where versions truly differ: the encoding of getInferLibVersion() (8.x:
// major*1000+minor*100+patch, 10+: major*10000+minor*100+patch), the plugin-creator interfaces (IPluginV3
// creators and IPluginRegistry::getCreator exist from 10.0; segdeploy's plugins need them), and
// IRuntime::setEngineHostCodeAllowed (from 8.6; called only with SegmenterOptions::trust_host_code, as trtexec does
// for version-compatible plans).
#include "segdeploy/segmenter.h"

#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "gpu_pipeline.h"
#include "segdeploy/error.h"
#include "segdeploy/preprocess.h"

namespace segdeploy {

namespace {

constexpr const char* kPluginFileName = "libsegdeploy_trt_plugins.so";

// ------------------------------------------------------------------------------------------- small helpers
using gpu::checkCuda;

std::string dirName(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string baseName(const std::string& path) {
    size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string lowerCase(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

bool fileExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string dimsText(const nvinfer1::Dims& d) {
    if (d.nbDims < 0) return "(unknown)";
    std::string s;
    for (int i = 0; i < d.nbDims; ++i) s += (i ? "x" : "") + std::to_string(static_cast<long long>(d.d[i]));
    return s.empty() ? "(scalar)" : s;
}

std::string shapeText(int64_t n, int64_t c, int64_t h, int64_t w) {
    return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

const char* dtypeName(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT: return "float32";
        case nvinfer1::DataType::kHALF: return "float16";
        case nvinfer1::DataType::kINT8: return "int8";
        case nvinfer1::DataType::kINT32: return "int32";
        case nvinfer1::DataType::kBOOL: return "bool";
        case nvinfer1::DataType::kUINT8: return "uint8";
        default: return "another type";
    }
}

std::string runtimeVersion() {
    int32_t v = getInferLibVersion();
#if NV_TENSORRT_MAJOR >= 10
    int major = v / 10000, minor = (v / 100) % 100, patch = v % 100;
#else
    int major = v / 1000, minor = (v / 100) % 10, patch = v % 100;
#endif
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

// Restores the calling thread's current device on scope exit (only when it had to change it).
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        if (device < 0) return;
        checkCuda(cudaGetDevice(&previous_), "cudaGetDevice");
        if (previous_ != device) {
            checkCuda(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
            changed_ = true;
        }
    }
    ~DeviceGuard() {
        if (changed_) cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = -1;
    bool changed_ = false;
};

// ------------------------------------------------------------------------------------------- logger
class Logger : public nvinfer1::ILogger {
public:
    Logger(LogSeverity level, std::function<void(LogSeverity, const std::string&)> sink) : level_(level), sink_(std::move(sink)) {}

    void log(Severity severity, const char* msg) noexcept override {
        try {
            auto s = static_cast<LogSeverity>(static_cast<int>(severity));
            std::string text = msg ? msg : "";
            if (s <= LogSeverity::kError) {
                std::lock_guard<std::mutex> lock(mutex_);
                errors_.push_back(text);
                if (errors_.size() > 4) errors_.erase(errors_.begin());
            }
            emit(s, text);
        } catch (...) {
        }
    }

    void emit(LogSeverity s, const std::string& text) const {
        if (s > level_) return;
        if (sink_) {
            sink_(s, text);
            return;
        }
        static const char* names[] = {"internal error", "error", "warning", "info", "verbose"};
        std::fprintf(stderr, "[segdeploy] %s: %s\n", names[static_cast<int>(s)], text.c_str());
    }

    //! The TensorRT errors logged since the last call, joined on one line (" | "), or "".
    std::string takeErrors() {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string s;
        for (const auto& e : errors_) s += (s.empty() ? "" : " | ") + e;
        errors_.clear();
        if (s.size() > 400) s = s.substr(0, 397) + "...";
        return s;
    }

private:
    LogSeverity level_;
    std::function<void(LogSeverity, const std::string&)> sink_;
    std::mutex mutex_;
    std::vector<std::string> errors_;
};

std::string withLog(Logger& logger) {
    std::string e = logger.takeErrors();
    return e.empty() ? "" : " (TensorRT: " + e + ")";
}

// ------------------------------------------------------------------------------------------- plugins
#if NV_TENSORRT_MAJOR >= 10
// True when every IPluginV3 creator the library exports is already in the registry (loadLibrary returns
// nullptr when any of them is: e.g. the application registered the library itself).
bool creatorsRegistered(void* handle, nvinfer1::IPluginRegistry& registry) {
    using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&);
    auto get = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
    if (!get) return false;
    int32_t n = 0;
    nvinfer1::IPluginCreatorInterface* const* creators = get(n);
    if (!creators || n <= 0) return false;
    for (int32_t i = 0; i < n; ++i) {
        nvinfer1::IPluginCreatorInterface* c = creators[i];
        if (!c || std::string(c->getInterfaceInfo().kind) != "PLUGIN CREATOR_V3ONE") return false;
        auto* v3 = static_cast<nvinfer1::IPluginCreatorV3One*>(c);
        if (!registry.getCreator(v3->getPluginName(), v3->getPluginVersion(), v3->getPluginNamespace())) return false;
    }
    return true;
}
#endif

// Registers `path` with TensorRT once per process (keyed by its real path); the library is never unloaded.
void registerPluginLibrary(const std::string& path, nvinfer1::IPluginRegistry& registry, Logger& logger) {
    static std::mutex mutex;
    static std::map<std::string, void*> loaded;
    std::lock_guard<std::mutex> lock(mutex);
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved)) {
        throw Error("plugin library " + path + " not found; build it for this device (`segdeploy plugins build`) and pass its "
                    "path (segdeploy_infer --plugins, SegmenterOptions::plugin_library)");
    }
    std::string key = resolved;
    if (loaded.count(key)) return;
    dlerror();
    void* handle = dlopen(key.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* err = dlerror();
        throw Error("cannot load plugin library " + key + ": " + (err ? err : "dlopen failed") +
                    "; rebuild it on this device against this TensorRT and CUDA (`segdeploy plugins build`)");
    }
    bool v3 = dlsym(handle, "getCreators") != nullptr;
    bool v2 = dlsym(handle, "getPluginCreators") != nullptr;
    if (!v3 && !v2) {
        throw Error(key + " is not a TensorRT plugin library (it exports neither getCreators nor getPluginCreators); pass "
                    "libsegdeploy_trt_plugins.so built by `segdeploy plugins build`");
    }
#if NV_TENSORRT_MAJOR < 10
    if (!v2) {
        throw Error(key + " holds IPluginV3 plugins, which need TensorRT >= 10 but this runtime uses TensorRT " + runtimeVersion() +
                    "; run on JetPack 6.1+ (TensorRT 10.3) or later, or export a model that needs no plugins");
    }
#endif
    nvinfer1::IPluginRegistry::PluginLibraryHandle h = registry.loadLibrary(key.c_str());
    if (!h) {
#if NV_TENSORRT_MAJOR >= 10
        if (!creatorsRegistered(handle, registry))
#endif
        {
            throw Error("TensorRT could not register the plugins of " + key + withLog(logger) +
                        "; rebuild the library against this TensorRT version (`segdeploy plugins build`)");
        }
        logger.emit(LogSeverity::kInfo, "plugins of " + key + " were already registered");
    }
    loaded[key] = handle;  // kept open: engines deserialized with these plugins need them until process exit
}

// NVIDIA's standard plugins (libnvinfer_plugin: e.g. InstanceNormalization_TRT, which TensorRT 8.6 uses for
// InstanceNorm by default), registered once per process via dlopen + initLibNvInferPlugins. Called only when a
// deserialization failed on a missing plugin, so nothing is registered for engines that do not need it.
bool registerNvidiaPlugins(Logger& logger) {
    static std::mutex mutex;
    static int state = 0;  // 0 not tried, 1 registered, -1 unavailable
    std::lock_guard<std::mutex> lock(mutex);
    if (state != 0) return state > 0;
    state = -1;
    const std::string versioned = "libnvinfer_plugin.so." + std::to_string(NV_TENSORRT_MAJOR);
    void* handle = dlopen(versioned.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) handle = dlopen("libnvinfer_plugin.so", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        logger.emit(LogSeverity::kInfo, versioned + " not found; NVIDIA's standard plugins are unavailable");
        return false;
    }
    using Init = bool (*)(void*, const char*);
    auto init = reinterpret_cast<Init>(dlsym(handle, "initLibNvInferPlugins"));
    if (!init || !init(&logger, "")) return false;
    logger.emit(LogSeverity::kInfo, "registered NVIDIA's standard plugins (" + versioned + ")");
    state = 1;
    return true;
}

// Lets `runtime` deserialize plans that carry host code (version-compatible plans: an embedded lean runtime,
// serialized plugin libraries). Only on the application's explicit request (SegmenterOptions::trust_host_code).
void allowHostCode(nvinfer1::IRuntime& runtime) {
#if NV_TENSORRT_MAJOR > 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6)
    runtime.setEngineHostCodeAllowed(true);
#else
    (void)runtime;
    throw Error("--trust-host-code (SegmenterOptions::trust_host_code) needs TensorRT 8.6 or newer, but this runtime was "
                "built against TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) +
                "; rebuild it against TensorRT 8.6+ or use an engine built without version compatibility");
#endif
}

std::string findPluginLibrary(const EngineEntry* entry, const std::string& engine_path, const std::string& manifest_path) {
    std::string name = (entry && !entry->plugins.empty()) ? baseName(entry->plugins) : kPluginFileName;
    std::string manifest_dir = manifest_path;
    if (!(::access((manifest_path + "/manifest.json").c_str(), F_OK) == 0)) manifest_dir = dirName(manifest_path);
    for (const std::string& dir : {dirName(engine_path), manifest_dir}) {
        std::string candidate = dir + "/" + name;
        if (fileExists(candidate)) return candidate;
    }
    return "";
}

// ------------------------------------------------------------------------------------------- end-to-end engines
// The I/O of an end-to-end engine (segdeploy export --end-to-end): uint8 frames [N, H, W, 3] in, the class map
// [N, H, W] (uint8 or int32) out, and any other output (the float32 scores of --with-scores) bound but not read.
struct EndToEndIO {
    std::string frames, classes;
    bool int32_map = false;
    std::vector<std::string> others;
};

// True (and `io` filled) when `engine` is an end-to-end engine; throws when it has a uint8 NHWC input but no class map.
bool detectEndToEnd(nvinfer1::ICudaEngine& engine, const std::string& engine_path, EndToEndIO& io) {
    int n_io = engine.getNbIOTensors();
    for (int i = 0; i < n_io; ++i) {
        const char* name = engine.getIOTensorName(i);
        nvinfer1::Dims d = engine.getTensorShape(name);
        nvinfer1::DataType t = engine.getTensorDataType(name);
        if (engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) {
            if (t != nvinfer1::DataType::kUINT8 || d.nbDims != 4 || d.d[3] != 3 || !io.frames.empty()) return false;
            io.frames = name;
        } else if (d.nbDims == 3 && (t == nvinfer1::DataType::kUINT8 || t == nvinfer1::DataType::kINT32) && io.classes.empty()) {
            io.classes = name;
            io.int32_map = t == nvinfer1::DataType::kINT32;
        } else {
            io.others.push_back(name);
        }
    }
    if (io.frames.empty()) return false;
    if (io.classes.empty()) {
        throw Error("engine " + engine_path + " takes uint8 frames but has no uint8/int32 [N, H, W] class map output; build it "
                    "from the model[.prec].e2e.onnx segdeploy wrote (export --end-to-end)");
    }
    for (const std::string& n : io.others) {
        if (engine.getTensorDataType(n.c_str()) != nvinfer1::DataType::kFLOAT) {
            throw Error("engine " + engine_path + " has an extra output '" + n + "' of type " + dtypeName(engine.getTensorDataType(n.c_str())) +
                        "; an end-to-end engine's extra output is its float32 scores: rebuild it from the e2e ONNX");
        }
    }
    return true;
}

// `view`'s rows into `dst` (tightly packed H x W x 3), channels reversed: the host fallback for a frame whose
// PixelFormat is not the engine's frame order.
void swapChannels(const ImageView& view, uint8_t* dst) {
    const size_t row = size_t(view.width) * 3;
    for (int y = 0; y < view.height; ++y) {
        const uint8_t* src = view.data + size_t(y) * view.stride();
        uint8_t* out = dst + size_t(y) * row;
        for (int x = 0; x < view.width; ++x) {
            out[3 * x] = src[3 * x + 2];
            out[3 * x + 1] = src[3 * x + 1];
            out[3 * x + 2] = src[3 * x];
        }
    }
}

}  // namespace

// ------------------------------------------------------------------------------------------- Impl
struct Segmenter::Impl {
    SegmenterOptions options;
    Manifest manifest;
    EngineSummary summary;
    Logger logger;
    int device = 0;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream = nullptr;
    bool output_half = false;
    int num_classes = 0;
    gpu::DeviceBuffer input, output;
    std::unique_ptr<gpu::Pipeline> pipeline;
    bool end_to_end = false;
    EndToEndIO e2e;
    std::vector<gpu::DeviceBuffer> e2e_others;  // the extra outputs' buffers (bound, not read)
    std::vector<uint8_t> swapped, class_bytes;  // host staging (channel swap fallback, the downloaded class map)

    Impl(const SegmenterOptions& o) : options(o), logger(o.log_level, o.log) {}

    ~Impl() {
        if (stream) cudaStreamSynchronize(stream);  // work queued before an exception must not outlive the buffers
        context.reset();
        engine.reset();
        runtime.reset();
        if (stream) cudaStreamDestroy(stream);
    }

    void load(const std::string& engine_path, const std::string& manifest_path);
    void loadEndToEnd(const std::string& engine_path);
    std::vector<ClassMap> run(const std::vector<ImageView>& images);
    std::vector<ClassMap> runEndToEnd(const std::vector<ImageView>& images);
};

void Segmenter::Impl::load(const std::string& engine_path, const std::string& manifest_path) {
    manifest = readManifest(manifest_path);
    num_classes = manifest.num_classes;
    summary.engine_path = engine_path;
    summary.tensorrt_runtime_version = runtimeVersion();
    summary.input_name = manifest.input_name;
    summary.output_name = manifest.output_name;
    std::vector<uint8_t> plan = readFileBytes(engine_path, "engine", "pass the engine file built by `segdeploy build` or trtexec --saveEngine");
    summary.plan = inspectPlan(plan.data(), plan.size(), engine_path);  // file problems before any GPU call
    const EngineEntry* entry = manifest.engineFor(baseName(engine_path));
    requireHostCodeTrust(entry, options.trust_host_code, engine_path);

    checkCuda(cudaGetDevice(&device), "cudaGetDevice");
    summary.device = device;
    cudaDeviceProp prop{};
    checkCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    summary.device_name = prop.name;

    // plugins: when given, or when the engine needs segdeploy's plugins
    bool required = entry && !entry->plugins.empty();
    bool likely = !entry && manifest.has_plugin_graph;
    std::string plugin_path = options.plugin_library;
    if (plugin_path.empty() && (required || likely)) plugin_path = findPluginLibrary(entry, engine_path, manifest_path);
    if (plugin_path.empty() && required) {
        throw Error("engine " + engine_path + " needs the TensorRT plugin library " + entry->plugins + " (manifest engines entry), "
                    "which is not next to the engine or the manifest; build it (`segdeploy plugins build`) and pass its path "
                    "(segdeploy_infer --plugins, SegmenterOptions::plugin_library)");
    }
    if (plugin_path.empty() && likely) {
        logger.emit(LogSeverity::kWarning, "the manifest lists a plugin graph (" + manifest.plugin_graph_file + ") but no " +
                    kPluginFileName + " was given or found; loading the engine without segdeploy's plugins");
    }

    runtime.reset(nvinfer1::createInferRuntime(logger));
    if (!runtime) throw Error("TensorRT createInferRuntime failed" + withLog(logger) + "; check the TensorRT installation and the GPU (nvidia-smi / tegrastats)");
    if (options.trust_host_code) allowHostCode(*runtime);
    summary.host_code_allowed = options.trust_host_code;
    if (!plugin_path.empty()) {
        registerPluginLibrary(plugin_path, runtime->getPluginRegistry(), logger);
        summary.plugins_loaded = true;
        summary.plugin_library = plugin_path;
    }

    engine.reset(runtime->deserializeCudaEngine(plan.data(), plan.size()));
    std::string log = engine ? "" : logger.takeErrors();
    if (!engine && lowerCase(log).find("plugin") != std::string::npos && registerNvidiaPlugins(logger)) {
        engine.reset(runtime->deserializeCudaEngine(plan.data(), plan.size()));  // the engine may use NVIDIA's plugins
        if (!engine) log = logger.takeErrors();
    }
    if (!engine) {
        throw Error("TensorRT could not deserialize engine " + engine_path + (log.empty() ? "" : " (TensorRT: " + log + ")") + "; " +
                    deserializeFailureHint(log, summary.plan, summary.tensorrt_runtime_version, summary.plugins_loaded,
                                           options.trust_host_code));
    }

    if (detectEndToEnd(*engine, engine_path, e2e)) {
        loadEndToEnd(engine_path);
        return;
    }
    // I/O tensors: exactly the manifest's input and output
    const char* in = manifest.input_name.c_str();
    const char* out = manifest.output_name.c_str();
    std::string names;
    bool has_in = false, has_out = false;
    int n_io = engine->getNbIOTensors();
    for (int i = 0; i < n_io; ++i) {
        std::string n = engine->getIOTensorName(i);
        names += (names.empty() ? "" : ", ") + n;
        has_in |= (n == manifest.input_name && engine->getTensorIOMode(in) == nvinfer1::TensorIOMode::kINPUT);
        has_out |= (n == manifest.output_name && engine->getTensorIOMode(out) == nvinfer1::TensorIOMode::kOUTPUT);
    }
    if (!has_in || !has_out || n_io != 2) {
        throw Error("engine " + engine_path + " has I/O tensors [" + names + "] but the manifest expects input '" + manifest.input_name +
                    "' and output '" + manifest.output_name + "' only; pass the manifest of the export the engine was built from");
    }
    if (engine->getTensorDataType(in) != nvinfer1::DataType::kFLOAT) {
        throw Error("engine input '" + manifest.input_name + "' is " + dtypeName(engine->getTensorDataType(in)) +
                    "; this runtime feeds float32: rebuild the engine without --inputIOFormats");
    }
    nvinfer1::DataType odt = engine->getTensorDataType(out);
    if (odt != nvinfer1::DataType::kFLOAT && odt != nvinfer1::DataType::kHALF) {
        throw Error("engine output '" + manifest.output_name + "' is " + dtypeName(odt) +
                    "; this runtime reads float32 or float16 logits: rebuild the engine without --outputIOFormats");
    }
    output_half = odt == nvinfer1::DataType::kHALF;
    summary.output_dtype = output_half ? "float16" : "float32";
    if (engine->getTensorLocation(in) != nvinfer1::TensorLocation::kDEVICE || engine->getTensorLocation(out) != nvinfer1::TensorLocation::kDEVICE) {
        throw Error("engine " + engine_path + " keeps its input or output on the host; rebuild it from the exported ONNX");
    }
    nvinfer1::Dims ishape = engine->getTensorShape(in);
    nvinfer1::Dims oshape = engine->getTensorShape(out);
    if (ishape.nbDims != 4 || (ishape.d[1] != 3 && ishape.d[1] != -1) || oshape.nbDims != 4 ||
        (oshape.d[1] != -1 && oshape.d[1] != manifest.num_classes)) {
        throw Error("engine " + engine_path + " has input " + dimsText(ishape) + " and output " + dimsText(oshape) + "; expected Nx3xHxW and Nx" +
                    std::to_string(manifest.num_classes) + "xHxW from the manifest: pass the manifest of the export the engine was built from");
    }

    // usable shape range: manifest profile intersected with the engine's profile 0 (or its static shape)
    int64_t emin[4], emax[4];
    nvinfer1::Dims pmin{}, pmax{};
    if (engine->getNbOptimizationProfiles() > 0) {
        pmin = engine->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMIN);
        pmax = engine->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMAX);
    }
    for (int a = 0; a < 4; ++a) {
        bool dyn = pmin.nbDims == 4 && pmax.nbDims == 4;
        emin[a] = dyn ? int64_t(pmin.d[a]) : int64_t(ishape.d[a]);
        emax[a] = dyn ? int64_t(pmax.d[a]) : int64_t(ishape.d[a]);
    }
    const ShapeProfile& mp = manifest.profile;
    summary.min_batch = std::max(mp.min[0], emin[0]);
    summary.max_batch = std::min(mp.max[0], emax[0]);
    summary.min_h = std::max(mp.min[2], emin[2]);
    summary.max_h = std::min(mp.max[2], emax[2]);
    summary.min_w = std::max(mp.min[3], emin[3]);
    summary.max_w = std::min(mp.max[3], emax[3]);
    if (summary.min_batch > summary.max_batch || summary.min_h > summary.max_h || summary.min_w > summary.max_w || emin[0] < 1) {
        throw Error("engine profile " + shapeText(emin[0], emin[1], emin[2], emin[3]) + " .. " + shapeText(emax[0], emax[1], emax[2], emax[3]) +
                    " does not overlap the manifest's " + shapeText(mp.min[0], mp.min[1], mp.min[2], mp.min[3]) + " .. " +
                    shapeText(mp.max[0], mp.max[1], mp.max[2], mp.max[3]) + "; rebuild the engine with the manifest's profile");
    }

    context.reset(engine->createExecutionContext());
    if (!context) throw Error("TensorRT could not create an execution context" + withLog(logger) + "; free GPU memory or rebuild with a smaller max shape");
    checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");

    // buffers for the largest usable shape
    const size_t maxN = size_t(summary.max_batch), maxHW = size_t(summary.max_h) * size_t(summary.max_w);
    input.reserve(maxN * 3 * maxHW * sizeof(float), "input tensor");
    output.reserve(maxN * size_t(num_classes) * maxHW * (output_half ? 2 : 4), "logits");
    pipeline = std::make_unique<gpu::Pipeline>(manifest.preprocess);
    pipeline->reserve(int(summary.max_batch), int(summary.max_h), int(summary.max_w));
    if (!context->setTensorAddress(in, input.as<void>()) || !context->setTensorAddress(out, output.as<void>())) {
        throw Error("TensorRT setTensorAddress failed" + withLog(logger) + "; report this as a segdeploy bug with the engine's summary");
    }
}

void Segmenter::Impl::loadEndToEnd(const std::string& engine_path) {
    end_to_end = true;
    const char* in = e2e.frames.c_str();
    const char* out = e2e.classes.c_str();
    summary.end_to_end = true;
    summary.input_name = e2e.frames;
    summary.output_name = e2e.classes;
    summary.output_dtype = e2e.int32_map ? "int32" : "uint8";
    for (const std::string& n : {e2e.frames, e2e.classes}) {
        if (engine->getTensorLocation(n.c_str()) != nvinfer1::TensorLocation::kDEVICE) {
            throw Error("engine " + engine_path + " keeps '" + n + "' on the host; rebuild it from the e2e ONNX");
        }
    }
    nvinfer1::Dims pmin = engine->getTensorShape(in), pmax = pmin;
    if (engine->getNbOptimizationProfiles() > 0) {
        pmin = engine->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMIN);
        pmax = engine->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMAX);
    }
    summary.min_batch = pmin.d[0], summary.max_batch = pmax.d[0];
    summary.min_h = pmin.d[1], summary.max_h = pmax.d[1], summary.min_w = pmin.d[2], summary.max_w = pmax.d[2];
    if (summary.min_batch < 1 || summary.max_h < 1 || summary.max_w < 1) {
        throw Error("engine " + engine_path + " has no usable input range (" + dimsText(pmin) + " .. " + dimsText(pmax) +
                    "); rebuild it with --minShapes/--maxShapes for '" + e2e.frames + "'");
    }
    context.reset(engine->createExecutionContext());
    if (!context) throw Error("TensorRT could not create an execution context" + withLog(logger) + "; free GPU memory or rebuild with a smaller max shape");
    checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    const size_t maxNHW = size_t(summary.max_batch) * size_t(summary.max_h) * size_t(summary.max_w);
    input.reserve(maxNHW * 3, "frames");
    output.reserve(maxNHW * (e2e.int32_map ? 4 : 1), "class map");
    bool ok = context->setTensorAddress(in, input.as<void>()) && context->setTensorAddress(out, output.as<void>());
    e2e_others = std::vector<gpu::DeviceBuffer>(e2e.others.size());
    for (size_t i = 0; i < e2e.others.size(); ++i) {  // the scores: [N, K, H, W] float32
        e2e_others[i].reserve(maxNHW * size_t(std::max(1, num_classes)) * sizeof(float), "scores");
        ok = ok && context->setTensorAddress(e2e.others[i].c_str(), e2e_others[i].as<void>());
    }
    if (!ok) throw Error("TensorRT setTensorAddress failed" + withLog(logger) + "; report this as a segdeploy bug with the engine's summary");
}

std::vector<ClassMap> Segmenter::Impl::runEndToEnd(const std::vector<ImageView>& views) {
    if (views.empty()) throw usageError("no images given; pass at least one frame");
    const int n = int(views.size()), H = views.front().height, W = views.front().width;
    for (size_t i = 0; i < views.size(); ++i) {
        const ImageView& v = views[i];
        if (!v.data || v.width <= 0 || v.height <= 0 || (v.row_stride && v.row_stride < size_t(v.width) * 3)) {
            throw usageError("image " + std::to_string(i) + " is empty or has a row_stride below width * 3; pass a decoded 8-bit 3-channel image");
        }
        if (v.height != H || v.width != W) {
            throw usageError("an end-to-end engine runs frames of one size per batch, but image " + std::to_string(i) + " is " +
                             std::to_string(v.width) + "x" + std::to_string(v.height) + " and image 0 " + std::to_string(W) + "x" +
                             std::to_string(H) + "; segment them in separate calls");
        }
    }
    if (n < summary.min_batch || n > summary.max_batch || H < summary.min_h || H > summary.max_h || W < summary.min_w || W > summary.max_w) {
        throw usageError("frames " + std::to_string(n) + "x" + std::to_string(H) + "x" + std::to_string(W) + "x3 are outside the engine's range " +
                         std::to_string(summary.min_batch) + "x" + std::to_string(summary.min_h) + "x" + std::to_string(summary.min_w) + "x3 .. " +
                         std::to_string(summary.max_batch) + "x" + std::to_string(summary.max_h) + "x" + std::to_string(summary.max_w) +
                         "x3; pass fewer/smaller frames, or rebuild the engine with a larger profile");
    }
    const size_t frame = size_t(H) * size_t(W) * 3;
    const PixelFormat wanted = manifest.frame_order == ChannelOrder::kBGR ? PixelFormat::kBGR8 : PixelFormat::kRGB8;
    swapped.resize(frame * size_t(n));
    for (int i = 0; i < n; ++i) {  // the bytes go in as they are (the engine normalises and pads)
        uint8_t* dst = input.as<uint8_t>() + frame * size_t(i);
        const ImageView& v = views[size_t(i)];
        if (v.format == wanted) {
            checkCuda(cudaMemcpy2DAsync(dst, size_t(W) * 3, v.data, v.stride(), size_t(W) * 3, size_t(H), cudaMemcpyHostToDevice, stream),
                      "frame upload (cudaMemcpy2DAsync)");
        } else {
            swapChannels(v, swapped.data() + frame * size_t(i));
            checkCuda(cudaMemcpyAsync(dst, swapped.data() + frame * size_t(i), frame, cudaMemcpyHostToDevice, stream), "frame upload");
        }
    }
    if (!context->setInputShape(e2e.frames.c_str(), nvinfer1::Dims4(n, H, W, 3))) {
        throw Error("TensorRT rejected frames " + std::to_string(n) + "x" + std::to_string(H) + "x" + std::to_string(W) + "x3" + withLog(logger) +
                    "; rebuild the engine with the manifest's end_to_end profile");
    }
    nvinfer1::Dims os = context->getTensorShape(e2e.classes.c_str());
    if (os.nbDims != 3 || os.d[0] != n || os.d[1] != H || os.d[2] != W) {
        throw Error("the engine's class map for frames " + std::to_string(n) + "x" + std::to_string(H) + "x" + std::to_string(W) + "x3 is " +
                    dimsText(os) + "; build the engine from the e2e ONNX segdeploy wrote");
    }
    if (!context->enqueueV3(stream)) throw Error("TensorRT enqueueV3 failed" + withLog(logger) + "; check the TensorRT log above and the GPU state");
    const size_t bytes_per = e2e.int32_map ? 4 : 1, pixels = size_t(H) * size_t(W);
    class_bytes.resize(pixels * size_t(n) * bytes_per);
    checkCuda(cudaMemcpyAsync(class_bytes.data(), output.as<void>(), class_bytes.size(), cudaMemcpyDeviceToHost, stream), "class map download");
    checkCuda(cudaStreamSynchronize(stream), "stream execution (frame upload, inference, class map download)");
    std::vector<ClassMap> maps(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        ClassMap& m = maps[size_t(i)];
        m.width = W, m.height = H;
        m.labels.resize(pixels);
        const uint8_t* src = class_bytes.data() + pixels * size_t(i) * bytes_per;
        for (size_t p = 0; p < pixels; ++p) {
            int32_t v = 0;
            if (bytes_per == 4) std::memcpy(&v, src + 4 * p, 4);
            else v = src[p];
            m.labels[p] = uint16_t(v);
        }
    }
    return maps;
}

std::vector<ClassMap> Segmenter::Impl::run(const std::vector<ImageView>& views) {
    if (end_to_end) return runEndToEnd(views);
    std::vector<std::pair<int, int>> sizes;
    for (size_t i = 0; i < views.size(); ++i) {
        const ImageView& v = views[i];
        if (!v.data || v.width <= 0 || v.height <= 0 || (v.row_stride && v.row_stride < size_t(v.width) * 3)) {
            throw usageError("image " + std::to_string(i) + " is empty or has a row_stride below width * 3; pass a decoded 8-bit 3-channel image");
        }
        sizes.emplace_back(v.height, v.width);
    }
    BatchPlan plan = planBatch(sizes, manifest.preprocess, manifest.profile);
    const int n = plan.batch, H = plan.height, W = plan.width;
    if (n < summary.min_batch || n > summary.max_batch || H < summary.min_h || H > summary.max_h || W < summary.min_w || W > summary.max_w) {
        throw usageError("input " + shapeText(n, 3, H, W) + " is outside the engine's usable range " +
                         shapeText(summary.min_batch, 3, summary.min_h, summary.min_w) + " .. " +
                         shapeText(summary.max_batch, 3, summary.max_h, summary.max_w) +
                         "; pass fewer/smaller images, or rebuild the engine with the manifest's profile");
    }
    pipeline->preprocess(views, plan, input.as<float>(), stream);

    // inference
    const char* in = manifest.input_name.c_str();
    const char* out = manifest.output_name.c_str();
    if (!context->setInputShape(in, nvinfer1::Dims4(n, 3, H, W))) {
        throw Error("TensorRT rejected input shape " + shapeText(n, 3, H, W) + withLog(logger) + "; rebuild the engine with the manifest's profile");
    }
    nvinfer1::Dims os = context->getTensorShape(out);
    if (os.nbDims != 4 || os.d[0] != n || os.d[1] != num_classes || os.d[2] != H || os.d[3] != W) {
        throw Error("the engine's output for input " + shapeText(n, 3, H, W) + " is " + dimsText(os) + ", expected " + shapeText(n, num_classes, H, W) +
                    "; the model must return logits at the input resolution (re-export it)");
    }
    if (!context->enqueueV3(stream)) throw Error("TensorRT enqueueV3 failed" + withLog(logger) + "; check the TensorRT log above and the GPU state");

    // argmax + restore, download
    std::vector<ClassMap> maps;
    pipeline->postprocess(output.as<const void>(), output_half, num_classes, plan, maps, stream);
    checkCuda(cudaStreamSynchronize(stream), "stream execution (preprocess, inference, argmax)");
    return maps;
}

// ------------------------------------------------------------------------------------------- Segmenter
Segmenter::Segmenter(const std::string& engine_path, const std::string& manifest_path, const SegmenterOptions& options)
    : impl_(std::make_unique<Impl>(options)) {
    DeviceGuard guard(options.device);
    try {
        impl_->load(engine_path, manifest_path);
    } catch (...) {
        impl_.reset();  // free the partial state while the guard still holds the segmenter's device
        throw;
    }
}

Segmenter::~Segmenter() {
    if (!impl_) return;
    int device = impl_->device;
    int previous = -1;
    bool restore = cudaGetDevice(&previous) == cudaSuccess && previous != device && cudaSetDevice(device) == cudaSuccess;
    impl_.reset();
    if (restore) cudaSetDevice(previous);
}

Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;

ClassMap Segmenter::segment(const ImageView& image) { return std::move(segment(std::vector<ImageView>{image}).front()); }

std::vector<ClassMap> Segmenter::segment(const std::vector<ImageView>& images) {
    DeviceGuard guard(impl_->device);
    return impl_->run(images);
}

const Manifest& Segmenter::manifest() const { return impl_->manifest; }
const EngineSummary& Segmenter::summary() const { return impl_->summary; }
int Segmenter::numClasses() const { return impl_->num_classes; }
const std::vector<std::string>& Segmenter::classNames() const { return impl_->manifest.class_names; }
void* Segmenter::stream() const { return impl_->stream; }

}  // namespace segdeploy

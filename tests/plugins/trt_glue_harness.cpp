// Host-only harness for libsegdeploy_trt_plugins.so: exercises the TensorRT glue WITHOUT TensorRT's libraries
// or a GPU (the plugin library implements TensorRT's interfaces and links no libnvinfer). Built and driven by
// tests/plugins/test_trt_compile.py against the TensorRT headers the user points SEGDEPLOY_TRT_INCLUDE at.
//
// It dlopens the library like trtexec --dynamicPlugins does, calls setLoggerFinder/getCreators, creates
// plugins from PluginFieldCollections, and evaluates getOutputShapes with a concrete-value expression builder
// (a test double of TensorRT's IExprBuilder). Nothing here launches a kernel (enqueue needs a GPU + TensorRT).
//
// Usage: trt_glue_harness LIB COMMAND ARGS...   (prints one result line; exit 0 = ran, 1 = usage/load error)
//   creators                                    -> "<name> <version> <namespace> <field,field,...>" per creator
//   pool kh kw sh sw ph pw dh dw ceil N C H W   -> "OH OW | types <out0> <out1> | roundtrip ok" or "null: <log>"
//   unpool kh kw sh sw ph pw N C H W [OH OW]    -> "OH OW" (with a 4-value shape input when OH OW are given)
//   roi oh ow sampling scale aligned N C H W K  -> "K C OH OW | roundtrip ok"
//   badroi                                      -> createPlugin without sampling_ratio: "null: <logged error>"
#include <NvInfer.h>
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

std::string gLog;

class CaptureLogger : public ILogger {
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kWARNING) gLog += msg ? msg : "";
    }
};

class Finder : public ILoggerFinder {
public:
    ILogger* findLogger() override { return &mLogger; }
    CaptureLogger mLogger;
};

// ---- concrete-value expression builder (test double) ---------------------------------------------------
class ConstImpl : public apiv::VDimensionExpr {
public:
    explicit ConstImpl(int64_t v) : mV(v) {}
    bool isConstant() const override { return true; }
    int64_t getConstantValue() const override { return mV; }
    bool isSizeTensor() const override { return false; }
    int64_t mV;
};

class ConstExpr : public IDimensionExpr {
public:
    explicit ConstExpr(int64_t v) : mImplObj(v) { mImpl = &mImplObj; }
    ConstImpl mImplObj;
};

int64_t floorDiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

class BuilderImpl : public apiv::VExprBuilder {
public:
    IDimensionExpr const* constant(int64_t value) override {
        mPool.emplace_back(new ConstExpr(value));
        return mPool.back().get();
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override {
        int64_t x = a.getConstantValue(), y = b.getConstantValue(), r = 0;
        switch (op) {
        case DimensionOperation::kSUM: r = x + y; break;
        case DimensionOperation::kPROD: r = x * y; break;
        case DimensionOperation::kMAX: r = x > y ? x : y; break;
        case DimensionOperation::kMIN: r = x < y ? x : y; break;
        case DimensionOperation::kSUB: r = x - y; break;
        case DimensionOperation::kEQUAL: r = x == y; break;
        case DimensionOperation::kLESS: r = x < y; break;
        case DimensionOperation::kFLOOR_DIV: r = floorDiv(x, y); break;
        case DimensionOperation::kCEIL_DIV: r = -floorDiv(-x, y); break;
        }
        return constant(r);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        return nullptr;
    }
    std::vector<std::unique_ptr<ConstExpr>> mPool;
};

class Builder : public IExprBuilder {
public:
    Builder() { mImpl = &mImplObj; }
    BuilderImpl mImplObj;
};

DimsExprs dimsOf(Builder& b, std::vector<int64_t> const& v) {
    DimsExprs d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i) d.d[i] = b.constant(v[i]);
    return d;
}

std::string fmtDims(DimsExprs const& d) {
    std::string s;
    for (int32_t i = 0; i < d.nbDims; ++i) s += (i ? " " : "") + std::to_string(d.d[i]->getConstantValue());
    return s;
}

struct Lib {
    IPluginCreatorInterface* const* creators{nullptr};
    int32_t n{0};
    IPluginCreatorV3One* find(char const* name) const {
        for (int32_t i = 0; i < n; ++i) {
            auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
            if (!std::strcmp(c->getPluginName(), name)) return c;
        }
        return nullptr;
    }
};

int32_t ints(std::vector<int32_t>& store, std::initializer_list<int32_t> v) {
    store.assign(v);
    return static_cast<int32_t>(store.size());
}

// Re-create a plugin from its getFieldsToSerialize() (what engine deserialisation does) and compare.
bool roundtrip(IPluginCreatorV3One* creator, IPluginV3* plugin) {
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = rt->getFieldsToSerialize();
    if (fc == nullptr) return false;
    std::unique_ptr<IPluginV3> again(creator->createPlugin("again", fc, TensorRTPhase::kRUNTIME));
    if (!again) return false;
    auto* rt2 = static_cast<IPluginV3OneRuntime*>(again->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc2 = rt2->getFieldsToSerialize();
    if (fc2 == nullptr || fc2->nbFields != fc->nbFields) return false;
    // fc's storage belongs to `plugin` and was not touched by creating `again`.
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        auto const& a = fc->fields[i];
        auto const& b = fc2->fields[i];
        if (std::strcmp(a.name, b.name) || a.type != b.type || a.length != b.length) return false;
        size_t const bytes = (a.type == PluginFieldType::kFLOAT32 || a.type == PluginFieldType::kINT32) ? 4 : 1;
        if (std::memcmp(a.data, b.data, bytes * a.length)) return false;
    }
    std::unique_ptr<IPluginV3> cloned(plugin->clone());
    std::unique_ptr<IPluginV3> attached(rt->attachToContext(nullptr));
    return cloned != nullptr && attached != nullptr;
}

char const* typeName(DataType t) {
    switch (t) {
    case DataType::kFLOAT: return "float";
    case DataType::kHALF: return "half";
    case DataType::kINT32: return "int32";
    case DataType::kINT64: return "int64";
    default: return "other";
    }
}

int usage() {
    std::fprintf(stderr, "usage: trt_glue_harness LIB creators|pool|unpool|roi|badroi ARGS...\n");
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
    if (!getCreators || !setLoggerFinder) {
        std::fprintf(stderr, "entry points missing: getCreators=%p setLoggerFinder=%p\n", (void*) getCreators,
                     (void*) setLoggerFinder);
        return 1;
    }
    static Finder finder;
    setLoggerFinder(&finder);
    Lib lib;
    lib.creators = getCreators(lib.n);
    std::string const cmd = argv[2];
    std::vector<int64_t> a;
    for (int i = 3; i < argc; ++i) a.push_back(std::atoll(argv[i]));
    Builder b;

    if (cmd == "creators") {
        for (int32_t i = 0; i < lib.n; ++i) {
            auto* c = static_cast<IPluginCreatorV3One*>(lib.creators[i]);
            std::string fields;
            auto const* fc = c->getFieldNames();
            for (int32_t k = 0; k < fc->nbFields; ++k) fields += (k ? "," : "") + std::string(fc->fields[k].name);
            std::printf("%s %s %s %s %s\n", c->getInterfaceInfo().kind, c->getPluginName(), c->getPluginVersion(),
                        c->getPluginNamespace(), fields.c_str());
        }
        return 0;
    }
    if (cmd == "pool" && a.size() == 13) {
        std::vector<int32_t> k, s, p, d, ceil;
        std::vector<PluginField> f{
            PluginField("kernel_size", k.data(), PluginFieldType::kINT32, ints(k, {int32_t(a[0]), int32_t(a[1])})),
            PluginField("stride", nullptr, PluginFieldType::kINT32, ints(s, {int32_t(a[2]), int32_t(a[3])})),
            PluginField("padding", nullptr, PluginFieldType::kINT32, ints(p, {int32_t(a[4]), int32_t(a[5])})),
            PluginField("dilation", nullptr, PluginFieldType::kINT32, ints(d, {int32_t(a[6]), int32_t(a[7])})),
            PluginField("ceil_mode", nullptr, PluginFieldType::kINT32, ints(ceil, {int32_t(a[8])})),
            PluginField("plugin_unknown_field_is_ignored", nullptr, PluginFieldType::kUNKNOWN, 0)};
        f[0].data = k.data(), f[1].data = s.data(), f[2].data = p.data(), f[3].data = d.data(), f[4].data = ceil.data();
        PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
        auto* creator = lib.find("SegdeployMaxPoolWithIndices");
        std::unique_ptr<IPluginV3> plugin(creator->createPlugin("pool", &fc, TensorRTPhase::kBUILD));
        if (!plugin) {
            std::printf("null: %s\n", gLog.c_str());
            return 0;
        }
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        DimsExprs in = dimsOf(b, {a[9], a[10], a[11], a[12]});
        DimsExprs out[2];
        if (build->getOutputShapes(&in, 1, nullptr, 0, out, 2, b) != 0) {
            std::printf("shape-error: %s\n", gLog.c_str());
            return 0;
        }
        DataType inT[1] = {DataType::kHALF}, outT[2];
        build->getOutputDataTypes(outT, 2, inT, 1);
        DynamicPluginTensorDesc io[3]{};
        io[0].desc.type = DataType::kHALF, io[1].desc.type = DataType::kHALF, io[2].desc.type = DataType::kINT32;
        for (auto& x : io) x.desc.format = TensorFormat::kLINEAR;
        bool fmt = build->supportsFormatCombination(0, io, 1, 2) && build->supportsFormatCombination(1, io, 1, 2)
            && build->supportsFormatCombination(2, io, 1, 2);
        io[2].desc.type = DataType::kFLOAT;
        bool rejectsFloatIdx = !build->supportsFormatCombination(2, io, 1, 2);
        std::printf("%s | types %s %s | formats %s | roundtrip %s | nbOutputs %d\n", fmtDims(out[0]).c_str(),
                    typeName(outT[0]), typeName(outT[1]), (fmt && rejectsFloatIdx) ? "ok" : "bad",
                    roundtrip(creator, plugin.get()) ? "ok" : "bad", build->getNbOutputs());
        return 0;
    }
    if (cmd == "unpool" && (a.size() == 10 || a.size() == 12)) {
        std::vector<int32_t> k, s, p;
        std::vector<PluginField> f{
            PluginField("kernel_size", nullptr, PluginFieldType::kINT32, ints(k, {int32_t(a[0]), int32_t(a[1])})),
            PluginField("stride", nullptr, PluginFieldType::kINT32, ints(s, {int32_t(a[2]), int32_t(a[3])})),
            PluginField("padding", nullptr, PluginFieldType::kINT32, ints(p, {int32_t(a[4]), int32_t(a[5])}))};
        f[0].data = k.data(), f[1].data = s.data(), f[2].data = p.data();
        PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
        auto* creator = lib.find("SegdeployMaxUnpool");
        std::unique_ptr<IPluginV3> plugin(creator->createPlugin("unpool", &fc, TensorRTPhase::kBUILD));
        if (!plugin) {
            std::printf("null: %s\n", gLog.c_str());
            return 0;
        }
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        DimsExprs in[2] = {dimsOf(b, {a[6], a[7], a[8], a[9]}), dimsOf(b, {a[6], a[7], a[8], a[9]})};
        DimsExprs out[1];
        int32_t rc;
        if (a.size() == 12) {
            DimsExprs shape = dimsOf(b, {a[6], a[7], a[10], a[11]});
            rc = build->getOutputShapes(in, 2, &shape, 1, out, 1, b);
        } else {
            rc = build->getOutputShapes(in, 2, nullptr, 0, out, 1, b);
        }
        if (rc != 0) {
            std::printf("shape-error: %s\n", gLog.c_str());
            return 0;
        }
        std::printf("%s | roundtrip %s | workspace %zu\n", fmtDims(out[0]).c_str(),
                    roundtrip(creator, plugin.get()) ? "ok" : "bad",
                    build->getWorkspaceSize(nullptr, 2, nullptr, 1));
        return 0;
    }
    if ((cmd == "roi" && a.size() == 10) || cmd == "badroi") {
        if (cmd == "badroi") a = {7, 7, 0, 1, 1, 1, 1, 1, 1, 1};
        int32_t oh = int32_t(a[0]), ow = int32_t(a[1]), sr = int32_t(a[2]), al = int32_t(a[4]);
        float scale = 1.0f / float(a[3]);  // argument: the inverse scale (an integer)
        std::vector<PluginField> f{PluginField("output_height", &oh, PluginFieldType::kINT32, 1),
                                   PluginField("output_width", &ow, PluginFieldType::kINT32, 1),
                                   PluginField("spatial_scale", &scale, PluginFieldType::kFLOAT32, 1),
                                   PluginField("aligned", &al, PluginFieldType::kINT32, 1)};
        if (cmd == "roi") f.emplace_back("sampling_ratio", &sr, PluginFieldType::kINT32, 1);
        PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
        auto* creator = lib.find("SegdeployRoiAlign");
        std::unique_ptr<IPluginV3> plugin(creator->createPlugin("roi", &fc, TensorRTPhase::kBUILD));
        if (!plugin) {
            std::printf("null: %s\n", gLog.c_str());
            return 0;
        }
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        DimsExprs in[3] = {dimsOf(b, {a[5], a[6], a[7], a[8]}), dimsOf(b, {a[9], 4}), dimsOf(b, {a[9]})};
        DimsExprs out[1];
        if (build->getOutputShapes(in, 3, nullptr, 0, out, 1, b) != 0) {
            std::printf("shape-error: %s\n", gLog.c_str());
            return 0;
        }
        std::printf("%s | roundtrip %s\n", fmtDims(out[0]).c_str(), roundtrip(creator, plugin.get()) ? "ok" : "bad");
        return 0;
    }
    return usage();
}

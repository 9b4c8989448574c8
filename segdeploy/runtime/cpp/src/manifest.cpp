// segdeploy runtime: manifest.json -> Manifest (see include/segdeploy/manifest.h for the contract).
#include "segdeploy/manifest.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "segdeploy/error.h"

namespace segdeploy {

namespace {

using Json = nlohmann::json;

const char* const kFix = "re-run `segdeploy export` to regenerate it";
constexpr int kSchemaVersion = 2;

// A value as shown in messages: scalars in full (cut at 40 bytes), containers by size only (never recursing).
std::string shown(const Json& v) {
    if (v.is_object()) return "an object of " + std::to_string(v.size()) + " keys";
    if (v.is_array()) return "an array of " + std::to_string(v.size()) + " values";
    std::string s = v.dump(-1, ' ', true, Json::error_handler_t::replace);
    return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// "bool" rather than nlohmann's "boolean", to match the Python side's wording.
std::string typeName(const Json& v) { return v.is_boolean() ? "bool" : v.type_name(); }

class Reader {
public:
    explicit Reader(const std::string& where) : where_(where) {}

    [[noreturn]] void fail(const std::string& what) const { throw Error(where_ + ": " + what + "; " + kFix); }

    const Json& get(const Json& obj, const std::string& key, const std::string& path) const {
        auto it = obj.find(key);
        if (it == obj.end()) fail("lacks " + join(path, key));
        return *it;
    }

    const Json& object(const Json& obj, const std::string& key, const std::string& path) const {
        const Json& v = get(obj, key, path);
        if (!v.is_object()) wrongType(v, join(path, key), "an object");
        return v;
    }

    const Json& array(const Json& obj, const std::string& key, const std::string& path) const {
        const Json& v = get(obj, key, path);
        if (!v.is_array()) wrongType(v, join(path, key), "an array");
        return v;
    }

    std::string string(const Json& v, const std::string& path) const {
        if (!v.is_string()) wrongType(v, path, "a string");
        return v.get_ref<const std::string&>();
    }

    std::string string(const Json& obj, const std::string& key, const std::string& path) const {
        return string(get(obj, key, path), join(path, key));
    }

    int64_t integer(const Json& v, const std::string& path) const {
        bool fits = v.is_number_integer() &&
                    (!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()));
        if (!fits) wrongType(v, path, "an integer");
        return v.get<int64_t>();
    }

    int64_t integer(const Json& obj, const std::string& key, const std::string& path) const {
        return integer(get(obj, key, path), join(path, key));
    }

    double number(const Json& v, const std::string& path) const {
        if (!v.is_number()) wrongType(v, path, "a number");
        return v.get<double>();
    }

    [[noreturn]] void wrongType(const Json& v, const std::string& path, const char* want) const {
        fail(path + " must be " + want + ", not " + typeName(v) + " (" + shown(v) + ")");
    }

    static std::string join(const std::string& path, const std::string& key) {
        return path.empty() ? key : path + "." + key;
    }

private:
    const std::string& where_;
};

// Python's NaN / Infinity / -Infinity literals (outside strings) -> null (see manifest.h).
std::string nonFiniteAsNull(const std::string& text) {
    static const char* const kLiterals[] = {"-Infinity", "Infinity", "NaN"};
    std::string out;
    out.reserve(text.size());
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\' && i + 1 < text.size()) {
                out += c;
                c = text[++i];
            } else if (c == '"') {
                in_string = false;
            }
            out += c;
            continue;
        }
        if (c == '"') in_string = true;
        bool replaced = false;
        for (const char* lit : kLiterals) {
            size_t n = std::char_traits<char>::length(lit);
            if (text.compare(i, n, lit) == 0) {
                out += "null";
                i += n - 1;
                replaced = true;
                break;
            }
        }
        if (!replaced) out += c;
    }
    return out;
}

// nlohmann's message without its "[json.exception...] parse error at line L, column C: " prefix, as one clause of
// printable ASCII.
std::string parseReason(const char* what) {
    std::string msg = what;
    size_t p = msg.find("parse error");
    if (p != std::string::npos && msg.find(": ", p) != std::string::npos) msg = msg.substr(msg.find(": ", p) + 2);
    else if (msg.compare(0, 1, "[") == 0 && msg.find("] ") != std::string::npos) msg = msg.substr(msg.find("] ") + 2);
    for (size_t s = msg.find("; "); s != std::string::npos; s = msg.find("; ", s)) msg.replace(s, 2, ", ");
    for (char& c : msg) {  // the "last read" bytes it quotes may be anything
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) c = '?';
    }
    return msg;
}

// 1-based line and column (in bytes) of the 0-based offset `at` of `text`.
std::pair<size_t, size_t> lineColumn(const std::string& text, size_t at) {
    size_t line = 1, start = 0;
    for (size_t i = 0; i < at && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
            start = i + 1;
        }
    }
    return {line, at - start + 1};
}

Json parseJson(const std::string& raw, const std::string& where) {
    const std::string text = nonFiniteAsNull(raw);
    try {
        return Json::parse(text);
    } catch (const Json::parse_error& e) {
        auto [line, column] = lineColumn(text, e.byte ? e.byte - 1 : 0);  // e.byte: 1-based, the last byte read
        throw Error(where + ": invalid JSON at line " + std::to_string(line) + ", column " + std::to_string(column) + ": " +
                    parseReason(e.what()) + "; " + kFix);
    } catch (const Json::exception& e) {
        throw Error(where + ": invalid JSON: " + parseReason(e.what()) + "; " + kFix);
    }
}

std::string shapeText(const std::array<int64_t, 4>& s) {
    return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]) + "x" + std::to_string(s[3]);
}

std::array<int64_t, 4> readShape(const Reader& r, const Json& prof, const char* key, const std::string& path) {
    const Json& a = r.array(prof, key, path);
    std::string p = Reader::join(path, key);
    if (a.size() != 4) r.fail(p + " must hold 4 integers N,C,H,W, not " + std::to_string(a.size()));
    std::array<int64_t, 4> s{};
    for (size_t i = 0; i < 4; ++i) {
        s[i] = r.integer(a[i], p + "[" + std::to_string(i) + "]");
        if (s[i] <= 0 || s[i] > (int64_t(1) << 30)) r.fail(p + " " + a.dump() + " must be positive integers");
    }
    return s;
}

ShapeProfile readProfile(const Reader& r, const Json& input, const std::string& path) {
    const Json& prof = r.object(input, "profile", path);
    std::string p = Reader::join(path, "profile");
    ShapeProfile sp;
    sp.min = readShape(r, prof, "min", p);
    sp.opt = readShape(r, prof, "opt", p);
    sp.max = readShape(r, prof, "max", p);
    sp.spatial_multiple = r.integer(prof, "spatial_multiple", p);
    if (sp.spatial_multiple < 1) r.fail(p + ".spatial_multiple must be >= 1, got " + std::to_string(sp.spatial_multiple));
    if (!(sp.min[1] == sp.opt[1] && sp.opt[1] == sp.max[1])) {
        r.fail("the shape profile's channel count differs between min/opt/max (" + std::to_string(sp.min[1]) + ", " +
               std::to_string(sp.opt[1]) + ", " + std::to_string(sp.max[1]) + ")");
    }
    const char* axes = "NCHW";
    for (int a = 0; a < 4; ++a) {
        if (!(sp.min[a] <= sp.opt[a] && sp.opt[a] <= sp.max[a])) {
            r.fail(std::string("impossible shape profile on axis ") + axes[a] + ": need min <= opt <= max, got " +
                   std::to_string(sp.min[a]) + ", " + std::to_string(sp.opt[a]) + ", " + std::to_string(sp.max[a]));
        }
    }
    const std::array<int64_t, 4>* shapes[3] = {&sp.min, &sp.opt, &sp.max};
    const char* names[3] = {"min", "opt", "max"};
    for (int i = 0; i < 3; ++i) {
        const auto& s = *shapes[i];
        if (s[2] % sp.spatial_multiple || s[3] % sp.spatial_multiple) {
            r.fail(std::string("profile ") + names[i] + " shape " + shapeText(s) + " is not a multiple of " +
                   std::to_string(sp.spatial_multiple) + " in H/W");
        }
    }
    return sp;
}

std::vector<double> readValues(const Reader& r, const Json& pre, const char* key) {
    const Json& a = r.array(pre, key, "preprocess");
    std::vector<double> out;
    for (size_t i = 0; i < a.size(); ++i) {
        double v = r.number(a[i], std::string("preprocess.") + key + "[" + std::to_string(i) + "]");
        if (!std::isfinite(v)) r.fail(std::string("preprocess.") + key + " holds a non-finite value");
        out.push_back(v);
    }
    return out;
}

Preprocess readPreprocess(const Reader& r, const Json& doc) {
    const Json& pre = r.object(doc, "preprocess", "");
    Preprocess p;
    p.mean = readValues(r, pre, "mean");
    p.std = readValues(r, pre, "std");
    if (p.mean.size() != p.std.size()) {
        r.fail("preprocess.mean has " + std::to_string(p.mean.size()) + " values but preprocess.std has " +
               std::to_string(p.std.size()) + "; they need the same count");
    }
    if (p.mean.size() != 1 && p.mean.size() != 3) {
        r.fail("preprocess mean/std have " + std::to_string(p.mean.size()) + " values; RGB images need 1 or 3");
    }
    for (double s : p.std) {
        if (s == 0.0) r.fail("preprocess.std values must be non-zero");
    }
    p.scale = r.number(r.get(pre, "scale", "preprocess"), "preprocess.scale");
    if (!std::isfinite(p.scale)) r.fail("preprocess.scale must be finite");
    std::string order = r.string(pre, "channel_order", "preprocess");
    if (order == "RGB") p.channel_order = ChannelOrder::kRGB;
    else if (order == "BGR") p.channel_order = ChannelOrder::kBGR;
    else r.fail("preprocess.channel_order must be RGB or BGR, got '" + order + "'");
    if (pre.contains("resize")) {
        std::string mode = r.string(pre, "resize", "preprocess");
        if (mode == "pad") p.resize = ResizeMode::kPad;
        else if (mode == "resize") p.resize = ResizeMode::kResize;
        else r.fail("preprocess.resize must be 'pad' or 'resize', got '" + mode + "'");
    }
    return p;
}

// Member `key` of `obj` when present and not null, else nullptr.
const Json* optional(const Json& obj, const char* key) {
    auto it = obj.find(key);
    return (it == obj.end() || it->is_null()) ? nullptr : &*it;
}

EngineEntry readEngine(const Reader& r, const Json& e, const std::string& p) {
    if (!e.is_object()) r.wrongType(e, p, "an object");
    EngineEntry entry;
    entry.file = r.string(e, "file", p);
    entry.precision = r.string(e, "precision", p);
    if (const Json* pl = optional(e, "plugins")) {
        // a library name, or the builder's record {"library": name, ...}, or null (no plugins)
        if (pl->is_string()) entry.plugins = pl->get<std::string>();
        else if (pl->is_object()) entry.plugins = r.string(*pl, "library", p + ".plugins");
        else r.wrongType(*pl, p + ".plugins", "a string, an object or null");
    }
    if (const Json* t = optional(e, "tensorrt"); t && t->is_object()) {
        if (const Json* v = optional(*t, "version"); v && v->is_string()) entry.tensorrt_version = v->get<std::string>();
    }
    if (const Json* flags = optional(e, "flags")) {
        if (!flags->is_object()) r.wrongType(*flags, p + ".flags", "an object");
        if (const Json* builder = optional(*flags, "builder")) {
            if (!builder->is_array()) r.wrongType(*builder, p + ".flags.builder", "an array");
            for (size_t i = 0; i < builder->size(); ++i) {
                std::string flag = r.string((*builder)[i], p + ".flags.builder[" + std::to_string(i) + "]");
                entry.version_compatible |= flag == "VERSION_COMPATIBLE";
            }
        }
    }
    return entry;
}

std::vector<EngineEntry> readEngines(const Reader& r, const Json& doc) {
    std::vector<EngineEntry> out;
    const Json* engines = optional(doc, "engines");
    if (!engines) return out;
    if (!engines->is_array()) r.wrongType(*engines, "engines", "an array");
    for (size_t i = 0; i < engines->size(); ++i) out.push_back(readEngine(r, (*engines)[i], "engines[" + std::to_string(i) + "]"));
    return out;
}

int readSchemaVersion(const Reader& r, const Json& doc, const std::string& where) {
    const Json* schema = optional(doc, "schema");
    if (!schema || !schema->is_string() || schema->get<std::string>() != "segdeploy.manifest") {
        r.fail("is not a segdeploy manifest (schema=" + (schema ? shown(*schema) : std::string("missing")) + ")");
    }
    int64_t v = r.integer(r.get(doc, "schema_version", ""), "schema_version");
    if (v > kSchemaVersion) {
        throw Error(where + ": schema version " + std::to_string(v) + " is newer than this runtime understands (" +
                    std::to_string(kSchemaVersion) + "); use the runtime sources of the segdeploy release that wrote "
                    "the manifest (segdeploy bundle packs them)");
    }
    if (v < 1) r.fail("schema_version must be >= 1, got " + std::to_string(v));
    return int(v);
}

void readTensors(const Reader& r, const Json& doc, Manifest& m) {
    const Json& inputs = r.array(doc, "inputs", "");
    const Json& outputs = r.array(doc, "outputs", "");
    if (inputs.empty() || outputs.empty()) r.fail("needs at least one input and one output");
    const Json& in0 = inputs[0];
    const Json& out0 = outputs[0];
    if (!in0.is_object()) r.wrongType(in0, "inputs[0]", "an object");
    if (!out0.is_object()) r.wrongType(out0, "outputs[0]", "an object");
    m.input_name = r.string(in0, "name", "inputs[0]");
    m.input_dtype = r.string(in0, "dtype", "inputs[0]");
    m.output_name = r.string(out0, "name", "outputs[0]");
    m.output_dtype = r.string(out0, "dtype", "outputs[0]");
    if (m.input_dtype != "float32") r.fail("inputs[0].dtype is '" + m.input_dtype + "'; this runtime feeds float32 tensors");
    if (m.output_dtype != "float32" && m.output_dtype != "float16") {
        r.fail("outputs[0].dtype is '" + m.output_dtype + "'; this runtime reads float32 or float16 logits");
    }
    m.profile = readProfile(r, in0, "inputs[0]");
}

void readModel(const Reader& r, const Json& doc, const std::string& where, Manifest& m) {
    const Json& model = r.object(doc, "model", "");
    int64_t in_ch = r.integer(model, "in_channels", "model");
    int64_t classes = r.integer(model, "num_classes", "model");
    if (in_ch < 1 || classes < 1) r.fail("model.in_channels and model.num_classes must be >= 1");
    if (m.profile.opt[1] != in_ch) {
        r.fail("the profile has " + std::to_string(m.profile.opt[1]) + " channels but model.in_channels is " +
               std::to_string(in_ch));
    }
    if (in_ch != 3) {
        throw Error(where + ": the model takes " + std::to_string(in_ch) + "-channel input; this runtime feeds "
                    "3-channel (RGB/BGR) images, so export a 3-channel model");
    }
    if (classes > 65536) {
        throw Error(where + ": the model has " + std::to_string(classes) + " classes; class maps hold at most 65536 "
                    "(uint16), so reduce the class count");
    }
    m.in_channels = int(in_ch);
    m.num_classes = int(classes);
    if (const Json* names = optional(model, "class_names")) {
        if (!names->is_array()) r.wrongType(*names, "model.class_names", "an array");
        for (size_t i = 0; i < names->size(); ++i) {
            m.class_names.push_back(r.string((*names)[i], "model.class_names[" + std::to_string(i) + "]"));
        }
        if (!m.class_names.empty() && int64_t(m.class_names.size()) != classes) {
            r.fail("model.class_names lists " + std::to_string(m.class_names.size()) + " names for " +
                   std::to_string(classes) + " classes");
        }
    }
}

// The end-to-end variants' frame order (end_to_end.input.channel_order), when the export has them.
void readEndToEnd(const Reader& r, const Json& doc, Manifest& m) {
    const Json* e2e = optional(doc, "end_to_end");
    if (!e2e) return;
    if (!e2e->is_object()) r.wrongType(*e2e, "end_to_end", "an object");
    const Json& input = r.object(*e2e, "input", "end_to_end");
    std::string order = r.string(input, "channel_order", "end_to_end.input");
    if (order == "RGB") m.frame_order = ChannelOrder::kRGB;
    else if (order == "BGR") m.frame_order = ChannelOrder::kBGR;
    else r.fail("end_to_end.input.channel_order must be RGB or BGR, got '" + order + "'");
    m.has_end_to_end = true;
}

}  // namespace

const EngineEntry* Manifest::engineFor(const std::string& file_name) const {
    for (const auto& e : engines) {
        if (e.file == file_name) return &e;
    }
    return nullptr;
}

Manifest parseManifest(const std::string& text, const std::string& where) {
    const Json doc = parseJson(text, where);
    Reader r(where);
    if (!doc.is_object()) r.fail("is not a JSON object");
    Manifest m;
    m.schema_version = readSchemaVersion(r, doc, where);
    readTensors(r, doc, m);
    m.preprocess = readPreprocess(r, doc);
    readModel(r, doc, where, m);
    if (const Json* plug = optional(doc, "tensorrt_plugins")) {
        if (!plug->is_object()) r.wrongType(*plug, "tensorrt_plugins", "an object");
        m.has_plugin_graph = true;
        m.plugin_graph_file = r.string(*plug, "file", "tensorrt_plugins");
    }
    m.engines = readEngines(r, doc);
    readEndToEnd(r, doc, m);
    return m;
}

Manifest readManifest(const std::string& path) {
    std::string file = path;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) file = path + "/manifest.json";
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw Error("cannot open manifest " + file + "; pass the manifest.json (or the export directory) written by "
                    "`segdeploy export`");
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error("cannot read manifest " + file + "; check the file's permissions");
    return parseManifest(ss.str(), file);
}

const char* toString(ChannelOrder order) { return order == ChannelOrder::kBGR ? "BGR" : "RGB"; }
const char* toString(ResizeMode mode) { return mode == ResizeMode::kResize ? "resize" : "pad"; }

}  // namespace segdeploy

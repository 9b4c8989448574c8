// segdeploy runtime: JSON reader and canonical writer (see include/segdeploy/json.h for the contract).
#include "segdeploy/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "segdeploy/error.h"

namespace segdeploy {

namespace {
const std::string kEmptyString;
const Json::Array kEmptyArray;
const Json::Object kEmptyObject;
constexpr int kMaxDepth = 512;
}  // namespace

const std::string& Json::asString() const noexcept { return type_ == Type::kString ? string_ : kEmptyString; }
const Json::Array& Json::asArray() const noexcept { return type_ == Type::kArray ? array_ : kEmptyArray; }
const Json::Object& Json::asObject() const noexcept { return type_ == Type::kObject ? object_ : kEmptyObject; }

const Json* Json::find(std::string_view key) const noexcept {
    if (type_ != Type::kObject) return nullptr;
    for (auto it = object_.rbegin(); it != object_.rend(); ++it) {
        if (it->first == key) return &it->second;
    }
    return nullptr;
}

const char* Json::typeName(Type t) noexcept {
    switch (t) {
        case Type::kNull: return "null";
        case Type::kBool: return "bool";
        case Type::kNumber: return "number";
        case Type::kString: return "string";
        case Type::kArray: return "array";
        case Type::kObject: return "object";
    }
    return "?";
}

// ------------------------------------------------------------------------------------------------ parser
class JsonParser {
public:
    JsonParser(std::string_view text, const std::string& where, const std::string& fix)
        : s_(text), where_(where), fix_(fix) {}

    Json document() {
        skipSpace();
        Json v = value(0);
        skipSpace();
        if (pos_ != s_.size()) fail("extra data after the JSON value");
        return v;
    }

private:
    std::string_view s_;
    size_t pos_ = 0;
    const std::string& where_;
    const std::string& fix_;

    [[noreturn]] void fail(const std::string& reason) const { failAt(pos_, reason); }

    [[noreturn]] void failAt(size_t at, const std::string& reason) const {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < at && i < s_.size(); ++i) {
            if (s_[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        throw Error(where_ + ": invalid JSON at line " + std::to_string(line) + ", column " + std::to_string(col) +
                    ": " + reason + "; " + fix_);
    }

    bool atEnd() const { return pos_ >= s_.size(); }
    char peek() const { return atEnd() ? '\0' : s_[pos_]; }

    void skipSpace() {
        while (!atEnd() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }

    bool consumeWord(std::string_view w) {
        if (s_.substr(pos_, w.size()) == w) {
            pos_ += w.size();
            return true;
        }
        return false;
    }

    Json value(int depth) {
        if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
        if (atEnd()) fail("unexpected end of the document, expecting a value");
        char c = s_[pos_];
        Json v;
        switch (c) {
            case '{': return object(depth);
            case '[': return array(depth);
            case '"':
                v.type_ = Json::Type::kString;
                v.string_ = string();
                return v;
            case 't':
            case 'f':
                if (consumeWord("true") || consumeWord("false")) {
                    v.type_ = Json::Type::kBool;
                    v.bool_ = (c == 't');
                    return v;
                }
                break;
            case 'n':
                if (consumeWord("null")) return v;
                break;
            case 'N':
                if (consumeWord("NaN")) return special(std::numeric_limits<double>::quiet_NaN());
                break;
            case 'I':
                if (consumeWord("Infinity")) return special(std::numeric_limits<double>::infinity());
                break;
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number();
        }
        fail(std::string("unexpected character '") + printable(c) + "', expecting a value");
    }

    static std::string printable(char c) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) return std::string(1, c);
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", u);
        return buf;
    }

    static Json special(double d) {
        Json v;
        v.type_ = Json::Type::kNumber;
        v.number_ = d;
        return v;
    }

    Json number() {
        size_t start = pos_;
        if (peek() == '-') {
            ++pos_;
            if (consumeWord("Infinity")) return special(-std::numeric_limits<double>::infinity());
        }
        if (peek() == '0') {
            ++pos_;
        } else if (peek() >= '1' && peek() <= '9') {
            while (peek() >= '0' && peek() <= '9') ++pos_;
        } else {
            fail("invalid number: expecting a digit");
        }
        bool integral = true;
        if (peek() == '.') {
            integral = false;
            ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: expecting a digit after '.'");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            integral = false;
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: expecting a digit in the exponent");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        const char* b = s_.data() + start;
        const char* e = s_.data() + pos_;
        Json v;
        v.type_ = Json::Type::kNumber;
        auto r = std::from_chars(b, e, v.number_);
        if (r.ec == std::errc::result_out_of_range) {
            // from_chars leaves the value unchanged on overflow/underflow: follow Python's float() instead.
            bool neg = (*b == '-');
            bool tiny = false;
            for (const char* p = b; p != e; ++p) {
                if (*p == 'e' || *p == 'E') {
                    tiny = (p + 1 != e && p[1] == '-');
                    break;
                }
            }
            v.number_ = tiny ? (neg ? -0.0 : 0.0)
                             : (neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
        } else if (r.ec != std::errc() || r.ptr != e) {
            failAt(start, "invalid number");
        }
        if (integral) {
            int64_t iv = 0;
            auto ri = std::from_chars(b, e, iv);
            if (ri.ec == std::errc() && ri.ptr == e) {
                v.integer_ = true;
                v.int_ = iv;
            }
        }
        return v;
    }

    unsigned hex4() {
        if (s_.size() - pos_ < 4) fail("truncated \\u escape");
        unsigned cp = 0;
        for (int i = 0; i < 4; ++i) {
            char c = s_[pos_++];
            cp <<= 4;
            if (c >= '0' && c <= '9') cp |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') cp |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') cp |= unsigned(c - 'A' + 10);
            else fail("invalid \\u escape (expecting 4 hex digits)");
        }
        return cp;
    }

    static void appendUtf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    // Length of the valid UTF-8 sequence starting at pos_ (raw byte >= 0x80), or 0.
    size_t utf8Length() const {
        auto byte = [&](size_t i) -> unsigned { return pos_ + i < s_.size() ? static_cast<unsigned char>(s_[pos_ + i]) : 0u; };
        unsigned b0 = byte(0);
        auto cont = [&](size_t i) { return (byte(i) & 0xC0) == 0x80; };
        if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
        if (b0 >= 0xE0 && b0 <= 0xEF) {
            unsigned b1 = byte(1);
            if (b0 == 0xE0 && b1 < 0xA0) return 0;  // overlong
            if (b0 == 0xED && b1 >= 0xA0) return 0;  // UTF-16 surrogate
            return cont(1) && cont(2) ? 3 : 0;
        }
        if (b0 >= 0xF0 && b0 <= 0xF4) {
            unsigned b1 = byte(1);
            if (b0 == 0xF0 && b1 < 0x90) return 0;
            if (b0 == 0xF4 && b1 >= 0x90) return 0;
            return cont(1) && cont(2) && cont(3) ? 4 : 0;
        }
        return 0;
    }

    std::string string() {
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (atEnd()) fail("unterminated string");
            unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) fail("control character in a string (escape it)");
            if (c == '\\') {
                ++pos_;
                if (atEnd()) fail("unterminated string");
                char e = s_[pos_++];
                switch (e) {
                    case '"': out += '"'; break;
                    case '\\': out += '\\'; break;
                    case '/': out += '/'; break;
                    case 'b': out += '\b'; break;
                    case 'f': out += '\f'; break;
                    case 'n': out += '\n'; break;
                    case 'r': out += '\r'; break;
                    case 't': out += '\t'; break;
                    case 'u': {
                        size_t at = pos_ - 2;
                        unsigned cp = hex4();
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (!(consumeWord("\\u"))) failAt(at, "lone UTF-16 surrogate in a \\u escape");
                            unsigned lo = hex4();
                            if (lo < 0xDC00 || lo > 0xDFFF) failAt(at, "lone UTF-16 surrogate in a \\u escape");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                            failAt(at, "lone UTF-16 surrogate in a \\u escape");
                        }
                        appendUtf8(out, cp);
                        break;
                    }
                    default: failAt(pos_ - 2, std::string("invalid escape '\\") + printable(e) + "'");
                }
                continue;
            }
            if (c < 0x80) {
                out += char(c);
                ++pos_;
                continue;
            }
            size_t n = utf8Length();
            if (n == 0) fail("invalid UTF-8 in a string");
            out.append(s_.substr(pos_, n));
            pos_ += n;
        }
    }

    Json array(int depth) {
        ++pos_;
        Json v;
        v.type_ = Json::Type::kArray;
        skipSpace();
        if (peek() == ']') {
            ++pos_;
            return v;
        }
        for (;;) {
            skipSpace();
            v.array_.push_back(value(depth + 1));
            skipSpace();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == ']') {
                ++pos_;
                return v;
            }
            fail(atEnd() ? "unexpected end of the document inside an array" : "expecting ',' or ']' in an array");
        }
    }

    Json object(int depth) {
        ++pos_;
        Json v;
        v.type_ = Json::Type::kObject;
        skipSpace();
        if (peek() == '}') {
            ++pos_;
            return v;
        }
        for (;;) {
            skipSpace();
            if (peek() != '"') fail(atEnd() ? "unexpected end of the document inside an object" : "expecting a string key in an object");
            std::string key = string();
            skipSpace();
            if (peek() != ':') fail("expecting ':' after an object key");
            ++pos_;
            skipSpace();
            Json member = value(depth + 1);
            v.object_.emplace_back(std::move(key), std::move(member));
            skipSpace();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == '}') {
                ++pos_;
                return v;
            }
            fail(atEnd() ? "unexpected end of the document inside an object" : "expecting ',' or '}' in an object");
        }
    }
};

Json Json::parse(std::string_view text, const std::string& where, const std::string& fix) {
    return JsonParser(text, where, fix).document();
}

// ------------------------------------------------------------------------------------------------ writer
namespace {

void dumpString(const std::string& s, std::string& out) {
    out += '"';
    size_t i = 0;
    char buf[16];
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        unsigned cp;
        size_t n = 1;
        if (c < 0x80) cp = c;
        else if (c < 0xE0) { cp = c & 0x1F; n = 2; }
        else if (c < 0xF0) { cp = c & 0x0F; n = 3; }
        else { cp = c & 0x07; n = 4; }
        for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        i += n;
        switch (cp) {
            case '"': out += "\\\""; continue;
            case '\\': out += "\\\\"; continue;
            case '\n': out += "\\n"; continue;
            case '\r': out += "\\r"; continue;
            case '\t': out += "\\t"; continue;
            case '\b': out += "\\b"; continue;
            case '\f': out += "\\f"; continue;
            default: break;
        }
        if (cp >= 0x20 && cp < 0x7F) {
            out += char(cp);
        } else if (cp < 0x10000) {
            std::snprintf(buf, sizeof buf, "\\u%04x", cp);
            out += buf;
        } else {
            cp -= 0x10000;
            std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            out += buf;
        }
    }
    out += '"';
}

void dumpValue(const Json& v, std::string& out) {
    switch (v.type()) {
        case Json::Type::kNull: out += "null"; return;
        case Json::Type::kBool: out += v.asBool() ? "true" : "false"; return;
        case Json::Type::kNumber: {
            if (v.isInteger()) {
                out += std::to_string(v.asInt());
                return;
            }
            double d = v.asNumber();
            if (std::isnan(d)) { out += "NaN"; return; }
            if (std::isinf(d)) { out += d > 0 ? "Infinity" : "-Infinity"; return; }
            char buf[64];
            auto r = std::to_chars(buf, buf + sizeof buf, d);
            std::string text(buf, r.ptr);
            if (text.find_first_of(".e") == std::string::npos) text += ".0";  // stays a float (keeps -0.0)
            out += text;
            return;
        }
        case Json::Type::kString: dumpString(v.asString(), out); return;
        case Json::Type::kArray: {
            out += '[';
            bool first = true;
            for (const Json& e : v.asArray()) {
                if (!first) out += ',';
                first = false;
                dumpValue(e, out);
            }
            out += ']';
            return;
        }
        case Json::Type::kObject: {
            std::map<std::string, const Json*> sorted;  // last duplicate wins
            for (const auto& kv : v.asObject()) sorted[kv.first] = &kv.second;
            out += '{';
            bool first = true;
            for (const auto& kv : sorted) {
                if (!first) out += ',';
                first = false;
                dumpString(kv.first, out);
                out += ':';
                dumpValue(*kv.second, out);
            }
            out += '}';
            return;
        }
    }
}

}  // namespace

std::string Json::dump() const {
    std::string out;
    dumpValue(*this, out);
    return out;
}

}  // namespace segdeploy

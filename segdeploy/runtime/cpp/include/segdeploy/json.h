// segdeploy runtime: a small JSON reader (RFC 8259, plus Python's NaN / Infinity / -Infinity literals, which
// Python's json.dumps writes for non-finite floats). No third-party code.
//
// Contract:
//  * Json::parse(text, where, fix) returns the document or throws segdeploy::Error with the one-line message
//    "<where>: invalid JSON at line L, column C: <reason>; <fix>". Line/column are 1-based (column counts bytes).
//  * Numbers are parsed with std::from_chars (locale-independent, correctly rounded): the double equals what
//    Python's float() gives for the same text. isInteger() is true for numbers written without fraction or
//    exponent that fit in int64; asInt() returns them exactly. Larger integers keep only the nearest double.
//  * Strings: all escapes including \uXXXX surrogate pairs are decoded to UTF-8; raw bytes must be valid UTF-8;
//    a lone surrogate escape is refused.
//  * Objects keep their keys in document order; with duplicate keys find() returns the LAST one (as Python).
//  * Nesting deeper than 512 levels is refused (no unbounded recursion on hostile input).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace segdeploy {

class Json {
public:
    enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
    using Array = std::vector<Json>;
    using Object = std::vector<std::pair<std::string, Json>>;

    Json() = default;

    static Json parse(std::string_view text, const std::string& where, const std::string& fix);

    Type type() const noexcept { return type_; }
    bool isNull() const noexcept { return type_ == Type::kNull; }
    bool isBool() const noexcept { return type_ == Type::kBool; }
    bool isNumber() const noexcept { return type_ == Type::kNumber; }
    bool isInteger() const noexcept { return type_ == Type::kNumber && integer_; }
    bool isString() const noexcept { return type_ == Type::kString; }
    bool isArray() const noexcept { return type_ == Type::kArray; }
    bool isObject() const noexcept { return type_ == Type::kObject; }

    //! The accessors below assume the matching type (check with is*() first); they return a neutral value
    //! (false, 0, empty) for another type rather than failing.
    bool asBool() const noexcept { return type_ == Type::kBool && bool_; }
    double asNumber() const noexcept { return type_ == Type::kNumber ? number_ : 0.0; }
    int64_t asInt() const noexcept { return isInteger() ? int_ : 0; }
    const std::string& asString() const noexcept;
    const Array& asArray() const noexcept;
    const Object& asObject() const noexcept;

    //! Member `key` of an object (the last one if repeated), else nullptr (also when this is not an object).
    const Json* find(std::string_view key) const noexcept;

    //! "null", "bool", "number", "string", "array" or "object" (for error messages).
    static const char* typeName(Type t) noexcept;
    const char* typeName() const noexcept { return typeName(type_); }

    //! Canonical text: objects with keys sorted (last duplicate wins), numbers as integers when isInteger(),
    //! else the shortest round-trip form with a ".0" when it would read as an integer ("NaN"/"Infinity"/
    //! "-Infinity" for non-finite); strings escaped with
    //! \uXXXX for every non-ASCII code point (as Python's json.dumps(sort_keys=True, separators=(",", ":"))).
    std::string dump() const;

private:
    friend class JsonParser;
    Type type_ = Type::kNull;
    bool bool_ = false;
    bool integer_ = false;
    double number_ = 0.0;
    int64_t int_ = 0;
    std::string string_;
    Array array_;
    Object object_;
};

}  // namespace segdeploy

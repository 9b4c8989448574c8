// segdeploy runtime: image files: PPM/PGM here, PNG through png_io (see include/segdeploy/image.h for the contract).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "png_io.h"
#include "segdeploy/error.h"
#include "segdeploy/image.h"

namespace segdeploy {

namespace {

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
constexpr uint64_t kMaxPixels = uint64_t(1) << 28;  // 268 M pixels: refuse decompression bombs

[[noreturn]] void badImage(const std::string& name, const std::string& why, const char* fix = nullptr) {
    throw Error("cannot read image " + name + ": " + why + "; " +
                (fix ? fix : "the file is corrupt or truncated: re-encode or replace it"));
}

// ------------------------------------------------------------------------------------------------ PNM read
Image decodePnm(const uint8_t* data, size_t size, const std::string& name) {
    bool color = data[1] == '6';
    size_t pos = 2;
    auto skip = [&]() {
        for (;;) {
            while (pos < size && (data[pos] == ' ' || data[pos] == '\t' || data[pos] == '\n' || data[pos] == '\r' ||
                                  data[pos] == '\v' || data[pos] == '\f')) ++pos;
            if (pos < size && data[pos] == '#') {
                while (pos < size && data[pos] != '\n') ++pos;
                continue;
            }
            return;
        }
    };
    auto number = [&](const char* what) -> uint64_t {
        skip();
        if (pos >= size || data[pos] < '0' || data[pos] > '9') badImage(name, std::string("PNM header lacks its ") + what);
        uint64_t v = 0;
        while (pos < size && data[pos] >= '0' && data[pos] <= '9') {
            v = v * 10 + uint64_t(data[pos++] - '0');
            if (v > 0x7FFFFFFF) badImage(name, std::string("PNM ") + what + " is too large");
        }
        return v;
    };
    uint64_t w = number("width"), h = number("height"), maxval = number("maxval");
    if (pos >= size) badImage(name, "PNM header is truncated");
    ++pos;  // exactly one whitespace byte before the samples
    if (w == 0 || h == 0) badImage(name, "PNM has an invalid size");
    if (w * h > kMaxPixels) badImage(name, "image has more pixels than this reader accepts (2^28)", "downscale it first");
    if (maxval != 255) badImage(name, "PNM maxval is " + std::to_string(maxval) + "; only 8-bit (maxval 255) PPM/PGM are read", "convert it to PNG");
    size_t ch = color ? 3 : 1;
    size_t need = size_t(w * h) * ch;
    if (size - pos < need) badImage(name, "PNM pixel data is truncated");
    Image img;
    img.width = int(w);
    img.height = int(h);
    img.channels = 3;
    if (color) {
        img.pixels.assign(data + pos, data + pos + need);
    } else {
        img.pixels.resize(need * 3);
        for (size_t i = 0; i < need; ++i) img.pixels[i * 3] = img.pixels[i * 3 + 1] = img.pixels[i * 3 + 2] = data[pos + i];
    }
    return img;
}

// ------------------------------------------------------------------------------------------------ files
std::string lowerExtension(const std::string& path) {
    size_t slash = path.find_last_of('/');
    size_t dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
    std::string ext = path.substr(dot);
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    return ext;
}

// Write `bytes` to `path` atomically (temporary file in the same directory, then rename).
void writeFileAtomic(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::string tmp = path + ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error("cannot write " + path + ": the directory does not exist or is not writable; choose another output path");
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        out.flush();
        if (!out) {
            std::remove(tmp.c_str());
            throw Error("cannot write " + path + ": write failed (disk full?); free space or choose another output path");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error("cannot write " + path + ": rename failed; choose another output path");
    }
}

void checkSize(int width, int height) {
    if (width <= 0 || height <= 0) throw usageError("cannot encode an image of size " + std::to_string(width) + "x" + std::to_string(height) + "; width and height must be positive");
}

}  // namespace

ImageView Image::view(PixelFormat format) const {
    ImageView v;
    v.data = pixels.data();
    v.width = width;
    v.height = height;
    v.row_stride = size_t(width) * 3;
    v.format = format;
    return v;
}

Image decodeImage(const uint8_t* data, size_t size, const std::string& name) {
    if (size >= 8 && std::memcmp(data, kPngSignature, 8) == 0) return png::decodePng(data, size, name);
    if (size >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '6')) return decodePnm(data, size, name);
    badImage(name, "unsupported format (not PNG, PPM P6 or PGM P5)", "convert it to PNG");
}

Image readImage(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("image " + path + " not found or not readable; check the path");
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string bytes = ss.str();
    return decodeImage(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

bool pngSupported() { return png::supported(); }

std::vector<uint8_t> encodePng(const uint8_t* pixels, int width, int height, int channels) {
    checkSize(width, height);
    if (channels != 1 && channels != 3) throw usageError("PNG encoder takes 1 or 3 channels, got " + std::to_string(channels) + "; convert the image first");
    return png::encodePngRows(pixels, width, height, 8, channels == 1);
}

std::vector<uint8_t> encodePng16(const uint16_t* pixels, int width, int height) {
    checkSize(width, height);
    std::vector<uint8_t> rows;
    rows.reserve(size_t(width) * size_t(height) * 2);
    for (size_t i = 0; i < size_t(width) * size_t(height); ++i) {
        rows.push_back(uint8_t(pixels[i] >> 8));  // PNG samples are big-endian
        rows.push_back(uint8_t(pixels[i]));
    }
    return png::encodePngRows(rows.data(), width, height, 16, true);
}

void writeImage(const std::string& path, const Image& image) {
    std::string ext = lowerExtension(path);
    if (ext == ".png") {
        writeFileAtomic(path, encodePng(image.pixels.data(), image.width, image.height, image.channels));
        return;
    }
    if ((ext == ".ppm" && image.channels == 3) || (ext == ".pgm" && image.channels == 1)) {
        checkSize(image.width, image.height);
        std::string head = std::string(image.channels == 3 ? "P6" : "P5") + "\n" + std::to_string(image.width) + " " +
                           std::to_string(image.height) + "\n255\n";
        std::vector<uint8_t> bytes(head.begin(), head.end());
        bytes.insert(bytes.end(), image.pixels.begin(), image.pixels.end());
        writeFileAtomic(path, bytes);
        return;
    }
    throw usageError("cannot write " + path + ": use a .png name, or .ppm for RGB / .pgm for gray images");
}

void writeClassMap(const std::string& path, const ClassMap& map) {
    std::string ext = lowerExtension(path);
    if (map.labels.size() != size_t(map.width) * size_t(map.height)) {
        throw Error("class map holds " + std::to_string(map.labels.size()) + " labels for " + std::to_string(map.width) + "x" +
                    std::to_string(map.height) + " pixels; fill labels with width * height values");
    }
    uint16_t top = map.labels.empty() ? 0 : *std::max_element(map.labels.begin(), map.labels.end());
    bool wide = top > 255;
    if (ext == ".png") {
        if (wide) {
            writeFileAtomic(path, encodePng16(map.labels.data(), map.width, map.height));
        } else {
            std::vector<uint8_t> px(map.labels.begin(), map.labels.end());
            writeFileAtomic(path, encodePng(px.data(), map.width, map.height, 1));
        }
        return;
    }
    if (ext == ".pgm") {
        checkSize(map.width, map.height);
        std::string head = "P5\n" + std::to_string(map.width) + " " + std::to_string(map.height) + (wide ? "\n65535\n" : "\n255\n");
        std::vector<uint8_t> bytes(head.begin(), head.end());
        for (uint16_t v : map.labels) {
            if (wide) bytes.push_back(uint8_t(v >> 8));
            bytes.push_back(uint8_t(v));
        }
        writeFileAtomic(path, bytes);
        return;
    }
    throw usageError("cannot write class map " + path + ": use a .png or .pgm name");
}

}  // namespace segdeploy

// segdeploy runtime: PNG and PPM/PGM reading and writing (see include/segdeploy/image.h for the contract).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "checksum.h"
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

uint32_t be32(const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void putBe32(std::vector<uint8_t>& out, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

// ------------------------------------------------------------------------------------------------ PNG read
struct PngHeader {
    uint32_t width = 0, height = 0;
    int depth = 0, color = 0, interlace = 0;
    int channels() const {
        switch (color) {
            case 0: return 1;
            case 2: return 3;
            case 3: return 1;
            case 4: return 2;
            default: return 4;  // 6
        }
    }
};

uint8_t paeth(int a, int b, int c) {
    int p = a + b - c;
    int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return uint8_t(a);
    if (pb <= pc) return uint8_t(b);
    return uint8_t(c);
}

// Undo the per-row filters of one (sub)image in place: `data` holds ph rows of 1 + rowbytes bytes.
void unfilter(uint8_t* data, size_t rowbytes, size_t ph, size_t bpp, const std::string& name) {
    uint8_t* prev = nullptr;
    for (size_t y = 0; y < ph; ++y) {
        uint8_t* row = data + y * (rowbytes + 1);
        uint8_t type = row[0];
        uint8_t* cur = row + 1;
        switch (type) {
            case 0: break;
            case 1:
                for (size_t i = bpp; i < rowbytes; ++i) cur[i] = uint8_t(cur[i] + cur[i - bpp]);
                break;
            case 2:
                if (prev) for (size_t i = 0; i < rowbytes; ++i) cur[i] = uint8_t(cur[i] + prev[i]);
                break;
            case 3:
                for (size_t i = 0; i < rowbytes; ++i) {
                    int a = i >= bpp ? cur[i - bpp] : 0;
                    int b = prev ? prev[i] : 0;
                    cur[i] = uint8_t(cur[i] + ((a + b) >> 1));
                }
                break;
            case 4:
                for (size_t i = 0; i < rowbytes; ++i) {
                    int a = i >= bpp ? cur[i - bpp] : 0;
                    int b = prev ? prev[i] : 0;
                    int c = (prev && i >= bpp) ? prev[i - bpp] : 0;
                    cur[i] = uint8_t(cur[i] + paeth(a, b, c));
                }
                break;
            default: badImage(name, "invalid PNG row filter type " + std::to_string(type));
        }
        prev = cur;
    }
}

// Sample `ch` of pixel `x` of an unfiltered row.
unsigned sampleAt(const uint8_t* row, size_t x, int ch, int channels, int depth) {
    if (depth == 8) return row[x * size_t(channels) + size_t(ch)];
    if (depth == 16) {
        const uint8_t* p = row + (x * size_t(channels) + size_t(ch)) * 2;
        return (unsigned(p[0]) << 8) | p[1];
    }
    size_t bit = x * size_t(depth);  // sub-byte depths only occur with one channel
    unsigned byte = row[bit / 8];
    unsigned shift = unsigned(8 - depth) - unsigned(bit % 8);
    return (byte >> shift) & ((1u << depth) - 1u);
}

// One decoded pixel -> RGB, following Pillow's open + convert("RGB").
void toRgb(const uint8_t* row, size_t x, const PngHeader& h, const std::vector<uint8_t>& palette, uint8_t* out) {
    int ch = h.channels();
    int d = h.depth;
    switch (h.color) {
        case 0: {
            unsigned v = sampleAt(row, x, 0, ch, d);
            uint8_t g;
            if (d == 16) g = uint8_t(std::min(v, 255u));  // Pillow: I;16 -> RGB clamps
            else if (d == 8) g = uint8_t(v);
            else g = uint8_t(v * (255u / ((1u << d) - 1u)));
            out[0] = out[1] = out[2] = g;
            return;
        }
        case 3: {
            unsigned i = sampleAt(row, x, 0, ch, d);
            if (size_t(i) * 3 + 2 < palette.size()) {
                std::memcpy(out, &palette[size_t(i) * 3], 3);
            } else {
                out[0] = out[1] = out[2] = 0;  // index beyond PLTE: black, as Pillow
            }
            return;
        }
        case 4: {
            unsigned v = sampleAt(row, x, 0, ch, d);
            out[0] = out[1] = out[2] = uint8_t(d == 16 ? v >> 8 : v);
            return;
        }
        default: {  // 2 (RGB) and 6 (RGBA): alpha dropped, 16-bit keeps the high byte
            for (int c = 0; c < 3; ++c) {
                unsigned v = sampleAt(row, x, c, ch, d);
                out[c] = uint8_t(d == 16 ? v >> 8 : v);
            }
        }
    }
}

Image decodePng(const uint8_t* data, size_t size, const std::string& name) {
    size_t pos = 8;
    PngHeader h;
    bool have_header = false, have_end = false;
    std::vector<uint8_t> palette, idat;
    while (pos < size && !have_end) {
        if (size - pos < 12) badImage(name, "truncated PNG chunk");
        uint32_t len = be32(data + pos);
        if (len > 0x7FFFFFFFu || size - pos - 12 < len) badImage(name, "truncated PNG chunk");
        const uint8_t* type = data + pos + 4;
        const uint8_t* body = data + pos + 8;
        if (crc32(type, size_t(len) + 4) != be32(body + len)) {
            badImage(name, "PNG chunk " + std::string(reinterpret_cast<const char*>(type), 4) + " fails its CRC");
        }
        std::string t(reinterpret_cast<const char*>(type), 4);
        if (!have_header && t != "IHDR") badImage(name, "PNG does not start with an IHDR chunk");
        if (t == "IHDR") {
            if (have_header || len != 13) badImage(name, "invalid PNG IHDR chunk");
            h.width = be32(body);
            h.height = be32(body + 4);
            h.depth = body[8];
            h.color = body[9];
            h.interlace = body[12];
            if (body[10] != 0 || body[11] != 0 || h.interlace > 1) badImage(name, "unknown PNG compression/filter/interlace method");
            bool ok = false;
            switch (h.color) {
                case 0: ok = h.depth == 1 || h.depth == 2 || h.depth == 4 || h.depth == 8 || h.depth == 16; break;
                case 3: ok = h.depth == 1 || h.depth == 2 || h.depth == 4 || h.depth == 8; break;
                case 2: case 4: case 6: ok = h.depth == 8 || h.depth == 16; break;
                default: ok = false;
            }
            if (!ok) badImage(name, "invalid PNG colour type " + std::to_string(h.color) + " / bit depth " + std::to_string(h.depth));
            if (h.width == 0 || h.height == 0 || h.width > 0x7FFFFFFFu || h.height > 0x7FFFFFFFu) badImage(name, "PNG has an invalid size");
            if (uint64_t(h.width) * h.height > kMaxPixels) {
                badImage(name, "image is " + std::to_string(h.width) + "x" + std::to_string(h.height) +
                         " pixels, more than this reader accepts (2^28)", "downscale it first");
            }
            have_header = true;
        } else if (t == "PLTE") {
            if (len % 3 != 0 || len == 0 || len > 768) badImage(name, "invalid PNG palette");
            palette.assign(body, body + len);
        } else if (t == "IDAT") {
            idat.insert(idat.end(), body, body + len);
        } else if (t == "IEND") {
            have_end = true;
        }  // ancillary and unknown chunks are skipped
        pos += size_t(len) + 12;
    }
    if (!have_header) badImage(name, "PNG has no IHDR chunk");
    if (idat.empty()) badImage(name, "PNG has no image data (IDAT)");
    if (h.color == 3 && palette.empty()) badImage(name, "palette PNG without a PLTE chunk");

    // Passes: Adam7 or the whole image.
    struct Pass { size_t x0, y0, dx, dy; };
    static const Pass adam7[7] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    static const Pass whole[1] = {{0, 0, 1, 1}};
    const Pass* passes = h.interlace ? adam7 : whole;
    int npass = h.interlace ? 7 : 1;
    const size_t W = h.width, H = h.height;
    const size_t bits_pp = size_t(h.channels()) * size_t(h.depth);
    const size_t bpp = std::max<size_t>(1, bits_pp / 8);
    size_t expected = 0;
    for (int p = 0; p < npass; ++p) {
        size_t pw = W > passes[p].x0 ? (W - passes[p].x0 + passes[p].dx - 1) / passes[p].dx : 0;
        size_t ph = H > passes[p].y0 ? (H - passes[p].y0 + passes[p].dy - 1) / passes[p].dy : 0;
        if (pw && ph) expected += ph * (1 + (pw * bits_pp + 7) / 8);
    }
    std::vector<uint8_t> raw = zlibDecompress(idat.data(), idat.size(), expected, name);
    if (raw.size() != expected) badImage(name, "PNG image data is truncated");

    Image img;
    img.width = int(W);
    img.height = int(H);
    img.channels = 3;
    img.pixels.assign(W * H * 3, 0);
    size_t off = 0;
    for (int p = 0; p < npass; ++p) {
        const Pass& ps = passes[p];
        size_t pw = W > ps.x0 ? (W - ps.x0 + ps.dx - 1) / ps.dx : 0;
        size_t ph = H > ps.y0 ? (H - ps.y0 + ps.dy - 1) / ps.dy : 0;
        if (!pw || !ph) continue;
        size_t rowbytes = (pw * bits_pp + 7) / 8;
        unfilter(raw.data() + off, rowbytes, ph, bpp, name);
        for (size_t y = 0; y < ph; ++y) {
            const uint8_t* row = raw.data() + off + y * (rowbytes + 1) + 1;
            size_t oy = ps.y0 + y * ps.dy;
            for (size_t x = 0; x < pw; ++x) {
                size_t ox = ps.x0 + x * ps.dx;
                toRgb(row, x, h, palette, &img.pixels[(oy * W + ox) * 3]);
            }
        }
        off += ph * (rowbytes + 1);
    }
    return img;
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

std::vector<uint8_t> pngContainer(int width, int height, int depth, int color, const std::vector<uint8_t>& raw, bool compress) {
    std::vector<uint8_t> out(kPngSignature, kPngSignature + 8);
    auto chunk = [&](const char* type, const std::vector<uint8_t>& body) {
        putBe32(out, uint32_t(body.size()));
        size_t start = out.size();
        out.insert(out.end(), type, type + 4);
        out.insert(out.end(), body.begin(), body.end());
        putBe32(out, crc32(out.data() + start, body.size() + 4));
    };
    std::vector<uint8_t> ihdr;
    putBe32(ihdr, uint32_t(width));
    putBe32(ihdr, uint32_t(height));
    ihdr.insert(ihdr.end(), {uint8_t(depth), uint8_t(color), 0, 0, 0});
    chunk("IHDR", ihdr);
    chunk("IDAT", zlibCompress(raw.data(), raw.size(), compress));
    chunk("IEND", {});
    return out;
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
    if (size >= 8 && std::memcmp(data, kPngSignature, 8) == 0) return decodePng(data, size, name);
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

std::vector<uint8_t> encodePng(const uint8_t* pixels, int width, int height, int channels, bool compress) {
    checkSize(width, height);
    if (channels != 1 && channels != 3) throw usageError("PNG encoder takes 1 or 3 channels, got " + std::to_string(channels) + "; convert the image first");
    size_t rowbytes = size_t(width) * size_t(channels);
    std::vector<uint8_t> raw;
    raw.reserve((rowbytes + 1) * size_t(height));
    for (int y = 0; y < height; ++y) {
        raw.push_back(0);  // filter: none
        raw.insert(raw.end(), pixels + size_t(y) * rowbytes, pixels + size_t(y + 1) * rowbytes);
    }
    return pngContainer(width, height, 8, channels == 1 ? 0 : 2, raw, compress);
}

std::vector<uint8_t> encodePng16(const uint16_t* pixels, int width, int height, bool compress) {
    checkSize(width, height);
    std::vector<uint8_t> raw;
    raw.reserve((size_t(width) * 2 + 1) * size_t(height));
    for (int y = 0; y < height; ++y) {
        raw.push_back(0);
        for (int x = 0; x < width; ++x) {
            uint16_t v = pixels[size_t(y) * size_t(width) + size_t(x)];
            raw.push_back(uint8_t(v >> 8));
            raw.push_back(uint8_t(v));
        }
    }
    return pngContainer(width, height, 16, 0, raw, compress);
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

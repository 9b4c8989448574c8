// segdeploy runtime: PNG through libpng (see png_io.h for the contract, image.h for the conversions).
#include "png_io.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "segdeploy/error.h"

#ifdef SEGDEPLOY_HAVE_PNG
#include <png.h>

#include <csetjmp>
#endif

namespace segdeploy::png {

namespace {

constexpr uint64_t kMaxPixels = uint64_t(1) << 28;  // 268 M pixels: refuse decompression bombs
const char* const kCorrupt = "the file is corrupt or truncated: re-encode or replace it";

[[noreturn]] void badImage(const std::string& name, const std::string& why, const char* fix = kCorrupt) {
    throw Error("cannot read image " + name + ": " + why + "; " + fix);
}

}  // namespace

#ifndef SEGDEPLOY_HAVE_PNG

bool supported() { return false; }

Image decodePng(const uint8_t*, size_t, const std::string& name) {
    badImage(name, "this build of the segdeploy runtime has no PNG support (libpng was not found when it was built)",
             "install libpng-dev (and zlib1g-dev) and rebuild the runtime, or convert the image to PPM/PGM");
}

std::vector<uint8_t> encodePngRows(const uint8_t*, int, int, int, bool) {
    throw Error("cannot write PNG: this build of the segdeploy runtime has no PNG support (libpng was not found when it "
                "was built); install libpng-dev (and zlib1g-dev) and rebuild the runtime, or write .ppm/.pgm");
}

#else

namespace {

// Where libpng's error callback leaves its message before it longjmps (a plain buffer: nothing to destroy).
struct Failure {
    char message[200] = "libpng error";
};

struct Source {
    const uint8_t* data;
    size_t size;
    size_t pos;
};

void onError(png_structp png, png_const_charp message) {
    auto* failure = static_cast<Failure*>(png_get_error_ptr(png));
    std::snprintf(failure->message, sizeof failure->message, "%s", message ? message : "libpng error");
    png_longjmp(png, 1);
}

void onWarning(png_structp, png_const_charp) {}  // warnings (e.g. an ancillary chunk's CRC) do not stop a read

void readBytes(png_structp png, png_bytep out, size_t n) {
    auto* src = static_cast<Source*>(png_get_io_ptr(png));
    if (src->size - src->pos < n) png_error(png, "PNG data is truncated");
    std::memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

// Owns a libpng read or write struct and its info struct.
struct PngHandle {
    bool reading;
    Failure failure;
    png_structp png = nullptr;
    png_infop info = nullptr;

    explicit PngHandle(bool read) : reading(read) {
        png = read ? png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, onError, onWarning)
                   : png_create_write_struct(PNG_LIBPNG_VER_STRING, &failure, onError, onWarning);
        if (png) info = png_create_info_struct(png);
        if (!png || !info) {
            destroy();
            throw Error(std::string("libpng could not allocate its ") + (read ? "reader" : "writer") +
                        "; free memory and retry");
        }
    }
    ~PngHandle() { destroy(); }
    PngHandle(const PngHandle&) = delete;
    PngHandle& operator=(const PngHandle&) = delete;

    void destroy() {
        if (reading) png_destroy_read_struct(png ? &png : nullptr, info ? &info : nullptr, nullptr);
        else png_destroy_write_struct(png ? &png : nullptr, info ? &info : nullptr);
    }
};

// Rows as libpng delivers them after the transforms set in readRows.
struct Layout {
    png_uint_32 width = 0, height = 0;
    int channels = 0;      // 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA
    bool gray16 = false;   // 16-bit gray kept as is (Pillow clamps it), every other image is 8-bit
    size_t rowbytes = 0;
};

// Reads the header, sets the transforms, reads every row into `pixels`. libpng may longjmp out of any call here
// (to decodePng's setjmp): this frame holds no object with a destructor while libpng runs.
Layout readRows(PngHandle& h, std::vector<uint8_t>& pixels, std::vector<png_bytep>& rows, const std::string& name) {
    // interpret only the critical chunks: colour profiles, gamma, text, tRNS ... neither change pixels nor fail
    static const png_byte kIgnored[] = "bKGD\0cHRM\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0sCAL\0sPLT\0"
                                       "sRGB\0sTER\0tEXt\0tIME\0tRNS\0zTXt";
    png_set_keep_unknown_chunks(h.png, PNG_HANDLE_CHUNK_NEVER, nullptr, 0);
    png_set_keep_unknown_chunks(h.png, PNG_HANDLE_CHUNK_NEVER, kIgnored, int(sizeof kIgnored / 5));
    png_set_benign_errors(h.png, 0);
    png_read_info(h.png, h.info);
    Layout l;
    l.width = png_get_image_width(h.png, h.info);
    l.height = png_get_image_height(h.png, h.info);
    if (uint64_t(l.width) * l.height > kMaxPixels) {
        badImage(name, "image is " + std::to_string(l.width) + "x" + std::to_string(l.height) +
                 " pixels, more than this reader accepts (2^28)", "downscale it first");
    }
    const int color = png_get_color_type(h.png, h.info);
    const int depth = png_get_bit_depth(h.png, h.info);
    l.gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(h.png);  // an index beyond PLTE reads black
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(h.png);  // x255, x85, x17
    if (depth == 16 && !l.gray16) png_set_strip_16(h.png);  // the high byte, as Pillow
    png_set_interlace_handling(h.png);
    png_read_update_info(h.png, h.info);
    l.channels = png_get_channels(h.png, h.info);
    l.rowbytes = png_get_rowbytes(h.png, h.info);
    pixels.resize(l.rowbytes * l.height);
    rows.resize(l.height);
    for (png_uint_32 y = 0; y < l.height; ++y) rows[y] = pixels.data() + size_t(y) * l.rowbytes;
    png_read_image(h.png, rows.data());  // the rows only: nothing after the image data is needed
    return l;
}

// Decoded rows -> 8-bit RGB (gray replicated, alpha dropped, 16-bit gray clamped to 255).
Image toRgb(const std::vector<uint8_t>& pixels, const Layout& l) {
    Image img;
    img.width = int(l.width);
    img.height = int(l.height);
    img.channels = 3;
    img.pixels.resize(size_t(l.width) * l.height * 3);
    for (png_uint_32 y = 0; y < l.height; ++y) {
        const uint8_t* row = pixels.data() + size_t(y) * l.rowbytes;
        uint8_t* out = img.pixels.data() + size_t(y) * l.width * 3;
        for (png_uint_32 x = 0; x < l.width; ++x, out += 3) {
            if (l.gray16) {
                unsigned v = (unsigned(row[2 * x]) << 8) | row[2 * x + 1];
                out[0] = out[1] = out[2] = uint8_t(std::min(v, 255u));
            } else if (l.channels <= 2) {
                out[0] = out[1] = out[2] = row[size_t(x) * size_t(l.channels)];
            } else {
                std::memcpy(out, row + size_t(x) * size_t(l.channels), 3);
            }
        }
    }
    return img;
}

// Appends to the std::vector behind the io pointer; never lets an exception cross libpng's C frames.
bool append(std::vector<uint8_t>& sink, const uint8_t* data, size_t n) noexcept {
    try {
        sink.insert(sink.end(), data, data + n);
        return true;
    } catch (...) {
        return false;
    }
}

void writeBytes(png_structp png, png_bytep data, size_t n) {
    if (!append(*static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png)), data, n)) png_error(png, "out of memory");
}

void flushNothing(png_structp) {}

}  // namespace

bool supported() { return true; }

Image decodePng(const uint8_t* data, size_t size, const std::string& name) {
    PngHandle h(true);
    Source src{data, size, 0};
    std::vector<uint8_t> pixels;
    std::vector<png_bytep> rows;
    if (setjmp(png_jmpbuf(h.png))) badImage(name, h.failure.message);
    png_set_read_fn(h.png, &src, readBytes);
    const Layout layout = readRows(h, pixels, rows, name);
    return toRgb(pixels, layout);
}

std::vector<uint8_t> encodePngRows(const uint8_t* rows, int width, int height, int bit_depth, bool gray) {
    if (width <= 0 || height <= 0) {
        throw usageError("cannot encode an image of size " + std::to_string(width) + "x" + std::to_string(height) +
                         "; width and height must be positive");
    }
    PngHandle h(false);
    std::vector<uint8_t> out;
    std::vector<png_bytep> pointers(static_cast<size_t>(height));
    const size_t rowbytes = size_t(width) * (gray ? 1 : 3) * size_t(bit_depth / 8);
    for (size_t y = 0; y < pointers.size(); ++y) pointers[y] = const_cast<png_bytep>(rows + y * rowbytes);
    if (setjmp(png_jmpbuf(h.png))) {
        throw Error(std::string("cannot encode PNG: ") + h.failure.message + "; free memory or write .ppm/.pgm instead");
    }
    png_set_write_fn(h.png, &out, writeBytes, flushNothing);
    png_set_IHDR(h.png, h.info, png_uint_32(width), png_uint_32(height), bit_depth,
                 gray ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(h.png, h.info);
    png_write_image(h.png, pointers.data());  // 16-bit samples are already big-endian (PNG's byte order)
    png_write_end(h.png, nullptr);
    return out;
}

#endif  // SEGDEPLOY_HAVE_PNG

}  // namespace segdeploy::png

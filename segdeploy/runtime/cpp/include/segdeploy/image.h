// segdeploy runtime: 8-bit images and class maps, and their files (PNG through libpng, PPM/PGM).
//
// Reading (readImage / decodeImage) gives HxWx3 8-bit RGB exactly as segdeploy's Python side gets it
// (segdeploy.datasets.read_image: PIL.Image.open(path).convert("RGB")):
//  * PNG through libpng (when the runtime was built with it: pngSupported()), every standard colour type and bit
//    depth, interlaced or not; libpng checks the CRCs and the zlib stream. Gray 1/2/4-bit is scaled to 0..255
//    (x255, x85, x17) and replicated; 16-bit gray is CLAMPED to 255 (Pillow's I;16 -> RGB conversion); other
//    16-bit images keep the high byte; alpha is dropped (no compositing); palette indices are looked up in PLTE
//    (an index beyond it is black; tRNS ignored). No gamma or background handling; EXIF orientation is not
//    applied (as in Python). Images above 2^28 pixels are refused before any pixel memory is allocated.
//  * PPM (P6) and PGM (P5) with maxval 255 (gray is replicated) -- always available.
//  Errors: segdeploy::Error "cannot read image <name>: <reason>; <fix>" (one line; libpng's own messages are kept).
// Writing: writeImage / writeClassMap pick the format from the extension (.png needs libpng; .ppm, .pgm). Class
// maps are 8-bit gray when every label < 256, else 16-bit gray (PNG: big-endian; PGM: maxval 65535). Files are
// written to a temporary name beside the target and renamed.
// Without libpng (CMake found none, or -DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON) PNG reading and writing fail with a
// one-line error naming the fix (install libpng-dev and rebuild, or use PPM/PGM).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace segdeploy {

//! Byte order of the pixels of an 8-bit, 3-channel interleaved image.
enum class PixelFormat { kRGB8, kBGR8 };

//! A non-owning view of an 8-bit interleaved 3-channel image (e.g. a cv::Mat's data with kBGR8).
struct ImageView {
    const uint8_t* data = nullptr;
    int width = 0;
    int height = 0;
    size_t row_stride = 0;  //!< bytes from one row to the next; 0 = width * 3 (tightly packed)
    PixelFormat format = PixelFormat::kRGB8;

    size_t stride() const { return row_stride ? row_stride : size_t(width) * 3; }
};

//! An owned, tightly packed 8-bit image with 1 (gray) or 3 (RGB) channels.
struct Image {
    int width = 0;
    int height = 0;
    int channels = 3;
    std::vector<uint8_t> pixels;  //!< height * width * channels bytes, row-major

    //! View of a 3-channel image (`format` says how its bytes are ordered; decoded images are RGB).
    ImageView view(PixelFormat format = PixelFormat::kRGB8) const;
};

//! Per-pixel class ids at the ORIGINAL image size (argmax over the model's classes).
struct ClassMap {
    int width = 0;
    int height = 0;
    std::vector<uint16_t> labels;  //!< height * width, row-major

    uint16_t at(int y, int x) const { return labels[size_t(y) * size_t(width) + size_t(x)]; }
};

//! Decode PNG / PPM / PGM bytes to 8-bit RGB (see the conversions above). `name` appears in errors.
Image decodeImage(const uint8_t* data, size_t size, const std::string& name);
//! Read an image file (format from its first bytes, not its name) as 8-bit RGB.
Image readImage(const std::string& path);

//! True when this build reads and writes PNG (libpng was found at build time).
bool pngSupported();

//! Encode an 8-bit gray (channels 1) or RGB (channels 3) image as PNG (libpng, default compression).
std::vector<uint8_t> encodePng(const uint8_t* pixels, int width, int height, int channels);
//! Encode a 16-bit gray image as PNG (samples written big-endian).
std::vector<uint8_t> encodePng16(const uint16_t* pixels, int width, int height);

//! Write `image` to `path` (.png, .ppm for RGB, .pgm for gray). Errors name the path and the fix.
void writeImage(const std::string& path, const Image& image);
//! Write a class map to `path` (.png or .pgm): 8-bit gray when all labels < 256, else 16-bit gray.
void writeClassMap(const std::string& path, const ClassMap& map);

}  // namespace segdeploy

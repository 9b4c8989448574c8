// segdeploy runtime: PNG decoding and encoding through libpng (internal; image.h holds the public contract).
//
// Contract:
//  * decodePng(data, size, name) -> 8-bit RGB Image with Pillow's conversions (image.h lists them); throws
//    segdeploy::Error "cannot read image <name>: <libpng's message or ours>; <fix>". Ancillary chunks are not
//    interpreted (only IHDR, PLTE, IDAT, IEND), so colour profiles and text chunks never affect pixels or fail a
//    read; libpng's "benign" errors (e.g. a zlib checksum mismatch) are errors.
//  * encodePngRows(rows, width, height, bit_depth, gray) -> PNG bytes of tightly packed rows (8-bit gray or RGB,
//    or 16-bit gray with big-endian samples), default zlib compression, no ancillary chunks.
//  * Built without libpng (SEGDEPLOY_HAVE_PNG undefined), both throw segdeploy::Error naming the fix.
// libpng reports errors with longjmp: the functions that call it keep every C++ object they own outside the
// jumped-over region and the callbacks store messages in a plain buffer (see png_io.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "segdeploy/image.h"

namespace segdeploy::png {

bool supported();
Image decodePng(const uint8_t* data, size_t size, const std::string& name);
std::vector<uint8_t> encodePngRows(const uint8_t* rows, int width, int height, int bit_depth, bool gray);

}  // namespace segdeploy::png

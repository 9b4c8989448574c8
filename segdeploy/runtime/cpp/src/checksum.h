// segdeploy runtime (internal): Adler-32 (zlib streams) and CRC-32 (PNG chunks).
#pragma once

#include <cstddef>
#include <cstdint>

namespace segdeploy {

inline uint32_t adler32(const uint8_t* data, size_t size, uint32_t start = 1) {
    uint32_t a = start & 0xFFFF, b = start >> 16;
    while (size > 0) {
        size_t n = size < 5552 ? size : 5552;  // largest n with no uint32 overflow before the modulo
        size -= n;
        while (n--) {
            a += *data++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

//! CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320) continuing from `crc` (0 to start).
inline uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0) {
    struct Table {
        uint32_t v[256];
        Table() {
            for (uint32_t n = 0; n < 256; ++n) {
                uint32_t c = n;
                for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
                v[n] = c;
            }
        }
    };
    static const Table table;
    crc = ~crc;
    for (size_t i = 0; i < size; ++i) crc = table.v[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

}  // namespace segdeploy

// segdeploy runtime: zlib streams (RFC 1950) with our own inflate (RFC 1951: stored, fixed and dynamic Huffman
// blocks) and a small deflate (one fixed-Huffman block with greedy LZ77, or stored blocks). No third-party code.
#include <array>
#include <cstring>

#include "checksum.h"
#include "segdeploy/error.h"
#include "segdeploy/image.h"

namespace segdeploy {

namespace {

// ----------------------------------------------------------------------------------------------- tables
constexpr uint16_t kLenBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr uint8_t kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr uint16_t kDistBase[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,   33,   49,   65,   97,   129,
                                    193,  257,  385,  513,  769,  1025,  1537,  2049,  3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
constexpr uint8_t kCodeLengthOrder[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

// ----------------------------------------------------------------------------------------------- inflate
class Inflater {
public:
    Inflater(const uint8_t* data, size_t size, size_t max_out, const std::string& name)
        : in_(data), size_(size), max_out_(max_out), name_(name) {}

    std::vector<uint8_t> run() {
        if (size_ < 2) fail("zlib stream shorter than its header");
        unsigned cmf = in_[0], flg = in_[1];
        if ((cmf & 0x0F) != 8 || (cmf >> 4) > 7) fail("not a deflate zlib stream");
        if ((cmf * 256 + flg) % 31 != 0) fail("bad zlib header check bits");
        if (flg & 0x20) fail("zlib preset dictionary (not allowed in PNG)");
        pos_ = 2;
        bool last = false;
        while (!last) {
            last = bits(1) != 0;
            unsigned type = bits(2);
            if (type == 0) stored();
            else if (type == 1) fixed();
            else if (type == 2) dynamic();
            else fail("invalid deflate block type 3");
        }
        // Adler-32, big-endian, at the next byte boundary.
        alignToByte();
        if (size_ - pos_ < 4) fail("zlib stream truncated before its Adler-32 checksum");
        uint32_t want = (uint32_t(in_[pos_]) << 24) | (uint32_t(in_[pos_ + 1]) << 16) | (uint32_t(in_[pos_ + 2]) << 8) |
                        uint32_t(in_[pos_ + 3]);
        if (adler32(out_.data(), out_.size()) != want) fail("zlib Adler-32 checksum mismatch (corrupt data)");
        return std::move(out_);
    }

private:
    struct Huffman {
        uint16_t count[16] = {};
        uint16_t symbol[288] = {};
        uint16_t fast[1 << 9] = {};  // next 9 bits (LSB-first) -> symbol | (length << 9); 0 = longer code
    };

    const uint8_t* in_;
    size_t size_;
    size_t pos_ = 0;
    uint32_t bitbuf_ = 0;
    int bitcnt_ = 0;
    size_t max_out_;
    const std::string& name_;
    std::vector<uint8_t> out_;

    [[noreturn]] void fail(const std::string& why) const {
        throw Error("cannot read image " + name_ + ": " + why + "; the file is corrupt: re-encode or replace it");
    }

    unsigned bits(int need) {
        while (bitcnt_ < need) {
            if (pos_ >= size_) fail("compressed data is truncated");
            bitbuf_ |= uint32_t(in_[pos_++]) << bitcnt_;
            bitcnt_ += 8;
        }
        unsigned v = bitbuf_ & ((1u << need) - 1u);
        bitbuf_ >>= need;
        bitcnt_ -= need;
        return v;
    }

    void put(uint8_t b) {
        if (out_.size() >= max_out_) fail("more image data than the header announces");
        out_.push_back(b);
    }

    // Drop the bits left in the current byte and give back the whole bytes decode() read ahead.
    void alignToByte() {
        pos_ -= size_t(bitcnt_ / 8);
        bitbuf_ = 0;
        bitcnt_ = 0;
    }

    void stored() {
        alignToByte();
        if (size_ - pos_ < 4) fail("stored block truncated");
        unsigned len = in_[pos_] | (unsigned(in_[pos_ + 1]) << 8);
        unsigned nlen = in_[pos_ + 2] | (unsigned(in_[pos_ + 3]) << 8);
        pos_ += 4;
        if (len != (~nlen & 0xFFFFu)) fail("stored block length check failed");
        if (size_ - pos_ < len) fail("stored block truncated");
        if (out_.size() + len > max_out_) fail("more image data than the header announces");
        out_.insert(out_.end(), in_ + pos_, in_ + pos_ + len);
        pos_ += len;
    }

    // Canonical Huffman code from code lengths. Over-subscribed codes are refused; incomplete codes are
    // accepted (a missing code then fails when it is met).
    void build(Huffman& h, const uint8_t* lengths, int n) {
        h = Huffman{};
        for (int s = 0; s < n; ++s) h.count[lengths[s]]++;
        if (h.count[0] == n) return;  // no codes: any decode fails
        int left = 1;
        for (int len = 1; len < 16; ++len) {
            left <<= 1;
            left -= h.count[len];
            if (left < 0) fail("over-subscribed Huffman code");
        }
        uint16_t offs[16];
        offs[1] = 0;
        for (int len = 1; len < 15; ++len) offs[len + 1] = uint16_t(offs[len] + h.count[len]);
        for (int s = 0; s < n; ++s) {
            if (lengths[s]) h.symbol[offs[lengths[s]]++] = uint16_t(s);
        }
        // fast table: walk the codes in canonical order
        unsigned code = 0;
        int index = 0;
        for (int len = 1; len <= 9; ++len) {
            for (int k = 0; k < h.count[len]; ++k) {
                unsigned rev = 0;
                for (int b = 0; b < len; ++b) rev |= ((code >> b) & 1u) << (len - 1 - b);
                for (unsigned fill = rev; fill < (1u << 9); fill += (1u << len)) {
                    h.fast[fill] = uint16_t(h.symbol[index] | (len << 9));
                }
                ++code;
                ++index;
            }
            code <<= 1;
        }
    }

    int decode(const Huffman& h) {
        // fast path: 9 bits available (or obtainable)
        while (bitcnt_ < 9 && pos_ < size_) {
            bitbuf_ |= uint32_t(in_[pos_++]) << bitcnt_;
            bitcnt_ += 8;
        }
        if (bitcnt_ >= 9) {
            uint16_t e = h.fast[bitbuf_ & 0x1FF];
            if (e) {
                int len = e >> 9;
                bitbuf_ >>= len;
                bitcnt_ -= len;
                return e & 0x1FF;
            }
        }
        // slow path: one bit at a time (canonical decoding)
        int code = 0, first = 0, index = 0;
        for (int len = 1; len < 16; ++len) {
            code |= int(bits(1));
            int count = h.count[len];
            if (code - first < count) return h.symbol[index + (code - first)];
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        fail("invalid Huffman code");
    }

    void codes(const Huffman& lit, const Huffman& dist) {
        for (;;) {
            int sym = decode(lit);
            if (sym < 256) {
                put(uint8_t(sym));
                continue;
            }
            if (sym == 256) return;
            sym -= 257;
            if (sym >= 29) fail("invalid length symbol");
            size_t len = kLenBase[sym] + bits(kLenExtra[sym]);
            int dsym = decode(dist);
            if (dsym >= 30) fail("invalid distance symbol");
            size_t d = kDistBase[dsym] + bits(kDistExtra[dsym]);
            if (d > out_.size()) fail("distance too far back");
            if (out_.size() + len > max_out_) fail("more image data than the header announces");
            size_t from = out_.size() - d;
            for (size_t i = 0; i < len; ++i) out_.push_back(out_[from + i]);
        }
    }

    void fixed() {
        static const auto tables = [] {
            std::array<uint8_t, 288 + 30> l{};
            for (int s = 0; s < 144; ++s) l[s] = 8;
            for (int s = 144; s < 256; ++s) l[s] = 9;
            for (int s = 256; s < 280; ++s) l[s] = 7;
            for (int s = 280; s < 288; ++s) l[s] = 8;
            for (int s = 0; s < 30; ++s) l[288 + s] = 5;
            return l;
        }();
        Huffman lit, dist;
        build(lit, tables.data(), 288);
        build(dist, tables.data() + 288, 30);
        codes(lit, dist);
    }

    void dynamic() {
        int nlen = int(bits(5)) + 257;
        int ndist = int(bits(5)) + 1;
        int ncode = int(bits(4)) + 4;
        if (nlen > 286 || ndist > 30) fail("bad dynamic block code counts");
        uint8_t lengths[320] = {};
        for (int i = 0; i < ncode; ++i) lengths[kCodeLengthOrder[i]] = uint8_t(bits(3));
        Huffman lencode;
        build(lencode, lengths, 19);
        std::memset(lengths, 0, sizeof lengths);
        int index = 0;
        while (index < nlen + ndist) {
            int sym = decode(lencode);
            if (sym < 16) {
                lengths[index++] = uint8_t(sym);
                continue;
            }
            int rep;
            uint8_t value = 0;
            if (sym == 16) {
                if (index == 0) fail("repeat with no previous code length");
                value = lengths[index - 1];
                rep = 3 + int(bits(2));
            } else if (sym == 17) {
                rep = 3 + int(bits(3));
            } else {
                rep = 11 + int(bits(7));
            }
            if (index + rep > nlen + ndist) fail("too many code lengths");
            while (rep--) lengths[index++] = value;
        }
        if (lengths[256] == 0) fail("no end-of-block code");
        Huffman lit, dist;
        build(lit, lengths, nlen);
        build(dist, lengths + nlen, ndist);
        codes(lit, dist);
    }
};

// ----------------------------------------------------------------------------------------------- deflate
class BitWriter {
public:
    std::vector<uint8_t>& out;
    uint32_t buf = 0;
    int cnt = 0;
    explicit BitWriter(std::vector<uint8_t>& o) : out(o) {}
    void put(uint32_t value, int n) {  // LSB-first
        buf |= value << cnt;
        cnt += n;
        while (cnt >= 8) {
            out.push_back(uint8_t(buf));
            buf >>= 8;
            cnt -= 8;
        }
    }
    void code(uint32_t code, int len) {  // Huffman codes go MSB-first
        uint32_t rev = 0;
        for (int b = 0; b < len; ++b) rev |= ((code >> b) & 1u) << (len - 1 - b);
        put(rev, len);
    }
    void flush() {
        if (cnt > 0) out.push_back(uint8_t(buf));
        buf = 0;
        cnt = 0;
    }
};

void putLiteral(BitWriter& w, unsigned v) {
    if (v < 144) w.code(0x30 + v, 8);
    else if (v < 256) w.code(0x190 + (v - 144), 9);
    else if (v < 280) w.code(v - 256, 7);
    else w.code(0xC0 + (v - 280), 8);
}

void putMatch(BitWriter& w, unsigned len, unsigned dist) {
    int ls = 28;
    while (kLenBase[ls] > len) --ls;
    putLiteral(w, 257 + unsigned(ls));
    if (kLenExtra[ls]) w.put(len - kLenBase[ls], kLenExtra[ls]);
    int ds = 29;
    while (kDistBase[ds] > dist) --ds;
    w.code(unsigned(ds), 5);
    if (kDistExtra[ds]) w.put(dist - kDistBase[ds], kDistExtra[ds]);
}

void deflateFixed(const uint8_t* data, size_t size, std::vector<uint8_t>& out) {
    constexpr size_t kWindow = 32768, kMaxLen = 258, kMinLen = 3;
    constexpr int kHashBits = 15, kMaxChain = 32;
    BitWriter w(out);
    w.put(1, 1);  // BFINAL
    w.put(1, 2);  // BTYPE = 01 (fixed Huffman)
    std::vector<int64_t> head(size_t(1) << kHashBits, -1);
    std::vector<int64_t> prev(kWindow, -1);
    auto hash = [&](size_t i) {
        uint32_t h = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
        return (h * 2654435761u) >> (32 - kHashBits);
    };
    auto insert = [&](size_t i) {
        if (i + kMinLen > size) return;
        uint32_t h = hash(i);
        prev[i % kWindow] = head[h];
        head[h] = int64_t(i);
    };
    size_t i = 0;
    while (i < size) {
        size_t best_len = 0, best_dist = 0;
        if (i + kMinLen <= size) {
            int64_t cand = head[hash(i)];
            size_t limit = std::min(kMaxLen, size - i);
            for (int chain = 0; cand >= 0 && chain < kMaxChain; ++chain) {
                size_t c = size_t(cand);
                if (i - c > kWindow - 1) break;
                size_t l = 0;
                while (l < limit && data[c + l] == data[i + l]) ++l;
                if (l > best_len) {
                    best_len = l;
                    best_dist = i - c;
                    if (l == limit) break;
                }
                int64_t nxt = prev[c % kWindow];
                if (nxt >= cand) break;  // stale entry of an overwritten window slot
                cand = nxt;
            }
        }
        if (best_len >= kMinLen) {
            putMatch(w, unsigned(best_len), unsigned(best_dist));
            for (size_t k = 0; k < best_len; ++k) insert(i + k);
            i += best_len;
        } else {
            putLiteral(w, data[i]);
            insert(i);
            ++i;
        }
    }
    putLiteral(w, 256);
    w.flush();
}

void deflateStored(const uint8_t* data, size_t size, std::vector<uint8_t>& out) {
    size_t pos = 0;
    do {
        size_t n = std::min<size_t>(65535, size - pos);
        bool last = (pos + n == size);
        out.push_back(last ? 1 : 0);  // BFINAL + BTYPE 00, padded to the byte boundary
        out.push_back(uint8_t(n));
        out.push_back(uint8_t(n >> 8));
        out.push_back(uint8_t(~n));
        out.push_back(uint8_t(~n >> 8));
        out.insert(out.end(), data + pos, data + pos + n);
        pos += n;
    } while (pos < size);
}

}  // namespace

std::vector<uint8_t> zlibDecompress(const uint8_t* data, size_t size, size_t max_out, const std::string& name) {
    return Inflater(data, size, max_out, name).run();
}

std::vector<uint8_t> zlibCompress(const uint8_t* data, size_t size, bool compress) {
    std::vector<uint8_t> out = {0x78, 0x01};
    if (compress) deflateFixed(data, size, out);
    else deflateStored(data, size, out);
    uint32_t a = adler32(data, size);
    for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(a >> s));
    return out;
}

}  // namespace segdeploy

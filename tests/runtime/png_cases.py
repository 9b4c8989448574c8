"""A small PNG encoder for the tests: every colour type and bit depth, Adam7 interlacing, a chosen filter per
row (all five), any zlib level/strategy and IDAT split into several chunks -- the cases Pillow's own writer does
not produce. Pillow decodes the results as the reference."""

from __future__ import annotations

import struct
import zlib

import numpy as np

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pack_row(row: np.ndarray, depth: int) -> bytes:
    """One row of samples (w, c) -> bytes at `depth` bits per sample (MSB first below 8, big-endian 16)."""
    flat = row.reshape(-1).astype(np.uint32)
    if depth == 16:
        return flat.astype(">u2").tobytes()
    if depth == 8:
        return flat.astype(np.uint8).tobytes()
    per = 8 // depth
    out = bytearray((len(flat) + per - 1) // per)
    for i, v in enumerate(flat):
        out[i // per] |= int(v) << (8 - depth - (i % per) * depth)
    return bytes(out)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filter(raw: bytes, prev: bytes | None, ftype: int, bpp: int) -> bytes:
    out = bytearray(len(raw))
    for i, x in enumerate(raw):
        a = raw[i - bpp] if i >= bpp else 0
        b = prev[i] if prev is not None else 0
        c = prev[i - bpp] if prev is not None and i >= bpp else 0
        pred = (0, a, b, (a + b) >> 1, _paeth(a, b, c))[ftype]
        out[i] = (x - pred) & 0xFF
    return bytes(out)


def encode(samples: np.ndarray, color: int, depth: int, *, interlace: bool = False, palette: bytes | None = None,
           level: int = 6, strategy: int = zlib.Z_DEFAULT_STRATEGY, idat_parts: int = 1, seed: int = 0) -> bytes:
    """samples: (h, w, channels) integers in range for `depth`. Filters are drawn at random per row."""
    rng = np.random.default_rng(seed)
    h, w, c = samples.shape
    assert c == CHANNELS[color]
    bpp = max(1, c * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        prev = None
        for row in sub:
            packed = _pack_row(row, depth)
            ftype = int(rng.integers(0, 5))
            raw += bytes([ftype]) + _filter(packed, prev, ftype, bpp)
            prev = packed
    comp = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    data = comp.compress(bytes(raw)) + comp.flush()
    cuts = sorted(set(int(v) for v in rng.integers(1, max(2, len(data)), size=idat_parts - 1))) if idat_parts > 1 else []
    parts = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])]
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, int(interlace)))
    out += chunk(b"tEXt", b"Comment\x00segdeploy test")  # an ancillary chunk to skip
    if palette is not None:
        out += chunk(b"PLTE", palette)
    for p in parts:
        out += chunk(b"IDAT", p)
    return out + chunk(b"IEND", b"")


def cases(rng: np.random.Generator):
    """(name, png bytes) for every colour type / depth, interlaced or not, odd sizes, several zlib settings."""
    strategies = [zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED]
    combos = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
              (4, 8), (4, 16), (6, 8), (6, 16)]
    k = 0
    for color, depth in combos:
        for interlace in (False, True):
            for h, w in [(1, 1), (3, 5), (37, 23)]:
                top = (1 << depth) - 1
                samples = rng.integers(0, top + 1, size=(h, w, CHANNELS[color]), dtype=np.int64)
                if depth == 16 and color == 0:
                    samples[..., 0] = np.where(rng.random((h, w)) < 0.5, rng.integers(0, 300, (h, w)), samples[..., 0])
                palette = None
                if color == 3:
                    entries = max(1, (top + 1) * 3 // 4)  # some indices fall beyond the palette
                    palette = rng.integers(0, 256, entries * 3, dtype=np.uint8).tobytes()
                level = int(rng.integers(0, 10))
                png = encode(samples, color, depth, interlace=interlace, palette=palette, level=level,
                             strategy=strategies[k % len(strategies)], idat_parts=1 + k % 3, seed=k)
                k += 1
                yield f"c{color}_d{depth}_{'i' if interlace else 'n'}_{h}x{w}", png

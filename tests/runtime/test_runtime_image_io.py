"""The C++ runtime's image I/O (segdeploy/runtime/cpp/src/image.cpp, png_io.cpp: libpng + PPM/PGM) against Pillow.

* Decoding: every shipped validation PNG, and generated PNGs of every colour type / bit depth, interlaced or
  not, all five row filters, several zlib levels and strategies and IDAT split over chunks, PNGs with colour
  profiles, gamma, transparency and text chunks, give exactly the HxWx3 RGB array of
  segdeploy.datasets.read_image (Pillow + convert("RGB")); PPM/PGM too.
* Encoding: our PNG/PPM/PGM files read back identically in Pillow.
* Broken files: a one-line error and exit status 1, never a crash.
* Without libpng (the core compiled as CMake does when it finds none): PPM/PGM work, PNG fails in one line.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

import png_cases
import rt_util
from segdeploy.datasets import read_image


def _decode(harness, path, tmp_path) -> np.ndarray:
    out = tmp_path / "decoded.raw"
    harness.run("decode", path, out)
    b = out.read_bytes()
    h, w = (int(v) for v in np.frombuffer(b[:8], np.int32))
    return np.frombuffer(b[8:], np.uint8).reshape(h, w, 3)


def test_shipped_images_decode_like_pillow(harness, tmp_path):
    assert len(rt_util.VAL_IMAGES) == 64
    for p in rt_util.VAL_IMAGES:
        np.testing.assert_array_equal(_decode(harness, p, tmp_path), read_image(p), err_msg=p.name)


def test_every_png_kind_decodes_like_pillow(harness, tmp_path):
    n = 0
    for name, png in png_cases.cases(np.random.default_rng(0)):
        path = tmp_path / f"{name}.png"
        path.write_bytes(png)
        np.testing.assert_array_equal(_decode(harness, path, tmp_path), read_image(path), err_msg=name)
        n += 1
    assert n == 90


def test_pillow_written_modes_decode_like_pillow(harness, tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (19, 31, 3), dtype=np.uint8)
    images = {
        "L": Image.fromarray(rgb[..., 0]),
        "LA": Image.fromarray(np.ascontiguousarray(rgb[..., :2])),
        "RGBA": Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
        "P": Image.fromarray(rgb).quantize(17),
        "1": Image.fromarray(rgb[..., 0] > 127),
        "I;16": Image.fromarray((rgb[..., 0].astype(np.uint16) * 3)),
    }
    for mode, im in images.items():
        path = tmp_path / f"pillow_{mode.replace(';', '')}.png"
        im.save(path, optimize=(mode == "P"))
        np.testing.assert_array_equal(_decode(harness, path, tmp_path), read_image(path), err_msg=mode)


def test_pnm_decode_like_pillow(harness, tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    ppm = tmp_path / "a.ppm"
    ppm.write_bytes(b"P6\n# a comment\n11 7\n255\n" + rgb.tobytes())
    pgm = tmp_path / "a.pgm"
    pgm.write_bytes(b"P5 11 # width\n7 255\n" + rgb[..., 0].tobytes())
    for p in (ppm, pgm):
        np.testing.assert_array_equal(_decode(harness, p, tmp_path), read_image(p), err_msg=p.name)
    wide = tmp_path / "wide.pgm"
    wide.write_bytes(b"P5 2 2 65535\n" + bytes(8))
    proc = harness.run("decode", wide, tmp_path / "x", ok=False)
    assert proc.returncode == 1 and "only 8-bit (maxval 255)" in proc.stderr and "convert it to PNG" in proc.stderr


def test_ancillary_chunks_change_nothing(harness, tmp_path):
    """Colour profiles, gamma, sRGB, transparency and text are not applied (Pillow's open + convert("RGB") does not
    apply them either), and a profile libpng would call invalid does not fail the read."""
    rng = np.random.default_rng(8)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    cases = {
        "rgb_trns_icc": (Image.fromarray(rgb), {"transparency": tuple(int(v) for v in rgb[0, 0]), "icc_profile": b"not an ICC profile"}),
        "palette_trns": (Image.fromarray(rgb).quantize(9), {"transparency": 3}),
        "gray_trns": (Image.fromarray(rgb[..., 0]), {"transparency": int(rgb[0, 0, 0])}),
    }
    for name, (im, params) in cases.items():
        path = tmp_path / f"{name}.png"
        im.save(path, **params)
        np.testing.assert_array_equal(_decode(harness, path, tmp_path), read_image(path), err_msg=name)
    # gAMA, sRGB, tEXt chunks inserted after IHDR
    base = (tmp_path / "rgb_trns_icc.png").read_bytes()
    extra = (png_cases.chunk(b"gAMA", (100000).to_bytes(4, "big")) + png_cases.chunk(b"sRGB", b"\x00")
             + png_cases.chunk(b"tEXt", b"Software\x00test"))
    path = tmp_path / "gamma.png"
    path.write_bytes(base[:33] + extra + base[33:])
    np.testing.assert_array_equal(_decode(harness, path, tmp_path), read_image(path))


def test_png_writer_reads_back_in_pillow(harness, tmp_path):
    rng = np.random.default_rng(3)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), 7, 0), 5, 1)  # repeats compress
    for name, px, ch in [("rgb", smooth, 3), ("gray", smooth[..., 1].copy(), 1), ("noise", rng.integers(0, 256, (70, 300, 3), dtype=np.uint8), 3)]:
        raw = tmp_path / f"{name}.raw"
        raw.write_bytes(px.tobytes())
        out = tmp_path / f"{name}.png"
        harness.run("encode-png", raw, out, px.shape[1], px.shape[0], ch)
        back = np.asarray(Image.open(out))
        np.testing.assert_array_equal(back, px, err_msg=name)
        if name != "noise":
            assert out.stat().st_size < px.nbytes / 4  # zlib compresses


@pytest.mark.parametrize("ext", [".png", ".pgm"])
def test_class_map_files(harness, tmp_path, ext):
    rng = np.random.default_rng(4)
    for top in (6, 300):  # 8-bit and 16-bit maps
        labels = rng.integers(0, top, (21, 34)).astype(np.uint16)
        raw = tmp_path / "labels.raw"
        raw.write_bytes(labels.astype("<u2").tobytes())
        out = tmp_path / f"map{top}{ext}"
        harness.run("classmap-file", raw, out, 34, 21)
        im = Image.open(out)
        assert im.mode in (("L",) if top < 256 else ("I;16", "I;16B", "I"))
        np.testing.assert_array_equal(np.asarray(im).astype(np.int64), labels)


def test_write_image_formats(harness, tmp_path):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (5, 9, 3), dtype=np.uint8)
    (tmp_path / "rgb.raw").write_bytes(rgb.tobytes())
    (tmp_path / "gray.raw").write_bytes(rgb[..., 0].tobytes())
    harness.run("write-image", tmp_path / "rgb.raw", tmp_path / "o.ppm", 9, 5, 3)
    harness.run("write-image", tmp_path / "gray.raw", tmp_path / "o.pgm", 9, 5, 1)
    harness.run("write-image", tmp_path / "rgb.raw", tmp_path / "o.PNG", 9, 5, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.ppm")), rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.pgm")), rgb[..., 0])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.PNG")), rgb)
    bad = harness.run("write-image", tmp_path / "rgb.raw", tmp_path / "o.jpg", 9, 5, 3, ok=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "use a .png name" in bad.stderr
    assert not list(tmp_path.glob("*.tmp-*"))  # atomic writes leave no temporary file
    nodir = harness.run("write-image", tmp_path / "rgb.raw", tmp_path / "missing" / "o.png", 9, 5, 3, ok=False)
    assert nodir.returncode == 1 and "choose another output path" in nodir.stderr


def _broken_pngs(good: bytes) -> dict[str, bytes]:
    idat = good.index(b"IDAT")
    bad_crc = bytearray(good)
    bad_crc[idat + 6] ^= 0x01  # data changed, CRC not updated
    # data corrupted AND CRC recomputed: the damage reaches inflate / Adler-32
    length = int.from_bytes(good[idat - 4:idat], "big")
    body = bytearray(good[idat + 4:idat + 4 + length])
    body[len(body) // 2] ^= 0xFF
    recrc = good[:idat + 4] + bytes(body) + zlib.crc32(b"IDAT" + bytes(body)).to_bytes(4, "big") + good[idat + 8 + length:]
    return {
        "empty": b"",
        "signature": b"\x89PNX\r\n\x1a\n" + good[8:],
        "header_only": good[:33],
        "truncated_idat": good[:idat + 20],
        "no_iend_truncated": good[:-20],
        "bad_crc": bytes(bad_crc),
        "bad_deflate": recrc,
        "jpeg": b"\xff\xd8\xff\xe0" + bytes(100),
        "zero_width": good[:16] + b"\x00\x00\x00\x00" + good[20:],
        "bad_depth": good[:24] + b"\x03" + good[25:],
        "palette_missing": png_cases.encode(np.zeros((2, 2, 1), np.int64), 3, 8),
    }


def test_broken_images_give_one_line_errors(harness, tmp_path):
    good = rt_util.VAL_IMAGES[0].read_bytes()
    for name, data in _broken_pngs(good).items():
        p = tmp_path / f"{name}.png"
        p.write_bytes(data)
        proc = harness.run("decode", p, tmp_path / "x.raw", ok=False)
        assert proc.returncode == 1, (name, proc.returncode, proc.stderr)
        assert proc.stderr.startswith(f"error: cannot read image {p}") and proc.stderr.count("\n") == 1, (name, proc.stderr)
    missing = harness.run("decode", tmp_path / "nope.png", tmp_path / "x.raw", ok=False)
    assert missing.returncode == 1 and "not found or not readable; check the path" in missing.stderr


def mutated_pngs(seed: int, count: int):
    """Valid shipped PNGs with random bytes changed and every CRC recomputed, so the damage reaches the
    decoder's later stages (IHDR values, inflate, filters) instead of stopping at a CRC."""
    rng = np.random.default_rng(seed)
    sources = [p.read_bytes() for p in rt_util.VAL_IMAGES[:4]] + [png for _, png in png_cases.cases(np.random.default_rng(9))][:20:3]
    for i in range(count):
        data = bytearray(sources[i % len(sources)])
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(8, len(data)))] = int(rng.integers(0, 256))
        out, pos = bytearray(data[:8]), 8
        while pos + 12 <= len(data):
            n = int.from_bytes(data[pos:pos + 4], "big")
            if pos + 12 + n > len(data):
                break
            kind_body = bytes(data[pos + 4:pos + 8 + n])
            out += data[pos:pos + 8 + n] + zlib.crc32(kind_body).to_bytes(4, "big")
            pos += 12 + n
        out += data[pos:]
        yield bytes(out)


def test_mutated_pngs_never_crash(harness, tmp_path):
    p = tmp_path / "m.png"
    for i, data in enumerate(mutated_pngs(7, 150)):
        p.write_bytes(data)
        proc = harness.run("decode", p, tmp_path / "x.raw", ok=False)
        assert proc.returncode in (0, 1), (i, proc.returncode, proc.stderr[-500:])
        if proc.returncode == 1:
            assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot read image"), proc.stderr


@pytest.mark.slow
def test_core_without_libpng(tmp_path):
    """The core as CMake builds it when libpng is absent (-DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON): PPM/PGM read and
    write as before; a PNG to read or write fails in one line naming the fix."""
    reason = rt_util.missing_dependency()
    if reason:
        pytest.skip(reason)
    h = rt_util.Harness(rt_util.compile_harness(tmp_path, png=False, name="harness_nopng"))
    assert h.run("png-support").stdout.strip() == "0"
    rgb = np.random.default_rng(12).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    (tmp_path / "rgb.raw").write_bytes(rgb.tobytes())
    h.run("write-image", tmp_path / "rgb.raw", tmp_path / "o.ppm", 10, 6, 3)
    np.testing.assert_array_equal(_decode(h, tmp_path / "o.ppm", tmp_path), rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.ppm")), rgb)
    labels = np.arange(60, dtype="<u2").reshape(6, 10) * 7
    (tmp_path / "labels.raw").write_bytes(labels.tobytes())
    h.run("classmap-file", tmp_path / "labels.raw", tmp_path / "map.pgm", 10, 6)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "map.pgm")).astype(np.int64), labels)
    read = h.run("decode", rt_util.VAL_IMAGES[0], tmp_path / "x.raw", ok=False)
    assert read.returncode == 1 and read.stderr.count("\n") == 1, read.stderr
    assert "has no PNG support" in read.stderr and "install libpng-dev" in read.stderr and "PPM/PGM" in read.stderr
    write = h.run("write-image", tmp_path / "rgb.raw", tmp_path / "o.png", 10, 6, 3, ok=False)
    assert write.returncode == 1 and "has no PNG support" in write.stderr and not (tmp_path / "o.png").exists()

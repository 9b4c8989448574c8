"""The C++ runtime's host preprocessing (segdeploy/runtime/cpp/src/preprocess.cpp) against the Python one
(segdeploy.datasets.preprocess.to_batch) on the shipped validation images and a real export's manifest.

Contract checked: identical float32 input tensors to within 1 ulp (observed: bit-identical) and identical
InputInfo, for pad and resize modes, RGB and BGR models, RGB, BGR and row-strided input images, image sizes that
are not multiples of the spatial multiple, images below the profile's min size, batches of mixed sizes, upscaling
and downscaling (Pillow's antialiased bilinear), non-square opt shapes, and a single-value mean/std. Sizes the
profile refuses give the same one-line error as Python.
"""

from __future__ import annotations

import numpy as np
import PIL
import pytest
from PIL import Image

import rt_util
from segdeploy.datasets import read_image
from segdeploy.datasets.preprocess import InputInfo, to_batch
from segdeploy.errors import ShapeError
from segdeploy.manifest import onnx_profile_of, preprocess_of

# (h, w) crops of a 256x384 mosaic of shipped images: non-multiples of 16, below min (64), one axis only, tiny
CROP_SIZES = [(100, 77), (33, 45), (250, 301), (64, 200), (128, 77), (77, 128), (256, 256), (5, 3), (200, 64)]
PILLOW_MAJOR = int(PIL.__version__.split(".")[0])


def _vertical_first(ih, iw, oh, ow) -> bool:  # Pillow >= 13's pass order (python-pillow/Pillow#9549)
    return oh < ih and ih - oh > 2 * (iw - ow)


# resize-mode sizes to the 128x128 opt; with Pillow < 13 (horizontal pass always first) the runtime, which follows
# Pillow 13, differs by design where Pillow 13 runs the vertical pass first (200x64 -> 128x128), so those are left out
RESIZE_SIZES = [s for s in CROP_SIZES if PILLOW_MAJOR >= 13 or not _vertical_first(*s, 128, 128)]


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> dict[tuple[int, int], str]:
    tiles = [read_image(p) for p in rt_util.VAL_IMAGES[:6]]
    mosaic = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:6], 1)], 0)  # 256 x 384
    out = tmp_path_factory.mktemp("crops")
    paths = {}
    for h, w in CROP_SIZES:
        p = out / f"crop_{h}x{w}.png"
        Image.fromarray(np.ascontiguousarray(mosaic[:h, :w])).save(p)
        paths[(h, w)] = str(p)
    return paths


def _python(manifest: dict, paths: list[str]) -> tuple[np.ndarray, list[InputInfo]]:
    return to_batch([read_image(p) for p in paths], preprocess_of(manifest), onnx_profile_of(manifest))


def _info_tuple(i: InputInfo) -> tuple[int, ...]:
    return (i.orig_h, i.orig_w, i.input_h, i.input_w, i.content_h, i.content_w, int(i.mode == "resize"))


def _compare(harness, manifest_path, paths, fmt, tmp_path):
    import json

    doc = json.loads(manifest_path.read_text())
    out = tmp_path / "batch.bin"
    harness.run("preprocess", manifest_path, out, fmt, *paths)
    got, got_infos = rt_util.read_batch(out)
    want, want_infos = _python(doc, paths)
    assert got.shape == want.shape
    assert rt_util.max_ulp(got, want) <= 1
    assert got_infos == [_info_tuple(i) for i in want_infos]
    return got


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("fmt", ["rgb", "bgr", "rgb-strided"])
def test_pad_mode_all_shipped_images(harness, make_manifest, tmp_path, order, fmt):
    manifest = make_manifest(channel_order=order, resize="pad")
    paths = [str(p) for p in rt_util.VAL_IMAGES]
    assert len(paths) == 64
    for start in range(0, len(paths), 8):  # the profile's max batch is 8
        got = _compare(harness, manifest, paths[start:start + 8], fmt, tmp_path)
        assert got.shape == (8, 3, 128, 128)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_pad_mode_odd_sizes_mixed_batch(harness, make_manifest, crops, tmp_path, order):
    manifest = make_manifest(channel_order=order, resize="pad")
    batch = [crops[s] for s in [(100, 77), (33, 45), (64, 200), (5, 3), (200, 64)]]
    got = _compare(harness, manifest, batch, "bgr" if order == "BGR" else "rgb", tmp_path)
    assert got.shape == (5, 3, 208, 208)  # every image padded to the batch's largest padded size
    assert not got[3, :, 5:, :].any() and not got[3, :, :, 3:].any()  # padding is 0 after normalisation
    for size in [(100, 77), (33, 45), (128, 77), (256, 256), (5, 3)]:
        _compare(harness, manifest, [crops[size]], "rgb", tmp_path)


def test_pad_mode_min_size_and_multiple_from_profile(harness, make_manifest, crops, tmp_path):
    manifest = make_manifest(profile={"min": [2, 3, 96, 32], "opt": [2, 3, 128, 128], "max": [4, 3, 256, 256],
                                      "spatial_multiple": 32})
    got = _compare(harness, manifest, [crops[(33, 45)], crops[(5, 3)]], "rgb", tmp_path)
    assert got.shape == (2, 3, 96, 64)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("fmt", ["rgb", "bgr", "rgb-strided"])
def test_resize_mode_up_down_and_one_axis(harness, make_manifest, crops, tmp_path, order, fmt):
    manifest = make_manifest(channel_order=order, resize="resize")
    for size in RESIZE_SIZES:  # to opt 128x128: up, down (antialiased), one axis only, both pass orders, unchanged
        got = _compare(harness, manifest, [crops[size]], fmt, tmp_path)
        assert got.shape == (1, 3, 128, 128)
    _compare(harness, manifest, [crops[s] for s in [(250, 301), (5, 3), (128, 77), (77, 128)]], fmt, tmp_path)
    _compare(harness, manifest, [str(p) for p in rt_util.VAL_IMAGES[:8]], fmt, tmp_path)  # already at opt: no resampling


def test_resize_mode_non_square_opt_and_single_mean(harness, make_manifest, crops, tmp_path):
    manifest = make_manifest(resize="resize", mean=[0.5], std=[0.25], scale=1.0,
                             profile={"min": [1, 3, 32, 32], "opt": [1, 3, 96, 160], "max": [2, 3, 256, 256]})
    for size in [(250, 301), (33, 45), (100, 77)]:
        got = _compare(harness, manifest, [crops[size]], "rgb", tmp_path)
        assert got.shape == (1, 3, 96, 160)


def test_resize_matches_pillow_bytes(harness, crops, tmp_path):
    """The resampler alone: Pillow's Image.resize(BILINEAR) bytes for many size pairs, both pass orders included
    (250x301 -> 128x40 runs the vertical pass first in Pillow 13; 250-2k x 301-k is the boundary)."""
    img = read_image(crops[(250, 301)])
    pairs = [(128, 128), (96, 160), (250, 150), (125, 301), (7, 9), (500, 41), (1, 1), (249, 302), (3, 900),
             (128, 40), (60, 290), (100, 500), (10, 301), (230, 291), (229, 291), (228, 291)]
    checked = 0
    for h, w in pairs:
        if PILLOW_MAJOR < 13 and _vertical_first(250, 301, h, w) and h != 250 and w != 301:
            continue  # Pillow < 13 always ran the horizontal pass first; the runtime follows Pillow 13
        out = tmp_path / "r.raw"
        harness.run("resize", crops[(250, 301)], out, h, w)
        want = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        got = np.frombuffer(out.read_bytes(), np.uint8).reshape(h, w, 3)
        np.testing.assert_array_equal(got, want, err_msg=f"{h}x{w}")
        checked += 1
    assert checked >= 12
    assert sum(_vertical_first(250, 301, h, w) for h, w in pairs) >= 4


@pytest.mark.skipif(PILLOW_MAJOR < 13, reason=f"Pillow {PIL.__version__} < 13 runs the horizontal pass first "
                    "in every case; the runtime reproduces Pillow 13's pass order")
def test_resize_pass_order_on_noise(harness, tmp_path):
    """Random-noise images make any difference in the pass order or the rounding visible."""
    rng = np.random.default_rng(0)
    src = tmp_path / "noise.png"
    for ih, iw, oh, ow in [(97, 61, 40, 50), (97, 61, 40, 70), (61, 97, 40, 50), (200, 64, 128, 128),
                           (150, 100, 121, 85), (150, 100, 120, 85), (150, 100, 119, 85), (33, 180, 7, 170)]:
        Image.fromarray(rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)).save(src)
        out = tmp_path / "r.raw"
        harness.run("resize", src, out, oh, ow)
        want = np.asarray(Image.open(src).convert("RGB").resize((ow, oh), Image.BILINEAR))
        np.testing.assert_array_equal(np.frombuffer(out.read_bytes(), np.uint8).reshape(oh, ow, 3), want,
                                      err_msg=f"{ih}x{iw} -> {oh}x{ow}")


def test_too_large_image_gives_the_python_error(harness, make_manifest, crops, tmp_path):
    manifest = make_manifest(resize="pad")
    proc = harness.run("preprocess", manifest, tmp_path / "x.bin", "rgb", crops[(250, 301)], ok=False)
    assert proc.returncode == 2
    msg = proc.stderr.strip()
    assert msg.count("\n") == 0
    with pytest.raises(ShapeError) as py:
        _python(__import__("json").loads(manifest.read_text()), [crops[(250, 301)]])
    # same diagnosis (sizes) as Python; the fix names the export option and the engine rebuild
    assert py.value.message.split(";")[0] in msg
    assert "--max-shape" in msg


def test_batch_size_limits(harness, make_manifest, tmp_path):
    manifest = make_manifest(profile={"min": [2, 3, 64, 64], "opt": [2, 3, 128, 128], "max": [3, 3, 256, 256]})
    few = harness.run("preprocess", manifest, tmp_path / "x.bin", "rgb", rt_util.VAL_IMAGES[0], ok=False)
    assert few.returncode == 2 and "below the model's min batch 2" in few.stderr
    many = harness.run("preprocess", manifest, tmp_path / "x.bin", "rgb", *rt_util.VAL_IMAGES[:4], ok=False)
    assert many.returncode == 2 and "exceeds the model's max batch 3" in many.stderr

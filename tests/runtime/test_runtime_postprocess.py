"""The C++ runtime's host argmax + restore (segdeploy/runtime/cpp/src/postprocess.cpp) against Python's
``restore_prediction(logits.argmax(1)[i], info)`` fed the SAME random logits.

The logits are made to be hard: many exact ties (quantised values, -0.0 vs 0.0), NaN and +-inf scores, one
class, and 300 classes (labels above 255). Pad mode crops, resize mode maps back with nearest neighbour.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import rt_util
from segdeploy.datasets.preprocess import restore_prediction, to_batch
from segdeploy.manifest import onnx_profile_of, preprocess_of

PAD_SIZES = [(100, 77), (33, 45), (128, 128), (5, 3), (200, 64)]
RESIZE_SIZES = [(250, 301), (33, 45), (128, 128), (77, 200), (1, 1)]


def _hard_logits(rng, n, k, h, w) -> np.ndarray:
    x = rng.standard_normal((n, k, h, w)).astype(np.float32)
    q = rng.integers(0, 3, size=(n, k, h, w)).astype(np.float32)  # exact ties between classes
    tie_px = rng.random((n, 1, h, w)) < 0.4
    x = np.where(tie_px, q, x)
    flat = x.reshape(n, k, -1)
    px = rng.integers(0, h * w, size=(n, 12))
    for i in range(n):
        flat[i, rng.integers(0, k), px[i, 0]] = np.nan
        flat[i, :, px[i, 1]] = np.nan  # all NaN
        flat[i, -1, px[i, 2]] = np.nan  # NaN in the last class only
        flat[i, rng.integers(0, k), px[i, 3]] = np.inf
        flat[i, :, px[i, 4]] = -np.inf
        flat[i, :, px[i, 5]] = np.float32(-0.0)
        flat[i, 0, px[i, 5]] = np.float32(0.0)  # +0.0 == -0.0: a tie, the first wins
        flat[i, :, px[i, 6]] = np.inf  # all +inf: first wins
    return x


def _python_maps(manifest: dict, sizes, logits) -> list[np.ndarray]:
    images = [np.zeros((h, w, 3), np.uint8) for h, w in sizes]
    batch, infos = to_batch(images, preprocess_of(manifest), onnx_profile_of(manifest))
    assert batch.shape[2:] == logits.shape[2:]
    pred = logits.argmax(axis=1)
    return [restore_prediction(pred[i], info) for i, info in enumerate(infos)]


@pytest.mark.parametrize("mode,sizes", [("pad", PAD_SIZES), ("resize", RESIZE_SIZES)])
@pytest.mark.parametrize("classes", [6, 1, 300])
def test_class_maps_match_python(harness, make_manifest, tmp_path, mode, sizes, classes):
    manifest_path = make_manifest(resize=mode)
    manifest = json.loads(manifest_path.read_text())
    # the batch shape the preprocessing plans for these sizes
    batch, _ = to_batch([np.zeros((h, w, 3), np.uint8) for h, w in sizes], preprocess_of(manifest), onnx_profile_of(manifest))
    n, _, H, W = batch.shape
    rng = np.random.default_rng(classes * 7 + len(mode))
    logits = _hard_logits(rng, n, classes, H, W)
    rt_util.write_logits(tmp_path / "logits.bin", logits)
    harness.run("classmap", manifest_path, tmp_path / "logits.bin", tmp_path / "maps.bin", *[f"{h}x{w}" for h, w in sizes])
    got = rt_util.read_maps(tmp_path / "maps.bin")
    want = _python_maps(manifest, sizes, logits)
    assert len(got) == len(want) == len(sizes)
    for (h, w), g, ref in zip(sizes, got, want):
        assert g.shape == ref.shape == (h, w)
        np.testing.assert_array_equal(g.astype(np.int64), ref)
    if classes == 300:
        assert max(int(g.max()) for g in got) > 255  # 16-bit labels exercised



def test_pixel_agreement_of_class_map_files(harness, tmp_path):
    """The bundle's smoke test compares the engine's class map with the reference map stored in the bundle."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    ref = rng.integers(0, 6, (37, 53), dtype=np.uint8)
    out = ref.copy()
    out[:5, :7] = (out[:5, :7] + 1) % 6  # 35 pixels differ
    Image.fromarray(ref, mode="L").save(tmp_path / "ref.png")
    Image.fromarray(out, mode="L").save(tmp_path / "out.png")
    equal, total = map(int, harness.run("agree", tmp_path / "out.png", tmp_path / "ref.png").stdout.split())
    assert (equal, total) == (37 * 53 - 35, 37 * 53)
    Image.fromarray(ref[:, :50], mode="L").save(tmp_path / "small.png")
    proc = harness.run("agree", tmp_path / "out.png", tmp_path / "small.png", ok=False)
    assert proc.returncode == 2 and "reference class map is 50x37 but the class map is 53x37" in proc.stderr

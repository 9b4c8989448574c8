from __future__ import annotations

import pytest
from bench_helpers import export_dir, save_pt2


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return save_pt2(tmp_path_factory.mktemp("model") / "tiny.pt2")


@pytest.fixture(scope="session")
def tiny_export(tiny_model, tmp_path_factory):
    """FP32 export directory of the tiny model (model.onnx + manifest.json)."""
    return export_dir(tiny_model, tmp_path_factory.mktemp("export") / "tiny")


def _image_set(root, n, masks, seed):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / ("images" if masks else "")).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / ("images" if masks else "") / f"im{i:02d}.png")
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 4, (32, 32)).astype(np.uint8)).save(root / "masks" / f"im{i:02d}.png")


@pytest.fixture(scope="session")
def int8_export(tiny_model, tmp_path_factory):
    """Export directory with model.onnx and model.int8.onnx (calibrated on 8 random 32 px images)."""
    root = tmp_path_factory.mktemp("calibset")
    _image_set(root / "calib", 8, masks=False, seed=1)
    _image_set(root / "val", 4, masks=True, seed=2)
    return export_dir(tiny_model, tmp_path_factory.mktemp("export8") / "tiny8", "--int8", "--calib", root / "calib",
                      "--calib-method", "max")

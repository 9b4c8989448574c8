"""The synthetic shapes set: determinism, class coverage, split disjointness, PNG round trip, bad input."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from PIL import Image

from segdeploy.datasets import shapes
from segdeploy.errors import SegdeployError, UsageError


def _digest(image: np.ndarray, mask: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()


def test_sample_format():
    image, mask = shapes.make_sample(0, size=(96, 128), split="val")
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 128) and mask.dtype == np.uint8
    assert mask.max() < shapes.NUM_CLASSES
    assert shapes.CLASS_NAMES[0] == "background" and len(shapes.CLASS_NAMES) >= 6
    assert len(set(shapes.CLASS_NAMES)) == len(shapes.CLASS_NAMES)


def test_same_index_same_bytes_whatever_the_order_and_global_rng():
    forward = [_digest(*shapes.make_sample(i, split="train")) for i in range(6)]
    # disturb global RNG state: the generator must not read it
    np.random.seed(123)
    random.seed(7)
    np.random.rand(1000)
    backward = [_digest(*shapes.make_sample(i, split="train")) for i in reversed(range(6))][::-1]
    assert forward == backward
    via_generate = [_digest(img, m) for _, img, m in shapes.generate(3, split="train", start=3)]
    assert via_generate == forward[3:]
    assert len(set(forward)) == len(forward)  # different indices differ


def test_seed_changes_the_data():
    a = shapes.make_sample(0, split="val", seed=1)
    b = shapes.make_sample(0, split="val", seed=2)
    assert _digest(*a) != _digest(*b)


def test_every_class_appears_and_images_are_not_colour_coded():
    counts = np.zeros(shapes.NUM_CLASSES, np.int64)
    colours: dict[int, list[np.ndarray]] = {c: [] for c in range(1, shapes.NUM_CLASSES)}
    for _, image, mask in shapes.generate(40, size=(128, 128), split="val"):
        counts += np.bincount(mask.ravel(), minlength=shapes.NUM_CLASSES)
        for c in range(1, shapes.NUM_CLASSES):
            if (mask == c).sum() > 50:
                colours[c].append(image[mask == c].mean(axis=0))
    assert (counts > 0).all(), f"class pixel counts {counts.tolist()}"
    # every foreground class covers a real share of the pixels (not a token pixel or two)
    assert (counts[1:] / counts.sum() > 0.005).all(), counts.tolist()
    # shape colours vary widely within a class: the class is not given away by its colour
    for c, cols in colours.items():
        spread = np.asarray(cols).std(axis=0).mean()
        assert spread > 30, f"class {shapes.CLASS_NAMES[c]} colour spread {spread:.1f}"


def test_images_are_noisy_and_textured():
    image, _ = shapes.make_sample(5, split="train")
    # per-pixel noise: neighbouring pixels differ almost everywhere
    assert (np.abs(np.diff(image.astype(int), axis=1)).sum(-1) > 0).mean() > 0.5
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000


def test_splits_are_disjoint():
    seen: dict[str, str] = {}
    for split in shapes.SPLITS:
        for i, image, _ in shapes.generate(30, size=(64, 64), split=split):
            d = hashlib.sha256(image.tobytes()).hexdigest()
            assert d not in seen, f"{split}[{i}] equals {seen[d]}"
            seen[d] = f"{split}[{i}]"


def test_write_split_round_trip(tmp_path):
    stems = shapes.write_split(tmp_path / "val", 3, "val", size=(64, 80))
    assert stems == [f"shapes_val_{i:04d}" for i in range(3)]
    for i, s in enumerate(stems):
        image = np.asarray(Image.open(tmp_path / "val" / "images" / f"{s}.png").convert("RGB"))
        mask_img = Image.open(tmp_path / "val" / "masks" / f"{s}.png")
        assert mask_img.mode == "L"
        ref_image, ref_mask = shapes.make_sample(i, size=(64, 80), split="val")
        np.testing.assert_array_equal(image, ref_image)
        np.testing.assert_array_equal(np.asarray(mask_img), ref_mask)
    # calibration layout: images straight into the folder, no masks
    calib = shapes.write_split(tmp_path / "calib", 2, "calib", size=(64, 64), images_only=True)
    assert sorted(p.name for p in (tmp_path / "calib").iterdir()) == [f"{s}.png" for s in calib]


def test_write_split_reads_back_through_open_dataset(tmp_path):
    from segdeploy.datasets import open_dataset

    shapes.write_split(tmp_path, 2, "val", size=(64, 64))
    ds = open_dataset(tmp_path / "images", tmp_path / "masks")
    samples = list(ds)
    assert [s.stem for s in samples] == ["shapes_val_0000", "shapes_val_0001"]
    ref_image, ref_mask = shapes.make_sample(1, size=(64, 64), split="val")
    np.testing.assert_array_equal(samples[1].image, ref_image)
    np.testing.assert_array_equal(np.asarray(samples[1].mask), ref_mask)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"index": 0, "split": "test"}, "unknown shapes split 'test'"),
        ({"index": -1}, "index must be >= 0"),
        ({"index": 0, "size": (8, 8)}, "at least 16x16"),
        ({"index": 0, "size": "big"}, "must be (height, width)"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(UsageError) as e:
        shapes.make_sample(**kwargs)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_write_split_bad_input_leaves_nothing(tmp_path):
    with pytest.raises(UsageError):
        shapes.write_split(tmp_path / "out", 2, "nope")
    assert not (tmp_path / "out").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SegdeployError) as e:
        shapes.write_split(blocker, 1, "val")
    assert "not a directory" in str(e.value)

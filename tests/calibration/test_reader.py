"""Calibration sets: listing, reproducible sampling, the checks and their error messages, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segdeploy.calibration.reader import iter_batches, open_calibration_set, preprocess_image
from segdeploy.errors import DataError, UsageError
from segdeploy.spec import Preprocess, ShapeProfile

from calib_helpers import write_images


def test_sampling_is_reproducible_and_seeded(images):
    a = open_calibration_set(images, size=5, seed=1)
    b = open_calibration_set(images, size=5, seed=1)
    c = open_calibration_set(images, size=5, seed=2)
    assert a.files == b.files and a.data_sha256 == b.data_sha256
    assert a.files != c.files and a.data_sha256 != c.data_sha256
    assert len(set(a.files)) == 5 and a.available == 12
    assert list(a.files) == sorted(a.files)  # listing order kept
    assert open_calibration_set(images).size == 12


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images"):
        open_calibration_set(tmp_path / "empty")


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_calibration_set(tmp_path / "nope")


def test_too_few_images(images):
    with pytest.raises(DataError, match=r"--calib-size 50 asks for more images .* \(12\)"):
        open_calibration_set(images, size=50)
    with pytest.raises(UsageError, match="positive integer"):
        open_calibration_set(images, size=0)


def test_unreadable_images_are_listed(images):
    (images / "img_0003.png").write_bytes(b"not a png")
    (images / "zz_broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError) as e:
        open_calibration_set(images)
    msg = str(e.value)
    assert "2 of 13" in msg and "img_0003.png: unreadable" in msg and "zz_broken.jpg: unreadable" in msg
    assert "\n" not in msg


def test_grayscale_refused_or_replicated(tmp_path, spec):
    pre, prof = spec
    folder = write_images(tmp_path / "gray", 3, mode="L")
    with pytest.raises(DataError, match="grayscale .*gray='replicate'"):
        open_calibration_set(folder)
    cset = open_calibration_set(folder, gray="replicate")
    b = next(iter_batches(cset, pre, prof))
    assert b.array.shape == (3, 3, 32, 32)
    # replicated: all three channels carry the same pixel values before normalisation
    raw = b.array * np.array(pre.std, np.float32)[:, None, None] + np.array(pre.mean, np.float32)[:, None, None]
    np.testing.assert_allclose(raw[:, 0], raw[:, 1], atol=1e-5)


def test_wrong_channel_count(tmp_path):
    folder = tmp_path / "cmyk"
    folder.mkdir()
    Image.new("CMYK", (16, 16)).save(folder / "a.jpg")
    with pytest.raises(DataError, match="a.jpg: mode CMYK"):
        open_calibration_set(folder)
    rgb = write_images(tmp_path / "rgb", 2)
    with pytest.raises(DataError, match="colour .* model takes 1 channel"):
        open_calibration_set(rgb, channels=1)
    with pytest.raises(DataError, match="takes 4 input channels"):
        open_calibration_set(rgb, channels=4)


def test_rgba_needs_opaque_alpha(tmp_path):
    folder = tmp_path / "rgba"
    folder.mkdir()
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(folder / "opaque.png")
    assert open_calibration_set(folder).size == 1
    a[0, 0, 3] = 10
    Image.fromarray(a, "RGBA").save(folder / "holes.png")
    with pytest.raises(DataError, match="holes.png: has transparent pixels"):
        open_calibration_set(folder)


def test_huge_images(tmp_path, spec):
    pre, prof = spec
    folder = write_images(tmp_path / "big", 1, size=(80, 70))
    # pad mode: an image above the profile's max is resized down keeping aspect, counted, not refused
    cset = open_calibration_set(folder, profile=prof, preprocess=pre)
    assert cset.oversize == 1 and cset.to_dict()["resized_to_fit"] == 1
    (batch,) = list(iter_batches(cset, pre, prof))
    assert batch.array.shape[2] <= prof.max[2] and batch.array.shape[3] <= prof.max[3]
    with pytest.raises(DataError, match="above the 1000 pixel limit"):
        open_calibration_set(folder, max_pixels=1000)
    # resize mode brings it to the profile's opt size
    rpre = Preprocess(resize="resize")
    cset = open_calibration_set(folder, profile=prof, preprocess=rpre)
    assert next(iter_batches(cset, rpre, prof)).array.shape == (1, 3, 32, 32)


def test_list_file(tmp_path, images):
    lst = tmp_path / "calib.txt"
    lst.write_text("# comment\ncalib/img_0001.png\n\ncalib/img_0002.png\n")
    assert [p.split("/")[-1] for p in open_calibration_set(lst).files] == ["img_0001.png", "img_0002.png"]
    lst.write_text("calib/img_0001.png\ncalib/missing.png\n")
    with pytest.raises(DataError, match="1 missing file.*missing.png"):
        open_calibration_set(lst)


def test_preprocess_matches_formula_and_pads(spec):
    pre, prof = spec
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    x = preprocess_image(img, pre, prof)
    assert x.shape == (3, 20, 30) and x.dtype == np.float32  # multiple 1, above min 16
    ref = (img.astype(np.float32) / 255.0 - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), rtol=1e-6, atol=1e-6)
    p8 = ShapeProfile((1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 64, 64), spatial_multiple=8)
    y = preprocess_image(img, Preprocess(channel_order="BGR"), p8)
    assert y.shape == (3, 32, 32) and np.all(y[:, 20:, :] == 0) and np.all(y[:, :, 30:] == 0)


def test_batches_respect_size_and_shape(tmp_path, spec):
    pre, prof = spec
    folder = write_images(tmp_path / "mixed", 5, size=(32, 32))
    write_images(tmp_path / "mixed2", 2, size=(16, 24), seed=3)
    for p in (tmp_path / "mixed2").iterdir():
        p.rename(folder / ("z" + p.name))
    cset = open_calibration_set(folder)
    shapes = [b.array.shape for b in iter_batches(cset, pre, prof, batch_size=2)]
    assert shapes == [(2, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32), (2, 3, 16, 24)]


def test_rgb_batches_equal_parity_preprocessing(tmp_path, spec):
    from segdeploy.datasets import read_image
    from segdeploy.datasets.preprocess import to_batch

    pre, prof = spec
    folder = write_images(tmp_path / "rgb", 3, size=(20, 30))
    cset = open_calibration_set(folder)
    (b,) = list(iter_batches(cset, pre, prof))
    ref, _ = to_batch([read_image(f) for f in cset.files], pre, prof)
    np.testing.assert_array_equal(b.array, ref)
    own = np.stack([preprocess_image(read_image(f), pre, prof) for f in cset.files])
    np.testing.assert_allclose(b.array, own, rtol=1e-6, atol=1e-6)


def test_one_channel_model(tmp_path):
    folder = write_images(tmp_path / "gray1", 2, mode="L")
    prof = ShapeProfile((1, 1, 16, 16), (1, 1, 32, 32), (4, 1, 64, 64))
    pre = Preprocess(mean=(0.5,), std=(0.25,))
    cset = open_calibration_set(folder, channels=1)
    (b,) = list(iter_batches(cset, pre, prof))
    assert b.array.shape == (2, 1, 32, 32)
    assert b.array.min() >= -2.0 - 1e-6 and b.array.max() <= 2.0 + 1e-6

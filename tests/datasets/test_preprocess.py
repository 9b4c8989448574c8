"""Preprocessing from the manifest and mapping predictions back."""

from __future__ import annotations

import numpy as np
import pytest

from segdeploy.datasets.preprocess import restore_prediction, target_size, to_batch
from segdeploy.errors import ShapeError
from segdeploy.spec import Preprocess, ShapeProfile

PROFILE = ShapeProfile((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 128, 128), 32)


def test_normalisation_and_channel_order():
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = 255  # red
    pp = Preprocess(mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 1.0), scale=1 / 255)
    x, _ = to_batch([img], pp, PROFILE)
    assert x.dtype == np.float32 and x.shape == (1, 3, 32, 32)
    assert np.allclose(x[0, :, 0, 0], [1.0, -0.5, 0.0])
    x, _ = to_batch([img], Preprocess(mean=(0, 0, 0), std=(1, 1, 1), scale=1 / 255, channel_order="BGR"), PROFILE)
    assert np.allclose(x[0, :, 0, 0], [0.0, 0.0, 1.0])


def test_pad_to_multiple_and_crop_back():
    imgs = [np.full((40, 50, 3), 10, np.uint8), np.full((33, 64, 3), 20, np.uint8)]
    x, infos = to_batch(imgs, Preprocess(), PROFILE)
    assert x.shape == (2, 3, 64, 64)
    assert (x[0, :, 40:, :] == 0).all() and (x[0, :, :, 50:] == 0).all()
    pred = np.arange(64 * 64).reshape(64, 64)
    back = restore_prediction(pred, infos[0])
    assert back.shape == (40, 50) and np.array_equal(back, pred[:40, :50])
    assert target_size(10, 10, Preprocess(), PROFILE) == (32, 32)  # min shape
    with pytest.raises(ShapeError, match="above the model's max input"):
        to_batch([np.zeros((130, 20, 3), np.uint8)], Preprocess(), PROFILE)
    with pytest.raises(ShapeError, match="max batch"):
        to_batch([imgs[0]] * 5, Preprocess(), PROFILE)


def test_resize_and_nearest_back():
    img = np.zeros((30, 90, 3), np.uint8)
    x, (info,) = to_batch([img], Preprocess(resize="resize"), PROFILE)
    assert x.shape == (1, 3, 64, 64) and info.mode == "resize"
    pred = np.zeros((64, 64), np.int64)
    pred[:, 32:] = 1
    back = restore_prediction(pred, info)
    assert back.shape == (30, 90)
    assert (back[:, :45] == 0).all() and (back[:, 45:] == 1).all()


def test_no_profile_keeps_size():
    x, (info,) = to_batch([np.zeros((7, 9, 3), np.uint8)], Preprocess(), None)
    assert x.shape == (1, 3, 7, 9) and info.content_h == 7

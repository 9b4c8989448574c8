"""Evaluation batches: same input size, at most batch_size images, at most MAX_BATCH_PIXELS input pixels (at
least one image), so large frames do not multiply the model's activations by the batch size."""

from types import SimpleNamespace

import numpy as np

from segdeploy.evaluation import MAX_BATCH_PIXELS, same_size_groups
from segdeploy.spec import Preprocess


def _samples(n: int, h: int, w: int):
    return [SimpleNamespace(image=np.zeros((h, w, 3), np.uint8), stem=f"s{i}") for i in range(n)]


def test_small_images_batch_up_to_batch_size():
    groups = list(same_size_groups(_samples(20, 128, 128), Preprocess(), None, 8))
    assert [len(g) for g in groups] == [8, 8, 4]


def test_large_frames_batch_by_pixels():
    per = MAX_BATCH_PIXELS // (480 * 640)
    assert per == 3
    groups = list(same_size_groups(_samples(8, 480, 640), Preprocess(), None, 8))
    assert [len(g) for g in groups] == [3, 3, 2]


def test_a_frame_larger_than_the_budget_is_its_own_batch():
    groups = list(same_size_groups(_samples(3, 2048, 2048), Preprocess(), None, 8))
    assert [len(g) for g in groups] == [1, 1, 1]

"""The report's class-map PNGs: one encoder, one rule (segdeploy.parity.palette_png), used by the semantic check,
the instance check and the HTML report alike."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from segdeploy.errors import ArtifactError
from segdeploy.parity.palette_png import (INVALID_INDEX, INVALID_RGB, MAX_CLASSES, decode_class_map,
                                          encode_class_map)


def _png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_the_invalid_marker_is_a_reserved_palette_index_drawn_as_invalid():
    cm = np.array([[0, 1, -1], [2, -1, 254]])
    b64 = encode_class_map(cm, num_classes=MAX_CLASSES)
    im = _png(b64)
    assert im.mode == "P"
    indices = np.asarray(im)
    assert indices[0, 2] == INVALID_INDEX == indices[1, 1]  # stored as the reserved index, never clipped to 0
    pal = np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)
    assert tuple(pal[INVALID_INDEX]) == INVALID_RGB  # a viewer of the bare PNG sees it as invalid too
    assert np.array_equal(decode_class_map(b64), cm)  # and it decodes back to -1


def test_classes_that_do_not_fit_give_none():
    assert encode_class_map(np.zeros((2, 2), np.int64), num_classes=MAX_CLASSES + 1) is None  # a run encodes none
    assert encode_class_map(np.array([[0, MAX_CLASSES]])) is None  # 255 would read back as the marker
    assert encode_class_map(np.array([[-2, 0]])) is None


def test_encoding_is_deterministic_and_decoding_refuses_garbage():
    cm = np.random.default_rng(1).integers(-1, MAX_CLASSES, (9, 7))
    assert encode_class_map(cm) == encode_class_map(cm.copy())
    with pytest.raises(ArtifactError, match="not a valid base64 PNG"):
        decode_class_map("not base64!")


def test_every_writer_uses_the_one_encoder():
    from segdeploy.parity import check, overlays
    from segdeploy.parity.instances import report

    src = (check.__file__, report.__file__)
    assert all("encode_class_map" in open(f).read() and "putpalette" not in open(f).read() for f in src)
    assert overlays.class_map_png_b64 is encode_class_map and overlays.decode_png_b64 is decode_class_map


def test_a_nan_candidate_pixel_is_stored_as_invalid_in_the_check_report():
    from segdeploy.parity.check import _Accumulator
    from segdeploy.datasets import Sample

    acc = _Accumulator(labelled=False, ignore_index=255, worst_k=2, on_error="skip")
    acc.set_classes(3)
    ref = np.array([[0, 1], [2, 1]])
    cand = np.array([[0, -1], [2, 1]])
    acc.add_image(Sample("a", np.zeros((2, 2, 3), np.uint8), None, "a.png"), ref, cand, 1)
    rec = acc.worst_records({})[0]
    assert np.array_equal(decode_class_map(rec["candidate_png"]), cand)
    assert np.array_equal(decode_class_map(rec["reference_png"]), ref)

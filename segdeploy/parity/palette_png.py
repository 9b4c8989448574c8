"""Class maps as palette PNGs: the one encoding of a report's ``reference_png`` / ``candidate_png``.

Both the semantic check (:mod:`segdeploy.parity.check`) and the instance check
(:mod:`segdeploy.parity.instances.report`) store their worst images' class maps with :func:`encode_class_map`,
and the HTML report reads them back with :func:`decode_class_map`, so a class map has one encoding and one rule.

Contract
--------
* Palette index = class id for classes ``0 .. MAX_CLASSES - 1`` (0..254), drawn in the PASCAL VOC colours
  (:func:`class_palette`).
* The invalid marker ``-1`` (a pixel whose logits were NaN/Inf, :func:`segdeploy.evaluation.class_map`) is stored
  as the reserved index :data:`INVALID_INDEX` (255), whose palette colour is :data:`INVALID_RGB`, and decodes
  back to ``-1`` -- a broken pixel is never shown as class 0.
* :func:`encode_class_map` returns None when the classes do not fit: ``num_classes > MAX_CLASSES``, or any value
  outside ``-1 .. MAX_CLASSES - 1``. Same input, same bytes (no timestamps, fixed compression).
* :func:`decode_class_map` returns an HxW int64 map; a corrupt PNG, one that is not palette/grayscale, or one
  declaring more pixels than the shared image limit is an :class:`~segdeploy.errors.ArtifactError` (one line).
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np

from segdeploy.errors import ArtifactError

INVALID_MARKER = -1  # in a class map: a pixel whose logits were not finite
INVALID_INDEX = 255  # its palette index in the PNG
MAX_CLASSES = INVALID_INDEX  # class ids 0..254 fit beside the marker
INVALID_RGB = (255, 0, 255)


def class_palette() -> np.ndarray:
    """256x3 uint8: the PASCAL VOC palette (class 0 black, 1 dark red, 2 green, ...; 255 light grey)."""
    from segdeploy.datasets.masks import default_palette

    return np.asarray(default_palette(), dtype=np.uint8).reshape(256, 3)


_PALETTE = class_palette()
_PNG_PALETTE = _PALETTE.copy()
_PNG_PALETTE[INVALID_INDEX] = INVALID_RGB


def class_color_hex(index: int) -> str:
    """CSS colour of class ``index`` (the palette entry)."""
    r, g, b = (int(v) for v in _PALETTE[int(index) % 256])
    return f"#{r:02x}{g:02x}{b:02x}"


def encode_class_map(class_map: np.ndarray, num_classes: int | None = None) -> str | None:
    """HxW class map (``-1`` = invalid) -> base64 palette PNG, or None when the classes do not fit (see the
    module docstring). ``num_classes``: the model's class count, when known (a run then encodes all or none)."""
    from PIL import Image

    if num_classes is not None and num_classes > MAX_CLASSES:
        return None
    cm = np.asarray(class_map)
    if cm.size and (cm.min() < INVALID_MARKER or cm.max() >= MAX_CLASSES):
        return None
    indices = np.where(cm == INVALID_MARKER, INVALID_INDEX, cm).astype(np.uint8)
    im = Image.fromarray(indices, mode="L").convert("P")
    im.putpalette(_PNG_PALETTE.reshape(-1).tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_class_map(data: str, what: str = "class map") -> np.ndarray:
    """A base64 palette PNG of :func:`encode_class_map` -> HxW int64 class map (``-1`` where invalid). Raises
    ArtifactError (also for a PNG declaring more pixels than the image limit, :mod:`segdeploy.datasets.imagefile`)."""
    from PIL import UnidentifiedImageError

    from segdeploy.datasets.imagefile import ImageTooLargeError, open_image

    try:
        raw = base64.b64decode(data, validate=True)
        with open_image(io.BytesIO(raw), name="in the report", what=what) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise ArtifactError(f"{what} PNG has mode {im.mode}; expected a palette or grayscale PNG of class ids")
            indices = np.asarray(im, dtype=np.uint8).astype(np.int64)
    except ImageTooLargeError as e:
        raise ArtifactError(f"{what} in the report declares {e.declared}, more than the {e.limit}-pixel image limit; "
                            "re-run the check") from None
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as e:
        raise ArtifactError(f"{what} in the report is not a valid base64 PNG ({type(e).__name__}); re-run the check") from None
    indices[indices == INVALID_INDEX] = INVALID_MARKER
    return indices


__all__ = ["INVALID_INDEX", "INVALID_MARKER", "INVALID_RGB", "MAX_CLASSES", "class_color_hex", "class_palette",
           "decode_class_map", "encode_class_map"]

"""Overlay images for the parity report: image / reference mask / candidate mask / disagreement map.

Everything here is pure NumPy + Pillow and deterministic (same inputs -> same PNG bytes).

Colours
-------
Classes use the PASCAL VOC palette (:func:`class_palette`), the same colours the JSON report's palette PNGs
(``reference_png`` / ``candidate_png``, :mod:`segdeploy.parity.palette_png`) carry, so a class has one colour
everywhere. Values outside ``[0, 256)`` (``-1`` for a NaN/Inf candidate pixel) are drawn in :data:`INVALID_RGB`.

The disagreement map shows the image dimmed to grey and marks every pixel where the candidate's class
differs from the reference's. With ground truth it says who was right:

* :data:`LOST_RGB` (red): the reference was right, the candidate is wrong (accuracy lost),
* :data:`GAINED_RGB` (green): the candidate is right, the reference was wrong,
* :data:`CHANGED_RGB` (amber): both wrong, differently -- or, without ground truth, any disagreement,
* ground-truth pixels equal to the ignore index count as "changed" (no one is right there).

When only a few pixels disagree (<= ``MARK_SPARSE_MAX``), each is also framed by a hollow square of its
colour so it can be found in a thumbnail; the pixel counts are unaffected.

API
---
* :func:`colorize`, :func:`blend`, :func:`disagreement_map` -> HxWx3 uint8 arrays.
* :func:`png_bytes`, :func:`png_data_uri` -> encoded PNG.
* :func:`class_map_png_b64` / :func:`decode_png_b64` -> the report's base64 palette PNG of a class map and back
  (:func:`segdeploy.parity.palette_png.encode_class_map` / ``decode_class_map``: ``-1`` kept as invalid).
* :func:`render_strip` -> the panels of one image (:class:`Panel` list, PNG data URIs).
* :func:`render_worst_overlays` -> panels for every ``worst_images`` record of a report (re-reads each
  image from its recorded path; a missing image is drawn as a neutral panel and noted, never fabricated).
* :func:`render_instance_strip` -> the same strip for instance segmentation (instances painted by class).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from segdeploy.errors import ArtifactError, DataError
from segdeploy.parity.palette_png import (
    INVALID_RGB,
    class_color_hex,
    class_palette,
    decode_class_map,
    encode_class_map,
)

LOST_RGB = (230, 40, 40)
GAINED_RGB = (40, 190, 80)
CHANGED_RGB = (255, 176, 0)
MISSING_RGB = (200, 200, 200)
_PALETTE = class_palette()


def colorize(class_map: np.ndarray) -> np.ndarray:
    """HxW integer class map -> HxWx3 uint8 palette colours (out-of-range values: INVALID_RGB)."""
    cm = np.asarray(class_map)
    if cm.ndim != 2:
        raise DataError(f"class map has shape {cm.shape}; expected HxW")
    cm = cm.astype(np.int64, copy=False)
    valid = (cm >= 0) & (cm < 256)
    out = _PALETTE[np.where(valid, cm, 0)]
    out[~valid] = INVALID_RGB
    return out


def _check_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(f"image has shape {img.shape} dtype {img.dtype}; expected HxWx3 uint8 RGB")
    return img


def blend(image: np.ndarray, class_map: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Class colours over the image: ``(1 - alpha) * image + alpha * colour``, HxWx3 uint8."""
    img = _check_rgb(image)
    col = colorize(class_map)
    if col.shape[:2] != img.shape[:2]:
        raise DataError(f"class map is {col.shape[0]}x{col.shape[1]} but the image is {img.shape[0]}x{img.shape[1]}")
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * col.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _dim_gray(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if image is None:
        return np.full((*shape, 3), 60, dtype=np.uint8)
    img = _check_rgb(image).astype(np.float32)
    gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    g = np.clip(np.rint(40.0 + 0.35 * gray), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def disagreement_map(
    image: np.ndarray | None,
    reference: np.ndarray,
    candidate: np.ndarray,
    truth: np.ndarray | None = None,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """HxWx3 uint8: the image dimmed to grey, disagreeing pixels coloured (see the module docstring)."""
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise DataError(f"reference map {ref.shape} and candidate map {cand.shape} must be the same HxW")
    out = _dim_gray(image, ref.shape)
    if out.shape[:2] != ref.shape:
        raise DataError(f"image is {out.shape[0]}x{out.shape[1]} but the class maps are {ref.shape[0]}x{ref.shape[1]}")
    diff = ref != cand
    colours = np.zeros(ref.shape, dtype=np.uint8)  # 0 none, 1 changed, 2 lost, 3 gained
    colours[diff] = 1
    if truth is not None:
        gt = np.asarray(truth)
        if gt.shape != ref.shape:
            raise DataError(f"ground truth is {gt.shape[0]}x{gt.shape[1]} but the class maps are {ref.shape[0]}x{ref.shape[1]}")
        valid = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
        colours[diff & valid & (ref == gt)] = 2
        colours[diff & valid & (cand == gt)] = 3
    table = (None, CHANGED_RGB, LOST_RGB, GAINED_RGB)
    if 0 < int(diff.sum()) <= MARK_SPARSE_MAX:
        _mark_sparse(out, colours, table)
    for code in (1, 2, 3):
        out[colours == code] = table[code]
    return out


MARK_SPARSE_MAX = 64
"""At most this many disagreeing pixels: each also gets a hollow square around it (drawn on unchanged
pixels only, so the disagreeing pixels themselves stay exact) -- a single flipped pixel is otherwise
invisible in a thumbnail."""


def _mark_sparse(out: np.ndarray, colours: np.ndarray, table: tuple) -> None:
    h, w = colours.shape
    r = max(3, min(h, w) // 24)
    ring = np.zeros((h, w), dtype=np.uint8)
    for y, x in np.argwhere(colours > 0):
        y0, y1, x0, x1 = max(0, y - r), min(h - 1, y + r), max(0, x - r), min(w - 1, x + r)
        code = colours[y, x]
        ring[y0, x0:x1 + 1] = code
        ring[y1, x0:x1 + 1] = code
        ring[y0:y1 + 1, x0] = code
        ring[y0:y1 + 1, x1] = code
    for code in (1, 2, 3):
        out[(ring == code) & (colours == 0)] = table[code]


def disagreement_counts(reference: np.ndarray, candidate: np.ndarray, truth: np.ndarray | None = None,
                        ignore_index: int | None = 255) -> dict[str, int]:
    """Pixel counts behind :func:`disagreement_map`: changed (all disagreeing pixels), lost, gained."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    diff = ref != cand
    out = {"changed": int(diff.sum()), "lost": 0, "gained": 0}
    if truth is not None:
        gt = np.asarray(truth)
        valid = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
        out["lost"] = int((diff & valid & (ref == gt)).sum())
        out["gained"] = int((diff & valid & (cand == gt)).sum())
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 array as PNG (deterministic bytes: no timestamps, fixed compression)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_check_rgb(rgb), mode="RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def png_data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


# the report's class-map PNGs: one encoding, one rule for the invalid marker (segdeploy.parity.palette_png)
class_map_png_b64 = encode_class_map
decode_png_b64 = decode_class_map


def _resize(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is <= max_side (nearest: class colours stay exact)."""
    h, w = rgb.shape[:2]
    s = max(h, w)
    if s <= max_side:
        return rgb
    from PIL import Image

    nh, nw = max(1, round(h * max_side / s)), max(1, round(w * max_side / s))
    return np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.NEAREST))


@dataclass(frozen=True)
class Panel:
    """One image of a strip: a caption and a PNG data URI (``width``/``height`` in pixels)."""

    title: str
    data_uri: str
    width: int
    height: int


def _panel(title: str, rgb: np.ndarray, max_side: int) -> Panel:
    small = _resize(rgb, max_side)
    return Panel(title, png_data_uri(small), int(small.shape[1]), int(small.shape[0]))


def render_strip(
    image: np.ndarray | None,
    reference: np.ndarray,
    candidate: np.ndarray,
    truth: np.ndarray | None = None,
    *,
    ignore_index: int | None = 255,
    max_side: int = 320,
    alpha: float = 0.6,
) -> list[Panel]:
    """Panels: image, (ground truth), reference mask, candidate mask, disagreement map.

    ``image`` HxWx3 uint8 or None (not available: the masks are drawn over a neutral background);
    class maps HxW integers at the image's size. Panels are downscaled to ``max_side`` pixels (nearest).
    """
    ref = np.asarray(reference)
    shape = ref.shape
    base = _check_rgb(image) if image is not None else np.full((*shape, 3), 255, dtype=np.uint8)
    if base.shape[:2] != shape:
        raise DataError(f"image is {base.shape[0]}x{base.shape[1]} but the class maps are {shape[0]}x{shape[1]}")
    panels = [_panel("image" if image is not None else "image (not found)",
                     base if image is not None else np.full((*shape, 3), MISSING_RGB, np.uint8), max_side)]
    if truth is not None:
        panels.append(_panel("ground truth", blend(base, truth, alpha), max_side))
    panels.append(_panel("reference", blend(base, ref, alpha), max_side))
    panels.append(_panel("candidate", blend(base, candidate, alpha), max_side))
    panels.append(_panel("disagreement", disagreement_map(image, ref, candidate, truth, ignore_index), max_side))
    return panels


def _default_image_loader(path: str) -> np.ndarray:
    from segdeploy.datasets import read_image

    return read_image(path)


def _default_mask_loader(path: str) -> np.ndarray:
    from segdeploy.datasets.masks import read_mask

    return read_mask(path)


@dataclass(frozen=True)
class WorstOverlay:
    """The rendered strip of one worst image plus what could not be shown (``notes``)."""

    record: dict[str, Any]
    panels: tuple[Panel, ...]
    counts: dict[str, int]
    notes: tuple[str, ...]


def render_worst_overlays(
    report: dict[str, Any],
    *,
    image_loader: Callable[[str], np.ndarray] | None = None,
    mask_loader: Callable[[str], np.ndarray] | None = None,
    max_side: int = 320,
) -> list[WorstOverlay]:
    """Render every ``report["worst_images"]`` record (schema: docs/parity_report.md).

    Class maps come from the record's ``reference_png`` / ``candidate_png``; the image (and, labelled, the
    ground-truth mask) are re-read from the recorded paths with ``image_loader`` / ``mask_loader``
    (defaults: :func:`segdeploy.datasets.read_image` / :func:`segdeploy.datasets.masks.read_mask`). A file
    that is gone or unreadable is noted and that panel drawn neutral; a record without class-map PNGs
    (more than 255 classes, see :mod:`segdeploy.parity.palette_png`) gets no panels and a note. Raises ArtifactError for a corrupt PNG in the report.
    """
    load_image = image_loader or _default_image_loader
    load_mask = mask_loader or _default_mask_loader
    ignore = (report.get("classes") or {}).get("ignore_index", 255)
    out: list[WorstOverlay] = []
    for rec in report.get("worst_images") or []:
        notes: list[str] = []
        if not rec.get("reference_png") or not rec.get("candidate_png"):
            notes.append("no class maps in the report (more than 255 classes)")
            out.append(WorstOverlay(rec, (), {}, tuple(notes)))
            continue
        stem = rec.get("stem", "?")
        ref = decode_png_b64(rec["reference_png"], f"reference class map of {stem}")
        cand = decode_png_b64(rec["candidate_png"], f"candidate class map of {stem}")
        if ref.shape != cand.shape:
            raise ArtifactError(f"class maps of {stem} differ in size ({ref.shape} vs {cand.shape}); the report is corrupt")
        image = truth = None
        if rec.get("image"):
            try:
                image = load_image(rec["image"])
                if image.shape[:2] != ref.shape:
                    notes.append(f"image {rec['image']} is {image.shape[0]}x{image.shape[1]}, the report says "
                                 f"{ref.shape[0]}x{ref.shape[1]}: not shown")
                    image = None
            except DataError as e:
                notes.append(f"image not shown: {e.message}")
        if rec.get("mask"):
            try:
                truth = load_mask(rec["mask"])
                if truth.shape != ref.shape:
                    notes.append(f"mask {rec['mask']} is {truth.shape[0]}x{truth.shape[1]}: not shown")
                    truth = None
            except DataError as e:
                notes.append(f"ground truth not shown: {e.message}")
        panels = render_strip(image, ref, cand, truth, ignore_index=ignore, max_side=max_side)
        counts = disagreement_counts(ref, cand, truth, ignore)
        out.append(WorstOverlay(rec, tuple(panels), counts, tuple(notes)))
    return out


def render_instance_strip(image: np.ndarray, reference: Any, candidate: Any, *, max_side: int = 320,
                          alpha: float = 0.6) -> list[Panel]:
    """Strip for instance segmentation: instances (``segdeploy.parity.instances.Instances``) painted by
    class (most confident on top), then the same four panels as :func:`render_strip`."""
    from segdeploy.parity.instances.model import instances_to_class_map

    size = (int(image.shape[0]), int(image.shape[1]))
    return render_strip(image, instances_to_class_map(reference, size), instances_to_class_map(candidate, size),
                        max_side=max_side, alpha=alpha)


def legend_entries(class_ids: Sequence[int], names: Sequence[str]) -> list[tuple[int, str, str]]:
    """(class id, name, css colour) for a legend; unnamed classes are called ``class <id>``."""
    out = []
    for k in class_ids:
        name = names[k] if k < len(names) and names[k] else f"class {k}"
        out.append((int(k), str(name), class_color_hex(k)))
    return out

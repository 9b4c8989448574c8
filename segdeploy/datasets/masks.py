"""Segmentation masks: PNG (palette or grayscale) -> HxW class-index array, plus label mapping.

* Palette ("P") PNGs: the palette *indices* are the class ids (the VOC convention; colours are ignored).
* Grayscale ("L", "I;16", "I") PNGs: the pixel values are the class ids.
* RGB(A) masks are accepted only when every pixel is gray (R == G == B); a colour-coded RGB mask is
  refused with a message (convert it to a palette/grayscale PNG of class ids).
* The ignore index (default 255, e.g. VOC's object borders) is not a class: metrics skip those pixels.
* A :class:`LabelMap` rewrites raw values before anything else (e.g. ``"1:0,2:1,3:255"``); unmapped values
  are kept as they are. Entries are integers in 0..2**31-1; a JSON label-map file is read through
  :mod:`segdeploy.jsonio` (size and nesting bounded).
* Every mask is opened through :func:`segdeploy.datasets.imagefile.open_image` (the pixel limit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segdeploy.errors import DataError, UsageError
from segdeploy.jsonio import read_file

MAX_LABEL = 2**31 - 1  # raw mask values and class ids of a label map
MAX_LABEL_MAP_BYTES = 16 << 20


@dataclass(frozen=True)
class LabelMap:
    """Raw mask value -> class id. Values not in ``mapping`` are kept."""

    mapping: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k, v in self.mapping.items():
            if not (0 <= int(k) <= MAX_LABEL and 0 <= int(v) <= MAX_LABEL):
                raise UsageError(f"label map entry {k}:{v} is out of range; use integers in 0..{MAX_LABEL}")

    @classmethod
    def parse(cls, spec: str) -> "LabelMap":
        """``"a:b,c:d"``, or a path to a JSON object ``{"a": b}`` or a text file of ``a b`` / ``a:b`` lines."""
        text = spec
        p = Path(spec)
        if p.is_file():
            json_fix = "it must be a JSON object of raw value -> class id, e.g. {\"1\": 0}; fix --label-map"
            if p.suffix.lower() == ".json":
                d = read_file(p, "label map", max_bytes=MAX_LABEL_MAP_BYTES, fix=json_fix, error=UsageError)
                try:
                    return cls({int(k): int(v) for k, v in d.items()})
                except (ValueError, AttributeError, TypeError):
                    raise UsageError(f"label map {p}: {json_fix}") from None
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot read label map {p} ({type(e).__name__}); fix --label-map") from None
        mapping: dict[int, int] = {}
        for tok in text.replace("\n", ",").split(","):
            tok = tok.strip()
            if not tok or tok.startswith("#"):
                continue
            parts = tok.replace(":", " ").split()
            if len(parts) != 2:
                raise UsageError(f"cannot parse label map entry {tok!r}; write RAW:CLASS pairs, e.g. 1:0,2:255")
            try:
                mapping[int(parts[0])] = int(parts[1])
            except ValueError:
                raise UsageError(f"label map entry {tok!r} is not two integers; write RAW:CLASS, e.g. 1:0") from None
        return cls(mapping)

    def apply(self, mask: np.ndarray) -> np.ndarray:
        """Return the mapped mask (a lookup table for 8-bit masks, vectorised np.unique otherwise)."""
        if not self.mapping:
            return mask
        top = max(max(self.mapping.values()), int(mask.max()) if mask.size else 0)
        out_dtype = np.uint8 if top < 256 else np.int64
        if mask.dtype == np.uint8:
            lut = np.arange(256, dtype=np.int64)
            for k, v in self.mapping.items():
                if k < 256:
                    lut[k] = v
            return lut[mask].astype(out_dtype, copy=False)
        values, inverse = np.unique(mask, return_inverse=True)
        mapped = np.array([self.mapping.get(int(v), int(v)) for v in values], dtype=np.int64)
        return mapped[inverse].reshape(mask.shape).astype(out_dtype, copy=False)


def read_mask(path: str | os.PathLike, label_map: LabelMap | None = None) -> np.ndarray:
    """Decode a mask file to an HxW class-index array (uint8, or int64 for 16/32-bit masks).

    Raises DataError for missing/corrupt files, colour RGB masks and masks declaring more pixels than the
    limit (:mod:`segdeploy.datasets.imagefile`).
    """
    from PIL import UnidentifiedImageError

    from segdeploy.datasets.imagefile import open_image

    try:
        with open_image(path, what="mask") as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L"):
                arr = np.asarray(im, dtype=np.uint8)
            elif mode == "1":
                arr = np.asarray(im, dtype=np.uint8)
            elif mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.int64)
            elif mode in ("RGB", "RGBA", "LA", "PA"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise DataError(
                        f"mask {path} is a colour {mode} image; save masks as palette or grayscale PNGs of class ids"
                    )
                arr = rgb[..., 0].copy()
            else:
                raise DataError(f"mask {path} has unsupported image mode {mode}; use palette or grayscale PNG")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"mask {path} not found; check the --masks directory") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(
            f"cannot read mask {path} ({type(e).__name__}: {e}); replace or remove the file"
        ) from None
    if arr.ndim != 2:
        raise DataError(f"mask {path} decoded to shape {arr.shape}, expected HxW; save it as a single-channel PNG")
    if arr.size and int(arr.min()) < 0:
        raise DataError(f"mask {path} has negative values; class ids must be >= 0")
    if label_map is not None:
        arr = label_map.apply(arr)
    return arr


def write_mask(path: str | os.PathLike, mask: np.ndarray, palette: list[int] | None = None) -> None:
    """Write an HxW class-index array (values < 256) as a palette PNG, atomically."""
    from PIL import Image

    from segdeploy.fsutil import atomic_path

    if mask.ndim != 2 or (mask.size and (int(mask.max()) > 255 or int(mask.min()) < 0)):
        raise DataError(f"cannot write mask {path}: need HxW values in 0..255, got shape {mask.shape}")
    im = Image.fromarray(mask.astype(np.uint8)).convert("P")  # L -> P keeps the values as indices
    im.putpalette(palette if palette is not None else default_palette())
    with atomic_path(path, suffix=".png") as tmp:
        im.save(tmp, format="PNG")


def default_palette() -> list[int]:
    """The PASCAL VOC colour palette (256 RGB triplets, flattened); index 255 is white-ish."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    pal[255 * 3 : 256 * 3] = [224, 224, 192]
    return pal

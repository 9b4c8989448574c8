"""What a dataset lists before anything is decoded: image file extensions, :class:`Entry` (file paths), and
:func:`list_images` (one folder's images by stem).

Contract
--------
The layout readers (:mod:`~segdeploy.datasets.folder`, :mod:`~segdeploy.datasets.listfile`,
:mod:`~segdeploy.datasets.voc`) build :class:`Entry` lists from these; :func:`segdeploy.datasets.open_dataset`
wraps them in a :class:`~segdeploy.datasets.Dataset`. Nothing here opens an image. :func:`list_images` raises
:class:`~segdeploy.errors.DataError` for a missing directory or two files with one stem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from segdeploy.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclass(frozen=True)
class Entry:
    """One dataset item before decoding: file paths only."""

    stem: str
    image_path: str
    mask_path: str | None = None


def list_images(directory: str | os.PathLike) -> dict[str, Path]:
    """Map stem -> path for every image file directly inside ``directory`` (sorted, hidden files skipped).

    Raises DataError when the directory is missing or two files share a stem.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d} is not a directory; pass an existing image/mask folder")
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in out:
            raise DataError(f"two files with stem {p.stem!r} in {d} ({out[p.stem].name}, {p.name}); keep one")
        out[p.stem] = p
    return out

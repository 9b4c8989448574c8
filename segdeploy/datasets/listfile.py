"""A list file naming the dataset items, one per line.

Each non-empty line (``#`` starts a comment) is either

* ``IMAGE [MASK]`` -- paths (anything with a file extension or a ``/``), relative to the list file's
  directory unless absolute; or
* ``STEM`` -- a bare name looked up in the image folder (and the mask folder, when given), the way VOC's
  ``ImageSets/Segmentation/val.txt`` names its items.

Raises DataError naming the line number for missing files and for lines that cannot be resolved.
"""

from __future__ import annotations

import os
from pathlib import Path

from segdeploy.errors import DataError


def _is_path(tok: str) -> bool:
    return "/" in tok or os.sep in tok or bool(Path(tok).suffix)


def list_file_entries(
    list_file: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    masks_dir: str | os.PathLike | None = None,
) -> list:
    """Entries named by ``list_file`` (see module docstring)."""
    from segdeploy.datasets.listing import Entry, list_images

    lf = Path(list_file)
    try:
        lines = lf.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"list file {lf} not found; check --list") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read list file {lf}: {e}") from None
    base = lf.parent
    img_index = list_images(images_dir) if images_dir is not None and Path(images_dir).is_dir() else None
    mask_index = list_images(masks_dir) if masks_dir is not None else None
    entries = []
    for no, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        if len(toks) > 2:
            raise DataError(f"{lf}:{no}: expected 'IMAGE [MASK]' or 'STEM', got {len(toks)} fields")
        if len(toks) == 1 and not _is_path(toks[0]):
            stem = toks[0]
            if img_index is None:
                raise DataError(f"{lf}:{no}: bare name {stem!r} needs an image folder (--data DIR)")
            if stem not in img_index:
                raise DataError(f"{lf}:{no}: no image with stem {stem!r} in {images_dir}")
            mask = None
            if mask_index is not None:
                if stem not in mask_index:
                    raise DataError(f"{lf}:{no}: no mask with stem {stem!r} in {masks_dir}")
                mask = str(mask_index[stem])
            entries.append(Entry(stem, str(img_index[stem]), mask))
            continue
        paths = [Path(t) if Path(t).is_absolute() else base / t for t in toks]
        for p in paths:
            if not p.is_file():
                raise DataError(f"{lf}:{no}: file {p} not found; paths are relative to the list file's folder")
        mask = str(paths[1]) if len(paths) == 2 else None
        if mask is None and mask_index is not None:
            stem = paths[0].stem
            if stem not in mask_index:
                raise DataError(f"{lf}:{no}: no mask with stem {stem!r} in {masks_dir}")
            mask = str(mask_index[stem])
        entries.append(Entry(paths[0].stem, str(paths[0]), mask))
    return entries

"""Image folder + optional mask folder, matched by file stem.

``folder_entries(images_dir, masks_dir)``: every image file directly in ``images_dir`` (extensions in
:data:`segdeploy.datasets.listing.IMAGE_EXTENSIONS`); when ``masks_dir`` is given, each image needs exactly one mask
with the same stem (``cat_01.jpg`` <-> ``cat_01.png``) and each mask an image. Otherwise DataError lists the
unmatched stems on both sides (first few, with counts), so one run shows every problem.
"""

from __future__ import annotations

import os

from segdeploy.errors import DataError


def _few(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def folder_entries(images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None) -> list:
    """Entries for an image folder (and mask folder). Raises DataError on missing dirs or unmatched files."""
    from segdeploy.datasets.listing import Entry, list_images

    images = list_images(images_dir)
    if masks_dir is None:
        return [Entry(s, str(p)) for s, p in images.items()]
    masks = list_images(masks_dir)
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) in {images_dir} without a mask in {masks_dir}: {_few(no_mask)}")
        if no_image:
            parts.append(f"{len(no_image)} mask(s) in {masks_dir} without an image: {_few(no_image)}")
        raise DataError("; ".join(parts) + "; masks are matched to images by file stem, add or remove files")
    return [Entry(s, str(p), str(masks[s])) for s, p in images.items()]

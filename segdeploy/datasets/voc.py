"""The PASCAL VOC segmentation layout.

``ROOT/JPEGImages/*.jpg`` images, ``ROOT/SegmentationClass/*.png`` palette masks (palette index = class,
255 = border/ignore). Which items: ``split`` may be a path to a list file, or a name such as ``val``
resolved to ``ROOT/ImageSets/Segmentation/val.txt``; without a split, every image that has a mask is used
(VOC ships many JPEGs without segmentation masks, so unmatched images are not an error here).
"""

from __future__ import annotations

import os
from pathlib import Path

from segdeploy.errors import DataError


def voc_entries(
    root: str | os.PathLike, split: str | os.PathLike | None = None, masks_dir: str | os.PathLike | None = None
) -> list:
    """Entries of a VOC-layout dataset. Raises DataError when the layout is not there."""
    from segdeploy.datasets.listfile import list_file_entries
    from segdeploy.datasets.listing import Entry, list_images

    r = Path(root)
    img_dir = r / "JPEGImages"
    mask_dir = Path(masks_dir) if masks_dir is not None else r / "SegmentationClass"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"{r} is not a VOC layout: {d} is missing (expected JPEGImages/ and SegmentationClass/)")
    if split is not None:
        sp = Path(split)
        if not sp.is_file():
            named = r / "ImageSets" / "Segmentation" / f"{split}.txt"
            if not named.is_file():
                raise DataError(f"VOC split {split!r} not found (looked for {sp} and {named})")
            sp = named
        return list_file_entries(sp, img_dir, mask_dir)
    images = list_images(img_dir)
    masks = list_images(mask_dir)
    missing = sorted(set(masks) - set(images))
    if missing:
        raise DataError(f"{len(missing)} VOC mask(s) without an image in {img_dir}: {', '.join(missing[:5])}")
    return [Entry(s, str(images[s]), str(masks[s])) for s in sorted(masks)]

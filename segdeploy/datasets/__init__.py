"""Datasets: image/mask folder readers and the synthetic shapes set (``segdeploy.datasets.shapes``).

Contract
--------
:func:`open_dataset` returns a :class:`Dataset`: ``len(ds)`` entries, sorted by stem; iterating yields
:class:`Sample` objects ``(stem, image, mask, path)`` where ``image`` is HxWx3 uint8 RGB and ``mask`` is an
HxW integer array (uint8 for 8-bit PNGs, int64 otherwise) or ``None`` when the dataset has no masks.

Reading is lazy and streaming: the dataset holds only file paths, one image (and mask) is decoded at a
time, so memory does not grow with the dataset size. ``ds.entries`` + ``ds.load(entry)`` let a caller
handle a bad file per entry (the parity checker's ``--on-error skip``); plain iteration raises
:class:`~segdeploy.errors.DataError` at the first bad file. Every image and mask is opened through
:func:`segdeploy.datasets.imagefile.open_image` (a pixel limit checked from the header: no decompression
bombs). ``ds.subset(i, n)`` is shard ``i`` of ``n``; ``ds.fingerprint`` identifies the whole dataset's
listing (shards of one run share it).

Layouts
-------
* folder: ``open_dataset(images_dir, masks_dir)`` -- masks matched to images by file stem
  (``a.jpg`` <-> ``a.png``); any image without a mask or mask without an image is listed in the error.
* list file: ``open_dataset(root, masks, list_file=path)`` -- see :mod:`segdeploy.datasets.listfile`.
* VOC: ``open_dataset(voc_root, layout="voc")`` -- ``JPEGImages/`` + ``SegmentationClass/`` (+ the split in
  ``ImageSets/Segmentation/<split>.txt`` when given as ``list_file``).

Masks: see :mod:`segdeploy.datasets.masks` (palette or grayscale PNG, ignore index, label mapping).

:class:`DatasetOptions` is the frozen description of a dataset on the command line (`check`'s dataset group:
``--data --masks --list --layout --ignore-index --label-map``); ``options.open()`` is :func:`open_dataset`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from segdeploy.datasets.listing import IMAGE_EXTENSIONS, Entry, list_images
from segdeploy.errors import DataError

DEFAULT_IGNORE_INDEX = 255


@dataclass(frozen=True)
class Sample:
    """One decoded dataset item."""

    stem: str
    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray | None  # HxW integer class indices, or None
    path: str  # the image file


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB (grayscale/RGBA/16-bit are converted).

    EXIF orientation is *not* applied (masks carry none, so applying it would misalign them).
    Raises DataError naming the file when it is missing, unreadable, corrupt, or declares more pixels than
    the limit (:mod:`segdeploy.datasets.imagefile`).
    """
    from PIL import UnidentifiedImageError

    from segdeploy.datasets.imagefile import open_image

    try:
        with open_image(path) as im:
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} not found; check the --data directory") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(
            f"cannot read image {path} ({type(e).__name__}: {e}); replace or remove the file"
        ) from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"image {path} decoded to shape {arr.shape}, expected HxWx3; replace the file")
    return arr


class Dataset:
    """A sorted list of :class:`Entry` objects plus how to decode one.

    ``ignore_index`` and ``label_map`` are applied to masks by :meth:`load`.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        label_map=None,
        description: str = "",
        roots: tuple[str | None, str | None] = (None, None),
    ):
        self.entries: list[Entry] = sorted(entries, key=lambda e: e.stem)
        self.ignore_index = int(ignore_index)
        self.label_map = label_map
        self.description = description
        self.roots = roots  # (images root, masks root) the listing's relative paths are taken from
        self._whole: Dataset = self  # a subset's fingerprint is the whole dataset's
        self._fingerprint: str | None = None
        seen: set[str] = set()
        dup = sorted({e.stem for e in self.entries if e.stem in seen or seen.add(e.stem)})
        if dup:
            raise DataError(f"duplicate image stems {dup[:5]} in {description or 'the dataset'}; rename them")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def has_masks(self) -> bool:
        return bool(self.entries) and all(e.mask_path is not None for e in self.entries)

    def load(self, entry: Entry) -> Sample:
        """Decode one entry. Raises DataError (corrupt file, image/mask size mismatch)."""
        from segdeploy.datasets.masks import read_mask

        image = read_image(entry.image_path)
        mask = None
        if entry.mask_path is not None:
            mask = read_mask(entry.mask_path, self.label_map)
            if mask.shape != image.shape[:2]:
                raise DataError(
                    f"mask {entry.mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {entry.image_path} is "
                    f"{image.shape[1]}x{image.shape[0]} (WxH); masks must match their image size"
                )
        return Sample(entry.stem, image, mask, entry.image_path)

    def __iter__(self) -> Iterator[Sample]:
        for e in self.entries:
            yield self.load(e)

    def subset(self, index: int, count: int) -> "Dataset":
        """Shard ``index`` of ``count``: entries ``index, index+count, ...`` (strided, balanced).

        The subset keeps the whole dataset's :attr:`fingerprint`."""
        if count < 1 or not 0 <= index < count:
            raise DataError(f"invalid shard {index}/{count}; need 0 <= I < N")
        sub = Dataset(
            self.entries[index::count],
            ignore_index=self.ignore_index,
            label_map=self.label_map,
            description=f"{self.description} shard {index}/{count}",
            roots=self.roots,
        )
        sub._whole = self._whole
        return sub

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of the *whole* dataset's listing, before any :meth:`subset`: every entry's stem, image
        and mask path relative to :attr:`roots` (the base name without a root) and file size, the label map,
        and the bytes of :data:`FINGERPRINT_SAMPLES` entries spread over the listing. Shards of one run share
        it, so ``segdeploy merge`` can refuse shards of different datasets; it is the same on another machine
        holding the same files under another directory. It identifies the listing, not every byte (a file
        edited in place to the same size outside the sample goes unnoticed). Computed once (one ``stat`` per
        file, 16 file reads), on first use."""
        whole = self._whole
        if whole._fingerprint is None:
            whole._fingerprint = _listing_fingerprint(whole)
        return whole._fingerprint


FINGERPRINT_SAMPLES = 8  # entries whose bytes (image and mask) the fingerprint hashes, spread over the listing


def _listing_fingerprint(ds: Dataset) -> str:
    import hashlib
    import json

    def rel(path: str | None, root: str | None) -> str | None:
        if path is None:
            return None
        return os.path.relpath(path, root) if root else os.path.basename(path)

    def content(path: str | None) -> str:
        try:
            digest = hashlib.sha256()
            with open(path, "rb") as f:  # type: ignore[arg-type]
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
        except (OSError, TypeError):
            return "-"

    def size(path: str | None) -> int | None:
        try:
            return os.stat(path).st_size if path is not None else None
        except OSError:
            return None

    images_root, masks_root = ds.roots
    label_map = getattr(ds.label_map, "mapping", ds.label_map) or {}
    h = hashlib.sha256(json.dumps({"listing": 1, "label_map": sorted((int(k), int(v)) for k, v in label_map.items())})
                       .encode())
    for e in ds.entries:
        row = [e.stem, rel(e.image_path, images_root), size(e.image_path),
               rel(e.mask_path, masks_root or images_root), size(e.mask_path)]
        h.update(json.dumps(row).encode() + b"\n")
    n = len(ds.entries)
    for i in sorted({round(k * (n - 1) / (FINGERPRINT_SAMPLES - 1)) for k in range(FINGERPRINT_SAMPLES)} if n else ()):
        for path in (ds.entries[i].image_path, ds.entries[i].mask_path):
            h.update(content(path).encode() + b"\n")
    return h.hexdigest()


LAYOUTS = ("folder", "voc")


@dataclass(frozen=True)
class DatasetOptions:
    """Where a dataset is and how its masks read (the CLI's dataset group); validated on construction,
    opened by :meth:`open`. ``label_map``: a spec string (``"1:0,2:255"`` or a file), parsed on :meth:`open`."""

    images: str
    masks: str | None = None
    list_file: str | None = None
    layout: str = "folder"
    ignore_index: int = DEFAULT_IGNORE_INDEX
    label_map: str | None = None

    def __post_init__(self) -> None:
        from segdeploy.errors import UsageError

        if self.layout not in LAYOUTS:
            raise UsageError(f"unknown --layout {self.layout!r}; use one of {', '.join(LAYOUTS)}")

    def open(self, *, allow_empty: bool = False) -> "Dataset":
        """:func:`open_dataset` on these options (DataError / UsageError as it raises)."""
        return open_dataset(self.images, self.masks, list_file=self.list_file, layout=self.layout,
                            ignore_index=self.ignore_index, label_map=self.label_map, allow_empty=allow_empty)


def open_dataset(
    images: str | os.PathLike,
    masks: str | os.PathLike | None = None,
    list_file: str | os.PathLike | None = None,
    layout: str | None = None,
    *,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    label_map=None,
    allow_empty: bool = False,
) -> Dataset:
    """Open a dataset (see the module docstring for the layouts).

    ``layout``: None/"folder" or "voc". ``label_map``: a :class:`~segdeploy.datasets.masks.LabelMap`, a dict
    or a spec string (``"1:0,2:255"`` or a file path). Raises DataError (missing dirs, unmatched files, empty
    dataset unless ``allow_empty``) or UsageError (unknown layout).
    """
    from segdeploy.datasets.masks import LabelMap
    from segdeploy.errors import UsageError

    if label_map is not None and not isinstance(label_map, LabelMap):
        label_map = LabelMap.parse(label_map) if isinstance(label_map, str) else LabelMap(dict(label_map))
    if layout in (None, "folder"):
        if list_file is not None:
            from segdeploy.datasets.listfile import list_file_entries

            entries = list_file_entries(list_file, images, masks)
        else:
            from segdeploy.datasets.folder import folder_entries

            entries = folder_entries(images, masks)
        desc = str(images)
    elif layout == "voc":
        from segdeploy.datasets.voc import voc_entries

        entries = voc_entries(images, list_file, masks)
        desc = f"VOC {images}"
    else:
        raise UsageError(f"unknown dataset layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if not entries and not allow_empty:
        raise DataError(f"dataset {desc} is empty (no images found); check the path and image extensions")
    return Dataset(entries, ignore_index=ignore_index, label_map=label_map, description=desc,
                   roots=(str(images), str(masks) if masks is not None else None))


__all__ = [
    "DEFAULT_IGNORE_INDEX",
    "DatasetOptions",
    "LAYOUTS",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "Entry",
    "Sample",
    "list_images",
    "open_dataset",
    "read_image",
]

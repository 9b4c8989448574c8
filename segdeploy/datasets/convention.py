"""The project's data convention: where calibration and validation data are found when no option names them,
and the image sizes a data folder holds (read from the file headers).

Contract
--------
The convention (one place; the folder names are :mod:`segdeploy.vocab`'s split layout):

* ``./calibration/`` (:data:`~segdeploy.vocab.CALIB_ROOT`, relative to the working directory) is the default of
  ``--calib``. Its calibration images are the images directly inside it, or, when it has a ``calib/`` folder
  (the ``calibration/<set>/calib`` layout), the images in ``calib/``. A folder holding neither is no default.
* The validation split of a calibration folder ``C`` (:func:`validation_split_of`): ``C/val`` when it exists
  (images directly in ``calibration/``, split in ``calibration/val/images`` + ``calibration/val/masks``), or
  the sibling ``C/../val`` when ``C`` is named ``calib`` (``calibration/<set>/calib`` + ``calibration/<set>/val``).
  Nothing else: never a folder the user did not name or the convention does not define.

:func:`add_validation_hint` is the fix a missing split names. :func:`default_calibration` -> :class:`Convention` (the calibration source, or None with the one line that states
the convention and the flag). :func:`image_sizes` -> :class:`DataSizes` (a Counter of (H, W), header only, no
decoding; unreadable files are skipped here -- the readers that decode them report them).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from segdeploy.vocab import CALIB_ROOT, CALIB_SPLIT, IMAGES_DIR, MASKS_DIR, VAL_SPLIT

CONVENTION = (f"put calibration images in ./{CALIB_ROOT}/ (a validation split in {CALIB_ROOT}/{VAL_SPLIT}/{IMAGES_DIR} "
              f"+ {CALIB_ROOT}/{VAL_SPLIT}/{MASKS_DIR}) or pass --calib DIR")


@dataclass(frozen=True)
class Convention:
    """What the convention found: ``calib`` (a folder) or None, and the line saying what was used or missing."""

    calib: str | None
    line: str


def calib_source_of(root: str | os.PathLike) -> Path:
    """The calibration images of a calibration folder: ``root/calib`` when it exists, else ``root`` itself."""
    r = Path(root)
    return r / CALIB_SPLIT if (r / CALIB_SPLIT).is_dir() else r


def default_calibration(cwd: str | os.PathLike | None = None) -> Convention:
    """``./calibration/`` (relative to ``cwd``, default the working directory; ``calib`` is that relative path) when
    it holds images, else None + why."""
    from segdeploy.datasets.listing import list_images

    root = Path(cwd or os.getcwd()) / CALIB_ROOT
    if not root.is_dir():
        return Convention(None, f"no --calib and no ./{CALIB_ROOT}/ folder here; {CONVENTION}")
    src = calib_source_of(root)
    if not list_images(src):
        return Convention(None, f"no --calib, and ./{CALIB_ROOT}/ holds no images directly (nor in a {CALIB_SPLIT}/ "
                                f"folder); {CONVENTION}")
    shown = os.path.relpath(src, cwd or os.getcwd())
    return Convention(shown, f"calibration images: ./{shown}/ (the default; pass --calib to choose)")


def validation_split_of(calib: str | os.PathLike) -> Path | None:
    """The validation split the convention defines for calibration folder ``calib`` (see the module docstring)."""
    c = Path(calib).resolve()
    if not c.is_dir():
        return None
    if (c / VAL_SPLIT).is_dir():
        return _as_typed(c / VAL_SPLIT)
    if c.name == CALIB_SPLIT and (c.parent / VAL_SPLIT).is_dir():
        return _as_typed(c.parent / VAL_SPLIT)
    return None


def _as_typed(path: Path) -> Path:
    """``path`` (absolute) relative to the working directory when inside it, as a user would type it."""
    cwd = Path.cwd().resolve()
    return path.relative_to(cwd) if path.is_relative_to(cwd) else path


def add_validation_hint(calib: str | os.PathLike | None) -> str:
    """How to give a calibration folder its validation split: ``pass --val DIR or add <folder>/val/`` (the folder as
    typed from the working directory; beside a ``calib/`` folder; a list file or no --calib: only --val)."""
    if calib is None or not Path(calib).is_dir():
        return "pass --val DIR"
    c = Path(calib).resolve()
    return f"pass --val DIR or add {_as_typed(c.parent if c.name == CALIB_SPLIT else c)}/{VAL_SPLIT}/"


@dataclass(frozen=True)
class DataSizes:
    """Image sizes (H, W) -> count, of the images a command was given (calibration and validation)."""

    counts: Counter
    source: str

    @property
    def images(self) -> int:
        return sum(self.counts.values())

    @property
    def most_common(self) -> tuple[int, int]:
        """The most common (H, W); ties go to the larger image."""
        return max(self.counts.items(), key=lambda kv: (kv[1], kv[0][0] * kv[0][1], kv[0]))[0]

    @property
    def largest(self) -> tuple[int, int]:
        """(max H, max W) over all images: what a pad-mode profile must reach."""
        return max(h for h, _ in self.counts), max(w for _, w in self.counts)


def image_sizes(files: Iterable[str | os.PathLike], source: str) -> DataSizes | None:
    """The (H, W) of each image from its header (no decoding); None when no file could be read."""
    from segdeploy.datasets.imagefile import open_image

    counts: Counter = Counter()
    for f in files:
        try:
            with open_image(f) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - the decoding readers name bad files; sizes are a hint here
            continue
        counts[(h, w)] += 1
    return DataSizes(counts, source) if counts else None

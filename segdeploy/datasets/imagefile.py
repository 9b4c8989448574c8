"""The one guarded way to open an image file: a pixel limit checked from the header, before any decoding.

Contract
--------
``with open_image(path, what="mask") as im: ...`` opens ``path`` with Pillow (header only, lazy like
``Image.open``) and refuses, with one :class:`~segdeploy.errors.DataError`, any image whose header declares more pixels than the limit -- a few hundred bytes of PNG can declare
100000x100000 and make a decoder allocate 30 GB (a "decompression bomb"). The message names the file, its
declared size, the limit and the fix (:class:`ImageTooLargeError`). Pillow's own guard (a ``DecompressionBombWarning`` above
``Image.MAX_IMAGE_PIXELS``, a ``DecompressionBombError`` above twice that) is subsumed: its warning is not
shown, its error becomes the same one line. Other decoding errors are the caller's to report (each reader
knows its fix).

The limit (:func:`max_image_pixels`): ``SEGDEPLOY_MAX_IMAGE_PIXELS`` when set, else
:data:`DEFAULT_MAX_IMAGE_PIXELS` = 64 Mi pixels (8192 x 8192; an RGB image that large is 192 MiB decoded),
at most Pillow's hard limit (2 x ``Image.MAX_IMAGE_PIXELS`` = 178956970 unless the host program changed it).
A caller may pass a lower ``max_pixels`` (the calibration reader's option). Pillow's process-wide setting is
never changed.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from typing import IO, Any, Iterator

from segdeploy.errors import DataError, UsageError

ENV_MAX_PIXELS = "SEGDEPLOY_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def _pillow_hard_limit() -> int | None:
    from PIL import Image

    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def max_image_pixels() -> int:
    """The pixel limit in force (see the module docstring). Raises UsageError for a bad environment value."""
    text = os.environ.get(ENV_MAX_PIXELS, "").strip()
    hard = _pillow_hard_limit()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS if hard is None else min(DEFAULT_MAX_IMAGE_PIXELS, hard)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or (hard is not None and value > hard):
        top = f"1..{hard}" if hard is not None else "a positive integer"
        raise UsageError(f"{ENV_MAX_PIXELS}={text[:40]!r} is not a pixel count in {top} (Pillow refuses larger "
                         f"images itself); set it in that range or unset it (default {DEFAULT_MAX_IMAGE_PIXELS})")
    return value


class ImageTooLargeError(DataError):
    """An image header declares more pixels than the limit; ``declared`` (text) and ``limit`` say by how much."""

    def __init__(self, name: str, what: str, declared: str, limit: int):
        super().__init__(f"{what} {name} declares {declared}, more than the limit of {limit} pixels (a guard "
                         f"against decompression bombs); replace or downscale it, or if you trust it raise the limit "
                         f"with {ENV_MAX_PIXELS} (up to {_pillow_hard_limit() or 'any value'})")
        self.declared = declared
        self.limit = limit


@contextmanager
def open_image(source: str | os.PathLike | IO[bytes], *, name: str | None = None, what: str = "image",
               max_pixels: int | None = None) -> Iterator[Any]:
    """Open ``source`` with Pillow under the pixel limit; yield the (lazy) ``PIL.Image.Image``.

    ``name`` is the file as messages show it (default: ``source``); ``what`` says what it is ("mask",
    "calibration image"). Raises :class:`ImageTooLargeError` (a DataError) for an image declaring more pixels
    than the limit, UsageError for a bad ``SEGDEPLOY_MAX_IMAGE_PIXELS``; every other Pillow/OS error
    propagates unchanged.
    """
    from PIL import Image

    limit = max_image_pixels() if max_pixels is None else min(max_pixels, max_image_pixels())
    shown = name if name is not None else os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<data>"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
        try:
            im = Image.open(source)
        except Image.DecompressionBombError as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            raise ImageTooLargeError(shown, what, f"{m.group(1) if m else 'more than ' + str(limit)} pixels",
                                     limit) from None
    with im:
        w, h = im.size
        if w * h > limit:
            raise ImageTooLargeError(shown, what, f"{w}x{h} = {w * h} pixels", limit)
        yield im

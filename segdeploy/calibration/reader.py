"""Calibration sets: find images, sample them reproducibly, check them, preprocess and batch them.

Contract
--------
:func:`open_calibration_set` lists the images of a folder (non-recursive, sorted by name) or of a list file
(one path per line, relative to the list file's folder; blank lines and ``#`` comments skipped), samples
``size`` of them with ``numpy.random.default_rng(seed)`` (no replacement, kept in listing order), checks every
sampled file from its header (readable, channel count, size) and hashes the sampled files' bytes.
Every problem found is reported at once in one :class:`~segdeploy.errors.DataError` listing the files.

:func:`iter_batches` decodes the sampled images and yields :class:`Batch` es of float32 NCHW arrays, exactly
as the manifest's :class:`~segdeploy.spec.Preprocess` says (``x = (pixel * scale - mean) / std`` per channel,
in ``channel_order``): in ``pad`` mode the image is padded bottom/right with zeros in the normalised
tensor up to the spatial multiple (and at least the profile's min H/W); in ``resize`` mode it is
resized bilinearly to the profile's opt H/W. Consecutive images of the same final shape share a batch.
For 3-channel models listing and preprocessing are the dataset readers' own (``segdeploy.datasets``
``list_images`` and ``preprocess.to_batch``), so calibration tensors equal the parity checker's inputs.

Policies (see the package docstring): grayscale for a 3-channel model is refused unless ``gray="replicate"``;
palette images are colour; RGBA only with a fully opaque alpha; images declaring more pixels than the shared
limit (or ``max_pixels``) are refused. Images above the profile's max H/W in ``pad`` mode are not refused: they
are resized down keeping their aspect ratio until they fit (:func:`fit_within`; ``CalibrationSet.oversize`` counts
them, and the manifest's calibration set records ``resized_to_fit``), since a camera's frames are what the
deployment sees, only smaller than the profile allows. Every file is
opened through :func:`segdeploy.datasets.imagefile.open_image`, the guarded opener all readers share.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from segdeploy.datasets.imagefile import ENV_MAX_PIXELS, ImageTooLargeError, open_image
from segdeploy.errors import DataError, UsageError
from segdeploy.spec import Preprocess, ShapeProfile

GRAY_POLICIES = ("refuse", "replicate")
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_COLOR_MODES = {"RGB", "P", "PA", "RGBA", "RGBa", "RGBX", "YCbCr", "LAB", "HSV"}
_MAX_LISTED = 8


@dataclass(frozen=True)
class CalibrationSet:
    """The sampled calibration images. ``files`` are absolute paths in the order they are fed."""

    source: str
    files: tuple[str, ...]
    size: int
    seed: int
    available: int
    data_sha256: str
    gray: str = "refuse"
    oversize: int = 0  # images above the profile's max H/W (pad mode): resized down keeping aspect

    def to_dict(self) -> dict:
        out = {
            "source": self.source,
            "size": self.size,
            "seed": self.seed,
            "available": self.available,
            "data_sha256": self.data_sha256,
            "gray": self.gray,
        }
        if self.oversize:
            out["resized_to_fit"] = self.oversize
        return out


@dataclass(frozen=True)
class Batch:
    """One preprocessed batch: ``array`` float32 NCHW and the files it came from."""

    array: np.ndarray
    files: tuple[str, ...]


def _listing(files: list[str], base: Path | None = None) -> str:
    names = [os.path.relpath(f, base) if base else f for f in files[:_MAX_LISTED]]
    more = f" (+{len(files) - _MAX_LISTED} more)" if len(files) > _MAX_LISTED else ""
    return ", ".join(names) + more


def list_images(source: str | os.PathLike) -> list[str]:
    """Absolute paths of the images in a folder (sorted) or named by a list file. Raises DataError."""
    from segdeploy.datasets import IMAGE_EXTENSIONS, list_images as dataset_images

    src = Path(source)
    if src.is_dir():
        # the dataset reader's listing: same extensions, hidden files skipped, duplicate stems refused
        files = [str(p.resolve()) for p in dataset_images(src).values()]
        if not files:
            raise DataError(
                f"calibration folder {src} contains no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "point --calib at a folder of images or a list file"
            )
        return files
    if src.is_file():
        if src.suffix.lower() in IMAGE_EXTENSIONS:
            raise DataError(f"--calib {src} is a single image; pass a folder of images or a list file")
        try:
            lines = src.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read calibration list file {src}: {e}; pass a UTF-8 text file, one path per line") from None
        files, missing = [], []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            p = Path(line.split()[0])  # 'IMAGE [MASK]' lines as in segdeploy.datasets.listfile: the image
            p = p if p.is_absolute() else src.parent / p
            (files if p.is_file() else missing).append(str(p.resolve()))
        if missing:
            raise DataError(
                f"calibration list {src} names {len(missing)} missing file(s): {_listing(missing, src.parent.resolve())}; paths are relative to the list file, fix the list"
            )
        if not files:
            raise DataError(f"calibration list file {src} names no images; write one image path per line")
        return files
    raise DataError(f"calibration source {src} does not exist; pass a folder of images or a list file")


def sample_files(files: list[str], size: int | None, seed: int, source: str = "") -> list[str]:
    """Reproducibly choose ``size`` of ``files`` (all when None), keeping listing order."""
    if size is None:
        return list(files)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UsageError(f"--calib-size must be a positive integer, got {size!r}")
    if size > len(files):
        raise DataError(
            f"--calib-size {size} asks for more images than {source or 'the calibration set'} has ({len(files)}); "
            f"add images or use --calib-size {len(files)} or less"
        )
    idx = np.sort(np.random.default_rng(seed).choice(len(files), size=size, replace=False))
    return [files[i] for i in idx]


def _image_channels(mode: str) -> int | None:
    if mode in _GRAY_MODES:
        return 1
    if mode in _COLOR_MODES:
        return 3
    return None  # CMYK and exotic modes: report as unsupported


def _above_max(h: int, w: int, profile: ShapeProfile | None, preprocess: Preprocess | None) -> bool:
    """Whether a pad-mode image of ``h`` x ``w`` pads past the profile's max H/W (so :func:`fit_within` shrinks it)."""
    if profile is None or preprocess is None or preprocess.resize != "pad":
        return False
    m = profile.spatial_multiple
    return -(-h // m) * m > profile.max[2] or -(-w // m) * m > profile.max[3]


def fit_within(img: np.ndarray, profile: ShapeProfile) -> np.ndarray:
    """``img`` (HxWxC uint8) resized down (bilinear, aspect kept) so its padded size fits the profile's max H/W;
    unchanged when it already fits."""
    from PIL import Image

    h, w = img.shape[:2]
    m = profile.spatial_multiple
    if -(-h // m) * m <= profile.max[2] and -(-w // m) * m <= profile.max[3]:
        return img
    max_h, max_w = (profile.max[2] // m) * m, (profile.max[3] // m) * m
    scale = min(max_h / h, max_w / w)
    nh, nw = max(1, min(max_h, int(h * scale))), max(1, min(max_w, int(w * scale)))
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    return np.ascontiguousarray(out[:, :, None] if out.ndim == 2 else out)


def _check_image(path: str, channels: int, gray: str, max_pixels: int | None) -> str | None:
    """None if the image is usable, else a short reason."""
    try:
        with open_image(path, max_pixels=max_pixels) as im:
            mode = im.mode
            c = _image_channels(mode)
            if c is None:
                return f"mode {mode} is not RGB or grayscale"
            if channels == 3 and c == 1 and gray == "refuse":
                return f"grayscale ({mode}) but the model takes 3 channels"
            if channels == 1 and c == 3:
                return f"colour ({mode}) but the model takes 1 channel"
            if mode in ("RGBA", "RGBa", "PA", "LA", "La") or (mode == "P" and "transparency" in im.info):
                alpha = im.convert("RGBA").getchannel("A")
                lo, _ = alpha.getextrema()
                if lo < 255:
                    return "has transparent pixels (alpha < 255); flatten it onto a background first"
    except ImageTooLargeError as e:
        return f"declares {e.declared}, above the {e.limit} pixel limit"
    except UsageError:  # a bad SEGDEPLOY_MAX_IMAGE_PIXELS: not this file's fault
        raise
    except Exception as e:  # PIL raises many types for bad files
        return f"unreadable ({type(e).__name__})"
    return None


def open_calibration_set(
    source: str | os.PathLike,
    *,
    size: int | None = None,
    seed: int = 0,
    channels: int = 3,
    gray: str = "refuse",
    profile: ShapeProfile | None = None,
    preprocess: Preprocess | None = None,
    max_pixels: int | None = None,
    min_images: int = 1,
) -> CalibrationSet:
    """List, sample, check and hash a calibration set.

    ``channels`` is the model's input channel count (1 or 3). With ``profile`` and ``preprocess`` the
    images that ``pad`` mode must shrink are counted (``oversize``). ``max_pixels`` lowers the shared image pixel limit
    (:func:`segdeploy.datasets.imagefile.max_image_pixels`, default 64 Mi pixels). Raises DataError listing every bad file, UsageError for bad options.
    """
    if gray not in GRAY_POLICIES:
        raise UsageError(f"gray policy must be one of {GRAY_POLICIES}, got {gray!r}")
    if channels not in (1, 3):
        raise DataError(f"the model takes {channels} input channels; image calibration supports 1 or 3")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"--seed must be an integer, got {seed!r}")
    files = list_images(source)
    if len(files) < min_images:
        raise DataError(f"calibration set {source} has {len(files)} image(s), at least {min_images} needed; add images")
    chosen = sample_files(files, size, seed, str(source))
    problems: list[str] = []
    for f in chosen:
        why = _check_image(f, channels, gray, max_pixels)
        if why:
            problems.append(f"{os.path.basename(f)}: {why}")
    oversize = _count_oversize(chosen, profile, preprocess) if not problems else 0
    if problems:
        fix = "remove or convert them"
        if any("grayscale" in p for p in problems):
            fix += " (or allow grayscale with gray='replicate' / --calib-gray replicate)"
        if any(" pixel limit" in p for p in problems):
            fix += f" (or, if you trust them, raise the pixel limit with {ENV_MAX_PIXELS})"
        raise DataError(
            f"{len(problems)} of {len(chosen)} calibration image(s) in {source} cannot be used: "
            f"{'; '.join(problems[:_MAX_LISTED])}{' ...' if len(problems) > _MAX_LISTED else ''}; {fix}"
        )
    h = hashlib.sha256()
    for f in chosen:
        with open(f, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return CalibrationSet(
        source=str(source),
        files=tuple(chosen),
        size=len(chosen),
        seed=seed,
        available=len(files),
        data_sha256=h.hexdigest(),
        gray=gray,
        oversize=oversize,
    )


def _count_oversize(files: list[str], profile: ShapeProfile | None, preprocess: Preprocess | None) -> int:
    """How many of ``files`` (already checked readable) pad past the profile's max H/W in pad mode."""
    if profile is None or preprocess is None or preprocess.resize != "pad":
        return 0
    n = 0
    for f in files:
        with open_image(f) as im:
            w, h = im.size
        n += _above_max(h, w, profile, preprocess)
    return n


def load_image(path: str, channels: int = 3, gray: str = "refuse") -> np.ndarray:
    """Decode one image to HxWxC uint8 (RGB for colour, C=1 for grayscale). Raises DataError."""
    try:
        with open_image(path, what="calibration image") as im:
            im.load()
            c = _image_channels(im.mode)
            if channels == 1:
                arr = np.asarray(im.convert("L"))[:, :, None]
            elif c == 1 and gray == "refuse":
                raise DataError(f"calibration image {path} is grayscale but the model takes 3 channels; convert it")
            else:
                arr = np.asarray(im.convert("RGB"))
    except (DataError, UsageError):
        raise
    except Exception as e:
        raise DataError(f"cannot decode calibration image {path} ({type(e).__name__}: {e}); remove or replace it") from None
    return np.ascontiguousarray(arr)


def preprocess_image(img: np.ndarray, preprocess: Preprocess, profile: ShapeProfile) -> np.ndarray:
    """HxWxC uint8 -> CxH'xW' float32 per ``preprocess`` (see module docstring). Used for 1-channel models;
    3-channel models go through :func:`segdeploy.datasets.preprocess.to_batch` (same formula, tested equal)."""
    if preprocess.resize == "resize":
        from PIL import Image

        oh, ow = profile.opt[2], profile.opt[3]
        if img.shape[:2] != (oh, ow):
            pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
            img = np.asarray(pil.resize((ow, oh), Image.BILINEAR))
            if img.ndim == 2:
                img = img[:, :, None]
    if preprocess.resize == "pad":
        img = fit_within(img, profile)
    x = img.astype(np.float32)
    if img.shape[2] == 3 and preprocess.channel_order == "BGR":
        x = x[:, :, ::-1]
    c = x.shape[2]
    if len(preprocess.mean) != c:
        raise DataError(f"preprocess has {len(preprocess.mean)} mean/std values but images have {c} channels; fix the manifest")
    mean = np.asarray(preprocess.mean, np.float32)
    std = np.asarray(preprocess.std, np.float32)
    x = (x * np.float32(preprocess.scale) - mean) / std
    x = np.ascontiguousarray(x.transpose(2, 0, 1))
    if preprocess.resize == "pad":
        m = profile.spatial_multiple
        h, w = x.shape[1:]
        th = max(-(-h // m) * m, profile.min[2])
        tw = max(-(-w // m) * m, profile.min[3])
        if (th, tw) != (h, w):
            x = np.pad(x, ((0, 0), (0, th - h), (0, tw - w)))
    return x.astype(np.float32, copy=False)


def iter_batches(
    calib_set: CalibrationSet,
    preprocess: Preprocess,
    profile: ShapeProfile,
    batch_size: int = 8,
) -> Iterator[Batch]:
    """Yield preprocessed batches of at most ``batch_size`` (and at most the profile's max batch)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    bs = min(batch_size, profile.max[0])
    if profile.channels == 3:
        yield from _batches_rgb(calib_set, preprocess, profile, bs)
        return
    cur: list[np.ndarray] = []
    cur_files: list[str] = []
    for f in calib_set.files:
        x = preprocess_image(load_image(f, profile.channels, calib_set.gray), preprocess, profile)
        if cur and (x.shape != cur[0].shape or len(cur) == bs):
            yield Batch(np.stack(cur), tuple(cur_files))
            cur, cur_files = [], []
        cur.append(x)
        cur_files.append(f)
    if cur:
        yield Batch(np.stack(cur), tuple(cur_files))


def _batches_rgb(calib_set: CalibrationSet, preprocess: Preprocess, profile: ShapeProfile, bs: int) -> Iterator[Batch]:
    """3-channel models: the parity checker's own decoding and ``to_batch``, so calibration sees exactly
    the tensors inference sees. Images are grouped by their target size (no extra padding in a batch)."""
    from segdeploy.datasets.preprocess import target_size, to_batch
    from segdeploy.errors import ShapeError

    cur: list[np.ndarray] = []
    cur_files: list[str] = []
    cur_size = None
    for f in calib_set.files:
        img = load_image(f, 3, calib_set.gray)
        if preprocess.resize == "pad":
            img = fit_within(img, profile)
        try:
            size = target_size(img.shape[0], img.shape[1], preprocess, profile)
        except ShapeError as e:
            raise DataError(f"calibration image {f}: {e}") from None
        if cur and (size != cur_size or len(cur) == bs):
            yield Batch(to_batch(cur, preprocess, profile)[0], tuple(cur_files))
            cur, cur_files = [], []
        cur.append(img)
        cur_files.append(f)
        cur_size = size
    if cur:
        yield Batch(to_batch(cur, preprocess, profile)[0], tuple(cur_files))

"""Synthetic "shapes" segmentation set: the example data every segdeploy stage measures against.

Each sample is an RGB image with 2-6 filled shapes (circle, square, triangle, ring, star) drawn over a
textured background (colour gradient, stripes, noise blotches, distractor lines), with random size,
rotation, colour, overlap/occlusion, lighting, blur and per-pixel noise; the mask holds the class id of
the top-most shape at each pixel (0 = background). Colours are random per shape and per background, so a
model has to learn geometry, not colour.

Determinism contract: sample ``(seed, split, index)`` is produced by its own ``numpy.random.Generator``
seeded from ``SeedSequence([seed, split_id, index])``. It does not read or change the global NumPy/Python
random state, and sample ``i`` is identical whatever order (or process) it is generated in. The splits
use different seed streams, so they are disjoint by construction.

API:
    CLASS_NAMES                          tuple of class names, index = class id
    make_sample(index, size, split, seed) -> (image HxWx3 uint8 RGB, mask HxW uint8 class ids)
    generate(n, size, split, seed, start) -> iterator of (index, image, mask)
    write_split(out_dir, n, split, size, seed, images_only) -> list of written stems
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from segdeploy.errors import UsageError
from segdeploy.vocab import CALIB_SPLIT, IMAGES_DIR, MASKS_DIR, VAL_SPLIT

CLASS_NAMES: tuple[str, ...] = ("background", "circle", "square", "triangle", "ring", "star")
NUM_CLASSES: int = len(CLASS_NAMES)
SPLITS: dict[str, int] = {"train": 0, VAL_SPLIT: 1, CALIB_SPLIT: 2}
DEFAULT_SIZE: tuple[int, int] = (128, 128)
DEFAULT_SEED: int = 2026

# Geometry is defined for a 128-pixel reference side and scaled with min(H, W).
_REF_SIDE = 128.0
_MIN_RADIUS = 7.0
_MAX_RADIUS = 18.0
_MIN_CONTRAST = 70.0  # minimum RGB distance between a shape's colour and the background under it
_STRIPE_PROB, _STRIPE_STRENGTH, _STRIPE_PERIOD = 1.0, (0.2, 0.5), (0.04, 0.15)
_BLOTCH_PROB, _BLOTCH_OPACITY = 0.7, (0.4, 0.9)
_MAX_LINES = 3
_NOISE_SIGMA = (2.0, 12.0)
_BLUR_SIGMA = (0.3, 1.1)


def _check_args(index: int, size: tuple[int, int], split: str) -> tuple[int, int]:
    if split not in SPLITS:
        raise UsageError(f"unknown shapes split {split!r}; use one of {', '.join(SPLITS)}")
    if int(index) < 0:
        raise UsageError(f"shapes sample index must be >= 0, got {index}")
    try:
        h, w = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise UsageError(f"shapes size must be (height, width), got {size!r}") from None
    if h < 16 or w < 16:
        raise UsageError(f"shapes size must be at least 16x16, got {h}x{w}")
    return h, w


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), SPLITS[split], int(index)])))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=3)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid, bilinearly upsampled to h x w."""
    gh, gw = cells + 1, cells + 1
    grid = rng.uniform(0.0, 1.0, size=(gh, gw))
    ys = np.linspace(0.0, gh - 1.0, h)
    xs = np.linspace(0.0, gw - 1.0, w)
    y0 = np.clip(np.floor(ys).astype(int), 0, gh - 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, gw - 2)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    # smoothstep the fractions so the blotches have no visible grid lines
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, side: float) -> np.ndarray:
    h, w = yy.shape
    # linear gradient between two random colours at a random angle
    c0, c1 = _random_colour(rng), _random_colour(rng)
    ang = rng.uniform(0, 2 * np.pi)
    t = (np.cos(ang) * xx + np.sin(ang) * yy) / side
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    # noise blotches in a fourth colour
    if rng.uniform() < _BLOTCH_PROB:
        c3 = _random_colour(rng)
        blot = _smooth_noise(rng, h, w, int(rng.integers(3, 9)))
        thr = rng.uniform(0.45, 0.7)
        m = np.clip((blot - thr) / 0.08, 0.0, 1.0) * rng.uniform(*_BLOTCH_OPACITY)
        img = img * (1 - m[..., None]) + c3[None, None, :] * m[..., None]
    # stripes (sinusoidal, random period, angle, strength) in a third colour
    if rng.uniform() < _STRIPE_PROB:
        c2 = _random_colour(rng)
        period = rng.uniform(*_STRIPE_PERIOD) * side
        sang = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(sang) * xx + np.sin(sang) * yy) / period + phase)
        strength = rng.uniform(*_STRIPE_STRENGTH)
        img = img * (1 - strength * s[..., None]) + c2[None, None, :] * (strength * s[..., None])
    # distractor strokes: thin straight lines that are background, not shapes
    for _ in range(int(rng.integers(0, _MAX_LINES + 1))):
        cl = _random_colour(rng)
        p = rng.uniform(0, 1, size=2) * np.array([w, h])
        ang = rng.uniform(0, np.pi)
        width = rng.uniform(0.6, 1.8) * side / _REF_SIDE
        dist = np.abs(-np.sin(ang) * (xx - p[0]) + np.cos(ang) * (yy - p[1]))
        along = np.abs(np.cos(ang) * (xx - p[0]) + np.sin(ang) * (yy - p[1]))
        m = (dist <= width) & (along <= rng.uniform(0.2, 0.7) * side)
        img[m] = cl
    return img


def _polygon_mask(xx: np.ndarray, yy: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test at pixel centres; verts is (N, 2) as (x, y)."""
    inside = np.zeros(xx.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        if y1 == y2:
            continue
        cond = (y1 > yy) != (y2 > yy)
        xint = (x2 - x1) * (yy - y1) / (y2 - y1) + x1
        inside ^= cond & (xx < xint)
    return inside


def _regular_verts(cx: float, cy: float, radii: np.ndarray, rot: float) -> np.ndarray:
    k = len(radii)
    ang = rot + 2 * np.pi * np.arange(k) / k
    return np.stack([cx + radii * np.cos(ang), cy + radii * np.sin(ang)], axis=1)


def _shape_mask(cls: int, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, side: float) -> np.ndarray:
    h, w = xx.shape
    scale = side / _REF_SIDE
    r = rng.uniform(_MIN_RADIUS, _MAX_RADIUS) * scale
    cx = rng.uniform(-0.1 * r, w - 1 + 0.1 * r)
    cy = rng.uniform(-0.1 * r, h - 1 + 0.1 * r)
    rot = rng.uniform(0, 2 * np.pi)
    name = CLASS_NAMES[cls]
    if name == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if name == "ring":
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        r_in = r * rng.uniform(0.45, 0.65)
        return (d2 <= r * r) & (d2 >= r_in * r_in)
    if name == "square":
        return _polygon_mask(xx, yy, _regular_verts(cx, cy, np.full(4, r * 0.92), rot))
    if name == "triangle":
        return _polygon_mask(xx, yy, _regular_verts(cx, cy, np.full(3, r * 1.1), rot))
    if name == "star":
        inner = rng.uniform(0.42, 0.55)
        radii = np.tile(np.array([r * 1.1, r * 1.1 * inner]), 5)
        return _polygon_mask(xx, yy, _regular_verts(cx, cy, radii, rot))
    raise AssertionError(f"no geometry for class {name}")  # unreachable: classes are fixed above


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.05:
        return img
    rad = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, ((rad, rad), (rad, rad), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    tmp = sum(k[i] * pad[i : i + h, :, :] for i in range(2 * rad + 1))
    return sum(k[i] * tmp[:, i : i + w, :] for i in range(2 * rad + 1))


def make_sample(
    index: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    split: str = "train",
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate sample ``index`` of ``split``.

    Returns ``(image, mask)``: image ``(H, W, 3)`` uint8 RGB, mask ``(H, W)`` uint8 class ids in
    ``range(NUM_CLASSES)``. Raises UsageError for an unknown split, a negative index or a size
    below 16x16. Pure function of its arguments (see the module docstring).
    """
    h, w = _check_args(index, size, split)
    rng = _rng(seed, split, index)
    side = float(min(h, w))
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")

    img = _background(rng, yy, xx, side)
    mask = np.zeros((h, w), dtype=np.uint8)
    n_shapes = int(rng.integers(2, 7))
    for _ in range(n_shapes):
        cls = int(rng.integers(1, NUM_CLASSES))
        m = _shape_mask(cls, rng, xx, yy, side)
        if not m.any():
            continue
        under = img[m].mean(axis=0)
        colour = _random_colour(rng)
        for _try in range(20):  # keep the shape visible against what it is drawn over
            if np.linalg.norm(colour - under) >= _MIN_CONTRAST:
                break
            colour = _random_colour(rng)
        # lighting: a soft linear shading across the shape
        ang = rng.uniform(0, 2 * np.pi)
        shade = 1.0 + rng.uniform(0.0, 0.25) * (np.cos(ang) * xx[m] + np.sin(ang) * yy[m]) / side
        shade = shade - shade.mean() + 1.0
        img[m] = np.clip(colour[None, :] * shade[:, None], 0, 255)
        mask[m] = cls

    img = _gaussian_blur(img, rng.uniform(*_BLUR_SIGMA) * side / _REF_SIDE)
    img = img + rng.normal(0.0, rng.uniform(*_NOISE_SIGMA), size=img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return image, mask


def generate(
    n: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    split: str = "train",
    seed: int = DEFAULT_SEED,
    start: int = 0,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(index, image, mask)`` for indices ``start .. start + n - 1`` of ``split``."""
    if int(n) < 0:
        raise UsageError(f"number of shapes samples must be >= 0, got {n}")
    _check_args(start, size, split)
    for i in range(int(start), int(start) + int(n)):
        image, mask = make_sample(i, size=size, split=split, seed=seed)
        yield i, image, mask


def stem(split: str, index: int) -> str:
    """File stem of sample ``index`` of ``split``, e.g. ``shapes_val_0003``."""
    return f"shapes_{split}_{int(index):04d}"


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_split(
    out_dir: str | os.PathLike,
    n: int,
    split: str,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    images_only: bool = False,
) -> list[str]:
    """Write ``n`` samples of ``split`` as PNG files; return their stems in order.

    Layout: ``out_dir/images/<stem>.png`` (RGB) and ``out_dir/masks/<stem>.png`` (8-bit grey, pixel =
    class id); with ``images_only`` the RGB images go straight into ``out_dir`` and no masks are written
    (the layout of a calibration set). Each file is written atomically. Raises UsageError for bad
    arguments and ArtifactError when ``out_dir`` cannot be written.
    """
    from segdeploy.fsutil import atomic_write_bytes, ensure_writable_dir

    if int(n) < 0:
        raise UsageError(f"number of shapes samples must be >= 0, got {n}")
    _check_args(0, size, split)
    root = ensure_writable_dir(out_dir)
    img_dir = root if images_only else ensure_writable_dir(root / IMAGES_DIR)
    mask_dir = None if images_only else ensure_writable_dir(root / MASKS_DIR)
    stems = []
    for i, image, mask in generate(n, size=size, split=split, seed=seed):
        s = stem(split, i)
        atomic_write_bytes(Path(img_dir) / f"{s}.png", _png_bytes(image))
        if mask_dir is not None:
            atomic_write_bytes(Path(mask_dir) / f"{s}.png", _png_bytes(mask))
        stems.append(s)
    return stems

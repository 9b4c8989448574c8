"""Images -> model input batches, and predictions back to each image's original size.

Contract
--------
``to_batch(images, preprocess, profile)`` takes HxWx3 uint8 RGB images and returns
``(batch, infos)``: a float32 NCHW array and one :class:`InputInfo` per image.
``restore_prediction(pred, info)`` maps an HxW class map at the batch's size back to the image's
original HxW (which is also its mask's size: masks must match their image).

How an image reaches an accepted input size (``Preprocess.resize``):

* ``"pad"`` (default): pad bottom/right up to the next multiple of ``profile.spatial_multiple`` (and at
  least ``profile.min`` H/W); the padding is 0 *after* normalisation (i.e. the dataset mean colour).
  In a batch every image is padded to the batch's largest padded size. Predictions are cropped back to
  the top-left HxW: exact, no resampling. An image larger than ``profile.max`` H/W raises ShapeError
  (re-export with a larger ``--max-shape`` or use resize mode).
* ``"resize"``: bilinear resize (PIL, on the uint8 image) to ``profile.opt`` H/W; predictions are resized
  back with nearest-neighbour (pixel centres, ``floor((i + 0.5) * in / out)``).

Normalisation: ``x = (pixel * scale - mean) / std`` per channel, channels in ``channel_order`` (images are
RGB; "BGR" reverses them before the mean/std, which are given in the model's channel order).
Without a profile (no manifest), pad mode pads nothing beyond the batch's largest image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from segdeploy.errors import DataError, ShapeError, UsageError
from segdeploy.spec import Preprocess, ShapeProfile


@dataclass(frozen=True)
class InputInfo:
    """Where one image sits inside its batch tensor."""

    orig_h: int
    orig_w: int
    input_h: int  # batch tensor H
    input_w: int  # batch tensor W
    content_h: int  # rows of the tensor holding the image (pad: orig_h; resize: input_h)
    content_w: int
    mode: str  # "pad" or "resize"


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def target_size(h: int, w: int, preprocess: Preprocess, profile: ShapeProfile | None) -> tuple[int, int]:
    """The (H, W) an image of size ``h`` x ``w`` is brought to on its own. Raises ShapeError if out of range."""
    if preprocess.resize == "resize":
        if profile is None:
            raise UsageError("resize preprocessing needs a shape profile (pass --manifest from `segdeploy export`)")
        return profile.opt[2], profile.opt[3]
    if profile is None:
        return h, w
    m = profile.spatial_multiple
    th = max(_round_up(h, m), profile.min[2])
    tw = max(_round_up(w, m), profile.min[3])
    if th > profile.max[2] or tw > profile.max[3]:
        raise ShapeError(
            f"image {w}x{h} (WxH) pads to {tw}x{th}, above the model's max input {profile.max[3]}x{profile.max[2]}; "
            "re-export with a larger --max-shape or use resize preprocessing"
        )
    return th, tw


def _normalise(img: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32 normalised in the model's channel order."""
    x = img.astype(np.float32)
    if preprocess.channel_order == "BGR":
        x = x[..., ::-1]
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    std = np.asarray(preprocess.std, dtype=np.float32)
    if mean.size not in (1, 3):
        raise UsageError(f"preprocess mean/std have {mean.size} values; RGB images need 1 or 3")
    x = (x * np.float32(preprocess.scale) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _resize_bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR), dtype=np.uint8)


def to_batch(
    images: Sequence[np.ndarray], preprocess: Preprocess, profile: ShapeProfile | None = None
) -> tuple[np.ndarray, list[InputInfo]]:
    """Preprocess ``images`` into one float32 NCHW batch (see module docstring). Raises DataError/ShapeError."""
    if not images:
        raise DataError("to_batch got no images")
    if profile is not None and len(images) > profile.max[0]:
        raise ShapeError(f"batch of {len(images)} exceeds the model's max batch {profile.max[0]}; lower --batch-size")
    for img in images:
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise DataError(f"expected HxWx3 uint8 RGB images, got {img.shape} {img.dtype}")
    sizes = [target_size(img.shape[0], img.shape[1], preprocess, profile) for img in images]
    H = max(s[0] for s in sizes)
    W = max(s[1] for s in sizes)
    n = len(images)
    if profile is not None and n < profile.min[0]:
        raise ShapeError(f"batch of {n} is below the model's min batch {profile.min[0]}; raise --batch-size")
    batch = np.zeros((n, 3, H, W), dtype=np.float32)
    infos = []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        if preprocess.resize == "resize":
            x = _normalise(_resize_bilinear(img, H, W), preprocess)
            batch[i] = x
            infos.append(InputInfo(h, w, H, W, H, W, "resize"))
        else:
            batch[i, :, :h, :w] = _normalise(img, preprocess)
            infos.append(InputInfo(h, w, H, W, h, w, "pad"))
    return batch, infos


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    idx = np.floor((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def restore_prediction(pred: np.ndarray, info: InputInfo) -> np.ndarray:
    """Map an HxW prediction at the batch size back to the original image size (crop or nearest resize)."""
    if pred.shape[-2:] != (info.input_h, info.input_w):
        raise ShapeError(
            f"prediction is {pred.shape[-1]}x{pred.shape[-2]} but the input was {info.input_w}x{info.input_h}; "
            "the model must return logits at the input resolution"
        )
    content = pred[..., : info.content_h, : info.content_w]
    if info.mode == "pad" or (info.content_h, info.content_w) == (info.orig_h, info.orig_w):
        return content
    rows = _nearest_index(info.orig_h, info.content_h)
    cols = _nearest_index(info.orig_w, info.content_w)
    return content[..., rows[:, None], cols[None, :]]

"""Typed, frozen descriptions shared by every stage.

* :class:`ShapeProfile` -- min/opt/max NCHW shapes. It drives the ONNX dynamic axes, the export
  verification shapes and, later, TensorRT's optimization profile (``profile.set_shape(name, min, opt, max)``).
* :class:`Preprocess` -- how an image becomes the model input: ``x = (pixel * scale - mean) / std``,
  per channel, in ``channel_order``, laid out NCHW float32.
* :class:`ModelSpec` -- what the loader learned about a model (channels, classes, spatial multiple).

All are immutable and convert to/from plain JSON dicts for the manifest.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from segdeploy.errors import ShapeError, UsageError

Shape = tuple[int, int, int, int]


def _shape_str(s: Shape) -> str:
    return "x".join(str(v) for v in s)


@dataclass(frozen=True)
class ShapeProfile:
    """Min/opt/max input shapes (N, C, H, W), plus which axes are dynamic.

    Invariants (checked in ``__post_init__``): same channel count everywhere; min <= opt <= max per axis;
    every H/W a multiple of ``spatial_multiple``; an axis is static exactly when min == max.
    """

    min: Shape
    opt: Shape
    max: Shape
    spatial_multiple: int = 1

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            s = getattr(self, name)
            if len(s) != 4 or any((not isinstance(v, int)) or v <= 0 for v in s):
                raise ShapeError(f"{name} shape {s} must be 4 positive integers N,C,H,W")
        if not (self.min[1] == self.opt[1] == self.max[1]):
            raise ShapeError(
                f"channel count differs between min/opt/max ({self.min[1]}, {self.opt[1]}, {self.max[1]}); "
                "use the same C in every shape"
            )
        for axis, label in enumerate("NCHW"):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if not lo <= mid <= hi:
                raise ShapeError(
                    f"impossible shape profile on axis {label}: need min <= opt <= max, got {lo}, {mid}, {hi}; "
                    "fix --min-shape/--shape/--max-shape"
                )
        m = self.spatial_multiple
        if m < 1:
            raise ShapeError(f"spatial multiple must be >= 1, got {m}")
        for name in ("min", "opt", "max"):
            s = getattr(self, name)
            if s[2] % m or s[3] % m:
                raise ShapeError(
                    f"{name} shape {_shape_str(s)} is not a multiple of {m} in H/W, which this model needs; "
                    f"use H and W divisible by {m}"
                )

    @property
    def channels(self) -> int:
        return self.opt[1]

    @property
    def dynamic_axes(self) -> tuple[str, ...]:
        """Names of the axes that vary: a subset of ('batch', 'height', 'width')."""
        names = {0: "batch", 2: "height", 3: "width"}
        return tuple(names[a] for a in (0, 2, 3) if self.min[a] != self.max[a])

    def contains(self, shape: Shape) -> bool:
        """True when ``shape`` lies inside the profile (and respects the spatial multiple)."""
        return (
            len(shape) == 4
            and all(self.min[a] <= shape[a] <= self.max[a] for a in range(4))
            and shape[2] % self.spatial_multiple == 0
            and shape[3] % self.spatial_multiple == 0
        )

    def verification_shapes(self) -> list[tuple[str, Shape]]:
        """min, opt, max and one irregular in-range shape (distinct from the others where possible)."""
        shapes: list[tuple[str, Shape]] = [("min", self.min), ("opt", self.opt), ("max", self.max)]
        m = self.spatial_multiple

        def between(axis: int, prefer: int, mult: int) -> int:
            # an in-range multiple of ``mult`` close to ``prefer``, avoiding min/opt/max where possible
            lo, hi = self.min[axis], self.max[axis]
            cands = [v for v in range(lo, hi + 1) if v % mult == 0]
            if not cands:
                return self.opt[axis]
            odd = [v for v in cands if v not in (lo, hi, self.opt[axis])] or cands
            return min(odd, key=lambda v: abs(v - prefer))

        n = between(0, (self.min[0] + self.max[0] + 1) // 2, 1)
        # irregular: H and W different from each other and from opt
        h = between(2, (self.opt[2] * 3) // 4, m)
        w = between(3, (self.opt[3] * 5) // 4, m)
        irregular = (n, self.channels, h, w)
        if irregular not in {s for _, s in shapes}:
            shapes.append(("irregular", irregular))
        return shapes

    def to_dict(self) -> dict[str, Any]:
        return {
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
            "spatial_multiple": self.spatial_multiple,
            "dynamic_axes": list(self.dynamic_axes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShapeProfile":
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]), int(d.get("spatial_multiple", 1)))


_SHAPE_RE = re.compile(r"^\s*(\d+)\s*[x,]\s*(\d+)\s*[x,]\s*(\d+)\s*[x,]\s*(\d+)\s*$")
_HW_RE = re.compile(r"^\s*(\d+)\s*[x,]\s*(\d+)\s*$")


def parse_shape(text: str, channels: int | None = None, option: str = "--shape") -> Shape:
    """Parse ``NxCxHxW`` (or ``HxW`` when ``channels`` is known, batch 1) into a tuple.

    Raises UsageError naming the option and the accepted syntax.
    """
    m = _SHAPE_RE.match(text)
    if m:
        return tuple(int(g) for g in m.groups())  # type: ignore[return-value]
    m = _HW_RE.match(text)
    if m and channels is not None:
        return (1, channels, int(m.group(1)), int(m.group(2)))
    raise UsageError(f"cannot parse {option} {text!r}; write NxCxHxW (e.g. 1x3x512x512) or HxW (e.g. 512x512)")


def round_to_multiple(v: int, m: int, mode: str = "nearest") -> int:
    """Round a positive size to a multiple of ``m`` (never below ``m``)."""
    if mode == "down":
        r = (v // m) * m
    elif mode == "up":
        r = -(-v // m) * m
    else:
        r = int(round(v / m)) * m
    return max(m, r)


def build_profile(
    opt: Shape,
    min_shape: Shape | None = None,
    max_shape: Shape | None = None,
    spatial_multiple: int = 1,
    default_max_batch: int = 8,
) -> tuple[ShapeProfile, list[str]]:
    """Make a :class:`ShapeProfile` from user shapes, filling defaults.

    Defaults: batch 1..``default_max_batch`` (opt batch kept), spatial 0.5x..2x of opt, rounded *inward*
    to ``spatial_multiple``. A user-given shape is never rounded: if it violates the multiple, ShapeError.
    Returns the profile and human-readable notes describing every default that was filled in.
    """
    notes: list[str] = []
    m = spatial_multiple
    if opt[2] % m or opt[3] % m:
        raise ShapeError(
            f"--shape {_shape_str(opt)} is not a multiple of {m} in H/W, which this model needs; "
            f"try {opt[0]}x{opt[1]}x{round_to_multiple(opt[2], m)}x{round_to_multiple(opt[3], m)}"
        )
    if min_shape is None:
        min_shape = (
            1,
            opt[1],
            round_to_multiple(max(1, opt[2] // 2), m, "up"),
            round_to_multiple(max(1, opt[3] // 2), m, "up"),
        )
        min_shape = tuple(min(a, b) for a, b in zip(min_shape, opt))  # type: ignore[assignment]
        notes.append(f"min shape defaulted to {_shape_str(min_shape)} (batch 1, half of opt H/W)")
    if max_shape is None:
        max_shape = (
            max(default_max_batch, opt[0]),
            opt[1],
            round_to_multiple(opt[2] * 2, m, "down"),
            round_to_multiple(opt[3] * 2, m, "down"),
        )
        notes.append(f"max shape defaulted to {_shape_str(max_shape)} (batch {max_shape[0]}, twice opt H/W)")
    return ShapeProfile(tuple(min_shape), tuple(opt), tuple(max_shape), m), notes  # type: ignore[arg-type]


@dataclass(frozen=True)
class Preprocess:
    """Image -> tensor recipe: ``x = (pixel * scale - mean) / std`` per channel, NCHW float32.

    ``channel_order`` is the order the model expects ("RGB" or "BGR"); images are read as RGB.
    ``resize`` says how a dataset image of another size reaches an accepted input size:
    "pad" (pad bottom/right to the spatial multiple, crop predictions back; the default) or
    "resize" (bilinear resize to the profile's opt H/W, predictions resized back with nearest).
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    resize: str = "pad"

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise UsageError(f"channel order must be RGB or BGR, got {self.channel_order!r}")
        if self.resize not in ("pad", "resize"):
            raise UsageError(f"resize mode must be 'pad' or 'resize', got {self.resize!r}")
        if len(self.mean) != len(self.std):
            raise UsageError("--mean and --std need the same number of values")
        if any(s == 0 for s in self.std):
            raise UsageError("--std values must be non-zero")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["formula"] = "x = (pixel * scale - mean) / std, NCHW float32, channels in channel_order"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        return cls(
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            scale=float(d["scale"]),
            channel_order=d["channel_order"],
            resize=d.get("resize", "pad"),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What the loader found out about a model."""

    in_channels: int
    num_classes: int
    spatial_multiple: int
    output: str  # the output selection rule that was applied, e.g. "tensor", "dict['out']", "tuple[0]"
    class_names: tuple[str, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)

"""Probe a loaded model: input channels, number of classes, output stride and the spatial multiple.

Contract: :func:`probe_model` runs the model (no gradients) at a few small shapes and returns a
:class:`~segdeploy.spec.ModelSpec`, wrapping ``lm.module`` with the output selection. It raises
:class:`~segdeploy.errors.ShapeError` when the model rejects the requested channel count or the
reference shape. It never changes the model's weights.

The spatial multiple is, in order: the user's ``--spatial-multiple``; the multiple declared by the file
(``.pt2`` dynamic-shape constraints) or the model (``spatial_multiple`` attribute); else the smallest
``m`` in 1, 2, 4, ..., 64 such that an input of ``m * odd`` pixels (just above the reference size) runs and yields an output whose size is
the reference's output stride times the input. A model that accepts only its reference size (e.g. a ViT
with fixed position embeddings) gets ``static_spatial=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from segdeploy.errors import ShapeError
from segdeploy.load import LoadedModel, run_model
from segdeploy.spec import ModelSpec

CANDIDATE_MULTIPLES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class ProbeResult:
    spec: ModelSpec
    output_stride: tuple[float, float]  # output H/W divided by input H/W at the reference shape
    static_spatial: bool
    notes: list[str] = field(default_factory=list)


def _odd_multiple(ref: int, m: int) -> int:
    """The smallest odd multiple of ``m`` above ``ref``: it tests the multiple without going below a
    minimum input size (pyramid-pooling heads such as PAN's need a large enough input)."""
    k = ref // m + 1
    if k % 2 == 0:
        k += 1
    return k * m


def _runs_at(lm: LoadedModel, c: int, h: int, w: int, stride: tuple[float, float]) -> bool:
    x = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0))
    try:
        out = run_model(lm.module, x)
    except Exception:
        return False
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        return False
    return out.shape[2] == round(h * stride[0]) and out.shape[3] == round(w * stride[1])


def probe_model(
    lm: LoadedModel,
    ref_shape: tuple[int, int, int, int],
    spatial_multiple: int | None = None,
) -> ProbeResult:
    """Resolve output selection and probe ``lm`` at ``ref_shape`` (N, C, H, W). See the module docstring."""
    n, c, h, w = ref_shape
    notes: list[str] = []
    if lm.in_channels_hint is not None and lm.in_channels_hint != c:
        raise ShapeError(
            f"the model's first convolution takes {lm.in_channels_hint} channels but the shape asks for {c}; "
            f"use --shape {n}x{lm.in_channels_hint}x{h}x{w}"
        )
    # The output stride is measured at a size every plausible model accepts (a multiple of 64), so a
    # --shape that violates the model's multiple cannot skew it; fall back to --shape itself (e.g. a ViT
    # that accepts only 224).
    safe = (-(-h // 64) * 64, -(-w // 64) * 64)
    sizes = [safe, (h, w)] if safe != (h, w) else [(h, w)]
    out = None
    for i, (sh, sw) in enumerate(sizes):
        x = torch.randn(1, c, sh, sw, generator=torch.Generator().manual_seed(0))
        try:
            out = lm.select_output(x)  # raises ShapeError / ModelLoadError
            break
        except ShapeError:
            if i == len(sizes) - 1:
                raise
    if not torch.isfinite(out).all():
        from segdeploy.errors import ModelLoadError

        bad = int(out.numel() - torch.isfinite(out).sum())
        raise ModelLoadError(
            f"the model outputs NaN/Inf for a random input of shape {list(x.shape)} ({bad} of {out.numel()} values); "
            "fix the model (uninitialised weights, a division by zero, an overflow) before exporting it"
        )
    notes.append(f"output selected by rule: {lm.output_rule} -> {list(out.shape)} for input {list(x.shape)}")
    stride = (out.shape[2] / sh, out.shape[3] / sw)
    if (sh, sw) != (h, w) and not _runs_at(lm, c, h, w, stride):
        static = False
        raise ShapeError(
            f"the model does not accept --shape {n}x{c}x{h}x{w} (it fails or changes the output size there); "
            f"use H and W that are multiples of the model's downsampling factor (e.g. {n}x{c}x{safe[0]}x{safe[1]})"
        )
    num_classes = int(out.shape[1])
    static = False
    if spatial_multiple is not None:
        mult = spatial_multiple
        notes.append(f"spatial multiple {mult} given by the user")
    elif lm.spatial_multiple_hint is not None:
        mult = lm.spatial_multiple_hint
        notes.append(f"spatial multiple {mult} from the model ({'program constraints' if lm.format == 'pt2' else 'attribute'})")
    else:
        mult = None
        for m in CANDIDATE_MULTIPLES:
            hh, ww = _odd_multiple(h, m), _odd_multiple(w, m)
            if _runs_at(lm, c, hh, ww, stride):
                mult = m
                notes.append(f"spatial multiple {m} detected by probing (ran at {hh}x{ww})")
                break
        if mult is None:
            # Does it run at any other size at all?
            other = (h + 16, w + 16) if h > 16 else (h * 2, w * 2)
            if not _runs_at(lm, c, other[0], other[1], stride):
                static = True
                mult = 1
                notes.append(
                    f"the model runs only at its reference size {h}x{w} (e.g. fixed position embeddings): "
                    "height and width are exported static"
                )
            else:
                mult = 64
                notes.append("no multiple up to 32 worked; using 64")
    if not static and (h % mult or w % mult):
        raise ShapeError(
            f"--shape {n}x{c}x{h}x{w} is not a multiple of {mult} in H/W, which this model needs; "
            f"use H and W divisible by {mult}"
        )
    spec = ModelSpec(
        in_channels=c,
        num_classes=num_classes,
        spatial_multiple=mult,
        output=lm.output_rule,
        notes=tuple(notes),
    )
    lm.spec = spec
    return ProbeResult(spec=spec, output_stride=stride, static_spatial=static, notes=notes)

"""Probe a loaded model: input channels, number of classes, output stride and the spatial multiple.

Contract: :func:`probe_model` runs the model (no gradients) at a few small shapes and returns a
:class:`~segdeploy.spec.ModelSpec`, wrapping ``lm.module`` with the output selection. It raises
:class:`~segdeploy.errors.ShapeError` when the model rejects the requested channel count or the
reference shape. Overlapping max-pool windows feeding a max-unpool that writes conflicting values (a result
that depends on the runtime's write order: :mod:`segdeploy.export.unpool_check`, watched during the
reference run, no extra run) are a note and ``ProbeResult.unpool_finding``. It never changes the model's
weights.

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
from segdeploy.export.unpool_check import UnpoolRecorder
from segdeploy.load import LoadedModel, run_model
from segdeploy.spec import ModelSpec

CANDIDATE_MULTIPLES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class ProbeResult:
    spec: ModelSpec
    output_stride: tuple[float, float]  # output H/W divided by input H/W at the reference shape
    static_spatial: bool
    notes: list[str] = field(default_factory=list)
    unpool_finding: str | None = None  # overlapping pools -> conflicting unpool writes (unpool_check)


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


def _reference_output(lm: LoadedModel, ref_shape: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resolve the output selection and return (input, selected output) at a size every plausible model accepts.

    The output stride is measured at a multiple of 64, so a --shape that violates the model's multiple cannot skew
    it; it falls back to --shape itself (e.g. a ViT that accepts only 224). ShapeError / ModelLoadError."""
    n, c, h, w = ref_shape
    if lm.in_channels_hint is not None and lm.in_channels_hint != c:
        raise ShapeError(
            f"the model's first convolution takes {lm.in_channels_hint} channels but the shape asks for {c}; "
            f"use --shape {n}x{lm.in_channels_hint}x{h}x{w}"
        )
    safe = (-(-h // 64) * 64, -(-w // 64) * 64)
    if safe != (h, w):
        x = torch.randn(1, c, *safe, generator=torch.Generator().manual_seed(0))
        try:
            return x, lm.select_output(x)  # raises ShapeError / ModelLoadError
        except ShapeError:
            pass  # try --shape itself
    x = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0))
    return x, lm.select_output(x)


def _check_finite(out: torch.Tensor, x: torch.Tensor) -> None:
    if not torch.isfinite(out).all():
        from segdeploy.errors import ModelLoadError

        bad = int(out.numel() - torch.isfinite(out).sum())
        raise ModelLoadError(
            f"the model outputs NaN/Inf for a random input of shape {list(x.shape)} ({bad} of {out.numel()} values); "
            "fix the model (uninitialised weights, a division by zero, an overflow) before exporting it"
        )


def _spatial_multiple(lm: LoadedModel, shape: tuple[int, int, int, int], stride: tuple[float, float],
                      given: int | None, notes: list[str]) -> tuple[int, bool]:
    """(multiple, static_spatial): the user's, the model's declared one, else the smallest that runs (see the module
    docstring); a model that runs only at its reference size gets static H/W."""
    _, c, h, w = shape
    if given is not None:
        notes.append(f"spatial multiple {given} given by the user")
        return given, False
    if lm.spatial_multiple_hint is not None:
        notes.append(f"spatial multiple {lm.spatial_multiple_hint} from the model "
                     f"({'program constraints' if lm.format == 'pt2' else 'attribute'})")
        return lm.spatial_multiple_hint, False
    for m in CANDIDATE_MULTIPLES:
        hh, ww = _odd_multiple(h, m), _odd_multiple(w, m)
        if _runs_at(lm, c, hh, ww, stride):
            notes.append(f"spatial multiple {m} detected by probing (ran at {hh}x{ww})")
            return m, False
    other = (h + 16, w + 16) if h > 16 else (h * 2, w * 2)  # does it run at any other size at all?
    if not _runs_at(lm, c, other[0], other[1], stride):
        notes.append(f"the model runs only at its reference size {h}x{w} (e.g. fixed position embeddings): "
                     "height and width are exported static")
        return 1, True
    notes.append("no multiple up to 32 worked; using 64")
    return 64, False


def probe_model(
    lm: LoadedModel,
    ref_shape: tuple[int, int, int, int],
    spatial_multiple: int | None = None,
) -> ProbeResult:
    """Resolve output selection and probe ``lm`` at ``ref_shape`` (N, C, H, W). See the module docstring."""
    n, c, h, w = ref_shape
    with UnpoolRecorder() as unpools:  # no extra run: it watches the reference run
        x, out = _reference_output(lm, ref_shape)
    _check_finite(out, x)
    unpool_finding = unpools.finding()
    notes = [f"output selected by rule: {lm.output_rule} -> {list(out.shape)} for input {list(x.shape)}"]
    if unpool_finding is not None:
        notes.append(f"warning: {unpool_finding}")
    sh, sw = x.shape[2], x.shape[3]
    stride = (out.shape[2] / sh, out.shape[3] / sw)
    if (sh, sw) != (h, w) and not _runs_at(lm, c, h, w, stride):
        raise ShapeError(
            f"the model does not accept --shape {n}x{c}x{h}x{w} (it fails or changes the output size there); "
            f"use H and W that are multiples of the model's downsampling factor (e.g. {n}x{c}x{sh}x{sw})"
        )
    mult, static = _spatial_multiple(lm, ref_shape, stride, spatial_multiple, notes)
    if not static and (h % mult or w % mult):
        raise ShapeError(
            f"--shape {n}x{c}x{h}x{w} is not a multiple of {mult} in H/W, which this model needs; "
            f"use H and W divisible by {mult}"
        )
    spec = ModelSpec(in_channels=c, num_classes=int(out.shape[1]), spatial_multiple=mult, output=lm.output_rule,
                     notes=tuple(notes))
    lm.spec = spec
    return ProbeResult(spec=spec, output_stride=stride, static_spatial=static, notes=notes,
                       unpool_finding=unpool_finding)

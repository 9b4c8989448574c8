"""Everything the export decides before it exports: the shape profile, proven runnable and affordable.

Contract: :func:`prepare` takes a loaded model and the export options and returns a :class:`Prepared`:
the probe result (classes, output stride, spatial multiple), the :class:`~segdeploy.spec.ShapeProfile`,
static axes with their reasons, and every note about defaults and narrowing. It refuses, with one line
and the option that fixes it, before any exporter runs:

* shapes whose input tensor alone would not fit in memory, and profiles whose verification at the max
  shape would not (activation peak measured at the opt size, scaled: :mod:`segdeploy.export.resources`);
* a profile the model itself cannot run **in PyTorch**: the min shape, the max H/W and a non-square
  in-range size are run once (batch 1). Where the failing bound is a default segdeploy chose, it is
  narrowed to what the model accepts (min raised / max lowered by multiples of the spatial multiple; a
  model that only takes square inputs gets static H/W at ``--shape``) and that is said and recorded
  (``manifest.profile_narrowed`` / ``manifest.static_axes``); where the user gave the bound, the run stops
  naming the size, PyTorch's own error and the option -- a user's option is never rewritten silently.

The data shapes the profile: given the sizes of the calibration/validation images (``data``, a
:class:`~segdeploy.datasets.convention.DataSizes`), and neither ``--shape`` nor a ``.pt2`` example input, the opt
H/W is the most common image size rounded to the spatial multiple (up in pad mode, to the nearest in resize
mode) and the max H/W (unless ``--max-shape`` was given) covers the largest image (pad mode). The decision is
said in one line and kept in ``Prepared.profile_source`` (the manifest's ``profile_source``); where ``--shape`` or
the example input decided instead and the data does not fit, one line names the option that would.

The memory guard budgets the verification plan's largest shape (:func:`segdeploy.export.verify.verification_plan`:
max batch and max H/W are verified separately), not the profile's max corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from segdeploy.errors import ShapeError
from segdeploy.export.probe import ProbeResult, probe_model
from segdeploy.export.resources import check_input_sizes, check_profile_memory, peak_activation_bytes
from segdeploy.export.verify import verification_plan
from segdeploy.load import LoadedModel, _short, run_model
from segdeploy.progress import Progress
from segdeploy.spec import ShapeProfile, build_profile, parse_shape, round_to_multiple

if TYPE_CHECKING:
    from segdeploy.datasets.convention import DataSizes

DEFAULT_SIZE = 512


@dataclass
class Prepared:
    loaded: LoadedModel
    probe: ProbeResult
    profile: ShapeProfile
    static_axes: list[dict[str, str]] = field(default_factory=list)  # {"axis", "reason"}
    narrowed: list[dict[str, Any]] = field(default_factory=list)  # {"bound", "from", "to", "reason"}
    notes: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    profile_source: dict[str, Any] = field(default_factory=dict)  # how opt/max were chosen (manifest profile_source)


def _s(shape) -> str:
    return "x".join(str(v) for v in shape)


def _example_shape(lm: LoadedModel) -> bool:
    """Whether the file carries a usable example input (a ``.pt2``'s NCHW example)."""
    return bool(lm.shape_hint and len(lm.shape_hint) == 4 and min(lm.shape_hint[1:]) > 0)


def resolve_opt(lm: LoadedModel, shape: str | None) -> tuple[int, int, int, int]:
    """The opt shape: ``--shape``, else the ``.pt2``'s example input (batch 1 unless static), else 1xCx512x512."""
    c_hint = lm.in_channels_hint
    if lm.shape_hint and len(lm.shape_hint) == 4 and lm.shape_hint[1] > 0:
        c_hint = c_hint or lm.shape_hint[1]
    channels = c_hint or 3
    if shape:
        return parse_shape(shape, channels, "--shape")
    if _example_shape(lm):
        n = lm.shape_hint[0] if 0 in lm.static_axes_hint else 1
        return (n, lm.shape_hint[1], lm.shape_hint[2], lm.shape_hint[3])
    return (1, channels, DEFAULT_SIZE, DEFAULT_SIZE)


def _pinned_axes(lm: LoadedModel, opt, min_s, max_s) -> dict[int, tuple[str, str]]:
    """Axes a ``.pt2`` program was exported static on -> (axis name, reason). Raises ShapeError when a
    requested shape differs from the program's fixed size on such an axis (never rewritten silently)."""
    names = {0: "batch", 2: "height", 3: "width"}
    pinned: dict[int, tuple[str, str]] = {}
    if lm.format != "pt2" or not lm.shape_hint:
        return pinned
    for a in lm.static_axes_hint:
        if a not in names:
            continue
        fixed = lm.shape_hint[a]
        for opt_name, shape in (("--shape", opt), ("--min-shape", min_s), ("--max-shape", max_s)):
            if shape is not None and shape[a] != fixed:
                raise ShapeError(
                    f"the .pt2 program was exported with a static {names[a]} of {fixed}, but {opt_name} asks for "
                    f"{shape[a]}; use {fixed} there, or re-export the program with dynamic_shapes for {names[a]}"
                )
        pinned[a] = (names[a], f"the .pt2 program was exported with a static {names[a]} of {fixed} "
                                "(re-export it with torch.export dynamic_shapes to make it dynamic)")
    return pinned


def _pytorch_error(lm: LoadedModel, shape, stride) -> str | None:
    """None when the model runs at ``shape`` with the expected output size, else why not (PyTorch's words)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    try:
        out = run_model(lm.module, x)
    except Exception as e:  # noqa: BLE001 - any model failure is reported, not raised
        return _short(e, 160)
    want = (round(shape[2] * stride[0]), round(shape[3] * stride[1]))
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[2:]) != want:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return f"output {got} instead of spatial size {want[0]}x{want[1]}"
    return None


def _scan(lm, start, stop, mult, c, stride) -> tuple[int, int] | None:
    """First H/W (from ``start`` toward ``stop``, in up to 8 steps of the multiple) where the model runs."""
    steps = 8
    seen = set()
    for i in range(1, steps + 1):
        hw = tuple(int(round((a + (b - a) * i / steps) / mult)) * mult for a, b in zip(start, stop))
        hw = tuple(max(mult, v) for v in hw)
        if hw in seen:
            continue
        seen.add(hw)
        if _pytorch_error(lm, (1, c, hw[0], hw[1]), stride) is None:
            return hw
    return None


def _check_runs(lm: LoadedModel, prep: Prepared, user_min: bool, user_max: bool, say: Progress) -> None:
    prof, probe = prep.profile, prep.probe
    stride, mult, c = probe.output_stride, prof.spatial_multiple, prof.channels
    if "height" not in prof.dynamic_axes and "width" not in prof.dynamic_axes:
        return
    lo, opt, hi = prof.min, prof.opt, prof.max
    new_lo, new_hi = lo, hi
    for bound, shape, user, option in (("min", lo, user_min, "--min-shape"), ("max", hi, user_max, "--max-shape")):
        if shape[2:] == opt[2:]:
            continue
        err = _pytorch_error(lm, (1, c) + tuple(shape[2:]), stride)
        if err is None:
            continue
        if user:
            raise ShapeError(f"the model fails in PyTorch at {option} H/W {shape[2]}x{shape[3]}: {err}; pass a "
                             f"{'larger' if bound == 'min' else 'smaller'} {option} (it runs at --shape {_s(opt)})")
        hw = _scan(lm, shape[2:], opt[2:], mult, c, stride) or tuple(opt[2:])
        fixed = (shape[0], c) + tuple(hw)
        reason = f"the model fails in PyTorch at H/W {shape[2]}x{shape[3]} ({err})"
        prep.narrowed.append({"bound": bound, "from": list(shape), "to": list(fixed), "reason": reason})
        say(f"profile {bound} narrowed from {_s(shape)} to {_s(fixed)}: {reason}; pass {option} to choose it")
        if bound == "min":
            new_lo = fixed
        else:
            new_hi = fixed
    prof = ShapeProfile(tuple(new_lo), opt, tuple(new_hi), mult)
    irregular = dict(prof.verification_shapes()).get("irregular")
    if irregular is not None and irregular[2] != irregular[3]:
        shape = (1, c, irregular[2], irregular[3])
        err = _pytorch_error(lm, shape, stride)
        if err is not None:
            if user_min or user_max:
                raise ShapeError(f"the model fails in PyTorch at the in-profile non-square size {shape[2]}x{shape[3]}: "
                                 f"{err}; pass --min-shape and --max-shape with the H/W of --shape (a static size) "
                                 "if it only accepts square inputs")
            reason = (f"the model fails in PyTorch at the non-square size {shape[2]}x{shape[3]} ({err}); "
                      f"height and width are exported static at {opt[2]}x{opt[3]} (pass --shape to choose the size)")
            say(f"static height/width: {reason}")
            prep.static_axes += [{"axis": "height", "reason": reason}, {"axis": "width", "reason": reason}]
            prof = ShapeProfile(prof.min[:2] + opt[2:], opt, prof.max[:2] + opt[2:], mult)
    prep.profile = prof


def _data_opt(data: DataSizes, c: int, mult: int, resize: str) -> tuple[int, int, int, int]:
    """The opt shape the data asks for: batch 1, the most common H/W rounded to the multiple."""
    how = "up" if resize == "pad" else "nearest"
    h, w = data.most_common
    return (1, c, round_to_multiple(h, mult, how), round_to_multiple(w, mult, how))


def _cover_data(profile: ShapeProfile, data: DataSizes) -> ShapeProfile:
    """``profile`` with its max H/W raised to the data's largest image padded to the multiple (pad mode)."""
    m = profile.spatial_multiple
    h, w = (round_to_multiple(v, m, "up") for v in data.largest)
    hi = profile.max
    return ShapeProfile(profile.min, profile.opt, (hi[0], hi[1], max(hi[2], h), max(hi[3], w)), m)


def _data_decision(prep: Prepared, data: DataSizes | None, decided_by: str, max_given: bool, resize: str,
                   say: Progress, fix: str = "pass --max-shape to cover them") -> None:
    """Step of :func:`prepare`: cover the data (when the data decided opt), say and record how the profile was chosen."""
    prof = prep.profile
    src: dict[str, Any] = {"opt_from": decided_by}
    if data is not None:
        src.update(images=data.images, data=data.source, most_common_hw=list(data.most_common),
                   largest_hw=list(data.largest))
        if decided_by == "data" and resize == "pad" and not max_given:
            prof = prep.profile = _cover_data(prof, data)
        lh, lw = data.largest
        fits = resize == "resize" or (lh <= prof.max[2] and lw <= prof.max[3])
        src["data_fits_profile"] = fits
        if decided_by == "data":
            say(f"profile from the data: opt {_s(prof.opt)} (the most common size of {data.images} images in "
                f"{data.source}: {data.most_common[0]}x{data.most_common[1]}), max {_s(prof.max)} covers the largest "
                f"({lh}x{lw}); pass --shape / --max-shape to choose")
        elif not fits:
            say(f"the largest image in {data.source} ({lh}x{lw}) is above the profile max {_s(prof.max)}: calibration "
                f"resizes such images down keeping aspect; {fix}")
    src.update(opt=list(prof.opt), max=list(prof.max))
    prep.profile_source = src


def prepare(lm: LoadedModel, shape: str | None, min_shape: str | None, max_shape: str | None,
            spatial_multiple: int | None, max_batch: int, say: Progress, *, data: DataSizes | None = None,
            resize: str = "pad") -> Prepared:
    """Probe ``lm`` and settle the shape profile (see the module docstring). Raises ShapeError/ModelLoadError."""
    opt = resolve_opt(lm, shape)
    decided_by = "--shape" if shape else "example input" if _example_shape(lm) else "default"
    c = opt[1]
    min_s = parse_shape(min_shape, c, "--min-shape") if min_shape else None
    max_s = parse_shape(max_shape, c, "--max-shape") if max_shape else None
    given = {k: v for k, v in (("--shape", opt), ("--min-shape", min_s), ("--max-shape", max_s)) if v is not None}
    check_input_sizes(given)
    pinned = _pinned_axes(lm, opt, min_s, max_s)
    say(f"probe model at {_s(opt)}")
    probe = probe_model(lm, opt, spatial_multiple)
    for n in probe.notes:
        say(n)
    mult = probe.spec.spatial_multiple
    if decided_by == "default" and data is not None and not probe.static_spatial:
        opt, decided_by = _data_opt(data, c, mult, resize), "data"
    static_notes: list[dict[str, str]] = []
    if probe.static_spatial:
        for flag, s in (("--min-shape", min_s), ("--max-shape", max_s)):
            if s is not None and s[2:] != opt[2:]:
                raise ShapeError(f"this model runs only at {opt[2]}x{opt[3]} (height/width are static); "
                                 f"give {flag} with H/W {opt[2]}x{opt[3]}")
        min_s = (min_s or (1, c, opt[2], opt[3]))[:2] + opt[2:]
        max_s = (max_s or (max(max_batch, opt[0]), c, opt[2], opt[3]))[:2] + opt[2:]
        reason = next(n for n in probe.notes if "static" in n)
        static_notes = [{"axis": "height", "reason": reason}, {"axis": "width", "reason": reason}]
    if pinned:
        defaults, _ = build_profile(opt, None, None, mult, max_batch)
        base_min, base_max = min_s or defaults.min, max_s or defaults.max
        min_s = tuple(opt[a] if a in pinned else base_min[a] for a in range(4))
        max_s = tuple(opt[a] if a in pinned else base_max[a] for a in range(4))
        for a, (label, reason) in pinned.items():
            if all(n["axis"] != label for n in static_notes):
                static_notes.append({"axis": label, "reason": reason})
                say(f"static {label}: {reason}")
    profile, profile_notes = build_profile(opt, min_s, max_s, mult, max_batch)
    for n in profile_notes:
        say(n)
    prep = Prepared(lm, probe, profile, static_notes, [], list(profile_notes))
    _data_decision(prep, data, decided_by, max_s is not None, resize, say,
                   "pass --resize resize to resize every image to the model's fixed size" if probe.static_spatial
                   else "pass --max-shape to cover them")
    profile = prep.profile
    probe_shape = (1, c, opt[2], opt[3])
    try:
        peak = peak_activation_bytes(lm.module, torch.randn(*probe_shape, generator=torch.Generator().manual_seed(0)))
    except Exception:  # noqa: BLE001 - the probe already ran this shape; measurement is best effort
        peak = None
    if peak is not None:
        largest = max((s for _, s in verification_plan(profile)), key=lambda s: s[0] * s[2] * s[3])
        prep.memory = check_profile_memory(peak, probe_shape, largest, "--max-shape")
    if not probe.static_spatial:
        _check_runs(lm, prep, min_shape is not None, max_shape is not None, say)
    return prep

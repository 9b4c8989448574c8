"""`export_model`: load -> probe -> profile -> rewrite -> export (each exporter in turn) -> finish -> verify -> write.

Contract: on success ``out_dir`` holds ``model.onnx`` (verified against PyTorch at the profile's min, opt,
max and an irregular shape) and ``manifest.json``; both are written atomically, the manifest last. On any
failure nothing in ``out_dir`` is created or replaced, and a :class:`~segdeploy.errors.SegdeployError`
says which exporter failed how. Exporters are tried in order (``auto``: TorchScript first, it is several
times faster; dynamo first for ``torch.export`` programs, which the tracer cannot run) and the first whose
graph verifies is kept; every attempt and its outcome is recorded in the manifest.
"""

from __future__ import annotations

import copy
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from segdeploy import __version__
from segdeploy.errors import ExportError, VerificationError
from segdeploy.export import graph as graph_mod
from segdeploy.export.exporters import EXPORTERS, INPUT_NAME, OUTPUT_NAME, ExporterFailed, export_with
from segdeploy.export.plugin_graph import PLUGIN_ONNX_FILENAME, make_plugin_variant
from segdeploy.export.probe import ProbeResult, probe_model
from segdeploy.export import rewrites as rw
from segdeploy.export.rewrites import RewriteApplied, RewriteRefused
from segdeploy.export.verify import DEFAULT_ATOL, DEFAULT_RTOL, VerificationReport, failure_message, verify_onnx
from segdeploy.fsutil import atomic_write_bytes, ensure_writable_dir, sha256_bytes
from segdeploy.load import LoadedModel, load_model
from segdeploy.manifest import MANIFEST_FILENAME, SCHEMA_NAME, SCHEMA_VERSION, write_manifest
from segdeploy.spec import Preprocess, ShapeProfile, build_profile, parse_shape

ONNX_FILENAME = "model.onnx"
DEFAULT_OPSET = 18
DEFAULT_SIZE = 512


@dataclass(frozen=True)
class ExportOptions:
    """Everything `segdeploy export` can be told (besides the model and the output directory)."""

    shape: str | None = None  # opt, "NxCxHxW" or "HxW"
    min_shape: str | None = None
    max_shape: str | None = None
    spatial_multiple: int | None = None
    max_batch: int = 8
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # auto | torchscript | dynamo
    cleanup: str = "onnxslim"
    rewrites: tuple[str, ...] | None = None  # None: all registered
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    preprocess: Preprocess = field(default_factory=Preprocess)
    class_names: tuple[str, ...] = ()
    tensorrt_plugins: bool = True  # also write model.trt.onnx when TensorRT needs our plugins


@dataclass
class Attempt:
    exporter: str
    outcome: str  # "verified" | "export failed" | "verification failed" | "not tried"
    reason: str
    verification: VerificationReport | None = None

    def to_dict(self) -> dict[str, Any]:
        # no timings: the manifest is byte-identical when the export is
        d = {"exporter": self.exporter, "outcome": self.outcome, "reason": self.reason}
        if self.verification is not None and self.outcome != "verified":
            d["verification"] = self.verification.to_dict()
        return d


@dataclass
class ExportResult:
    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    exporter: str
    attempts: list[Attempt]
    rewrites: list[RewriteApplied]
    verification: VerificationReport
    profile: ShapeProfile
    loaded: LoadedModel
    seconds: float


def _versions() -> dict[str, str]:
    import onnxruntime

    v = {
        "segdeploy": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import onnxscript

        v["onnxscript"] = onnxscript.__version__
    except Exception:
        pass
    try:
        import onnxslim

        v["onnxslim"] = onnxslim.__version__
    except Exception:
        pass
    return v


def _resolve_opt(lm: LoadedModel, opts: ExportOptions) -> tuple[int, int, int, int]:
    c_hint = lm.in_channels_hint
    if lm.shape_hint and len(lm.shape_hint) == 4 and lm.shape_hint[1] > 0:
        c_hint = c_hint or lm.shape_hint[1]
    channels = c_hint or 3
    if opts.shape:
        return parse_shape(opts.shape, channels, "--shape")
    if lm.shape_hint and len(lm.shape_hint) == 4 and min(lm.shape_hint[1:]) > 0:
        n = lm.shape_hint[0] if 0 in lm.static_axes_hint else 1
        return (n, lm.shape_hint[1], lm.shape_hint[2], lm.shape_hint[3])
    return (1, channels, DEFAULT_SIZE, DEFAULT_SIZE)


def _pinned_axes(lm: LoadedModel, opt, min_s, max_s) -> dict[int, tuple[str, str]]:
    """Axes a ``.pt2`` program was exported static on -> (axis name, reason). Raises ShapeError when a
    requested shape differs from the program's fixed size on such an axis (never rewritten silently)."""
    from segdeploy.errors import ShapeError

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


def _order(opts: ExportOptions, lm: LoadedModel) -> list[str]:
    if opts.exporter == "auto":
        return ["dynamo", "torchscript"] if lm.format == "pt2" else ["torchscript", "dynamo"]
    if opts.exporter not in EXPORTERS:
        from segdeploy.errors import UsageError

        raise UsageError(f"unknown exporter {opts.exporter!r}; use auto, torchscript or dynamo")
    return [opts.exporter]


def _rewritten_copy(module, rewrites) -> tuple[Any, list[RewriteApplied], list[str]]:
    """A copy of ``module`` with the graph rewrites applied (only torch.export programs have any)."""
    if not any(r.graph for r in rewrites):
        return module, [], []
    try:
        work = copy.deepcopy(module)
    except Exception:
        return module, [], ["the module cannot be copied, so no graph rewrite was applied"]
    try:
        applied = rw.apply_graph_rewrites(work, rewrites)
    except RewriteRefused as e:
        return module, [], [f"graph rewrite refused: {e}"]
    return work, applied, []


def export_model(
    source: str | Path | torch.nn.Module | LoadedModel,
    out_dir: str | Path,
    options: ExportOptions | None = None,
    progress: Callable[[str], None] | None = None,
    **load_kwargs: Any,
) -> ExportResult:
    """Export ``source`` to a verified ONNX + manifest in ``out_dir``. See the module docstring.

    ``source`` is a model path, a ``pkg.module:factory`` string, an nn.Module or a LoadedModel;
    ``load_kwargs`` go to :func:`segdeploy.load.load_model` (weights, trust_pickle, output, factory_kwargs).
    """
    opts = options or ExportOptions()
    say = progress or (lambda s: None)
    t_start = time.perf_counter()
    out = Path(out_dir)
    # Fail on an unwritable --out before any expensive work.
    ensure_writable_dir(out)

    say("load model")
    lm = source if isinstance(source, LoadedModel) else load_model(source, **load_kwargs)
    opt = _resolve_opt(lm, opts)
    c = opt[1]
    min_s = parse_shape(opts.min_shape, c, "--min-shape") if opts.min_shape else None
    max_s = parse_shape(opts.max_shape, c, "--max-shape") if opts.max_shape else None
    pinned = _pinned_axes(lm, opt, min_s, max_s)  # checks the user's shapes against a static .pt2
    say(f"probe model at {'x'.join(map(str, opt))}")
    probe: ProbeResult = probe_model(lm, opt, opts.spatial_multiple)
    for n in probe.notes:
        say(n)
    mult = probe.spec.spatial_multiple
    static_notes: list[dict[str, str]] = []
    if probe.static_spatial:
        for flag, shape in (("--min-shape", min_s), ("--max-shape", max_s)):
            if shape is not None and shape[2:] != opt[2:]:
                from segdeploy.errors import ShapeError

                raise ShapeError(f"this model runs only at {opt[2]}x{opt[3]} (height/width are static); "
                                 f"give {flag} with H/W {opt[2]}x{opt[3]}")
        min_s = (min_s or (1, c, opt[2], opt[3]))[:2] + opt[2:]
        max_s = (max_s or (max(opts.max_batch, opt[0]), c, opt[2], opt[3]))[:2] + opt[2:]
        reason = next(n for n in probe.notes if "static" in n)
        static_notes = [{"axis": "height", "reason": reason}, {"axis": "width", "reason": reason}]
    if pinned:
        # a .pt2 program exported with a static axis accepts only that size: export it static and say why
        defaults, _ = build_profile(opt, None, None, mult, opts.max_batch)
        base_min, base_max = min_s or defaults.min, max_s or defaults.max
        min_s = tuple(opt[a] if a in pinned else base_min[a] for a in range(4))
        max_s = tuple(opt[a] if a in pinned else base_max[a] for a in range(4))
        for a, (label, reason) in pinned.items():
            if all(n["axis"] != label for n in static_notes):
                static_notes.append({"axis": label, "reason": reason})
                say(f"static {label}: {reason}")
    profile, profile_notes = build_profile(opt, min_s, max_s, mult, opts.max_batch)
    for n in profile_notes:
        say(n)

    active = rw.resolve(opts.rewrites)
    work, graph_rewrites, rewrite_notes = _rewritten_copy(lm.module, active)
    for n in rewrite_notes:
        say(n)
    rewrites: list[RewriteApplied] = []

    attempts: list[Attempt] = []
    chosen: tuple[str, bytes, VerificationReport, int] | None = None
    with tempfile.TemporaryDirectory(prefix="segdeploy-export-") as tmp:
        for name in _order(opts, lm):
            if chosen is not None:
                attempts.append(Attempt(name, "not tried", f"{chosen[0]} already verified"))
                continue
            say(f"export with the {name} exporter (opset {opts.opset})")
            raw_path = Path(tmp) / f"{name}.onnx"
            try:
                with rw.function_rewrites(active) as fn_rewrites:
                    export_with(name, work, profile, raw_path, opts.opset)
                model = onnx.load(str(raw_path))
                model = graph_mod.finish_graph(model, profile, probe.output_stride, opts.cleanup, lm.source_sha256)
            except (ExporterFailed, ExportError) as e:
                attempts.append(Attempt(name, "export failed", str(e)))
                say(f"{name}: export failed: {e}")
                continue
            data = graph_mod.serialize(model)
            report = verify_onnx(lm.module, data, profile, opts.rtol, opts.atol, progress=say)
            if report.passed:
                attempts.append(Attempt(name, "verified", f"verified at {len(report.shapes)} shapes", report))
                chosen = (name, data, report, graph_mod.opset_of(model))
                rewrites = graph_rewrites + fn_rewrites
                for r in rewrites:
                    say(f"rewrite {r.rewrite}: {r.target} ({r.detail})")
            else:
                reason = failure_message(report, name)
                attempts.append(Attempt(name, "verification failed", reason, report))
                say(f"{name}: {reason}")
    if chosen is None:
        detail = "; ".join(f"{a.exporter}: {a.reason}" for a in attempts)
        if any(a.outcome == "verification failed" for a in attempts):
            raise VerificationError(f"no exporter produced a graph that matches PyTorch ({detail})")
        raise ExportError(f"no exporter could export the model ({detail})")

    name, data, report, opset = chosen
    reason = "first in order" if attempts[0].exporter == name else "; ".join(
        f"{a.exporter} {a.outcome}: {a.reason}" for a in attempts if a.exporter != name and a.outcome != "not tried"
    )
    say(f"exporter used: {name} ({reason})")
    manifest = _manifest(lm, opts, profile, probe, name, reason, attempts, rewrites, rewrite_notes, static_notes, report, data, opset)
    plugin_variant = None
    if opts.tensorrt_plugins:
        plugin_variant = make_plugin_variant(data, profile, opts.rtol, opts.atol)
        if plugin_variant is not None:
            manifest["tensorrt_plugins"] = plugin_variant[1]
            say(f"TensorRT variant with {len(plugin_variant[1]['nodes'])} plugin node(s): {PLUGIN_ONNX_FILENAME}")
    onnx_path = out / ONNX_FILENAME
    manifest_path = out / MANIFEST_FILENAME
    atomic_write_bytes(onnx_path, data)
    if plugin_variant is not None:
        atomic_write_bytes(out / PLUGIN_ONNX_FILENAME, plugin_variant[0])
    write_manifest(manifest_path, manifest)
    return ExportResult(onnx_path, manifest_path, manifest, name, attempts, rewrites, report, profile, lm,
                        time.perf_counter() - t_start)


def _manifest(lm, opts, profile, probe, exporter, reason, attempts, rewrites, rewrite_notes, static_notes, report, data, opset):
    k = probe.spec.num_classes
    names = list(opts.class_names)
    if names and len(names) != k:
        from segdeploy.errors import UsageError

        raise UsageError(f"--class-names lists {len(names)} names but the model outputs {k} classes")
    out_h = "height" if probe.output_stride[0] == 1.0 else "out_height"
    out_w = "width" if probe.output_stride[1] == 1.0 else "out_width"
    dyn = set(profile.dynamic_axes)
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "segdeploy_version": __version__,
        "source": {
            "path": Path(lm.source).name if lm.format not in ("factory", "module") else lm.source,
            "format": lm.format,
            "sha256": lm.source_sha256,
        },
        "model": {
            "in_channels": probe.spec.in_channels,
            "num_classes": k,
            "class_names": names,
            "spatial_multiple": probe.spec.spatial_multiple,
            "output_selection": probe.spec.output,
            "output_stride": list(probe.output_stride),
            "probe_notes": list(probe.notes),
        },
        "inputs": [
            {
                "name": INPUT_NAME,
                "dtype": "float32",
                "layout": "NCHW",
                "shape": ["batch" if "batch" in dyn else profile.opt[0], profile.channels,
                          "height" if "height" in dyn else profile.opt[2], "width" if "width" in dyn else profile.opt[3]],
                "profile": profile.to_dict(),
            }
        ],
        "outputs": [
            {
                "name": OUTPUT_NAME,
                "dtype": "float32",
                "layout": "NCHW",
                "shape": ["batch" if "batch" in dyn else profile.opt[0], k,
                          out_h if "height" in dyn else round(profile.opt[2] * probe.output_stride[0]),
                          out_w if "width" in dyn else round(profile.opt[3] * probe.output_stride[1])],
                "meaning": "per-class scores (logits); argmax over axis 1 gives the class map" if k > 1
                else "one score per pixel; > 0 is the foreground class",
            }
        ],
        "static_axes": static_notes,
        "preprocess": opts.preprocess.to_dict(),
        "onnx": {
            "file": ONNX_FILENAME,
            "sha256": sha256_bytes(data),
            "bytes": len(data),
            "opset": opset,
            "exporter": exporter,
            "exporter_reason": reason,
            "exporter_attempts": [a.to_dict() for a in attempts],
            "cleanup": opts.cleanup,
        },
        "rewrites": [r.to_dict() for r in rewrites] + [{"rewrite": "none", "target": "", "detail": n} for n in rewrite_notes],
        "verification": report.to_dict(),
        "versions": _versions(),
    }

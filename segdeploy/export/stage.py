"""The export stage: a prepared model -> verified ONNX (+ TensorRT plugin variant) + manifest, staged in a transaction.

Contract: ``run(txn, options, progress, *, prepared) -> ExportResult`` (the stage contract of
:mod:`segdeploy.pipeline`) takes an open :class:`~segdeploy.exportdir.Transaction` (``fresh=True``),
:class:`ExportOptions`, a :class:`~segdeploy.progress.Progress` and the
:class:`~segdeploy.export.prepare.Prepared` model (an input that is not an option). It applies the rewrites,
tries the exporters in order (``auto``: TorchScript first, it is several times faster; dynamo first for
``torch.export`` programs, which the tracer cannot run), keeps the first graph that **verifies** against
PyTorch at the profile's min, opt, max and an irregular shape (when a graph verified at opt only, the export
rescue of :mod:`segdeploy.export.rescue` re-exports at a coarser spatial multiple, else static H/W, and
records why), writes ``model.onnx`` (and
``model.trt.onnx`` when TensorRT needs our plugins) into the transaction and sets its manifest. It
publishes nothing: the caller commits. Raises ExportError (no exporter produced a graph),
VerificationError (none verified; every attempt and its reason in the message), ModelLoadError (the
PyTorch model itself outputs NaN/Inf).

The one-call convenience (load -> prepare -> run -> commit), :func:`segdeploy.pipeline.export_model`, and the
CLI sit with the pipeline, which chains the later stages into the same transaction.
"""

from __future__ import annotations

import copy
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch

from segdeploy import __version__
from segdeploy.errors import ExportError, UsageError, VerificationError
import segdeploy.export.graph as graph_mod
import segdeploy.export.rescue as rescue_mod
import segdeploy.export.rewrites as rw
from segdeploy.export.exporters import EXPORTERS, ExporterFailed, export_with
from segdeploy.vocab import INPUT_NAME, OUTPUT_NAME
from segdeploy.export.plugin_graph import make_plugin_variant
from segdeploy.export.prepare import Prepared
from segdeploy.export.rewrites import RewriteApplied, RewriteRefused
from segdeploy.export.verify import DEFAULT_ATOL, DEFAULT_RTOL, VerificationReport, failure_message, verify_onnx
from segdeploy.exportdir import Transaction
from segdeploy.vocab import MANIFEST, MODEL_ONNX, TRT_ONNX
from segdeploy.fsutil import sha256_bytes
from segdeploy.load import LoadedModel
from segdeploy.manifest import SCHEMA_NAME, SCHEMA_VERSION, ManifestDocument, ManifestView
from segdeploy.progress import Progress
from segdeploy.spec import Preprocess, ShapeProfile

DEFAULT_OPSET = 18


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

    def __post_init__(self) -> None:
        if self.exporter not in ("auto",) + tuple(EXPORTERS):
            raise UsageError(f"unknown --exporter {self.exporter!r}; use auto, torchscript or dynamo")
        if self.opset < 13:
            raise UsageError(f"--opset {self.opset} is too old; use 13 or newer (default {DEFAULT_OPSET})")
        if self.max_batch < 1:
            raise UsageError("--max-batch must be >= 1")
        if self.spatial_multiple is not None and self.spatial_multiple < 1:
            raise UsageError("--spatial-multiple must be >= 1")
        if not (self.rtol > 0):
            raise UsageError(f"--rtol must be > 0, got {self.rtol}")
        if any(not n for n in self.class_names):
            raise UsageError("--class-names has an empty name; write them comma-separated, e.g. background,road,car")


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
    """What the export stage made: the paths (in the published directory), the manifest document, the attempts."""

    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]  # the manifest document (the published one once the pipeline committed)
    exporter: str
    attempts: list[Attempt]
    rewrites: list[RewriteApplied]
    verification: VerificationReport
    profile: ShapeProfile
    loaded: LoadedModel
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def view(self) -> ManifestView:
        """Typed access to :attr:`manifest` (the owner's accessors, :class:`~segdeploy.manifest.ManifestView`)."""
        return ManifestDocument(self.manifest)

    def summary(self) -> dict[str, Any]:
        """The stage's entry in the JSON result document."""
        v = self.view
        onnx_info = v.onnx_info
        return {
            "onnx": str(self.onnx_path),
            "exporter": self.exporter,
            "exporter_reason": onnx_info["exporter_reason"],
            "attempts": onnx_info["exporter_attempts"],
            "rewrites": v.rewrites,
            "dynamic_axes": list(v.profile.dynamic_axes),
            "static_axes": v.static_axes,
            "profile_narrowed": v.profile_narrowed,
            "profile": v.profile.to_dict(),
            "num_classes": v.num_classes,
            "verification": v.verification,
            "tensorrt_plugins": v.needs_plugins,
            "seconds": round(self.seconds, 2),
        }


def versions() -> dict[str, str]:
    """Versions of the libraries that shaped the artifacts (recorded in the manifest)."""
    import onnxruntime

    v = {"segdeploy": __version__, "python": platform.python_version(), "torch": torch.__version__,
         "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    for mod in ("onnxscript", "onnxslim"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional version info
            pass
    return v


def _order(opts: ExportOptions, lm: LoadedModel) -> list[str]:
    if opts.exporter == "auto":
        return ["dynamo", "torchscript"] if lm.format == "pt2" else ["torchscript", "dynamo"]
    return [opts.exporter]


def _rewritten_copy(module, rewrites) -> tuple[Any, list[RewriteApplied], list[str]]:
    """A copy of ``module`` with the graph rewrites applied (only torch.export programs have any)."""
    if not any(r.graph for r in rewrites):
        return module, [], []
    try:
        work = copy.deepcopy(module)
    except Exception:  # noqa: BLE001
        return module, [], ["the module cannot be copied, so no graph rewrite was applied"]
    try:
        applied = rw.apply_graph_rewrites(work, rewrites)
    except RewriteRefused as e:
        return module, [], [f"graph rewrite refused: {e}"]
    return work, applied, []


@dataclass
class _Exported:
    """A graph that verified: the exporter, the bytes, the report and what shaped it."""

    name: str
    data: bytes
    report: VerificationReport
    opset: int
    attempts: list[Attempt]
    rewrites: list[RewriteApplied]
    rewrite_notes: list[str]
    rescue: str | None = None  # the export rescue's one-line summary, when it chose the profile


def _try_exporters(prep: Prepared, profile: ShapeProfile, opts: ExportOptions, say: Progress,
                   order: list[str]) -> tuple[_Exported | None, list[Attempt]]:
    """Export at ``profile`` with each exporter of ``order`` until one verifies -> (the verified graph or None, attempts)."""
    lm = prep.loaded
    active = rw.resolve(opts.rewrites)
    work, graph_rewrites, rewrite_notes = _rewritten_copy(lm.module, active)
    for n in rewrite_notes:
        say(n)
    attempts: list[Attempt] = []
    with tempfile.TemporaryDirectory(prefix="segdeploy-export-") as tmp:
        for name in order:
            say(f"export with the {name} exporter (opset {opts.opset})")
            raw_path = Path(tmp) / f"{name}.onnx"
            try:
                with rw.function_rewrites(active) as fn_rewrites:
                    export_with(name, work, profile, raw_path, opts.opset)
                model = onnx.load(str(raw_path))
                model = graph_mod.finish_graph(model, profile, prep.probe.output_stride, opts.cleanup, lm.source_sha256)
            except (ExporterFailed, ExportError) as e:
                attempts.append(Attempt(name, "export failed", str(e)))
                say(f"{name}: export failed: {e}")
                continue
            data = graph_mod.serialize(model)
            report = verify_onnx(lm.module, data, profile, opts.rtol, opts.atol, progress=say)
            if report.passed:
                attempts.append(Attempt(name, "verified", f"verified at {len(report.shapes)} shapes", report))
                attempts += [Attempt(o, "not tried", f"{name} already verified") for o in order[len(attempts):]]
                return _Exported(name, data, report, graph_mod.opset_of(model), attempts,
                                 graph_rewrites + fn_rewrites, rewrite_notes), attempts
            reason = failure_message(report, name)
            attempts.append(Attempt(name, "verification failed", reason, report))
            say(f"{name}: {reason}")
    return None, attempts


def _raise_failure(attempts: list[Attempt], known_cause: str | None = None) -> None:
    """VerificationError / ExportError with every attempt; a cause the probe found (overlapping unpools) first."""
    detail = "; ".join(f"{a.exporter}: {a.reason}" for a in attempts)
    lead = f"{known_cause}; " if known_cause else ""
    if any(a.outcome == "verification failed" for a in attempts):
        raise VerificationError(f"{lead}no exporter produced a graph that matches PyTorch ({detail})")
    raise ExportError(f"{lead}no exporter could export the model ({detail})")


def _user_fixed_profile(opts: ExportOptions) -> list[str]:
    """The profile options the user gave (the export rescue never rewrites them)."""
    given = (("--spatial-multiple", opts.spatial_multiple), ("--min-shape", opts.min_shape),
             ("--max-shape", opts.max_shape))
    return [flag for flag, value in given if value is not None]


def _export_verified(prep: Prepared, opts: ExportOptions, say: Progress) -> _Exported:
    """The first exporter's graph that verifies at the profile; else the export rescue (:mod:`.rescue`) when the
    graph was right at opt only; else VerificationError / ExportError with every attempt."""
    outcome, attempts = _try_exporters(prep, prep.profile, opts, say, _order(opts, prep.loaded))
    if outcome is not None:
        return outcome
    failed = rescue_mod.rescue_applies(prep.profile, [a.verification for a in attempts])
    if failed is None:
        _raise_failure(attempts, prep.probe.unpool_finding)
    order = [next(a.exporter for a in attempts if a.verification is failed)]  # its graph was right at opt

    def try_profile(profile: ShapeProfile):
        found, tried = _try_exporters(prep, profile, opts, say, order)
        at = f"rescue at {_hw_range(profile)}"
        attempts.extend(Attempt(a.exporter, a.outcome, f"{at}: {a.reason}", a.verification)
                        for a in tried if a.outcome != "not tried")
        return found

    rescued = rescue_mod.rescue(prep, _user_fixed_profile(opts), failed, try_profile, (opts.rtol, opts.atol), say)
    say(rescued.summary)
    outcome = rescued.outcome
    outcome.attempts, outcome.rescue = attempts, rescued.summary
    return outcome


def _hw_range(p: ShapeProfile) -> str:
    lo, hi = f"{p.min[2]}x{p.min[3]}", f"{p.max[2]}x{p.max[3]}"
    return f"H/W {lo} (static)" if lo == hi else f"H/W {lo}..{hi} (multiple {p.spatial_multiple})"


def run(txn: Transaction, options: ExportOptions, progress: Progress, *, prepared: Prepared) -> ExportResult:
    """Export, verify and stage ``model.onnx`` (+ ``model.trt.onnx``) and the manifest (see module docstring)."""
    import time

    t0 = time.perf_counter()
    prep, opts, say = prepared, options, progress
    k = prep.probe.spec.num_classes
    if opts.class_names and len(opts.class_names) != k:
        raise UsageError(f"--class-names lists {len(opts.class_names)} names but the model outputs {k} classes; "
                         f"give {k} names")
    exported = _export_verified(prep, opts, say)
    name, data, report, opset = exported.name, exported.data, exported.report, exported.opset
    attempts, rewrites, rewrite_notes = exported.attempts, exported.rewrites, exported.rewrite_notes
    for r in rewrites:
        say(f"rewrite {r.rewrite}: {r.target} ({r.detail})")
    reason = _exporter_reason(exported)
    say(f"exporter used: {name} ({reason})")
    txn.set_manifest(build_manifest(prep, opts, name, reason, attempts, rewrites, rewrite_notes, report, data, opset))
    txn.write_bytes(MODEL_ONNX, data, "onnx")
    if opts.tensorrt_plugins:
        variant = make_plugin_variant(data, prep.profile, opts.rtol, opts.atol)
        if variant is not None:
            txn.write_bytes(TRT_ONNX, variant[0], "onnx-trt", derived_from=(MODEL_ONNX,))
            txn.set_section("tensorrt_plugins", variant[1])
            say(f"TensorRT variant with {len(variant[1]['nodes'])} plugin node(s): {TRT_ONNX}")
    return ExportResult(txn.target / MODEL_ONNX, txn.target / MANIFEST, txn.manifest, name, attempts, rewrites, report,
                        prep.profile, prep.loaded, time.perf_counter() - t0)


def _exporter_reason(exported: _Exported) -> str:
    if exported.rescue is not None:
        return exported.rescue
    attempts, name = exported.attempts, exported.name
    return "first in order" if attempts[0].exporter == name else "; ".join(
        f"{a.exporter} {a.outcome}: {a.reason}" for a in attempts if a.exporter != name and a.outcome != "not tried")


def build_manifest(prep: Prepared, opts: ExportOptions, exporter, reason, attempts, rewrites, rewrite_notes, report,
                   data: bytes, opset: int) -> dict[str, Any]:
    """The manifest of a fresh export (the file table is added by the transaction at commit)."""
    lm, probe, profile = prep.loaded, prep.probe, prep.profile
    k = probe.spec.num_classes
    out_h = "height" if probe.output_stride[0] == 1.0 else "out_height"
    out_w = "width" if probe.output_stride[1] == 1.0 else "out_width"
    dyn = set(profile.dynamic_axes)
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "segdeploy_version": __version__,
        "source": {"path": Path(lm.source).name if lm.format not in ("factory", "module") else lm.source,
                   "format": lm.format, "sha256": lm.source_sha256},
        "model": {"in_channels": probe.spec.in_channels, "num_classes": k, "class_names": list(opts.class_names),
                  "spatial_multiple": probe.spec.spatial_multiple, "output_selection": probe.spec.output,
                  "output_stride": list(probe.output_stride), "probe_notes": list(probe.notes)},
        "inputs": [{"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW",
                    "shape": ["batch" if "batch" in dyn else profile.opt[0], profile.channels,
                              "height" if "height" in dyn else profile.opt[2], "width" if "width" in dyn else profile.opt[3]],
                    "profile": profile.to_dict()}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "layout": "NCHW",
                     "shape": ["batch" if "batch" in dyn else profile.opt[0], k,
                               out_h if "height" in dyn else round(profile.opt[2] * probe.output_stride[0]),
                               out_w if "width" in dyn else round(profile.opt[3] * probe.output_stride[1])],
                     "meaning": "per-class scores (logits); argmax over axis 1 gives the class map" if k > 1
                     else "one score per pixel; > 0 is the foreground class"}],
        "static_axes": prep.static_axes,
        "profile_narrowed": prep.narrowed,
        "profile_source": prep.profile_source,
        "preprocess": opts.preprocess.to_dict(),
        "onnx": {"file": MODEL_ONNX, "sha256": sha256_bytes(data), "bytes": len(data), "opset": opset,
                 "exporter": exporter, "exporter_reason": reason, "exporter_attempts": [a.to_dict() for a in attempts],
                 "cleanup": opts.cleanup},
        "rewrites": [r.to_dict() for r in rewrites] + [{"rewrite": "none", "target": "", "detail": n} for n in rewrite_notes],
        "verification": report.to_dict(),
        "versions": versions(),
    }

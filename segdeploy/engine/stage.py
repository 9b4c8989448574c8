"""The build stage: TensorRT engines for an export directory, or the trtexec commands where TensorRT is absent.

Contract
--------
``run(txn, request, progress=None, *, trt_module=None) -> BuildStageResult``

* ``txn``: an open :class:`~segdeploy.exportdir.Transaction` whose staged set holds the export (a fresh export in
  the same transaction -- :mod:`segdeploy.pipeline` -- or a derived transaction, :func:`build_directory`).
* ``request``: a :class:`~segdeploy.engine.request.BuildRequest`; which engines come from which ONNX is
  :func:`segdeploy.engine.jobs.plan_jobs`.
* TensorRT importable (``import tensorrt``, or ``trt_module``): each job is built by
  :func:`segdeploy.trt.builder.build_engine`; the plain plan is staged as ``model.<precision>.engine`` (kind
  ``engine``, derived from its ONNX (+ ``model.calib.cache``), so a later change of that ONNX retires it) and
  the manifest's ``engines`` list gets its entry (an entry of the same precision is replaced). The caller
  commits; any error (EngineBuildError, UnsupportedByTensorRT, a missing plugin library...) propagates and
  nothing is published.
* TensorRT not importable: nothing is built or staged. The result says ``built: false``, why, and carries the
  trtexec command per job for ``request.trt_target`` (:mod:`segdeploy.trt.trtexec`), with paths relative to the
  export directory (run them there, on the device). trtexec writes ``model.<precision>.plan``: not a name
  segdeploy owns, so later segdeploy runs keep it untouched (and never retire it).

``build_directory(path, request, progress=None, *, trt_module=None) -> BuildStageResult`` is `segdeploy build`:
without TensorRT it only reads the directory (:meth:`ExportDir.open`: no lock, no staging, nothing written);
with TensorRT it runs :func:`run` in its own transaction and publishes on success.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdeploy.engine.jobs import Job, plan_jobs
from segdeploy.engine.request import (
    PLUGIN_LIBRARY_NAME,
    BuildRequest,
    default_plugin_library,
)
from segdeploy.errors import UsageError
from segdeploy.vocab import Precision

__all__ = ["BuildRequest", "BuildStageResult", "build_directory", "import_tensorrt", "run", "trtexec_plan_name"]

NO_TENSORRT_FIX = ("build on the target with the trtexec command(s) printed on stdout, or pip install tensorrt on an "
                   "x86 CUDA machine (JetPack's python3-libnvinfer on a Jetson) and run `segdeploy build` there")


def trtexec_plan_name(precision: str) -> str:  # noqa: D401 - kept: the name the printed commands use
    """The file trtexec is told to write (``model.<precision>.plan``; not an artifact name segdeploy owns)."""
    return Precision(precision).plan_file


def import_tensorrt() -> tuple[Any, str | None]:
    """(module, None) when ``import tensorrt`` works, else (None, why not) -- never raises."""
    try:
        return importlib.import_module("tensorrt"), None
    except ImportError as e:
        detail = f" ({e})" if getattr(e, "name", None) != "tensorrt" else ""
        return None, f"TensorRT is not installed{detail}"
    except Exception as e:  # a broken install (missing libnvinfer, CUDA mismatch) cannot build either
        return None, f"TensorRT cannot be imported ({type(e).__name__}: {' '.join(str(e).split())[:200]})"


@dataclass
class BuildStageResult:
    """What the build stage did. ``engines``: the manifest entries written (built) -- ``commands``: the trtexec
    commands (not built)."""

    export_dir: Path
    built: bool
    reason: str | None = None  # why nothing was built
    tensorrt: str | None = None  # the installed version that built
    target: dict[str, Any] | None = None  # trtexec target (not built)
    jobs: list[Job] = field(default_factory=list)
    engines: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    timing_cache: dict[str, Any] | None = None
    plugin_library: str | None = None  # the library loaded for plugin models (path)
    logs: dict[str, str] = field(default_factory=dict)  # precision -> TensorRT log (verbose)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The stage's entry in the JSON result document."""
        return {
            "built": self.built, "reason": self.reason, "tensorrt": self.tensorrt, "target": self.target,
            "jobs": [j.to_dict() for j in self.jobs], "engines": self.engines, "commands": self.commands,
            "cwd": str(self.export_dir) if self.commands else None, "timing_cache": self.timing_cache,
            "plugin_library": self.plugin_library,
            "notes": list(self.notes), "seconds": round(self.seconds, 2),
        }

    def print_summary(self, echo: Callable[[str], None] | None = None) -> None:
        """Human-readable summary on stdout (the commands to run when nothing was built)."""
        import click

        w = echo or click.echo
        if self.built:
            w(f"built {len(self.engines)} engine(s) with TensorRT {self.tensorrt} in {self.export_dir}")
            for e in self.engines:
                gpu = (e.get("gpu") or {}).get("name") or "unknown GPU"
                parity = e.get("parity")
                drift = ""
                if parity and parity.get("miou_drop_points") is not None:
                    drift = f", mIoU drop {parity['miou_drop_points']:.3f} points vs PyTorch on {parity['images']} images"
                w(f"  {e['file']:<26} {e['bytes'] / 2**20:8.2f} MiB  from {e['source_onnx']}  on {gpu}  "
                  f"{e.get('build_seconds', 0):.1f}s{drift}")
                for warn in e.get("warnings") or []:
                    w(f"    warning: {warn}")
        else:
            t = self.target or {}
            w(f"engine not built here: {self.reason}")
            w(f"to build on the target ({t.get('label', 'TensorRT')}), run in the export directory {self.export_dir} "
              "(or its copy on the device; an engine runs only on the GPU model and TensorRT version that built it):")
            seen: set[str] = set()
            for c in self.commands:
                w(f"  # {c['precision']}: {c['onnx']} -> {c['save_engine']}")
                w(f"  {c['command']}")
                for n in c["notes"]:
                    if n not in seen:  # notes shared by every command are shown once
                        seen.add(n)
                        w(f"    note: {n}")
        for n in self.notes:
            w(f"note: {n}")


def _staged_view(txn: Any) -> tuple[dict[str, Any], set[str]]:
    return txn.manifest, set(txn.entries)


def run(txn: Any, request: BuildRequest, progress: Callable[[str], None] | None = None, *,
        trt_module: Any = None) -> BuildStageResult:
    """Build (or describe) the engines for the export staged in ``txn`` (see the module docstring)."""
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    manifest, listed = _staged_view(txn)
    plan = plan_jobs(manifest, listed, request)
    trt, why = (trt_module, None) if trt_module is not None else import_tensorrt()
    res = BuildStageResult(export_dir=txn.target, built=trt is not None, jobs=list(plan.jobs), notes=list(plan.notes))
    if trt is None:
        res.reason = why
        _describe_commands(res, manifest, Path(txn.staging), plan.jobs, request)
    else:
        _build(res, txn, plan.jobs, request, trt, say)
    res.seconds = time.perf_counter() - t0
    return res


def build_directory(path: str | os.PathLike, request: BuildRequest, progress: Callable[[str], None] | None = None, *,
                    trt_module: Any = None) -> BuildStageResult:
    """`segdeploy build EXPORT_DIR` (see the module docstring)."""
    from segdeploy.exportdir import ExportDir, Transaction

    t0 = time.perf_counter()
    request.check_static()
    trt, why = (trt_module, None) if trt_module is not None else import_tensorrt()
    if trt is None:
        ed = ExportDir.open(path)  # validated, read-only: nothing is locked, staged or written
        plan = plan_jobs(ed.manifest, set(ed.files), request)
        res = BuildStageResult(export_dir=ed.path, built=False, reason=why, jobs=list(plan.jobs), notes=list(plan.notes))
        _describe_commands(res, ed.manifest, ed.path, plan.jobs, request)
        res.seconds = time.perf_counter() - t0
        return res
    with Transaction(path, fresh=False, command="build", progress=progress) as txn:
        res = run(txn, request, progress, trt_module=trt)
        txn.commit()
    res.export_dir = txn.target
    res.notes += txn.notes
    res.seconds = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------ without TensorRT


def _describe_commands(res: BuildStageResult, manifest: dict[str, Any], where: Path, jobs: list[Job],
                       request: BuildRequest) -> None:
    from segdeploy.manifest import onnx_profile_of
    from segdeploy.trt.trtexec import _note_cache_version, trtexec_command
    from segdeploy.trt.versions import resolve_target

    t = resolve_target(request.trt_target)
    res.target = {"target": t.key, "label": t.label, "example_version": t.example_version, "jetpack": t.jetpack}
    input_name = manifest["inputs"][0]["name"]
    profile = onnx_profile_of(manifest)
    lib = None
    if any(j.plugins for j in jobs):
        lib = request.plugin_library or PLUGIN_LIBRARY_NAME
        if request.plugin_library is None:
            res.notes.append(f"the model needs segdeploy's TensorRT plugins: build {PLUGIN_LIBRARY_NAME} on the device "
                             "(`segdeploy plugins build`) and put its path in --dynamicPlugins")
    if request.rewrite_calib_header and any(j.calib_cache for j in jobs):
        res.notes.append("--rewrite-calib-header applies only when segdeploy builds; trtexec reads model.calib.cache as "
                         "it is (re-run `segdeploy calibrate --trt-version V` for the target's header)")
    for job in jobs:
        cmd = trtexec_command(
            job.onnx, input_name, profile, job.precision, target=t.key,
            plugin_library=lib if job.plugins else None, calib_cache=job.calib_cache,
            save_engine=trtexec_plan_name(job.precision), workspace_mib=request.workspace_mib,
            # one cache per device, reused by every later build there (trtexec ignores a foreign one with a warning)
            timing_cache="timing.cache" if request.use_timing_cache else None,
            optimization_level=request.optimization_level, dla_core=request.dla_core,
            gpu_fallback=request.gpu_fallback, version_compatible=request.version_compatible,
            hardware_compatibility=request.hardware_compatibility,
        )
        notes = list(cmd.notes)
        if job.calib_cache:  # the header check needs the real file (the command names it relative)
            extra: list[str] = []
            _note_cache_version(t, str(where / job.calib_cache), extra)
            notes += [n for n in extra if n not in notes]
        cmd = dataclasses.replace(cmd, notes=tuple(notes))
        res.commands.append(dict(cmd.to_dict(), precision=job.precision, onnx=job.onnx,
                                 save_engine=trtexec_plan_name(job.precision)))


# ------------------------------------------------------------------------------------------ with TensorRT


def _plugin_library(request: BuildRequest, jobs: list[Job], res: BuildStageResult) -> Path | None:
    if not any(j.plugins for j in jobs):
        if request.plugin_library is not None:
            res.notes.append(f"--plugins {request.plugin_library} not used: this model needs no segdeploy plugins")
        return None
    if request.plugin_library is not None:
        return Path(request.plugin_library)
    found = default_plugin_library()
    if found is None:
        raise UsageError(f"this model needs segdeploy's TensorRT plugin library {PLUGIN_LIBRARY_NAME} and none was found "
                         "at the default build path; build it with `segdeploy plugins build` or pass --plugins PATH")
    res.notes.append(f"plugin library: {found} (default `segdeploy plugins build` output)")
    return found


def _timing_cache_dir(request: BuildRequest, res: BuildStageResult) -> Path | None:
    if not request.use_timing_cache:
        return None
    from segdeploy.usercache import cache_subdir

    d, why = cache_subdir("timing", request.timing_cache_dir)
    if d is None:
        res.notes.append(why)
    return d


def engine_entry(name: str, file_entry: Any, info: dict[str, Any]) -> dict[str, Any]:
    """The manifest ``engines`` entry for a built plan (``file_entry``: its row of the file table)."""
    plugins = info.get("plugins") or None
    return {
        "file": name, "sha256": file_entry.sha256, "bytes": file_entry.bytes, "precision": info["precision"],
        "source_onnx": info["source_onnx"], "source_sha256": info["source_sha256"],
        "tensorrt": {"version": info["tensorrt"]["version"], "plan_header": info["tensorrt"]["plan_header"]},
        "gpu": {"name": info["gpu"].get("name"), "compute_capability": info["gpu"].get("compute_capability")},
        "profile": info["profile"], "input": info["input"], "recipe": info["recipe"], "flags": info["flags"],
        "build_options": info["build_options"], "build_seconds": round(float(info["build_seconds"]), 3),
        "plugins": plugins["library"] if plugins else None,
        "plugin_creators": list(plugins["creators"]) if plugins else [],
        "calibration_cache": info.get("calibration_cache"), "warnings": list(info.get("warnings") or []),
        "parity": None,
    }


def _build(res: BuildStageResult, txn: Any, jobs: list[Job], request: BuildRequest, trt: Any,
           say: Callable[[str], None]) -> None:
    from segdeploy.trt.builder import EngineBuildError, build_engine

    input_name = txn.input_name
    profile = txn.profile
    options = request.engine_options()
    lib = _plugin_library(request, jobs, res)
    res.plugin_library = str(lib) if lib is not None else None
    tc_dir = _timing_cache_dir(request, res)
    res.tensorrt = str(getattr(trt, "__version__", "unknown"))
    for job in jobs:
        say(f"build: {job.precision} engine from {job.onnx} (TensorRT {res.tensorrt})")
        try:
            out = build_engine(txn.staged(job.onnx), input_name, profile, job.precision, options,
                               plugin_library=lib if job.plugins else None,
                               calib_cache=txn.staged(job.calib_cache) if job.calib_cache else None,
                               timing_cache_dir=tc_dir, verbose=request.verbose, trt_module=trt)
        except EngineBuildError as e:
            if request.verbose and e.log:
                res.logs[job.precision] = e.log
            e.logs.update(res.logs)  # the CLI prints them with --verbose
            raise
        name = Precision(job.precision).engine_file
        txn.write_bytes(name, out.plan, "engine", derived_from=job.derived_from)
        entry = engine_entry(name, txn.entries[name], out.info)
        txn.put_engine(entry)
        res.engines.append(entry)
        if out.info.get("timing_cache"):
            res.timing_cache = out.info["timing_cache"]
        if request.verbose and out.info.get("log"):
            res.logs[job.precision] = out.info["log"]
        say(f"build: {name} ({len(out.plan) / 2**20:.1f} MiB, {out.info['build_seconds']:.1f}s)")

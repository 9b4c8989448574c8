"""The build stage: TensorRT engines for an export directory, or the trtexec commands where TensorRT is absent.

Contract
--------
``run(txn, options, progress, *, trt_module=None) -> BuildStageResult`` (the stage contract)

* ``txn``: an open :class:`~segdeploy.exportdir.Transaction` whose staged set holds the export (a fresh export in
  the same transaction -- :mod:`segdeploy.pipeline` -- or a derived one, :func:`segdeploy.pipeline.build_directory`).
* ``options``: a :class:`~segdeploy.engine.request.BuildRequest` (frozen, validated); which engines come from
  which ONNX is :func:`segdeploy.engine.jobs.plan_jobs`. ``progress``: a :class:`~segdeploy.progress.Progress`.
* TensorRT importable (``import tensorrt``, or ``trt_module``): each job is built by
  :func:`segdeploy.trt.builder.build_engine` (a typed :class:`~segdeploy.trt.builder.BuildResult`); the plain plan
  is staged as ``model.<precision>.engine`` (kind ``engine``, derived from its ONNX (+ ``model.calib.cache``), so
  a later change of that ONNX retires it) and its ``engines`` entry goes in through ``txn.put_engine`` (an entry
  of the same precision is replaced). The result holds its own copy of each entry. The caller commits; any error
  (EngineBuildError, UnsupportedByTensorRT, a missing plugin library...) propagates and nothing is published.
* TensorRT not importable: nothing is built or staged. The result says ``built: false``, why, and carries the
  trtexec command per job for the target (``options.target()``: ``--trt-target``, else segdeploy's default) --
  the rendering of the same recipe the builder would use (:mod:`segdeploy.trt.trtexec`) -- with paths relative to
  the export directory (run them there, on the device; a ``--plugins`` path is made absolute, the default plugin
  library is ``./libsegdeploy_trt_plugins.so``). trtexec writes ``model.<precision>.plan``: not a name segdeploy
  owns, so later segdeploy runs keep it untouched (and never retire it).

``describe_directory(export_dir, options, reason) -> BuildStageResult``: the trtexec commands for a published
:class:`~segdeploy.exportdir.ExportDir` (read-only: no lock, no staging, nothing written).

`segdeploy build` is :func:`segdeploy.pipeline.build_directory`: the cheap checks, then without TensorRT
:func:`describe_directory`, with TensorRT :func:`run` through :func:`segdeploy.pipeline.run_stage` (the one way to
run one stage on a published directory), published on success.

The plugin library a plugin model needs is ``--plugins`` or the one :func:`segdeploy.plugins.locate.locate_library`
finds (``$SEGDEPLOY_PLUGINS``, the `segdeploy plugins build` output).
"""

from __future__ import annotations

import copy
import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segdeploy.engine.jobs import Job, plan_jobs
from segdeploy.engine.request import BuildRequest
from segdeploy.plugins.locate import PLUGIN_LIBRARY, find_library
from segdeploy.progress import Progress, as_progress
from segdeploy.vocab import Precision

if TYPE_CHECKING:
    from segdeploy.exportdir import ExportDir, Transaction
    from segdeploy.trt.builder import BuildResult

__all__ = ["BuildRequest", "BuildStageResult", "describe_directory", "import_tensorrt", "run",
           "trtexec_plan_name"]

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


def _tensorrt(trt_module: Any) -> tuple[Any, str | None]:
    return (trt_module, None) if trt_module is not None else import_tensorrt()


@dataclass
class BuildStageResult:
    """What the build stage did. ``engines``: the manifest entries written (built; the result's own copies) --
    ``commands``: the trtexec commands (not built)."""

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

    def replace_engine(self, entry: dict[str, Any]) -> None:
        """Replace the recorded entry of ``entry["file"]`` (e.g. with its parity record added)."""
        self.engines = [copy.deepcopy(entry) if e["file"] == entry["file"] else e for e in self.engines]

    def summary(self) -> dict[str, Any]:
        """The stage's entry in the JSON result document."""
        return {
            "built": self.built, "reason": self.reason, "tensorrt": self.tensorrt, "target": self.target,
            "jobs": [j.to_dict() for j in self.jobs], "engines": copy.deepcopy(self.engines),
            "commands": self.commands, "cwd": str(self.export_dir) if self.commands else None,
            "timing_cache": self.timing_cache, "plugin_library": self.plugin_library,
            "notes": list(self.notes), "seconds": round(self.seconds, 2),
        }

    def print_summary(self, echo: Callable[[str], None] | None = None) -> None:
        """Human-readable summary on stdout (the commands to run when nothing was built)."""
        import click

        w = echo or click.echo
        if self.built:
            self._print_engines(w)
        else:
            self._print_commands(w)
        for n in self.notes:
            w(f"note: {n}")

    def _print_engines(self, w: Callable[[str], None]) -> None:
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

    def _print_commands(self, w: Callable[[str], None]) -> None:
        t = self.target or {}
        w(f"engine not built here: {self.reason}")
        where = f"{t.get('label', 'TensorRT')}" + (f", {t['jetpack']}" if t.get("jetpack") else "")
        if t.get("origin") == "default":
            where += "; segdeploy's default target: --trt-target names yours"
        w(f"to build on the target ({where}), run in the export directory {self.export_dir} "
          "(or its copy on the device; an engine runs only on the GPU model and TensorRT version that built it):")
        seen: set[str] = set()
        for c in self.commands:
            w(f"  # {c['precision']}: {c['onnx']} -> {c['save_engine']}")
            w(f"  {c['command']}")
            for n in c["notes"]:
                if n not in seen:  # notes shared by every command are shown once
                    seen.add(n)
                    w(f"    note: {n}")


def run(txn: Transaction, options: BuildRequest, progress: Progress | None = None, *,
        trt_module: Any = None) -> BuildStageResult:
    """Build (or describe) the engines for the export staged in ``txn`` (see the module docstring)."""
    t0 = time.perf_counter()
    plan = plan_jobs(txn, options)
    trt, why = _tensorrt(trt_module)
    res = BuildStageResult(export_dir=txn.target, built=trt is not None, jobs=list(plan.jobs), notes=list(plan.notes))
    if trt is None:
        res.reason = why
        _describe_commands(res, txn, Path(txn.staging), options)
    else:
        _build(res, txn, options, trt, as_progress(progress))
    res.seconds = time.perf_counter() - t0
    return res


def describe_directory(export_dir: ExportDir, options: BuildRequest, reason: str | None) -> BuildStageResult:
    """The trtexec commands for a published export directory (read-only; see the module docstring)."""
    t0 = time.perf_counter()
    plan = plan_jobs(export_dir, options)
    res = BuildStageResult(export_dir=export_dir.path, built=False, reason=reason, jobs=list(plan.jobs),
                           notes=list(plan.notes))
    _describe_commands(res, export_dir, export_dir.path, options)
    res.seconds = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------ without TensorRT


def _describe_commands(res: BuildStageResult, view: ExportDir | Transaction, where: Path,
                       options: BuildRequest) -> None:
    """One trtexec command per job (paths relative to the export directory ``where``)."""
    t = options.target()
    res.target = t.to_dict()
    lib = None
    if any(j.plugins for j in res.jobs):
        # a given library exists here: absolute, so the command works from the export directory; the default is the
        # library built on the device next to the commands (./: dlopen does not search the current directory)
        lib = os.path.abspath(options.plugin_library) if options.plugin_library else f"./{PLUGIN_LIBRARY}"
        if options.plugin_library is None:
            res.notes.append(f"the model needs segdeploy's TensorRT plugins: build {PLUGIN_LIBRARY} on the device "
                             "(`segdeploy plugins build`) and put it in the export directory, or fix the path in "
                             "--dynamicPlugins")
    for job in res.jobs:
        res.commands.append(_command(job, view, where, options, t, lib if job.plugins else None))


def _command(job: Job, view: ExportDir | Transaction, where: Path, options: BuildRequest, target: Any,
             lib: str | None) -> dict[str, Any]:
    from segdeploy.trt.calibrator import read_cache_header
    from segdeploy.trt.trtexec import trtexec_command

    header = read_cache_header(where / job.calib_cache) if job.calib_cache else None  # the header check needs the file
    cmd = trtexec_command(
        job.onnx, view.input_name, view.profile, job.precision, target=target, plugin_library=lib,
        calib_cache=job.calib_cache, calib_header=header, save_engine=trtexec_plan_name(job.precision),
        # one cache per device, reused by every later build there (trtexec ignores a foreign one with a warning)
        timing_cache="timing.cache" if options.use_timing_cache else None, options=options.engine_options(),
    )
    return dict(cmd.to_dict(), precision=job.precision, onnx=job.onnx, save_engine=trtexec_plan_name(job.precision))


# ------------------------------------------------------------------------------------------ with TensorRT


def _plugin_library(options: BuildRequest, jobs: list[Job], res: BuildStageResult) -> Path | None:
    if not any(j.plugins for j in jobs):
        if options.plugin_library is not None:
            res.notes.append(f"--plugins {options.plugin_library} not used: this model needs no segdeploy plugins")
        return None
    if options.plugin_library is not None:
        return Path(options.plugin_library)
    search = find_library()
    found = search.require(f"this model needs segdeploy's TensorRT plugin library {PLUGIN_LIBRARY}")
    res.notes.append(f"plugin library: {found} ({search.origin})")
    return found


def _timing_cache_dir(options: BuildRequest, res: BuildStageResult) -> Path | None:
    if not options.use_timing_cache:
        return None
    from segdeploy.usercache import cache_subdir

    d, why = cache_subdir("timing", options.timing_cache_dir)
    if d is None:
        res.notes.append(why)
    return d


def engine_entry(name: str, file_entry: Any, built: BuildResult) -> dict[str, Any]:
    """The manifest ``engines`` entry for a built plan (``file_entry``: its row of the file table)."""
    plugins = built.plugins
    return {
        "file": name, "sha256": file_entry.sha256, "bytes": file_entry.bytes, "precision": built.precision,
        "source_onnx": built.source_onnx, "source_sha256": built.source_sha256,
        "tensorrt": {"version": built.tensorrt_version,
                     "plan_header": list(built.plan_header) if built.plan_header else None},
        "gpu": built.gpu.to_dict(), "profile": built.profile.to_dict(), "input": built.input_name,
        "recipe": built.recipe.to_dict(), "flags": built.flags, "build_options": built.options.to_dict(),
        "build_seconds": round(float(built.build_seconds), 3),
        "plugins": plugins.library if plugins else None,
        "plugin_creators": list(plugins.creators) if plugins else [],
        "calibration_cache": built.calibration_cache.to_dict() if built.calibration_cache is not None else None,
        "warnings": list(built.warnings), "parity": None,
    }


def _build(res: BuildStageResult, txn: Transaction, options: BuildRequest, trt: Any, progress: Progress) -> None:
    lib = _plugin_library(options, res.jobs, res)
    res.plugin_library = str(lib) if lib is not None else None
    tc_dir = _timing_cache_dir(options, res)
    res.tensorrt = str(getattr(trt, "__version__", "unknown"))
    if options.trt_target is not None:
        res.notes.append(f"--trt-target {options.trt_target} not used: TensorRT {res.tensorrt} is installed here and "
                         "builds the engines for itself")
    for job in res.jobs:
        progress.step(f"build: {job.precision} engine from {job.onnx} (TensorRT {res.tensorrt})")
        built = _build_one(res, txn, job, options, trt, lib if job.plugins else None, tc_dir)
        name = Precision(job.precision).engine_file
        txn.write_bytes(name, built.plan, "engine", derived_from=job.derived_from)
        entry = engine_entry(name, txn.entries[name], built)
        txn.put_engine(copy.deepcopy(entry))  # the transaction's entry and the result's are separate dicts
        res.engines.append(entry)
        if built.timing_cache is not None:
            res.timing_cache = built.timing_cache.to_dict()
        if options.verbose and built.log:
            res.logs[job.precision] = built.log
        progress.step(f"build: {name} ({built.bytes / 2**20:.1f} MiB, {built.build_seconds:.1f}s)")


def _build_one(res: BuildStageResult, txn: Transaction, job: Job, options: BuildRequest, trt: Any,
               lib: Path | None, tc_dir: Path | None) -> BuildResult:
    from segdeploy.trt.builder import EngineBuildError, build_engine

    try:
        return build_engine(txn.staged(job.onnx), txn.input_name, txn.profile, job.precision, options.engine_options(),
                            plugin_library=lib, calib_cache=txn.staged(job.calib_cache) if job.calib_cache else None,
                            timing_cache_dir=tc_dir, verbose=options.verbose, trt_module=trt)
    except EngineBuildError as e:
        if options.verbose and e.log:
            res.logs[job.precision] = e.log
        e.logs.update(res.logs)  # the CLI prints them with --verbose
        raise

"""The bench stage: artifacts in, the ``segdeploy.bench`` report document out.

``report = run_bench(artifacts, BenchOptions(...), progress=None, command=None)``

1. :func:`segdeploy.bench.targets.expand_targets` turns the artifacts into (artifact, runner) targets;
   Q/DQ and FP16 models bound for ONNX Runtime's CPU provider are inspected (:mod:`segdeploy.bench.ortgraph`:
   which int8 kernels / casts ORT really runs), and the target's note says so and what it predicts for TensorRT;
2. :func:`resolve_shapes` fixes the input shapes: ``options.shapes`` (``NxCxHxW``, or ``HxW`` when a manifest
   gives the channel count), else the opt shape of the first manifest found beside an artifact; every shape
   must lie inside each target's shape profile (where one is known);
3. the runners are made, ``torch-compile`` targets checked for a working ``torch.compile`` first;
4. :func:`segdeploy.bench.measure.measure` runs them interleaved, with ``torch.set_num_threads(threads)`` in
   effect only for the duration of the measurement when ``threads`` is given (restored afterwards, also on
   error); ONNX Runtime sessions get ``intra_op_num_threads = threads``;
5. :func:`segdeploy.bench.report.build_report` assembles the document (docs/bench.md);
6. on ONNX Runtime's CPU provider, an export directory with end-to-end variants (``--end-to-end``) also gets the
   ``end_to_end`` rows (:func:`segdeploy.bench.e2e.e2e_rows`): each variant beside its plain model, host
   preprocessing and argmax included for the plain one, bytes in/out per frame and latency.

Raises: UsageError (bad options, no shape, runner/artifact mismatch), ShapeError (a shape outside a profile,
an input a model rejects), ArtifactError (missing/invalid artifacts), MissingDependencyError (a runner whose
backend is absent here, ONNX Runtime falling back to the CPU for ort-cuda/ort-tensorrt, torch.compile
unavailable), ModelLoadError.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from segdeploy.bench.measure import MeasureOptions, measure
from segdeploy.bench.targets import Target, TargetOptions, expand_targets, make_runner
from segdeploy.errors import MissingDependencyError, ShapeError, UsageError
from segdeploy.progress import Progress
from segdeploy.runners.base import Runner
from segdeploy.spec import Shape, parse_shape
from segdeploy.vocab import OrtLevel, Precision


@dataclass(frozen=True)
class BenchOptions:
    runners: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()  # "NxCxHxW" or "HxW"; empty: the manifest's opt shape
    warmup: int = 3
    iters: int | None = 20
    seconds: float | None = None
    threads: int | None = None
    ort_opt_level: str = OrtLevel.ALL
    trust_pickle: bool = False
    plugin_library: str | None = None
    seed: int = 0
    switch_gap_ms: float = 50.0
    settle_calls: int = 1

    def measure_options(self) -> MeasureOptions:
        return MeasureOptions(warmup=self.warmup, iters=self.iters, seconds=self.seconds, seed=self.seed,
                              switch_gap_s=self.switch_gap_ms / 1e3, settle_calls=self.settle_calls)

    def target_options(self) -> TargetOptions:
        return TargetOptions(threads=self.threads, ort_opt_level=self.ort_opt_level, trust_pickle=self.trust_pickle,
                             plugin_library=self.plugin_library)


def _fmt(s: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in s)


def resolve_shapes(texts: tuple[str, ...], targets: list[Target]) -> tuple[list[Shape], list[str]]:
    """Parse/default the input shapes and check them against every known profile. Returns (shapes, notes)."""
    notes: list[str] = []
    with_profile = [t for t in targets if t.profile is not None]
    channels = with_profile[0].profile.channels if with_profile else None
    if texts:
        shapes = list(dict.fromkeys(parse_shape(t, channels) for t in texts))
    elif with_profile:
        first = with_profile[0]
        shapes = [tuple(first.profile.opt)]
        notes.append(f"input shape {_fmt(shapes[0])}: the opt shape of {first.manifest} (change it with --shape)")
    else:
        raise UsageError(f"no --shape given and no manifest.json beside {targets[0].artifact} to take the opt shape "
                         "from; pass --shape NxCxHxW (e.g. --shape 1x3x512x512)")
    for s in shapes:
        if len(s) != 4 or min(s) < 1:
            raise UsageError(f"--shape {_fmt(s)} has a zero dimension; pass 4 positive integers NxCxHxW")
        for t in with_profile:
            p = t.profile
            if not p.contains(s):
                raise ShapeError(
                    f"--shape {_fmt(s)} is outside the shape profile of {t.artifact.name} (min {_fmt(p.min)}, "
                    f"max {_fmt(p.max)}, H and W multiples of {p.spatial_multiple}); pass a --shape inside it"
                )
    return shapes, notes


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int | None]:
    """Set torch's intra-op threads to ``n`` for the block and restore the previous value after it.

    Yields the value in effect (None when torch is not imported and ``n`` is None)."""
    import sys

    if n is None:
        torch = sys.modules.get("torch")
        yield torch.get_num_threads() if torch is not None else None
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _check_ort_device(target: Target, runner: Runner) -> None:
    """ONNX Runtime falls back to the CPU when a GPU provider fails to start: refuse to time that as GPU."""
    if target.kind != "onnx" or target.runner == "ort-cpu":
        return
    wanted = "TensorrtExecutionProvider" if target.runner == "ort-tensorrt" else "CUDAExecutionProvider"
    providers = runner.describe().get("providers") or []
    if not providers or providers[0] != wanted:
        raise MissingDependencyError(
            f"onnxruntime could not start {wanted} for {target.artifact.name} (session providers: "
            f"{', '.join(providers) or 'none'}); install the CUDA/cuDNN (and TensorRT) libraries onnxruntime-gpu "
            "needs, or use --runner ort-cpu"
        )


def _inspect_ort_cpu(target: Target, opt_level: str) -> Target:
    """INT8 (Q/DQ) or FP16 model on ONNX Runtime's CPU provider: record what ORT really executes, and say it."""
    if target.kind != "onnx" or target.runner != "ort-cpu" or target.precision not in (Precision.INT8, Precision.FP16):
        return target
    from segdeploy.bench.ortgraph import (
        describe_fp16_execution,
        describe_int8_execution,
        fp16_execution,
        int8_execution,
    )

    if target.precision == Precision.INT8:
        facts = int8_execution(target.artifact, opt_level)
        key, note = "ort_cpu_int8", describe_int8_execution(facts)
    else:
        facts = fp16_execution(target.artifact, opt_level)
        key, note = "ort_cpu_fp16", describe_fp16_execution(facts)
    return dataclasses.replace(target, execution={key: facts}, notes=target.notes + (note,))


def _preimport(kinds: set[str]) -> None:
    """Import the backends' libraries before any target loads, so no target's memory includes them."""
    import importlib

    mods = {"model": ("torch", "segdeploy.load"), "onnx": ("onnxruntime",), "engine": ("tensorrt",)}
    for kind in sorted(kinds):
        for mod in mods.get(kind, ()):
            try:
                importlib.import_module(mod)
            except ImportError:
                pass  # the runner's own open() reports a missing backend with its install hint


def run_bench(artifacts: list[Any], options: BenchOptions | None = None,
              progress: Progress | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the benchmark (see module docstring) and return the report document."""
    from segdeploy.bench.report import build_report

    opts = options or BenchOptions()
    mopts = opts.measure_options()
    topts = opts.target_options()
    exp = expand_targets(artifacts, opts.runners)
    exp.targets = [_inspect_ort_cpu(t, opts.ort_opt_level) for t in exp.targets]
    shapes, notes = resolve_shapes(tuple(opts.shapes), exp.targets)
    notes = exp.notes + notes
    compile_devices = {t.device for t in exp.targets if t.runner.startswith("torch-compile")}
    if compile_devices:
        from segdeploy.bench.compiled import check_compile_available

        for dev in sorted(compile_devices):
            check_compile_available(dev)
    runners = [make_runner(t, topts) for t in exp.targets]
    _preimport({t.kind for t in exp.targets})
    uses_torch = any(t.kind == "model" for t in exp.targets)
    with torch_threads(opts.threads if uses_torch else None) as torch_n:
        m = measure(runners, shapes, mopts, progress,
                    on_open=lambda i, r: _check_ort_device(exp.targets[i], r))
    doc = build_report(exp, shapes, m, opts, notes=notes, torch_threads=torch_n, command=command)
    if not opts.runners or "ort-cpu" in opts.runners:
        from segdeploy.bench.e2e import e2e_rows

        rows = e2e_rows(artifacts, shapes, iters=mopts.iters or 20, warmup=opts.warmup, threads=opts.threads,
                        seed=opts.seed, progress=progress)
        if rows:
            doc["end_to_end"] = rows
    return doc

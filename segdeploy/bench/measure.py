"""Interleaved latency measurement of several runners in one process.

``measure(runners, shapes, options, progress=None) -> Measurement`` (``progress``: a
:class:`~segdeploy.progress.Progress`; its step lines say which runner loads and how far the timing is)

* ``runners``: unopened :class:`~segdeploy.runners.base.Runner` objects (any backend; index 0 is the
  baseline of the ratios computed later). ``shapes``: NCHW tuples. The input is one seeded standard-normal
  float32 array per shape, the same for every runner.
* Phase 1, loading, one runner at a time: ``open()`` and ``options.warmup`` calls at every shape, inside a
  :class:`~segdeploy.bench.memory.PeakSampler`, so each runner's memory is measured while nothing else loads
  (``memory``: peak and retained RSS growth over the RSS just before its ``open``; device memory likewise when
  a CUDA runner is present). ``open_s`` and each shape's first-call time (``first_call_ms``: lazy
  initialisation, torch.compile's compilation) are recorded apart from the steady state.
* Phase 2, per shape: one untimed round over all runners, then timed rounds. **Round ``i`` gives every
  runner one turn, starting at runner ``i mod n``** (rotating round-robin), so each runner sees the machine in
  the same states equally often and a slow drift (thermal, another job) spreads over all of them. A turn (with
  more than one runner) is: a pause of ``options.switch_gap_s`` (thread pools of other runtimes that spin after
  their call -- ONNX Runtime's spin for tens of ms, OpenMP's briefly -- go to sleep instead of stealing cores
  from this call), ``options.settle_calls`` untimed calls (this runner's own threads and caches hot again),
  then one timed call. It stops after ``options.iters`` rounds, or once ``options.seconds`` have passed (at
  least ``options.min_iters`` rounds).
* Latency of a call: the runner's own timer (``runner.timings``: wall clock around the backend call, device
  synchronised). Per (runner, shape): p50/p90/p99/mean/min/max/std in ms and images/s
  (batch * calls / summed latency). When a runner exposes a per-call host-to-device / compute /
  device-to-host split (see :func:`read_split`), its medians are reported too.
* Each runner's output at each shape is compared with runner 0's (shape, argmax agreement on the
  benchmark's random input): a guard against comparing different models, not an accuracy measurement.

``on_open(index, runner)``, when given, is called right after each runner opens (a caller's validation,
e.g. that ONNX Runtime did not fall back to the CPU); what it raises propagates.
Raises what the runners raise (SegdeployError subclasses). Every runner is closed on exit, also on error.
``call_log`` (list of ``(shape_index, runner_index)`` of every timed call, in order) is kept for inspection.
``options.switch_gap_s = 0`` and ``settle_calls = 0`` give plain back-to-back interleaving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from segdeploy.bench.memory import PeakSampler, device_used_bytes, init_device_probe, rss_bytes
from segdeploy.errors import UsageError
from segdeploy.progress import Progress, Task, as_progress
from segdeploy.runners.base import Runner

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class MeasureOptions:
    """Iteration control. Exactly one of ``iters`` / ``seconds`` drives the timed phase."""

    warmup: int = 3
    iters: int | None = 20
    seconds: float | None = None
    min_iters: int = 3
    seed: int = 0
    switch_gap_s: float = 0.05  # pause before each runner's turn (other runtimes' spinning threads settle)
    settle_calls: int = 1  # untimed calls of a runner right before its timed call (its own threads hot)

    def __post_init__(self) -> None:
        if self.warmup < 1:
            raise UsageError(f"--warmup {self.warmup} is too few (the first call includes lazy initialisation); "
                             "pass --warmup 1 or more")
        if (self.iters is None) == (self.seconds is None):
            raise UsageError("--iters and --seconds were both given, or neither; give either --iters N or --seconds S")
        if self.iters is not None and self.iters < 1:
            raise UsageError(f"--iters {self.iters} runs nothing; pass --iters 1 or more")
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError(f"--seconds {self.seconds} runs nothing; pass a positive --seconds")
        if self.switch_gap_s < 0 or self.settle_calls < 0:
            raise UsageError("switch_gap_s and settle_calls must be >= 0; pass 0 to turn them off")
        if self.min_iters < 1:
            raise UsageError(f"min_iters {self.min_iters} runs nothing; pass 1 or more")


def rotation(n: int, round_index: int) -> list[int]:
    """Runner order of timed round ``round_index`` for ``n`` runners: start at ``round_index mod n``."""
    start = round_index % n
    return [(start + k) % n for k in range(n)]


_SPLIT_KEYS = ("h2d", "compute", "d2h")


def _split_from(obj: Any) -> dict[str, float] | None:
    """Normalise one split record to milliseconds. Keys/attributes ``h2d``/``compute``/``d2h`` with suffix
    ``_ms`` (milliseconds), ``_s`` or none (seconds, like ``Runner.timings``)."""
    if obj is None:
        return None
    get = obj.get if isinstance(obj, dict) else (lambda k, d=None: getattr(obj, k, d))
    out: dict[str, float] = {}
    for k in _SPLIT_KEYS:
        for suffix, scale in (("_ms", 1.0), ("_s", 1e3), ("", 1e3)):
            v = get(k + suffix, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = float(v) * scale
                break
    return out if len(out) == len(_SPLIT_KEYS) else None


def read_split(runner: Runner) -> dict[str, float] | None:
    """The last call's host-to-device / compute / device-to-host split in ms, when the runner tells.

    Looked up with ``getattr`` (backends fill it where they can, e.g. the TensorRT runner's CUDA events):
    ``runner.last_split`` (a dict or object, or a method returning one); None when absent or incomplete.
    """
    s = getattr(runner, "last_split", None)
    if callable(s):
        s = s()
    return _split_from(s)


def latency_stats(times_s: Sequence[float]) -> dict[str, float]:
    """mean/std/min/p50/p90/p99/max in milliseconds of per-call seconds (linear-interpolated percentiles)."""
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "mean": float(t.mean()),
        "std": float(t.std(ddof=1)) if t.size > 1 else 0.0,
        "min": float(t.min()),
        "p50": float(np.percentile(t, 50)),
        "p90": float(np.percentile(t, 90)),
        "p99": float(np.percentile(t, 99)),
        "max": float(t.max()),
    }


@dataclass
class RunnerRecord:
    """What phase 1 learned about one runner."""

    describe: dict[str, Any] = field(default_factory=dict)
    open_s: float = 0.0
    first_call_ms: dict[int, float] = field(default_factory=dict)  # shape index -> ms
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShapeResult:
    runner: int
    shape: Shape
    calls: int
    latency_ms: dict[str, float]
    throughput_ips: float
    split_ms: dict[str, float] | None
    output_shape: list[int]
    argmax_agreement_vs_baseline: float | None  # fraction 0..1; None for the baseline itself

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "batch": self.shape[0],
            "calls": self.calls,
            "latency_ms": self.latency_ms,
            "throughput_ips": self.throughput_ips,
            "split_ms": self.split_ms,
            "output_shape": self.output_shape,
            "argmax_agreement_vs_baseline": self.argmax_agreement_vs_baseline,
        }


@dataclass
class Measurement:
    records: list[RunnerRecord]
    results: list[ShapeResult]
    rounds: dict[int, int]  # shape index -> timed rounds
    seconds: dict[int, float]  # shape index -> wall time of the timed phase
    call_log: list[tuple[int, int]]
    device_memory: bool


def _median_split(splits: list[dict[str, float]]) -> dict[str, float] | None:
    if not splits:
        return None
    return {k: float(np.median([s[k] for s in splits])) for k in _SPLIT_KEYS}


def _agreement(out: np.ndarray, base: np.ndarray) -> float | None:
    if out.shape != base.shape:
        return None
    return float(np.mean(out.argmax(axis=1) == base.argmax(axis=1)))


def _is_cuda(r: Runner) -> bool:
    if r.kind == "tensorrt":
        return True
    dev = str(r.describe().get("device") or "")
    return dev.startswith("cuda") or dev == "tensorrt"


def measure(
    runners: Sequence[Runner],
    shapes: Sequence[Shape],
    options: MeasureOptions,
    progress: Progress | Callable[[str], None] | None = None,
    on_open: Callable[[int, Runner], None] | None = None,
) -> Measurement:
    """Run the two phases (see module docstring). Closes every runner before returning or raising."""
    if not runners:
        raise UsageError("nothing to measure: no runners; pass at least one Runner")
    if not shapes:
        raise UsageError("nothing to measure: no input shapes; pass at least one NCHW shape")
    progress = as_progress(progress)
    rng = np.random.default_rng(options.seed)
    inputs = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    device = any(_is_cuda(r) for r in runners) and init_device_probe()
    m = Measurement([RunnerRecord() for _ in runners], [], {}, {}, [], bool(device))
    try:
        for i, r in enumerate(runners):  # phase 1: load + warm up each runner alone
            progress.step(f"loading {i + 1}/{len(runners)}: {r.name}")
            m.records[i] = _load(i, r, inputs, options, bool(device), on_open)
        for si, x in enumerate(inputs):  # phase 2: interleaved timing per shape
            _time_shape(m, si, tuple(shapes[si]), x, runners, options, progress)
    finally:
        for r in runners:
            r.close()
    return m


def _load(i: int, r: Runner, inputs: list[np.ndarray], options: MeasureOptions, device: bool,
          on_open: Callable[[int, Runner], None] | None) -> RunnerRecord:
    """Open runner ``i`` and warm it up at every shape, alone, inside a peak sampler (phase 1)."""
    rec = RunnerRecord()
    with PeakSampler(device=device) as s:
        t0 = time.perf_counter()
        r.open()
        rec.open_s = time.perf_counter() - t0
        if on_open is not None:
            on_open(i, r)
        rss_open = rss_bytes()
        for si, x in enumerate(inputs):
            t0 = time.perf_counter()
            r.infer(x)
            rec.first_call_ms[si] = (time.perf_counter() - t0) * 1e3
            for _ in range(options.warmup - 1):
                r.infer(x)
    rec.describe = r.describe()
    rec.memory = {
        "open_rss_growth_bytes": None if rss_open is None or s.rss0 is None else rss_open - s.rss0,
        "peak_rss_growth_bytes": s.peak_rss_growth,
        "retained_rss_growth_bytes": s.rss_growth,
        "peak_device_growth_bytes": s.peak_device_growth,
        "retained_device_growth_bytes": s.device_growth,
    }
    r.timings.clear()
    return rec


def _time_shape(m: Measurement, si: int, shape: Shape, x: np.ndarray, runners: Sequence[Runner],
                options: MeasureOptions, progress: Progress) -> None:
    """Phase 2 at one shape: an untimed round (the outputs to compare), then the timed rounds; results into ``m``."""
    outs = [r.infer(x) for r in runners]
    timed: list[list[float]] = [[] for _ in runners]
    splits: list[list[dict[str, float]]] = [[] for _ in runners]
    t_start = time.perf_counter()
    with progress.task(f"timing {'x'.join(map(str, shape))}", options.iters, unit="round") as task:
        k = _timed_rounds(si, x, runners, options, task, timed, splits, m.call_log)
    m.rounds[si] = k
    m.seconds[si] = time.perf_counter() - t_start
    for i in range(len(runners)):
        times = timed[i]
        m.results.append(ShapeResult(
            runner=i, shape=shape, calls=len(times), latency_ms=latency_stats(times),
            throughput_ips=float(shape[0] * len(times) / sum(times)) if sum(times) > 0 else float("inf"),
            split_ms=_median_split(splits[i]) if len(splits[i]) == len(times) else None,
            output_shape=list(outs[i].shape),
            argmax_agreement_vs_baseline=None if i == 0 else _agreement(outs[i], outs[0]),
        ))


def _timed_rounds(si: int, x: np.ndarray, runners: Sequence[Runner], options: MeasureOptions, task: Task,
                  timed: list[list[float]], splits: list[list[dict[str, float]]],
                  call_log: list[tuple[int, int]]) -> int:
    """The rotating round-robin (see the module docstring); returns the number of rounds. ``task`` counts them
    (with an ETA under ``--iters``)."""
    n = len(runners)
    switching = n > 1
    t_start = time.perf_counter()
    k = 0
    while True:
        for i in rotation(n, k):
            r = runners[i]
            if switching:
                time.sleep(options.switch_gap_s)  # the previous runner's spinning threads go to sleep
                for _ in range(options.settle_calls):
                    r.infer(x)  # untimed: this runner's own threads and caches hot again
            r.infer(x)
            timed[i].append(r.timings[-1])
            call_log.append((si, i))
            sp = read_split(r)
            if sp is not None:
                splits[i].append(sp)
        k += 1
        task.update(k)
        if options.iters is not None and k >= options.iters:
            return k
        if options.seconds is not None and time.perf_counter() - t_start >= options.seconds and k >= options.min_iters:
            return k


__all__ = ["MeasureOptions", "Measurement", "RunnerRecord", "ShapeResult", "device_used_bytes", "latency_stats",
           "measure", "read_split", "rotation"]

"""`segdeploy bench`: latency and throughput of every runner side by side, in one process.

Python API::

    from segdeploy.bench import BenchOptions, run_bench, format_report
    doc = run_bench(["examples/shapes_unet.pt2", "out/shapes"], BenchOptions(shapes=("1x3x128x128",), threads=2))
    print(format_report(doc))

Modules (one job each):

* :mod:`~segdeploy.bench.targets` -- artifacts (model files, .onnx, engines, export directories) -> targets
  (artifact, runner, precision, shape profile) and their runners;
* :mod:`~segdeploy.bench.compiled` -- the torch.compile runner;
* :mod:`~segdeploy.bench.memory` -- RSS / device-memory probes and the peak sampler;
* :mod:`~segdeploy.bench.measure` -- loading each target alone (memory, first call), then interleaved timing
  (rotating round-robin), percentiles, throughput, H2D/compute/D2H split where a runner tells;
* :mod:`~segdeploy.bench.report` -- the ``segdeploy.bench`` JSON document (docs/bench.md) and the tables;
* :mod:`~segdeploy.bench.run` -- the stage function :func:`run_bench`;
* :mod:`~segdeploy.bench.cli` -- the click command.

Imports are lazy: importing this package loads neither torch nor onnxruntime.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchOptions", "format_report", "run_bench", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("BenchOptions", "run_bench"):
        from segdeploy.bench import run

        return getattr(run, name)
    if name in ("format_report", "write_report"):
        from segdeploy.bench import report

        return getattr(report, name)
    raise AttributeError(name)

"""`segdeploy bench`: parse options, call :func:`segdeploy.bench.run.run_bench`, print, write the report.

Output: the tables on stdout (or the JSON document with ``--json``); ``--report FILE`` writes the JSON
document atomically; progress lines go to stderr (``-q`` silences them). Errors are one line (exit 1; 2
for usage errors and shapes outside a profile).
"""

from __future__ import annotations

import shlex
import sys

import click

from segdeploy.bench.targets import RUNNERS
from segdeploy.vocab import OrtLevel


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--runner", "runners", multiple=True, metavar="NAME",
              help=f"Runner(s) to use (repeat): {', '.join(RUNNERS)}. Default: torch for model files, ort-cpu for "
                   ".onnx (+ the CUDA variants where a GPU is usable), tensorrt for engines.")
@click.option("--shape", "shapes", multiple=True, metavar="NxCxHxW",
              help="Input shape (repeat for several). Default: the opt shape of the manifest beside an artifact.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed calls per target and shape.")
@click.option("--iters", type=int, default=None, help="Timed rounds per shape (default 20 unless --seconds).")
@click.option("--seconds", type=float, default=None, help="Time budget per shape instead of --iters.")
@click.option("--threads", type=int, default=None,
              help="Intra-op threads for ONNX Runtime and torch (default: the libraries' own).")
@click.option("--ort-opt-level", default=OrtLevel.ALL.value, show_default=True, metavar="LEVEL",
              help=f"ONNX Runtime graph optimisation level: {', '.join(OrtLevel.values())} (disable: Q/DQ emulated in float).")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled model file (runs its code).")
@click.option("--plugins", "plugin_library", type=click.Path(dir_okay=False), default=None,
              help="TensorRT plugin library for engines that need it (default: $SEGDEPLOY_PLUGINS, then the "
                   "`segdeploy plugins build` output).")
@click.option("--switch-gap-ms", type=float, default=50.0, show_default=True,
              help="Pause before each target's turn, so other runtimes' spinning threads go idle (0: none).")
@click.option("--settle-calls", type=int, default=1, show_default=True,
              help="Untimed calls of a target right before each timed call (its own threads hot again).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the tables.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON document to FILE.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def bench_command(artifacts, runners, shapes, warmup, iters, seconds, threads, ort_opt_level, trust_pickle,
                  plugin_library, switch_gap_ms, settle_calls, seed, as_json, report_path, quiet):
    """Latency and throughput of model files, ONNX files, engines or export directories, side by side.

    Targets run interleaved in one process (rotating round-robin), so ratios are fair on a busy machine.
    The first ARTIFACT's first runner is the baseline of every ratio.
    Exit codes: 0 ok, 1 error, 2 usage error.
    """
    from segdeploy.bench.report import format_report, write_report
    from segdeploy.bench.run import BenchOptions, run_bench
    from segdeploy.errors import SegdeployError, UsageError
    from segdeploy.progress import Progress

    if iters is not None and seconds is not None:
        raise UsageError("--iters and --seconds were both given; give either --iters N or --seconds S")
    opts = BenchOptions(runners=tuple(runners), shapes=tuple(shapes), warmup=warmup,
                        iters=(20 if iters is None else iters) if seconds is None else None, seconds=seconds,
                        threads=threads, ort_opt_level=ort_opt_level, trust_pickle=trust_pickle,
                        plugin_library=plugin_library, seed=seed, switch_gap_ms=switch_gap_ms,
                        settle_calls=settle_calls)
    command = "segdeploy " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    try:
        if report_path:
            from segdeploy.exportdir import guard_outputs

            guard_outputs([("--report", report_path)], [("the artifact", a) for a in artifacts])
        doc = run_bench(list(artifacts), opts, progress=Progress(not quiet), command=command)
    except SegdeployError as e:
        if as_json:
            from segdeploy.result import echo_json, result_doc

            echo_json(result_doc("bench", error=e))
        raise
    if report_path:
        write_report(report_path, doc)
    if as_json:
        from segdeploy.result import echo_json, result_doc

        echo_json(result_doc("bench", stages={"bench": doc}))
    else:
        click.echo(format_report(doc))
        if report_path:
            click.echo(f"report: {report_path}")

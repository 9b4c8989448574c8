"""The `segdeploy` command line: a thin click group.

Each command lives beside its stage (``segdeploy/<stage>/cli.py``) and is imported lazily, only when
invoked, so `segdeploy --help` stays fast and an optional stage's heavy imports never slow another.
Commands parse options, call the stage's Python API, print, and let :func:`main` map
:class:`~segdeploy.errors.SegdeployError` to its exit code with a one-line message (no traceback).
"""

from __future__ import annotations

import importlib
import sys

import click

from segdeploy import __version__
from segdeploy.errors import EXIT_ERROR, EXIT_USAGE, SegdeployError

# command name -> "module:attribute" of a click.Command. One line per command.
COMMANDS: dict[str, str] = {
    "export": "segdeploy.export.cli:export_command",
    "precision": "segdeploy.precision.cli:precision_command",
    "check": "segdeploy.parity.cli:check_command",
    "merge": "segdeploy.parity.cli:merge_command",
    "plugins": "segdeploy.plugins.cli:plugins",
    "calibrate": "segdeploy.calibration.cli:calibrate_command",
    "build": "segdeploy.build.cli:build_command",
    "inspect": "segdeploy.trt.cli:inspect_command",
    "doctor": "segdeploy.doctor.cli:doctor_command",
    "bench": "segdeploy.bench.cli:bench_command",
    "bundle": "segdeploy.bundle.cli:bundle_command",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segdeploy")
def cli() -> None:
    """PyTorch segmentation model -> verified ONNX -> TensorRT engine, with an accuracy gate.

    Exit codes: 0 ok, 1 error, 2 usage error, 3 accuracy gate tripped.
    """


# options that were renamed: (command, old option) -> what to use now
RENAMED = {
    ("check", "--out"): "check writes its JSON report with --report FILE",
    ("merge", "--out"): "merge writes its JSON report with --report FILE",
    ("check", "--no-progress"): "use -q/--quiet",
    ("calibrate", "--out"): "calibrate writes into EXPORT_DIR itself",
    ("calibrate", "--manifest"): "calibrate reads EXPORT_DIR/manifest.json",
}


def usage_line(e: click.ClickException) -> str:
    """Click's usage error as one line: ``<message>; see 'segdeploy CMD --help'``."""
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.NoSuchOption) and ctx is not None:
        hint = RENAMED.get((ctx.info_name, e.option_name))
        if hint:
            return f"no such option {e.option_name!r}; {hint}"
    msg = " ".join(e.format_message().split()).rstrip(".")
    msg = msg[:1].lower() + msg[1:]
    where = ctx.command_path if ctx is not None and ctx.command_path else "segdeploy"
    return f"{msg}; see '{where} --help'"


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised (like KeyboardInterrupt) so every ``finally`` (staging cleanup, locks) runs."""

    def __init__(self, how: str):
        super().__init__(how)
        self.how = how


def _on_signal(signum, frame):  # noqa: ARG001
    import signal

    raise Interrupted("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes (one ``error:`` line each). Returns the exit code.

    Ctrl-C and SIGTERM unwind normally (staging directories removed, nothing published) and exit 1.
    """
    import signal
    import threading

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        cli.main(args=argv, prog_name="segdeploy", standalone_mode=False)
    except SegdeployError as e:
        click.echo(f"error: {e.message}", err=True)
        return e.exit_code
    except click.exceptions.Abort:  # click turns KeyboardInterrupt into Abort
        click.echo("error: interrupted (Ctrl-C); nothing was published", err=True)
        return EXIT_ERROR
    except click.ClickException as e:
        if isinstance(e, click.UsageError):
            click.echo(f"error: {usage_line(e)}", err=True)
            return EXIT_USAGE
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        return EXIT_ERROR
    except click.exceptions.Exit as e:
        return e.exit_code
    except (KeyboardInterrupt, Interrupted) as e:
        how = e.how if isinstance(e, Interrupted) else "Ctrl-C"
        click.echo(f"error: interrupted ({how}); nothing was published", err=True)
        return EXIT_ERROR
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run() -> None:  # console-script entry
    sys.exit(main())


if __name__ == "__main__":
    run()

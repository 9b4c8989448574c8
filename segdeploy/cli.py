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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes. Returns the exit code."""
    try:
        cli.main(args=argv, prog_name="segdeploy", standalone_mode=False)
    except SegdeployError as e:
        click.echo(f"error: {e.message}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_ERROR
    except click.ClickException as e:
        e.show()
        return EXIT_USAGE if isinstance(e, click.UsageError) else EXIT_ERROR
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return EXIT_ERROR
    return 0


def run() -> None:  # console-script entry
    sys.exit(main())


if __name__ == "__main__":
    run()

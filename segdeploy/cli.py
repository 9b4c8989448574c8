"""The `segdeploy` command line: a thin click group.

Each command lives beside its stage (``segdeploy/<stage>/cli.py``) and is imported lazily, only when
invoked, so `segdeploy --help` stays fast and an optional stage's heavy imports never slow another.
Commands parse options, call the stage's Python API, print, and let :func:`main` map
:class:`~segdeploy.errors.SegdeployError` to its exit code with a one-line message (no traceback).

Contract of :func:`main`: exactly one ``error: <line>`` on stderr for every failure (click usage errors
included, exit 2); with ``--json`` the :mod:`segdeploy.result` document is the only thing on stdout, for
successes, failures and usage errors alike; library warnings are summarised, never dumped raw.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings

import click

from segdeploy import __version__
from segdeploy.errors import EXIT_ERROR, EXIT_USAGE, SegdeployError, UsageError
from segdeploy.result import DocumentChannel, print_document, result_doc

# command name -> "module:attribute" of a click.Command. One line per command.
COMMANDS: dict[str, str] = {
    "export": "segdeploy.pipeline.cli:export_command",
    "precision": "segdeploy.precision.cli:precision_command",
    "check": "segdeploy.parity.cli:check_command",
    "merge": "segdeploy.parity.cli:merge_command",
    "plugins": "segdeploy.plugins.cli:plugins",
    "calibrate": "segdeploy.calibration.cli:calibrate_command",
    "build": "segdeploy.engine.cli:build_command",
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


def _command_name(args: list[str], ctx: click.Context | None = None) -> str | None:
    """The (sub)command the arguments name ("check", "plugins build"), or None when none is recognised."""
    if ctx is not None and ctx.command_path:
        path = ctx.command_path.split()[1:]
        if path:
            return " ".join(path)
    words = [a for a in args if not a.startswith("-")]  # the group itself takes no option values
    if not words or words[0] not in COMMANDS:
        return None
    return " ".join(words[:2]) if words[0] == "plugins" and len(words) > 1 else words[0]


MAX_WARNING_NOTES = 10


def warning_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """One note per distinct captured warning (category, first line of the message, where it came from)."""
    seen: dict[str, int] = {}
    for w in caught:
        first = (str(w.message).strip().splitlines() or [""])[0][:200]
        where = f"{os.path.basename(str(w.filename))}:{w.lineno}"
        note = f"warning: {w.category.__name__}: {first} ({where})"
        seen[note] = seen.get(note, 0) + 1
    notes = [n if k == 1 else f"{n} x{k}" for n, k in seen.items()]
    if len(notes) > MAX_WARNING_NOTES:
        notes = notes[:MAX_WARNING_NOTES] + [f"... and {len(notes) - MAX_WARNING_NOTES} more warnings"]
    return notes


@contextlib.contextmanager
def captured_warnings(into: list[warnings.WarningMessage]):
    """Record the warnings libraries emit while a command runs (the filters themselves are untouched and the
    previous warning machinery is restored on exit). When the user chose how warnings show (``-W`` or
    ``PYTHONWARNINGS``), they are left alone."""
    if sys.warnoptions:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            into.extend(caught)


def _warning_line(caught: list[warnings.WarningMessage]) -> str:
    first = warning_notes(caught)[0].removeprefix("warning: ")
    first = first if len(first) <= 120 else first[:117] + "..."
    return (f"note: {len(caught)} warning(s) raised while the command ran were not shown (first: {first}); "
            "set PYTHONWARNINGS=default to see them")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes (one ``error:`` line each). Returns the exit code.

    With ``--json`` among the arguments, stdout carries the :mod:`segdeploy.result` document and nothing else
    (also for usage errors and failures; see :class:`segdeploy.result.DocumentChannel`). Warnings that
    libraries emit while the command runs are summarised: in the document's ``notes`` and in one ``note:``
    line on stderr after the output (see :func:`captured_warnings`). Ctrl-C and SIGTERM unwind normally
    (staging directories removed, nothing published) and exit 1.
    """
    import signal
    import threading

    args = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    channel = DocumentChannel() if as_json else None
    caught: list[warnings.WarningMessage] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    code, failure, command = 0, None, _command_name(args)
    try:
        with contextlib.ExitStack() as stack:
            if channel is not None:
                stack.enter_context(channel)
            stack.enter_context(captured_warnings(caught))
            cli.main(args=args, prog_name="segdeploy", standalone_mode=False)
    except SegdeployError as e:
        code, failure = e.exit_code, e
    except click.exceptions.Abort:  # click turns KeyboardInterrupt into Abort
        code, failure = EXIT_ERROR, SegdeployError("interrupted (Ctrl-C); nothing was published")
    except click.ClickException as e:
        if isinstance(e, click.UsageError):
            command = _command_name(args, getattr(e, "ctx", None))
            code, failure = EXIT_USAGE, UsageError(usage_line(e))
        else:
            code, failure = EXIT_ERROR, SegdeployError(" ".join(e.format_message().split()))
    except click.exceptions.Exit as e:
        code = e.exit_code
    except (KeyboardInterrupt, Interrupted) as e:
        how = e.how if isinstance(e, Interrupted) else "Ctrl-C"
        code, failure = EXIT_ERROR, SegdeployError(f"interrupted ({how}); nothing was published")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _report(channel, command, failure, caught)
    return code


def _report(channel: DocumentChannel | None, command: str | None, failure: SegdeployError | None,
            caught: list[warnings.WarningMessage]) -> None:
    """After the command: the JSON document on stdout (with --json), the error line, the warnings note."""
    if channel is not None:
        doc = channel.document
        if doc is None and failure is not None:
            doc = result_doc(command, error=failure)
        if doc is not None:
            doc["notes"] = list(doc.get("notes") or []) + warning_notes(caught)
            print_document(doc)
    if failure is not None:
        click.echo(f"error: {failure.message}", err=True)
    if caught:
        click.echo(_warning_line(caught), err=True)


def run() -> None:  # console-script entry
    sys.exit(main())


if __name__ == "__main__":
    run()

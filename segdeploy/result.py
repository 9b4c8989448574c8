"""The one JSON result document every command prints with ``--json`` (schema ``segdeploy.result`` v1).

::

    {"schema": "segdeploy.result", "schema_version": 1,
     "command": "export",                 # the subcommand
     "ok": true, "exit_code": 0,          # 0 ok, 1 error, 2 usage, 3 accuracy gate tripped
     "error": null,                       # or {"type": "GateError", "message": "<the one-line error>"}
     "export_dir": "out/unet",            # the directory the command published (null when none)
     "published": true,                   # whether this run changed it (false on any failure)
     "files": {"model.onnx": {"kind": ..., "sha256": ..., "bytes": ...}, ...},   # the published file table
     "stages": {"export": {...}, "precision": {...}, "build": {...}, "check": {...}},  # what each stage reported
     "notes": ["..."]}

A failed or gated run prints the same document with ``ok: false`` and whatever the stages measured before
they stopped (e.g. the precision accuracy that tripped the gate), then exits with the code.

Contract (the document always, and nothing else on stdout)
---------------------------------------------------------
:class:`DocumentChannel` is entered by :func:`segdeploy.cli.main` whenever ``--json`` is among the
arguments. While it is open, stdout is stderr: ``sys.stdout`` *and* file descriptor 1 (``dup2``, so C
libraries and child processes are redirected too), so a model factory's ``print``, a library's progress
text or a subprocess cannot corrupt the document. :func:`echo_json` inside it only *holds* the document;
the entry point closes the channel (restoring fd 1 and ``sys.stdout``) and prints the held document -- or,
when the command failed before making one (a click usage error, an unreadable shard), the document
:func:`result_doc` builds from the error, with ``command`` null when no command was recognised -- as the
only thing on stdout. Outside a channel (the Python API, tests calling commands directly) :func:`echo_json`
prints at once.

Stages
------
Every stage's result satisfies :class:`StageResult`: ``summary()`` is its entry under ``stages`` and ``notes``
the lines it wants shown (see the stage contract in :mod:`segdeploy.pipeline`).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any, Protocol

import click

from segdeploy.errors import EXIT_ERROR, SegdeployError

SCHEMA = "segdeploy.result"
SCHEMA_VERSION = 1


class StageResult(Protocol):
    """What every stage returns (export, calibrate, precision, build): its document entry and its notes."""

    notes: list[str]

    def summary(self) -> dict[str, Any]: ...


def result_doc(command: str | None, *, stages: dict[str, Any] | None = None, export_dir: Any = None, published: bool = False,
               files: dict[str, Any] | None = None, notes: list[str] | None = None,
               error: BaseException | None = None) -> dict[str, Any]:
    if error is None:
        code, err = 0, None
    elif isinstance(error, SegdeployError):
        code, err = error.exit_code, {"type": type(error).__name__, "message": error.message}
    else:
        code, err = EXIT_ERROR, {"type": type(error).__name__, "message": str(error) or type(error).__name__}
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "command": command, "ok": code == 0, "exit_code": code,
        "error": err, "export_dir": None if export_dir is None else str(export_dir), "published": bool(published),
        "files": files, "stages": stages or {}, "notes": list(notes or []),
    }


def echo_json(doc: dict[str, Any]) -> None:
    """Print the result document on stdout -- or, inside a :class:`DocumentChannel`, hand it to the channel."""
    if DocumentChannel.current is not None:
        DocumentChannel.current.document = doc
        return
    print_document(doc)


def print_document(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):  # None (no console), closed, or a broken pipe
        pass


def _flush_c_stdio() -> None:
    """Flush C ``stdio`` buffers (a C extension's ``printf``) before fd 1 is switched; best effort."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


class DocumentChannel:
    """Context manager: stdout (``sys.stdout`` and fd 1) goes to stderr while open; see the module docstring.

    ``document`` is what :func:`echo_json` was given (None when nothing was). Not reentrant; one per process.
    """

    current: "DocumentChannel | None" = None

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None
        self._stdout = None
        self._fd: int | None = None

    def __enter__(self) -> "DocumentChannel":
        self._stdout = sys.stdout
        _flush(self._stdout)
        _flush_c_stdio()
        try:
            self._fd = os.dup(1)
        except OSError:  # fd 1 closed: only the Python-level switch is possible
            self._fd = None
        else:
            try:
                os.dup2(2, 1)
            except OSError:  # fd 2 closed
                os.close(self._fd)
                self._fd = None
        sys.stdout = sys.stderr
        DocumentChannel.current = self
        return self

    def __exit__(self, *exc: Any) -> None:
        DocumentChannel.current = None
        _flush(sys.stdout)
        _flush(self._stdout)  # what a library wrote through a saved reference: still to stderr
        _flush_c_stdio()
        if self._fd is not None:
            os.dup2(self._fd, 1)
            os.close(self._fd)
            self._fd = None
        sys.stdout = self._stdout

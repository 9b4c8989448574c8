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
"""

from __future__ import annotations

import json
from typing import Any

import click

from segdeploy.errors import EXIT_ERROR, SegdeployError

SCHEMA = "segdeploy.result"
SCHEMA_VERSION = 1


def result_doc(command: str, *, stages: dict[str, Any] | None = None, export_dir: Any = None, published: bool = False,
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
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))

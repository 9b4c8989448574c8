"""``segdeploy inspect PATH``: what any segdeploy artifact is, read without running it.

Contract
--------
* :func:`inspect_path` decides what ``PATH`` is from its contents (never its extension) and returns the JSON-able
  report of the matching module, each with ``file`` and ``kind``:

  - an export directory (a directory holding ``manifest.json``): :mod:`.export_dir` (``kind: export-dir``);
  - an ONNX model: :mod:`.onnx_model` (``kind: onnx``);
  - a ``.pt2`` / TorchScript / ``torch.save`` file: :mod:`.torch_file` (``kind: pytorch``; nothing unpickled);
  - a TensorRT engine: :mod:`.engine` (``kind: tensorrt-plan``).

* Bad inputs are one :class:`~segdeploy.errors.ArtifactError` line (exit 1), decided before anything is read:
  a missing path, a symbolic-link loop, a FIFO, socket or device (refused, never opened for reading, so never
  waited on), a directory that is not an export directory, a file of another kind (named by
  :func:`segdeploy.trt.plan.identify_file`), a truncated or corrupt file. A link the user names is followed
  (they chose it); the file it reaches must be regular.
* :func:`render_text` renders any report for a terminal.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from segdeploy import safefs
from segdeploy.errors import ArtifactError
from segdeploy.vocab import MANIFEST

WHAT_INSPECT_TAKES = "pass an export directory, an ONNX model, a .pt/.pt2/TorchScript file or a TensorRT engine"
READ_LIMIT = 4 << 30  # an ONNX model is at most 2 GiB (protobuf); a .pt2 beyond this is not read into memory


_OTHER_KINDS = {"empty": "empty", "json": "a JSON document", "calibration-cache": "a TensorRT calibration cache",
                "unknown": "of unknown content"}  # identify_file kinds; the others' detail names the fix


class NotInspectable(ArtifactError):
    """PATH is a file of a kind ``inspect`` does not report on; ``description`` is what it is (JSON-able)."""

    def __init__(self, message: str, description: dict[str, Any]):
        super().__init__(message)
        self.description = description


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)  # follows links: the user named this path
    except FileNotFoundError:
        dangling = os.path.islink(path)
        raise ArtifactError(f"{path} {'is a link to a missing file' if dangling else 'not found'}; check the path") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ArtifactError(f"{path} is a symbolic link loop; point it at a file ({WHAT_INSPECT_TAKES})") from None
        raise ArtifactError(f"cannot read {path}: {e.strerror or e}; check its permissions") from None


def _read(path: Path) -> bytes:
    try:
        return safefs.read_file(path, fix=WHAT_INSPECT_TAKES, follow=True, limit=READ_LIMIT)
    except FileNotFoundError:
        raise ArtifactError(f"{path} disappeared while it was read; check the path") from None


def what_is(path: Path) -> str:
    """``export-dir``, ``onnx``, ``pytorch`` or ``tensorrt-plan`` for ``path``; ArtifactError for anything else."""
    st = _stat(path)
    if stat.S_ISDIR(st.st_mode):
        if os.path.lexists(path / MANIFEST):
            return "export-dir"
        raise ArtifactError(f"{path} is a directory without a {MANIFEST}, not an export directory; {WHAT_INSPECT_TAKES}")
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{path} is {safefs.kind_of(st.st_mode)}, not a regular file; {WHAT_INSPECT_TAKES}")
    from segdeploy.trt.plan import identify_file

    ident = identify_file(path)
    kind = ident["kind"]
    if kind in ("tensorrt-plan", "tensorrt-plan-unknown-layout"):
        return "tensorrt-plan"
    if kind == "onnx":
        return "onnx"
    if kind in ("zip", "pickle"):
        return "pytorch"
    what = _OTHER_KINDS.get(kind)
    message = (f"{path} is {what}, not an artifact segdeploy inspects; {WHAT_INSPECT_TAKES}" if what else
               f"{path} is not an artifact segdeploy inspects: {ident['detail']}")
    raise NotInspectable(message, {"file": str(path), **ident})


def inspect_path(path: str | os.PathLike) -> dict[str, Any]:
    """The report for ``path`` (see the module docstring). Raises ArtifactError (one line)."""
    p = Path(path)
    kind = what_is(p)
    if kind == "export-dir":
        from segdeploy.inspect.export_dir import inspect_export_dir

        return inspect_export_dir(p)
    if kind == "tensorrt-plan":
        from segdeploy.inspect.engine import inspect_engine

        return inspect_engine(p)
    data = _read(p)
    if kind == "onnx":
        from segdeploy.inspect.onnx_model import inspect_onnx

        return inspect_onnx(p, data)
    from segdeploy.inspect.torch_file import inspect_torch_file

    return inspect_torch_file(p, data)


def render_text(report: dict[str, Any]) -> str:
    """Terminal lines for any report :func:`inspect_path` returned."""
    kind = report["kind"]
    if kind == "export-dir":
        from segdeploy.inspect.export_dir import export_dir_text as text
    elif kind == "onnx":
        from segdeploy.inspect.onnx_model import onnx_text as text
    elif kind == "pytorch":
        from segdeploy.inspect.torch_file import torch_text as text
    else:
        from segdeploy.inspect.engine import engine_text as text
    return text(report)


__all__ = ["NotInspectable", "WHAT_INSPECT_TAKES", "inspect_path", "render_text", "what_is"]

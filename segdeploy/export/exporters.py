"""The two PyTorch -> ONNX exporters, behind one signature.

``export_with(name, module, profile, path, opset)`` writes an ONNX file with input ``input`` and output
``logits``, dynamic on the profile's dynamic axes, or raises :class:`ExporterFailed` with a one-line reason.
Neither exporter is a superset of the other (see shared/notes/export.md): the TorchScript exporter is
several times faster where it works; the dynamo exporter handles ``torch.export`` programs and some
data-dependent ops (e.g. max_unpool) the tracer refuses.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from segdeploy.spec import ShapeProfile
from segdeploy.vocab import INPUT_NAME, OUTPUT_NAME

EXPORTERS = ("torchscript", "dynamo")


class ExporterFailed(Exception):
    """An exporter could not produce a graph; str() is a one-line reason."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in ')
SUMMARY_HEADER = "## Exception summary"  # torch.onnx's section holding the root cause under its headline


def _middle_cut(text: str, limit: int) -> str:
    """``text`` cut in the middle to ``limit`` characters (both ends of a long symbolic shape stay readable)."""
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3
    return f"{text[:head]} ... {text[len(text) - (limit - 5 - head):]}"


def _root_cause(lines: list[str]) -> str | None:
    """torch.onnx's real cause: the first line under "## Exception summary", with the model's source line that
    raised it (the last frame of "Original traceback"), e.g. "ValueError: Cannot view ... (modeling_swin.py:465)"."""
    if SUMMARY_HEADER not in lines:
        return None
    rest = lines[lines.index(SUMMARY_HEADER) + 1:]
    if not rest:
        return None
    cause = re.sub(r"^<class '(?:\w+\.)*(\w+)'>:", r"\1:", rest[0])
    frames = [m for m in (_FRAME.search(l) for l in rest) if m]
    where = f" ({Path(frames[-1].group(1)).name}:{frames[-1].group(2)})" if frames else ""
    return _middle_cut(cause, 220) + where


def _one_line(e: BaseException, limit: int = 300) -> str:
    lines = [_ANSI.sub("", l).strip() for l in str(e).splitlines()]
    lines = [l for l in lines if l]
    msg = lines[0] if lines else type(e).__name__
    cause = _root_cause(lines)
    if cause is not None:  # the headline's first sentence, then the cause (which gets the room)
        head = f"{type(e).__name__}: {msg.split('. ')[0]}"
        return _middle_cut(f"{head}; cause: {cause}", limit + 120)
    # torch often puts the useful part on a later line
    for l in lines[1:4]:
        if len(msg) < 80:
            msg += " | " + l
    msg = f"{type(e).__name__}: {msg}"
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def example_input(profile: ShapeProfile, dynamic_batch_min2: bool) -> torch.Tensor:
    """The tracing input: opt H/W; batch 2 where batch is dynamic for dynamo (avoids 0/1 specialisation)."""
    n, c, h, w = profile.opt
    if dynamic_batch_min2 and profile.min[0] != profile.max[0] and n == 1:
        n = 2 if profile.max[0] >= 2 else 1
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(1234))


def _export_torchscript(module, profile: ShapeProfile, path: Path, opset: int) -> None:
    x = example_input(profile, False)
    axes = {}
    names = {0: "batch", 2: "height", 3: "width"}
    for a in (0, 2, 3):
        if profile.min[a] != profile.max[a]:
            axes[a] = names[a]
    try:
        module.eval()  # the tracer toggles train/eval; a torch.export program's module() refuses that
    except Exception as e:
        raise ExporterFailed(f"the TorchScript exporter cannot trace this module ({_one_line(e, 120)})") from None
    torch.onnx.export(
        module,
        (x,),
        str(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: dict(axes), OUTPUT_NAME: {0: "batch"} if 0 in axes else {}},
        opset_version=opset,
        do_constant_folding=True,
    )


def _export_dynamo(module, profile: ShapeProfile, path: Path, opset: int) -> None:
    from torch.export import Dim

    x = example_input(profile, True)
    m = profile.spatial_multiple
    spec = {}
    if profile.min[0] != profile.max[0]:
        spec[0] = Dim("batch", min=profile.min[0], max=profile.max[0])
    for a, label in ((2, "height"), (3, "width")):
        if profile.min[a] != profile.max[a]:
            if m > 1:
                spec[a] = m * Dim(f"{label}_div{m}", min=profile.min[a] // m, max=profile.max[a] // m)
            else:
                spec[a] = Dim(label, min=profile.min[a], max=profile.max[a])
    prog = torch.onnx.export(
        module,
        (x,),
        None,
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=(spec,),
        opset_version=opset,
        verbose=False,
        optimize=True,
    )
    if prog is None:
        raise ExporterFailed("the dynamo exporter returned no program")
    prog.save(str(path), external_data=False)


@contextlib.contextmanager
def _captured_output():
    """Capture Python- and C++-level stdout/stderr (the exporters print graph dumps and progress there).

    The file descriptors are restored on exit; the captured text is yielded as a list with one string.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    result = [""]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), write_through=True)) as o, \
                    contextlib.redirect_stderr(o):
                yield result
                o.flush()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            result[0] = tmp.read().decode("utf-8", "replace")


def export_with(name: str, module, profile: ShapeProfile, path: Path, opset: int) -> str:
    """Run exporter ``name``; return captured exporter chatter. Raises ExporterFailed with the reason."""
    fn = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}[name]
    try:
        with warnings.catch_warnings(), _captured_output() as captured:
            warnings.simplefilter("ignore")
            fn(module, profile, path, opset)
    except ExporterFailed:
        raise
    except OSError as e:
        import errno

        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):  # the machine, not the exporter
            from segdeploy.errors import ArtifactError

            raise ArtifactError(f"cannot write the exported graph to {path.parent}: {e.strerror}; free space and re-run "
                                "(nothing was published)") from None
        raise ExporterFailed(_one_line(e)) from None
    except Exception as e:
        raise ExporterFailed(_one_line(e)) from None
    if not path.exists() or path.stat().st_size == 0:
        raise ExporterFailed("the exporter wrote no file")
    return captured[0]

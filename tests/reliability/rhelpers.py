"""Helpers of the reliability tests: run the real CLI in-process (``run``) or as a subprocess (``run_subprocess``:
signals, resource limits, concurrency) with ``rmodels`` importable as a factory module; snapshots; the
one-error-line assertion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

EXAMPLE = ROOT / "examples" / "shapes_unet.pt2"
CALIB = ROOT / "calibration" / "shapes" / "calib"


def run(capsys, *argv):
    """In-process CLI -> (exit code, stdout, stderr)."""
    from segdeploy.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def run_subprocess(*argv, timeout=600, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segdeploy", *[str(a) for a in argv]], capture_output=True, text=True,
                          env=env(), timeout=timeout, preexec_fn=preexec_fn)


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file in ``d`` (name -> bytes) plus the names of hidden siblings other than the lock."""
    files = {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}
    siblings = sorted(p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}.") and not p.name.endswith(".lock"))
    return {"files": files, "siblings": siblings}


def one_error_line(err: str) -> str:
    """The stderr of a failed command must be exactly one 'error: ...' line; return it."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    return errors[0]



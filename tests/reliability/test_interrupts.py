"""Ctrl-C, SIGTERM and SIGKILL in the middle of `export --int8`: the published directory stays byte-identical."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from rhelpers import CALIB, EXAMPLE, env, run_subprocess, snapshot

pytestmark = pytest.mark.slow


def _start(out):
    return subprocess.Popen([sys.executable, "-m", "segdeploy", "export", str(EXAMPLE), "--out", str(out), "--shape",
                             "1x3x128x128", "--int8", "--calib", str(CALIB), "--calib-size", "16",
                             "--calib-method", "percentile"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def _wait_for(proc, text, timeout=300):
    """Read progress lines until one contains ``text`` (the stage we want to interrupt has started)."""
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    proc.kill()
    raise AssertionError(f"never saw {text!r}: {''.join(seen)}")


@pytest.mark.parametrize("sig, stage", [(signal.SIGINT, "calibrate:"), (signal.SIGTERM, "check:"),
                                        (signal.SIGKILL, "check:")])
def test_interrupted_int8_leaves_the_previous_set(example_int8, tmp_path, sig, stage):
    out = tmp_path / "shapes"
    shutil.copytree(example_int8, out)
    before = snapshot(out)
    proc = _start(out)
    _wait_for(proc, stage)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    after = snapshot(out)
    assert after["files"] == before["files"]  # byte-identical published set
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        # the killed run's staging directory sits beside (never inside) the published directory ...
        assert all(n.startswith(".shapes.staging-") for n in after["siblings"])
        # ... and the next writer removes it
        r = run_subprocess("calibrate", out, "--calib", CALIB, "--calib-size", "4", "-q")
        assert r.returncode == 0, r.stderr
        assert snapshot(out)["siblings"] == []
    else:
        assert proc.returncode == 1
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert lines == [f"error: interrupted ({'Ctrl-C' if sig == signal.SIGINT else 'SIGTERM'}); nothing was published"]
        assert after["siblings"] == []  # cleaned up on the way out

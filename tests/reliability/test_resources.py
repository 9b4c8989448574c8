"""Disk full, huge shapes, memory: refused with one line, before any damage (subprocesses with real limits)."""

from __future__ import annotations

import resource
import shutil
import signal

import pytest

from rhelpers import CALIB, EXAMPLE, one_error_line, run, run_subprocess, snapshot


def _limit_file_size(nbytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def _limit_memory(nbytes):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    return apply


@pytest.mark.slow
def test_disk_full_during_export_int8(example_int8, tmp_path):
    """Writes above 3.37 MB fail (EFBIG, as on a full disk): the run stops with one line, nothing is published."""
    out = tmp_path / "shapes"
    shutil.copytree(example_int8, out)
    before = snapshot(out)
    r = run_subprocess("export", EXAMPLE, "--out", out, "--shape", "1x3x128x128", "--int8", "--calib", CALIB,
                       "--calib-size", "8", "-q", preexec_fn=_limit_file_size(3_370_000))
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and "nothing was published" in line and "File too large" in line, r.stderr
    assert snapshot(out) == before


def test_disk_full_on_a_fresh_directory(tmp_path):
    r = run_subprocess("export", "--model", "rmodels:tiny", "--out", tmp_path / "o", "--shape", "1x3x32x32",
                       "--max-batch", "2", "-q", preexec_fn=_limit_file_size(2000))
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and ("File too large" in line or "no space" in line), r.stderr
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".o.lock"]


@pytest.mark.parametrize("extra, option", [
    (["--max-shape", "1x3x100000x100000"], "--max-shape"),
    (["--shape", "100000x3x128x128"], "--shape"),
    (["--max-batch", "100000"], "--max-shape"),
])
def test_huge_shapes_are_refused_before_running(tmp_path, extra, option):
    """Under a 6 GB address-space limit: refused by the estimate (exit 2), never by a MemoryError traceback."""
    r = run_subprocess("export", "--model", "rmodels:tiny", "--out", tmp_path / "o", "-q", "--shape", "1x3x64x64",
                       *extra, preexec_fn=_limit_memory(6 << 30))
    line = one_error_line(r.stderr)
    assert r.returncode == 2, r.stderr
    assert option in line and "available" in line
    assert not (tmp_path / "o").exists()


def test_memory_estimate_is_measured_not_guessed():
    """The activation peak the guard scales is measured from the ops the model runs."""
    import torch

    import rmodels
    from segdeploy.export.resources import peak_activation_bytes

    m = rmodels.tiny()
    small = peak_activation_bytes(m, torch.zeros(1, 3, 64, 64))
    big = peak_activation_bytes(m, torch.zeros(1, 3, 128, 128))
    assert small > 3 * 64 * 64 * 4  # at least the input and the first activations
    assert 3.0 < big / small < 5.0  # activations scale with the pixel count


def test_nan_model_is_named(tmp_path, capsys):
    code, _, err = run(capsys, "export", "--model", "rmodels:nan_model", "--out", tmp_path / "o", "--shape", "1x3x32x32",
                       "-q")
    line = one_error_line(err)
    assert code == 1 and "outputs NaN/Inf" in line and "no exporter" not in line

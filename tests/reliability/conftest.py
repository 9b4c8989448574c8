"""Reliability tests: every class of bad input / fault gets one line, a documented exit code, and no damage.
Fixtures here; helpers in ``rhelpers``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from rhelpers import CALIB, EXAMPLE, run_subprocess  # noqa: E402


@pytest.fixture(scope="session")
def good_export(tmp_path_factory) -> Path:
    """A published export of rmodels:tiny (FP32 only), to copy and damage."""
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    import rmodels

    d = tmp_path_factory.mktemp("good") / "exp"
    export_model(rmodels.tiny(), d, ExportOptions(shape="1x3x32x32", max_batch=2))
    return d


@pytest.fixture(scope="session")
def example_int8(tmp_path_factory) -> Path:
    """The shipped example exported with --int8 --fp16 (the state a release pipeline publishes)."""
    d = tmp_path_factory.mktemp("ex") / "shapes"
    r = run_subprocess("export", EXAMPLE, "--out", d, "--shape", "1x3x128x128", "--int8", "--fp16", "--calib", CALIB,
                       "--calib-size", "16", "-q")
    assert r.returncode == 0, r.stderr
    return d

"""The package's lazy exports resolve, and importing it does not import onnxruntime."""

from __future__ import annotations

import subprocess
import sys


def test_exports_resolve():
    import importlib

    import segdeploy.calibration as c

    for name in c.__all__:
        # each lazy name is exactly the object of the module it is documented to come from
        assert getattr(c, name) is getattr(importlib.import_module(c._EXPORTS[name]), name)
    from segdeploy.vocab import CalibMethod

    assert callable(c.calibrate) and CalibMethod.values() == ("max", "percentile", "entropy", "mse", "auto")


def test_import_is_light():
    code = "import sys, segdeploy.calibration; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

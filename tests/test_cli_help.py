"""`segdeploy --help` and `segdeploy COMMAND --help` never import torch (or onnx/onnxruntime): help is instant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segdeploy.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt", "cv2")
PROBE = """
import contextlib, io, json, sys
from segdeploy.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "help": out.getvalue(), "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def help_of(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("command", [None, *sorted(COMMANDS), "plugins build"])
def test_help_does_not_import_heavy_libraries(command):
    res = help_of(*(command.split() if command else []), "--help")
    assert res["code"] == 0 and "Usage: segdeploy" in res["help"]
    assert res["heavy"] == [], f"`segdeploy {command or ''} --help` imported {res['heavy']}"


def test_importtime_of_export_help_has_no_torch():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "segdeploy", "export", "--help"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and "Usage: segdeploy export" in r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "segdeploy.cli" in imported and not imported & {"torch", "onnx", "onnxruntime"}

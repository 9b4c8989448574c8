"""benchmarks/precision_matrix.py runs end to end on one small row (CI proof that the script works).

The numbers of a 2-step training run say nothing about INT8; what is checked is the JSON's structure: every
candidate (FP16, our four methods, ONNX Runtime's three) scored, every number finite, the budget run recorded,
and the default's comparison with ONNX Runtime's best in the summary.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = {"fp16", "ours.max", "ours.entropy", "ours.percentile", "ours.auto", "ort.MinMax", "ort.Entropy",
              "ort.Percentile"}


def _finite_numbers(obj) -> list[float]:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _finite_numbers(x)]
    return [v for x in obj for v in _finite_numbers(x)]


@pytest.mark.slow
def test_one_tiny_row(tmp_path):
    out = tmp_path / "matrix.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision_matrix.py"), "--rows", "unet", "--tiny",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == doc
    row = doc["rows"]["smp.Unet"]
    assert "error" not in row, row
    assert set(row["drop_points"]) == CANDIDATES
    assert row["train"]["steps"] > 0 and row["train"]["size"] == 64
    assert 0 <= row["train"]["val_miou_points"] <= 100 and 0 < row["train"]["chance_miou_points"] <= 100
    auto = row["ours"]["auto"]
    assert auto["rule_violations"] == 0 and auto["quantized_layers"] > 0
    assert sum(auto["percentile_inputs_by_producer"].values()) == auto["percentile_inputs"] <= auto["quantized_inputs"]
    budget = row["budget"]
    assert budget["met"] in (True, False) and budget["evaluations"] >= 1 and budget["budget_points"] == 0.5
    numbers = _finite_numbers({k: v for k, v in row.items() if k != "note"})
    assert numbers and all(math.isfinite(v) for v in numbers)
    s = doc["summary"]["smp.Unet"]
    assert s["default"] == row["drop_points"]["ours.auto"]
    assert s["best_ort"] == min(row["drop_points"][k] for k in CANDIDATES if k.startswith("ort."))
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision_matrix.py"), "--table", str(out)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert table.returncode == 0 and "| smp.Unet |" in table.stdout and "ours.auto" in table.stdout.splitlines()[0]


def test_unknown_row_is_a_usage_error():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision_matrix.py"), "--rows", "nope"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and "unknown row(s) nope" in proc.stderr

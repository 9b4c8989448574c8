"""`segdeploy bench` on an export directory with end-to-end variants (segdeploy.bench.e2e): each variant beside its
plain model on ONNX Runtime's CPU -- bytes in/out per frame, latency with host pre/post for the plain model, the
same class map -- in the JSON document and the tables; absent without variants; benchmarks/e2e_io.py measures the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_helpers import export_dir

from segdeploy.bench.e2e import measure_pair
from segdeploy.cli import main
from segdeploy.exportdir import ExportDir


@pytest.fixture(scope="module")
def e2e_export(tiny_model, tmp_path_factory):
    return export_dir(tiny_model, tmp_path_factory.mktemp("export-e2e") / "tiny", "--end-to-end", "--fp16")


def test_bench_shows_each_variant_beside_its_plain_model(e2e_export, capsys):
    assert main(["bench", str(e2e_export), "--iters", "3", "--warmup", "1", "--threads", "1", "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)["stages"]["bench"]
    rows = {r["precision"]: r for r in doc["end_to_end"]}
    assert set(rows) == {"fp32", "fp16"}
    ed = ExportDir.open(e2e_export)
    n, _, h, w = doc["shapes"][0]
    for p, r in rows.items():
        assert r["e2e_onnx"] == ed.e2e_file(p) and r["frames"] == [n, h, w, 3] and r["class_maps_equal"]
        k = ed.num_classes
        assert r["bytes_per_frame"]["plain"] == {"in": 4 * 3 * h * w, "out": 4 * k * h * w}
        assert r["bytes_per_frame"]["end_to_end"] == {"in": 3 * h * w, "out": h * w}  # uint8 class map
        ms = r["ms"]
        assert ms["plain_total"] > 0 and ms["e2e_run"] > 0 and r["speedup_total"] > 0 and r["iters"] == 3
    assert main(["bench", str(e2e_export), "--iters", "2", "--warmup", "1", "-q"]) == 0
    table = capsys.readouterr().out
    assert "end-to-end variants vs the plain model" in table and "model.fp16.e2e.onnx" in table


def test_no_rows_without_variants(tiny_export, capsys):
    assert main(["bench", str(tiny_export), "--iters", "2", "--warmup", "1", "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)["stages"]["bench"]
    assert "end_to_end" not in doc
    assert main(["bench", str(tiny_export), "--iters", "2", "--warmup", "1", "-q"]) == 0
    assert "end-to-end variants" not in capsys.readouterr().out


def test_measure_pair_is_what_benchmarks_e2e_io_prints(e2e_export, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "e2e_io.py"
    spec = importlib.util.spec_from_file_location("e2e_io_script", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(e2e_export), "--repeats", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ed = ExportDir.open(e2e_export)
    frames = np.random.default_rng(0).integers(0, 256, tuple(doc["frame"]), dtype=np.uint8)
    direct = measure_pair(ed.file("model.onnx"), ed.file("model.e2e.onnx"), frames, ed.preprocess, ed.profile, iters=2)
    assert doc["precisions"]["fp32"]["bytes_per_frame"] == direct["bytes_per_frame"] and direct["class_maps_equal"]

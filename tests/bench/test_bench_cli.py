"""`segdeploy bench` end to end through segdeploy.cli.main: documents, ratios, errors and exit codes.

Real runs on tiny models with few iterations; no assertion depends on how fast anything ran.
"""

from __future__ import annotations

import json

import pytest
from bench_helpers import run_cli

from segdeploy.bench.report import SCHEMA_NAME, SCHEMA_VERSION, format_report, validate_report
from segdeploy.bench.run import BenchOptions, run_bench
from segdeploy.errors import ShapeError

FAST = ["--warmup", "1", "--iters", "3", "-q"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_json_document_schema_and_ratios(tiny_model, tiny_export, tmp_path, capsys):
    report = tmp_path / "bench.json"
    code = run_cli(["bench", tiny_model, tiny_export, "--runner", "torch", "--runner", "ort-cpu",
                    "--threads", "1", "--json", "--report", report, *FAST])
    assert code == 0
    res = json.loads(capsys.readouterr().out)  # the common result document; the bench document inside it
    assert res["schema"] == "segdeploy.result" and res["command"] == "bench" and res["ok"]
    doc = res["stages"]["bench"]
    assert doc == json.loads(report.read_text())
    validate_report(doc)
    assert (doc["schema"], doc["schema_version"]) == (SCHEMA_NAME, SCHEMA_VERSION) == ("segdeploy.bench", 1)
    assert doc["shapes"] == [[1, 3, 32, 32]]  # the manifest's opt shape, said in a note
    assert any("opt shape" in n for n in doc["notes"])
    assert doc["baseline"] == 0
    assert [t["label"] for t in doc["targets"]] == ["tiny.pt2 [torch]", "model.onnx [ort-cpu]"]
    s = doc["settings"]
    assert (s["warmup"], s["iters"], s["seconds"], s["threads"], s["torch_threads"], s["ort_intra_op_threads"]) == (
        1, 3, None, 1, 1, 1)
    assert (s["switch_gap_ms"], s["settle_calls"]) == (50.0, 1)
    for t in doc["targets"]:
        assert set(t) >= {"index", "label", "artifact", "kind", "runner", "backend", "device", "precision", "profile",
                          "sha256", "bytes", "runner_info", "open_s", "first_call_ms", "memory", "notes"}
        assert set(t["memory"]) == {"open_rss_growth_bytes", "peak_rss_growth_bytes", "retained_rss_growth_bytes",
                                    "peak_device_growth_bytes", "retained_device_growth_bytes"}
        assert len(t["sha256"]) == 64 and t["bytes"] > 0
        assert list(t["first_call_ms"]) == ["1x3x32x32"]
    results = doc["results"]
    assert [(r["target"], r["shape"], r["calls"]) for r in results] == [(0, [1, 3, 32, 32], 3), (1, [1, 3, 32, 32], 3)]
    base = results[0]
    for r in results:
        lat = r["latency_ms"]
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["throughput_ips"] > 0 and r["output_shape"] == [1, 4, 32, 32]
        # ratios against the first artifact, at the same shape
        assert r["speedup_vs_baseline"] == pytest.approx(base["latency_ms"]["p50"] / lat["p50"])
        assert r["latency_ratio_vs_baseline"] == pytest.approx(lat["p50"] / base["latency_ms"]["p50"])
        assert r["throughput_ratio_vs_baseline"] == pytest.approx(r["throughput_ips"] / base["throughput_ips"])
    assert base["speedup_vs_baseline"] == 1.0 and base["argmax_agreement_vs_baseline"] is None
    # the same model through ONNX Runtime: same argmax nearly everywhere on the random input
    assert results[1]["argmax_agreement_vs_baseline"] > 0.99


def test_baseline_follows_the_first_artifact(tiny_model, tiny_export):
    doc = run_bench([tiny_export / "model.onnx", tiny_model], BenchOptions(runners=("torch", "ort-cpu"), warmup=1,
                                                                             iters=2))
    assert doc["targets"][0]["label"] == "model.onnx [ort-cpu]"
    assert doc["results"][0]["speedup_vs_baseline"] == 1.0
    table = format_report(doc)
    assert "baseline #0 = model.onnx [ort-cpu]" in table and "tiny.pt2 [torch]" in table


def test_tables_and_several_shapes(tiny_model, tiny_export, capsys):
    code = run_cli(["bench", tiny_export / "model.onnx", tiny_model, "--runner", "ort-cpu", "--runner", "torch",
                    "--shape", "1x3x32x32", "--shape", "2x3x16x48", *FAST])
    assert code == 0
    out = capsys.readouterr().out
    assert "input 1x3x32x32" in out and "input 2x3x16x48" in out
    assert out.count("model.onnx [ort-cpu]") >= 3  # two latency tables + the load/memory table


def test_seconds_mode(tiny_export, capsys):
    code = run_cli(["bench", tiny_export, "--runner", "ort-cpu", "--seconds", "0.05", "--warmup", "1", "--json", "-q",
                    "--switch-gap-ms", "0", "--settle-calls", "0"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)["stages"]["bench"]
    assert doc["settings"]["iters"] is None and doc["settings"]["seconds"] == 0.05
    assert (doc["settings"]["switch_gap_ms"], doc["settings"]["settle_calls"]) == (0.0, 0)
    assert doc["results"][0]["calls"] >= doc["settings"]["min_iters"]


def test_threads_are_restored_after_a_run_and_after_a_failure(tiny_model, tiny_export, tmp_path):
    import shutil

    import torch

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    doc = run_bench([tiny_model], BenchOptions(shapes=("1x3x32x32",), threads=want, warmup=1, iters=1))
    assert doc["settings"]["torch_threads"] == want
    assert torch.get_num_threads() == before
    lone = tmp_path / "lone.onnx"  # no manifest beside it: the shape is not checked before the run
    shutil.copy(tiny_export / "model.onnx", lone)
    with pytest.raises(ShapeError, match="expects channels 3 but got 5"):  # fails inside the measurement
        run_bench([lone, tiny_model], BenchOptions(shapes=("1x5x32x32",), threads=want, warmup=1, iters=1))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("argv,code,pattern", [
    (["--runner", "nonsense"], 2, "unknown runner 'nonsense'; use one of torch, torch-cuda"),
    (["--ort-opt-level", "max"], 2, "unknown --ort-opt-level 'max'; use one of disable, basic, extended, all"),
    (["--shape", "1x3x32"], 2, "cannot parse --shape '1x3x32'"),
    (["--shape", "1x3x512x512"], 2, "outside the shape profile of model.onnx"),
    (["--shape", "9x3x32x32"], 2, "outside the shape profile"),  # batch above the profile's max 8
    (["--iters", "3", "--seconds", "1"], 2, "give either --iters N or --seconds S"),
    (["--threads", "0"], 2, "pass --threads 1 or more"),
    (["--warmup", "0"], 2, "pass --warmup 1 or more"),
    (["--settle-calls", "-1"], 2, "pass 0 to turn them off"),
    (["--runner", "torch"], 2, "no given --runner runs"),
    (["--runner", "ort-cuda"], 1, "CUDAExecutionProvider"),
])
def test_user_errors_are_one_line_with_exit_codes(tiny_export, argv, code, pattern, capsys):
    if "ort-cuda" in argv:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("this onnxruntime has the CUDA provider")
    assert run_cli(["bench", tiny_export / "model.onnx", *argv, "-q"]) == code
    line = _one_line_error(capsys)
    assert pattern in line
    assert line.startswith("error: ") and "; " in line


def test_missing_artifact_and_missing_shape(tiny_model, tmp_path, capsys):
    assert run_cli(["bench", tmp_path / "gone.pt2", "-q"]) == 1
    assert "artifact" in _one_line_error(capsys)
    assert run_cli(["bench", tiny_model, "-q"]) == 2
    line = _one_line_error(capsys)
    assert "no --shape given and no manifest.json beside" in line and "--shape NxCxHxW" in line


def test_torch_compile_unavailable_is_one_line(tiny_model, monkeypatch, capsys):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    assert run_cli(["bench", tiny_model, "--runner", "torch-compile", "--shape", "1x3x32x32", "-q"]) == 1
    line = _one_line_error(capsys)
    assert "torch.compile is unavailable here" in line and "use --runner torch" in line


def test_torch_compile_of_torchscript_is_one_line(tmp_path, capsys):
    import torch

    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 2, 1)), tmp_path / "ts.pt")
    assert run_cli(["bench", tmp_path / "ts.pt", "--runner", "torch-compile", "--shape", "1x3x32x32", "-q"]) == 1
    line = _one_line_error(capsys)
    assert "ts.pt is a TorchScript model, which torch.compile cannot compile" in line and "--runner torch" in line


def test_tensorrt_engine_without_tensorrt(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    plan = tmp_path / "model.fp16.engine"
    plan.write_bytes(b"\x00" * 64)
    assert run_cli(["bench", plan, "--shape", "1x3x32x32", "-q"]) == 1
    line = _one_line_error(capsys)
    assert line.startswith("error: ") and "TensorRT" in line


@pytest.mark.slow
def test_torch_compile_runs_next_to_eager(tiny_model, capsys):
    code = run_cli(["bench", tiny_model, "--runner", "torch", "--runner", "torch-compile", "--shape", "1x3x32x32",
                    "--json", *FAST])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)["stages"]["bench"]
    assert [t["runner"] for t in doc["targets"]] == ["torch", "torch-compile"]
    compile_info = doc["targets"][1]["runner_info"]["compile"]
    assert compile_info["backend"] == "inductor" and compile_info["dynamic"] is False
    assert isinstance(compile_info["notes"], list)  # what torch logged while compiling, kept off stderr
    assert doc["results"][1]["argmax_agreement_vs_baseline"] > 0.99


def test_int8_on_the_cpu_says_what_it_predicts(int8_export, capsys):
    code = run_cli(["bench", int8_export, "--runner", "ort-cpu", *FAST])
    assert code == 0
    out = capsys.readouterr().out
    assert "model.int8.onnx [ort-cpu][1]" in out
    assert "[1] ONNX Runtime's CPU provider" in out and "Q/DQ model" in out
    assert "does NOT predict TensorRT INT8 latency" in out

"""Runners: torch and onnxruntime agree; timing; options; errors; TensorRT contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segdeploy.errors import ArtifactError, MissingDependencyError, ModelLoadError, ShapeError, UsageError
from segdeploy.runners import guess_kind, open_runner
from segdeploy.runners.onnxruntime import OrtOptions
from segdeploy.vocab import OrtLevel
from segdeploy.runners.torch import TorchOptions


def test_torch_and_ort_agree_at_every_opt_level(tiny_model, tiny_onnx):
    x = np.random.default_rng(0).standard_normal((2, 3, 24, 40)).astype(np.float32)
    with open_runner(tiny_model) as ref:
        want = ref.infer(x)
        assert ref.timing_summary()["calls"] == 1
    assert want.shape == (2, 4, 24, 40) and want.dtype == np.float32
    for level in OrtLevel:
        with open_runner(tiny_onnx, options=OrtOptions(graph_optimization_level=level)) as r:
            got = r.infer(x)
            r.infer(x[:1])
            assert len(r.timings) == 2 and all(t > 0 for t in r.timings)
            assert r.describe()["providers"] == ["CPUExecutionProvider"]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_guess_kind_and_option_mismatch(tiny_model, tiny_onnx):
    assert guess_kind(tiny_model) == "torch"
    assert guess_kind(str(tiny_onnx)) == "onnxruntime"
    assert guess_kind("m.engine") == "tensorrt" and guess_kind("m.pt2") == "torch"
    with pytest.raises(UsageError, match="takes OrtOptions"):
        open_runner(tiny_onnx, options=TorchOptions())
    with pytest.raises(UsageError, match="graph optimization level"):
        OrtOptions(graph_optimization_level="max")
    with pytest.raises(UsageError, match="unknown runner kind"):
        open_runner(tiny_onnx, kind="tflite")


def test_ort_errors(tmp_path, tiny_onnx):
    with pytest.raises(ArtifactError, match="not found"):
        open_runner(tmp_path / "none.onnx").open()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        open_runner(bad).open()
    with open_runner(tiny_onnx) as r:
        with pytest.raises(ShapeError, match="expects channels 3 but got 1"):
            r.infer(np.zeros((1, 1, 8, 8), np.float32))
        with pytest.raises(ShapeError, match="NCHW"):
            r.infer(np.zeros((3, 8, 8), np.float32))


def test_missing_execution_provider_is_not_a_silent_fallback(tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA EP; the missing-EP path cannot be shown here")
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
        open_runner(tiny_onnx, options=OrtOptions(device="cuda")).open()


def test_torch_runner_output_rules():
    class DictOut(torch.nn.Module):
        def forward(self, x):
            return {"out": x[:, :2]}

    class AuxOut(torch.nn.Module):
        def forward(self, x):
            return (x[:, :1], x)

    class FlatOut(torch.nn.Module):
        def forward(self, x):
            return (x.mean(dim=(2, 3)),)

    x = np.ones((1, 3, 4, 4), np.float32)
    assert open_runner(DictOut()).infer(x).shape == (1, 2, 4, 4)
    assert open_runner(AuxOut()).infer(x).shape == (1, 1, 4, 4)  # first 4-D element (aux heads follow)
    assert open_runner(AuxOut(), options=TorchOptions(output="1")).infer(x).shape == (1, 3, 4, 4)
    with pytest.raises(ModelLoadError):
        open_runner(FlatOut()).infer(x)
    with pytest.raises(ModelLoadError, match="nn.Module"):
        open_runner(object(), kind="torch").open()


def test_torch_runner_loads_a_model_file(tiny_model, tmp_path):
    path = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(tiny_model, torch.zeros(1, 3, 8, 8)), str(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with open_runner(str(path)) as r:
        got = r.infer(x)
        assert r.describe()["path"] == str(path)
    np.testing.assert_allclose(got, open_runner(tiny_model).infer(x), atol=1e-6)


def test_torch_runner_accepts_exported_program_module(tiny_model):
    ep = torch.export.export(tiny_model, (torch.zeros(1, 3, 16, 16),))
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(open_runner(ep.module()).infer(x), open_runner(tiny_model).infer(x), atol=1e-6)


def test_torch_forward_failure_is_one_line(tiny_model):
    with pytest.raises(ShapeError, match="forward failed on input") as e:
        open_runner(tiny_model).infer(np.zeros((1, 5, 8, 8), np.float32))
    assert "\n" not in e.value.message


@pytest.mark.gpu
def test_torch_cuda_runner(tiny_model):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False")
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = open_runner(tiny_model).infer(x)
    got = open_runner(tiny_model, options=TorchOptions(device="cuda")).infer(x)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_cuda_device_without_cuda(tiny_model):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available; the no-CUDA error path cannot be shown here")
    with pytest.raises(MissingDependencyError, match="no CUDA device"):
        open_runner(tiny_model, options=TorchOptions(device="cuda")).open()


def test_tensorrt_runner_contract():
    try:
        import tensorrt  # noqa: F401

        has_trt = True
    except ImportError:
        has_trt = False
    with pytest.raises(MissingDependencyError) as e:
        open_runner("model.engine")
    if has_trt:
        assert "no TensorRT engine runner yet" in e.value.message
    else:
        assert "needs TensorRT" in e.value.message and "pip install tensorrt" in e.value.message

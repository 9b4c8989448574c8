"""segdeploy.bench.targets: artifacts -> (artifact, runner) targets, export-directory expansion, precision."""

from __future__ import annotations

import importlib.util
import shutil

import onnx
import pytest
from onnx import TensorProto, helper

from segdeploy.bench.targets import expand_targets, onnx_facts
from segdeploy.errors import ArtifactError, UsageError

NO_TRT = importlib.util.find_spec("tensorrt") is None


def _labels(exp):
    return [t.label for t in exp.targets]


def test_model_file_gets_torch_and_onnx_gets_ort(tiny_model, tiny_export, monkeypatch):
    import segdeploy.bench.targets as tg

    monkeypatch.setattr(tg, "_torch_has_cuda", lambda: False)
    monkeypatch.setattr(tg, "_ort_has", lambda p: False)
    exp = expand_targets([tiny_model, tiny_export / "model.onnx"])
    assert _labels(exp) == ["tiny.pt2 [torch]", "model.onnx [ort-cpu]"]
    t_model, t_onnx = exp.targets
    assert (t_model.kind, t_model.device, t_model.precision) == ("model", "cpu", "fp32")
    assert t_model.profile is None  # no manifest beside the model file
    assert (t_onnx.kind, t_onnx.precision) == ("onnx", "fp32")
    assert t_onnx.profile.opt == (1, 3, 32, 32) and t_onnx.manifest == tiny_export / "manifest.json"


def test_gpu_defaults_are_added_where_usable(tiny_model, tiny_export, monkeypatch):
    import segdeploy.bench.targets as tg

    monkeypatch.setattr(tg, "_torch_has_cuda", lambda: True)
    monkeypatch.setattr(tg, "_ort_has", lambda p: p == "CUDAExecutionProvider")
    exp = expand_targets([tiny_model, tiny_export])
    assert _labels(exp) == ["tiny.pt2 [torch]", "tiny.pt2 [torch-cuda]", "model.onnx [ort-cpu]", "model.onnx [ort-cuda]"]


def test_explicit_runners_apply_where_they_fit(tiny_model, tiny_export):
    exp = expand_targets([tiny_model, tiny_export / "model.onnx"], ["torch", "torch-compile", "ort-cpu"])
    assert _labels(exp) == ["tiny.pt2 [torch]", "tiny.pt2 [torch-compile]", "model.onnx [ort-cpu]"]
    with pytest.raises(UsageError, match=r"no given --runner runs .*tiny.pt2 \(a model file\); add --runner torch"):
        expand_targets([tiny_model], ["ort-cpu"])
    with pytest.raises(UsageError, match="unknown runner 'onnx'"):
        expand_targets([tiny_model], ["onnx"])


def test_export_directory_expands_to_its_onnx_variants(int8_export, monkeypatch):
    import segdeploy.bench.targets as tg

    monkeypatch.setattr(tg, "_ort_has", lambda p: False)
    exp = expand_targets([int8_export])
    assert _labels(exp) == ["model.onnx [ort-cpu]", "model.int8.onnx [ort-cpu]"]
    fp32, int8 = exp.targets
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert all(t.source == str(int8_export) and t.profile is not None for t in exp.targets)
    assert not fp32.notes and not int8.notes  # the INT8 note comes from inspecting ORT's graph (test_ortgraph)


def _with_engine(src, dst, tmp_path):
    """A copy of an export directory whose manifest lists an engine file (its bytes are never parsed here)."""
    from segdeploy.exportdir import Transaction
    from segdeploy.vocab import Precision

    shutil.copytree(src, dst)
    with Transaction(dst, fresh=False, command="test") as txn:
        name = Precision.FP16.engine_file
        txn.write_bytes(name, b"not a real plan: only expansion is tested", "engine", derived_from=("model.onnx",))
        m = txn.manifest
        m["engines"] = [{"file": name, "sha256": txn.entries[name].sha256, "bytes": txn.entries[name].bytes,
                         "precision": "fp16", "source_onnx": "model.onnx",
                         "profile": {"min": [1, 3, 16, 16], "opt": [1, 3, 32, 32], "max": [2, 3, 48, 48],
                                     "spatial_multiple": 16}, "plugins": None}]
        txn.set_manifest(m)
        txn.commit()
    return dst


@pytest.mark.skipif(not NO_TRT, reason="TensorRT is installed here: engines would be run, not skipped")
def test_export_directory_engines_are_skipped_without_tensorrt(tiny_export, tmp_path, monkeypatch):
    import segdeploy.bench.targets as tg

    monkeypatch.setattr(tg, "_ort_has", lambda p: False)
    d = _with_engine(tiny_export, tmp_path / "withengine", tmp_path)
    exp = expand_targets([d])
    assert _labels(exp) == ["model.onnx [ort-cpu]"]
    assert [(s.runner, "TensorRT is not installed" in s.reason) for s in exp.skipped] == [("tensorrt", True)]
    # asked for explicitly: the engine becomes a target (its runner then says TensorRT is missing)
    exp = expand_targets([d], ["tensorrt"])
    assert _labels(exp) == ["model.fp16.engine [tensorrt]"]
    t = exp.targets[0]
    assert t.precision == "fp16" and t.profile.max == (2, 3, 48, 48)  # the engine's own profile


def test_missing_artifact_and_bad_export_directory(tmp_path):
    with pytest.raises(ArtifactError, match="artifact .*nope.onnx not found"):
        expand_targets([tmp_path / "nope.onnx"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds no manifest.json"):
        expand_targets([tmp_path / "empty"])


def test_the_same_artifact_twice_gets_distinct_labels(tiny_export):
    exp = expand_targets([tiny_export / "model.onnx", tiny_export / "model.onnx"], ["ort-cpu"])
    assert _labels(exp) == ["model.onnx [ort-cpu]", "model.onnx [ort-cpu]#2"]


def _onnx_with(path, nodes, inits=()):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 4, 4])
    g = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("segdeploy", 1)])
    onnx.save(m, str(path))
    return path


def test_onnx_precision_and_plugin_nodes_are_read_from_the_graph(tmp_path):
    plain = _onnx_with(tmp_path / "a.onnx", [helper.make_node("Relu", ["input"], ["logits"])])
    assert onnx_facts(plain) == ("fp32", False)
    qdq = _onnx_with(tmp_path / "q.onnx", [
        helper.make_node("QuantizeLinear", ["input", "s"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s"], ["logits"])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])])
    assert onnx_facts(qdq) == ("int8", False)
    half = _onnx_with(tmp_path / "h.onnx", [
        helper.make_node("Cast", ["input"], ["h"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["h"], ["logits"], to=TensorProto.FLOAT)])
    assert onnx_facts(half) == ("fp16", False)
    plug = _onnx_with(tmp_path / "model.trt.onnx", [
        helper.make_node("SegdeployMaxUnpool", ["input"], ["logits"], domain="segdeploy")])
    assert onnx_facts(plug) == ("fp32", True)
    with pytest.raises(ArtifactError, match="plugin nodes, which ONNX Runtime cannot run"):
        expand_targets([plug], ["ort-cpu"])
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    with pytest.raises(ArtifactError, match="is not a readable ONNX model"):
        expand_targets([tmp_path / "junk.onnx"])

"""plan_jobs and BuildRequest: which engine comes from which ONNX, and the option checks (pure, no files)."""

from __future__ import annotations

import pytest

from segdeploy.engine.jobs import plan_jobs
from segdeploy.engine.request import BuildRequest, parse_precisions
from segdeploy.errors import ArtifactError, UsageError
from segdeploy.manifest import ManifestView

BASE = ["model.onnx"]
INT8 = {"precision": {"source_onnx": "model.onnx", "int8": {"file": "model.int8.onnx"}, "fp16": {"file": "model.fp16.onnx"}}}
LISTED = ["model.onnx", "model.int8.onnx", "model.fp16.onnx", "ranges.json", "model.calib.cache"]
PLUGINS = {"tensorrt_plugins": {"file": "model.trt.onnx", "nodes": [{"plugin": "SegdeployMaxUnpool"}]}}


class View(ManifestView):
    """A manifest document + the names of its file table (what ExportDir / Transaction give plan_jobs)."""

    def __init__(self, manifest, listed):
        self.manifest, self.listed = manifest, set(listed)

    def has(self, name):
        return name in self.listed


def jobs(manifest, listed, **kw):
    plan = plan_jobs(View(manifest, listed), BuildRequest(**kw))
    return [(j.precision, j.onnx, j.derived_from) for j in plan.jobs], plan.notes


def test_default_is_what_the_directory_holds():
    assert jobs({}, BASE) == ([("fp32", "model.onnx", ("model.onnx",))], [])
    got, _ = jobs(INT8, LISTED)
    assert got == [("fp32", "model.onnx", ("model.onnx",)), ("fp16", "model.fp16.onnx", ("model.fp16.onnx",)),
                   ("int8", "model.int8.onnx", ("model.int8.onnx",))]
    got, _ = jobs(INT8, LISTED, int8_implicit=True)
    assert got[-1] == ("int8-implicit", "model.onnx", ("model.onnx", "model.calib.cache"))


def test_dla_leaves_fp32_out_of_the_default():
    got, notes = jobs(INT8, LISTED, dla_core=0)
    assert [g[0] for g in got] == ["fp16", "int8"] and notes == ["fp32 left out: DLA runs FP16 and INT8 only"]
    with pytest.raises(UsageError, match="nothing to build: with --dla-core give --precision fp16 or int8"):
        jobs({}, BASE, dla_core=0)


def test_plugin_model_builds_fp32_from_the_plugin_graph():
    manifest = dict(INT8, **PLUGINS)
    got, notes = jobs(manifest, LISTED + ["model.trt.onnx"])
    assert got == [("fp32", "model.trt.onnx", ("model.trt.onnx",))]
    assert "fp16, int8 left out" in notes[0] and "SegdeployMaxUnpool" in notes[0]
    with pytest.raises(UsageError, match=r"cannot build int8 for this model: .*SegdeployMaxUnpool.*--precision fp32"):
        jobs(manifest, LISTED + ["model.trt.onnx"], precisions=("int8",))


def test_asking_for_what_is_missing_names_the_stage():
    with pytest.raises(ArtifactError, match=r"holds no model.int8.onnx.*segdeploy precision EXPORT_DIR MODEL_FILE --int8"):
        jobs({}, BASE, precisions=("fp32", "int8"))
    with pytest.raises(ArtifactError, match=r"holds no model.calib.cache.*segdeploy calibrate EXPORT_DIR --calib DIR"):
        jobs({}, BASE, int8_implicit=True)


def test_request_values():
    assert parse_precisions(" FP32, int8 ,fp32") == ("fp32", "int8") and parse_precisions("") is None
    r = BuildRequest.from_cli(precision="fp16", int8_implicit=True, hardware_compat="same-cc")
    assert r.precisions == ("fp16", "int8-implicit") and r.hardware_compatibility == "same-compute-capability"
    assert r.engine_options().hardware_compatibility == "same-compute-capability"
    for kw, text in [({"opt_level": 6}, "--opt-level must be 0..5"), ({"dla_core": -1}, "--dla-core must be"),
                     ({"trt_target": "12"}, "unknown TensorRT target"), ({"precision": "bf16"}, "'bf16'"),
                     ({"hardware_compat": "x"}, "--hardware-compat 'x'")]:
        with pytest.raises(UsageError, match=text):
            BuildRequest.from_cli(**kw)

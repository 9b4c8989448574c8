"""segdeploy.pipeline.run_stage: the one way to run one stage on a published export directory, and the stage
contract every stage follows (run(txn, options, progress, **inputs) -> result with summary() and notes)."""

from __future__ import annotations

import inspect

import pytest

from calib_helpers import make_export_dir

from segdeploy.calibration import stage as calibration_stage
from segdeploy.calibration.stage import CalibrateOptions
from segdeploy.errors import DataError
from segdeploy.exportdir import ExportDir
from segdeploy.pipeline import run_stage
from segdeploy.progress import Progress


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _siblings(d):
    return sorted(p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}.") and not p.name.endswith(".lock"))


def test_run_stage_runs_commits_and_returns_the_published_directory(tmp_path, images):
    exp = make_export_dir(tmp_path / "exp")
    lines = []
    res, published = run_stage(exp, calibration_stage.run, CalibrateOptions(calib=str(images), size=4), Progress(
        stream=_Lines(lines)), command="calibrate")
    assert isinstance(published, ExportDir) and published.path == exp.resolve()
    assert published.has("ranges.json") and published.has("model.calib.cache")
    assert published.calibration["set"]["size"] == 4 and ExportDir.open(exp).calibration == published.calibration
    s = res.summary()
    assert s["images"] == 4 and s["ranges"] == str(exp.resolve() / "ranges.json") and s["trt_cache_version"] == 100300
    assert any("calibrate: 4/4 images" in ln for ln in lines)  # the counted task's final line
    assert _siblings(exp) == []


def test_a_failing_stage_publishes_nothing(tmp_path, images):
    exp = make_export_dir(tmp_path / "exp")
    before = _files(exp)

    def failing(txn, options, progress, **inputs):
        res = calibration_stage.run(txn, options, progress)  # stages ranges.json and the cache ...
        assert txn.has("ranges.json")
        raise DataError("stop here; nothing may be published")  # ... then fails

    with pytest.raises(DataError, match="stop here"):
        run_stage(exp, failing, CalibrateOptions(calib=str(images), size=4), Progress(False), command="calibrate")
    assert _files(exp) == before and _siblings(exp) == []


def test_run_stage_passes_inputs_and_appends_the_transaction_notes(tmp_path, images):
    exp = make_export_dir(tmp_path / "exp")
    run_stage(exp, calibration_stage.run, CalibrateOptions(calib=str(images), size=4), Progress(False),
              command="calibrate")
    seen = {}

    class Result:
        def __init__(self):
            self.notes = ["from the stage"]

        def summary(self):
            return {}

    def stage(txn, options, progress, *, reference):
        seen.update(options=options, reference=reference, num_classes=txn.num_classes)
        data = txn.staged("model.onnx").read_bytes()
        txn.write_bytes("model.onnx", data + b" ", "onnx")  # a new model.onnx retires the ranges made from the old
        return Result()

    res, published = run_stage(exp, stage, "opts", Progress(False), command="test", reference="ref")
    assert seen == {"options": "opts", "reference": "ref", "num_classes": 2}
    assert res.notes[0] == "from the stage"
    assert any(n.startswith("removed ranges.json: it was made from a previous model.onnx") for n in res.notes[1:])
    assert not published.has("ranges.json") and published.calibration is None


@pytest.mark.parametrize("module, inputs", [
    ("segdeploy.export.stage", {"prepared"}),
    ("segdeploy.calibration.stage", set()),
    ("segdeploy.precision.stage", {"reference", "checked"}),
])
def test_every_stage_follows_the_contract(module, inputs):
    import importlib

    run = importlib.import_module(module).run
    params = inspect.signature(run).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["txn", "options", "progress"]
    assert {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} == inputs
    ret = inspect.signature(run).return_annotation
    assert ret.endswith("Result")


class _Lines:
    """A stream that collects written lines (Progress writes whole lines)."""

    def __init__(self, into):
        self.into = into

    def write(self, text):
        self.into.extend(text.splitlines())

    def flush(self):
        pass

    def isatty(self):
        return False

"""The export directory's owner: manifest schema and types, file hashes, transactional publish, lock."""

from __future__ import annotations

import copy
import json
import os
import stat

import pytest

from segdeploy import exportdir as ed_mod
from segdeploy import safefs
from segdeploy.errors import ArtifactError
from segdeploy.exportdir import ExportDir, Transaction
from segdeploy.exportdir import staging as staging_mod  # the publish step (renameat2 exchange) lives here
from segdeploy.manifest import SCHEMA_VERSION, validate_manifest

DOC = {
    "schema": "segdeploy.manifest",
    "schema_version": SCHEMA_VERSION,
    "segdeploy_version": "0.1.0",
    "source": {"format": "pt2", "sha256": "ab"},
    "model": {"in_channels": 3, "num_classes": 2, "class_names": [], "spatial_multiple": 16, "output_selection": "tensor"},
    "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                "profile": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [2, 3, 128, 128], "spatial_multiple": 16}}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2, "height", "width"]}],
    "preprocess": {"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0, "channel_order": "RGB", "resize": "pad"},
    "onnx": {"file": "model.onnx", "opset": 18, "exporter": "torchscript", "sha256": "cd"},
    "rewrites": [],
    "verification": {"passed": True, "shapes": []},
    "versions": {},
}


def publish(path, onnx=b"onnx-1", extra=()):
    """A fresh export with model.onnx (+ (name, kind, bytes, derived_from) extras)."""
    with Transaction(path, fresh=True, command="test") as txn:
        txn.write_bytes("model.onnx", onnx, "onnx")
        for name, kind, data, deps in extra:
            txn.write_bytes(name, data, kind, derived_from=deps)
        txn.set_manifest(copy.deepcopy(DOC))
        return txn.commit()


def snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_publish_and_open(tmp_path):
    out = tmp_path / "exp"
    published = publish(out)
    ed = ExportDir.open(out)
    assert ed.files["model.onnx"].bytes == 6 and ed.manifest == published.manifest
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx"]
    assert ed.profile.max == (2, 3, 128, 128) and ed.input_name == "input" and ed.num_classes == 2
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    # nothing left beside the directory but the lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exp.lock", "exp"]


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("onnx"), "lacks onnx"),
    (lambda d: d["model"].pop("num_classes"), "model.num_classes"),
    (lambda d: d["model"].update(num_classes="six"), "model.num_classes must be int"),
    (lambda d: d["model"].update(num_classes=True), "model.num_classes must be int"),
    (lambda d: d["inputs"][0].update(profile=None), r"inputs\[0\].profile must be an object"),
    (lambda d: d["inputs"][0]["profile"].update(min=[1, 3, 256, 256]), "inconsistent profile"),
    (lambda d: d["preprocess"].update(channel_order="XYZ"), "inconsistent profile or preprocessing"),
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this segdeploy"),
    (lambda d: d.update(schema_version=1), "cannot read"),
    (lambda d: d.update(schema="other"), "not a segdeploy manifest"),
    (lambda d: d.update(inputs="x"), "inputs must be a list"),
    (lambda d: d["model"].update(class_names=["a"]), "class_names lists 1 names for 2"),
    (lambda d: d.update(precision={"source_onnx": "model.onnx", "int8": {"file": "model.int8.onnx"}}), "does not list it"),
    (lambda d: d["files"].update({"../x": d["files"]["model.onnx"]}), "not a plain file name"),
])
def test_invalid_manifests_are_one_line_errors(tmp_path, mutate, match):
    out = tmp_path / "exp"
    doc = copy.deepcopy(publish(out).manifest)
    mutate(doc)
    with pytest.raises(ArtifactError, match=match) as ei:
        validate_manifest(doc)
    assert "\n" not in ei.value.message
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=match):
        ExportDir.open(out)


def test_hash_mismatch_and_missing_file(tmp_path):
    out = tmp_path / "exp"
    publish(out)
    (out / "model.onnx").write_bytes(b"onnx-X")  # same size, other bytes
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        ExportDir.open(out)
    (out / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        ExportDir.open(out)
    with pytest.raises(ArtifactError, match="does not exist"):
        ExportDir.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds no manifest.json"):
        ExportDir.open(tmp_path / "empty")


def test_fresh_run_replaces_the_whole_set_and_keeps_user_files(tmp_path):
    out = tmp_path / "exp"
    publish(out, extra=[("model.int8.onnx", "onnx-int8", b"q", ("model.onnx",))])
    (out / "notes.txt").write_text("mine")
    publish(out, onnx=b"onnx-2")
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx", "notes.txt"]  # no stale INT8
    assert (out / "notes.txt").read_text() == "mine"


def test_derived_run_prunes_what_was_made_from_replaced_inputs(tmp_path):
    out = tmp_path / "exp"
    publish(out, extra=[("ranges.json", "ranges", b"{}", ("model.onnx",)),
                        ("model.int8.onnx", "onnx-int8", b"q", ("model.onnx", "ranges.json"))])
    with Transaction(out, fresh=False, command="calibrate") as txn:  # same ranges: INT8 stays
        txn.write_bytes("ranges.json", b"{}", "ranges", derived_from=("model.onnx",))
        txn.commit()
    assert "model.int8.onnx" in ExportDir.open(out).files
    with Transaction(out, fresh=False, command="calibrate") as txn:  # new ranges: INT8 is retired with a note
        txn.write_bytes("ranges.json", b'{"a": 1}', "ranges", derived_from=("model.onnx",))
        txn.commit()
    assert "model.int8.onnx" not in ExportDir.open(out).files and not (out / "model.int8.onnx").exists()
    assert any("removed model.int8.onnx" in n for n in txn.notes)


def test_a_failed_run_publishes_nothing_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "exp"
    publish(out)
    before = snapshot(out)
    with pytest.raises(RuntimeError):
        with Transaction(out, fresh=True, command="test") as txn:
            txn.write_bytes("model.onnx", b"half", "onnx")
            raise RuntimeError("stage failed")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exp.lock", "exp"]


def test_publish_failure_leaves_the_old_set(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    publish(out)
    before = snapshot(out)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(staging_mod, "_exchange", full)
    with pytest.raises(ArtifactError, match="no space left on the device") as ei:
        publish(out, onnx=b"onnx-2")
    assert "\n" not in ei.value.message
    assert snapshot(out) == before


def test_two_rename_fallback_and_recovery(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    publish(out)
    monkeypatch.setattr(staging_mod, "_exchange", lambda *args: False)
    publish(out, onnx=b"onnx-2")  # fallback path publishes too
    assert ExportDir.open(out).files["model.onnx"].bytes == 6
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx"]  # the work marker does not stay
    # a crash between the two renames leaves only .exp.old-* (marked as ours before it left): the next writer
    # restores it, without the marker
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    safefs.mark_work_dir(fd)
    os.close(fd)
    old = tmp_path / ".exp.old-dead"
    os.rename(out, old)
    with Transaction(out, fresh=False, command="test") as txn:
        assert "restored" in txn.notes[0]
    assert ExportDir.open(out).files["model.onnx"].sha256
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx"]


def test_stale_staging_from_a_killed_run_is_removed(tmp_path):
    out = tmp_path / "exp"
    publish(out)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(safefs.make_work_dir(fd, ".exp.staging-deadbeef", 0o755))  # what a SIGKILLed run leaves
    os.close(fd)
    stale = tmp_path / ".exp.staging-deadbeef"
    (stale / "model.int8.onnx").write_bytes(b"x" * 1000)
    publish(out)
    assert not stale.exists()


def test_second_writer_is_refused(tmp_path):
    out = tmp_path / "exp"
    publish(out)
    with Transaction(out, fresh=False, command="a"):
        with pytest.raises(ArtifactError, match=r"another segdeploy run \(pid \d+\) is writing"):
            Transaction(out, fresh=True, command="b").begin()


def test_refuses_a_directory_that_is_not_an_export(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("x")
    with pytest.raises(ArtifactError, match="not a segdeploy export directory"):
        publish(tmp_path / "home")
    assert os.listdir(tmp_path / "home") == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        publish(tmp_path / "file")


def test_staging_names_never_collide_with_published_names():
    assert not ed_mod.is_owned_name(".exp.staging-1234")
    assert ed_mod.is_owned_name("model.int8.onnx") and ed_mod.is_owned_name("model.fp16.engine")


# ------------------------------------------------------------------------------------------------ StagedDirectory
# The generic half (lock, recovery, marked staging, one-step publish) that Transaction and the bundle share.


def _stage_and_publish(target, files):
    from segdeploy.exportdir import StagedDirectory

    with StagedDirectory(target) as sd:
        sd.stage()
        assert sd.staging.name.startswith(f".{target.name}.staging-") and (sd.staging / safefs.WORK_MARKER).is_file()
        for name, data in files.items():
            (sd.staging / name).write_bytes(data)
        sd.publish()
        return list(sd.notes)


def test_staged_directory_publishes_any_content_and_keeps_the_mode(tmp_path):
    out = tmp_path / "bundle"
    assert _stage_and_publish(out, {"a.txt": b"1"}) == []
    assert sorted(os.listdir(out)) == ["a.txt"]  # no work marker once published
    out.chmod(0o750)
    _stage_and_publish(out, {"b.txt": b"2"})
    assert sorted(os.listdir(out)) == ["b.txt"] and stat.S_IMODE(out.stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle.lock", "bundle"]


def test_staged_directory_aborts_without_publishing(tmp_path):
    from segdeploy.exportdir import StagedDirectory

    out = tmp_path / "bundle"
    _stage_and_publish(out, {"a.txt": b"1"})
    with pytest.raises(RuntimeError, match="stage failed"):
        with StagedDirectory(out) as sd:
            sd.stage()
            (sd.staging / "half.txt").write_bytes(b"x")
            raise RuntimeError("stage failed")
    assert sorted(os.listdir(out)) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle.lock", "bundle"]


def test_staged_directory_recovers_a_cut_publish_and_leaves_foreign_dirs(tmp_path):
    """A publish cut between its two renames leaves only the marked .old-*: the next run restores it first; a
    staging-like directory without the marker is someone else's and stays, with a note."""
    from segdeploy.exportdir import StagedDirectory

    out = tmp_path / "bundle"
    _stage_and_publish(out, {"a.txt": b"1"})
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    safefs.mark_work_dir(fd)
    os.close(fd)
    os.rename(out, tmp_path / ".bundle.old-dead")
    (tmp_path / ".bundle.staging-beef").mkdir()
    with StagedDirectory(out) as sd:
        assert "restored" in sd.notes[0] and "left" in sd.notes[1] and ".bundle.staging-beef" in sd.notes[1]
        assert sorted(os.listdir(out)) == ["a.txt"]  # restored, and without the marker
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle.lock", ".bundle.staging-beef", "bundle"]


def test_staged_directory_refuses_a_second_writer(tmp_path):
    from segdeploy.exportdir import StagedDirectory

    out = tmp_path / "bundle"
    with StagedDirectory(out):
        with pytest.raises(ArtifactError, match=r"another segdeploy run \(pid \d+\) is writing"):
            StagedDirectory(out).open()
    _stage_and_publish(out, {"a.txt": b"1"})  # released on exit


def test_copy_without_engines_is_a_valid_export_directory(tmp_path):
    out = tmp_path / "exp"
    publish(out, extra=[("model.fp32.engine", "engine", b"plan", ("model.onnx",))])
    ed = ExportDir.open(out)
    with Transaction(out, fresh=False, command="test") as txn:
        txn.put_engine({"file": "model.fp32.engine", "sha256": txn.sha256_of("model.fp32.engine"), "precision": "fp32",
                        "source_onnx": "model.onnx"})
        ed = txn.commit()
    assert ed.engines and ed.has("model.fp32.engine")
    left_out = ed.copy_without_engines(tmp_path / "copy")
    copied = ExportDir.open(tmp_path / "copy")
    assert left_out == ["model.fp32.engine"] and sorted(os.listdir(tmp_path / "copy")) == ["manifest.json", "model.onnx"]
    assert copied.engines == [] and set(copied.files) == {"model.onnx"}
    assert copied.file_table["model.onnx"] == ed.file_table["model.onnx"]
    assert ed.gated_agreement("int8") is None and ed.validation_source is None

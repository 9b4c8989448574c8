"""The tree keeps its shape: no import cycles, no upward imports between packages (the layers are declared once,
in scripts/structure_report.py), manifest keys read only by their owner, artifact names spelled only in
segdeploy.vocab, and the functions that used to do several jobs stay split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def structure() -> dict:
    spec = importlib.util.spec_from_file_location("structure_report", ROOT / "scripts" / "structure_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.report(ROOT)


def test_no_import_cycles(structure):
    assert structure["package_cycles"] == []
    assert structure["module_cycles"] == []


def test_no_upward_imports_between_packages(structure):
    assert structure["upward_imports"] == []


def test_manifest_keys_are_read_only_by_their_owner(structure):
    """Code asks ExportDir / Transaction (segdeploy.manifest.ManifestView) instead of indexing the document."""
    assert structure["manifest_reads_outside_owner"] == []


def test_artifact_names_are_spelled_once(structure):
    assert structure["artifact_name_literals_outside_vocab"] == []


SPLIT = ("segdeploy.trt.builder:build_engine", "segdeploy.bundle.stage:make_bundle",
         "segdeploy.parity.cli:_run_check_command", "segdeploy.calibration.cli:calibrate_command",
         "segdeploy.precision.accuracy:check_accuracy_many", "segdeploy.trt.trtexec:trtexec_command")


def test_functions_that_did_several_jobs_stay_split(structure):
    long = {entry.split(" ", 1)[1]: int(entry.split(" ", 1)[0]) for entry in structure["functions_over_60_lines"]}
    assert [f for f in SPLIT if f in long] == []
    assert max(long.values(), default=0) <= 100, long

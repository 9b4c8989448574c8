"""With ``--json`` the segdeploy.result document is always printed and is the only thing on stdout: click usage
errors, every merge failure, factories that print (Python, fd 1, child processes); library warnings are
summarised (JSON notes + one ``note:`` line), never dumped raw; -q and progress lines still behave."""

from __future__ import annotations

import json
import re

import pytest

from rhelpers import EXAMPLE, one_error_line, run, run_subprocess


def _document(out: str) -> dict:
    """stdout must be exactly one segdeploy.result JSON document."""
    doc = json.loads(out)  # raises on anything else around it
    assert doc["schema"] == "segdeploy.result" and doc["schema_version"] == 1, doc
    return doc


def _assert_failed(code: int, out: str, err: str, exit_code: int, command: str | None) -> dict:
    line = one_error_line(err)
    doc = _document(out)
    assert code == exit_code and doc["exit_code"] == exit_code and doc["ok"] is False, (code, doc)
    assert doc["command"] == command and doc["error"]["message"] == line[len("error: "):], doc
    return doc


@pytest.fixture()
def images(tmp_path):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 80, 120)).save(d / f"a{i}.png")
    return d


# ----------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("argv, command, match", [
    (["export", "--model", "m:f", "--json"], "export", "has no file to put the export beside; pass --out DIR"),
    (["check", "--json", "--frobnicate"], "check", "no such option '--frobnicate'"),
    (["frobnicate", "--json"], None, "no such command 'frobnicate'"),
    (["check", "--model", "m:f", "--candidate", "x.onnx", "--data", ".", "--layout", "nope", "--json"], "check",
     "'nope' is not one of 'folder', 'voc'"),
    (["check", "--model", "m:f", "--candidate", "x.onnx", "--data", ".", "--batch-size", "two", "--json"], "check",
     "'two' is not a valid integer"),
    (["merge", "--json"], "merge", "missing argument 'SHARDS...'"),
    (["plugins", "nosuch", "--json"], "plugins", "no such command 'nosuch'"),
])
def test_usage_errors_print_the_document(tmp_path, capsys, monkeypatch, argv, command, match):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    doc = _assert_failed(code, out, err, 2, command)
    assert match in doc["error"]["message"] and doc["error"]["type"] == "UsageError"


def test_usage_error_without_json_prints_nothing_on_stdout(capsys):
    code, out, err = run(capsys, "frobnicate")
    assert code == 2 and out == "" and "no such command" in one_error_line(err)


# ------------------------------------------------------------------------------------------------ merge


@pytest.fixture(scope="module")
def shards(good_export, tmp_path_factory):
    """Shards 0/2 and 1/2 of dataset A, shard 1/2 of dataset B (same size), a complete report of A."""
    from PIL import Image

    from segdeploy.cli import main

    root = tmp_path_factory.mktemp("shards")
    for name, colour in (("A", 30), ("B", 200)):
        (root / name).mkdir()
        for i in range(4):
            Image.new("RGB", (32, 32), (colour, 10 * i, 50)).save(root / name / f"{name.lower()}{i}.png")
    runs = {"a0": ("A", "0/2"), "a1": ("A", "1/2"), "b1": ("B", "1/2"), "whole": ("A", None)}
    for key, (ds, shard) in runs.items():
        argv = ["check", "--model", "rmodels:tiny", "--candidate", str(good_export / "model.onnx"), "--data",
                str(root / ds), "--report", str(root / f"{key}.json"), "-q"]
        assert main(argv + (["--shard", shard] if shard else [])) == 0
    return root


def test_merge_of_one_dataset_passes(shards, capsys):
    code, out, err = run(capsys, "merge", shards / "a0.json", shards / "a1.json", "--json")
    doc = _document(out)
    assert code == 0 and doc["ok"] and doc["command"] == "merge", err
    assert doc["stages"]["check"]["dataset"]["num_evaluated"] == 4


def test_merge_of_shards_of_two_datasets_is_refused(shards, capsys):
    code, out, err = run(capsys, "merge", shards / "a0.json", shards / "b1.json", "--json")
    doc = _assert_failed(code, out, err, 1, "merge")
    msg = doc["error"]["message"]
    assert f"{shards / 'b1.json'} (shard 1/2) and {shards / 'a0.json'} (shard 0/2) were run on different datasets" in msg
    a0, b1 = (json.loads((shards / f"{k}.json").read_text())["dataset"]["fingerprint"] for k in ("a0", "b1"))
    assert len(a0) == 64 and a0 != b1


@pytest.mark.parametrize("case, match", [
    ("missing-file", "parity report {root}/nope.json not found"),
    ("not-json", "parity report {root}/bad.json is not valid JSON"),
    ("not-a-report", "is not a segdeploy parity report"),
    ("complete", "{root}/whole.json is a complete report, not a --shard result"),
    ("duplicate", "shard 0/2 is given more than once ({root}/a0.json, {root}/a0.json"),
    ("missing-shard", "shards do not cover 0..1 (missing [1])"),
    ("other-candidate", "differ in candidate.sha256"),
    ("bad-types", "shard.index must be in 0..1048575, got -1"),
    ("huge-classes", "classes.num_classes must be in 1..65535"),
    ("ragged-matrix", "confusion.agreement.matrix has 1 rows for 3 classes"),
])
def test_every_merge_failure_prints_the_document(shards, tmp_path, capsys, case, match):
    a0, a1 = shards / "a0.json", shards / "a1.json"
    doc0 = json.loads(a0.read_text())

    def variant(mutate):
        d = json.loads(a1.read_text())
        mutate(d)
        p = tmp_path / "variant.json"
        p.write_text(json.dumps(d))
        return p

    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something.else"}))
    mutations = {
        "other-candidate": lambda d: d["candidate"].update(sha256="f" * 64),
        "bad-types": lambda d: d["shard"].update(index=-1),
        "huge-classes": lambda d: d["classes"].update(num_classes=10**9),
        "ragged-matrix": lambda d: d["confusion"]["agreement"].update(matrix=[[1, 2, 3]]),
    }
    argv = [a0, variant(mutations[case])] if case in mutations else {
        "missing-file": [a0, tmp_path / "nope.json"],
        "not-json": [a0, tmp_path / "bad.json"],
        "not-a-report": [a0, tmp_path / "other.json"],
        "complete": [shards / "whole.json", a1],
        "duplicate": [a0, a0],
        "missing-shard": [a0],
    }[case]
    assert doc0["classes"]["num_classes"] == 3
    code, out, err = run(capsys, "merge", *argv, "--json")
    doc = _assert_failed(code, out, err, 1, "merge")
    root = tmp_path if case in ("missing-file", "not-json") else shards
    assert match.format(root=root) in doc["error"]["message"], doc["error"]


# ------------------------------------------------------------------------------ stdout is the document


def test_a_factory_printing_to_stdout_cannot_corrupt_the_document(good_export, images):
    r = run_subprocess("check", "--model", "rmodels:prints_to_stdout", "--candidate", good_export / "model.onnx",
                       "--data", images, "--json")
    assert r.returncode == 0, r.stderr
    doc = _document(r.stdout)
    assert doc["command"] == "check" and doc["ok"]
    for text in ("factory: building the model", "factory: raw write to fd 1", "factory: child process"):
        assert text in r.stderr and text not in r.stdout  # redirected to stderr, not lost


def test_a_failing_command_with_a_chatty_factory_still_prints_only_the_document(good_export, tmp_path):
    r = run_subprocess("check", "--model", "rmodels:prints_to_stdout", "--candidate", good_export / "model.onnx",
                       "--data", tmp_path / "nope", "--json")
    line = one_error_line(r.stderr)
    doc = _document(r.stdout)
    assert r.returncode == 1 and doc["exit_code"] == 1 and doc["error"]["message"] == line[len("error: "):]


def test_library_warnings_are_summarised_not_dumped(good_export, images):
    r = run_subprocess("check", "--model", "rmodels:warns", "--candidate", good_export / "model.onnx",
                       "--data", images, "--json")
    assert r.returncode == 0, r.stderr
    doc = _document(r.stdout)
    raw_dump = [ln for ln in r.stderr.splitlines() if re.match(r"^\S+:\d+: \w*Warning: ", ln) or "warnings.warn(" in ln]
    assert not raw_dump, r.stderr
    assert "upsample default will change" in " ".join(doc["notes"])  # the notes keep what was hidden
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note: ")]
    assert len(notes) <= 1 and all(len(n) < 400 for n in notes), r.stderr


def test_warnings_and_an_error_the_error_line_is_not_buried(good_export, tmp_path):
    r = run_subprocess("check", "--model", "rmodels:warns", "--candidate", good_export / "model.onnx",
                       "--data", tmp_path / "nope", "-q")
    line = one_error_line(r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and "nope" in line
    assert lines.index(line) == 0 and all(ln.startswith("note: ") for ln in lines[1:]), r.stderr  # never before it


def test_warning_capture_restores_the_warning_machinery(capsys):
    import warnings

    from segdeploy.cli import captured_warnings, warning_notes

    filters, show = list(warnings.filters), warnings.showwarning
    caught: list = []
    with captured_warnings(caught):
        warnings.warn("inside", FutureWarning)
    assert warnings.filters == filters and warnings.showwarning is show
    assert warning_notes(caught) == [f"warning: FutureWarning: inside (test_json_document.py:{_line_of('inside')})"]


def _line_of(text: str) -> int:
    from pathlib import Path

    lines = Path(__file__).read_text().splitlines()
    return next(i for i, ln in enumerate(lines, 1) if f'warnings.warn("{text}"' in ln)


def test_quiet_and_progress_lines(good_export, tmp_path, capsys, images):
    code, out, err = run(capsys, "bundle", good_export, "--out", tmp_path / "b1", "--samples", images)
    assert code == 0 and re.search(r"^\[\s*\d+\.\ds\] ", err, re.M), err  # progress on stderr
    assert "bundle " in out
    code, out, err = run(capsys, "bundle", good_export, "--out", tmp_path / "b2", "--samples", images, "-q")
    assert code == 0 and err == "" and "bundle " in out
    code, out, err = run(capsys, "bundle", good_export, "--out", tmp_path / "b3", "--samples", images, "--json")
    assert code == 0 and _document(out)["command"] == "bundle"

"""No export directory, lock, sibling, report path or cache can redirect a write or hang a command (issue 14).

Each case plants something hostile -- a link in place of the lock or of a listed file, a hard link to an outside
file, a fake ``.exp.old-*`` sibling, a report path onto an artifact, a FIFO / directory / device link in place of
the manifest or a listed file -- runs the real CLI with ``--json`` and asserts: exactly one ``error:`` line, the
exit code, the ``segdeploy.result`` document on stdout, the published files unchanged, and every file outside the
directory unchanged in content *and* mode. Commands that could block on a FIFO run as subprocesses with a
timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from rhelpers import one_error_line, run, run_subprocess

HANG_TIMEOUT = 180  # seconds; a command that blocks on a FIFO is killed and the test fails


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def factory_export(tmp_path_factory) -> Path:
    """`segdeploy export --model rmodels:tiny` (so `precision --model rmodels:tiny` accepts it as its source)."""
    from segdeploy.cli import main

    d = tmp_path_factory.mktemp("fs") / "exp"
    assert main(["export", "--model", "rmodels:tiny", "--out", str(d), "--shape", "1x3x32x32", "--max-batch", "2",
                 "-q"]) == 0
    return d


@pytest.fixture
def exp(factory_export, tmp_path) -> Path:
    d = tmp_path / "exp"
    shutil.copytree(factory_export, d)
    return d


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    import numpy as np
    from PIL import Image

    d = tmp_path_factory.mktemp("imgs")
    for i in range(4):
        Image.fromarray((np.random.RandomState(i).rand(32, 32, 3) * 255).astype("uint8")).save(d / f"{i}.png")
    return d


def listing(d: Path) -> dict[str, object]:
    """Every entry of ``d`` without following links or opening FIFOs: bytes for files, else its kind/target."""
    out: dict[str, object] = {}
    for p in sorted(d.iterdir()):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[p.name] = ("link", os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            out[p.name] = (p.read_bytes(), stat.S_IMODE(st.st_mode))
        else:
            out[p.name] = ("kind", stat.S_IFMT(st.st_mode))
    return out


def outside(p: Path) -> tuple[bytes, int, int]:
    """Content, mode and inode of a file outside the export directory (must never change)."""
    st = os.stat(p)
    return p.read_bytes(), stat.S_IMODE(st.st_mode), st.st_ino


def refused(code: int, out: str, err: str, want_code: int, command: str) -> str:
    """One error line, the exit code and the matching segdeploy.result document; returns the line."""
    line = one_error_line(err)
    assert code == want_code, err
    doc = json.loads(out)
    assert doc["schema"] == "segdeploy.result" and doc["command"] == command, out
    assert doc["ok"] is False and doc["exit_code"] == want_code and doc["published"] is False, out
    assert doc["error"]["message"] == line[len("error: "):], (doc["error"], line)
    return line


def ok_doc(code: int, out: str, err: str, command: str) -> dict:
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "segdeploy.result" and doc["command"] == command and doc["ok"] is True, out
    return doc


def cli(tmp_path: Path, command: str, d: Path, images: Path) -> list:
    """The argv of ``command`` on export directory ``d`` (with --json; no user cache touched)."""
    return {
        "check": ["check", "--model", "rmodels:tiny", "--candidate", d / "model.onnx", "--data", images, "--json"],
        "precision": ["precision", d, "--model", "rmodels:tiny", "--fp16", "--json"],
        "calibrate": ["calibrate", d, "--calib", images, "--no-cache", "--json"],
        "build": ["build", d, "--json"],
        "bundle": ["bundle", d, "--out", tmp_path / "bundle", "--samples", images, "--json"],
        "bench": ["bench", d, "--iters", "1", "--warmup", "1", "--json"],
    }[command]


def run_bounded(*argv) -> tuple[int, str, str]:
    try:
        r = run_subprocess(*argv, timeout=HANG_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"segdeploy {argv[0]} blocked for {HANG_TIMEOUT} s (a FIFO was opened for reading)")
    return r.returncode, r.stdout, r.stderr


# ------------------------------------------------------------------------------------------- the lock


@pytest.mark.parametrize("damage", ["none", "refused-after-lock"])
def test_lock_symlink_to_an_existing_file_is_refused_and_the_file_untouched(exp, images, tmp_path, capsys, damage):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's data\n")
    victim.chmod(0o600)
    lock = tmp_path / ".exp.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    if damage != "none":  # a command that would be refused after taking the lock
        (exp / "manifest.json").write_text("{oops")
    before, victim_before = listing(exp), outside(victim)
    results = {command: run(capsys, *cli(tmp_path, command, exp, images)) for command in ("calibrate", "precision")}
    assert outside(victim) == victim_before  # not truncated, no pid written, mode kept
    assert listing(exp) == before and lock.is_symlink()
    for command, (code, out, err) in results.items():
        line = refused(code, out, err, 1, command)
        if damage == "none" or command == "calibrate":  # (precision reads the manifest before it locks)
            assert "the lock" in line and "is a symbolic link" in line and "remove it" in line, line


def test_dangling_lock_symlink_creates_nothing(exp, images, tmp_path, capsys):
    target = tmp_path / "created-through-the-lock"
    lock = tmp_path / ".exp.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    before = listing(exp)
    code, out, err = run(capsys, *cli(tmp_path, "calibrate", exp, images))
    assert "symbolic link" in refused(code, out, err, 1, "calibrate")
    assert not os.path.lexists(target) and listing(exp) == before


def test_hard_linked_lock_is_used_but_never_written(exp, images, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's data\n")
    victim.chmod(0o600)
    lock = tmp_path / ".exp.lock"
    lock.unlink(missing_ok=True)
    os.link(victim, lock)
    victim_before = outside(victim)
    code, out, err = run(capsys, *cli(tmp_path, "calibrate", exp, images))
    ok_doc(code, out, err, "calibrate")
    assert outside(victim) == victim_before


# ------------------------------------------------------------------------------------------- listed files


@pytest.mark.parametrize("command", ["calibrate", "precision"])
def test_symlink_in_place_of_a_listed_file_is_refused(exp, images, tmp_path, capsys, command):
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.copyfile(exp / "model.onnx", elsewhere)  # same bytes: the sha256 check alone would pass
    elsewhere.chmod(0o600)
    (exp / "model.onnx").unlink()
    (exp / "model.onnx").symlink_to(elsewhere)
    before, elsewhere_before = listing(exp), outside(elsewhere)
    code, out, err = run(capsys, *cli(tmp_path, command, exp, images))
    line = refused(code, out, err, 1, command)
    assert "model.onnx is a symbolic link, not a regular file" in line and "re-run `segdeploy export`" in line
    assert outside(elsewhere) == elsewhere_before and listing(exp) == before


@pytest.mark.parametrize("command", ["calibrate", "precision"])
def test_hard_link_in_place_of_a_listed_file_is_copied_never_chmodded(exp, images, tmp_path, capsys, command):
    original = (exp / "model.onnx").read_bytes()
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.copyfile(exp / "model.onnx", elsewhere)
    elsewhere.chmod(0o600)
    (exp / "model.onnx").unlink()
    os.link(elsewhere, exp / "model.onnx")  # equal bytes: it passes the sha256 check, but the inode is shared
    elsewhere_before = outside(elsewhere)
    code, out, err = run(capsys, *cli(tmp_path, command, exp, images))
    doc = ok_doc(code, out, err, command)
    assert outside(elsewhere) == elsewhere_before  # content, mode (0600) and inode: untouched
    assert os.stat(elsewhere).st_nlink == 1  # the published set no longer shares it
    published = os.stat(exp / "model.onnx")
    assert published.st_ino != elsewhere_before[2] and stat.S_IMODE(published.st_mode) == 0o644
    assert (exp / "model.onnx").read_bytes() == original
    assert any("copied model.onnx" in n for n in doc["notes"]), doc["notes"]


# ------------------------------------------------------------------------------------------- siblings


def test_planted_old_symlink_is_never_recovered_as_the_directory(exp, images, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("mine\n")
    shutil.move(exp, tmp_path / "moved-away")
    planted = tmp_path / ".exp.old-deadbeef"
    planted.symlink_to(elsewhere)
    code, out, err = run(capsys, *cli(tmp_path, "calibrate", exp, images))
    assert "does not exist" in refused(code, out, err, 1, "calibrate")
    assert not os.path.lexists(exp) and planted.is_symlink()
    # a fresh export creates a real directory; the planted link and what it points to stay as they were
    code, out, err = run(capsys, "export", "--model", "rmodels:tiny", "--out", exp, "--shape", "1x3x32x32", "--json")
    doc = ok_doc(code, out, err, "export")
    assert exp.is_dir() and not exp.is_symlink() and sorted(os.listdir(exp)) == ["manifest.json", "model.onnx"]
    assert listing(elsewhere) == {"mine.txt": (b"mine\n", 0o644)} and planted.is_symlink()
    assert any(".exp.old-deadbeef alone" in n for n in doc["notes"]), doc["notes"]


def test_planted_old_directory_without_our_marker_is_left_alone(exp, images, tmp_path, capsys):
    shutil.move(exp, tmp_path / "moved-away")
    planted = tmp_path / ".exp.old-cafebabe"
    planted.mkdir()
    (planted / "notes.txt").write_text("not a segdeploy set\n")
    stale = tmp_path / ".exp.staging-0badf00d"  # an unmarked "staging" directory: not ours either
    stale.mkdir()
    (stale / "keep.txt").write_text("keep\n")
    before = {p: listing(p) for p in (planted, stale)}
    code, out, err = run(capsys, "export", "--model", "rmodels:tiny", "--out", exp, "--shape", "1x3x32x32", "--json")
    ok_doc(code, out, err, "export")
    assert sorted(os.listdir(exp)) == ["manifest.json", "model.onnx"]  # not the planted directory, renamed
    assert {p: listing(p) for p in (planted, stale)} == before


# ------------------------------------------------------------------------------------------- outputs vs inputs


@pytest.mark.parametrize("option", ["--report", "--html"])
@pytest.mark.parametrize("where, match", [
    ("exp/model.onnx", "would overwrite the candidate"),  # the candidate is exp/model.onnx
    ("exp/manifest.json", "would overwrite an artifact of the export directory"),
    ("exp/model.fp16.onnx", "would overwrite an artifact of the export directory"),  # an owned name, not there yet
    ("cand.onnx", "would overwrite the candidate"),
    ("hardlink.json", "would overwrite"),  # another name for exp/manifest.json's inode
])
def test_check_reports_never_land_on_inputs_or_artifacts(exp, images, tmp_path, capsys, monkeypatch, option, where,
                                                          match):
    monkeypatch.chdir(tmp_path)
    cand = tmp_path / "cand.onnx"
    shutil.copyfile(exp / "model.onnx", cand)
    os.link(exp / "manifest.json", tmp_path / "hardlink.json")
    candidate = cand if where == "cand.onnx" else Path("exp/model.onnx")
    before, cand_before = listing(exp), outside(cand)
    code, out, err = run(capsys, "check", "--model", "rmodels:tiny", "--candidate", candidate, "--data", images,
                         option, where, "--json")
    line = refused(code, out, err, 2, "check")
    assert f"{option} {where} {match}" in line, line
    assert "choose" in line
    assert listing(exp) == before and outside(cand) == cand_before


def test_the_refusal_message_names_the_export_directory(exp, images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "check", "--model", "rmodels:tiny", "--candidate", tmp_path / "nowhere.onnx",
                         "--data", images, "--report", "exp/model.onnx", "--json")
    line = refused(code, out, err, 2, "check")
    assert line == ("error: --report exp/model.onnx would overwrite an artifact of the export directory exp; "
                    "choose a path outside it")


def test_a_report_beside_the_artifacts_under_a_user_name_is_allowed(exp, images, tmp_path, capsys):
    before = listing(exp)
    code, out, err = run(capsys, "check", "--model", "rmodels:tiny", "--candidate", exp / "model.onnx", "--data", images,
                         "--report", exp / "my-report.json", "--json")
    ok_doc(code, out, err, "check")
    assert json.loads((exp / "my-report.json").read_text())["schema"] == "segdeploy.parity_report"
    assert {k: v for k, v in listing(exp).items() if k != "my-report.json"} == before


def test_bench_report_never_lands_on_an_artifact(exp, tmp_path, capsys):
    before = listing(exp)
    code, out, err = run(capsys, "bench", exp, "--report", exp / "model.onnx", "--json")
    assert "would overwrite an artifact of the export directory" in refused(code, out, err, 2, "bench")
    assert listing(exp) == before


def test_bundle_out_inside_the_export_directory_is_refused(exp, images, tmp_path, capsys):
    before = listing(exp)
    code, out, err = run(capsys, "bundle", exp, "--out", exp / "b", "--samples", images, "--json")
    assert "is inside the export directory" in refused(code, out, err, 2, "bundle")
    assert listing(exp) == before


# ------------------------------------------------------------------------------------------- FIFOs, devices, dirs


@pytest.mark.parametrize("name", ["manifest.json", "model.onnx"])
@pytest.mark.parametrize("command", ["check", "precision", "calibrate", "build", "bundle", "bench"])
def test_a_fifo_in_the_directory_is_one_line_never_a_hang(exp, images, tmp_path, command, name):
    (exp / name).unlink()
    os.mkfifo(exp / name)
    before = listing(exp)
    code, out, err = run_bounded(*cli(tmp_path, command, exp, images))
    line = refused(code, out, err, 1, command)
    assert f"{name} is a FIFO (named pipe), not a regular file" in line and "re-run `segdeploy export`" in line
    assert listing(exp) == before


@pytest.mark.parametrize("how, kind", [("directory", "is a directory"), ("dev-zero", "is a symbolic link")])
@pytest.mark.parametrize("command", ["check", "calibrate"])
def test_a_manifest_that_is_not_a_regular_file_is_one_line(exp, images, tmp_path, command, how, kind):
    (exp / "manifest.json").unlink()
    if how == "directory":
        (exp / "manifest.json").mkdir()
    else:
        (exp / "manifest.json").symlink_to("/dev/zero")
    before = listing(exp)
    code, out, err = run_bounded(*cli(tmp_path, command, exp, images))  # check used to run without the manifest
    line = refused(code, out, err, 1, command)
    assert f"manifest.json {kind}, not a regular file" in line, line
    assert listing(exp) == before


@pytest.mark.parametrize("bad", ["model\u0000.onnx", "\ud800.onnx"])
@pytest.mark.parametrize("command", ["check", "calibrate"])
def test_a_listed_name_that_is_not_text_is_one_line(exp, images, tmp_path, capsys, command, bad):
    doc = json.loads((exp / "manifest.json").read_text())
    doc["files"][bad] = doc["files"]["model.onnx"]  # JSON can carry a NUL or a lone surrogate; a path cannot
    (exp / "manifest.json").write_text(json.dumps(doc))
    before = listing(exp)
    code, out, err = run(capsys, *cli(tmp_path, command, exp, images))
    line = refused(code, out, err, 1, command)
    # the manifest validator names it first (not text / not an artifact name); safefs refuses it at any open
    assert any(m in line for m in ("not a plain file name", "not valid Unicode text", "not an artifact name")), line
    assert listing(exp) == before

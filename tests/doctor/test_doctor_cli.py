"""`segdeploy doctor` through the CLI entry point: exit codes, JSON, table, --plugins, failures."""

from __future__ import annotations

import json

from segdeploy.cli import main
from segdeploy.doctor import report as report_mod
from segdeploy.platform import probe
from segdeploy.plugins.locate import PLUGINS_ENV


def test_json(capsys):
    assert main(["doctor", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["schema"] == "segdeploy.result" and res["command"] == "doctor" and res["ok"]
    rep = res["stages"]["doctor"]
    assert rep["schema"] == "segdeploy.doctor" and rep["schema_version"] == 1
    assert [c["name"] for c in rep["capabilities"]][:2] == ["export", "quantize"]


def test_table(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for heading in ("Versions", "Toolchain", "CUDA and GPU", "segdeploy plugins", "Jetson", "What this machine can do"):
        assert f"\n{heading}\n" in out
    assert "  build engines" in out and "  build plugins" in out


def test_broken_probe_exit_0(monkeypatch, capsys):
    def boom(*a, **k):
        raise ValueError("nvidia-smi printed nonsense")

    monkeypatch.setattr(probe, "probe_gpu", boom)
    assert main(["doctor", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["stages"]["doctor"]
    assert rep["probes"]["gpu"]["status"] == "error"
    assert rep["probes"]["gpu"]["error"] == "ValueError: nvidia-smi printed nonsense"


def test_plugins_option(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    assert main(["doctor", "--json", "--plugins", str(tmp_path / "missing.so")]) == 0
    p = json.loads(capsys.readouterr().out)["stages"]["doctor"]["probes"]["plugin_library"]
    assert p["status"] == "error" and "not found via --plugins" in p["error"]


def test_internal_failure_exit_1(monkeypatch, capsys):
    def broken(**kwargs):
        raise KeyError("capabilities")

    monkeypatch.setattr(report_mod, "collect", broken)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: doctor could not build its report (KeyError: 'capabilities')")
    assert len(err.strip().splitlines()) == 1


def test_help_lists_options(capsys):
    assert main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out and "--plugins" in out

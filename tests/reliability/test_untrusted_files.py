"""Nothing from an untrusted file is executed: pickled .pt2 entries, pickled modules, custom objects; factories
cannot end the command with status 0 or reach the network. Crafted archive layouts: test_pt2_archives.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import pytest
import torch

from rhelpers import env, one_error_line, run, run_subprocess


class _Payload:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory):
    import rmodels
    from torch.export import Dim

    ep = torch.export.export(rmodels.tiny(), (torch.randn(2, 3, 32, 32),),
                             dynamic_shapes=({0: Dim("b", max=4), 2: 2 * Dim("h", max=64), 3: 2 * Dim("w", max=64)},))
    p = tmp_path_factory.mktemp("pt2") / "clean.pt2"
    torch.export.save(ep, str(p))
    return p


def _rewrite(src, dst, replace=None, config_patch=None):
    """Copy a .pt2 archive, replacing entries ({suffix: bytes}) and patching the weights config JSON."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    data = new
            if config_patch and info.filename.endswith("model_weights_config.json"):
                cfg = json.loads(data)
                config_patch(cfg)
                data = json.dumps(cfg).encode()
            zout.writestr(info, data)
    return dst


def _pickle_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _plain_torch_runs_it(path, marker) -> bool:
    """Control: plain torch.export.load really executes the payload (so the refusal below is meaningful)."""
    code = f"import torch; torch.export.load({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], capture_output=True, env=env(), timeout=300)
    ran = marker.exists()
    if ran:
        marker.unlink()
    return ran


def test_sample_inputs_payload_is_refused_everywhere(clean_pt2, tmp_path, capsys, good_export):
    marker = tmp_path / "MARKER"
    evil = _rewrite(clean_pt2, tmp_path / "evil.pt2", replace={"data/sample_inputs/model.pt": _pickle_bytes(_Payload(marker))})
    assert _plain_torch_runs_it(evil, marker), "the crafted archive must be a live exploit for this test to mean anything"
    out = tmp_path / "out"
    data = tmp_path / "images"
    data.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 20, 30)).save(data / "a.png")
    for argv in (["export", evil, "--out", out, "-q"],
                 ["check", "--reference", evil, "--candidate", good_export / "model.onnx", "--data", data, "-q"],
                 ["precision", good_export, evil, "--fp16", "-q"]):
        code, _, err = run(capsys, *argv)
        line = one_error_line(err)
        assert code == 1, err
        assert "data/sample_inputs/model.pt" in line and "--trust-pickle" in line and "unpickling it calls exec" in line
        assert not marker.exists()
    assert not out.exists()


def test_pickled_weight_payload_is_refused(clean_pt2, tmp_path, capsys):
    marker = tmp_path / "MARKER"

    def mark_pickled(cfg):
        cfg["config"][next(iter(cfg["config"]))]["use_pickle"] = True

    evil = _rewrite(clean_pt2, tmp_path / "evil.pt2", replace={"data/weights/weight_0": _pickle_bytes(_Payload(marker))},
                    config_patch=mark_pickled)
    code, _, err = run(capsys, "export", evil, "--out", tmp_path / "out", "-q")
    assert code == 1 and "data/weights/weight_0" in one_error_line(err)
    assert not marker.exists()


def test_weights_only_pickled_weight_is_not_refused(clean_pt2, tmp_path, capsys):
    """A pickled weight entry (use_pickle) that PyTorch's weights-only unpickler accepts loads without the opt-in."""
    def mark_pickled(cfg):
        meta = cfg["config"]["c1.weight"]
        meta["use_pickle"] = True

    import rmodels

    weight = torch.nn.Parameter(rmodels.tiny().c1.weight.detach())
    odd = _rewrite(clean_pt2, tmp_path / "odd.pt2", replace={"data/weights/weight_0": _pickle_bytes(weight)},
                   config_patch=mark_pickled)
    # a plain tensor passes PyTorch's restricted unpickler: not refused
    code, _, err = run(capsys, "export", odd, "--out", tmp_path / "a", "-q", "--max-batch", "2")
    assert code == 0, err


def test_pickled_module_needs_trust(tmp_path, capsys):
    import rmodels

    p = tmp_path / "model.pt"
    torch.save(rmodels.tiny(), p)
    code, _, err = run(capsys, "export", p, "--out", tmp_path / "o", "-q")
    assert code == 1 and "--trust-pickle" in one_error_line(err) and "torch.export.save" in err
    assert not (tmp_path / "o").exists()


def test_clean_program_is_not_refused(clean_pt2, tmp_path, capsys):
    from segdeploy.exportdir import ExportDir

    code, _, err = run(capsys, "export", clean_pt2, "--out", tmp_path / "o", "-q", "--max-batch", "2")
    assert code == 0, err
    assert ExportDir.open(tmp_path / "o").manifest["source"]["format"] == "pt2"


class _InputsPayload:
    """Unpickles to valid sample inputs after writing the marker: the load succeeds when it is allowed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"(open({self.marker!r}, 'w').write('ran'), "
                       "((__import__('torch').randn(2, 3, 32, 32),), {}))[1]",))


def test_trust_pickle_is_the_explicit_opt_in(clean_pt2, tmp_path, capsys):
    """Without --trust-pickle the payload is refused; with it the load is unrestricted (the payload runs)."""
    marker = tmp_path / "MARKER"
    odd = _rewrite(clean_pt2, tmp_path / "odd.pt2", replace={"data/sample_inputs/model.pt": _pickle_bytes(_InputsPayload(marker))})
    code, _, err = run(capsys, "export", odd, "--out", tmp_path / "a", "-q", "--max-batch", "2")
    assert code == 1 and "data/sample_inputs/model.pt (unpickling it calls eval)" in one_error_line(err)
    assert not marker.exists() and not (tmp_path / "a").exists()
    code, _, err = run(capsys, "export", odd, "--out", tmp_path / "b", "-q", "--max-batch", "2", "--trust-pickle")
    assert code == 0, err
    assert marker.exists()


def test_factory_calling_os_exit_is_an_error_not_exit_0(tmp_path):
    r = run_subprocess("export", "--model", "rmodels:calls_os_exit", "--out", tmp_path / "o", "-q")
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and "factory rmodels:calls_os_exit called os._exit(0) instead of returning a model" in line
    assert not (tmp_path / "o").exists()


def test_raw_socket_download_is_refused(tmp_path, capsys):
    code, _, err = run(capsys, "export", "--model", "rmodels:raw_socket_download", "--out", tmp_path / "o", "-q")
    line = one_error_line(err)
    assert code == 1 and "tried to download weights (from 192.0.2.1)" in line
    assert not (tmp_path / "o").exists()


def test_hub_libraries_are_offline_while_a_factory_runs(tmp_path, capsys, monkeypatch):
    import os

    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    code, _, err = run(capsys, "export", "--model", "rmodels:needs_hub_offline", "--out", tmp_path / "o", "-q",
                       "--shape", "1x3x32x32", "--max-batch", "2")
    assert code == 0, err
    assert "HF_HUB_OFFLINE" not in os.environ  # restored after loading


def test_torchscript_load_warnings_do_not_print_before_the_error_line(tmp_path, capsys):
    import rmodels

    p = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(rmodels.tiny(), torch.randn(1, 3, 32, 32)), str(p))
    code, _, err = run(capsys, "export", p, "--out", tmp_path / "o", "-q", "--shape", "1x3x32x32", "--class-names", "a,b")
    assert code == 2 and "--class-names lists 2 names" in one_error_line(err)
    assert len(err.strip().splitlines()) == 1, err  # torch.jit.load's FutureWarning went to the notes

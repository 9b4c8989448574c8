"""Helpers shared by the build stage tests (a module of its own: several test folders have a conftest.py)."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path
from typing import Any

from standin import make_trt_module
from trt_helpers import plan_bytes


def snapshot(directory: Path) -> dict[str, Any]:
    """Every file's bytes in ``directory`` plus the names beside it (lock files, staging folders)."""
    files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
    return {"files": files, "siblings": sorted(p.name for p in directory.parent.iterdir())}


def install_standin(monkeypatch, version: str = "10.16", **kwargs: Any):
    """Make ``import tensorrt`` return the strict stand-in for ``version`` (tests/trt/standin.py).

    The stand-in records every API call and never builds: its ``Builder.build_serialized_network`` still runs
    (it reads the calibrator's cache and logs its "no build" error), and ONLY its result -- None -- is replaced by
    a handcrafted plan *header* (magic ``ftrt``, the stand-in's version at bytes 24..27, zero padding; the size
    differs per call so each engine file is distinct). No engine is built and nothing can run these bytes. The
    timing cache the stand-in cannot serialize is replaced by its input + a marker, as tests/trt does.
    """
    trt = make_trt_module(version, **kwargs)
    header = tuple(int(p) for p in trt.__version__.split(".")[:4])
    original = trt.Builder.build_serialized_network
    sizes = iter(range(4096, 1 << 20, 64))

    def build_serialized_network(self, network, config):
        assert original(self, network, config) is None  # the stand-in's own (recorded) build: never a plan
        return plan_bytes(header, size=next(sizes))  # type: ignore[arg-type]

    monkeypatch.setattr(trt.Builder, "build_serialized_network", build_serialized_network)
    monkeypatch.setattr(trt.ITimingCache, "serialize", lambda self: self._s["data"] + b"+timings")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec("tensorrt") sees an installed module
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def hide_tensorrt(monkeypatch) -> None:
    """``import tensorrt`` fails (as on this machine) even where TensorRT is installed; no trtexec on PATH and no
    $TRTEXEC either, so the printed commands name JetPack's trtexec path."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setattr("segdeploy.trt.trtexec._on_path", lambda name: None)


TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # segdeploy.trt.trtexec.JETPACK_TRTEXEC


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from segdeploy.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def trtexec_lines(out: str) -> list[str]:
    """The printed trtexec commands (a setup command before ``&&`` is kept on the line)."""
    return [line.strip() for line in out.splitlines()
            if line.strip().startswith(("trtexec --", f"{TRTEXEC} --", "sed "))]


def make_plugin_export(src: Path, dst: Path) -> Path:
    """A copy of export ``src`` whose model needs segdeploy's plugins: ``model.trt.onnx`` (a real, small ONNX with
    SegdeployMaxPoolWithIndices/SegdeployMaxUnpool nodes, as segdeploy.plugins.onnx_mapping writes them) listed as
    derived from model.onnx, and the manifest's ``tensorrt_plugins`` section naming those nodes."""
    import shutil

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from segdeploy.exportdir import Transaction
    from segdeploy.vocab import TRT_ONNX

    shutil.copytree(src, dst)
    w = numpy_helper.from_array(np.full((6, 3, 3, 3), 0.1, np.float32), "w")
    plug = dict(domain="segdeploy", plugin_version="1", plugin_namespace="segdeploy")

    def io(name, c):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", c, "height", "width"])

    graph = helper.make_graph([
        helper.make_node("SegdeployMaxPoolWithIndices", ["input"], ["p", "idx"], name="pool1_plugin",
                         kernel_size=[2, 2], stride=[2, 2], **plug),
        helper.make_node("SegdeployMaxUnpool", ["p", "idx"], ["u"], name="unpool1_plugin", kernel_size=[2, 2],
                         stride=[2, 2], **plug),
        helper.make_node("Conv", ["u", "w"], ["logits"], pads=[1, 1, 1, 1], name="conv0"),
    ], "g", [io("input", 3)], [io("logits", 6)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("segdeploy", 1)])
    with Transaction(dst, fresh=False, command="test") as txn:
        txn.write_bytes(TRT_ONNX, model.SerializeToString(), "onnx-trt", derived_from=("model.onnx",))
        txn.manifest["tensorrt_plugins"] = {"file": TRT_ONNX, "nodes": [
            {"kind": "maxpool_with_indices", "plugin": "SegdeployMaxPoolWithIndices", "name": "pool1_plugin"},
            {"kind": "maxunpool", "plugin": "SegdeployMaxUnpool", "name": "unpool1_plugin"}]}
        txn.commit()
    return dst


def one_error(err: str) -> bool:
    """stderr holds exactly one ``error:`` line (after any progress lines) and it is the last line."""
    lines = err.strip().splitlines()
    return bool(lines) and lines[-1].startswith("error: ") and sum(ln.startswith("error") for ln in lines) == 1

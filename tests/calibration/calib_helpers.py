"""Helpers for calibration tests: a tiny ONNX segmentation net built with onnx.helper, image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_model(path, seed: int = 0, nan_after_relu: bool = False, k: int = 2):
    """input [N,3,H,W] -> Conv(3->4) -> Relu -> Conv(4->k) -> logits (dynamic N/H/W)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(k, 4, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
    ]
    feat = "relu1"
    if nan_after_relu:
        # sqrt(relu - 1e9) is NaN everywhere: a tensor named 'bad_sqrt'
        c = numpy_helper.from_array(np.array(1e9, np.float32), "big")
        nodes += [helper.make_node("Sub", ["relu1", "big"], ["shifted"]), helper.make_node("Sqrt", ["shifted"], ["bad_sqrt"])]
        feat = "bad_sqrt"
        inits_extra = [c]
    else:
        inits_extra = []
    nodes.append(helper.make_node("Conv", [feat, "w2"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k, "height", "width"])],
        initializer=[w1, b1, w2] + inits_extra,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_images(folder, n: int, size=(32, 32), seed: int = 0, mode: str = "RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if mode == "L":
            arr = rng.integers(0, 256, size, dtype=np.uint8)
        else:
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / f"img_{i:04d}.png")
    return folder




def make_export_dir(folder, onnx_name: str = "model.onnx"):
    """A minimal export directory: the tiny ONNX + a schema-valid manifest (no torch needed)."""
    import tempfile

    from segdeploy.exportdir import Transaction
    from segdeploy.fsutil import sha256_file
    from segdeploy.spec import Preprocess, ShapeProfile

    onnx_path = make_model(Path(tempfile.mkdtemp(prefix="calib-model-")) / onnx_name)
    prof = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (8, 3, 64, 64))
    doc = {
        "schema": "segdeploy.manifest",
        "schema_version": 2,
        "segdeploy_version": "0.1.0",
        "source": {"format": "test", "sha256": "0" * 64},
        "model": {"in_channels": 3, "num_classes": 2, "spatial_multiple": 1, "output_selection": "tensor"},
        "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 3, "height", "width"], "profile": prof.to_dict()}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2, "height", "width"]}],
        "preprocess": Preprocess().to_dict(),
        "onnx": {"file": onnx_name, "opset": 17, "exporter": "test", "sha256": sha256_file(onnx_path)},
        "rewrites": [],
        "verification": {"passed": True, "shapes": []},
        "versions": {},
    }
    with Transaction(folder, fresh=True, command="test") as txn:
        txn.write_bytes(onnx_name, onnx_path.read_bytes(), "onnx")
        txn.set_manifest(doc)
        txn.commit()
    return folder

"""End-to-end variants (segdeploy.export.e2e, e2e_stage): the in-graph preprocessing is to_batch bit for bit, the network
is untouched (Q/DQ included), the class maps equal the source ONNX's and PyTorch's, refusals are one line."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tinymodels
import torch

from segdeploy.datasets.preprocess import to_batch
from segdeploy.errors import UsageError
from segdeploy.export import ExportOptions
from segdeploy.export.e2e import (
    ClassDtype,
    E2ESpec,
    build_e2e,
    network_unchanged,
    refusal,
)
from segdeploy.export.e2e_stage import (
    E2EOptions,
    class_map,
    frame_shapes,
    run,
    tile_frames,
)
from segdeploy.exportdir import ExportDir, Transaction
from segdeploy.pipeline import export_model
from segdeploy.spec import Preprocess
from segdeploy.vocab import (
    CLASS_MAP_NAME,
    E2E_INPUT_NAME,
    E2E_SCORES_NAME,
    INPUT_NAME,
    FileKind,
    Precision,
)

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT / "calibration" / "shapes" / "val"


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """The tiny model (spatial multiple 2) exported with a BGR, per-channel preprocessing and min H/W 16."""
    d = tmp_path_factory.mktemp("e2e") / "tiny"
    pre = Preprocess(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), channel_order="BGR")
    export_model(tinymodels.tiny_seg(), d, ExportOptions(shape="2x3x32x32", min_shape="1x3x16x16",
                                                         max_shape="4x3x64x64", preprocess=pre))
    return ExportDir.open(d)


@pytest.mark.parametrize("frame_order", ["RGB", "BGR"])
def test_in_graph_preprocessing_is_to_batch_bit_for_bit(tiny_export, frame_order):
    ed = tiny_export
    spec = E2ESpec(ed.preprocess, ed.profile, ed.num_classes, with_scores=True, input_order=frame_order)
    model = build_e2e(onnx.load(str(ed.file("model.onnx"))), spec)
    model.graph.output.append(onnx.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, None))
    sess = _session(model)
    rng = np.random.default_rng(1)
    for n, h, w in [(2, 32, 32), (1, 31, 45), (3, 7, 9), (1, 64, 63)]:  # aligned, odd, below min, odd at max
        rgb = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        frames = np.ascontiguousarray(rgb[..., ::-1]) if frame_order == "BGR" else rgb
        want, _ = to_batch(list(rgb), ed.preprocess, ed.profile)
        classes, scores, network_input = sess.run([CLASS_MAP_NAME, E2E_SCORES_NAME, INPUT_NAME], {E2E_INPUT_NAME: frames})
        assert network_input.shape == want.shape and np.array_equal(network_input, want)  # padding included
        plain = _session(onnx.load(str(ed.file("model.onnx")))).run(None, {INPUT_NAME: want})[0][:, :, :h, :w]
        assert np.array_equal(scores, plain)
        assert classes.dtype == np.uint8 and classes.shape == (n, h, w) and np.array_equal(classes, plain.argmax(1))


def test_refusals_are_one_line():
    assert "resize preprocessing" in refusal(Preprocess(resize="resize"), (1.0, 1.0), 3)
    assert "--resize pad" in refusal(Preprocess(resize="resize"), (1.0, 1.0), 3)
    assert "input resolution" in refusal(Preprocess(), (0.25, 0.25), 3)
    assert "3-channel" in refusal(Preprocess(), (1.0, 1.0), 1)
    assert "int32" in refusal(Preprocess(), (1.0, 1.0), 3, 300, ClassDtype.UINT8)
    assert refusal(Preprocess(), (1.0, 1.0), 3, 300) is None
    for reason in (refusal(Preprocess(resize="resize"), (1.0, 1.0), 3), refusal(Preprocess(), (0.5, 1.0), 3)):
        assert "\n" not in reason


def test_stage_refuses_resize_mode_before_any_work(tiny_export, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(tiny_export.path, d)
    with Transaction(d, fresh=False, command="test") as txn:
        txn.manifest["preprocess"]["resize"] = "resize"  # as a resize-mode export records it
        with pytest.raises(UsageError, match="--end-to-end needs pad preprocessing"):
            run(txn, E2EOptions())
    assert ExportDir.open(d).end_to_end is None


def test_binary_model_and_int32_class_map(tmp_path):
    d = tmp_path / "bin"
    export_model(tinymodels.tiny_seg(num_classes=1), d, ExportOptions(shape="1x3x32x32"))
    ed = ExportDir.open(d)
    for dtype, np_dtype in ((ClassDtype.AUTO, np.uint8), (ClassDtype.INT32, np.int32)):
        spec = E2ESpec(ed.preprocess, ed.profile, 1, class_dtype=dtype, with_scores=True)
        sess = _session(build_e2e(onnx.load(str(ed.file("model.onnx"))), spec))
        frames = np.random.default_rng(0).integers(0, 256, (1, 29, 33, 3), dtype=np.uint8)
        classes, scores = sess.run(None, {E2E_INPUT_NAME: frames})
        assert classes.dtype == np_dtype and np.array_equal(classes, (scores[:, 0] > 0).astype(np_dtype))
        assert set(np.unique(classes)) <= {0, 1}


def test_frame_shapes_cover_the_profile_and_padding(tiny_export):
    shapes = dict(frame_shapes(tiny_export.profile))
    assert {"min", "opt", "unaligned", "below-min"} <= set(shapes)
    assert "max" in shapes or {"max-batch", "max-hw"} <= set(shapes)  # the export's plan: never the max corner
    p = tiny_export.profile
    if "max" not in shapes:
        assert (p.max[0], p.max[2], p.max[3]) not in shapes.values()
    assert shapes["unaligned"][1] % 2 and shapes["below-min"][1] < 16
    frames = tile_frames((3, 40, 50), [np.full((8, 8, 3), 7, np.uint8)], np.random.default_rng(0))
    assert frames.shape == (3, 40, 50, 3) and (frames == 7).all()


# ------------------------------------------------------------------------------------------------ the example


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The shipped example exported with --int8 --fp16 (the published directory the stage runs on)."""
    from segdeploy.cli import main

    d = tmp_path_factory.mktemp("e2e-example") / "shapes"
    rc = main(["export", str(ROOT / "examples" / "shapes_unet.pt2"), "--out", str(d), "--shape", "1x3x128x128",
               "--int8", "--fp16", "--calib", str(ROOT / "calibration" / "shapes" / "calib"), "--calib-size", "8", "-q"])
    assert rc == 0
    return d


@pytest.mark.slow
def test_stage_on_the_example_every_precision(example, tmp_path):
    from segdeploy.load import load_model

    d = tmp_path / "shapes"
    shutil.copytree(example, d)
    module = load_model(ROOT / "examples" / "shapes_unet.pt2").module
    with Transaction(d, fresh=False, command="test") as txn:
        res = run(txn, E2EOptions(frames_from=str(VAL)), reference=module)
        txn.commit()
    ed = ExportDir.open(d)
    assert res.written == {p: p.e2e_file for p in (Precision.FP32, Precision.FP16, Precision.INT8)}
    for p, name in res.written.items():
        entry = ed.files[name]
        source = "model.onnx" if p == Precision.FP32 else ed.lowered_file(p)
        assert entry.kind == FileKind.ONNX_E2E and set(entry.derived_from) == {source} and ed.e2e_file(p) == name
        # the network is the source graph byte for byte: INT8 keeps exactly its Q/DQ nodes
        net, e2e = onnx.load(str(ed.file(source))), onnx.load(str(ed.file(name)))
        assert network_unchanged(net, e2e)
        qdq = [n.SerializeToString() for n in e2e.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert qdq == [n.SerializeToString() for n in net.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in e2e.graph.node if n.name.startswith("e2e/"))
        onnx.checker.check_model(e2e, full_check=True)
        ver = ed.end_to_end["variants"][p]["verification"]
        assert ver["passed"] and ver["min_agreement_vs_source"] == 1.0
        labels = {s["label"] for s in ver["shapes"]}
        assert labels >= {"min", "opt", "irregular", "unaligned", "below-min"}
        assert "max" in labels or labels >= {"max-batch", "max-hw"}  # the export's plan
        if p == Precision.FP32:
            assert all(s["decisive_vs_torch"] == 0 for s in ver["shapes"]) and ver["torch"] == "compared, gated"
        else:
            assert ver["min_agreement_vs_torch"] > 0.99
    assert res.io_bytes["plain"] == {"in": 4 * 3 * 128 * 128, "out": 4 * 6 * 128 * 128}
    assert res.io_bytes["end_to_end"] == {"in": 3 * 128 * 128, "out": 128 * 128}
    # a new model.int8.onnx retires the INT8 variant made from the old one (derived_from), nothing else
    with Transaction(d, fresh=False, command="test") as txn:
        model = onnx.load(str(txn.staged("model.int8.onnx")))
        model.doc_string = "changed"
        txn.write_bytes("model.int8.onnx", model.SerializeToString(), FileKind.ONNX_INT8)
        txn.commit()
    ed = ExportDir.open(d)
    assert ed.e2e_file(Precision.INT8) is None and not ed.has("model.int8.e2e.onnx") and ed.e2e_file(Precision.FP32)


@pytest.mark.slow
def test_example_class_map_equals_pytorch_argmax_on_real_images(example):
    """Validation images straight in (uint8 NHWC), class map out, vs PyTorch's argmax on to_batch's tensor."""
    from segdeploy.datasets import read_image
    from segdeploy.load import load_model

    ed = ExportDir.open(example)
    spec = E2ESpec(ed.preprocess, ed.profile, ed.num_classes)
    sess = _session(build_e2e(onnx.load(str(ed.file("model.onnx"))), spec))
    module = load_model(ROOT / "examples" / "shapes_unet.pt2").module
    images = [read_image(p) for p in sorted((VAL / "images").glob("*.png"))[:8]]
    frames = np.stack([img[3:-2, 1:-4] for img in images])  # 123x123: not a multiple of 16, padded in the graph
    x, _ = to_batch(list(frames), ed.preprocess, ed.profile)
    with torch.inference_mode():
        want = class_map(module(torch.from_numpy(x)).numpy()[:, :, :123, :123])
    got = sess.run(None, {E2E_INPUT_NAME: frames})[0]
    assert got.shape == (8, 123, 123) and np.array_equal(got, want)
    assert len(np.unique(want)) > 3  # real shapes, not one class everywhere


def test_e2e_options_validate():
    with pytest.raises(UsageError, match="--class-dtype"):
        E2EOptions(class_dtype="int64")
    with pytest.raises(UsageError, match="RGB or BGR"):
        E2EOptions(input_order="GRAY")
    assert dataclasses.replace(E2EOptions(), class_dtype="int32").class_dtype == ClassDtype.INT32

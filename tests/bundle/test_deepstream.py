"""DeepStream (segdeploy.bundle.deepstream): nvinfer's formula + the DeepStream variant equals the manifest's
preprocessing + the model; the configuration's keys and values; refusals. No DeepStream or GPU here: nvinfer's
normalisation is computed as its documentation states, from the values parsed back out of the written text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from segdeploy.bundle import deepstream as ds
from segdeploy.errors import UsageError
from segdeploy.export import ExportOptions
from segdeploy.export.e2e import network_unchanged
from segdeploy.export.e2e_stage import source_images, tile_frames
from segdeploy.exportdir import ExportDir
from segdeploy.pipeline import export_model
from segdeploy.spec import Preprocess
from segdeploy.vocab import Precision

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT / "calibration" / "shapes" / "val"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    from segdeploy.cli import main

    d = tmp_path_factory.mktemp("ds") / "shapes"
    rc = main(["export", str(ROOT / "examples" / "shapes_unet.pt2"), "--out", str(d), "--shape", "1x3x128x128",
               "--int8", "--fp16", "--calib", str(ROOT / "calibration" / "shapes" / "calib"), "--calib-size", "8", "-q"])
    assert rc == 0
    return ExportDir.open(d)


def test_factors_split_the_normalisation_exactly():
    f = ds.factors(Preprocess())  # ImageNet: per-channel std -> 1/std stays in the graph
    assert f.net_scale_factor == 1 / 255 and f.in_graph == (0.229, 0.224, 0.225) and f.model_color_format == 0
    assert f.offsets == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    g = ds.factors(Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channel_order="BGR"))
    assert g.in_graph is None and g.net_scale_factor == pytest.approx(2 / 255) and g.model_color_format == 1
    x = np.arange(256, dtype=np.float64)
    for pre in (Preprocess(), Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))):
        f = ds.factors(pre)
        for c in range(3):
            ours = (x * pre.scale - pre.mean[c]) / pre.std[c]
            theirs = f.net_scale_factor * (x - f.offsets[c]) / (f.in_graph[c] if f.in_graph else 1.0)
            assert np.max(np.abs(ours - theirs)) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_nvinfer_formula_then_variant_equals_preprocessing_then_model(example, precision, order):
    ed = example
    pre = dataclasses.replace(ed.preprocess, channel_order=order)
    source = ed.onnx_variants()[precision]
    network = onnx.load(str(source))
    variant = ds.build_variant(network, pre, ed.num_classes)
    assert network_unchanged(network, variant)
    onnx.checker.check_model(variant, full_check=True)
    plan = ds.plan_for(precision, ed.profile, ed.num_classes, int8_calib_file="model.calib.cache",
                       custom_lib_path=None, with_labels=True)
    text = ds.render_config(plan, ds.factors(pre))
    frames = tile_frames((2, 128, 128), source_images(str(VAL)), np.random.default_rng(0))
    r = ds.verify_variant(variant.SerializeToString(), source.read_bytes(), text, pre, ed.profile, frames)
    # float32 rounding of net-scale-factor * (x - offset) vs (x * scale - mean): probabilities within 1e-4
    # (int8: a rounding step can move a value across a quantization step; the classes still agree)
    assert r["max_abs_diff"] < (5e-3 if precision == "int8" else 1e-4), r
    assert r["class_agreement"] >= 0.9999, r


@pytest.mark.slow
def test_config_keys_values_and_labels(example, tmp_path):
    out = tmp_path / "deepstream"
    out.mkdir()
    r = ds.write_files(example, out, source_images(str(VAL)), "int8", int8_calib_file="../calib/model.calib.cache")
    cfg = ds.parse_config((out / ds.CONFIG_FILE).read_text())
    assert cfg["network-type"] == "2" and cfg["network-mode"] == "1" and cfg["process-mode"] == "1"
    assert cfg["onnx-file"] == "model.int8.deepstream.onnx" and (out / cfg["onnx-file"]).is_file()
    assert cfg["model-engine-file"] == "model.int8.deepstream.onnx_b1_gpu0_int8.engine"
    assert cfg["int8-calib-file"] == "../calib/model.calib.cache"
    assert cfg["infer-dims"] == "3;128;128" and cfg["batch-size"] == "1" and cfg["model-color-format"] == "0"
    assert float(cfg["net-scale-factor"]) == 1 / 255
    assert [float(v) for v in cfg["offsets"].split(";")] == [m / (1 / 255) for m in (0.485, 0.456, 0.406)]
    assert cfg["num-detected-classes"] == "6" and cfg["segmentation-threshold"] == "0.0"
    assert cfg["output-blob-names"] == ds.OUTPUT and "custom-lib-path" not in cfg
    assert (out / cfg["labelfile-path"]).read_text().splitlines() == [f"class{i}" for i in range(6)]
    variant = onnx.load(str(out / cfg["onnx-file"]))
    assert [o.name for o in variant.graph.output] == [ds.OUTPUT] and variant.graph.input[0].name == ds.INPUT
    assert r["check"]["class_agreement"] >= 0.9999 and r["source_onnx"] == "model.int8.onnx"
    fp16 = ds.render_config(ds.plan_for("fp16", example.profile, 6, int8_calib_file=None, custom_lib_path="lib.so",
                                        with_labels=False), ds.factors(example.preprocess))
    cfg16 = ds.parse_config(fp16)
    assert cfg16["network-mode"] == "2" and "int8-calib-file" not in cfg16 and cfg16["custom-lib-path"] == "lib.so"


@pytest.mark.slow
def test_refusals(example, tmp_path):
    with pytest.raises(UsageError, match="calibration file"):
        ds.plan_for("int8", example.profile, 6, int8_calib_file=None, custom_lib_path=None, with_labels=True)
    with pytest.raises(UsageError, match="batch range 1..8"):
        ds.plan_for("fp32", example.profile, 6, int8_calib_file=None, custom_lib_path=None, with_labels=True,
                    batch_size=9)
    with pytest.raises(UsageError, match="unknown --precision"):
        ds.write_files(example, tmp_path, [], "fp64")


def test_binary_model_gets_two_probability_channels(tmp_path):
    d = tmp_path / "bin"
    torch.manual_seed(0)
    export_model(torch.nn.Conv2d(3, 1, 3, padding=1).eval(), d, ExportOptions(shape="1x3x32x32"))
    ed = ExportDir.open(d)
    variant = ds.build_variant(onnx.load(str(ed.file("model.onnx"))), ed.preprocess, 1)
    text = ds.render_config(ds.plan_for("fp32", ed.profile, 1, int8_calib_file=None, custom_lib_path=None,
                                        with_labels=True), ds.factors(ed.preprocess))
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    r = ds.verify_variant(variant.SerializeToString(), ed.file("model.onnx").read_bytes(), text, ed.preprocess,
                          ed.profile, frames)
    assert r["max_abs_diff"] < 1e-5 and r["class_agreement"] == 1.0
    assert ds.parse_config(text)["num-detected-classes"] == "2"
    assert ds.labels_text(("road",), 1).splitlines() == ["background", "road"]
    assert Precision.FP32.deepstream_file == "model.deepstream.onnx"

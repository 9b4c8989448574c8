"""Plan-header reader on handcrafted headers, file identification, and the version check."""

from __future__ import annotations

import json

import pytest
from trt_helpers import plan_bytes

from segdeploy.errors import ArtifactError
from segdeploy.trt.plan import (
    NotAPlanError,
    PlanVersionError,
    check_plan_version,
    identify_file,
    parse_plan_header,
    read_plan_header,
)


@pytest.mark.parametrize("version", [(8, 6, 2, 3), (10, 3, 0, 26), (11, 1, 0, 7), (10, 16, 1, 11)])
def test_valid_headers(tmp_path, version):
    p = tmp_path / "model.fp16.engine"
    p.write_bytes(plan_bytes(version, size=4096))
    h = read_plan_header(p)
    assert h.version == version and h.size == 4096 and h.layout == 0 and h.name == "model.fp16.engine"
    assert h.version_str == ".".join(map(str, version))
    assert identify_file(p) == {"kind": "tensorrt-plan", "size": 4096, "header": h.to_dict()}


def test_wrong_magic(tmp_path):
    p = tmp_path / "model.engine"
    p.write_bytes(b"ptrt" + bytes(60))
    with pytest.raises(NotAPlanError, match="does not start with the plan magic 'ftrt'"):
        read_plan_header(p)
    assert identify_file(p)["kind"] == "unknown"


def test_truncated(tmp_path):
    p = tmp_path / "model.engine"
    p.write_bytes(plan_bytes((10, 3, 0, 26))[:20])
    with pytest.raises(NotAPlanError, match=r"truncated TensorRT engine \(20 bytes"):
        read_plan_header(p)
    assert identify_file(p)["kind"] == "truncated-plan"


def test_empty(tmp_path):
    p = tmp_path / "model.engine"
    p.write_bytes(b"")
    with pytest.raises(NotAPlanError, match="is empty"):
        read_plan_header(p)
    assert identify_file(p)["kind"] == "empty"


def test_ultralytics_json_prefix_is_explained(tmp_path):
    meta = json.dumps({"description": "Ultralytics YOLO11n-seg", "imgsz": [640, 640], "task": "segment"}).encode()
    data = len(meta).to_bytes(4, "little") + meta + plan_bytes((10, 3, 0, 26))
    p = tmp_path / "yolo11n-seg.engine"
    p.write_bytes(data)
    off = 4 + len(meta)
    with pytest.raises(NotAPlanError) as e:
        read_plan_header(p)
    msg = e.value.message
    assert "Ultralytics-style engine" in msg and f"{len(meta)} bytes of JSON metadata" in msg
    assert "a TensorRT 10.3.0.26 plan" in msg and f"tail -c +{off + 1}" in msg and "\n" not in msg
    assert identify_file(p)["kind"] == "ultralytics-engine"


def test_other_files_are_named(tmp_path, onnx_dir):
    cases = {
        "model.onnx": (onnx_dir / "model.onnx").read_bytes(),
        "m.pt2": b"PK\x03\x04" + bytes(40),
        "model.calib.cache": b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n",
        "manifest.json": b'{"schema": "segdeploy.manifest"}',
        "ckpt.pt": b"\x80\x02}q\x00.",
    }
    kinds = {"model.onnx": "onnx", "m.pt2": "zip", "model.calib.cache": "calibration-cache",
             "manifest.json": "json", "ckpt.pt": "pickle"}
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        assert identify_file(p)["kind"] == kinds[name], name
        with pytest.raises(NotAPlanError):
            read_plan_header(p)
    with pytest.raises(NotAPlanError, match="it is an ONNX model; build an engine from it"):
        read_plan_header(tmp_path / "model.onnx")


def test_unknown_layout_and_implausible_versions():
    h = parse_plan_header(plan_bytes((10, 3, 0, 26), layout=1))
    assert h.version is None and h.layout == 1
    assert parse_plan_header(plan_bytes((0, 0, 0, 0))).version is None  # a plan from before 8.6
    assert parse_plan_header(plan_bytes((8, 5, 2, 2))).version is None
    warning = check_plan_version(h, "10.3.0.26")
    assert "not understood" in warning and "TensorRT 10.3.0.26 will check" in warning


def test_missing_and_directory(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        read_plan_header(tmp_path / "nope.engine")
    with pytest.raises(ArtifactError, match="is a directory"):
        read_plan_header(tmp_path)


def test_version_check():
    h = parse_plan_header(plan_bytes((10, 3, 0, 26)), "model.fp16.engine")
    assert check_plan_version(h, "10.3.0.26") is None
    assert "other build number" in check_plan_version(h, "10.3.0.30")
    with pytest.raises(PlanVersionError) as e:
        check_plan_version(h, "10.13.3.9")
    msg = e.value.message
    assert "model.fp16.engine was built with TensorRT 10.3.0.26 but TensorRT 10.13.3.9 is installed" in msg
    assert "rebuild it here" in msg and "\n" not in msg
    with pytest.raises(PlanVersionError, match="8.6.2.3"):
        check_plan_version(h, "8.6.2.3")


def test_version_compatible_plans():
    old = parse_plan_header(plan_bytes((10, 3, 0, 26)), "vc.engine")
    assert check_plan_version(old, "10.16.1.11", version_compatible=True) is None
    assert check_plan_version(old, "11.4.0.106", version_compatible=True) is None  # 10.x -> 11.x
    with pytest.raises(PlanVersionError, match="same or a newer TensorRT"):
        check_plan_version(old, "10.0.1.6", version_compatible=True)
    eight = parse_plan_header(plan_bytes((8, 6, 2, 3)), "vc.engine")
    assert check_plan_version(eight, "10.3.0.26", version_compatible=True) is None  # 8.6 -> 10.x
    with pytest.raises(PlanVersionError, match="at most one major release"):
        check_plan_version(eight, "11.4.0.106", version_compatible=True)

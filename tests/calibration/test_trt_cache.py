"""TensorRT calibration cache and ranges JSON."""

from __future__ import annotations

import struct

import pytest

from segdeploy.trt.calib_cache import read_trt_cache, write_trt_cache
from segdeploy.calibration.ranges_file import read_ranges_json, write_ranges_json
from segdeploy.trt.versions import trt_version_code
from segdeploy.errors import ArtifactError, UsageError


@pytest.mark.parametrize(
    "v,code", [("8.6.2", 8602), ("8.6", 8600), ("10.3", 100300), ("10.3.0", 100300), ("10.13.1", 101301), (8602, 8602)]
)
def test_version_codes(v, code):
    assert trt_version_code(v) == code


def test_bad_version():
    with pytest.raises(UsageError, match="not like 8.6.2"):
        trt_version_code("ten")


def test_known_hex_and_round_trip(tmp_path):
    ranges = {"input": 2.0, "/enc/conv1/Conv_output_0": 127.0, "zero": 0.0, "odd:name": 0.5}
    p = tmp_path / "model.calib.cache"
    write_trt_cache(p, ranges, "8.6.2")
    lines = p.read_text().splitlines()
    assert lines[0] == "TRT-8602-EntropyCalibration2"
    assert lines[2] == "/enc/conv1/Conv_output_0: 3f800000"  # scale 1.0
    assert lines[1] == "input: " + struct.pack("!f", 2.0 / 127).hex()
    c = read_trt_cache(p)
    assert c.version_code == 8602 and c.algorithm == "EntropyCalibration2"
    assert list(c.ranges) == list(ranges)
    for k, v in ranges.items():
        assert c.ranges[k] == pytest.approx(v, rel=1e-6, abs=1e-30)
    write_trt_cache(p, ranges, "10.3")
    assert read_trt_cache(p).version_code == 100300


def test_bad_amax_keeps_old_file(tmp_path):
    p = tmp_path / "c.cache"
    write_trt_cache(p, {"a": 1.0})
    good = p.read_text()
    with pytest.raises(UsageError, match="finite"):
        write_trt_cache(p, {"a": float("nan")})
    assert p.read_text() == good and [f.name for f in tmp_path.iterdir()] == ["c.cache"]


def test_malformed_cache(tmp_path):
    p = tmp_path / "c.cache"
    p.write_text("TRT-8602-EntropyCalibration2\nx: zz\n")
    with pytest.raises(ArtifactError, match="line 2"):
        read_trt_cache(p)
    p.write_text("hello\n")
    with pytest.raises(ArtifactError, match="header"):
        read_trt_cache(p)


def test_ranges_json_round_trip(tmp_path):
    p = tmp_path / "ranges.json"
    write_ranges_json(p, {"a": 1.5, "b": 0.0}, {"method": "entropy"})
    r, meta = read_ranges_json(p)
    assert r == {"a": 1.5, "b": 0.0} and meta == {"method": "entropy"}
    p.write_text("{}")
    with pytest.raises(ArtifactError, match="not a segdeploy ranges file"):
        read_ranges_json(p)

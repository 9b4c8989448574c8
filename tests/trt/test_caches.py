"""Timing-cache file (keyed, atomic, foreign/corrupt ignored) and the calibration-cache checks + calibrator."""

from __future__ import annotations

import json
import os

import pytest
from standin import make_trt_module

from segdeploy.errors import ArtifactError
from segdeploy.trt.calibrator import (
    load_calibration_cache,
    make_cache_calibrator,
    read_cache_header,
)
from segdeploy.trt.capabilities import probe
from segdeploy.trt.recipe import (
    CacheHeader,
    CalibrationCacheMismatch,
    EngineBuildOptions,
    make_recipe,
)
from segdeploy.trt.timing_cache import TimingCacheFile, gpu_key


def test_timing_cache_round_trip_and_key(tmp_path):
    tc = TimingCacheFile(tmp_path / "tc", "10.3.0.26", gpu_key("Orin (nvgpu)", "8.7"))
    assert tc.path.name == "trt-10.3.0.26-Orin-nvgpu-sm87.timing-cache"
    assert tc.load() == b"" and tc.warnings == []  # none yet: a new cache, no warning
    blob = bytes(range(256)) * 3
    tc.save(blob)
    assert TimingCacheFile(tmp_path / "tc", "10.3.0.26", "Orin-nvgpu-sm87").load() == blob
    assert sorted(os.listdir(tmp_path / "tc")) == [tc.path.name]  # atomic: no temp file left
    assert gpu_key(None, None) == "unknown-gpu"


def test_foreign_and_corrupt_caches_are_ignored_with_a_warning(tmp_path):
    tc = TimingCacheFile(tmp_path, "10.3.0.26", "H200-sm90")
    tc.save(b"blob")
    header, _, blob = tc.path.read_bytes().partition(b"\n")
    meta = json.loads(header)
    # foreign: copied from another TensorRT under this file name
    tc.path.write_bytes(json.dumps(dict(meta, tensorrt="10.13.3.9")).encode() + b"\n" + blob)
    t2 = TimingCacheFile(tmp_path, "10.3.0.26", "H200-sm90")
    assert t2.load() == b"" and "made by TensorRT 10.13.3.9 on H200-sm90" in t2.warnings[0]
    # corrupt: truncated content
    tc.path.write_bytes(header + b"\n" + blob[:2])
    t3 = TimingCacheFile(tmp_path, "10.3.0.26", "H200-sm90")
    assert t3.load() == b"" and "does not match its checksum" in t3.warnings[0]
    # garbage (e.g. a raw trtexec cache)
    tc.path.write_bytes(b"\x00\x01raw trtexec timing cache")
    t4 = TimingCacheFile(tmp_path, "10.3.0.26", "H200-sm90")
    assert t4.load() == b"" and "not a segdeploy timing cache" in t4.warnings[0]


def test_timing_cache_unwritable_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="cannot create the timing cache directory"):
        TimingCacheFile(tmp_path / "f" / "sub", "10.3.0", "g").save(b"x")


def test_calibration_cache_matching_version(write_cache):
    p = write_cache("10.3.0")
    assert read_cache_header(p) == CacheHeader(code=100300)
    c = load_calibration_cache(p, 100300)
    assert c.data == p.read_bytes() and c.version_code == 100300 and c.tensors == 2 and c.rewritten_from is None


def test_calibration_cache_mismatch_decided_by_the_recipe_and_rewritten_by_the_calibrator(write_cache):
    """The rule (refuse, or rewrite with the option) is make_recipe's; the calibrator only serves its decision."""
    p = write_cache("8.6.2")
    caps = probe(make_trt_module("10.3.0", version_string="10.3.0.26"))
    with pytest.raises(CalibrationCacheMismatch) as e:
        make_recipe(caps, "int8-implicit", calib_cache=read_cache_header(p))
    msg = e.value.message
    assert "TensorRT 8.6.2 (TRT-8602)" in msg and "TensorRT 10.3.0.26 reads only TRT-100300" in msg
    assert "--rewrite-calib-header" in msg and "--trt-target 10.3.0" in msg and "\n" not in msg
    recipe = make_recipe(caps, "int8-implicit", EngineBuildOptions(rewrite_calib_header=True),
                         calib_cache=read_cache_header(p))
    assert (recipe.calib_cache_code, recipe.calib_header_rewrite_from) == (100300, 8602)
    assert any("rewritten from TRT-8602 to TRT-100300" in w for w in recipe.warnings)
    c = load_calibration_cache(p, recipe.calib_cache_code)
    assert c.data.splitlines()[0] == b"TRT-100300-EntropyCalibration2"
    assert c.data.splitlines()[1:] == p.read_bytes().splitlines()[1:] and c.rewritten_from == 8602
    assert c.to_dict()["header_rewritten_from"] == 8602
    assert p.read_text().splitlines()[0] == "TRT-8602-EntropyCalibration2"  # the file is untouched


def test_calibration_cache_other_algorithm_and_missing(tmp_path):
    p = tmp_path / "c.cache"
    p.write_text("TRT-100300-MinMaxCalibration\ninput: 3c010a14\n")
    with pytest.raises(CalibrationCacheMismatch, match="algorithm MinMaxCalibration"):
        read_cache_header(p)
    with pytest.raises(ArtifactError, match="not found"):
        load_calibration_cache(tmp_path / "none.cache", 100300)
    p.write_text("garbage\n")
    with pytest.raises(ArtifactError, match="no TRT-<version>-<algorithm> header"):
        read_cache_header(p)


@pytest.mark.parametrize("version", ["8.6.1", "10.16"])
def test_cache_only_calibrator(version):
    trt = make_trt_module(version)
    cal = make_cache_calibrator(trt, b"TRT-8601-EntropyCalibration2\n")
    assert isinstance(cal, trt.IInt8EntropyCalibrator2)
    assert cal.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\n" and cal.cache_reads == 1
    assert cal.get_batch(["input"]) is None and cal.batches_requested == 1
    assert cal.get_batch_size() == 1
    assert cal.get_algorithm() is trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2
    cal.write_calibration_cache(memoryview(b"x"))
    assert cal.cache_writes == 1
    assert ("IInt8EntropyCalibrator2.__init__", (), {}) in trt._standin.calls  # the base initialiser ran

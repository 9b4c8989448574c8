"""calibrate(): statistics cache hit / miss / invalidation, unwritable cache, nothing half-written."""

from __future__ import annotations

import os

import pytest
from calib_helpers import make_model

from segdeploy.calibration import Method, calibrate
from segdeploy.errors import ArtifactError, DataError
from segdeploy.spec import Preprocess


def run(model, images, spec, cache, **kw):
    pre, prof = spec
    kw.setdefault("preprocess", pre)
    return calibrate(model, images, profile=prof, size=kw.pop("size", 8), seed=kw.pop("seed", 0), cache_dir=cache, **kw)


def test_cache_hit_and_other_method_without_rerun(tiny_model, images, spec, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    a = run(tiny_model, images, spec, cache)
    assert not a.cache_hit and os.path.isfile(a.cache_file)
    import segdeploy.calibration.stage as stage

    def boom(*a, **k):
        raise AssertionError("model re-run on a cache hit")

    monkeypatch.setattr(stage, "collect_statistics", boom)
    b = run(tiny_model, images, spec, cache)
    assert b.cache_hit and b.ranges == a.ranges
    c = run(tiny_model, images, spec, cache, method=Method("max"))
    assert c.cache_hit and set(c.ranges) == set(a.ranges)
    assert all(c.ranges[k] >= a.ranges[k] for k in a.ranges)  # entropy never above max
    assert c.to_manifest()["method"] == {"kind": "max"} and c.to_manifest()["set"]["size"] == 8


@pytest.mark.parametrize("change", ["model", "image_bytes", "preprocess", "seed", "size"])
def test_cache_invalidated(tiny_model, images, spec, tmp_path, change):
    cache = tmp_path / "cache"
    a = run(tiny_model, images, spec, cache)
    kw = {}
    model = tiny_model
    if change == "model":
        model = make_model(tiny_model, seed=1)  # same path, other weights
    elif change == "image_bytes":
        chosen = a.calib_set.files[0]
        b = bytearray(open(chosen, "rb").read())
        from PIL import Image

        Image.new("RGB", (32, 32), (1, 2, 3)).save(chosen)
    elif change == "preprocess":
        kw["preprocess"] = Preprocess(mean=(0.5, 0.5, 0.5))
    elif change == "seed":
        kw["seed"] = 3
    elif change == "size":
        kw["size"] = 7
    b = run(model, images, spec, cache, **kw)
    assert not b.cache_hit
    assert len(list(cache.iterdir())) == 2


def test_copied_cache_file_is_not_reused(tiny_model, images, spec, tmp_path):
    cache = tmp_path / "cache"
    a = run(tiny_model, images, spec, cache)
    other = make_model(tmp_path / "other.onnx", seed=5)
    b_key_file = None
    b = run(other, images, spec, cache)
    assert not b.cache_hit
    # overwrite b's entry with a's statistics file: the stored fields do not match, so it is a miss
    b_key_file = b.cache_file
    os.replace(a.cache_file, b_key_file)
    c = run(other, images, spec, cache)
    assert not c.cache_hit and c.ranges == b.ranges


def test_corrupt_cache_file_is_a_miss(tiny_model, images, spec, tmp_path):
    cache = tmp_path / "cache"
    a = run(tiny_model, images, spec, cache)
    open(a.cache_file, "wb").write(b"garbage")
    b = run(tiny_model, images, spec, cache)
    assert not b.cache_hit and b.ranges == a.ranges


def test_unwritable_cache_dir_fails_before_work(tiny_model, images, spec, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="cache directory .* cannot be created or written"):
        run(tiny_model, images, spec, blocker / "cache")


def test_failed_run_leaves_no_cache_file(tmp_path, images, spec):
    model = make_model(tmp_path / "nan.onnx", nan_after_relu=True)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="bad_sqrt"):
        run(model, images, spec, cache)
    assert list(cache.iterdir()) == []


def test_missing_model(images, spec, tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        run(tmp_path / "none.onnx", images, spec, None)

"""calibrate() collects only what the method needs, and the cache is keyed by what was collected."""

from __future__ import annotations

import pytest

from segdeploy.calibration import Method, calibrate
from segdeploy.calibration.cache import key_fields, key_of, serving_statistics


def run(model, images, spec, cache, method):
    pre, prof = spec
    return calibrate(model, images, preprocess=pre, profile=prof, size=8, cache_dir=cache, method=method)


def _no_rerun(monkeypatch):
    from segdeploy.calibration import stage

    def boom(*a, **k):
        raise AssertionError("model re-run although a serving statistic was cached")

    monkeypatch.setattr(stage, "collect_statistics", boom)


def test_max_collects_only_the_max_and_caches_it_as_such(tiny_model, images, spec, tmp_path):
    res = run(tiny_model, images, spec, tmp_path / "c", Method("max"))
    assert not res.cache_hit and res.statistics.statistic == "absmax" and not res.statistics.histograms
    assert res.to_manifest()["statistic"] == "absmax" and "num_bins" not in res.to_manifest()
    again = run(tiny_model, images, spec, tmp_path / "c", Method("max"))
    assert again.cache_hit and again.ranges == res.ranges and again.cache_file == res.cache_file


def test_an_absmax_entry_never_serves_a_histogram_method(tiny_model, images, spec, tmp_path):
    run(tiny_model, images, spec, tmp_path / "c", Method("max"))
    ent = run(tiny_model, images, spec, tmp_path / "c", Method("entropy"))
    assert not ent.cache_hit and ent.statistics.histograms
    assert ent.to_manifest()["statistic"] == "histogram" and ent.to_manifest()["num_bins"] == 2048


def test_a_histogram_entry_serves_max(tiny_model, images, spec, tmp_path, monkeypatch):
    ent = run(tiny_model, images, spec, tmp_path / "c", Method("percentile"))
    fresh = run(tiny_model, images, spec, None, Method("max"))
    _no_rerun(monkeypatch)
    mx = run(tiny_model, images, spec, tmp_path / "c", Method("max"))
    assert mx.cache_hit and mx.cache_file == ent.cache_file and mx.statistics.histograms
    assert mx.ranges == fresh.ranges  # the same exact max, whichever statistic holds it


def test_key_separates_statistics_and_ignores_bins_for_absmax():
    args = ("m" * 64, "d" * 64, {"mean": [0.0]}, 8, 0)
    h2048 = key_fields(*args, 2048, None, statistic="histogram")
    h256 = key_fields(*args, 256, None, statistic="histogram")
    a2048 = key_fields(*args, 2048, None, statistic="absmax")
    a256 = key_fields(*args, 256, None, statistic="absmax")
    assert len({key_of(h2048), key_of(h256), key_of(a2048)}) == 3
    assert key_of(a2048) == key_of(a256)
    with pytest.raises(ValueError):
        key_fields(*args, 2048, None, statistic="minmax")
    assert serving_statistics(True) == ("histogram",)
    assert serving_statistics(False) == ("absmax", "histogram")


def test_a_renamed_entry_of_another_statistic_is_a_miss(tiny_model, images, spec, tmp_path):
    """An absmax file copied over a histogram entry's name is not read as histograms (stored fields differ)."""
    mx = run(tiny_model, images, spec, tmp_path / "c", Method("max"))
    ent = run(tiny_model, images, spec, tmp_path / "d", Method("entropy"))
    import shutil

    shutil.copyfile(mx.cache_file, ent.cache_file)
    again = run(tiny_model, images, spec, tmp_path / "d", Method("entropy"))
    assert not again.cache_hit and again.statistics.histograms and again.ranges == ent.ranges

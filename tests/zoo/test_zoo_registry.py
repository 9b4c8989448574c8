"""The zoo registry: names, capability flags, factories, error messages."""

from __future__ import annotations

import pytest
import torch

import segdeploy.zoo as zoo
from segdeploy.errors import ModelLoadError, UsageError

SEEDS = ["bisenet", "fcn8s", "hrnet", "ocrnet", "refinenet", "segnet"]


def test_names_contain_the_seed_architectures():
    names = zoo.names()
    assert names == sorted(names)
    for n in SEEDS:
        assert n in names
    assert [e.name for e in zoo.entries()] == names


def test_unet_registered_lazily_when_present():
    import importlib.util

    present = importlib.util.find_spec("segdeploy.zoo.unet") is not None
    assert ("unet" in zoo.names()) == present
    if present:
        m = zoo.create("unet", num_classes=4)
        assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 4, 32, 32)
        assert zoo.entry("unet").spatial_multiple == m.spatial_multiple


def test_unknown_name_lists_valid_names():
    with pytest.raises(ModelLoadError) as info:
        zoo.create("segnett")
    msg = info.value.message
    assert "\n" not in msg
    assert "'segnett'" in msg
    for n in zoo.names():
        assert n in msg


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": 0}, {"num_classes": -3}])
def test_bad_sizes_are_usage_errors(kwargs):
    with pytest.raises(UsageError, match="positive integers"):
        zoo.create("segnet", **kwargs)


@pytest.mark.parametrize("name", SEEDS)
def test_entry_flags_match_model(name):
    e = zoo.entry(name)
    m = zoo.create(name, num_classes=3)
    assert m.spatial_multiple == e.spatial_multiple
    assert m.num_classes == 3
    mods = list(m.modules())
    assert e.uses_adaptive_pool == any(isinstance(x, torch.nn.AdaptiveAvgPool2d) for x in mods)
    assert e.uses_conv_transpose == any(isinstance(x, torch.nn.ConvTranspose2d) for x in mods)
    assert e.uses_max_unpool == (name == "segnet")
    assert e.uses_matmul_attention == (name == "ocrnet")
    # the factory string is importable as segdeploy's --model syntax expects: "module:function"
    assert callable(e.load_factory())

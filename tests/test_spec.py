"""ShapeProfile / parse_shape / build_profile / Preprocess contracts."""

from __future__ import annotations

import pytest

from segdeploy.errors import ShapeError, UsageError
from segdeploy.spec import Preprocess, ShapeProfile, build_profile, parse_shape


def test_parse_shape_forms():
    assert parse_shape("2x3x64x96") == (2, 3, 64, 96)
    assert parse_shape("2,3,64,96") == (2, 3, 64, 96)
    assert parse_shape("64x96", channels=1) == (1, 1, 64, 96)
    with pytest.raises(UsageError, match="NxCxHxW"):
        parse_shape("64x96")
    with pytest.raises(UsageError, match="--min-shape"):
        parse_shape("abc", 3, "--min-shape")


def test_profile_defaults_and_rounding():
    prof, notes = build_profile((1, 3, 96, 160), spatial_multiple=32, default_max_batch=8)
    assert prof.min == (1, 3, 64, 96)  # half of opt, rounded up to the multiple (48 -> 64, 80 -> 96)
    assert prof.max == (8, 3, 192, 320)
    assert prof.dynamic_axes == ("batch", "height", "width")
    assert len(notes) == 2 and all("defaulted" in n for n in notes)


def test_profile_verification_shapes_include_irregular():
    prof = ShapeProfile((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 128, 128), 16)
    shapes = dict(prof.verification_shapes())
    assert set(shapes) == {"min", "opt", "max", "irregular"}
    irr = shapes["irregular"]
    assert prof.contains(irr) and irr[2] != irr[3] and irr not in (prof.min, prof.opt, prof.max)


@pytest.mark.parametrize(
    "mn, opt, mx, match",
    [
        ((1, 3, 128, 128), (1, 3, 64, 64), (1, 3, 256, 256), "min <= opt <= max"),
        ((1, 3, 32, 32), (1, 3, 64, 64), (1, 1, 128, 128), "channel count differs"),
        ((1, 3, 30, 32), (1, 3, 64, 64), (1, 3, 128, 128), "not a multiple of 16"),
    ],
)
def test_impossible_profiles(mn, opt, mx, match):
    with pytest.raises(ShapeError, match=match) as e:
        ShapeProfile(mn, opt, mx, 16)
    assert e.value.exit_code == 2


def test_opt_not_multiple_suggests_fix():
    with pytest.raises(ShapeError, match="try 1x3x96x96"):
        build_profile((1, 3, 100, 100), spatial_multiple=32)


def test_profile_and_preprocess_round_trip():
    prof = ShapeProfile((1, 3, 32, 32), (2, 3, 64, 64), (4, 3, 128, 128), 8)
    assert ShapeProfile.from_dict(prof.to_dict()) == prof
    pre = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channel_order="BGR")
    assert Preprocess.from_dict(pre.to_dict()) == pre
    with pytest.raises(UsageError):
        Preprocess(channel_order="RGBA")
    with pytest.raises(UsageError):
        Preprocess(std=(0.0, 1.0, 1.0))

"""Model loading: formats, trust, factories + weights, output selection, and every bad-input path."""

from __future__ import annotations

import pytest
import torch

import tinymodels
from segdeploy.errors import ModelLoadError, ShapeError, UntrustedPickleError, UsageError
from segdeploy.export.probe import probe_model
from segdeploy.load import choose_output, detect_format, load_model


def _probe(lm, shape=(1, 3, 32, 32)):
    return probe_model(lm, shape)


def test_pt2_is_first_class(tiny_pt2):
    lm = load_model(tiny_pt2)
    assert lm.format == "pt2"
    assert lm.shape_hint == (2, 3, 32, 32)
    assert lm.spatial_multiple_hint == 4  # read from 4*Dim("h") constraints
    pr = _probe(lm)
    assert pr.spec.num_classes == 3 and pr.spec.spatial_multiple == 4
    assert any("constraints" in n for n in lm.notes)


def test_torchscript(tmp_path, tiny):
    p = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(tiny, torch.randn(1, 3, 32, 32)), str(p))
    lm = load_model(p)
    assert lm.format == "torchscript"
    assert _probe(lm).spec.num_classes == 3


def test_pickle_refused_without_trust(tmp_path, tiny):
    p = tmp_path / "m.pt"
    torch.save(tiny, p)
    with pytest.raises(UntrustedPickleError) as e:
        load_model(p)
    msg = e.value.message
    assert "--trust-pickle" in msg and "torch.export.save" in msg and "arbitrary code" in msg
    assert "\n" not in msg
    lm = load_model(p, trust_pickle=True)
    assert lm.format == "pickle" and isinstance(lm.raw, tinymodels.TinySeg)


def test_state_dict_as_model_points_to_factory(tmp_path, tiny):
    p = tmp_path / "w.pt"
    torch.save(tiny.state_dict(), p)
    with pytest.raises(ModelLoadError, match="--model pkg.module:factory --weights"):
        load_model(p)


def test_factory_with_weights_pt_and_safetensors(tmp_path, tiny):
    from safetensors.torch import save_file

    with torch.no_grad():
        for prm in tiny.parameters():
            prm.add_(1.0)
    pt, st = tmp_path / "w.pth", tmp_path / "w.safetensors"
    torch.save(tiny.state_dict(), pt)
    save_file(tiny.state_dict(), str(st))
    x = torch.randn(1, 3, 16, 16)
    for w in (pt, st):
        lm = load_model(factory="tinymodels:tiny_seg", weights=w)
        assert lm.format == "factory"
        assert torch.allclose(lm.raw(x), tiny(x))
    # the factory spec string alone also works as a source
    assert load_model("tinymodels:tiny_seg").format == "factory"


def test_factory_kwargs_and_mismatched_weights(tmp_path, tiny):
    p = tmp_path / "w.pt"
    torch.save(tiny.state_dict(), p)
    with pytest.raises(ModelLoadError, match="do not match the model"):
        load_model(factory="tinymodels:tiny_seg", weights=p, factory_kwargs={"num_classes": 7})


@pytest.mark.parametrize(
    "spec, match",
    [
        ("tinymodels:nope", "unknown factory 'nope'.*tiny_seg"),
        ("no_such_pkg_xyz.mod:f", "cannot import module"),
        ("tinymodels:not_a_module", "not an nn.Module"),
    ],
)
def test_bad_factories(spec, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(factory=spec)


def test_missing_empty_corrupt_truncated(tmp_path, tiny_pt2):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope.pt2")
    empty = tmp_path / "empty.pt2"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_model(empty)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelLoadError, match="not a PyTorch model file"):
        load_model(junk)
    trunc = tmp_path / "trunc.pt2"
    data = tiny_pt2.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(trunc)


def test_weights_only_with_model_file_is_usage_error(tiny_pt2):
    with pytest.raises(UsageError, match="--weights applies only"):
        load_model(tiny_pt2, weights=tiny_pt2)


@pytest.mark.parametrize(
    "cls, rule",
    [
        (tinymodels.TinySeg, "tensor"),
        (tinymodels.DictOut, "dict['out']"),
        (tinymodels.TupleOut, "tuple[1]"),
        (tinymodels.LogitsOut, ".logits"),
    ],
)
def test_output_selection_rule(cls, rule):
    lm = load_model(cls().eval())
    pr = _probe(lm)
    assert lm.output_rule == rule
    assert pr.spec.num_classes == 3
    assert lm.module(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_output_override_and_errors():
    lm = load_model(tinymodels.DictOut().eval(), output="aux")
    _probe(lm)
    assert lm.output_rule == "dict['aux']"
    lm = load_model(tinymodels.TupleOut().eval(), output="0")
    with pytest.raises(ModelLoadError, match="not a segmentation map"):
        _probe(lm)
    with pytest.raises(ModelLoadError, match="pick one of its keys"):
        _probe(load_model(tinymodels.DictOut().eval(), output="nope"))
    with pytest.raises(ModelLoadError, match="classifier logits"):
        _probe(load_model(tinymodels.Classifier().eval()))


def test_choose_output_ambiguous_dict():
    out = {"a": torch.zeros(1, 2, 4, 4), "b": torch.zeros(1, 2, 4, 4)}
    with pytest.raises(ModelLoadError, match="--output NAME"):
        choose_output(out, None)


def test_wrong_channel_count_is_shape_error(tiny):
    lm = load_model(tiny)
    with pytest.raises(ShapeError, match="takes 3 channels.*1x3x32x32"):
        probe_model(lm, (1, 1, 32, 32))


def test_detect_format_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="is a directory"):
        detect_format(tmp_path)


def test_static_pt2_exports_static_axes_with_reason(tmp_path):
    """A .pt2 saved without dynamic shapes: its axes are exported static, said plainly, never guessed."""
    from segdeploy.errors import ShapeError
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    m = tinymodels.tiny_seg()
    p = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(m, (torch.randn(1, 3, 32, 32),)), str(p))
    lm = load_model(p)
    assert lm.static_axes_hint == (0, 1, 2, 3)
    res = export_model(p, tmp_path / "out", ExportOptions())
    man = res.manifest
    assert man["inputs"][0]["profile"]["dynamic_axes"] == []
    assert {s["axis"] for s in man["static_axes"]} == {"batch", "height", "width"}
    assert all("static" in s["reason"] for s in man["static_axes"])
    with pytest.raises(ShapeError, match="static batch of 1.*dynamic_shapes"):
        export_model(p, tmp_path / "out2", ExportOptions(shape="2x3x32x32"))


def test_output_selection_is_a_loaded_model_method():
    """The reference of a precision check gets its logits from LoadedModel.select_output_at (no export probe)."""
    lm = load_model(tinymodels.DictOut())
    module = lm.select_output_at((1, 3, 32, 32))
    assert module is lm.module and lm.output_rule == "dict['out']"
    assert module(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    lm2 = load_model(tinymodels.TupleOut(), output="0")
    with pytest.raises(ModelLoadError, match="not a segmentation map"):  # index 0 is the classifier-like head
        lm2.select_output_at((1, 3, 32, 32))

"""Loading help: a state dict names the factory that loads it; a .pt2 with an unregistered output type says which."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from segdeploy.cli_options import parse_model_args
from segdeploy.errors import ModelLoadError
from segdeploy.factory_hints import suggest_factory
from segdeploy.load import load_model

ROOT = Path(__file__).resolve().parents[1]
smp = pytest.importorskip("segmentation_models_pytorch")
tvseg = pytest.importorskip("torchvision.models.segmentation")

CASES = {
    "smp-unet-r34-4ch": lambda: smp.Unet(encoder_name="resnet34", encoder_weights=None, in_channels=4, classes=7),
    "smp-fpn-r18": lambda: smp.FPN(encoder_name="resnet18", encoder_weights=None, classes=3),
    "smp-unet++-r18": lambda: smp.UnetPlusPlus(encoder_name="resnet18", encoder_weights=None, classes=2),
    "smp-deeplabv3plus-r50": lambda: smp.DeepLabV3Plus(encoder_name="resnet50", encoder_weights=None, classes=5),
    "smp-linknet-r18": lambda: smp.Linknet(encoder_name="resnet18", encoder_weights=None, classes=2),
    "tv-deeplabv3-mnv3-aux": lambda: tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                        num_classes=21, aux_loss=True),
    "tv-lraspp-mnv3": lambda: tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4),
    "tv-fcn-r50": lambda: tvseg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=6),
}


def suggested(message: str) -> tuple[str, dict, str]:
    """(factory, kwargs, weights) of the `--model ... --weights FILE` the error suggests."""
    words = shlex.split(message.split(": give ", 1)[1].split(" instead of the file")[0])
    factory = words[words.index("--model") + 1]
    args = tuple(words[i + 1] for i, w in enumerate(words) if w == "--model-arg")
    return factory, parse_model_args(args), words[words.index("--weights") + 1]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_error_suggests_a_factory_line_that_loads_it(case, tmp_path):
    model = CASES[case]().eval()
    path = tmp_path / "unet.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelLoadError) as e:
        load_model(str(path))
    msg = e.value.message
    assert msg.startswith(f"{path} holds weights (a state dict), not a model; its keys are a ") and "\n" not in msg
    factory, kwargs, weights = suggested(msg)
    loaded = load_model(factory=factory, factory_kwargs=kwargs, weights=weights)  # strict: every key matches
    mine, theirs = model.state_dict(), loaded.raw.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_unknown_encoder_and_unknown_layouts():
    m = smp.Unet(encoder_name="mobilenet_v2", encoder_weights=None, classes=2)
    hint = suggest_factory({k: tuple(v.shape) for k, v in m.state_dict().items()})
    assert hint.factory == "segmentation_models_pytorch:Unet" and hint.kwargs["classes"] == 2
    assert hint.missing and hint.missing[0].startswith("encoder_name")
    assert suggest_factory({"conv.weight": (4, 3, 3, 3), "conv.bias": (4,)}) is None
    assert suggest_factory({}) is None


def test_state_dict_of_an_unknown_model_keeps_the_generic_advice(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(ModelLoadError, match=r"pass --model pkg.module:factory --weights .*w.pt \(the factory"):
        load_model(str(path))
    torch.save({"state_dict": smp.FPN(encoder_name="resnet18", encoder_weights=None, classes=3).state_dict()}, path)
    with pytest.raises(ModelLoadError, match="segmentation_models_pytorch FPN state dict"):  # a training checkpoint
        load_model(str(path))


OUTPUT_MODULE = textwrap.dedent('''
    from dataclasses import dataclass
    import torch, torch.nn as nn
    import torch.utils._pytree as pytree

    @dataclass
    class SegOutput:
        logits: torch.Tensor

    pytree.register_dataclass(SegOutput, serialized_type_name="segout.SegOutput")

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return SegOutput(logits=self.conv(x))
''')


@pytest.mark.slow
def test_pt2_with_an_unregistered_output_type_says_which_and_how(tmp_path, monkeypatch):
    (tmp_path / "segout.py").write_text(OUTPUT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import segout

    ep = torch.export.export(segout.Model().eval(), (torch.randn(1, 3, 32, 32),))
    torch.export.save(ep, tmp_path / "model.pt2")
    # this process registered the type: it loads (the second fix the message names)
    loaded = load_model(str(tmp_path / "model.pt2"))
    assert loaded.select_output(torch.randn(1, 3, 32, 32)).shape == (1, 4, 32, 32) and loaded.output_rule == ".logits"
    # a fresh `segdeploy export`, where nothing registered it: one line naming the type and both fixes
    r = subprocess.run([sys.executable, "-m", "segdeploy", "export", str(tmp_path / "model.pt2"), "--out",
                        str(tmp_path / "out"), "-q"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: cannot load ") and "its output type segout.SegOutput is not registered" in r.stderr
    assert "re-export a wrapper whose forward returns the logits tensor" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    # inspect names the output type from the archive alone
    from segdeploy.inspect import inspect_path, render_text

    report = inspect_path(tmp_path / "model.pt2")
    assert report["output_type"] == "segout.SegOutput"
    assert "output type: segout.SegOutput: `segdeploy export` cannot load it" in render_text(report)

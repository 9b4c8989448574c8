"""The export matrix: the models segdeploy promises to export with dynamic shapes and verify.

Each :class:`MatrixRow` builds a randomly initialised model (no weights are downloaded) and names the
small profile it is exercised at. Used by ``tests/export/test_matrix.py`` and ``benchmarks/export.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class MatrixRow:
    name: str
    family: str  # "smp" | "torchvision" | "zoo"
    build: Callable[[], torch.nn.Module]
    shape: str = "1x3x64x64"  # opt
    min_shape: str | None = None
    max_shape: str | None = None
    expect_static: tuple[str, ...] = ()  # axes that must be exported static, with the reason in the manifest
    note: str = ""
    export_kwargs: dict[str, Any] = field(default_factory=dict)


def _smp(arch: str, encoder: str = "resnet18", **kw) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import segmentation_models_pytorch as smp

        torch.manual_seed(0)
        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=5, **kw).eval()

    return build


def _tv(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import torchvision

        torch.manual_seed(0)
        kw = {"weights": None, "weights_backbone": None, "num_classes": 5}
        if name != "lraspp_mobilenet_v3_large":
            kw["aux_loss"] = False
        return getattr(torchvision.models.segmentation, name)(**kw).eval()

    return build


def _zoo(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from segdeploy import zoo

        torch.manual_seed(0)
        return zoo.create(name, num_classes=5).eval()

    return build


ROWS: list[MatrixRow] = [
    MatrixRow("smp.Unet", "smp", _smp("Unet")),
    MatrixRow("smp.UnetPlusPlus", "smp", _smp("UnetPlusPlus")),
    MatrixRow("smp.MAnet", "smp", _smp("MAnet")),
    MatrixRow("smp.Linknet", "smp", _smp("Linknet")),
    MatrixRow("smp.FPN", "smp", _smp("FPN")),
    MatrixRow("smp.PSPNet", "smp", _smp("PSPNet")),
    MatrixRow(
        "smp.PAN",
        "smp",
        _smp("PAN"),
        shape="1x3x256x256",
        min_shape="1x3x256x256",
        max_shape="2x3x320x320",
        note="its feature pyramid attention pools the 1/32 map three more times: inputs below 256 px fail in PyTorch",
    ),
    MatrixRow("smp.DeepLabV3", "smp", _smp("DeepLabV3")),
    MatrixRow("smp.DeepLabV3Plus", "smp", _smp("DeepLabV3Plus")),
    MatrixRow("smp.UPerNet", "smp", _smp("UPerNet")),
    MatrixRow("smp.Segformer", "smp", _smp("Segformer", "mit_b0")),
    MatrixRow(
        "smp.DPT",
        "smp",
        _smp("DPT", "tu-vit_tiny_patch16_224", encoder_depth=4),
        shape="1x3x224x224",
        expect_static=("height", "width"),
        note="ViT with fixed-size learned position embeddings: H/W static at 224 (dynamic_img_size=False)",
    ),
    MatrixRow(
        "smp.DPT(dynamic_img_size)",
        "smp",
        _smp("DPT", "tu-vit_tiny_patch16_224", encoder_depth=4, dynamic_img_size=True),
        shape="1x3x64x64",
        note="position embeddings interpolated at run time (timm dynamic_img_size=True): H/W dynamic",
    ),
    MatrixRow("tv.fcn_resnet50", "torchvision", _tv("fcn_resnet50")),
    MatrixRow("tv.deeplabv3_mobilenet_v3_large", "torchvision", _tv("deeplabv3_mobilenet_v3_large")),
    MatrixRow("tv.lraspp_mobilenet_v3_large", "torchvision", _tv("lraspp_mobilenet_v3_large")),
    MatrixRow("zoo.segnet", "zoo", _zoo("segnet")),
    MatrixRow("zoo.hrnet", "zoo", _zoo("hrnet")),
    MatrixRow("zoo.bisenet", "zoo", _zoo("bisenet")),
    MatrixRow("zoo.refinenet", "zoo", _zoo("refinenet")),
    MatrixRow("zoo.ocrnet", "zoo", _zoo("ocrnet")),
    MatrixRow("zoo.fcn8s", "zoo", _zoo("fcn8s")),
]

BY_NAME = {r.name: r for r in ROWS}

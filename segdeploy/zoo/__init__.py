"""Example zoo: compact but faithful segmentation architectures that no library ships.

Every model is a plain ``nn.Module`` with ``forward(x: [N, C, H, W]) -> logits [N, num_classes, H, W]``,
random-initialised (no pretrained weights), a few hundred thousand to ~1.5 M parameters, built from
ops both ONNX exporters know. Each model class carries ``spatial_multiple`` (also recorded here).

Registry: ``names()`` lists the models, ``entry(name)`` gives a :class:`ZooEntry` with capability
flags, ``create(name, num_classes=..., in_channels=3)`` builds one. Factories are referenced as
``"module:function"`` strings and imported only when used, so importing the registry is cheap and a
factory path is usable directly as ``segdeploy export --model segdeploy.zoo.segnet:segnet``.

Raises:
    ModelLoadError: ``entry``/``create`` with an unknown name (the message lists the valid names).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable

from torch import nn

from segdeploy.errors import ModelLoadError, UsageError

__all__ = ["ZooEntry", "names", "entry", "entries", "create"]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model and what it needs from the export pipeline.

    Attributes:
        name: registry name.
        factory: ``"module:function"``; the function takes ``num_classes`` and ``in_channels``.
        spatial_multiple: H and W multiples at which the model is exact (all feature maps divide evenly).
        any_size: the model also runs (with matching output size) at H, W that are not multiples;
            for FCN-8s the skip fusion is then an approximation, see its module docstring.
        min_size: smallest H/W the model accepts.
        uses_max_unpool: ``max_pool2d(return_indices=True)`` + ``max_unpool2d`` (ScatterND in ONNX;
            a TensorRT plugin is needed).
        uses_adaptive_pool: contains ``nn.AdaptiveAvgPool2d`` (here only with output size 1).
        uses_matmul_attention: batched matmul + softmax over a flattened H*W axis (OCRNet).
        uses_conv_transpose: learned transposed-conv upsampling (FCN-8s).
        paper: the architecture's reference.
    """

    name: str
    factory: str
    spatial_multiple: int
    any_size: bool = True
    min_size: int = 32
    uses_max_unpool: bool = False
    uses_adaptive_pool: bool = False
    uses_matmul_attention: bool = False
    uses_conv_transpose: bool = False
    paper: str = ""

    def load_factory(self) -> Callable[..., nn.Module]:
        """Import and return the factory function."""
        module, attr = self.factory.split(":")
        return getattr(importlib.import_module(module), attr)


_ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry(
        "segnet",
        "segdeploy.zoo.segnet:segnet",
        spatial_multiple=1,
        min_size=16,
        uses_max_unpool=True,
        paper="Badrinarayanan et al., SegNet, TPAMI 2017",
    ),
    ZooEntry(
        "hrnet",
        "segdeploy.zoo.hrnet:hrnet",
        spatial_multiple=32,
        paper="Wang et al., Deep High-Resolution Representation Learning, TPAMI 2020 (HRNetV2)",
    ),
    ZooEntry(
        "bisenet",
        "segdeploy.zoo.bisenet:bisenet",
        spatial_multiple=32,
        uses_adaptive_pool=True,
        paper="Yu et al., BiSeNet, ECCV 2018",
    ),
    ZooEntry(
        "refinenet",
        "segdeploy.zoo.refinenet:refinenet",
        spatial_multiple=32,
        paper="Lin et al., RefineNet, CVPR 2017",
    ),
    ZooEntry(
        "ocrnet",
        "segdeploy.zoo.ocrnet:ocrnet",
        spatial_multiple=8,
        min_size=16,
        uses_matmul_attention=True,
        paper="Yuan et al., Object-Contextual Representations, ECCV 2020",
    ),
    ZooEntry(
        "fcn8s",
        "segdeploy.zoo.fcn8s:fcn8s",
        spatial_multiple=32,
        uses_conv_transpose=True,
        paper="Long et al., Fully Convolutional Networks, CVPR 2015",
    ),
)

# The compact U-Net lives in segdeploy/zoo/unet.py (owned by the example-model work); registered only
# when that module is present.
_OPTIONAL: tuple[ZooEntry, ...] = (
    ZooEntry(
        "unet",
        "segdeploy.zoo.unet:compact_unet",
        spatial_multiple=16,
        any_size=False,
        min_size=16,
        paper="Ronneberger et al., U-Net, MICCAI 2015",
    ),
)


def _registry() -> dict[str, ZooEntry]:
    reg = {e.name: e for e in _ENTRIES}
    for e in _OPTIONAL:
        if importlib.util.find_spec(e.factory.split(":")[0]) is not None:
            reg[e.name] = e
    return reg


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_registry())


def entries() -> list[ZooEntry]:
    """All registered entries, sorted by name."""
    reg = _registry()
    return [reg[n] for n in sorted(reg)]


def entry(name: str) -> ZooEntry:
    """The entry for ``name``. Raises ModelLoadError for an unknown name, listing the valid ones."""
    reg = _registry()
    if name not in reg:
        raise ModelLoadError(
            f"unknown zoo model {name!r}; valid names: {', '.join(sorted(reg))}"
        )
    return reg[name]


def create(name: str, num_classes: int = 21, in_channels: int = 3) -> nn.Module:
    """Build zoo model ``name`` (random init, train mode, as ``nn.Module`` constructors do).

    Raises:
        ModelLoadError: unknown ``name`` (lists the valid names).
        UsageError: ``num_classes`` < 1 or ``in_channels`` < 1.
    """
    e = entry(name)
    if int(num_classes) < 1 or int(in_channels) < 1:
        raise UsageError(
            f"zoo model {name!r} needs num_classes >= 1 and in_channels >= 1, got "
            f"num_classes={num_classes}, in_channels={in_channels}; pass positive integers"
        )
    return e.load_factory()(num_classes=int(num_classes), in_channels=int(in_channels))

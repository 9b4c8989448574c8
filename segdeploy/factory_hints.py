"""Which factory a state dict belongs to, from its key names and shapes: the ``--model`` line to suggest.

Contract
--------
:func:`suggest_factory` takes a state dict's ``name -> shape`` table (no tensors, no torch needed) and returns a
:class:`FactoryHint` when the names identify a library segdeploy knows, else None:

* segmentation_models_pytorch: ``encoder.*`` + ``decoder.*`` + ``segmentation_head.*``; the architecture from the
  decoder's key names (Unet, UnetPlusPlus, FPN, PSPNet, DeepLabV3, DeepLabV3Plus, Linknet, MAnet, PAN, UPerNet,
  Segformer), ``classes`` from the head's weight, ``in_channels`` from the first encoder convolution, the encoder
  from the key layout where that is cheap (the ResNet family by block count and kind), ``encoder_weights=None``;
* torchvision: ``backbone.*`` + ``classifier.*`` (+ ``aux_classifier.*``): deeplabv3 / fcn / lraspp from the head
  keys, the backbone (resnet50/101, mobilenet_v3_large) from the backbone keys, ``num_classes`` from the final
  classifier weight, ``aux_loss`` from the aux head, ``weights=None`` and ``weights_backbone=None``.

:meth:`FactoryHint.command` is the ``--model ... --model-arg ... --weights FILE`` text; it is complete (it loads the
state dict) when ``missing`` is empty, otherwise ``missing`` names what the keys could not tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

Shapes = Mapping[str, tuple[int, ...]]
SMP = "segmentation_models_pytorch"
TORCHVISION = "torchvision.models.segmentation"

# decoder key prefix -> smp architecture, most specific first
_SMP_DECODERS = (
    ("decoder.blocks.x_0_0.", "UnetPlusPlus"), ("decoder.center.", "MAnet"), ("decoder.fpa.", "PAN"),
    ("decoder.mlp_stage.", "Segformer"), ("decoder.fpn_lateral_blocks.", "UPerNet"), ("decoder.psp.", "PSPNet"),
    ("decoder.seg_blocks.", "FPN"), ("decoder.block1.", "DeepLabV3Plus"), ("decoder.aspp.convs.", "DeepLabV3"),
    ("decoder.blocks.0.block.", "Linknet"), ("decoder.blocks.0.conv1.", "Unet"),
)
_RESNET_LAYER3_BLOCKS = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50",
                         (23, True): "resnet101", (36, True): "resnet152"}


@dataclass(frozen=True)
class FactoryHint:
    """A factory and the keyword arguments the state dict's keys imply."""

    library: str
    factory: str  # "pkg.module:callable"
    kwargs: dict[str, Any]
    missing: tuple[str, ...] = ()  # what the keys could not tell (the command needs it added)
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        return f"a {self.library} {self.factory.split(':')[1]} state dict"

    def command(self, weights: str) -> str:
        args = " ".join(f"--model-arg {k}={_arg_text(v)}" for k, v in self.kwargs.items())
        return f"--model {self.factory} {args} --weights {weights}".replace("  ", " ")


def _arg_text(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _blocks(shapes: Shapes, prefix: str) -> set[str]:
    return {k[len(prefix):].split(".")[0] for k in shapes if k.startswith(prefix)}


def _resnet(shapes: Shapes, prefix: str) -> str | None:
    """resnet18..152 from ``<prefix>layer3.N`` block count and whether blocks have a third conv (bottleneck)."""
    n = len(_blocks(shapes, f"{prefix}layer3."))
    bottleneck = f"{prefix}layer1.0.conv3.weight" in shapes
    return _RESNET_LAYER3_BLOCKS.get((n, bottleneck)) if f"{prefix}conv1.weight" in shapes else None


def _first_conv_in(shapes: Shapes, prefix: str) -> int | None:
    return next((s[1] for k, s in shapes.items() if k.startswith(prefix) and len(s) == 4), None)


def _smp(shapes: Shapes) -> FactoryHint | None:
    head = shapes.get("segmentation_head.0.weight")
    arch = next((a for p, a in _SMP_DECODERS if any(k.startswith(p) for k in shapes)), None)
    if head is None or arch is None:
        return None
    encoder = _resnet(shapes, "encoder.")
    kwargs: dict[str, Any] = {"encoder_name": encoder or "ENCODER", "encoder_weights": None}
    in_channels = _first_conv_in(shapes, "encoder.")
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    kwargs["classes"] = head[0]
    missing = () if encoder else ("encoder_name (the keys do not say which encoder; use the one you trained with)",)
    if arch in ("Unet", "Linknet", "MAnet") and len(_blocks(shapes, "decoder.blocks.")) != 5:
        kwargs["encoder_depth"] = len(_blocks(shapes, "decoder.blocks."))
    if arch == "Unet":
        channels = tuple(shapes[f"decoder.blocks.{i}.conv2.0.weight"][0] for i in range(len(_blocks(shapes, "decoder.blocks."))))
        if channels != (256, 128, 64, 32, 16)[: len(channels)]:
            missing += (f"decoder_channels={list(channels)} (not the default: write a factory that passes them)",)
    return FactoryHint("segmentation_models_pytorch", f"{SMP}:{arch}", kwargs, missing)


def _torchvision(shapes: Shapes) -> FactoryHint | None:
    if not any(k.startswith("backbone.") for k in shapes) or not any(k.startswith("classifier.") for k in shapes):
        return None
    if "classifier.low_classifier.weight" in shapes:
        head, k = "lraspp", shapes["classifier.low_classifier.weight"][0]
    elif "classifier.4.weight" in shapes:
        head = "deeplabv3" if any(k.startswith("classifier.0.convs.") for k in shapes) else "fcn"
        k = shapes["classifier.4.weight"][0]
    else:
        return None
    backbone = _resnet(shapes, "backbone.") or ("mobilenet_v3_large" if "backbone.0.0.weight" in shapes else None)
    if backbone is None or f"{head}_{backbone}" not in _TV_FACTORIES:
        return None
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": k}
    if any(key.startswith("aux_classifier.") for key in shapes):
        kwargs["aux_loss"] = True
    return FactoryHint("torchvision", f"{TORCHVISION}:{head}_{backbone}", kwargs)


_TV_FACTORIES = frozenset({"deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large", "fcn_resnet50",
                           "fcn_resnet101", "lraspp_mobilenet_v3_large"})


def suggest_factory(shapes: Shapes) -> FactoryHint | None:
    """The factory the state dict's ``name -> shape`` table identifies (see the module docstring), else None."""
    if not shapes:
        return None
    return _smp(shapes) or _torchvision(shapes)


__all__ = ["FactoryHint", "suggest_factory"]

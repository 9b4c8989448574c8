"""Tiny models for loader/export tests (importable as factories: ``tinymodels:tiny_seg``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinySeg(nn.Module):
    """conv-bn-relu, 2x2 max-pool, conv, bilinear upsample: spatial multiple 2."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, num_classes, 3, padding=1)

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.bn(self.c1(x))), 2)
        return F.interpolate(self.c2(y), scale_factor=2.0, mode="bilinear", align_corners=False)


def tiny_seg(num_classes: int = 3, in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return TinySeg(in_channels, num_classes).eval()


class DictOut(TinySeg):
    def forward(self, x):
        y = super().forward(x)
        return {"aux": y * 0.5, "out": y}


class TupleOut(TinySeg):
    def forward(self, x):
        y = super().forward(x)
        return y.mean((2, 3)), y  # classifier-like head first, score map second


@dataclass
class HFOutput:
    loss: object
    logits: torch.Tensor


class LogitsOut(TinySeg):
    def forward(self, x):
        return HFOutput(None, super().forward(x))


class Classifier(TinySeg):
    def forward(self, x):
        return super().forward(x).mean((2, 3))


class ShapeBranch(TinySeg):
    """Python control flow on the input size: a tracer bakes in one branch (verification must catch it)."""

    def forward(self, x):
        y = super().forward(x)
        if x.shape[2] > 48:
            return y
        return -y


def not_a_module():
    return 42


class WindowPadded(nn.Module):
    """A Swin-like stand-in: patch embedding, then a window op that pads H/W to a multiple of the window under a
    Python ``if`` (the tracer bakes the trace size's branch in, as Swin's padding and patch merging are)."""

    def __init__(self, num_classes: int = 3, patch_size: int = 2, window_size: int = 3):
        super().__init__()
        self.patch_size, self.window_size = patch_size, window_size
        self.embed = nn.Conv2d(3, 8, patch_size, stride=patch_size)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        y = self.embed(x)
        h, w = y.shape[-2:]
        ws = self.window_size
        if h % ws or w % ws:  # baked in by the tracer
            y = F.pad(y, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        n, c, hp, wp = y.shape
        win = y.reshape(n, c, hp // ws, ws, wp // ws, ws)
        y = (win - win.mean((3, 5), keepdim=True)).reshape(n, c, hp, wp)[..., :h, :w]
        return F.interpolate(self.head(y), scale_factor=float(self.patch_size), mode="bilinear", align_corners=False)


def window_padded(num_classes: int = 3, in_channels: int = 3, patch_size: int = 2, window_size: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return WindowPadded(num_classes, patch_size, window_size).eval()


class TraceSizeScaled(TinySeg):
    """Mask2Former-style silent error: a value computed from the input size in Python (a float), which the tracer
    bakes in, so the graph is exact at the trace size only and no spatial multiple helps."""

    def forward(self, x):
        y = super().forward(x)
        return y * (1.0 + 64.0 / float(x.shape[-1]))


def trace_size_scaled(num_classes: int = 3, in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return TraceSizeScaled(in_channels, num_classes).eval()


def _hf_swin_config():
    from transformers import SwinConfig

    return SwinConfig(embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 3, 4], window_size=7, patch_size=4,
                      image_size=224, out_features=["stage1", "stage2", "stage3", "stage4"])


def hf_swin_upernet(num_classes: int = 4, in_channels: int = 3) -> nn.Module:
    """Hugging Face UperNet on a tiny Swin (embed 24, depths 1-1-1-1, window 7), random init, no download."""
    from transformers import UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(0)
    cfg = UperNetConfig(backbone_config=_hf_swin_config(), hidden_size=32, auxiliary_in_channels=32,
                        use_auxiliary_head=False, num_labels=num_classes)
    return UperNetForSemanticSegmentation(cfg).eval()


class SemanticFromMasks(nn.Module):
    """MaskFormer-style output -> semantic logits [N, K, H, W]: class probabilities (no "void") x mask sigmoids."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(pixel_values=x)
        cls = out.class_queries_logits.softmax(-1)[..., :-1]
        seg = torch.einsum("nqk,nqhw->nkhw", cls, out.masks_queries_logits.sigmoid())
        return F.interpolate(seg, size=x.shape[-2:], mode="bilinear", align_corners=False)


def hf_swin_maskformer(num_classes: int = 4, in_channels: int = 3) -> nn.Module:
    """Hugging Face MaskFormer on the same tiny Swin (8 queries, 32-wide heads), random init, no download."""
    from transformers import MaskFormerConfig, MaskFormerForInstanceSegmentation

    torch.manual_seed(0)
    cfg = MaskFormerConfig(backbone_config=_hf_swin_config(), num_labels=num_classes, fpn_feature_size=32,
                           mask_feature_size=32, num_queries=8)
    dec = cfg.decoder_config
    dec.d_model, dec.encoder_ffn_dim, dec.decoder_ffn_dim = 32, 64, 64
    dec.encoder_layers, dec.decoder_layers, dec.encoder_attention_heads, dec.decoder_attention_heads = 1, 2, 2, 2
    return SemanticFromMasks(MaskFormerForInstanceSegmentation(cfg).eval()).eval()


def hf_swin_mask2former(num_classes: int = 4, in_channels: int = 3) -> nn.Module:
    """Hugging Face Mask2Former on the same tiny Swin (8 queries, 32-wide pixel decoder, 2 decoder layers)."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    cfg = Mask2FormerConfig(backbone_config=_hf_swin_config(), num_labels=num_classes, hidden_dim=32,
                            mask_feature_size=32, feature_size=32, encoder_layers=1, decoder_layers=2, num_queries=8,
                            encoder_feedforward_dim=64, dim_feedforward=64, num_attention_heads=2)
    return SemanticFromMasks(Mask2FormerForUniversalSegmentation(cfg).eval()).eval()

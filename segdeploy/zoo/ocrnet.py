"""OCRNet (Yuan et al., "Object-Contextual Representations for Semantic Segmentation", ECCV 2020), compact.

Structure as in the paper:
- **backbone**: a dilated ResNet-style network with output stride 8 (stages 3 and 4 use dilation 2
  and 4 instead of striding), as in the paper's ResNet-101 variant;
- **soft object regions**: an auxiliary head (1x1 conv-BN-ReLU, 1x1 conv) predicts ``K`` class maps from
  the backbone's stage-3 + stage-4 features (the paper supervises them with the auxiliary loss);
- **pixel representations**: a 3x3 conv-BN-ReLU on the stage-4 features;
- **object region representations**: ``f_k = sum_i softmax_over_pixels(m_k)_i * x_i`` -- a spatial
  softmax of each region map, then a batched matmul with the pixel representations -> ``[N, K, C]``;
- **object contextual attention**: pixel-region relation ``w_ik = softmax_k(phi(x_i)^T psi(f_k) / sqrt(d))``
  with ``phi``/``psi`` two 1x1 conv-BN-ReLU transforms each, object context
  ``y_i = rho(sum_k w_ik delta(f_k))`` (``delta``, ``rho``: 1x1 conv-BN-ReLU);
- **augmented representation**: ``g(concat(x_i, y_i))`` (1x1 conv-BN-ReLU), then a 1x1 classifier,
  bilinear upsampling to the input size.

``forward`` returns the main logits; ``forward_with_aux`` also returns the soft-object-region logits
(upsampled) for training with the auxiliary loss.
Sizes: any H, W works; the declared ``spatial_multiple`` is 8 (the output stride).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segdeploy.zoo._layers import CompactResNet, ConvBNReLU, init_weights


class SpatialGather(nn.Module):
    """Object region representations: ``softmax_pixels(regions) @ pixels^T`` -> ``[N, C, K, 1]``."""

    def forward(self, feats: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(regions.flatten(2), dim=2)  # [N, K, HW]
        pixels = feats.flatten(2).transpose(1, 2)  # [N, HW, C]
        objects = torch.bmm(probs, pixels)  # [N, K, C]
        return objects.transpose(1, 2).unsqueeze(3)  # [N, C, K, 1]


class ObjectAttention(nn.Module):
    """Object contextual attention: pixels attend over the K object region representations."""

    def __init__(self, in_ch: int, key_ch: int):
        super().__init__()
        self.key_ch = key_ch
        self.f_pixel = nn.Sequential(ConvBNReLU(in_ch, key_ch, 1), ConvBNReLU(key_ch, key_ch, 1))
        self.f_object = nn.Sequential(ConvBNReLU(in_ch, key_ch, 1), ConvBNReLU(key_ch, key_ch, 1))
        self.f_down = ConvBNReLU(in_ch, key_ch, 1)
        self.f_up = ConvBNReLU(key_ch, in_ch, 1)

    def forward(self, feats: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        n, _, h, w = feats.shape
        query = self.f_pixel(feats).flatten(2).transpose(1, 2)  # [N, HW, D]
        key = self.f_object(objects).flatten(2)  # [N, D, K]
        value = self.f_down(objects).flatten(2).transpose(1, 2)  # [N, K, D]
        sim = F.softmax(torch.bmm(query, key) * self.key_ch**-0.5, dim=-1)  # [N, HW, K]
        context = torch.bmm(sim, value).transpose(1, 2)  # [N, D, HW]
        context = context.reshape(n, self.key_ch, h, w)
        return self.f_up(context)


class OCRNet(nn.Module):
    """Compact OCRNet. ``forward(x: [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``."""

    spatial_multiple = 8

    def __init__(self, num_classes: int = 21, in_channels: int = 3, ocr_ch: int = 64, key_ch: int = 32):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = CompactResNet(in_channels, widths=(16, 32, 64, 128), dilations=(1, 1, 2, 4))
        c = self.backbone.out_channels
        self.aux_head = nn.Sequential(ConvBNReLU(c[2] + c[3], 64, 1), nn.Conv2d(64, num_classes, 1))
        self.pixel = ConvBNReLU(c[3], ocr_ch, 3)
        self.gather = SpatialGather()
        self.attention = ObjectAttention(ocr_ch, key_ch)
        self.augment = nn.Sequential(ConvBNReLU(2 * ocr_ch, ocr_ch, 1), nn.Dropout2d(0.05))
        self.classifier = nn.Conv2d(ocr_ch, num_classes, 1)
        init_weights(self)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, soft_region_logits)``, both ``[N, num_classes, H, W]``."""
        _, _, c3, c4 = self.backbone(x)
        regions = self.aux_head(torch.cat([c3, c4], dim=1))
        feats = self.pixel(c4)
        objects = self.gather(feats, regions)
        context = self.attention(feats, objects)
        out = self.classifier(self.augment(torch.cat([context, feats], dim=1)))
        size = x.shape[-2:]
        return (
            F.interpolate(out, size=size, mode="bilinear", align_corners=False),
            F.interpolate(regions, size=size, mode="bilinear", align_corners=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def ocrnet(num_classes: int = 21, in_channels: int = 3) -> OCRNet:
    """Factory: compact OCRNet on a dilated ResNet backbone (output stride 8), about 0.41 M parameters."""
    return OCRNet(num_classes=num_classes, in_channels=in_channels)

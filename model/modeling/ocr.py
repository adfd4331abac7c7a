"""Object-contextual representations (OCR) head, as RITM puts it on HRNet.

1. An auxiliary head predicts coarse logits per class from the backbone features ("soft object
   regions"); it is also the model's auxiliary output.
2. The features (3x3 conv to ``2 * ocr_width`` channels) are averaged over each region, weighted by
   a spatial softmax of its logits: one feature vector per class ("object region representation").
3. Every pixel attends to those region vectors (key width ``ocr_width``); the attended context is
   concatenated with the pixel features, fused by a 1x1 conv and classified.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn


def soft_object_regions(features: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
    """Region representations: feature averages weighted by a softmax over pixels.

    features (B, C, H, W), region_logits (B, K, H, W) -> (B, C, K, 1).
    """
    weights = F.softmax(region_logits.flatten(2), dim=2)  # (B, K, HW)
    regions = torch.matmul(weights, features.flatten(2).transpose(1, 2))  # (B, K, C)
    return regions.transpose(1, 2).unsqueeze(3)


class ObjectContextAttention(nn.Module):
    """Pixels (queries) attend to region representations (keys/values), scaled dot product.

    forward(pixels (B, C, H, W), regions (B, C, K, 1)) -> context (B, C, H, W).
    """

    def __init__(self, channels: int, key_channels: int, bias: bool = False) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(
            ConvNormAct(channels, key_channels, 1, bias=bias),
            ConvNormAct(key_channels, key_channels, 1, bias=bias),
        )
        self.key = nn.Sequential(
            ConvNormAct(channels, key_channels, 1, bias=bias),
            ConvNormAct(key_channels, key_channels, 1, bias=bias),
        )
        self.value = ConvNormAct(channels, key_channels, 1, bias=bias)
        self.project = ConvNormAct(key_channels, channels, 1, bias=bias)

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixels.shape
        query = self.query(pixels).flatten(2).transpose(1, 2)  # (B, HW, Ck)
        key = self.key(regions).flatten(2)  # (B, Ck, K)
        value = self.value(regions).flatten(2).transpose(1, 2)  # (B, K, Ck)
        attention = F.softmax(torch.matmul(query, key) * self.key_channels**-0.5, dim=-1)
        context = torch.matmul(attention, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.project(context)


class OCRHead(nn.Module):
    """OCR segmentation head with its auxiliary (soft-region) head.

    forward(features (B, in_channels, h, w)) -> (logits, aux_logits), both (B, num_classes, h, w).

    The defaults are RITM's head (auxiliary head 1x1 conv at the input width, 3x3 pixel conv,
    bias-free attention and fusion convs). HRFormer's ``HRT_B_OCR_V3`` uses ``kernel_size=7`` grouped
    convs (``groups``) for both the auxiliary head (at the pixel width) and the pixel conv, and biased
    1x1 convs elsewhere (``conv_bias``).
    """

    def __init__(
        self,
        in_channels: int,
        ocr_width: int,
        num_classes: int = 1,
        dropout: float = 0.05,
        kernel_size: int | None = None,
        groups: int = 1,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        mid_channels = 2 * ocr_width
        if kernel_size is None:  # RITM
            aux_conv = ConvNormAct(in_channels, in_channels, 1, bias=True)
            pixel_conv = ConvNormAct(in_channels, mid_channels, 3, bias=True)
        else:
            aux_conv = ConvNormAct(in_channels, mid_channels, kernel_size, groups=groups, bias=True)
            pixel_conv = ConvNormAct(in_channels, mid_channels, kernel_size, groups=groups, bias=True)
        self.aux_head = nn.Sequential(
            aux_conv, nn.Conv2d(aux_conv.conv.out_channels, num_classes, kernel_size=1)
        )
        self.pixel_conv = pixel_conv
        self.attention = ObjectContextAttention(mid_channels, ocr_width, bias=conv_bias)
        self.fuse = ConvNormAct(2 * mid_channels, mid_channels, 1, bias=conv_bias)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(mid_channels, num_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux_logits = self.aux_head(features)
        pixels = self.pixel_conv(features)
        context = self.attention(pixels, soft_object_regions(pixels, aux_logits))
        fused = self.dropout(self.fuse(torch.cat((context, pixels), dim=1)))
        return self.classifier(fused), aux_logits

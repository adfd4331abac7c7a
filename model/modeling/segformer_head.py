"""The all-MLP SegFormer decode head (mmseg ``SegformerHead`` as used by iSegFormer).

For each selected encoder feature map: 1x1 conv to ``channels`` (+ BatchNorm when enabled) + ReLU,
bilinear resize to the size of the first selected map (``align_corners`` as configured, False in
every iSegFormer config); concatenation in stage order (stride 4 first, not reversed); 1x1 fusion conv
(+ BatchNorm) + ReLU; Dropout2d; 1x1 classifier. Output stride = that of the first map (4 for MiT).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvReLU(nn.Module):
    """1x1 conv [+ BatchNorm] + ReLU (the conv has a bias only without BatchNorm)."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class SegFormerHead(nn.Module):
    """All-MLP head: list of (B, C_i, H_i, W_i) features -> (B, num_classes, H_0, W_0) logits.

    ``in_index`` picks which of the encoder outputs are used (all of them by default) and
    ``in_channels`` gives their channel counts, in the same order.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 256,
        num_classes: int = 1,
        dropout_ratio: float = 0.1,
        align_corners: bool = False,
        in_index: Sequence[int] | None = None,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.in_index = tuple(range(len(self.in_channels)) if in_index is None else in_index)
        if len(self.in_index) != len(self.in_channels):
            raise ValueError(
                f"head in_index {self.in_index} and in_channels {self.in_channels} differ in length"
            )
        self.channels = channels
        self.num_classes = num_classes
        self.dropout_ratio = dropout_ratio
        self.align_corners = align_corners
        self.batch_norm = batch_norm
        self.lateral = nn.ModuleList(ConvReLU(c, channels, batch_norm) for c in self.in_channels)
        self.fuse = ConvReLU(channels * len(self.in_channels), channels, batch_norm)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        selected = [features[i] for i in self.in_index]
        size = selected[0].shape[2:]
        outs = []
        for x, lateral in zip(selected, self.lateral, strict=True):
            x = lateral(x)
            if x.shape[2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
            outs.append(x)
        return self.classifier(self.dropout(self.fuse(torch.cat(outs, dim=1))))

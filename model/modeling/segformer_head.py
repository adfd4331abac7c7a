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
        if self.training:
            return self.forward_plain(features)
        return self._forward_fused(features)

    def forward_plain(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The original order of operations (used in training, where BatchNorm and dropout act)."""
        selected = [features[i] for i in self.in_index]
        size = selected[0].shape[2:]
        outs = []
        for x, lateral in zip(selected, self.lateral, strict=True):
            x = lateral(x)
            if x.shape[2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
            outs.append(x)
        return self.classifier(self.dropout(self.fuse(torch.cat(outs, dim=1))))

    def _forward_fused(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inference: every 1x1 conv as a matrix product on channels-last pixels, and the fusion conv
        applied to each input at its own resolution before upsampling.

        The fusion conv and bilinear resizing are both linear, so ``fuse(cat(resize(l_i)))`` equals
        ``sum_i resize(W_i l_i) + b``: the wide (n·C -> C) conv no longer runs at stride 4, which
        saves most of the head's work. BatchNorm (eval) is folded into the convs. Equal to the
        training path up to float rounding.
        """
        selected = [features[i] for i in self.in_index]
        size = selected[0].shape[2:]
        fuse_weight, fuse_bias = _folded_1x1(self.fuse)
        fuse_weights = fuse_weight.split(self.channels, dim=1)
        total = None
        for x, lateral, part in zip(selected, self.lateral, fuse_weights, strict=True):
            weight, bias = _folded_1x1(lateral)
            y = torch.relu(F.linear(x.permute(0, 2, 3, 1), weight, bias))  # (B, h, w, C)
            y = F.linear(y, part).permute(0, 3, 1, 2)  # this input's share of the fusion conv
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=self.align_corners)
            total = y if total is None else total + y
        fused = torch.relu(total.permute(0, 2, 3, 1) + fuse_bias.to(total.dtype))
        logits = F.linear(fused, self.classifier.weight.flatten(1), self.classifier.bias)
        return logits.permute(0, 3, 1, 2)


def _folded_1x1(block: ConvReLU) -> tuple[torch.Tensor, torch.Tensor]:
    """(C_out, C_in) weight and bias of a 1x1 conv with its eval-mode BatchNorm folded in."""
    weight = block.conv.weight.flatten(1)
    bias = block.conv.bias if block.conv.bias is not None else weight.new_zeros(weight.shape[0])
    if block.bn is not None:
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * scale[:, None]
        bias = (bias - bn.running_mean) * scale + bn.bias
    return weight, bias

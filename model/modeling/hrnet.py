"""HRNetV2 backbone as used by RITM: four resolutions kept in parallel, fused repeatedly.

Layout (``width`` = C, ``small`` = HRNet-W18-Small-v2 depth):

* stem: two 3x3 stride-2 convs (64 channels, stride 4 in total); click features of shape
  (B, 64, H/2, W/2) are added after the first conv, as RITM does;
* ``layer1``: Bottleneck blocks (64 -> 256 channels);
* stages 2-4 with 2, 3, 4 branches of C, 2C, 4C, 8C channels at strides 4, 8, 16, 32; each
  stage is a sequence of :class:`HighResolutionModule` (residual branches, then all-to-all fusion);
* output: all branches bilinearly upsampled (align_corners=True) to stride 4 and concatenated,
  15C channels.

Module names follow the official HRNet code, so HRNet ImageNet weights map onto it directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

STEM_CHANNELS = 64


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int, relu: bool) -> nn.Sequential:
    """Conv (no bias) + BatchNorm [+ ReLU], keys ``0.*`` (conv) and ``1.*`` (norm)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def residual_stack(
    block: type[BasicBlock] | type[Bottleneck], in_ch: int, planes: int, num_blocks: int
) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first gets a 1x1 projection when channels change."""
    out_ch = planes * block.expansion
    downsample = None if in_ch == out_ch else conv_bn(in_ch, out_ch, 1, 1, relu=False)
    blocks = [block(in_ch, planes, downsample=downsample)]
    blocks += [block(out_ch, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class MultiResolutionModule(nn.Module):
    """Branches run side by side, then each output branch sums all inputs resampled to it.

    ``fuse_layers[dst][src]`` maps branch ``src`` to the channels (and, for ``src < dst``, the
    resolution) of branch ``dst``; lower-resolution terms are then resized bilinearly
    (align_corners=True) to branch ``dst``. Input/output: a list of (B, C_i, H_i, W_i) tensors.
    """

    def __init__(self, branches: list[nn.Module], fuse_layers: list[list[nn.Module]]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.fuse_layers = nn.ModuleList(nn.ModuleList(layers) for layers in fuse_layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for dst, layers in enumerate(self.fuse_layers):
            size = xs[dst].shape[-2:]
            y = layers[0](xs[0])
            for src in range(1, len(xs)):
                term = layers[src](xs[src])
                y = y + (resize(term, size) if src > dst else term)
            fused.append(self.relu(y))
        return fused


class HighResolutionModule(MultiResolutionModule):
    """HRNet's module: residual BasicBlocks on every branch, then all-to-all fusion.

    Lower-resolution inputs: 1x1 conv + BN, bilinear upsampling; higher-resolution inputs: a chain
    of 3x3 stride-2 conv + BN (+ ReLU between).
    """

    def __init__(self, channels: list[int], num_blocks: int) -> None:
        branches = [residual_stack(BasicBlock, c, c, num_blocks) for c in channels]
        fuse = [
            [self._fuse_layer(channels, src, dst) for src in range(len(channels))]
            for dst in range(len(channels))
        ]
        super().__init__(branches, fuse)

    @staticmethod
    def _fuse_layer(channels: list[int], src: int, dst: int) -> nn.Module:
        if src == dst:
            return nn.Identity()
        if src > dst:
            return conv_bn(channels[src], channels[dst], 1, 1, relu=False)
        steps = dst - src
        return nn.Sequential(
            *(
                conv_bn(channels[src], channels[dst], 3, 2, relu=False)
                if k == steps - 1
                else conv_bn(channels[src], channels[src], 3, 2, relu=True)
                for k in range(steps)
            )
        )


def transition_layers(previous: list[int], channels: list[int]) -> nn.ModuleList:
    """Between stages: adapt existing branches (3x3 conv where channels change), spawn new lower ones
    from the last branch (3x3 stride-2 convs)."""
    layers: list[nn.Module] = []
    for i, out_ch in enumerate(channels):
        if i < len(previous):
            same = previous[i] == out_ch
            layers.append(nn.Identity() if same else conv_bn(previous[i], out_ch, 3, 1, relu=True))
        else:
            steps = i + 1 - len(previous)
            src = previous[-1]
            layers.append(
                nn.Sequential(
                    *(conv_bn(src, out_ch if k == steps - 1 else src, 3, 2, relu=True) for k in range(steps))
                )
            )
    return nn.ModuleList(layers)


class MultiResolutionBackbone(nn.Module):
    """Stem (two 3x3 stride-2 convs to 64 channels), ``layer1`` (Bottlenecks), then stages 2-4 of
    multi-resolution modules, each after a transition. The HRNet and HRFormer backbones.

    ``forward(x (B,C_in,H,W), click_features (B,64,ceil(H/2),ceil(W/2)) or None)``
    -> (B, sum(stage-4 channels), ceil(H/4), ceil(W/4)): all branches resized to stride 4, concatenated.
    """

    def __init__(
        self,
        in_channels: int,
        layer1_planes: int,
        layer1_blocks: int,
        stages: list[tuple[list[int], list[nn.Module]]],
    ) -> None:
        """``stages``: for stages 2, 3, 4 the branch channels and the modules of the stage."""
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residual_stack(Bottleneck, STEM_CHANNELS, layer1_planes, layer1_blocks)
        previous = [layer1_planes * Bottleneck.expansion]
        for index, (channels, modules) in enumerate(stages, start=2):
            setattr(self, f"transition{index - 1}", transition_layers(previous, channels))
            setattr(self, f"stage{index}", nn.Sequential(*modules))
            previous = channels
        self.out_channels = sum(previous)

    def stem(self, x: torch.Tensor, click_features: torch.Tensor | None) -> torch.Tensor:
        """(B,C_in,H,W) -> (B,64,H/4,W/4); click features join after the first stride-2 conv."""
        x = self.relu(self.bn1(self.conv1(x)))
        if click_features is not None:
            x = x + click_features
        return self.relu(self.bn2(self.conv2(x)))

    def forward(self, x: torch.Tensor, click_features: torch.Tensor | None = None) -> torch.Tensor:
        xs = [self.layer1(self.stem(x, click_features))]
        for index in (2, 3, 4):
            transition = getattr(self, f"transition{index - 1}")
            xs = [layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = getattr(self, f"stage{index}")(xs)
        size = xs[0].shape[-2:]
        return torch.cat([xs[0]] + [resize(x, size) for x in xs[1:]], dim=1)


class HRNetBackbone(MultiResolutionBackbone):
    """HRNetV2-W``width`` (``small``: W18-Small-v2 depth: 2 blocks per branch, 1/3/2 modules); 15*width
    output channels."""

    def __init__(self, width: int, small: bool = False) -> None:
        num_blocks = 2 if small else 4
        modules_per_stage = (1, 3, 2) if small else (1, 4, 3)
        stages = []
        for index, num_modules in enumerate(modules_per_stage, start=2):
            channels = [width * 2**b for b in range(index)]
            stages.append(
                (channels, [HighResolutionModule(channels, num_blocks) for _ in range(num_modules)])
            )
        super().__init__(3, STEM_CHANNELS, num_blocks, stages)
        self.width = width
        self.small = small

"""HRFormer's High-Resolution Transformer (HRT) backbone, as iSegFormer runs it.

The HRNet layout (:class:`~model.modeling.hrnet.MultiResolutionBackbone`: stem, Bottleneck ``layer1``,
stages 2-4 with 2, 3, 4 branches at strides 4, 8, 16, 32) with transformer blocks on the branches:

* block: pre-norm (LayerNorm, eps 1e-6) multi-head self-attention inside non-overlapping
  ``window_size`` windows with a relative-position bias (Swin's :class:`WindowAttention`, no shift);
  the map is zero-padded to a multiple of the window, centred (HRFormer's ``PadBlock``), and the
  padded tokens take part in the attention unmasked, as in the original; then a residual
  depth-wise-conv FFN (1x1 conv, 3x3 depth-wise conv, 1x1 conv, each followed by BN + GELU);
* fusion between branches: a lower-resolution branch goes through 1x1 conv + BN + nearest upsampling
  by 2^k and is then resized bilinearly (align_corners=True) to the target; a higher-resolution one
  through k steps of 3x3 stride-2 depth-wise conv + BN + 1x1 conv + BN (ReLU between steps).

Widths come from :class:`HRTConfig` (the original yacs ``STAGE1``…``STAGE4`` entries); :data:`HRT_SMALL`
and :data:`HRT_BASE` are HRFormer's ``hrt_small`` / ``hrt_base``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, DropPath
from torch import nn

from model.modeling.hrnet import MultiResolutionBackbone, MultiResolutionModule, conv_bn
from model.modeling.swin_backbone import WindowAttention, window_merge, window_partition

LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class HRTStage:
    """One stage of multi-resolution transformer modules; tuples hold one entry per branch."""

    num_modules: int
    num_blocks: tuple[int, ...]
    channels: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    window_sizes: tuple[int, ...]


@dataclass(frozen=True)
class HRTConfig:
    """``layer1_planes`` / ``layer1_blocks``: the Bottleneck stage 1 (``STAGE1``); ``stages``: 2, 3, 4."""

    layer1_planes: int
    layer1_blocks: int
    stages: tuple[HRTStage, HRTStage, HRTStage]
    drop_path_rate: float = 0.2

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated stage-4 branches (the head's input)."""
        return sum(self.stages[-1].channels)


def _stage(modules: int, blocks: int, channels: list[int], heads: list[int]) -> HRTStage:
    n = len(channels)
    return HRTStage(modules, (blocks,) * n, tuple(channels), tuple(heads), (4.0,) * n, (7,) * n)


HRT_SMALL = HRTConfig(
    64,
    2,
    (
        _stage(1, 2, [32, 64], [1, 2]),
        _stage(4, 2, [32, 64, 128], [1, 2, 4]),
        _stage(2, 2, [32, 64, 128, 256], [1, 2, 4, 8]),
    ),
)
HRT_BASE = HRTConfig(
    64,
    2,
    (
        _stage(1, 2, [78, 156], [2, 4]),
        _stage(4, 2, [78, 156, 312], [2, 4, 8]),
        _stage(2, 2, [78, 156, 312, 624], [2, 4, 8, 16]),
    ),
)


def hrt_config_from_original(cfg: Mapping[str, Any]) -> HRTConfig:
    """Our config for HRFormer's yacs config (``DROP_PATH_RATE``, ``STAGE1`` … ``STAGE4``)."""
    if cfg["STAGE1"]["BLOCK"] != "BOTTLENECK":
        raise ValueError(f"STAGE1 block {cfg['STAGE1']['BLOCK']!r} is not supported (only BOTTLENECK)")
    stages = []
    for name in ("STAGE2", "STAGE3", "STAGE4"):
        s = cfg[name]
        if s["BLOCK"] != "TRANSFORMER_BLOCK":
            raise ValueError(f"{name} block {s['BLOCK']!r} is not supported (only TRANSFORMER_BLOCK)")
        stages.append(
            HRTStage(
                int(s["NUM_MODULES"]),
                tuple(int(v) for v in s["NUM_BLOCKS"]),
                tuple(int(v) for v in s["NUM_CHANNELS"]),
                tuple(int(v) for v in s["NUM_HEADS"]),
                tuple(float(v) for v in s["NUM_MLP_RATIOS"]),
                tuple(int(v) for v in s["NUM_WINDOW_SIZES"]),
            )
        )
    return HRTConfig(
        int(cfg["STAGE1"]["NUM_CHANNELS"][0]),
        int(cfg["STAGE1"]["NUM_BLOCKS"][0]),
        (stages[0], stages[1], stages[2]),
        float(cfg.get("DROP_PATH_RATE", 0.2)),
    )


class LocalWindowTransformerBlock(nn.Module):
    """HRFormer block: window self-attention + depth-wise-conv FFN; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(
            ConvNormAct(dim, hidden, 1, bias=True, act_layer=nn.GELU),
            ConvNormAct(hidden, hidden, 3, groups=hidden, bias=True, act_layer=nn.GELU),
            ConvNormAct(hidden, dim, 1, bias=True, act_layer=nn.GELU),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); centred zero padding to whole windows, padded tokens unmasked."""
        _, height, width, _ = x.shape
        ws = self.window_size
        pad_h, pad_w = -height % ws, -width % ws
        top, left = pad_h // 2, pad_w // 2
        x = F.pad(x, (0, 0, left, pad_w - left, top, pad_h - top))
        out = window_merge(self.attn(window_partition(x, ws)), ws, height + pad_h, width + pad_w)
        return out[:, top : top + height, left : left + width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.permute(0, 2, 3, 1)
        tokens = tokens + self.drop_path(self.window_attention(self.norm1(tokens)))
        ffn_in = self.norm2(tokens).permute(0, 3, 1, 2)
        return tokens.permute(0, 3, 1, 2) + self.drop_path(self.ffn(ffn_in))


def _downsample_step(in_ch: int, out_ch: int, relu: bool) -> nn.Sequential:
    """3x3 stride-2 depth-wise conv + BN, 1x1 conv + BN [+ ReLU] (keys 0-3)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, in_ch, 3, stride=2, padding=1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _fuse_layer(channels: tuple[int, ...], src: int, dst: int) -> nn.Module:
    if src == dst:
        return nn.Identity()
    if src > dst:
        upsample = nn.Upsample(scale_factor=2 ** (src - dst), mode="nearest")
        return nn.Sequential(*conv_bn(channels[src], channels[dst], 1, 1, relu=False), upsample)
    steps = dst - src
    return nn.Sequential(
        *(
            _downsample_step(channels[src], channels[dst] if k == steps - 1 else channels[src], k < steps - 1)
            for k in range(steps)
        )
    )


class HighResolutionTransformerModule(MultiResolutionModule):
    """Transformer blocks on every branch, then HRFormer's all-to-all fusion."""

    def __init__(self, stage: HRTStage, drop_paths: list[float]) -> None:
        branches = [
            nn.Sequential(
                *(
                    LocalWindowTransformerBlock(
                        stage.channels[b],
                        stage.num_heads[b],
                        stage.window_sizes[b],
                        stage.mlp_ratios[b],
                        drop_paths[k] if k < len(drop_paths) else 0.0,
                    )
                    for k in range(stage.num_blocks[b])
                )
            )
            for b in range(len(stage.channels))
        ]
        n = len(stage.channels)
        super().__init__(
            branches, [[_fuse_layer(stage.channels, src, dst) for src in range(n)] for dst in range(n)]
        )


class HRTBackbone(MultiResolutionBackbone):
    """``forward(x (B, in_channels, H, W))`` -> (B, ``config.out_channels``, ceil(H/4), ceil(W/4)).

    Stochastic depth as the original: rates rise linearly over the blocks of stages 2-4 (counted
    with the first branch's depth), every branch of a module sharing its module's rates.
    """

    def __init__(self, config: HRTConfig, in_channels: int = 3) -> None:
        if [len(s.channels) for s in config.stages] != [2, 3, 4]:
            raise ValueError("HRT stages 2, 3, 4 must have 2, 3, 4 branches")
        for previous, stage in zip(config.stages, config.stages[1:], strict=False):
            if tuple(stage.channels[: len(previous.channels)]) != tuple(previous.channels):
                raise ValueError(
                    f"HRT stages must keep the widths of existing branches ({previous.channels} -> "
                    f"{stage.channels}): the original would feed the last branch to the changed ones"
                )
        depths = [s.num_blocks[0] * s.num_modules for s in config.stages]
        # device="cpu": the checkpoint loader first builds the model on the meta device
        rates = torch.linspace(0, config.drop_path_rate, sum(depths), device="cpu").tolist()
        stages, offset = [], 0
        for stage, depth in zip(config.stages, depths, strict=True):
            per_module = stage.num_blocks[0]
            modules = [
                HighResolutionTransformerModule(
                    stage, rates[offset + m * per_module : offset + (m + 1) * per_module]
                )
                for m in range(stage.num_modules)
            ]
            stages.append((list(stage.channels), modules))
            offset += depth
        super().__init__(in_channels, config.layer1_planes, config.layer1_blocks, stages)
        self.config = config
        self.in_channels = in_channels

"""The click-conditioned model: normalisation, click maps, click fusion, upsampling.

This is the part that the original ``ISModel`` shares between all architectures. A *network*
(backbone + head of one family) is wrapped with one of the original click-fusion designs:

* ``NAIVE_CONCAT`` — the iSegFormer paper: ``cat(normalised RGB, [prev mask], pos, neg)`` is the
  network input (5 or 6 channels); ``network(x, None)``.
* ``MAPS_TRANSFORM`` — RITM HRNet: the click maps go through a small conv stack (``maps_transform``)
  and are added to the stem features; ``network(rgb, maps_transform(coords))``.
* ``DEEP_FUSION`` — iSegFormer Swin: the click maps go through their own patch embedding inside the
  backbone; ``network(rgb, coords)``.
* ``RGB_CONV`` — RITM "rgb_conv": a 1x1 conv stack maps ``cat(rgb, coords)`` back to 3 channels.

Input: ``image`` (B, 3 [+1], H, W) float32, RGB in [0, 1] (not normalised) plus the previous-mask
probability as channel 3 when ``with_prev_mask``; ``points`` (B, 2N, 3) as in :mod:`model.clicks`.
Output: ``{'instances': (B, 1, H, W) logits, 'instances_aux': logits or None}`` at input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from model.click_maps import click_maps

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class ClickFusion(str, Enum):
    NAIVE_CONCAT = "naive_concat"
    MAPS_TRANSFORM = "maps_transform"
    DEEP_FUSION = "deep_fusion"
    RGB_CONV = "rgb_conv"


@dataclass
class ClickEncoding:
    """How clicks become network input (the ``ISModel`` parameters that matter at inference)."""

    fusion: ClickFusion = ClickFusion.NAIVE_CONCAT
    with_prev_mask: bool = False
    binary_prev_mask: bool = False
    radius: float = 5.0
    use_disks: bool = True
    use_leaky_relu: bool = False
    with_aux_output: bool = False
    norm_mean_std: tuple[tuple[float, ...], tuple[float, ...]] = field(default=IMAGENET_MEAN_STD)

    @property
    def coord_channels(self) -> int:
        """Channels of the click features: pos + neg (+ prev mask)."""
        return 2 + int(self.with_prev_mask)

    @property
    def input_channels(self) -> int:
        """Channels of ``image`` as passed to :meth:`InteractiveModel.forward`."""
        return 3 + int(self.with_prev_mask)


def _activation(leaky: bool) -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.2) if leaky else nn.ReLU(inplace=True)


class ScaleLayer(nn.Module):
    """Multiply by ``|scale * lr_mult|`` (RITM's learnable scale after ``maps_transform``)."""

    def __init__(self, init_value: float = 0.05, lr_mult: float = 1.0) -> None:
        super().__init__()
        self.lr_mult = lr_mult
        self.scale = nn.Parameter(torch.full((1,), init_value / lr_mult, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.abs(self.scale * self.lr_mult)


def build_maps_transform(coord_channels: int, out_channels: int = 64, leaky: bool = False) -> nn.Sequential:
    """RITM's click-map stem: 1x1 conv to 16, activation, 3x3 stride-2 conv to 64, scale."""
    return nn.Sequential(
        nn.Conv2d(coord_channels, 16, kernel_size=1),
        _activation(leaky),
        nn.Conv2d(16, out_channels, kernel_size=3, stride=2, padding=1),
        ScaleLayer(init_value=0.05, lr_mult=1),
    )


def build_rgb_conv(coord_channels: int, leaky: bool = False) -> nn.Sequential:
    """RITM's ``rgb_conv``: 1x1 convs mapping RGB + click maps back to 3 channels."""
    hidden = 6 + coord_channels
    return nn.Sequential(
        nn.Conv2d(3 + coord_channels, hidden, kernel_size=1),
        nn.BatchNorm2d(hidden),
        _activation(leaky),
        nn.Conv2d(hidden, 3, kernel_size=1),
    )


class SegmentationNetwork(Protocol):
    """What :class:`InteractiveModel` and the optimiser need of a network (backbone + head of one family).

    ``backbone_prefixes``: parameter-name prefixes (relative to the network; ``""`` = all of it) that
    train at ``backbone_lr_mult`` times the learning rate, as the original model of the family did;
    ``backbone_lr_mult`` is that factor as the network was built or loaded (the original format saves it).
    ``encoder_stages``: the pretrained encoder's parameter-name prefixes, one tuple per stage from the
    input to the deepest; ``input_prefixes``: the encoder layer the click maps enter with the image (empty
    when they join through the model's own fusion layers). Fine-tuning freezes stages by these.
    """

    backbone_prefixes: tuple[str, ...]
    backbone_lr_mult: float
    encoder_stages: tuple[tuple[str, ...], ...]
    input_prefixes: tuple[str, ...]

    def __call__(
        self, x: torch.Tensor, coord_features: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@dataclass
class ParameterGroup:
    """Trainable parameters that share one learning-rate factor (an optimiser parameter group)."""

    name: str  # "backbone" or "other"
    lr_mult: float
    params: list[nn.Parameter]


class InteractiveModel(nn.Module):
    """A network of one family plus the click encoding of the original ``ISModel``.

    ``network(x, coord_features)`` returns ``(logits, aux_logits_or_None)`` at any resolution;
    this class upsamples them (bilinear, align_corners=True) to the input size.
    ``arch`` names the architecture (e.g. ``"segformer_b0"``) for metadata and the UI.
    """

    def __init__(self, network: SegmentationNetwork, encoding: ClickEncoding, arch: str = "custom") -> None:
        super().__init__()
        self.network = network
        self.encoding = encoding
        self.arch = arch
        mean, std = encoding.norm_mean_std
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.maps_transform: nn.Module | None = None
        self.rgb_conv: nn.Module | None = None
        if encoding.fusion is ClickFusion.MAPS_TRANSFORM:
            self.maps_transform = build_maps_transform(encoding.coord_channels, leaky=encoding.use_leaky_relu)
        elif encoding.fusion is ClickFusion.RGB_CONV:
            self.rgb_conv = build_rgb_conv(encoding.coord_channels, leaky=encoding.use_leaky_relu)

    def parameter_groups(self, backbone_lr_mult: float | None = None) -> list[ParameterGroup]:
        """The trainable parameters in rate groups, asked of the network (as timm's ``group_matcher``):
        its ``backbone_prefixes`` at ``backbone_lr_mult`` (default: the network's own factor), the rest
        (the network's other parts, click fusion layers) at the full rate. Empty groups are left out."""
        mult = self.network.backbone_lr_mult if backbone_lr_mult is None else float(backbone_lr_mult)
        prefixes = tuple(f"network.{prefix}" for prefix in self.network.backbone_prefixes)
        backbone = ParameterGroup("backbone", mult, [])
        other = ParameterGroup("other", 1.0, [])
        for name, param in self.named_parameters():
            if param.requires_grad:
                (backbone if name.startswith(prefixes) else other).params.append(param)
        return [group for group in (backbone, other) if group.params]

    @property
    def with_prev_mask(self) -> bool:
        return self.encoding.with_prev_mask

    @property
    def input_channels(self) -> int:
        return self.encoding.input_channels

    def coord_features(self, image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Click features ``(B, 2 [+1], H, W)``: [prev mask,] positive map, negative map."""
        enc = self.encoding
        maps = click_maps(points, image.shape[2], image.shape[3], enc.radius, enc.use_disks)
        if enc.with_prev_mask:
            prev = image[:, 3:4]
            if enc.binary_prev_mask:
                prev = (prev > 0.5).to(prev.dtype)
            maps = torch.cat((prev, maps.to(prev.dtype)), dim=1)
        return maps

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.pixel_mean) / self.pixel_std

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor | None]:
        assert image.ndim == 4 and image.shape[1] == self.input_channels, (
            f"{self.arch} expects (B, {self.input_channels}, H, W) input, got {tuple(image.shape)}"
        )
        coords = self.coord_features(image, points)
        rgb = self.normalize(image[:, :3])
        fusion = self.encoding.fusion
        if fusion is ClickFusion.NAIVE_CONCAT:
            logits, aux = self.network(torch.cat((rgb, coords), dim=1), None)
        elif fusion is ClickFusion.RGB_CONV:
            logits, aux = self.network(self.rgb_conv(torch.cat((rgb, coords), dim=1)), None)
        elif fusion is ClickFusion.DEEP_FUSION:
            logits, aux = self.network(rgb, coords)
        else:
            logits, aux = self.network(rgb, self.maps_transform(coords))

        size = image.shape[2:]
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
        if aux is not None and self.encoding.with_aux_output:
            aux = F.interpolate(aux, size=size, mode="bilinear", align_corners=True)
        else:
            aux = None
        return {"instances": logits, "instances_aux": aux}

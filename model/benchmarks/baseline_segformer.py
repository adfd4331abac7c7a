"""A straightforward eager fp32 SegFormer, written the way the original research code runs it.

Used only by the speed benchmark as the yardstick: ``nn.MultiheadAttention`` with separate
spatial-reduction, reshape ops between every block, no fused attention, no autocast. Its module
names are the original checkpoint's key names (``feature_extractor.layers.i.…``, ``head.convs.i.conv``),
so it loads an original-format state dict directly — which also cross-checks our key mapping.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.click_maps import click_maps


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _grid(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)


class _PatchEmbed(nn.Module):
    def __init__(self, cin: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(cin, dim, kernel, stride, kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(_tokens(x)), hw


class _EfficientAttention(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.sr_ratio = sr
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        kv = x
        if self.sr_ratio > 1:
            kv = self.norm(_tokens(self.sr(_grid(x, hw))))
        return self.attn(x, kv, kv, need_weights=False)[0]


class _MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(dim, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Conv2d(hidden, dim, 1),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return _tokens(self.layers(_grid(x, hw)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _EfficientAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = _MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw)
        return x + self.ffn(self.norm2(x), hw)


class _Encoder(nn.Module):
    def __init__(self, p: dict[str, Any]) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        cin = p["in_channels"]
        for i, depth in enumerate(p["num_layers"]):
            dim = p["embed_dims"] * p["num_heads"][i]
            blocks = nn.ModuleList(
                _Block(dim, p["num_heads"][i], p["sr_ratios"][i], p["mlp_ratio"]) for _ in range(depth)
            )
            embed = _PatchEmbed(cin, dim, p["patch_sizes"][i], p["strides"][i])
            self.layers.append(nn.ModuleList([embed, blocks, nn.LayerNorm(dim, eps=1e-6)]))
            cin = dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for embed, blocks, norm in self.layers:
            x, hw = embed(x)
            for block in blocks:
                x = block(x, hw)
            x = _grid(norm(x), hw)
            outs.append(x)
        return outs


class _ConvReLU(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class _Head(nn.Module):
    def __init__(self, p: dict[str, Any]) -> None:
        super().__init__()
        ch = p["channels"]
        self.convs = nn.ModuleList(_ConvReLU(c, ch) for c in p["in_channels"])
        self.fusion_conv = _ConvReLU(ch * len(p["in_channels"]), ch)
        self.conv_seg = nn.Conv2d(ch, p["num_classes"], 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        ups = [
            F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False)
            for conv, f in zip(self.convs, feats, strict=True)
        ]
        return self.conv_seg(self.fusion_conv(torch.cat(ups, dim=1)))


class StraightforwardSegformer(nn.Module):
    """Naive-concat SegFormer with the original's structure; ``forward(image, points)`` like ours."""

    def __init__(self, original_params: dict[str, Any]) -> None:
        super().__init__()
        p = original_params
        self.with_prev_mask = bool(p.get("with_prev_mask", False))
        self.radius = float(p.get("norm_radius", 5))
        self.feature_extractor = _Encoder(p["backbone_params"])
        self.head = _Head(p["decode_head_params"])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), False)

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
        rgb = (image[:, :3] - self.mean) / self.std
        coords = click_maps(points, image.shape[2], image.shape[3], self.radius, True)
        if self.with_prev_mask:
            coords = torch.cat((image[:, 3:4], coords), dim=1)
        logits = self.head(self.feature_extractor(torch.cat((rgb, coords), dim=1)))
        logits = F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=True)
        return {"instances": logits}


def straightforward_copy(model: nn.Module) -> StraightforwardSegformer:
    """A straightforward twin of one of our SegFormer models, with the same weights."""
    from model.build import adapter_for

    adapter = adapter_for("isegm.model.is_segformer_model.SegformerModel")
    params = adapter.original_params(model)
    twin = StraightforwardSegformer(params)
    state = adapter.to_original(model.state_dict())
    own = twin.state_dict()
    twin.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    return twin.eval()

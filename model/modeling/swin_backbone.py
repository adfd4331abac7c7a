"""Swin Transformer backbone with iSegFormer's "deep fusion" of click maps.

The click features ``(B, 3, H, W)`` = [previous mask, positive disks, negative disks] are embedded
by the **same** patch embedding as the normalised RGB image and the two token grids are summed
before the first stage (the original keeps a second embedding ``patch_embed_coords`` in its state
dict but never calls it; we do not build it).

Stages follow the original detection/segmentation Swin: a fixed window size at every stage (the
feature map is zero-padded to window multiples after ``norm1``), cyclic shift by ``window // 2`` in
odd blocks with a ``-100`` attention mask between regions, patch merging that pads odd sizes, and a
LayerNorm on each returned stage output. No absolute position embedding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

SHIFT_MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinConfig:
    """Backbone hyper-parameters (names of the original ``SwinTransformer`` arguments)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 12
    patch_size: int = 4
    in_chans: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.3
    patch_norm: bool = True
    out_indices: tuple[int, ...] = (0, 1, 2, 3)

    @property
    def num_features(self) -> list[int]:
        """Channels of each stage: ``embed_dim * 2**i``."""
        return [self.embed_dim * 2**i for i in range(len(self.depths))]


def relative_position_index(window_size: int) -> torch.Tensor:
    """(ws*ws, ws*ws) int64 on the CPU: row-major index into the (2ws-1)^2 relative-position bias table."""
    return _relative_position_index(window_size).clone()


@functools.lru_cache(maxsize=8)
def _relative_position_index(window_size: int) -> torch.Tensor:
    steps = torch.arange(window_size, device="cpu")
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    coords = torch.stack((rows.flatten(), cols.flatten()))  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (2, N, N), each in [0, 2ws-2]
    return delta[0] * (2 * window_size - 1) + delta[1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, Hp, Wp, C) with Hp, Wp multiples of the window -> (B, nW, ws*ws, C), windows row-major."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window_size, window_size, width // window_size, window_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, window_size * window_size, channels)


def window_merge(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, ws*ws, C) -> (B, height, width, C)."""
    batch, _, _, channels = windows.shape
    x = windows.view(batch, height // window_size, width // window_size, window_size, window_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


def shifted_window_mask(
    padded_height: int, padded_width: int, window_size: int, shift: int, device: torch.device
) -> torch.Tensor:
    """(nW, N, N) float: 0 between tokens of the same region of the rolled map, -100 otherwise.

    After rolling by ``-shift`` the last ``window`` rows/columns mix three regions: before
    ``-window``, between ``-window`` and ``-shift``, and the last ``shift`` (wrapped-around) ones.
    """

    def region(length: int) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        return (pos >= length - window_size).long() + (pos >= length - shift).long()

    ids = region(padded_height)[:, None] * 3 + region(padded_width)[None, :]  # (Hp, Wp)
    ids = window_partition(ids[None, :, :, None], window_size)[0, :, :, 0]  # (nW, N)
    different = ids[:, :, None] != ids[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    ``relative_position_index`` is a persistent buffer, as in the original state dict.
    """

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_bias(self) -> torch.Tensor:
        """(heads, N, N) bias added to the attention logits, N = window_size**2."""
        tokens = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(tokens, tokens, self.num_heads).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """windows (B, nW, N, C), mask (nW, N, N) or None -> (B, nW, N, C).

        With a mask, windows and heads share one attention-head axis (nW*heads) so the per-window
        bias broadcasts over the batch; without one, windows go to the batch axis and the
        (heads, N, N) bias broadcasts over them. Neither copies the bias per sample.
        """
        batch, num_windows, tokens, channels = windows.shape
        heads = self.num_heads
        group = num_windows if mask is not None else 1  # windows folded into the head axis
        bias = self.relative_bias().unsqueeze(0)  # (1, heads, N, N)
        if mask is not None:
            bias = bias + mask.unsqueeze(1)  # (nW, heads, N, N)
        bias = bias.reshape(1, group * heads, tokens, tokens)
        qkv = self.qkv(windows).view(batch, num_windows, tokens, 3, heads, channels // heads)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5)  # (3, B, nW, heads, N, head_dim)
        q, k, v = qkv.reshape(3, batch * num_windows // group, group * heads, tokens, -1).unbind(0)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias.to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.view(batch, num_windows, heads, tokens, -1).permute(0, 1, 3, 2, 4)
        return self.proj_drop(self.proj(out.reshape(batch, num_windows, tokens, channels)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention + MLP, both residual with stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift: int,
        config: SwinConfig,
        drop_path: float,
    ) -> None:
        super().__init__()
        if not 0 <= shift < window_size:
            raise ValueError(f"shift {shift} must lie in [0, window_size={window_size})")
        self.window_size = window_size
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim,
            window_size,
            num_heads,
            config.qkv_bias,
            config.qk_scale,
            config.attn_drop_rate,
            config.drop_rate,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), drop=config.drop_rate)

    def forward(
        self, x: torch.Tensor, height: int, width: int, shift_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, H*W, C) -> (B, H*W, C); ``shift_mask`` (nW, N, N) is used only by shifted blocks."""
        batch, length, channels = x.shape
        ws = self.window_size
        y = self.norm1(x).view(batch, height, width, channels)
        pad_bottom, pad_right = (-height) % ws, (-width) % ws
        y = F.pad(y, (0, 0, 0, pad_right, 0, pad_bottom))
        padded_h, padded_w = height + pad_bottom, width + pad_right
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(y, ws), shift_mask if self.shift else None)
        y = window_merge(windows, ws, padded_h, padded_w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :height, :width].reshape(batch, length, channels)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token: (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C); odd sizes are padded."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = x.shape
        x = x.view(batch, height, width, channels)
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # order of the original: (even row, even col), (odd, even), (even, odd), (odd, odd)
        x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), dim=-1)
        return self.reduction(self.norm(x.reshape(batch, -1, 4 * channels)))


class SwinStage(nn.Module):
    """``depth`` blocks alternating plain and shifted windows, then optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        config: SwinConfig,
        drop_paths: Sequence[float],
        merge: bool,
    ) -> None:
        super().__init__()
        ws = config.window_size
        self.window_size = ws
        self.shift = ws // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, ws, 0 if i % 2 == 0 else ws // 2, config, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None

    def forward(
        self, x: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """x (B, H*W, C) -> (stage output (B, H*W, C), next-stage input, next H, next W)."""
        ws = self.window_size
        padded_h, padded_w = height + (-height) % ws, width + (-width) % ws
        mask = (
            shifted_window_mask(padded_h, padded_w, ws, self.shift, x.device)
            if len(self.blocks) > 1
            else None
        )
        for block in self.blocks:
            x = block(x, height, width, mask)
        if self.downsample is None:
            return x, x, height, width
        return x, self.downsample(x, height, width), (height + 1) // 2, (width + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, C_in, H, W) -> tokens (B, Hp*Wp, C), Hp = ceil(H/patch)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class SwinBackbone(nn.Module):
    """Swin Transformer with deep click fusion.

    forward(rgb (B, in_chans, H, W) normalised, coords (B, in_chans, H, W)) -> list of stage
    features (B, embed_dim * 2**i, ceil(H / 2**(i+2)), ...) for ``out_indices``, each LayerNorm-ed.
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        if len(config.depths) != len(config.num_heads):
            raise ValueError(f"depths {config.depths} and num_heads {config.num_heads} differ in length")
        self.config = config
        self.patch_embed = PatchEmbed(config.in_chans, config.embed_dim, config.patch_size, config.patch_norm)
        self.pos_drop = nn.Dropout(config.drop_rate)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        num_stages = len(config.depths)
        dims = config.num_features
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            first = sum(config.depths[:i])
            self.layers.append(
                SwinStage(dims[i], depth, heads, config, rates[first : first + depth], i < num_stages - 1)
            )
        self.output_norms = nn.ModuleDict({str(i): nn.LayerNorm(dims[i]) for i in config.out_indices})
        self.apply(_init_weights)

    def forward(self, rgb: torch.Tensor, coords: torch.Tensor | None) -> list[torch.Tensor]:
        if coords is None or coords.shape[1] != self.config.in_chans:
            shape = None if coords is None else tuple(coords.shape)
            raise ValueError(
                f"deep fusion needs click features with {self.config.in_chans} channels, got {shape}"
            )
        x, height, width = self.patch_embed(rgb)
        x = self.pos_drop(x + self.patch_embed(coords)[0])
        outputs = []
        for i, stage in enumerate(self.layers):
            stage_out, x, next_h, next_w = stage(x, height, width)
            if str(i) in self.output_norms:
                out = self.output_norms[str(i)](stage_out)
                outputs.append(out.transpose(1, 2).reshape(out.shape[0], -1, height, width))
            height, width = next_h, next_w
        return outputs


def _init_weights(module: nn.Module) -> None:
    """Swin initialisation: truncated-normal(0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

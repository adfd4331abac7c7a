"""iSegFormer Swin family: Swin backbone with deep click fusion + all-MLP head.

Loads and writes the original ``isegm.model.is_swinformer_model.SwinformerModel`` checkpoints
(e.g. the released ``imagenet21k_pretrain_oaizib_finetune_swin_base_epoch_54.pth``: Swin-B,
embed 128, depths [2, 2, 18, 2], heads [4, 8, 16, 32], window 12).

Key mapping (original -> ours): ``backbone.normI.`` -> ``network.backbone.output_norms.I.``,
``backbone.`` -> ``network.backbone.``, ``head.{convs,fusion_conv,conv_seg}`` -> ``network.head.{lateral,
fuse,classifier}`` (the head is the SegFormer all-MLP head, computed identically). The original's unused
``maps_transform.*`` and ``backbone.patch_embed_coords.*`` are dropped on loading and written
back as zero placeholders (the original loads strictly but never calls them).

The original model only runs with deep fusion and 3 click channels (its image patch embedding
is applied to the click features), so ``with_prev_mask`` must be true.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import nn

from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel
from model.modeling.original_format import (
    PrefixMap,
    encoding_from_params,
    encoding_to_params,
    foreign_class,
    register_model,
)
from model.modeling.segformer_head import SegFormerHead
from model.modeling.swin_backbone import SwinBackbone, SwinConfig, relative_position_index

ORIGINAL_CLASS = "isegm.model.is_swinformer_model.SwinformerModel"
LOSS_MODULE = "isegm.model.modeling.transformer_helper.cross_entropy_loss"
MAX_STAGES = 8

KEY_MAP = PrefixMap(
    (("backbone.patch_embed_coords.", "backbone.patch_embed_coords."),)  # unused: keeps its original name
    + tuple((f"backbone.norm{i}.", f"network.backbone.output_norms.{i}.") for i in range(MAX_STAGES))
    + (
        ("backbone.", "network.backbone."),
        ("head.convs.", "network.head.lateral."),
        ("head.fusion_conv.", "network.head.fuse."),
        ("head.conv_seg.", "network.head.classifier."),
    )
)

# Original backbone / head arguments that only matter for training set-up or pretrained loading.
_IGNORED_BACKBONE_ARGS = {"pretrain_img_size", "frozen_stages", "use_checkpoint", "pretrained", "init_cfg"}
_IGNORED_HEAD_ARGS = {"loss_decode", "ignore_index", "sampler", "init_cfg", "conv_cfg"}


class SwinSegmentationNetwork(nn.Module):
    """``forward(rgb (B,3,H,W) normalised, coords (B,3,H,W))`` -> (logits (B,1,ceil(H/4),ceil(W/4)), None).

    The original trains every layer at the full rate: ``backbone_lr_mult`` is 1 (not saved in its format).
    """

    backbone_prefixes = ("backbone.",)
    # the Swin stages (1/4 ... 1/32) with their output norms; the click maps are patch-embedded and summed
    encoder_stages = tuple(
        (
            *(("backbone.patch_embed.",) if i == 0 else ()),
            f"backbone.layers.{i}.",
            f"backbone.output_norms.{i}.",
        )
        for i in range(4)
    )
    input_prefixes = ("backbone.patch_embed.",)

    def __init__(self, backbone: SwinBackbone, head: SegFormerHead, backbone_lr_mult: float = 1.0) -> None:
        super().__init__()
        self.backbone_lr_mult = backbone_lr_mult
        self.backbone = backbone
        self.head = head

    def forward(self, rgb: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.head(self.backbone(rgb, coords)), None


def build_swin_model(
    config: SwinConfig,
    encoding: ClickEncoding,
    head_channels: int = 256,
    dropout_ratio: float = 0.1,
    num_classes: int = 1,
    in_index: tuple[int, ...] | None = None,
    align_corners: bool = False,
    arch: str = "swin_custom",
) -> InteractiveModel:
    """A randomly initialised Swin interactive model (deep fusion of the click maps)."""
    if encoding.fusion is not ClickFusion.DEEP_FUSION:
        raise ValueError(f"the Swin model supports only deep click fusion, not {encoding.fusion.value}")
    if encoding.coord_channels != config.in_chans:
        raise ValueError(
            f"the Swin patch embedding takes {config.in_chans}-channel click features "
            f"(prev mask, positive, negative), but the encoding gives {encoding.coord_channels}: "
            "use with_prev_mask=True"
        )
    in_index = tuple(range(len(config.out_indices))) if in_index is None else tuple(in_index)
    in_channels = [config.num_features[config.out_indices[i]] for i in in_index]
    head = SegFormerHead(in_channels, head_channels, num_classes, dropout_ratio, align_corners, in_index)
    model = InteractiveModel(SwinSegmentationNetwork(SwinBackbone(config), head), encoding, arch)
    model.original_class = ORIGINAL_CLASS
    return model


# --------------------------------------------------------------------------------------------- variants

VARIANTS: dict[str, SwinConfig] = {
    "swin_tiny": SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=12),
    "swin_base": SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12),
    "swin_large": SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
}


def _variant_builder(name: str) -> Callable[..., InteractiveModel]:
    def build(
        with_prev_mask: bool = True, head_channels: int = 256, **config_overrides: Any
    ) -> InteractiveModel:
        """Random-init ``name``; keyword arguments override :class:`SwinConfig` fields."""
        config = replace(VARIANTS[name], **config_overrides)
        encoding = ClickEncoding(
            fusion=ClickFusion.DEEP_FUSION, with_prev_mask=with_prev_mask, radius=5.0, use_disks=True
        )
        return build_swin_model(config, encoding, head_channels=head_channels, arch=name)

    build.__name__ = f"build_{name}"
    return build


for _name in VARIANTS:
    register_model(_name)(_variant_builder(_name))


# --------------------------------------------------------------------------------------------- checkpoints


def _config_from_params(backbone: dict[str, Any]) -> SwinConfig:
    backbone = dict(backbone)
    if backbone.pop("ape", False):
        raise ValueError("absolute position embedding (ape=True) is not supported")
    norm_layer = backbone.pop("norm_layer", None)
    if norm_layer is not None and not str(getattr(norm_layer, "foreign_name", norm_layer)).endswith(
        "LayerNorm"
    ):
        raise ValueError(f"backbone norm_layer {norm_layer!r} is not supported (only LayerNorm)")
    in_chans = backbone.pop("in_chans", 3)
    backbone.pop("in_coord_chans", None)  # sizes only the unused patch_embed_coords
    for name in _IGNORED_BACKBONE_ARGS:
        backbone.pop(name, None)
    fields = set(SwinConfig.__dataclass_fields__)
    unknown = sorted(set(backbone) - fields)
    if unknown:
        raise ValueError(f"unknown backbone parameters {unknown}")
    for name in ("depths", "num_heads", "out_indices"):
        if name in backbone:
            backbone[name] = tuple(int(v) for v in backbone[name])
    defaults = SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)
    defaults = replace(defaults, drop_path_rate=0.2)  # the original SwinTransformer's own defaults
    return replace(defaults, in_chans=in_chans, **backbone)


def _check_head_params(head: dict[str, Any]) -> None:
    if head.get("norm_cfg") is not None:
        raise ValueError(f"head norm_cfg {head['norm_cfg']!r} is not supported (only None)")
    act = head.get("act_cfg", {"type": "ReLU"})
    if not isinstance(act, dict) or act.get("type") != "ReLU":
        raise ValueError(f"head act_cfg {act!r} is not supported (only ReLU)")
    if head.get("interpolate_mode", "bilinear") != "bilinear":
        raise ValueError(f"head interpolate_mode {head['interpolate_mode']!r} is not supported")
    known = _IGNORED_HEAD_ARGS | {
        "in_channels", "in_index", "channels", "num_classes", "dropout_ratio", "align_corners",
        "norm_cfg", "act_cfg", "interpolate_mode",
    }  # fmt: skip
    unknown = sorted(set(head) - known)
    if unknown:
        raise ValueError(f"unknown head parameters {unknown}")


def check_position_indices(state_dict: dict[str, torch.Tensor]) -> None:
    """The index buffers are fixed by the window size; anything else is a corrupt file."""
    for key, value in state_dict.items():
        if not key.endswith("attn.relative_position_index"):
            continue
        window = round(value.shape[0] ** 0.5) if value.ndim == 2 else 0
        if (
            window < 1
            or value.shape != (window**2, window**2)
            or not torch.equal(value.long(), relative_position_index(window))
        ):
            raise ValueError(f"buffer {key!r} is not a valid Swin relative-position index")


class SwinAdapter:
    """Original ``SwinformerModel`` checkpoints <-> :class:`InteractiveModel` with a Swin network."""

    original_class = ORIGINAL_CLASS

    def build(self, params: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> InteractiveModel:
        encoding = encoding_from_params(params)
        config = _config_from_params(params.get("backbone_params") or {})
        head = dict(params.get("head_params") or {})
        _check_head_params(head)
        check_position_indices(state_dict)
        in_index = tuple(head.get("in_index", range(len(config.out_indices))))
        expected = [config.num_features[config.out_indices[i]] for i in in_index]
        if "in_channels" in head and list(head["in_channels"]) != expected:
            raise ValueError(
                f"head in_channels {list(head['in_channels'])} do not match the backbone {expected}"
            )
        return build_swin_model(
            config,
            encoding,
            head_channels=int(head.get("channels", 256)),
            dropout_ratio=float(head.get("dropout_ratio", 0.1)),
            num_classes=int(head.get("num_classes", 1)),
            in_index=in_index,
            align_corners=bool(head.get("align_corners", False)),
            arch=_arch_name(config),
        )

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {KEY_MAP.to_ours(k): v for k, v in state_dict.items()}

    def to_original(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Renamed weights plus zero placeholders for the modules the original has but never calls."""
        original = {KEY_MAP.to_original(k): v for k, v in state_dict.items()}
        embed = original.get("backbone.patch_embed.proj.weight")
        if embed is not None:
            original.update(_unused_original_weights(embed, "backbone.patch_embed.norm.weight" in original))
        return original

    def original_params(self, model: InteractiveModel) -> dict[str, Any]:
        network: SwinSegmentationNetwork = model.network
        config = network.backbone.config
        head = network.head
        backbone_params = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
        backbone_params["out_indices"] = tuple(config.out_indices)
        backbone_params.update(in_coord_chans=config.in_chans, ape=False, use_checkpoint=False)
        loaded_head = (getattr(model, "original_params", None) or {}).get("head_params") or {}
        loss = loaded_head.get("loss_decode") or foreign_class(LOSS_MODULE, "CrossEntropyLoss")()
        head_params = {
            "in_channels": list(head.in_channels),
            "in_index": list(head.in_index),
            "channels": head.channels,
            "dropout_ratio": head.dropout_ratio,
            "num_classes": head.num_classes,
            "loss_decode": loss,
            "align_corners": head.align_corners,
        }
        return {
            "backbone_params": backbone_params,
            "head_params": head_params,
            **encoding_to_params(model.encoding),
        }


def _unused_original_weights(patch_weight: torch.Tensor, patch_norm: bool) -> dict[str, torch.Tensor]:
    """Zero ``maps_transform.*`` (ISModel's) and ``backbone.patch_embed_coords.*`` of the right shapes."""
    embed_dim, coord_channels, patch, _ = patch_weight.shape
    zeros = {"dtype": patch_weight.dtype}
    weights = {
        "maps_transform.0.weight": torch.zeros(16, coord_channels, 1, 1, **zeros),
        "maps_transform.0.bias": torch.zeros(16, **zeros),
        "maps_transform.2.weight": torch.zeros(64, 16, 3, 3, **zeros),
        "maps_transform.2.bias": torch.zeros(64, **zeros),
        "maps_transform.3.scale": torch.full((1,), 0.05, **zeros),
        "backbone.patch_embed_coords.proj.weight": torch.zeros(
            embed_dim, coord_channels, patch, patch, **zeros
        ),
        "backbone.patch_embed_coords.proj.bias": torch.zeros(embed_dim, **zeros),
    }
    if patch_norm:
        weights["backbone.patch_embed_coords.norm.weight"] = torch.ones(embed_dim, **zeros)
        weights["backbone.patch_embed_coords.norm.bias"] = torch.zeros(embed_dim, **zeros)
    return weights


def _arch_name(config: SwinConfig) -> str:
    for name, variant in VARIANTS.items():
        if (variant.embed_dim, variant.depths, variant.num_heads) == (
            config.embed_dim,
            config.depths,
            config.num_heads,
        ):
            return name
    return f"swin_e{config.embed_dim}_d{'-'.join(map(str, config.depths))}"


ADAPTER = SwinAdapter()

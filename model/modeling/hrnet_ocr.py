"""RITM's HRNet + OCR interactive models: variants, and loading/saving original checkpoints.

The click maps go through ``InteractiveModel.maps_transform`` (1x1 conv, activation, 3x3 stride-2
conv to 64 channels, learnable scale) and are added to the HRNet stem after its first conv
("MAPS_TRANSFORM" fusion); the OCR head gives the main and the auxiliary logits at stride 4.

Original class ``isegm.model.is_hrnet_model.HRNetModel`` (RITM and iSegFormer): its weights live
under ``feature_extractor.*``; :data:`KEY_MAP` renames them to ``network.backbone.*`` (same names
as the official HRNet) and ``network.head.*`` (our OCR head).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from model.modeling.hrnet import HRNetBackbone
from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel
from model.modeling.ocr import OCRHead
from model.modeling.original_format import PrefixMap, encoding_from_params, encoding_to_params, register_model

ORIGINAL_CLASS = "isegm.model.is_hrnet_model.HRNetModel"
# Norm layers of original configs that are plain BatchNorm at inference.
_BATCH_NORMS = ("torch.nn.modules.batchnorm.BatchNorm2d", "torch.nn.modules.batchnorm.SyncBatchNorm")


# The stages of an HRNet-layout backbone (HRNet, HRFormer) by resolution, first to last: the stem with
# layer1, then each transition with the stage it feeds (fine-tuning freezes by these).
HRNET_ENCODER_STAGES = (
    ("backbone.conv1.", "backbone.bn1.", "backbone.conv2.", "backbone.bn2.", "backbone.layer1."),
    ("backbone.transition1.", "backbone.stage2."),
    ("backbone.transition2.", "backbone.stage3."),
    ("backbone.transition3.", "backbone.stage4."),
)


class HRNetOCR(nn.Module):
    """HRNet backbone + OCR head: ``forward(rgb (B,3,H,W), click_features (B,64,H/2,W/2) | None)``
    -> (logits, aux_logits), each (B, 1, ceil(H/4), ceil(W/4)) float32.

    RITM trains ``backbone``, ``head.aux_head`` and ``head.classifier`` at ``backbone_lr_mult`` (0.1)
    times the learning rate and ``head.pixel_conv``/``attention``/``fuse`` at the full rate.
    """

    backbone_prefixes = ("backbone.", "head.aux_head.", "head.classifier.")
    # the encoder's stages by resolution, first to last, and the layer the click maps enter (fine-tuning)
    encoder_stages = HRNET_ENCODER_STAGES
    input_prefixes: tuple[str, ...] = ()  # the click maps join after the stem (the model's maps_transform)

    def __init__(
        self, width: int, ocr_width: int, small: bool = False, backbone_lr_mult: float = 0.1
    ) -> None:
        super().__init__()
        self.backbone_lr_mult = backbone_lr_mult
        if ocr_width <= 0:
            raise ValueError(f"HRNet without the OCR head (ocr_width={ocr_width}) is not supported")
        self.ocr_width = ocr_width
        self.backbone = HRNetBackbone(width, small)
        self.head = OCRHead(self.backbone.out_channels, ocr_width)

    def forward(
        self, rgb: torch.Tensor, click_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(rgb, click_features))


def arch_name(width: int, ocr_width: int, small: bool) -> str:
    """E.g. ``hrnet18s_ocr48``."""
    return f"hrnet{width}{'s' if small else ''}_ocr{ocr_width}"


def ocr_key_pairs(original: str, ours: str) -> list[tuple[str, str]]:
    """Key prefixes of the original ``SpatialOCR_Module`` under ``original`` (e.g.
    ``feature_extractor.ocr_distri_head.``) -> our :class:`OCRHead` parts under ``ours`` (attention, fuse)."""
    attention = original + "object_context_block."
    pairs = []
    # Original attention projections: Sequential(conv, Sequential(bn, relu)[, conv, Sequential(bn, relu)]).
    for original_name, our_name, depth in (
        ("f_pixel", "query", 2),
        ("f_object", "key", 2),
        ("f_down", "value", 1),
        ("f_up", "project", 1),
    ):
        for i in range(depth):
            ours_prefix = f"{ours}attention.{our_name}." + (f"{i}." if depth > 1 else "")
            pairs.append((f"{attention}{original_name}.{2 * i}.", ours_prefix + "conv."))
            pairs.append((f"{attention}{original_name}.{2 * i + 1}.0.", ours_prefix + "bn."))
    pairs += [
        (original + "conv_bn_dropout.0.", ours + "fuse.conv."),
        (original + "conv_bn_dropout.1.0.", ours + "fuse.bn."),
    ]
    return pairs


def _key_map() -> PrefixMap:
    fe, head = "feature_extractor.", "network.head."
    pairs = [
        (fe + "aux_head.0.", head + "aux_head.0.conv."),
        (fe + "aux_head.1.", head + "aux_head.0.bn."),
        (fe + "aux_head.3.", head + "aux_head.1."),
        (fe + "conv3x3_ocr.0.", head + "pixel_conv.conv."),
        (fe + "conv3x3_ocr.1.", head + "pixel_conv.bn."),
        *ocr_key_pairs(fe + "ocr_distri_head.", head),
        (fe + "cls_head.", head + "classifier."),
        (fe, "network.backbone."),
    ]
    return PrefixMap(tuple(pairs))


KEY_MAP = _key_map()


class HRNetAdapter:
    """Loads and writes ``HRNetModel`` checkpoints (see :class:`model.checkpoint.ArchitectureAdapter`)."""

    original_class = ORIGINAL_CLASS

    def build(self, params: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> InteractiveModel:
        norm_layer = params.get("norm_layer", _BATCH_NORMS[0])
        if isinstance(norm_layer, type):
            norm_layer = f"{norm_layer.__module__}.{norm_layer.__qualname__}"
        if norm_layer not in _BATCH_NORMS:
            raise ValueError(f"norm_layer {norm_layer!r} is not supported (only BatchNorm2d)")
        encoding = encoding_from_params(params)
        if encoding.fusion not in (ClickFusion.MAPS_TRANSFORM, ClickFusion.RGB_CONV):
            raise ValueError(f"click fusion {encoding.fusion.value!r} does not exist for HRNetModel")
        # Defaults of the original HRNetModel signature.
        width, ocr_width, small = (
            int(params.get("width", 48)),
            int(params.get("ocr_width", 256)),
            bool(params.get("small", False)),
        )
        return _interactive_model(
            width, ocr_width, small, encoding, float(params.get("backbone_lr_mult", 0.1))
        )

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {KEY_MAP.to_ours(k): v for k, v in state_dict.items()}

    def to_original(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {KEY_MAP.to_original(k): v for k, v in state_dict.items()}

    def original_params(self, model: InteractiveModel) -> dict[str, Any]:
        network = model.network
        if not isinstance(network, HRNetOCR):
            raise TypeError(f"{model.arch} is not an HRNet-OCR model")
        encoding = encoding_to_params(model.encoding)
        # Keys that only iSegFormer's ISModel knows: leave them out (both codes default them to False)
        # so that RITM's loader, which rejects unknown parameters, reads the file too.
        for key in ("use_naive_concat", "use_deep_fusion"):
            encoding.pop(key)
        return {
            "width": network.backbone.width,
            "ocr_width": network.ocr_width,
            "small": network.backbone.small,
            "backbone_lr_mult": network.backbone_lr_mult,
            "norm_layer": nn.BatchNorm2d,
            **encoding,
        }


ADAPTER = HRNetAdapter()


def _interactive_model(
    width: int, ocr_width: int, small: bool, encoding: ClickEncoding, backbone_lr_mult: float = 0.1
) -> InteractiveModel:
    """HRNet-OCR network wrapped with ``encoding``, marked as an ``HRNetModel`` for saving."""
    model = InteractiveModel(
        HRNetOCR(width, ocr_width, small, backbone_lr_mult), encoding, arch=arch_name(width, ocr_width, small)
    )
    model.original_class = ORIGINAL_CLASS
    return model


def _build(
    width: int,
    ocr_width: int,
    small: bool,
    with_prev_mask: bool = True,
    use_leaky_relu: bool = True,
    with_aux_output: bool = True,
    radius: float = 5.0,
    use_disks: bool = True,
) -> InteractiveModel:
    """A randomly initialised HRNet-OCR model; keyword defaults are those of RITM's ``*_itermask`` configs."""
    encoding = ClickEncoding(
        fusion=ClickFusion.MAPS_TRANSFORM,
        with_prev_mask=with_prev_mask,
        radius=radius,
        use_disks=use_disks,
        use_leaky_relu=use_leaky_relu,
        with_aux_output=with_aux_output,
    )
    return _interactive_model(width, ocr_width, small, encoding)


# name -> (width, ocr_width, small), with the original checkpoints of that shape.
VARIANTS: dict[str, tuple[int, int, bool]] = {
    "hrnet18s_ocr48": (18, 48, True),  # HRNet-W18-Small-v2; RITM coco_lvis_h18s_itermask.pth
    "hrnet18_ocr64": (18, 64, False),  # RITM coco_lvis_h18_itermask.pth, sbd_h18_itermask.pth
    "hrnet32_ocr128": (32, 128, False),  # RITM coco_lvis_h32_itermask.pth, iSegFormer OAI-ZIB hr32
    "hrnet48_ocr256": (48, 256, False),  # HRNetModel defaults; HRNet-OCR of the OCR paper
}
for _name, _shape in VARIANTS.items():
    register_model(_name)(functools.partial(_build, *_shape))

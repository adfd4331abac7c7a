"""Registries: architecture variants by name, and original checkpoint classes by class name.

Each family module (``model/modeling/<family>.py``) registers its variants with
:func:`~model.modeling.original_format.register_model` and exposes ``ADAPTER`` (an
:class:`~model.modeling.original_format.ArchitectureAdapter`).
"""

from __future__ import annotations

import importlib

from model.modeling.interactive import InteractiveModel
from model.modeling.original_format import _MODELS, register_model  # noqa: F401  (register_model re-exported)

# Original ``isegm`` class name -> our family module that loads it.
ORIGINAL_CLASSES: dict[str, str] = {
    "isegm.model.is_segformer_model.SegformerModel": "model.modeling.segformer",
    "isegm.model.is_hrnet_model.HRNetModel": "model.modeling.hrnet_ocr",
    "isegm.model.is_swinformer_model.SwinformerModel": "model.modeling.swin",
    "isegm.model.is_hrformer_model.HRFormerModel": "model.modeling.hrformer",
    # Our own family (no original class): EfficientNet-Lite encoder + SegFormer head.
    "isegformer.model.EfficientNetSegformerModel": "model.modeling.efficientnet_segformer",
}
FAMILY_MODULES = tuple(dict.fromkeys(ORIGINAL_CLASSES.values()))

def _import_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names of all registered variants, e.g. ``segformer_b0`` … ``hrnet18s_ocr48``."""
    _import_families()
    return sorted(_MODELS)


def build_model(name: str, **kwargs) -> InteractiveModel:
    """A randomly initialised variant; kwargs override its defaults (e.g. ``with_prev_mask``)."""
    _import_families()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**kwargs)


def adapter_for(class_name: str):
    """The checkpoint adapter for an original class name, or None if unsupported."""
    module = ORIGINAL_CLASSES.get(class_name)
    if module is None:
        return None
    return importlib.import_module(module).ADAPTER

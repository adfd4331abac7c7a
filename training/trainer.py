"""Iterative training of click-based segmentation models (iSegFormer / RITM ``ISTrainer``).

Per step: 0..``max_num_next_clicks`` (inclusive, uniform) no-grad passes of the model itself, each
adding one click at the largest error (:func:`next_click_points`) and, for models with the previous
mask, feeding its probabilities back; then the trained forward pass with NFL (+ 0.4 BCE on the
auxiliary output of HRNet-OCR and HRFormer). Adam with per-group rates (backbone x ``backbone_lr_mult``),
MultiStepLR per epoch, float16 autocast + gradient scaling on CUDA, optional gradient clipping.

One code path for one process and for ``torchrun`` jobs (DistributedDataParallel + a distributed
sampler; the configured batch size is global). Randomness is a function of (seed, rank, step) and of
(seed, epoch, index) for the data, so a resumed run repeats the uninterrupted one exactly.

Outputs under ``output_dir``: ``checkpoints/last_checkpoint.pth`` (every epoch) and
``checkpoints/NNN.pth`` after NNN epochs, every ``checkpoint_interval`` (the original names and
checkpoint format, :func:`model.checkpoint.save_checkpoint`); ``resume.pt`` (model, optimizer,
scheduler, scaler, epoch, step, RNG states; plain tensors/containers, loadable with
``weights_only=True``); ``train_log.csv`` (per step) and ``val_log.csv`` (per validation).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model.atomic_io import atomic_write_bytes
from model.checkpoint import save_checkpoint
from model.evaluation.clicker import training_click
from model.modeling.interactive import InteractiveModel
from model.predictor import cpu_has_native_bf16
from model.threshold import DEFAULT_THRESHOLD, probability_mask
from training.config import Config
from training.data.dataset import InteractiveDataset, SampleSource, evaluation_objects
from training.depthwise_precision import train_depthwise_in_float32
from training.loss import InteractiveLoss
from training.step_timer import StepTimer

RESUME_FILE = "resume.pt"
LAST_CHECKPOINT = "last_checkpoint.pth"
TRAIN_LOG = "train_log.csv"
VAL_LOG = "val_log.csv"


@dataclass(frozen=True)
class ProcessGroup:
    """This process in a (possibly single-process) training job."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# ----------------------------------------------------------------------------------------- click simulation


def next_click_points(
    probs: torch.Tensor,
    gt: torch.Tensor,
    points: torch.Tensor,
    click_index: int,
    rng: np.random.Generator,
    threshold: float = DEFAULT_THRESHOLD,
) -> torch.Tensor:
    """Add one click per sample by the training click rule (:func:`model.evaluation.clicker.training_click`,
    RITM's ``get_next_points``) on the thresholded prediction.

    ``probs`` (B, 1, H, W) predicted probabilities, ``gt`` (B, 1, H, W) target (> 0.5 = object),
    ``points`` (B, 2N, 3). The click overwrites row ``N - click_index`` (positive) or ``2N - click_index``
    (negative) with ``(y, x, click_index)``. Returns a new tensor.
    """
    if click_index < 1:
        raise ValueError("click_index counts from 1")
    pred_masks = probability_mask(probs.detach().float().cpu().numpy()[:, 0], threshold)
    target = gt.detach().cpu().numpy()[:, 0] > 0.5
    num_points = points.shape[1] // 2
    points = points.clone()
    for b in range(pred_masks.shape[0]):
        click = training_click(pred_masks[b], target[b], rng)
        if click is None:
            continue
        row = num_points - click_index if click.is_positive else 2 * num_points - click_index
        points[b, row] = torch.tensor([click.y, click.x, float(click_index)], dtype=points.dtype)
    return points


# --------------------------------------------------------------------------------------------- optimiser


def build_optimizer(model: InteractiveModel, config: Config) -> torch.optim.Adam:
    """Adam over the model's rate groups (:meth:`InteractiveModel.parameter_groups`: the pretrained part
    the network names at ``backbone_lr_mult`` x lr, the rest at lr)."""
    opt = config.optim
    param_groups = [
        {"params": group.params, "lr": opt.lr * group.lr_mult}
        for group in model.parameter_groups(config.model.backbone_lr_mult)
    ]
    return torch.optim.Adam(
        param_groups, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
    )


def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] % (2**63))


# ----------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Trains ``model`` on ``train_set``; validates NoC on objects of ``val_source`` (rank 0).

    ``device``: this process's device. For a distributed job the default process group must already
    be initialised (see :mod:`training.train`).
    """

    def __init__(
        self,
        model: InteractiveModel,
        config: Config,
        train_set: InteractiveDataset,
        output_dir: str | Path,
        val_source: SampleSource | None = None,
        device: str | torch.device = "cpu",
        group: ProcessGroup = ProcessGroup(),
        tensorboard: bool = False,
        show_progress: bool = True,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.group = group
        self.output_dir = Path(output_dir)
        self.train_set = train_set
        self.val_source = val_source
        self.show_progress = show_progress
        self.model = model.to(self.device)
        self.channels_last = config.train.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.timer = StepTimer(self.device, every=0)  # set ``every`` to measure the parts of steps
        self.net: nn.Module = self.model
        if group.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.criterion = InteractiveLoss(config.train.instance_loss_weight, config.train.aux_loss_weight)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.optim.milestones), gamma=config.optim.gamma
        )
        # Reduced precision: float16 + gradient scaling on CUDA (as the paper); bfloat16 on a CPU that
        # computes it natively (AVX512-BF16/AMX: about twice the fp32 speed), which needs no scaling.
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.use_amp = config.train.amp and (self.device.type == "cuda" or cpu_has_native_bf16())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.device.type == "cuda")
        if self.use_amp and self.device.type == "cpu" and config.train.float32_depthwise:
            train_depthwise_in_float32(self.model)
        per_process, remainder = divmod(config.train.batch_size, group.world_size)
        if per_process < 1 or remainder:
            raise ValueError(
                f"batch size {config.train.batch_size} is not a multiple of the {group.world_size} processes"
            )
        self.batch_size = per_process
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.writer = None
        if tensorboard and group.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from None
            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))

    # ------------------------------------------------------------------------------------------ batches

    def sampler_indices(self, epoch: int) -> list[int]:
        """This process's item indices of ``epoch`` (shuffled with the seed, split among processes)."""
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.group.world_size,
            rank=self.group.rank,
            shuffle=True,
            seed=self.config.train.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def steps_per_epoch(self) -> int:
        return len(self.sampler_indices(0)) // self.batch_size

    def batches(self, epoch: int, skip_steps: int = 0) -> Iterable[dict[str, torch.Tensor]]:
        indices = self.sampler_indices(epoch)[skip_steps * self.batch_size :]
        self.train_set.set_epoch(epoch)
        workers = self.config.data.workers
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=indices,
            drop_last=True,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
        )

    def forward_batch(
        self, batch: dict[str, torch.Tensor], rng: np.random.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch after 0..max_num_next_clicks simulated correction clicks."""
        image = batch["images"].to(self.device, non_blocking=True)
        gt = batch["instances"].to(self.device, non_blocking=True)
        points = batch["points"].to(self.device, non_blocking=True)
        prev = torch.zeros_like(image[:, :1])
        num_iters = int(rng.integers(0, self.config.train.max_num_next_clicks + 1))
        if num_iters:
            self.model.eval()
            with torch.no_grad():
                for click in range(1, num_iters + 1):
                    with torch.autocast(self.device.type, self.amp_dtype, enabled=self.use_amp):
                        logits = self.model(self.network_input(image, prev), points)["instances"]
                    prev = torch.sigmoid(logits.float())
                    self.timer.lap("click_forward")
                    points = next_click_points(prev, gt, points, click, rng)
                    self.timer.lap("click_rule")
            self.model.train()
        with torch.autocast(self.device.type, self.amp_dtype, enabled=self.use_amp):
            outputs = self.net(self.network_input(image, prev), points)
        return self.criterion(outputs, gt)

    def network_input(self, image: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """RGB (+ the previous mask for models that take it), in the model's memory format."""
        net_input = torch.cat((image, prev), dim=1) if self.model.with_prev_mask else image
        return net_input.contiguous(memory_format=torch.channels_last) if self.channels_last else net_input

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step; returns the losses (averaged over processes) as floats."""
        self.timer.start(self.global_step)
        seed = _step_seed(self.config.train.seed, self.group.rank, self.global_step)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        loss, parts = self.forward_batch(batch, rng)
        self.timer.lap("forward")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.timer.lap("backward")
        values = torch.stack([loss.detach().float()] + [v.detach().float() for v in parts.values()])
        if self.group.distributed:
            dist.all_reduce(values)
            values /= self.group.world_size
        names = ["loss", *parts]
        return dict(zip(names, values.tolist(), strict=True))

    # --------------------------------------------------------------------------------------------- loop

    def fit(
        self,
        epochs: int | None = None,
        max_seconds: float | None = None,
        on_step: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train until ``epochs`` (default: the config's) are done, or until ``max_seconds`` of wall time
        have passed: then the step in progress finishes and the run stops cleanly (a checkpoint of the
        weights so far and an exact ``resume.pt``), so a long run can be many short segments. Returns the
        validation records; ``self.stopped_early`` tells whether the time budget ended it. ``on_step``
        gets each step's losses (main process), e.g. to report progress."""
        epochs = self.config.train.epochs if epochs is None else epochs
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        self.stopped_early = False
        if self.group.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        records = []
        steps = self.steps_per_epoch()
        if steps == 0:
            raise ValueError(
                f"an epoch of {len(self.train_set)} items gives no batch of {self.batch_size} per process"
            )
        while self.epoch < epochs:
            self.model.train()
            started = time.perf_counter()
            bar = tqdm(
                total=steps,
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{epochs}",
                disable=not (self.group.is_main and self.show_progress),
                dynamic_ncols=True,
            )
            for batch in self.batches(self.epoch, self.step_in_epoch):
                losses = self.train_step(batch)
                self.step_in_epoch += 1
                self.global_step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.4f}")
                if on_step is not None and self.group.is_main:
                    on_step(losses)
                if self.group.is_main and self.global_step % self.config.train.log_every_steps == 0:
                    self.log_step(losses, time.perf_counter() - started)
                every = self.config.train.resume_every_steps
                if every > 0 and self.global_step % every == 0 and self.step_in_epoch < steps:
                    self.save_resume()
                if deadline is not None and time.perf_counter() >= deadline and self.step_in_epoch < steps:
                    self.stopped_early = True
                    break
            bar.close()
            if self.stopped_early:
                self.save_checkpoints(final=False)
                self.save_resume()
                break
            self.scheduler.step()
            self.epoch += 1
            self.step_in_epoch = 0
            self.save_checkpoints()
            every = self.config.validation.every
            if every > 0 and self.val_source is not None and self.epoch % every == 0:
                record = self.validate()
                if record is not None:
                    records.append(record)
            self.save_resume()
            if deadline is not None and time.perf_counter() >= deadline and self.epoch < epochs:
                self.stopped_early = True
                break
        if self.writer is not None:
            self.writer.close()
        return records

    # ------------------------------------------------------------------------------------------ logging

    def log_step(self, losses: dict[str, float], seconds: float) -> None:
        row = {
            "epoch": self.epoch + 1,  # 1-based epoch in progress (val_log: epochs completed)
            "step": self.global_step,
            "lr": self.optimizer.param_groups[-1]["lr"],
            "loss": losses["loss"],
            "instance_loss": losses.get("instance_loss", math.nan),
            "instance_aux_loss": losses.get("instance_aux_loss", math.nan),
            "epoch_seconds": round(seconds, 3),
        }
        _append_csv(self.output_dir / TRAIN_LOG, row)
        if self.writer is not None:
            for key in ("loss", "instance_loss", "instance_aux_loss", "lr"):
                if not math.isnan(row[key]):
                    self.writer.add_scalar(f"train/{key}", row[key], self.global_step)

    # ------------------------------------------------------------------------------------- validation

    def validate(self) -> dict[str, Any] | None:
        """NoC of the held-out objects (rank 0; the other processes wait)."""
        record = None
        if self.group.is_main:
            record = evaluate_noc(self.model, self.val_source, self.config, self.device)
            record = {"epoch": self.epoch, "step": self.global_step, **record}
            _append_csv(self.output_dir / VAL_LOG, record)
            if self.writer is not None:
                for key, value in record.items():
                    if key not in ("epoch", "step"):
                        self.writer.add_scalar(f"val/{key}", value, self.epoch)
            self.model.train()
        if self.group.distributed:
            dist.barrier()
        return record

    # ------------------------------------------------------------------------------------- checkpoints

    def save_checkpoints(self, final: bool = True) -> None:
        """``last_checkpoint.pth`` and, at the end of every ``checkpoint_interval`` epochs (``final``), the
        numbered one."""
        if not self.group.is_main:
            return
        folder = self.output_dir / "checkpoints"
        metadata = {"epoch": self.epoch, "step": self.global_step, "trained_with": "isegformer-train"}
        save_checkpoint(self.model, folder / LAST_CHECKPOINT, metadata)
        if not final:
            return
        interval = self.config.train.checkpoint_interval
        if interval > 0 and (self.epoch % interval == 0 or self.epoch == self.config.train.epochs):
            save_checkpoint(self.model, folder / f"{self.epoch:03d}.pth", metadata)

    def resume_state(self) -> dict[str, Any]:
        state = {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                k: (dict(v) if k == "milestones" else v) for k, v in self.scheduler.state_dict().items()
            },
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "world_size": self.group.world_size,
            "rng": {"torch": torch.get_rng_state()},
            "arch": self.model.arch,
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def save_resume(self) -> None:
        """Write ``resume.pt`` atomically (rank 0)."""
        if not self.group.is_main:
            return
        import io

        buffer = io.BytesIO()
        torch.save(self.resume_state(), buffer)
        atomic_write_bytes(self.output_dir / RESUME_FILE, buffer.getvalue())

    def load_resume(self, path: str | Path) -> None:
        """Continue from a ``resume.pt`` (same model architecture and configuration)."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if state.get("arch") != self.model.arch:
            raise ValueError(f"{path} was written for {state.get('arch')}, not {self.model.arch}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        from collections import Counter

        scheduler = dict(state["scheduler"])
        scheduler["milestones"] = Counter(scheduler["milestones"])
        self.scheduler.load_state_dict(scheduler)
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def evaluate_noc(
    model: InteractiveModel,
    source: SampleSource,
    config: Config,
    device: str | torch.device,
    with_flip: bool = False,
    max_objects: int | None = None,
) -> dict[str, float]:
    """NoC@thresholds and mean IoU after 1/3/5 clicks on up to ``max_objects`` (default
    ``validation.max_objects``) objects, with the input limits and the ZoomIn the app gives a network trained
    here (:func:`model.predictor.interactive_zoom_in`) when ``validation.zoom_in``; ``with_flip`` adds the
    flip the app's predictor uses."""
    from model.evaluation.noc import compute_noc, evaluate_sample, threshold_key
    from model.predictor import interactive_predictor

    val = config.validation
    predictor = interactive_predictor(model, device, ours=True, zoom_in=val.zoom_in, with_flip=with_flip)
    curves = []
    limit = val.max_objects if max_objects is None else max_objects
    objects = evaluation_objects(source, limit, config.data.min_object_area, config.train.seed)
    for _, image, gt_mask in objects:
        result = evaluate_sample(
            predictor, image, gt_mask, max_clicks=val.max_clicks, target_iou=max(val.iou_thresholds)
        )
        curves.append(np.nan_to_num(result.ious, nan=0.0))
    if not curves:
        raise ValueError("validation found no object (check min_object_area and the validation split)")
    summary = compute_noc(curves, val.iou_thresholds, val.max_clicks)
    record: dict[str, float] = {"objects": float(summary.n_objects)}
    for threshold in val.iou_thresholds:
        record[f"noc{threshold_key(threshold)}"] = summary.noc[threshold_key(threshold)]
    for clicks in (1, 3, 5):
        if clicks <= val.max_clicks:
            record[f"miou@{clicks}"] = float(summary.mean_iou_per_click[clicks - 1])
    return record


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)

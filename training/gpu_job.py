"""A training job with a fixed wall-clock budget, from one data pack: the most training out of a rented GPU.

    python -m training.gpu_job --pack PACK --minutes 8 --out DIR [--resume WEIGHTS] [--device cuda|cpu]

Needs torch, timm, numpy and OpenCV (no network, no Qt, nibabel or pydicom). Trains the default network
(``efficientnet_lite0_segformer``, from the pack's ImageNet start or ``--resume``) on scenes that
:mod:`training.data.gpu_scenes` makes in batches on the device, with the iterative click rule on the
device too; bf16 autocast and channels_last (on a CPU with native bf16, depth-wise backward passes in
fp32: :mod:`training.depthwise_precision`), fused Adam on CUDA. It stops when the budget minus what
saving and evaluating take is spent, then writes to DIR:

* ``isegformer_lite0.pth``: the weights (fp16, original checkpoint format; its metadata carries the
  samples seen by every earlier segment and a training log), also written every few minutes meanwhile;
* ``job.json``: samples seen, samples/s, the share of a step spent in scene making, click simulation,
  forward and backward, the loss summary, the device, the self-check (CUDA) and NoC@85/90 + mIoU@1/5 on
  the pack's evaluation sets.

The learning rate warms up, then follows a cosine over the *time* budget (the number of steps is not
known in advance). ``torch.compile`` is off unless asked for (``--compile``): its compile time is
measured and reported when it is on.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from model.atomic_io import atomic_write_text
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.clicks import Click
from model.modeling.interactive import InteractiveModel
from training.data.gpu_scenes import (
    SceneBank,
    SceneBatch,
    SceneConfig,
    SceneMaker,
    add_correction_clicks,
    initial_points,
    perturbed_previous_masks,
)
from training.data.pack import DataPack, PackError, read_pack
from training.depthwise_precision import train_depthwise_in_float32
from training.loss import NormalizedFocalLoss, boundary_weight
from training.step_timer import StepTimer

WEIGHTS_FILE = "isegformer_lite0.pth"
JOB_FILE = "job.json"
DEFAULT_ARCH = "efficientnet_lite0_segformer"
AUTO_BATCH_FACTORS = (1.0, 1.5, 2.0, 3.0)  # batch sizes --batch-size auto tries, x JobConfig.batch_size


@dataclass(frozen=True)
class JobConfig:
    batch_size: int = 128
    lr: float = 5e-4
    backbone_lr_mult: float = 0.25
    warmup_steps: int = 150
    final_lr_fraction: float = 0.05
    max_correction_clicks: int = 3
    num_points: int = 12  # rows per sign in the points tensor (initial clicks + correction clicks)
    grad_clip_norm: float = 2.0
    boundary_weight: float = 1.0  # > 1: the NFL weights a band around the target's edge (FocalClick's WFNL)
    boundary_width: float = 0.015  # that band's half-width, a share of the scene side
    single_click_share: float = 0.0  # scenes that start from one positive click alone (initial_points)
    perturbed_prev_share: float = 0.0  # in iterative steps: scenes whose previous mask is a perturbed target
    ema_decay: float = 0.0  # > 0: the job saves and evaluates an exponential moving average of the weights
    save_every_seconds: float = 150.0
    eval_max_clicks: int = 20
    eval_max_objects: int = 200  # per evaluation set
    seed: int = 0


# ------------------------------------------------------------------------------------------------ bank


def _square(image: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    """``image`` padded (centred, zeros) to a square and resized to ``side``."""
    height, width = image.shape[:2]
    extent = max(height, width)
    pad = [
        ((extent - height) // 2, extent - height - (extent - height) // 2),
        ((extent - width) // 2, extent - width - (extent - width) // 2),
    ]
    pad += [(0, 0)] * (image.ndim - 2)
    return cv2.resize(np.pad(image, pad), (side, side), interpolation=interpolation)


def _background_squares(rgb: np.ndarray, side: int) -> list[np.ndarray]:
    """One square crop of ``rgb`` (two, at both ends, for a wide or tall photo), resized to ``side``."""
    height, width = rgb.shape[:2]
    extent = min(height, width)
    starts = (
        [0, max(height, width) - extent]
        if max(height, width) > 1.3 * extent
        else [(max(height, width) - extent) // 2]
    )
    out = []
    for start in starts:
        crop = rgb[start : start + extent] if height > width else rgb[:, start : start + extent]
        out.append(cv2.resize(np.ascontiguousarray(crop), (side, side), interpolation=cv2.INTER_AREA))
    return out


def bank_from_pack(
    pack: DataPack,
    device: torch.device,
    object_side: int = 192,
    background_side: int = 384,
    mr_side: int = 256,
) -> SceneBank:
    """The pack's images as uint8 tensors on ``device`` (objects and MR slices squared, backgrounds cut
    into squares)."""

    def stack(arrays: list[np.ndarray], channels: int, side: int) -> torch.Tensor:
        if not arrays:
            return torch.zeros((0, channels, side, side), dtype=torch.uint8, device=device)
        array = np.stack([a.reshape(side, side, channels) for a in arrays])
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous().to(device)

    objects = [_square(o, object_side, cv2.INTER_AREA) for o in pack.objects]
    backgrounds = [s for b in pack.backgrounds for s in _background_squares(b, background_side)]
    return SceneBank(
        objects=stack(objects, 4, object_side),
        backgrounds=stack(backgrounds, 3, background_side),
        mr_image=stack([_square(m.image, mr_side, cv2.INTER_LINEAR) for m in pack.mr], 1, mr_side),
        mr_tissue=stack([_square(m.tissue, mr_side, cv2.INTER_NEAREST) for m in pack.mr], 1, mr_side),
        mr_structures=stack([_square(m.structures, mr_side, cv2.INTER_NEAREST) for m in pack.mr], 1, mr_side),
    )


# ----------------------------------------------------------------------------------------------- model


def load_start(pack: DataPack, resume: str | None) -> tuple[InteractiveModel, dict[str, Any]]:
    """The network to train (``resume`` or the pack's starting weights) and its checkpoint metadata."""
    if resume:
        model = load_checkpoint(resume)
    else:
        if not pack.init_checkpoint:
            raise PackError("the pack holds no starting network; give --resume WEIGHTS")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "init.pth"
            path.write_bytes(pack.init_checkpoint)
            model = load_checkpoint(path)
    if model.arch != DEFAULT_ARCH or not model.with_prev_mask:
        raise CheckpointError(f"the job trains {DEFAULT_ARCH} with the previous mask, not {model.arch}")
    metadata = dict(getattr(model, "metadata", {}) or {})
    seen, log = metadata.get("samples_seen", 0), metadata.get("training_log", [])
    if not isinstance(seen, int) or isinstance(seen, bool) or seen < 0:
        raise CheckpointError(f"the starting network's samples_seen ({seen!r}) is not a count")
    if not isinstance(log, list) or not all(isinstance(entry, dict) for entry in log):
        raise CheckpointError("the starting network's training_log is not a list of segments")
    return model.float(), metadata


def build_optimizer(model: InteractiveModel, config: JobConfig, fused: bool) -> torch.optim.Adam:
    """Adam over the model's rate groups (:meth:`InteractiveModel.parameter_groups`: the pretrained encoder
    at ``backbone_lr_mult`` x lr); each group keeps its ``base_lr`` for the schedule."""
    params = [
        {"params": group.params, "lr": config.lr * group.lr_mult, "base_lr": config.lr * group.lr_mult}
        for group in model.parameter_groups(config.backbone_lr_mult)
    ]
    return torch.optim.Adam(params, lr=config.lr, fused=fused)


def lr_factor(step: int, progress: float, config: JobConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine over the time budget (``progress`` 0..1)."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    low = config.final_lr_fraction
    return warm * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ------------------------------------------------------------------------------------------- training


class Job:
    """One budgeted training job on one device."""

    def __init__(
        self,
        model: InteractiveModel,
        maker: SceneMaker,
        config: JobConfig,
        device: torch.device,
        compile_model: bool = False,
        channels_last: bool = True,
        float32_depthwise: bool = True,
    ) -> None:
        """``channels_last`` and ``float32_depthwise`` (on the CPU) are off only to measure what they gain
        (``training.benchmarks.train_step --pack``)."""
        self.config, self.device, self.maker = config, device, maker
        self.model = model.to(device)
        self.cuda = device.type == "cuda"
        # channels-last on both: tensor cores on the GPU; oneDNN's NHWC kernels on the CPU (7.7-9.0
        # against 5.5-5.6 samples/s at 320², batch 16, 2 cores: training.benchmarks.train_step --pack)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        from model.predictor import cpu_has_native_bf16

        self.amp = self.cuda or cpu_has_native_bf16()
        # the CPU's bf16 depth-wise backward is slow: it runs in float32 (training.depthwise_precision)
        on_cpu_bf16 = self.amp and not self.cuda and float32_depthwise
        self.float32_depthwise = train_depthwise_in_float32(self.model) if on_cpu_bf16 else 0
        self.optimizer = build_optimizer(self.model, config, fused=self.cuda)
        # Polyak/EMA averaging (torch's AveragedModel): small noisy batches, as on the CPU, move the trained
        # weights around a good point; their average sits nearer it. Buffers (batch-norm statistics) too.
        self.averaged = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema_decay > 0
            else None
        )
        self.loss = NormalizedFocalLoss(alpha=0.5, gamma=2.0)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        self.timer = StepTimer(device)
        self.steps = 0
        self._samples = torch.zeros((), dtype=torch.int64, device=device)
        self.losses: list[float] = []
        self.compile_seconds: float | None = None
        self.forward = self.model
        if compile_model:
            started = time.perf_counter()
            self.forward = torch.compile(self.model)
            self._warm_compiled()
            self.compile_seconds = time.perf_counter() - started

    def _warm_compiled(self) -> None:
        """Compile outside the timed loop (train and eval graphs), then restore the weights."""
        state = copy.deepcopy(self.model.state_dict())
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        self.train_step(0.0)
        self.model.load_state_dict(state)
        self.optimizer.load_state_dict(optimizer_state)
        if self.averaged is not None:
            self.averaged.n_averaged.zero_()  # the next update copies the restored weights afresh
        self.steps = 0
        self._samples.zero_()
        self.losses.clear()

    @property
    def result(self) -> InteractiveModel:
        """The network the job hands on: the weights' moving average when ``ema_decay`` > 0."""
        return self.averaged.module if self.averaged is not None else self.model

    @property
    def samples(self) -> int:
        """Scenes with a usable target trained on so far."""
        return int(self._samples)

    def synchronize(self) -> None:
        """Wait for the device's queued work (timing)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _input(self, images: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        net_input = torch.cat((images, prev), dim=1)
        return net_input.contiguous(memory_format=torch.channels_last) if self.channels_last else net_input

    def _perturb_previous(
        self, batch: SceneBatch, initial: torch.Tensor, prev: torch.Tensor, points: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A ``perturbed_prev_share`` of the scenes: the previous mask becomes a perturbed target
        (:func:`perturbed_previous_masks`) and the clicks the initial ones plus one correction click at
        its larger error, as the evaluation's next click on a mask it did not make."""
        gen = self.generator
        count = batch.targets.shape[0]
        chosen = torch.rand(count, device=prev.device, generator=gen) < self.config.perturbed_prev_share
        perturbed = perturbed_previous_masks(batch.targets, batch.others, gen)
        answered = add_correction_clicks(perturbed, batch.targets, initial, 1, gen)
        return (
            torch.where(chosen.view(-1, 1, 1, 1), perturbed, prev),
            torch.where(chosen.view(-1, 1, 1), answered, points),
        )

    def train_step(self, progress: float) -> float:
        """One step (scenes, simulated clicks, forward, backward, update); returns the loss."""
        cfg, gen = self.config, self.generator
        self.timer.start(self.steps)
        batch = self.maker.batch(cfg.batch_size, gen)
        self.timer.lap("scenes")
        points = initial_points(
            batch.targets,
            batch.others,
            cfg.num_points,
            gen,
            single_click_share=cfg.single_click_share,
            merged=batch.merged,
        )
        prev = torch.zeros_like(batch.targets)
        self.timer.lap("click_rule")
        corrections = int(torch.randint(cfg.max_correction_clicks + 1, (1,)).item())
        if corrections:
            initial = points
            self.model.eval()
            with torch.no_grad(), self._autocast():
                for click in range(1, corrections + 1):
                    logits = self.forward(self._input(batch.images, prev), points)["instances"]
                    prev = torch.sigmoid(logits.float())
                    self.timer.lap("click_forward")
                    points = add_correction_clicks(prev, batch.targets, points, click, gen)
                    self.timer.lap("click_rule")
            self.model.train()
            if cfg.perturbed_prev_share > 0:
                prev, points = self._perturb_previous(batch, initial, prev, points)
                self.timer.lap("click_rule")
        factor = lr_factor(self.steps, progress, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        with self._autocast():
            logits = self.forward(self._input(batch.images, prev), points)["instances"]
        pixel_weight = None
        if cfg.boundary_weight != 1.0:
            width = max(1, round(cfg.boundary_width * batch.targets.shape[-1]))
            pixel_weight = boundary_weight(batch.targets, width, cfg.boundary_weight)
        per_sample = self.loss(logits.float(), batch.targets, pixel_weight)
        weight = batch.valid.float()
        loss = (per_sample * weight).sum() / weight.sum().clamp_min(1.0)
        self.timer.lap("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        self.timer.lap("backward")
        self.steps += 1
        self._samples += batch.valid.sum()  # read back only when reported (no sync per step)
        value = float(loss.detach()) if self.steps % 10 == 0 or self.timer.active else math.nan
        if not math.isnan(value):
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {self.steps}")
            self.losses.append(value)
        return value

    def run(self, seconds: float, on_save, log_every: float = 15.0) -> float:
        """Train for ``seconds`` (two steps at the least), calling ``on_save()`` every ``save_every_seconds``;
        returns the seconds spent."""
        started = last_log = last_save = time.perf_counter()
        while True:
            now = time.perf_counter()
            elapsed = now - started
            if elapsed >= seconds and self.steps > 1:  # at least two steps (the second one is timed)
                break
            self.train_step(min(1.0, elapsed / max(seconds, 1e-9)))
            if now - last_log >= log_every:
                last_log = now
                recent = self.losses[-10:]
                loss = statistics.fmean(recent) if recent else math.nan
                print(
                    f"[{elapsed:6.0f} s] step {self.steps}, {self.samples} samples, "
                    f"{self.samples / max(elapsed, 1e-9):.0f} samples/s, loss {loss:.4f}",
                    flush=True,
                )
            if now - last_save >= self.config.save_every_seconds:
                last_save = now
                on_save()
        self.synchronize()
        return time.perf_counter() - started


def probe_batch_size(
    model: InteractiveModel,
    maker: SceneMaker,
    config: JobConfig,
    device: torch.device,
    candidates: tuple[int, ...],
    seconds_each: float = 3.0,
) -> tuple[int, dict[int, float]]:
    """The batch size of ``candidates`` (ascending) with the most samples/s on ``device``, and the rates.

    Each candidate trains a throw-away copy of ``model`` for two warm-up steps, then for about
    ``seconds_each``; a candidate that runs out of memory ends the probe. A larger batch is chosen only
    when it is at least 5 % faster (a smaller one takes more optimiser steps in the same time)."""
    rates: dict[int, float] = {}
    for size in candidates:
        trial = Job(copy.deepcopy(model), maker, dataclasses.replace(config, batch_size=size), device)
        try:
            for _ in range(2):
                trial.train_step(0.0)
            trial.synchronize()
            started, steps = time.perf_counter(), 0
            while steps < 2 or time.perf_counter() - started < seconds_each:
                trial.train_step(0.0)
                steps += 1
                if steps % 4 == 0:
                    trial.synchronize()
            trial.synchronize()
            rates[size] = round(size * steps / (time.perf_counter() - started), 1)
        except torch.OutOfMemoryError:
            break
        finally:
            del trial
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not rates:
        raise RuntimeError(f"no batch size of {candidates} fits on {device}")
    best = min(rates)
    for size in sorted(rates):
        if rates[size] >= 1.05 * rates[best]:
            best = size
    return best, rates


def scaled_lr(lr: float, batch_size: int, reference: int = JobConfig.batch_size) -> float:
    """Adam's peak rate for ``batch_size``, scaled from the ``reference`` batch by the square root."""
    return lr * math.sqrt(batch_size / reference)


# -------------------------------------------------------------------------------------------- evaluation


def _interior_click(mask: np.ndarray) -> Click:
    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return Click(y=float(y), x=float(x), is_positive=True, index=0)


def evaluate_pack(
    model: InteractiveModel,
    pack: DataPack,
    device: torch.device,
    max_clicks: int = 20,
    max_objects: int = 200,
    deadline: float | None = None,
) -> dict[str, dict[str, float]]:
    """NoC@85/90 and mIoU@1/5 as the app runs the network (its ZoomIn, flip and input limits, threshold
    0.49) on each evaluation set of the pack; objects past ``deadline`` (perf_counter) are left out and
    counted in ``skipped``."""
    from model.evaluation.noc import compute_noc, evaluate_sample, object_gt_mask
    from model.predictor import interactive_predictor

    predictor = interactive_predictor(model, device, ours=True)
    results = {}
    for name, items in pack.eval_sets.items():
        curves, skipped = [], 0
        for item in items:
            for value in np.unique(item.instances):
                if value <= 0 or len(curves) + skipped >= max_objects:
                    continue
                if deadline is not None and time.perf_counter() > deadline:
                    skipped += 1
                    continue
                gt = object_gt_mask(item.instances, int(value))
                result = evaluate_sample(predictor, item.image, gt, max_clicks=max_clicks, target_iou=0.90)
                curves.append(np.nan_to_num(result.ious, nan=0.0))
        if not curves:
            results[name] = {"objects": 0, "skipped": skipped}
            continue
        summary = compute_noc(curves, (0.85, 0.90), max_clicks)
        record = {"objects": summary.n_objects, "skipped": skipped}
        record.update({f"noc{k}": round(float(v), 3) for k, v in summary.noc.items()})
        for clicks in (1, 5):
            if clicks <= max_clicks:
                record[f"miou@{clicks}"] = round(float(summary.mean_iou_per_click[clicks - 1]), 4)
        results[name] = record
    return results


def self_check(model: InteractiveModel, pack: DataPack, device: torch.device, budget: float = 30.0) -> dict:
    """CUDA checks of at most ``budget`` seconds: fp16/bf16 predictor masks against fp32 (IoU), one finite
    bf16 training step, and per-click latency (ZoomIn + flip) of segformer_b2/b5 and the default network
    at 400² and 800²."""
    from model.build import build_model
    from model.evaluation.noc import mask_iou
    from model.predictor import Predictor

    started = time.perf_counter()
    report: dict[str, Any] = {}
    items = [item for items in pack.eval_sets.values() for item in items][:6]
    precisions = (None, "fp16", "bf16") if device.type == "cuda" else (None, "bf16")
    agreement: dict[str, list[float]] = {p: [] for p in precisions[1:]}
    for item in items:
        value = next((v for v in np.unique(item.instances) if v > 0), None)
        if value is None:
            continue
        gt = item.instances == value
        click = [_interior_click(gt)]
        masks = {}
        for precision in precisions:
            predictor = Predictor(model, device, autocast=precision)
            predictor.set_image(item.image)
            masks[precision] = predictor.mask(predictor.predict(click).prob)
        for precision in precisions[1:]:
            iou = mask_iou(masks[None].astype(np.int32), masks[precision])
            agreement[precision].append(1.0 if math.isnan(iou) else iou)
    report["predictor_iou_vs_fp32"] = {
        k: {"min": round(min(v), 4), "mean": round(statistics.fmean(v), 4)} for k, v in agreement.items() if v
    }

    trial = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.Adam(trial.parameters(), lr=1e-4, fused=device.type == "cuda")
    image = torch.rand(4, 4, 256, 256, device=device)
    points = torch.tensor([[[128.0, 128.0, 0.0], [-1.0, -1.0, -1.0]]] * 4, device=device)
    target = torch.zeros(4, 1, 256, 256, device=device)
    target[:, :, 96:160, 96:160] = 1
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = trial(image, points)["instances"]  # the job's precision on either device
    loss = NormalizedFocalLoss()(logits.float(), target).mean()
    loss.backward()
    optimizer.step()
    finite = bool(torch.isfinite(loss)) and all(torch.isfinite(p).all() for p in trial.parameters())
    report["amp_step_finite"] = finite
    del trial, optimizer

    latency: dict[str, dict[str, float]] = {}
    source = items[0] if items else None
    for arch in (DEFAULT_ARCH, "segformer_b2", "segformer_b5"):
        if time.perf_counter() - started > budget:
            report["latency_cut_short"] = True
            break
        network = model if arch == DEFAULT_ARCH else build_model(arch, with_prev_mask=True)
        for side in (400, 800):
            if time.perf_counter() - started > budget:
                report["latency_cut_short"] = True
                break
            if source is None:
                break
            image = cv2.resize(source.image, (side, side), interpolation=cv2.INTER_LINEAR)
            gt = cv2.resize(
                (source.instances == source.instances.max()).astype(np.uint8),
                (side, side),
                interpolation=cv2.INTER_NEAREST,
            ).astype(bool)
            first = _interior_click(gt)
            for precision in (None, "bf16"):
                predictor = Predictor(network, device, autocast=precision)
                predictor.set_image(image)
                times = []
                clicks, state = [first], None
                for i in range(12):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    tick = time.perf_counter()
                    state = predictor.predict(clicks, state).state
                    times.append(time.perf_counter() - tick)
                    clicks.append(Click(first.y + 3 * (i % 3), first.x - 3 * (i % 4), i % 2 == 0, i + 1))
                latency.setdefault(arch, {})[f"{side}_{precision or 'fp32'}_ms"] = round(
                    1000 * statistics.median(times[2:]), 2
                )
        if arch != DEFAULT_ARCH:
            del network
    report["latency_per_click"] = latency
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


# ------------------------------------------------------------------------------------------------- main


def save_weights(model: InteractiveModel, path: Path, metadata: dict[str, Any]) -> None:
    """fp16 weights with ``metadata``; the model itself stays in float32."""
    save_checkpoint(copy.deepcopy(model).float().cpu(), path, metadata, half=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.gpu_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", required=True, help="data pack (python -m training.data.pack)")
    parser.add_argument("--minutes", type=float, required=True, help="wall budget of the whole job")
    parser.add_argument("--out", required=True, help="folder for the weights and job.json")
    parser.add_argument("--resume", help="continue from these weights (an earlier job's or a CPU run's)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument(
        "--batch-size",
        help=f"scenes per step, or 'auto': the fastest of {AUTO_BATCH_FACTORS} x {JobConfig.batch_size}, "
        f"measured (the default on CUDA; {JobConfig.batch_size} on the CPU); the peak rate scales with its "
        "square root",
    )
    parser.add_argument("--size", type=int, default=SceneConfig.size, help="scene side in pixels")
    parser.add_argument("--lr", type=float, help=f"peak learning rate (default {JobConfig.lr})")
    parser.add_argument(
        "--boundary-weight",
        type=float,
        default=JobConfig.boundary_weight,
        help="weight of the loss in a band around each target's edge (1 = plain NFL; FocalClick uses 2)",
    )
    parser.add_argument(
        "--single-click-share",
        type=float,
        default=JobConfig.single_click_share,
        help="share of scenes that start from one positive click alone, as a user does (0..1)",
    )
    parser.add_argument(
        "--perturbed-prev-share",
        type=float,
        default=JobConfig.perturbed_prev_share,
        help="in iterative-training steps, the share of scenes whose previous mask is the target with "
        "made-up errors instead of the network's own prediction (0..1)",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=JobConfig.ema_decay,
        help="save and evaluate an exponential moving average of the weights with this decay per step, "
        "e.g. 0.999 (0 = off, the last weights); a resumed job's average starts from the weights it resumes",
    )
    parser.add_argument(
        "--object-scale",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=SceneConfig.object_scale,
        help="a pasted object's longest side as a share of the scene side, drawn log-uniform "
        f"(default {SceneConfig.object_scale[0]} {SceneConfig.object_scale[1]})",
    )
    parser.add_argument(
        "--min-target-fraction",
        type=float,
        default=SceneConfig.min_target_fraction,
        help="the smallest target a scene may ask for, as a share of the scene's pixels "
        f"(default {SceneConfig.min_target_fraction})",
    )
    parser.add_argument(
        "--mr-lesion-prob",
        type=float,
        default=SceneConfig.lesion_prob,
        help="share of MR scenes with a lesion-like blob of random contrast, the target in half of them "
        f"(SynthSeg's pathology; default {SceneConfig.lesion_prob})",
    )
    parser.add_argument(
        "--blob-fraction",
        type=float,
        default=SceneConfig.blob_fraction,
        help="share of scenes made of homogeneous blobs on plain ground, one of them the target (cells, "
        f"organs, lesions: what the cut-outs hardly show; taken from the photo scenes; default "
        f"{SceneConfig.blob_fraction})",
    )
    parser.add_argument("--eval-clicks", type=int, default=JobConfig.eval_max_clicks)
    parser.add_argument("--eval-objects", type=int, default=JobConfig.eval_max_objects)
    parser.add_argument("--no-self-check", action="store_true", help="skip the CUDA self-check")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (time measured)")
    parser.add_argument("--seed", type=int, default=JobConfig.seed)
    return parser.parse_args(argv)


MAX_MIN_TARGET_FRACTION = 0.1  # a floor of 10 % of the scene already refuses most pasted objects


def scene_config(args: argparse.Namespace) -> SceneConfig:
    """The scene recipe the command line asks for."""
    return SceneConfig(
        size=args.size,
        object_scale=(args.object_scale[0], args.object_scale[1]),
        min_target_fraction=args.min_target_fraction,
        lesion_prob=args.mr_lesion_prob,
        blob_fraction=args.blob_fraction,
    )


def argument_problem(args: argparse.Namespace) -> str | None:
    """Why the command line cannot run (one sentence), or None."""
    if not args.minutes > 0:
        return "--minutes must be above 0"
    fixed = args.batch_size not in (None, "auto")
    if fixed and not (args.batch_size.isdigit() and int(args.batch_size) >= 1):
        return "--batch-size must be a whole number of at least 1, or auto"
    if args.size < 32:
        return "--size must be at least 32 pixels"
    if args.lr is not None and not args.lr > 0:
        return "--lr must be above 0"
    if not args.boundary_weight >= 1:
        return "--boundary-weight must be at least 1"
    if not 0 <= args.single_click_share <= 1:
        return "--single-click-share must be between 0 and 1"
    if not 0 <= args.perturbed_prev_share <= 1:
        return "--perturbed-prev-share must be between 0 and 1"
    if not 0 <= args.ema_decay < 1:
        return "--ema-decay must be at least 0 and below 1"
    low, high = args.object_scale
    if not 0 < low <= high <= 4:
        return "--object-scale needs 0 < LOW <= HIGH <= 4"
    if not 0 <= args.min_target_fraction <= MAX_MIN_TARGET_FRACTION:
        # above it nearly every scene's target would be refused: the job would train on nothing
        return f"--min-target-fraction must be between 0 and {MAX_MIN_TARGET_FRACTION}"
    if not 0 <= args.mr_lesion_prob <= 1:
        return "--mr-lesion-prob must be between 0 and 1"
    mr_share = SceneConfig.mr_fraction
    if not 0 <= args.blob_fraction <= 1 - mr_share:
        return f"--blob-fraction must be between 0 and {1 - mr_share:g} (MR scenes keep their {mr_share:g})"
    if args.eval_clicks < 1 or args.eval_objects < 0:
        return "--eval-clicks must be at least 1 and --eval-objects at least 0"
    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            return f"--device {args.device}: not a device (use cpu or cuda)"
        if device.type not in ("cpu", "cuda"):
            return f"--device {args.device}: use cpu or cuda"
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.type == "cuda" and (device.index or 0) >= cuda_count:
            return f"--device {args.device}: this machine has no such CUDA device"
    return None


def main(argv: list[str] | None = None) -> int:
    job_started = time.perf_counter()
    args = parse_args(argv)
    problem = argument_problem(args)
    if problem:
        print(f"gpu_job: error: {problem}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = JobConfig(
        seed=args.seed,
        eval_max_clicks=args.eval_clicks,
        eval_max_objects=args.eval_objects,
        boundary_weight=args.boundary_weight,
        single_click_share=args.single_click_share,
        perturbed_prev_share=args.perturbed_prev_share,
        ema_decay=args.ema_decay,
    )
    if args.batch_size not in (None, "auto"):
        config = dataclasses.replace(config, batch_size=int(args.batch_size))
    if args.lr is not None:
        config = dataclasses.replace(config, lr=args.lr)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        pack = read_pack(args.pack)
        if not pack.objects or not pack.backgrounds:
            raise PackError(f"{args.pack}: the pack holds no cut-out or no background")
        model, metadata = load_start(pack, args.resume)
    except (PackError, CheckpointError, OSError) as error:
        print(f"gpu_job: error: {error}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(config.seed)
    budget = args.minutes * 60
    # what the end costs: saving plus the evaluation (capped), measured roughly per device
    reserve = min(max(0.1 * budget, 15.0), 90.0) if device.type == "cuda" else min(0.3 * budget, 120.0)
    record: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "pack": {"file": Path(args.pack).name, **pack.manifest.get("counts", {})},
        "resume": args.resume or "pack's ImageNet start",
        "budget_minutes": args.minutes,
        "config": dataclasses.asdict(config),
    }
    if device.type == "cuda" and not args.no_self_check:
        try:
            record["self_check"] = self_check(model, pack, device)
        except Exception as error:  # noqa: BLE001 - a failed check is reported, the training still runs
            record["self_check"] = {"error": f"{type(error).__name__}: {error}"}
        model.float()
        print(f"self-check: {json.dumps(record['self_check'])}", flush=True)

    if device.type == "cuda":
        # after the self-check: the predictor's ever-changing ZoomIn shapes would each be benchmarked
        torch.backends.cudnn.benchmark = True
    bank = bank_from_pack(pack, device)
    maker = SceneMaker(bank, scene_config(args))
    record["scenes"] = dataclasses.asdict(maker.config)
    if args.batch_size == "auto" or (args.batch_size is None and device.type == "cuda"):
        candidates = tuple(round(config.batch_size * factor) for factor in AUTO_BATCH_FACTORS)
        probe_started = time.perf_counter()
        try:
            chosen, rates = probe_batch_size(model, maker, config, device, candidates)
            record["batch_probe"] = {"samples_per_second": rates, "chosen": chosen}
            if args.lr is None:
                config = dataclasses.replace(config, lr=scaled_lr(config.lr, chosen))
            config = dataclasses.replace(config, batch_size=chosen)
        except Exception as error:  # noqa: BLE001 - the default batch still trains; job.json says why
            record["batch_probe"] = {"error": f"{type(error).__name__}: {error}"}
        record["batch_probe"]["seconds"] = round(time.perf_counter() - probe_started, 1)
        record["config"] = dataclasses.asdict(config)
        print(f"batch probe: {json.dumps(record['batch_probe'])}", flush=True)
    job = Job(model, maker, config, device, compile_model=args.compile)
    record["compile_seconds"] = job.compile_seconds
    seen_before = int(metadata.get("samples_seen", 0))
    log = list(metadata.get("training_log", []))

    def current_metadata(seconds: float) -> dict[str, Any]:
        segment = {
            "kind": "gpu_job",
            "device": record["device"],
            "samples": job.samples,
            "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d"),
        }
        return {
            "samples_seen": seen_before + job.samples,
            "training_log": [*log, segment],
            "trained_with": "training.gpu_job",
        }

    train_started = time.perf_counter()

    def periodic_save() -> None:
        save_weights(job.result, out / WEIGHTS_FILE, current_metadata(time.perf_counter() - train_started))
        atomic_write_text(
            out / JOB_FILE,
            json.dumps({**record, "partial": True, "steps": job.steps, "samples": job.samples}, indent=1),
        )

    train_budget = budget - reserve - (time.perf_counter() - job_started)
    try:
        seconds = job.run(max(train_budget, 0.0), periodic_save)
    except FloatingPointError as error:
        record["error"] = str(error)
        seconds = time.perf_counter() - train_started
        print(f"gpu_job: stopped: {error}", file=sys.stderr)
    metadata_now = current_metadata(seconds)
    save_weights(job.result, out / WEIGHTS_FILE, metadata_now)
    losses = job.losses
    record.update(
        {
            "steps": job.steps,
            "samples": job.samples,
            "samples_seen_total": metadata_now["samples_seen"],
            "train_seconds": round(seconds, 1),
            "samples_per_second": round(job.samples / max(seconds, 1e-9), 1),
            "step_shares": job.timer.shares(),
            "largest_share": max(job.timer.shares().items(), key=lambda item: item[1])[0],
            "loss": {
                "first": round(statistics.fmean(losses[:10]), 4) if losses else None,
                "last": round(statistics.fmean(losses[-10:]), 4) if losses else None,
                "min": round(min(losses), 4) if losses else None,
                "logged": len(losses),
            },
            "amp": "bf16" if job.amp else "fp32",
            "channels_last": job.channels_last,
            "float32_depthwise_backward": job.float32_depthwise,
            "fused_adam": job.cuda,
        }
    )
    deadline = job_started + budget - 3.0
    torch.backends.cudnn.benchmark = False  # evaluation crops change size at every click
    job.result.eval()
    try:
        record["evaluation"] = evaluate_pack(
            job.result, pack, device, config.eval_max_clicks, config.eval_max_objects, deadline
        )
    except Exception as error:  # noqa: BLE001 - the weights are saved; job.json says what failed
        record["evaluation"] = {"error": f"{type(error).__name__}: {error}"}
    record["total_seconds"] = round(time.perf_counter() - job_started, 1)
    atomic_write_text(out / JOB_FILE, json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("samples", "samples_per_second", "step_shares", "evaluation")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

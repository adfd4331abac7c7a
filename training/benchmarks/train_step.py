"""Where a CPU training step of the default network goes, and samples/s: the straightforward way (NCHW,
everything in bf16 autocast) against channels-last, and channels-last with the depth-wise convolutions in
float32 (the default, :mod:`training.depthwise_precision`), in the same run.

    python -m training.benchmarks.train_step --data-root ~/.cache/isegformer/assets [--steps 6]
    python -m training.benchmarks.train_step --pack ~/.cache/isegformer/pack.zip [--steps 6]

``--data-root``: ``isegformer-train``'s composite configuration (``efficientnet_lite0_composite``) with
its batch and crop size; scenes are made in this process (``workers = 0``) so that their time is
measured. ``--pack``: the GPU job's step (:mod:`training.gpu_job`, its torch scene maker) on the CPU,
batch 16 at 320², starting from the pack's network. Every step is timed
(:class:`training.step_timer.StepTimer`); the first step of each variant is a warm-up and not counted,
and one whole warm-up run fills the decoding caches first. All variants start from the same weights and
see the same batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Sequence

import torch

from training.config import load_config
from training.data.gpu_scenes import SceneConfig, SceneMaker
from training.data.pack import DataPack, read_pack
from training.gpu_job import Job, JobConfig, bank_from_pack, load_start
from training.train import build_from_config, build_sources, build_train_set, resolve_config
from training.trainer import Trainer


def measure(
    config_name: str, data_root: str, channels_last: bool, float32_depthwise: bool, steps: int, seed: int = 0
) -> dict:
    """Seconds per part and samples/s over ``steps`` steps after one warm-up step."""
    config = load_config(resolve_config(config_name))
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, root=data_root, workers=0),
        train=dataclasses.replace(
            config.train, channels_last=channels_last, float32_depthwise=float32_depthwise, seed=seed
        ),
    )
    torch.manual_seed(seed)
    model = build_from_config(config)
    source, _ = build_sources(config)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, config, build_train_set(config, source), out, show_progress=False)
        trainer.timer.every = 1
        batches = iter(trainer.batches(0))
        scenes = 0.0
        started = 0.0
        for step in range(steps + 1):
            if step == 1:
                trainer.timer.totals = dict.fromkeys(trainer.timer.totals, 0.0)
                scenes, started = 0.0, time.perf_counter()
            tick = time.perf_counter()
            batch = next(batches)
            scenes += time.perf_counter() - tick
            trainer.train_step(batch)
            trainer.global_step += 1
        elapsed = time.perf_counter() - started
    parts = {**trainer.timer.seconds(), "scenes": scenes}
    return {
        "per_step": {k: v / steps for k, v in parts.items()},
        "samples_per_second": steps * trainer.batch_size / elapsed,
    }


def measure_job(
    pack: DataPack,
    channels_last: bool,
    float32_depthwise: bool,
    steps: int,
    batch_size: int = 16,
    size: int = 320,
) -> dict:
    """The GPU job's step on the CPU: seconds per part and samples/s over ``steps`` steps after one
    warm-up step."""
    model, _ = load_start(pack, None)
    device = torch.device("cpu")
    maker = SceneMaker(bank_from_pack(pack, device), SceneConfig(size=size))
    config = dataclasses.replace(JobConfig(seed=0), batch_size=batch_size)
    torch.manual_seed(0)
    job = Job(model, maker, config, device, channels_last=channels_last, float32_depthwise=float32_depthwise)
    job.train_step(0.0)
    job.timer.every = 1
    job.timer.totals = dict.fromkeys(job.timer.totals, 0.0)
    started = time.perf_counter()
    for step in range(steps):
        job.train_step(step / steps)
    elapsed = time.perf_counter() - started
    return {
        "per_step": {k: v / steps for k, v in job.timer.seconds().items()},
        "samples_per_second": steps * batch_size / elapsed,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-root", help="asset folder of training.data.offline_assets")
    source.add_argument("--pack", help="data pack of training.data.pack: measure the GPU job's step")
    parser.add_argument("--config", default="efficientnet_lite0_composite")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, interleaved")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = (
        ("NCHW, all bf16 (straightforward)", False, False),
        ("channels-last, all bf16", True, False),
        ("channels-last, fp32 depth-wise (default)", True, True),
    )

    pack = read_pack(args.pack) if args.pack else None  # read once for every run

    def run(channels_last: bool, float32_depthwise: bool) -> dict:
        if pack is not None:
            return measure_job(pack, channels_last, float32_depthwise, args.steps)
        return measure(args.config, args.data_root, channels_last, float32_depthwise, args.steps)

    run(True, True)  # warm-up, not reported: caches fill
    rows = []
    for repeat in range(args.repeats):  # interleaved, so that load on the machine hits all alike
        for name, channels_last, float32_depthwise in variants:
            rows.append((name, repeat + 1, run(channels_last, float32_depthwise)))
    parts = ["scenes", "click_forward", "click_rule", "forward", "backward"]
    what = "GPU job on the CPU, batch 16 at 320²" if args.pack else args.config
    print(f"{what}, {args.steps} steps per run, {torch.get_num_threads()} threads, ms per step:")
    print("| variant | run | " + " | ".join(parts) + " | samples/s |")
    print("|---|---:|" + "---:|" * (len(parts) + 1))
    for name, repeat, result in rows:
        cells = " | ".join(f"{1000 * result['per_step'][p]:.0f}" for p in parts)
        print(f"| {name} | {repeat} | {cells} | {result['samples_per_second']:.1f} |")
    rates = {name: sum(r["samples_per_second"] for n, _, r in rows if n == name) for name, *_ in variants}
    baseline = rates[variants[0][0]]
    for name, *_ in variants[1:]:
        print(f"{name} against the straightforward way (mean samples/s): {rates[name] / baseline:.2f}x")


if __name__ == "__main__":
    main()

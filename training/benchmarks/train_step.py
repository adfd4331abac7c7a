"""Where a CPU training step of the default network goes, and samples/s, for the straightforward layout
(NCHW) against channels-last in the same run.

    python -m training.benchmarks.train_step --data-root ~/.cache/isegformer/assets [--steps 6]

The shipped composite configuration (``efficientnet_lite0_composite``) with its batch and crop size;
scenes are made in this process (``workers = 0``) so that their time is measured; every step is timed
(:class:`training.step_timer.StepTimer`); the first step of each variant is a warm-up and not counted.
Both variants start from the same weights and see the same batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Sequence

import torch

from training.config import load_config
from training.train import build_from_config, build_sources, build_train_set, resolve_config
from training.trainer import Trainer


def measure(config_name: str, data_root: str, channels_last: bool, steps: int, seed: int = 0) -> dict:
    """Seconds per part and samples/s over ``steps`` steps after one warm-up step."""
    config = load_config(resolve_config(config_name))
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, root=data_root, workers=0),
        train=dataclasses.replace(config.train, channels_last=channels_last, seed=seed),
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="asset folder of training.data.offline_assets")
    parser.add_argument("--config", default="efficientnet_lite0_composite")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, interleaved")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = (("NCHW (straightforward)", False), ("channels-last", True))
    rows = []
    for repeat in range(args.repeats):  # interleaved, so that load on the machine hits both alike
        for name, channels_last in variants:
            rows.append(
                (f"{name}, run {repeat + 1}", measure(args.config, args.data_root, channels_last, args.steps))
            )
    parts = ["scenes", "click_forward", "click_rule", "forward", "backward"]
    print(f"{args.config}, {args.steps} steps per run, {torch.get_num_threads()} threads, ms per step:")
    print("| layout | " + " | ".join(parts) + " | samples/s |")
    print("|---|" + "---:|" * (len(parts) + 1))
    for name, result in rows:
        cells = " | ".join(f"{1000 * result['per_step'][p]:.0f}" for p in parts)
        print(f"| {name} | {cells} | {result['samples_per_second']:.1f} |")
    rates = {
        flag: [r["samples_per_second"] for (n, r) in rows if n.startswith(name)] for name, flag in variants
    }
    print(f"speed-up (mean samples/s): {sum(rates[True]) / sum(rates[False]):.2f}x")


if __name__ == "__main__":
    main()

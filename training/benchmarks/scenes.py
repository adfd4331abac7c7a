"""Milliseconds per training scene on the CPU: the OpenCV composites of ``isegformer-train``
(:class:`training.data.composite.CompositeSource`, one scene at a time) against the torch scene maker of
the GPU job (:class:`training.data.gpu_scenes.SceneMaker`, whole batches), at the same scene size, in the
same run.

    python -m training.benchmarks.scenes --assets ~/.cache/isegformer/assets \\
        --pack ~/.cache/isegformer/pack.zip [--size 320] [--threads 1,2]

The pack is the one :mod:`training.data.pack` builds from those assets. Scene making only: no click
sampling, no training crop. Both make MR scenes at the GPU job's share (20 %), except the torch maker's
batch of 1, which rounds that share to none (photo scenes only). Each maker first makes a warm-up round
(decoding caches, allocator), then the timed scenes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from training.data.composite import CompositeConfig, CompositeSource
from training.data.gpu_scenes import SceneConfig, SceneMaker
from training.data.pack import read_pack
from training.gpu_job import bank_from_pack


def composite_ms(source: CompositeSource, scenes: int, seed: int = 0) -> float:
    """Milliseconds per scene of the OpenCV composites (after ``scenes`` warm-up scenes)."""
    rng = np.random.default_rng(seed)
    for index in range(scenes):
        source.load(index, rng)
    started = time.perf_counter()
    for index in range(scenes):
        source.load(index, rng)
    return (time.perf_counter() - started) / scenes * 1000


def torch_ms(maker: SceneMaker, batch: int, batches: int, seed: int = 0) -> float:
    """Milliseconds per scene of the torch scene maker in batches of ``batch`` (after two warm-up batches)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        maker.batch(batch, generator)
    started = time.perf_counter()
    for _ in range(batches):
        maker.batch(batch, generator)
    return (time.perf_counter() - started) / (batch * batches) * 1000


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", required=True, help="asset folder of training.data.offline_assets")
    parser.add_argument("--pack", required=True, help="data pack of training.data.pack (same assets)")
    parser.add_argument("--size", type=int, default=320, help="scene side in pixels")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch/OpenCV thread counts")
    parser.add_argument("--scenes", type=int, default=96, help="timed scenes per maker")
    args = parser.parse_args(argv)

    composite = CompositeSource(
        args.assets, CompositeConfig(canvas=(args.size, args.size), medical_prob=SceneConfig.mr_fraction)
    )
    maker = SceneMaker(bank_from_pack(read_pack(args.pack), torch.device("cpu")), SceneConfig(size=args.size))
    print(f"ms per {args.size}² scene on the CPU, {args.scenes} scenes per row:")
    print(
        "| threads | OpenCV composites (one at a time) | torch scene maker, batch 1 "
        "| torch scene maker, batch 16 |"
    )
    print("|---:|---:|---:|---:|")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        opencv = composite_ms(composite, args.scenes)
        single = torch_ms(maker, 1, args.scenes)
        batched = torch_ms(maker, 16, max(1, args.scenes // 16))
        print(f"| {threads} | {opencv:.1f} | {single:.1f} | {batched:.1f} |")


if __name__ == "__main__":
    main()

"""Large photos: the network's input at full size (the original predictor) against its longer side
limited to :data:`model.predictor.INTERACTIVE_MAX_SIZE` (what the app does).

    python -m model.benchmarks.large_photos [--checkpoint W] [--scales 1 4] [--clicks 3]

The VOC and ARC photos of :mod:`model.evaluation.samples` (500 and 640 px wide) are enlarged by each
scale (bilinear; masks nearest), as a camera's photo of the same scene would be, and every object gets
the NoC protocol's simulated clicks (``model.evaluation.noc.evaluate_sample``, threshold 0.49, no early
stop). Printed per scale and input: the median seconds of the first click (the one that runs on the
whole image; ZoomIn crops the later ones) and mIoU after click 1 and after the last click.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.benchmarks.engines import TimedPredictor
from model.evaluation.noc import evaluate_sample
from model.evaluation.samples import Sample, arc_samples, voc_samples
from model.predictor import INTERACTIVE_MAX_SIZE, Predictor


def measure(predictor: Predictor, samples: Sequence[Sample], scale: float, clicks: int) -> dict[str, float]:
    """Median first-click seconds and mIoU after the first and the last click on the enlarged samples."""
    first_seconds, ious = [], []
    for sample in samples:
        image, mask = sample.resized(scale)
        timed = TimedPredictor(predictor)
        result = evaluate_sample(timed, image, mask, max_clicks=clicks, target_iou=1.01)
        first_seconds.append(timed.predict_seconds[0])
        ious.append(result.ious)
    table = np.array(ious)
    return {
        "first_click_s": float(np.median(first_seconds)),
        "miou_first": float(table[:, 0].mean()),
        "miou_last": float(table[:, -1].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import load_checkpoint
    from resources import bundled_model

    parser = argparse.ArgumentParser(prog="python -m model.benchmarks.large_photos", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=None, help="network (default: the bundled one)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or bundled_model()
    if checkpoint is None:
        parser.error("no bundled network; give --checkpoint")
    torch.set_num_threads(args.threads)
    network = load_checkpoint(checkpoint).float()
    samples = voc_samples() + arc_samples()
    print(
        f"{checkpoint.name}, {len(samples)} objects (VOC + ARC), {args.clicks} clicks, {args.threads} threads"
    )
    print(f"| scale | longest side | network input | first click s | mIoU@1 | mIoU@{args.clicks} |")
    print("|---:|---:|---|---:|---:|---:|")
    longest = max(max(s.mask.shape) for s in samples)
    for scale in args.scales:
        for label, limit in (
            ("full size (original)", None),
            (f"limited to {INTERACTIVE_MAX_SIZE}", INTERACTIVE_MAX_SIZE),
        ):
            predictor = Predictor(network, device="cpu", max_size=limit)
            row = measure(predictor, samples, scale, args.clicks)
            print(
                f"| {scale:g} | {round(longest * scale)} | {label} | {row['first_click_s']:.2f} | "
                f"{row['miou_first']:.3f} | {row['miou_last']:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

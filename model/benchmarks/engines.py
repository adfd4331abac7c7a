"""Benchmark of the built-in click engines: NoC@85, NoC@90, mean IoU@5 and ms/click per dataset.

Run ``python -m model.benchmarks.engines`` (``--engines``, ``--datasets`` to narrow it down; ``--engines
bundled geo_grabcut`` compares the shipped trained network with the default classical engine). The
protocol is the project's NoC evaluation (``model.evaluation.noc.evaluate_sample``: simulated user on the
larger error region, threshold 0.49, stop at IoU 0.90, at most 20 clicks).

Datasets: ``voc``, ``arc`` and ``mr`` of :mod:`model.evaluation.samples` (real images; MR masks by plain
thresholding; nothing is downloaded).

``ms/click`` is the mean wall-clock time of ``predict`` on this machine. ``ms/click@800`` times
10 clicks of the simulated user on the VOC photo enlarged to 800 px, on its largest object (the
product's budget: 150 ms on 2 CPU cores), with the process CPU time in brackets (less sensitive to
other load on the machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import cv2
import numpy as np

from model.clicks import Click
from model.engines import DEFAULT_ENGINE, ENGINE_NAMES, build_engine
from model.evaluation.noc import compute_noc, evaluate_sample
from model.evaluation.samples import Sample, arc_samples, mr_samples, voc_samples
from model.prediction import ClickPredictor, Prediction, PredictionState


class TimedPredictor:
    """Wraps a predictor and records the wall-clock and process CPU seconds of each ``predict`` call."""

    def __init__(self, inner: ClickPredictor) -> None:
        self.inner = inner
        self.name = inner.name
        self.predict_seconds: list[float] = []
        self.predict_cpu_seconds: list[float] = []

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        start, start_cpu = time.perf_counter(), time.process_time()
        prediction = self.inner.predict(clicks, state)
        self.predict_seconds.append(time.perf_counter() - start)
        self.predict_cpu_seconds.append(time.process_time() - start_cpu)
        return prediction


DATASETS = {"voc": voc_samples, "arc": arc_samples, "mr": mr_samples}


BUNDLED = "bundled"  # the trained network shipped in resources/models (fp32, ZoomIn and flip as the app)


def make_predictor(name: str) -> ClickPredictor:
    """A built-in engine, or with :data:`BUNDLED` the shipped trained network as the app runs it."""
    if name != BUNDLED:
        return build_engine(name)
    from model.checkpoint import load_checkpoint
    from model.predictor import interactive_predictor
    from resources import DEFAULT_MODEL, bundled_model

    path = bundled_model()
    if path is None:
        raise SystemExit(f"model.benchmarks.engines: no bundled network at {DEFAULT_MODEL}")
    return interactive_predictor(load_checkpoint(path), "cpu", name=path.stem)


def evaluate(engine_name: str, samples: Sequence[Sample], max_clicks: int = 20) -> dict[str, float]:
    """NoC@85/90, mean IoU after 5 clicks and mean ms per ``predict`` of one engine on ``samples``."""
    predictor = TimedPredictor(make_predictor(engine_name))
    curves = []
    for sample in samples:
        result = evaluate_sample(predictor, sample.image, sample.gt_mask(), max_clicks=max_clicks)
        curves.append(result.ious)
    summary = compute_noc(curves, (0.85, 0.90), max_clicks=max_clicks)
    return {
        "noc85": summary.noc["85"],
        "noc90": summary.noc["90"],
        "iou5": float(summary.mean_iou_per_click[4]),
        "ms": 1000.0 * float(np.mean(predictor.predict_seconds)),
    }


def time_at_800(engine_name: str, clicks: int = 10) -> tuple[float, float]:
    """Mean (wall, CPU) ms per ``predict`` over ``clicks`` simulated clicks on the VOC photo enlarged
    to 800 px, segmenting its largest object (the dining table: the zoomed view stays large)."""
    sample = max(voc_samples(), key=lambda s: int(s.mask.sum()))
    image, mask = sample.resized(800 / max(sample.image.shape[:2]))
    predictor = TimedPredictor(make_predictor(engine_name))
    evaluate_sample(predictor, image, mask, max_clicks=clicks, target_iou=1.01)
    wall, cpu = np.mean(predictor.predict_seconds), np.mean(predictor.predict_cpu_seconds)
    return 1000.0 * float(wall), 1000.0 * float(cpu)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engines", nargs="+", default=list(ENGINE_NAMES), choices=[*ENGINE_NAMES, BUNDLED],
        help=f"engines to run; '{BUNDLED}' adds the shipped trained network",
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--max-clicks", type=int, default=20)
    args = parser.parse_args(argv)
    cv2.setNumThreads(2)

    data = {name: DATASETS[name]() for name in args.datasets}
    print("| engine | dataset | objects | NoC@85 | NoC@90 | mIoU@5 | ms/click | ms/click@800 (CPU ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for engine in args.engines:
        wall_800, cpu_800 = time_at_800(engine)
        for name, samples in data.items():
            row = evaluate(engine, samples, args.max_clicks)
            default = " (default)" if engine == DEFAULT_ENGINE else ""
            print(
                f"| {engine}{default} | {name} | {len(samples)} | {row['noc85']:.2f} | {row['noc90']:.2f} "
                f"| {row['iou5']:.3f} | {row['ms']:.0f} | {wall_800:.0f} ({cpu_800:.0f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
